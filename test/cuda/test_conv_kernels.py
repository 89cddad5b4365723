"""The fused-convolution paths (SIMT half2, WMMA, mma.sync + cp.async) against numpy on
real-size layers of ResNet-50, YOLO and MobileNet shapes, and every conv_mma tile and split-K
factor on one awkward layer."""
import functools

import numpy as np
import pytest

from conftest import assert_close, fp16_round, one_node_graph, run_conv
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.cuda import cluster, lower_conv
from tx2_infer_core.ops.fused import FusedConv

# (name, N, C, H, W, K, R, stride, pad, dilation, groups, activation, residual)
LAYERS = [
    ('resnet_stem_7x7s2', 1, 3, 224, 224, 64, 7, 2, 3, 1, 1, 'Relu', ''),
    ('resnet_3x3_res', 1, 64, 56, 56, 64, 3, 1, 1, 1, 1, 'Relu', 'before'),
    ('resnet_1x1_expand', 1, 64, 56, 56, 256, 1, 1, 0, 1, 1, '', 'after'),
    ('resnet_1x1_512', 1, 1024, 14, 14, 512, 1, 1, 0, 1, 1, 'Relu', ''),
    ('yolo_3x3s2_silu', 1, 128, 80, 80, 256, 3, 2, 1, 1, 1, 'SiLU', ''),
    ('yolov3_leaky', 1, 16, 208, 208, 32, 3, 1, 1, 1, 1, 'LeakyRelu', ''),
    ('odd_channels', 1, 13, 33, 31, 37, 3, 1, 1, 1, 1, 'HardSwish', ''),
    ('dilated', 1, 32, 40, 40, 32, 3, 1, 2, 2, 1, 'Sigmoid', ''),
    ('grouped', 1, 64, 28, 28, 128, 3, 1, 1, 1, 4, 'Tanh', ''),
    ('depthwise', 1, 96, 56, 56, 96, 3, 2, 1, 1, 96, 'Clip', ''),
    ('batch2_hsig', 2, 24, 20, 20, 40, 1, 1, 0, 1, 1, 'HardSigmoid', 'before'),
    ('resnet_1x1_2048_7x7', 1, 512, 7, 7, 2048, 1, 1, 0, 1, 1, '', 'before'),
    ('resnet_3x3_512_7x7', 1, 512, 7, 7, 512, 3, 1, 1, 1, 1, 'Relu', ''),
    ('resnet_3x3_256_14x14', 1, 256, 14, 14, 256, 3, 1, 1, 1, 1, 'Relu', ''),
    ('yolo_1x1_160_wide', 1, 32, 160, 160, 256, 1, 1, 0, 1, 1, 'SiLU', ''),
    ('yolo_3x3_160', 1, 64, 160, 160, 128, 3, 1, 1, 1, 1, 'SiLU', ''),
    ('odd_k_mma', 1, 16, 30, 30, 37, 3, 1, 1, 1, 1, 'LeakyRelu', 'after'),
]
PATHS = ['simt', 'wmma', 'tc']
MMA_TILES = [t[:2] for t in lower_conv.MMA_TILES]


@functools.lru_cache(maxsize=32)
def _case(layer, seed=0):
    name, n, c, h, w, k, r, s, p, d, g, act, res = layer
    rng = np.random.default_rng(seed)
    x = fp16_round(rng.standard_normal((n, c, h, w)))
    wt = fp16_round(rng.standard_normal((k, c // g, r, r)) / np.sqrt(c // g * r * r))
    b = rng.standard_normal(k).astype(np.float32) * 0.1
    ho = (h + 2 * p - d * (r - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (r - 1) - 1) // s + 1
    attrs = dict(kernel_shape=[r, r], strides=[s, s], pads=[p] * 4, dilations=[d, d], group=g,
                 activation=act, alpha=0.1 if act == 'LeakyRelu' else 0.2, clip_min=0.0,
                 clip_max=6.0, residual_after_act=int(res == 'after'))
    inputs, feeds = {'x': x.shape}, {'x': x}
    if res:
        feeds['r'] = fp16_round(rng.standard_normal((n, k, ho, wo)))
        inputs['r'] = (n, k, ho, wo)
    graph = one_node_graph('FusedConv', {'x': x.shape}, (n, k, ho, wo),
                           {'w': wt, 'b': b}, attrs)
    if res:
        graph.inputs.append('r')
        graph.values['r'] = type(graph.values['x'])('r', (n, k, ho, wo), 'float32', 'NCHW')
        graph.nodes[0].inputs.append('r')
    kw = {k_: v for k_, v in attrs.items()}
    ref = FusedConv(x, wt, b, feeds.get('r'), **kw)
    return graph, feeds, ref


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('layer', LAYERS, ids=[case[0] for case in LAYERS])
def test_fused_conv_matches_numpy(layer, path, monkeypatch):
    graph, feeds, ref = _case(layer)
    out, kernels = run_conv(graph, feeds, path, monkeypatch)
    assert_close(f'{layer[0]} {path} {kernels} y', out, ref, 3e-3)


@pytest.mark.parametrize('mode', cluster.SPLITK_MODES)
@pytest.mark.parametrize('channels', [48, 6], ids=['rows16B', 'gather'])
@pytest.mark.parametrize('splits', [1, 3, 8])
@pytest.mark.parametrize('tile', MMA_TILES, ids=[f'{m}x{n}' for m, n in MMA_TILES])
def test_mma_tiles_and_splits(tile, splits, channels, mode, monkeypatch):
    """Every conv_mma tile, with and without split-K (two launches, or on sm_90 one cluster
    launch), on a stride-2 layer whose sizes are multiples of nothing: 48 channels (a
    half-empty k chunk) or 6 (gathered k), 72 outputs, a residual; 8 splits of 18 k tiles
    leave two splits empty."""
    layer = ('awkward', 1, channels, 23, 21, 72, 3, 2, 1, 1, 1, 'SiLU', 'before')
    graph, feeds, ref = _case(layer, seed=1)
    threads = tile[0] * tile[1] // 32
    monkeypatch.setattr(lower_conv, 'mma_config',
                        lambda *a, **k: (tile[0], tile[1], threads, splits))
    monkeypatch.setenv('TX2_INFER_SPLITK', mode)
    backend = CudaBackend(conv_path='tc')
    backend.prepare(graph)
    try:
        if backend.arch < lower_conv.MMA_MIN_ARCH:
            pytest.skip('conv_mma needs sm_80')
        names = [k.kernel for k in backend.launches]
        out = backend.run(feeds)['y']
        in_cluster = bool(cluster.cluster_of(backend.arch, tile[0], tile[1], splits))
    finally:
        backend.close()
    family = 'conv_mma' if channels % 8 == 0 else 'conv_mma_gather'
    assert names[0] == f'{family}_{tile[0]}x{tile[1]}' + ('_cl' if in_cluster else '')
    assert ('conv_splitk_reduce' in names) == (splits > 1 and not in_cluster)
    assert_close(f'{names[0]} splits={splits} C={channels} y', out, ref, 3e-3)
