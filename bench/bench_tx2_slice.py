"""Device run: the TX2 conv path (``conv_path='simt'``) timed on a TX2-sized slice of a big
GPU (issue 12 item 3), projected to a Jetson TX2 (``tx2_projection.py``: the maths, the
report, the method text).

Per model, batch 1 FP16: every kernel launch timed inside an SM slice (a green context,
``cuda/green.py``; 8 SMs, the smallest an H200 gives) and on the whole GPU, the same launches
(lowered for the slice's SM count); FLOPs, bytes, CTAs and resident CTAs per launch; per-SM
efficiency against the half2 peak; the TX2 projection beside the seed's figures; the lowering
for 2 SMs against the one for the slice (timed in the slice where it differs); the FP32-FMA
SIMT kernels (``conv_path='simt_fp32'``) against the half2 ones per 3x3 launch, in the slice.
The slice is checked by ``kernels/probe.cu`` (distinct %smid, and the SM clock against
%globaltimer).

    python3 bench/bench_tx2_slice.py --out $OUT/tx2_slice_h200.json \\
        --model resnet50=R.onnx --model yolov5s=Y.onnx --model yolov3_tiny=yolov3-tiny.cfg \\
        --model yolov8=yolov8-fall.onnx --size yolov8=640
    python bench/bench_tx2_slice.py --dry --out d.json --model yolov3_tiny=CFG --size \\
        yolov3_tiny=128      # no GPU: lowering, FLOPs, bytes, made-up times, the same JSON
"""
import argparse
import gc
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))
import tx2_projection as tx2  # noqa: E402
from bench_ours import launch_bytes  # noqa: E402
from benchlib import command_output, stats, versions, write_json  # noqa: E402

from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.engine import default_meta, import_model  # noqa: E402
from tx2_infer_core.flops import node_flops  # noqa: E402
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize  # noqa: E402

DISTS = ('numpy', 'pycuda', 'cuda-bindings', 'cuda-python', 'onnx', 'torch')
# --dry: an H200's arch, clock and SMs, conv_simt-like registers and shared memory
DRY = dict(arch=90, clock_hz=1.98e9, full_sms=132, regs=64, smem=8704)
SMI_CLOCKS = ['nvidia-smi', '--query-gpu=clocks.sm,clocks.max.sm', '--format=csv,noheader']


