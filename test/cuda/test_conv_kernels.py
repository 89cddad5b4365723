"""Both fused-convolution paths (SIMT half2 and tensor cores) against numpy on real-size
layers of ResNet-50, YOLO and MobileNet shapes."""
import numpy as np
import pytest

from conftest import fp16_round, one_node_graph, rel_err
from tx2_infer_core.backends.cuda_backend import CudaBackend
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
]


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


@pytest.mark.parametrize('path', ['simt', 'tc'])
@pytest.mark.parametrize('layer', LAYERS, ids=[case[0] for case in LAYERS])
def test_fused_conv_matches_numpy(layer, path):
    graph, feeds, ref = _case(layer)
    backend = CudaBackend(conv_path=path)
    backend.prepare(graph)
    try:
        out = backend.run(feeds)['y']
    finally:
        backend.close()
    assert out.shape == ref.shape
    assert rel_err(out, ref) < 3e-3, f'{layer[0]} {path}: rel err {rel_err(out, ref):.2e}'
