"""Split-K convolutions and global average pools lower to one launch each (the last CTA of an
output tile reduces the partials), on real models, without a GPU; their FP32 workspace and
int32 arrival counters lie in zeroed bytes of the weight buffer that no constant shares."""
import numpy as np
import pytest

import one_launch_cases
from tx2_infer_core import assets
from tx2_infer_core.cuda import lower_conv, lower_nn
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lowering import ARRIVAL_COUNTERS, LoweringContext, lower_graph
from tx2_infer_core.engine import import_model
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.passes import optimize

# (asset, input shape): ResNet-50, YOLOv8 (split-K convs), PP-OCR det (squeeze-excite pools)
MODELS = [('open_nsfw.onnx', None), ('yolov8-fall.onnx', (1, 3, 640, 640)),
          ('ppocr-det.onnx', (1, 3, 480, 640))]
TARGETS = [(90, 132), (87, 16), (62, 2)]  # (arch, SMs): H100/H200, Orin, TX2
CONV_OPS = {'Conv', 'FusedConv', 'Gemm', 'MatMul'}


@pytest.fixture(scope='module', params=MODELS, ids=[m[0].split('.')[0] for m in MODELS])
def model(request):
    name, shape = request.param
    graph, _ = optimize(import_model(assets.fetch(name), shape))
    return graph


def _by_node(lowered) -> dict:
    out = {}
    for launch in lowered.launches:
        out.setdefault(launch.node, []).append(launch)
    return out


def _partial_bytes(launch) -> int:
    """Bytes of FP32 (or int32) partials a split launch writes to the workspace."""
    f = launch.fields
    if launch.kernel.startswith('global_avgpool'):
        return 4 * f['splits'] * f['N'] * f['C']
    return 4 * f['splits'] * f['N'] * f['P'] * f['Q'] * f['Kg']


@pytest.mark.parametrize('arch,sms', TARGETS)
def test_one_launch_per_conv_and_global_pool(model, arch, sms):
    lowered = lower_graph(model, arch, sm_count=sms)
    ops = {n.name: n.op for n in model.nodes}
    launches = _by_node(lowered)
    for node, ks in launches.items():
        if ops[node] in CONV_OPS | {'GlobalAveragePool'}:
            assert len(ks) == 1, (node, [k.kernel for k in ks])
    assert not [k for k in lowered.launches if 'reduce' in k.kernel]
    pools = [k for k in lowered.launches if ops[k.node] == 'GlobalAveragePool']
    assert all(k.kernel.startswith('global_avgpool') for k in pools)
    for k in pools:  # a large map's pixels are split over CTAs
        assert k.fields['HW'] < 4800 or k.grid[2] > 1, (k.node, k.fields['HW'], k.grid)


def test_split_k_is_used_on_the_h200(model):
    """The one-launch checks above are not vacuous: ResNet-50 and YOLOv8 split K on 132 SMs,
    PP-OCR det splits its pools' pixels."""
    split = [k for k in lower_graph(model, 90, sm_count=132).launches
             if k.fields.get('splits', 1) > 1]
    assert len(split) >= 10


@pytest.mark.parametrize('arch,sms', TARGETS)
def test_workspace_and_counters_are_zeroed_and_private(model, arch, sms):
    lowered = lower_graph(model, arch, sm_count=sms)
    image = lowered.weight_image()
    split = [k for k in lowered.launches if k.fields.get('splits', 1) > 1]
    refs = {(k.fields['ws'], k.fields['counters']) for k in split}
    assert len(refs) <= 1  # one workspace and one counter region a lowering
    for launch in split:
        ws, counters = launch.fields['ws'], launch.fields['counters']
        assert ws.base == counters.base == 'weights'
        assert _partial_bytes(launch) <= lower_conv.WORKSPACE_BYTES
        assert launch.grid[0] * launch.grid[1] <= ARRIVAL_COUNTERS  # one counter per tile
    regions = [(r.offset, n) for ws, counters in refs
               for r, n in ((ws, lower_conv.WORKSPACE_BYTES), (counters, 4 * ARRIVAL_COUNTERS))]
    for start, size in regions:
        assert start + size <= lowered.weight_bytes
        assert not image[start:start + size].any()
        others = [(off, len(data)) for off, data in lowered.weight_chunks if off != start]
        assert all(off + n <= start or off >= start + size for off, n in others)
    for launch in lowered.launches:
        if launch.fields.get('splits', 0) == 1:
            assert launch.fields['ws'] is NULL and launch.fields['counters'] is NULL