def load_graph(path, size=None):
    """The cuda backend's graph of a model (passes at ``POINTWISE_LEVEL``), batch 1;
    ``size``: a square input size where the model's own is not fixed."""
    graph = import_model(path, (1, 3, size, size) if size else None)
    default_meta(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


def kernel_shape(node, graph):
    """[R, S] of a Conv/FusedConv node's weights, else None."""
    if node is None or node.op not in ('Conv', 'FusedConv'):
        return None
    weights = graph.weights.get(node.inputs[1])
    return None if weights is None else [int(v) for v in np.shape(weights)[2:]]


def resident(threads, regs, smem) -> int:
    """Resident CTAs per SM, the fewer of the TX2's (sm_62) and the H200's (sm_90)."""
    return min(tx2.resident_ctas(threads, regs, smem, arch) for arch in tx2.SM_LIMITS)


def describe(graph, launches, attrs) -> list:
    """Per launch: node, op, kernel, grid, CTAs, threads, registers and static shared memory
    (``attrs``), resident CTAs per SM, FLOPs (on the node's first launch), FP16 bytes."""
    nodes = {n.name: n for n in graph.nodes}
    per_node = Counter(launch.node for launch in launches)
    seen, out = set(), []
    for i, (launch, (regs, smem)) in enumerate(zip(launches, attrs)):
        node = nodes.get(launch.node)
        flops = node_flops(node, graph) if node is not None and launch.node not in seen else 0
        seen.add(launch.node)
        threads = int(np.prod(launch.block))
        out.append(dict(index=i, node=launch.node, op=node.op if node else '',
                        kernel=launch.kernel, grid=[int(g) for g in launch.grid],
                        ctas=int(np.prod(launch.grid)), threads=threads, regs=int(regs),
                        smem=int(smem), resident=resident(threads, int(regs), int(smem)),
                        flops=int(flops), bytes=int(launch_bytes(launch, node, graph, per_node)),
                        kernel_shape=kernel_shape(node, graph)))
    return out


def lowering_diff(graph, arch, sms_a, sms_b) -> list:
    """The launches whose kernel or grid differ between the 'simt' lowerings for ``sms_a`` and
    ``sms_b`` SMs (one entry with both launch counts where even those differ)."""
    a = lower_graph(graph, arch, 'simt', sms_a).launches
    b = lower_graph(graph, arch, 'simt', sms_b).launches
    if len(a) != len(b):
        return [dict(launches=[len(a), len(b)])]
    return [dict(index=i, node=x.node, kernel=[x.kernel, y.kernel],
                 grid=[list(x.grid), list(y.grid)])
            for i, (x, y) in enumerate(zip(a, b)) if (x.kernel, x.grid) != (y.kernel, y.grid)]


def random_feeds(graph) -> dict:
    """Seeded uniform [0, 1) float32 inputs."""
    rng = np.random.default_rng(0)
    return {n: rng.random(graph.values[n].shape, dtype=np.float32) for n in graph.inputs}


def max_abs_diff(a, b) -> float:
    """The largest |a - b| over the outputs of two runs."""
    return max(float(np.abs(a[n].astype(np.float64) - b[n]).max()) for n in a)


# -- the device part ------------------------------------------------------------------------
def slice_factory(green, lowering_sms):
    """A CudaBackend ``context``: a SliceContext of ``green``, the lowering told
    ``lowering_sms`` SMs."""
    from tx2_infer_core.cuda.green import SliceContext

    def make(device):
        ctx = SliceContext(green, device)
        ctx.sm_count = lowering_sms
        return ctx
    return make


def full_factory(lowering_sms):
    """A CudaBackend ``context``: the whole GPU, the lowering told ``lowering_sms`` SMs."""
    from tx2_infer_core.cuda.runtime import DeviceContext

    def make(device):
        ctx = DeviceContext(device)
        ctx.sm_count = lowering_sms
        return ctx
    return make


def run_backend(graph, factory, feeds, replays, runs, conv_path='simt') -> dict:
    """A ``conv_path`` CudaBackend in ``factory``'s context: build time, outputs on
    ``feeds``, per launch times (event-record nodes in one graph, ``replays``), the
    kernels-only graph's time
    (``runs``), the launches and each kernel's registers and static shared memory, and how
    many SMs the probe kernel reaches in the backend's context."""
    from bench_ours import _graph_event_times, kernels_graph, replay_times
    from tx2_infer_core.backends.cuda_backend import CudaBackend
    from tx2_infer_core.cuda.green import distinct_sms
    be = CudaBackend(conv_path=conv_path, context=factory)
    try:
        t0 = time.perf_counter()
        be.prepare(graph)
        out = dict(build_s=time.perf_counter() - t0, arch=be.arch, launches=list(be.launches),
                   outputs=be.run(feeds))
        with be.ctx:
            sms = be.ctx.device.get_attribute(be.ctx.drv.device_attribute.MULTIPROCESSOR_COUNT)
            out['distinct_sms'] = distinct_sms(be.ctx, 16 * sms)
            samples = _graph_event_times(be, replays)
            fa = be.ctx.drv.function_attribute
            out['attrs'] = [(fn.get_attribute(fa.NUM_REGS), fn.get_attribute(fa.SHARED_SIZE_BYTES))
                            for fn, *_ in be.bound]
        out['launch_times'] = [stats(samples[:, i]) for i in range(samples.shape[1])]
        graph_exec = kernels_graph(be)
        try:
            out['kernels'] = replay_times(be, graph_exec.launch, runs, 5)
        finally:
            with be.ctx:
                graph_exec.close()
        return out
    finally:
        be.close()
        del be
        gc.collect()  # pycuda objects of this backend go now, not inside another's context


def measure_model(path, size, green, args) -> dict:
    """One model: slice, whole GPU, and (where the lowering differs) the 2-SM lowering in the
    slice."""
    t0 = time.perf_counter()
    graph = load_graph(path, size)
    feeds = random_feeds(graph)
    sliced = run_backend(graph, slice_factory(green, args.sms), feeds, args.replays, args.runs)
    fp32 = run_backend(graph, slice_factory(green, args.sms), feeds, args.replays, args.runs,
                       'simt_fp32')
    smi = command_output(SMI_CLOCKS)
    full = run_backend(graph, full_factory(args.sms), feeds, args.replays, args.runs)
    sweep = dict(differing=lowering_diff(graph, sliced['arch'], tx2.TX2_SMS, args.sms))
    if sweep['differing']:
        two = run_backend(graph, slice_factory(green, tx2.TX2_SMS), feeds, args.replays,
                          args.runs)
        sweep.update(kernels_2sm=two['kernels'], launch_times_2sm={
            d['index']: two['launch_times'][d['index']] for d in sweep['differing']
            if 'index' in d})
    return dict(path=str(path), input_shape=list(graph.values[graph.inputs[0]].shape),
                base=describe(graph, sliced['launches'], sliced['attrs']),
                slice=_timings(sliced), full=_timings(full), simt_fp32=_fp32_run(fp32),
                outputs_max_abs_diff=max_abs_diff(sliced['outputs'], full['outputs']),
                same_launches=_grids(sliced) == _grids(full),
                nvidia_smi_clocks=smi, sweep=sweep, seconds=time.perf_counter() - t0)


def _fp32_run(measured) -> dict:
    return dict(kernels=measured['kernels'], launch_times=measured['launch_times'],
                names=[k.kernel for k in measured['launches']])


def simt_comparison(model, clock_hz, slice_sms) -> dict:
    """Per 3x3 launch of ``model`` (``tx2.analyse``'s entry): the half2 kernel's slice time
    and efficiency beside the FP32-FMA kernel's (``simt_fp32``, same launch index), and the
    time-weighted 3x3 efficiency of each; pops ``simt_fp32``'s per-launch times."""
    fp32 = model.pop('simt_fp32', None)
    if fp32 is None or 'rows' not in model:
        return {}
    times = fp32.pop('launch_times')
    rows = [dict(index=r['index'], node=r['node'], kernels=[r['kernel'], fp32['names'][i]],
                 ms=[r['slice_ms'], times[i]['median_ms']], flops=r['flops'],
                 eff=[r['eff_slice'], tx2.efficiency(r['flops'], times[i]['median_ms'],
                                                     slice_sms, clock_hz)])
            for i, r in enumerate(model['rows']) if r['group'] == '3x3']
    flops = sum(r['flops'] for r in rows)
    eff = [tx2.efficiency(flops, sum(r['ms'][j] for r in rows), slice_sms, clock_hz)
           for j in (0, 1)]
    return dict(order=['half2 (simt)', 'fp32 (simt_fp32)'], eff_3x3=eff, rows=rows,
                fp32_kernels=fp32['kernels'])


def _timings(measured) -> dict:
    return {k: measured[k] for k in ('kernels', 'launch_times', 'build_s', 'distinct_sms')}


def _grids(measured) -> list:
    return [(k.kernel, tuple(k.grid)) for k in measured['launches']]


def probe_slice(green) -> dict:
    """Distinct SMs the probe's CTAs ran on, and the SM clock, in the slice and on the whole
    GPU."""
    from tx2_infer_core.cuda.green import SliceContext, distinct_sms, sm_clock_hz
    from tx2_infer_core.cuda.runtime import DeviceContext
    out = {}
    for where, make in (('slice', lambda: SliceContext(green)), ('full', DeviceContext)):
        ctx = make()
        try:
            out[f'{where}_distinct_sms'] = distinct_sms(ctx, 16 * green.device_sm_count)
            out[f'{where}_clock_hz'] = [sm_clock_hz(ctx) for _ in range(3)]
        finally:
            ctx.drv.Context.pop()
            ctx.close()
    return out


def clock_attribute_hz(drv) -> float:
    """Device 0's CLOCK_RATE attribute in Hz (None where the driver no longer has it)."""
    try:
        return 1e3 * drv.Device(0).get_attribute(drv.device_attribute.CLOCK_RATE)
    except Exception:  # noqa: BLE001 - deprecated attribute: absent from newer drivers
        return None


def run_gpu(args, models) -> tuple:
    """(document, raw measurements per model) on the device."""
    import pycuda.driver as drv
    from benchlib import gpu_facts
    from tx2_infer_core.cuda.green import GreenContext
    drv.init()
    doc, raws, start = dict(gpu_facts(drv), dry=False), {}, time.perf_counter()
    green = GreenContext(args.sms)
    try:
        probes = probe_slice(green)
        for name, (path, size) in models.items():
            if time.perf_counter() - start > args.deadline_s:
                raws[name] = dict(error=f'skipped: past the {args.deadline_s} s deadline')
                continue
            try:
                raws[name] = measure_model(path, size, green, args)
            except Exception as exc:  # noqa: BLE001 - one model's failure is reported
                traceback.print_exc()
                raws[name] = dict(error=repr(exc)[:500])
            print(f'{name}: measured ({time.perf_counter() - start:.0f} s)', flush=True)
        probes['after_clock_hz'] = probe_slice(green)['slice_clock_hz']
        doc['slice'] = dict(requested=args.sms, sm_count=green.sm_count,
                            device_sms=green.device_sm_count, **probes)
    finally:
        green.close()
    clocks = probes['slice_clock_hz'] + probes['full_clock_hz'] + probes['after_clock_hz']
    doc['clock'] = dict(attribute_hz=clock_attribute_hz(drv), probe_hz=clocks,
                        nvidia_smi_end=command_output(SMI_CLOCKS))
    return doc, raws


# -- without a GPU (--dry) ------------------------------------------------------------------
def fake_times(base, sms, clock_hz, eff) -> list:
    """Made-up launch times: the FLOPs at ``eff`` of the half2 peak of ``sms`` SMs or the
    bytes at 300 GB/s, plus 3 us."""
    out = []
    for b in base:
        ms = 1e3 * max(b['flops'] / (sms * tx2.HALF2_FLOP_PER_CLOCK_SM * clock_hz * eff),
                       b['bytes'] / 300e9) + 0.003
        out.append(dict(median_ms=ms, p99_ms=1.1 * ms, runs=1))
    return out


def dry_model(path, size, args) -> dict:
    """``measure_model``'s result for an H200-like device, lowered here, times made up."""
    graph = load_graph(path, size)
    launches = lower_graph(graph, DRY['arch'], 'simt', args.sms).launches
    attrs = [(DRY['regs'], DRY['smem']) if k.kernel.startswith('conv') else (32, 0)
             for k in launches]
    base = describe(graph, launches, attrs)
    sliced = fake_times(base, args.sms, DRY['clock_hz'], 0.3)
    fp32 = fake_times(base, args.sms, DRY['clock_hz'], 0.18)
    full = fake_times(base, DRY['full_sms'], DRY['clock_hz'], 0.05)
    total = sum(t['median_ms'] for t in sliced)
    return dict(path=str(path), input_shape=list(graph.values[graph.inputs[0]].shape),
                base=base, slice=dict(kernels=dict(median_ms=total, p99_ms=total),
                                      launch_times=sliced),
                full=dict(kernels=dict(median_ms=0.0, p99_ms=0.0), launch_times=full),
                simt_fp32=dict(kernels=dict(median_ms=sum(t['median_ms'] for t in fp32)),
                               launch_times=fp32, names=[k.kernel for k in lower_graph(
                                   graph, DRY['arch'], 'simt_fp32', args.sms).launches]),
                outputs_max_abs_diff=None,
                sweep=dict(differing=lowering_diff(graph, DRY['arch'], tx2.TX2_SMS, args.sms)))


def run_dry(args, models) -> tuple:
    """``run_gpu``'s (document, raw measurements) with the made-up device."""
    doc = dict(device='dry run (no GPU)', dry=True,
               slice=dict(requested=args.sms, sm_count=args.sms, device_sms=DRY['full_sms']),
               clock=dict(attribute_hz=DRY['clock_hz'], probe_hz=[]))
    return doc, {name: dry_model(path, size, args) for name, (path, size) in models.items()}


# -- the document ---------------------------------------------------------------------------
def document(doc, raws) -> dict:
    """The JSON: device, versions, slice and clock facts, constants, method, models,
    summary."""
    clock_hz, source = tx2.pick_clock(doc['clock']['probe_hz'], doc['clock']['attribute_hz'])
    doc['clock'].update(used_hz=clock_hz, used=source)
    slice_sms, full_sms = doc['slice']['sm_count'], doc['slice']['device_sms']
    models = {n: tx2.analyse(n, raw, slice_sms, full_sms, clock_hz) for n, raw in raws.items()}
    for m in models.values():
        m['simt_compare'] = simt_comparison(m, clock_hz, slice_sms)
    return dict(doc, versions=versions(*DISTS), tx2=dict(
        sms=tx2.TX2_SMS, clock_hz=tx2.TX2_CLOCK_HZ, bytes_per_s=tx2.TX2_BYTES_PER_S,
        half2_flop_per_clock_sm=tx2.HALF2_FLOP_PER_CLOCK_SM, goal=tx2.GOAL_EFFICIENCY,
        seed_ms=tx2.SEED_MS),
        simt=dict(tile='64x64 outputs a CTA, 256 threads, 4x4 a thread (conv_simt_h2, '
                       'conv_simt_h2_v8; conv_simt, conv_simt_v4 for simt_fp32); the only SIMT '
                       'tile: sm_count does not enter the SIMT conv lowering (see each '
                       "model's sweep for what it changes)",
                  fp32_ceiling=tx2.SIMT_FP32_CEILING,
                  note='conv_simt_h2 multiplies in half2 (HFMA2, FP16 chunks of 16 products a '
                       'lane flushed into FP32); conv_simt (simt_fp32, timed beside it: each '
                       "model's simt_compare) in FP32: at most 50 % of the half2 peak"),
        method=tx2.METHOD, models=models, summary=tx2.summary(models))


def pairs(items, what) -> dict:
    """{name: value} of NAME=VALUE arguments."""
    out = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name or not value:
            raise SystemExit(f'{what} must be NAME=VALUE, not {item!r}')
        out[name] = value
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--model', action='append', default=[], help='NAME=PATH (.onnx or .cfg)')
    ap.add_argument('--size', action='append', default=[], help='NAME=N: N x N input')
    ap.add_argument('--sms', type=int, default=8, help='SMs of the slice (at least)')
    ap.add_argument('--replays', type=int, default=20, help='per-launch timing replays')
    ap.add_argument('--runs', type=int, default=50, help='kernels-only graph replays')
    ap.add_argument('--deadline-s', type=float, default=200)
    ap.add_argument('--dry', action='store_true', help='no GPU: made-up times')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sizes = {n: int(v) for n, v in pairs(args.size, '--size').items()}
    models = {n: (Path(p), sizes.get(n)) for n, p in pairs(args.model, '--model').items()}
    doc, raws = run_dry(args, models) if args.dry else run_gpu(args, models)
    result = document(doc, raws)
    write_json(args.out, result)
    tx2.print_summary(result)
    for name, m in result['models'].items():
        if m.get('simt_compare'):
            eff = m['simt_compare']['eff_3x3']
            print(f'{name:12} 3x3 eff half2 {eff[0]:.3f}, fp32 {eff[1]:.3f}', flush=True)
    return result


if __name__ == '__main__':
    main()
