"""bench/bench_tx2_slice.py without a GPU: the TX2 projection maths (bench/tx2_projection.py)
on hand-computed cases, the launch description on the real YOLOv3-tiny, and the JSON of a
``--dry`` run (made-up times) on it."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))

import bench_tx2_slice as bench  # noqa: E402
import tx2_projection as tx2  # noqa: E402

from int8_cases import yolov3_tiny  # noqa: E402
from tx2_infer_core import assets  # noqa: E402
from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.errors import Tx2InferError  # noqa: E402
from tx2_infer_core.flops import node_flops  # noqa: E402


def test_efficiency_against_the_half2_peak():
    # 1 GFLOP in 1 ms on 8 SMs at 1 GHz: 1e12 of 8 * 512 * 1e9 FLOP/s
    assert tx2.efficiency(1e9, 1.0, 8, 1e9) == pytest.approx(1e12 / 4.096e12)
    assert tx2.efficiency(0, 1.0, 8, 1e9) == 0.0
    assert tx2.efficiency(1e9, 0.0, 8, 1e9) == 0.0


def test_tx2_time_is_the_compute_time_at_the_measured_efficiency():
    flops, ms, sms, clock = 2e9, 2.0, 8, 1.98e9
    eff = tx2.efficiency(flops, ms, sms, clock)
    issue_formula = flops / (2 * 512 * 1.3e9 * eff) * 1e3
    assert tx2.tx2_ms(ms, 0, sms, clock) == pytest.approx(issue_formula)
    assert tx2.tx2_ms(ms, 0, sms, clock) == pytest.approx(2.0 * 8 * 1.98 / 2.6)


def test_tx2_time_is_floored_by_memory():
    assert tx2.memory_ms(59.7e6) == pytest.approx(1.0)
    assert tx2.tx2_ms(0.01, 59.7e6, 8, 1.3e9) == pytest.approx(1.0)  # scaled 0.04 ms
    # 1.3312e9 FLOPs take 1 ms at the full 2 x 512 x 1.3 GHz; 1 / 0.55 ms at 55 %
    assert tx2.tx2_ms_at(1.3312e9, 0) == pytest.approx(1 / 0.55)
    assert tx2.tx2_ms_at(1.3312e9, 59.7e6 * 3, 1.0) == pytest.approx(3.0)


@pytest.mark.parametrize('threads,regs,smem,arch,want', [
    (256, 64, 8704, 62, 4),     # conv_simt: registers bound (2048-register warps, 32 a SM)
    (256, 72, 8704, 90, 3),     # 72 -> 2304 registers a warp: 28 warps, 3 CTAs of 8
    (256, 32, 49152, 62, 1),    # 48 KB of shared memory: one CTA in the TX2's 64 KB
    (256, 32, 49152, 90, 4),    # four in the H200's 228 KB
    (64, 16, 0, 90, 32),        # small CTAs: the 32-CTA limit
    (128, 36, 0, 90, 12),       # 36 registers take 1280 a warp (units of 256): 51 warps
])
def test_resident_ctas(threads, regs, smem, arch, want):
    assert tx2.resident_ctas(threads, regs, smem, arch) == want


def test_waves_fill_and_the_wave_projection():
    assert (tx2.waves(8, 2, 4), tx2.fill(8, 2, 4)) == (1, 1.0)
    assert (tx2.waves(8, 8, 4), tx2.fill(8, 8, 4)) == (1, 0.25)
    assert (tx2.waves(33, 8, 4), tx2.fill(33, 8, 4)) == (2, 33 / 64)
    # 8 CTAs: one round on the slice and on 2 SMs; equal clocks: the slice's time
    assert tx2.tx2_ms_waves(1.0, 8, 4, 8, 1.3e9, 0) == pytest.approx(1.0)
    assert tx2.tx2_ms(1.0, 0, 8, 1.3e9) == pytest.approx(4.0)
    # a full slice: 100 rounds there, 400 on 2 SMs, as the SM-count scaling says
    assert tx2.tx2_ms_waves(1.0, 3200, 4, 8, 1.3e9, 0) == pytest.approx(4.0)


def test_groups():
    assert tx2.group('FusedConv', 'conv_simt_v4', [3, 3]) == '3x3'
    assert tx2.group('Conv', 'conv_simt', [1, 1]) == '1x1'
    assert tx2.group('FusedConv', 'conv_simt', [7, 7]) == 'other conv'
    assert tx2.group('FusedConv', 'depthwise_h2', [3, 3]) == 'rest'
    assert tx2.group('MatMul', 'conv_simt_v4', None) == 'rest'


def _base(index, flops, ctas, nbytes=0, shape=(3, 3)):
    return dict(index=index, node=f'n{index}', op='FusedConv', kernel='conv_simt_v4',
                kernel_shape=list(shape), ctas=ctas, resident=4, flops=flops, bytes=nbytes)


def _t(ms):
    return dict(median_ms=ms, p99_ms=ms)


def test_rows_aggregates_and_projection():
    clock = 1e9  # 8 SMs: 4.096e12 FLOP/s peak; 132 SMs: 6.7584e13
    rows = [tx2.launch_row(_base(0, 4.096e9, 64), _t(2.0), _t(0.5), 8, 132, clock),
            tx2.launch_row(_base(1, 4.096e9, 8), _t(4.0), _t(1.0), 8, 132, clock),
            tx2.launch_row(_base(2, 1e6, 64, 59.7e6, (1, 1)), _t(0.01), _t(0.01), 8, 132,
                           clock)]
    assert [r['eff_slice'] for r in rows[:2]] == pytest.approx([0.5, 0.25])
    assert rows[0]['eff_full'] == pytest.approx(4.096e9 / (0.5e-3 * 6.7584e13))
    assert [r['fills_slice'] for r in rows] == [True, False, True]
    assert [r['tx2_fill'] for r in rows] == [1.0, 1.0, 1.0]
    assert rows[2]['memory_bound'] and rows[2]['tx2_ms'] == pytest.approx(1.0)
    agg = tx2.aggregate(rows, 8, clock)
    assert agg['3x3']['launches'] == 2 and agg['3x3']['filled_launches'] == 1
    assert agg['3x3']['eff'] == pytest.approx(8.192e9 / (6e-3 * 4.096e12))
    assert agg['3x3']['eff_filled'] == pytest.approx(0.5)
    assert (agg['3x3']['eff_min'], agg['3x3']['eff_max']) == pytest.approx((0.25, 0.5))
    proj = tx2.projection(rows, 9.8)
    scale = 8 * 1e9 / 2.6e9
    assert proj['tx2_ms'] == pytest.approx((2.0 + 4.0) * scale + 1.0)
    assert proj['tx2_ms_waves'] == pytest.approx(2.0 * scale + 4.0 / 1.3 + 1.0)
    assert proj['vs_seed'] == pytest.approx(proj['tx2_ms'] / 9.8)
    assert proj['memory_bound_launches'] == 1


def test_underfilled_lists_launches_that_leave_2_sms_idle():
    rows = [tx2.launch_row(_base(0, 1e9, 3), _t(1.0), _t(1.0), 8, 132, 1e9),
            tx2.launch_row(_base(1, 1e9, 64), _t(1.0), _t(1.0), 8, 132, 1e9)]
    low = tx2.underfilled(rows)
    assert [r['index'] for r in low] == [0] and low[0]['tx2_fill'] == pytest.approx(3 / 8)


def test_pick_clock():
    assert tx2.pick_clock([1.9e9, 1.95e9, 2.0e9], 1.98e9) == (1.95e9, 'probe')
    assert tx2.pick_clock([1.9e9], None) == (1.9e9, 'probe')
    assert tx2.pick_clock([5e9], 1.98e9) == (1.98e9, 'attribute')
    assert tx2.pick_clock([], 1.98e9) == (1.98e9, 'attribute')
    with pytest.raises(Tx2InferError, match='no SM clock'):
        tx2.pick_clock([], None)


def test_describe_puts_a_nodes_flops_on_its_first_launch_only():
    graph = yolov3_tiny(128)[0]
    launches = lower_graph(graph, 90, 'simt', 8).launches
    conv = next(i for i, k in enumerate(launches) if k.kernel.startswith('conv_simt'))
    twice = launches[:conv + 1] + [launches[conv]] + launches[conv + 1:]
    rows = bench.describe(graph, twice, [(64, 8704)] * len(twice))
    node = next(n for n in graph.nodes if n.name == launches[conv].node)
    assert rows[conv]['flops'] == node_flops(node, graph) > 0
    assert rows[conv + 1]['flops'] == 0
    assert rows[conv]['bytes'] == rows[conv + 1]['bytes'] > 0  # shared by the two
    assert rows[conv]['resident'] == 4 and rows[conv]['kernel_shape'] == [3, 3]
    launched = {k.node for k in launches}
    assert sum(r['flops'] for r in rows) == sum(node_flops(n, graph) for n in graph.nodes
                                                if n.name in launched)


def test_dry_run_writes_the_document(tmp_path):
    cfg = assets.yolov3_tiny()[0]
    out = tmp_path / 'tx2.json'
    bench.main(['--dry', '--out', str(out), '--model', f'yolov3_tiny={cfg}',
                '--size', 'yolov3_tiny=128'])
    doc = json.loads(out.read_text())
    assert doc['dry'] and doc['clock']['used'] == 'attribute'
    assert {'device', 'versions', 'slice', 'tx2', 'simt', 'method', 'summary'} <= set(doc)
    model = doc['models']['yolov3_tiny']
    graph = bench.load_graph(cfg, 128)
    assert len(model['rows']) == len(lower_graph(graph, 90, 'simt', 8).launches)
    assert model['input_shape'] == [1, 3, 128, 128]
    assert model['projection']['tx2_ms'] == pytest.approx(
        sum(r['tx2_ms'] for r in model['rows']))
    summary = doc['summary']['yolov3_tiny']
    assert 0.2 < summary['eff_3x3'] < 0.3  # the made-up 30 % plus 3 us a launch
    assert summary['tx2_ms'] > summary['tx2_ms_at_goal'] > 0
    assert model['sweep']['differing'] == []  # the SIMT lowering ignores the SM count
    half2, fp32 = model['simt_compare']['eff_3x3']
    assert 0.1 < fp32 < half2 < 0.3  # made up: 30 % and 18 % plus 3 us a launch


def test_model_arguments_are_checked():
    with pytest.raises(SystemExit, match='NAME=VALUE'):
        bench.pairs(['yolov3_tiny'], '--model')


def test_the_device_path_assembles_the_document(tmp_path, monkeypatch):
    """run_gpu -> measure_model -> document with the device calls faked: backends return the
    lowering's launches and made-up times, the probes a clock and SM counts."""
    import types

    from tx2_infer_core.cuda import green
    drv = types.ModuleType('pycuda.driver')
    device = types.SimpleNamespace(name=lambda: 'fake H200', compute_capability=lambda: (9, 0),
                                   get_attribute=lambda attr: 1980000)
    drv.init, drv.Device = (lambda: None), (lambda n: device)
    drv.get_driver_version = lambda: 13000
    drv.device_attribute = types.SimpleNamespace(CLOCK_RATE='clock')
    package = types.ModuleType('pycuda')
    package.driver = drv
    monkeypatch.setitem(sys.modules, 'pycuda', package)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', drv)
    closed = []
    monkeypatch.setattr(green, 'GreenContext', lambda sms: types.SimpleNamespace(
        sm_count=8, device_sm_count=132, close=lambda: closed.append(True)))
    monkeypatch.setattr(bench, 'probe_slice', lambda g: dict(
        slice_distinct_sms=8, full_distinct_sms=132, slice_clock_hz=[1.7e9] * 3,
        full_clock_hz=[1.7e9] * 3))

    def fake_backend(graph, factory, feeds, replays, runs, conv_path='simt'):
        launches = lower_graph(graph, 90, conv_path, 8).launches
        times = [dict(median_ms=0.01 * (i + 1), p99_ms=0.02 * (i + 1), runs=replays)
                 for i in range(len(launches))]
        return dict(build_s=0.1, arch=90, launches=launches, attrs=[(64, 8704)] * len(launches),
                    outputs={'y': np.ones(3, np.float32)}, launch_times=times,
                    kernels=dict(median_ms=1.0, p99_ms=1.1), distinct_sms=8)

    monkeypatch.setattr(bench, 'run_backend', fake_backend)
    cfg = assets.yolov3_tiny()[0]
    out = tmp_path / 'tx2.json'
    result = bench.main(['--out', str(out), '--model', f'yolov3_tiny={cfg}',
                         '--size', 'yolov3_tiny=128', '--model', 'gone=/nonexistent.onnx'])
    doc = json.loads(out.read_text())
    assert closed == [True] and doc['device'] == 'fake H200' and not doc['dry']
    assert doc['clock']['used'] == 'probe' and doc['clock']['used_hz'] == pytest.approx(1.7e9)
    assert doc['clock']['attribute_hz'] == pytest.approx(1.98e9)
    assert doc['slice']['slice_distinct_sms'] == 8 and doc['slice']['sm_count'] == 8
    model = doc['models']['yolov3_tiny']
    assert model['same_launches'] and model['outputs_max_abs_diff'] == 0.0
    assert model['slice']['distinct_sms'] == 8 and 'launch_times' not in model['slice']
    assert model['rows'][1]['slice_ms'] == pytest.approx(0.02)
    assert model['rows'][1]['eff_slice'] == pytest.approx(tx2.efficiency(
        model['rows'][1]['flops'], 0.02, 8, 1.7e9))
    assert 'error' in doc['models']['gone'] and 'error' in doc['summary']['gone']
    compare = model['simt_compare']  # the FP32-FMA kernels' run, per 3x3 launch
    assert 'simt_fp32' not in model and compare['rows']
    pairs = {('conv_simt_h2', 'conv_simt'), ('conv_simt_h2_v8', 'conv_simt_v4')}
    assert {tuple(r['kernels']) for r in compare['rows']} == pairs
    row = compare['rows'][1]
    assert row['ms'] == [model['rows'][row['index']]['slice_ms']] * 2  # the same fake times
    assert result['summary']['yolov3_tiny']['slice_kernels_ms'] == 1.0