def _gap_cases():
    for n in (1, 2, 4):
        for hw in (1, 7, 49, 300, 1200, 19200, 100000):
            for c in (3, 8, 24, 37, 96, 192, 2048):
                yield n, hw, c


@pytest.mark.parametrize('sms', [2, 16, 132])
def test_global_pool_config_fills_the_gpu(sms):
    """Every channel and pixel is covered; the pixels are split until about two CTAs per SM,
    unless each thread would get fewer than GAP_MIN_PIXELS of them."""
    for n, hw, c in _gap_cases():
        for vec in ((1, 8) if c % 8 == 0 else (1,)):
            lanes, rows, blocks, splits = lower_nn.gap_config(n, hw, c, vec, sms)
            case = (n, hw, c, vec, sms, lanes, rows, blocks, splits)
            assert lanes * rows <= lower_nn.GAP_THREADS and vec <= rows, case
            assert (blocks - 1) * lanes * vec < c <= blocks * lanes * vec, case
            ctas = blocks * n * splits
            room = hw // (rows * lower_nn.GAP_MIN_PIXELS)
            assert ctas >= 2 * sms or splits == max(room, 1), case
            assert splits == 1 or (splits <= room and blocks * n < 2 * sms), case
            assert ctas < 4 * sms or splits == 1, case


def test_global_pool_vector_loads_only_on_8_channel_rows():
    graph, _ = optimize(import_model(assets.fetch('ppocr-det.onnx'), (1, 3, 480, 640)))
    ctx = LoweringContext(graph, 90, 'tc', 132, {})
    base = dict(x=NULL, y=NULL, N=1, HW=19200, C=96, x_pix=96, x_off=0, y_pix=96, y_off=0)
    assert lower_nn.global_avgpool_launch(ctx, 'p', base).kernel == 'global_avgpool_v8'
    for bad in (dict(C=95), dict(x_pix=100), dict(x_off=4)):
        launch = lower_nn.global_avgpool_launch(ctx, 'p', dict(base, **bad))
        assert launch.kernel == 'global_avgpool', bad
    launch = lower_nn.global_avgpool_launch(ctx, 'p', base)
    assert launch.grid[2] > 1 and launch.fields['counters'] == ctx.arrival_counters(1)


def test_arrival_counters_are_made_once_and_bounded():
    graph, _ = optimize(import_model(assets.fetch('open_nsfw.onnx')))
    ctx = LoweringContext(graph, 90, 'tc', 132, {})
    ref = ctx.arrival_counters(10)
    assert ref == ctx.arrival_counters(ARRIVAL_COUNTERS)
    assert ctx.weight_bytes == 4 * ARRIVAL_COUNTERS
    with pytest.raises(Tx2InferError, match='arrival counters'):
        ctx.arrival_counters(ARRIVAL_COUNTERS + 1)
    image = np.zeros(ctx.weight_bytes, np.uint8)
    for off, data in ctx.weight_chunks:
        image[off:off + len(data)] = np.frombuffer(data, np.uint8)
    assert not image.any()


def test_the_gpu_cases_split_and_use_every_view():
    """test/cuda/test_last_cta_reduce.py's graphs lower as it expects on the H200: both
    convolutions split K in one launch each, through input, residual and output views."""
    lowered = lower_graph(one_launch_cases.split_k_graph(), 90, sm_count=132)
    convs = {k.node: k.fields for k in lowered.launches if k.node.startswith('conv')}
    assert len(convs) == 2 and len(lowered.launches) == 3  # and the pool; no copies
    assert all(f['splits'] > 1 and f['x_off'] == 8 for f in convs.values())
    assert convs['conv2']['y_off'] == convs['conv2']['r_off'] == one_launch_cases.K1
    assert convs['conv2']['Kg'] % 2 == 1 and convs['conv1']['y_pix'] % 2 == 1
    lowered = lower_graph(one_launch_cases.pool_graph(2, 37, 100, 100, 13), 90, sm_count=132)
    [pool] = [k for k in lowered.launches if k.node == 'pool']
    assert pool.fields['x_off'] == 13 and pool.grid[2] > 1
