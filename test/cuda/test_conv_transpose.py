"""ConvTranspose (kernels/conv_transpose.cu), depthwise convolutions (kernels/depthwise.cu) and
standalone BatchNormalization on the GPU against the numpy reference, at FP16 tolerance.

Inputs are random with fixed seeds and rounded to FP16 (what the arena holds), so the only
differences left are FP16 weights, FP32 accumulation order and the FP16 output.
ConvTranspose runs over a grid of shapes: odd sizes, strides 1, 2, 3 and 4, pads,
output_padding, output_shape, SAME auto_pad, dilations, groups (depthwise-like included),
bias, activations and a residual, on the SIMT and the tensor-core (WMMA) paths.
"""
import numpy as np
import pytest

from conftest import assert_close, fp16_round, one_node_graph, run_conv
from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.conv import ConvTranspose
from tx2_infer_core.ops.fused import FusedConv, FusedConvTranspose
from tx2_infer_core.ops.nn import BatchNormalization
from tx2_infer_core.passes import optimize

TOL = 3e-3  # relative L2, as the FusedConv tests
PATHS = ['simt', 'tc']

# (name, N, C_in, H, W, C_out, kernel, stride, attrs, activation, residual)
CONVT = [
    ('k4s2p1_upsample', 1, 64, 20, 20, 32, 4, 2, {'pads': [1] * 4}, 'Relu', ''),
    ('k2s2_unet', 1, 32, 17, 23, 16, 2, 2, {}, '', ''),
    ('k3s2_outpad', 2, 24, 9, 11, 40, 3, 2,
     {'pads': [1, 1, 1, 1], 'output_padding': [1, 1]}, 'LeakyRelu', 'before'),
    ('k8s4_text_det', 1, 16, 10, 12, 8, 8, 4, {'pads': [2] * 4}, 'Sigmoid', ''),
    ('k4s4_odd_channels', 1, 13, 7, 5, 7, 4, 4, {}, 'HardSwish', 'after'),
    ('k3s1_same', 1, 8, 15, 13, 24, 3, 1, {'auto_pad': 'SAME_UPPER'}, 'Clip', ''),
    ('k3s3_same_lower', 1, 6, 5, 6, 10, 3, 3, {'auto_pad': 'SAME_LOWER'}, '', ''),
    ('dilated', 1, 16, 11, 9, 16, 3, 2, {'dilations': [2, 2], 'pads': [1, 2, 0, 1]}, 'Tanh',
     ''),
    ('output_shape', 1, 16, 8, 8, 8, 3, 2, {'output_shape': [16, 17]}, '', ''),
    ('asym_stride', 1, 12, 6, 7, 12, 3, [2, 3], {'pads': [1, 0, 1, 1]}, 'SiLU', ''),
    ('grouped', 1, 32, 12, 12, 64, 4, 2, {'group': 4, 'pads': [1] * 4}, 'Relu', ''),
    ('depthwise_like', 1, 16, 10, 10, 16, 4, 2, {'group': 16, 'pads': [1] * 4}, '', 'after'),
    ('wide_batch', 2, 128, 14, 14, 64, 2, 2, {}, 'Relu', 'before'),
]


def _convt_case(layer, seed=0):
    name, n, c, h, w, k, r, stride, extra, act, res = layer
    rng = np.random.default_rng(seed)
    strides = stride if isinstance(stride, list) else [stride, stride]
    group = extra.get('group', 1)
    attrs = dict(extra, strides=strides, group=group)
    x = fp16_round(rng.standard_normal((n, c, h, w)))
    wt = fp16_round(rng.standard_normal((c, k // group, r, r)) / np.sqrt(c // group * r))
    b = (rng.standard_normal(k) * 0.1).astype(np.float32)
    out_shape = ConvTranspose(x, wt, b, **attrs).shape
    fused = dict(attrs, activation=act, alpha=0.1, clip_min=0.0, clip_max=6.0,
                 residual_after_act=int(res == 'after'))
    graph = one_node_graph('FusedConvTranspose', {'x': x.shape}, out_shape, {'w': wt, 'b': b},
                           fused)
    feeds = {'x': x}
    if res:
        feeds['r'] = fp16_round(rng.standard_normal(out_shape))
        graph.inputs.append('r')
        graph.values['r'] = Value('r', out_shape, 'float32', 'NCHW')
        graph.nodes[0].inputs.append('r')
    ref = FusedConvTranspose(x, wt, b, feeds.get('r'), **fused)
    return graph, feeds, ref


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('layer', CONVT, ids=[case[0] for case in CONVT])
def test_conv_transpose_matches_numpy(layer, path):
    graph, feeds, ref = _convt_case(layer)
    out, kernels = run_conv(graph, feeds, path)
    assert len(kernels) == 1 and kernels[0].startswith('convt_')
    assert kernels[0].startswith('convt_simt' if path == 'simt' else 'convt_wmma')  # sm_70+
    assert_close(f'{layer[0]} {path} {kernels} y', out, ref, TOL)


def test_plain_conv_transpose_node():
    """The ONNX op itself (no passes), no bias."""
    rng = np.random.default_rng(3)
    x = fp16_round(rng.standard_normal((1, 8, 9, 9)))
    wt = fp16_round(rng.standard_normal((8, 4, 3, 3)) / 5)
    attrs = {'strides': [2, 2], 'pads': [1, 1, 1, 1], 'output_padding': [1, 1]}
    ref = ConvTranspose(x, wt, **attrs)
    graph = one_node_graph('ConvTranspose', {'x': x.shape}, ref.shape, {'w': wt}, attrs)
    out, kernels = run_conv(graph, {'x': x}, 'tc')
    assert_close(f'ConvTranspose node {kernels} y', out, ref, TOL)


# (name, N, C, H, W, multiplier, kernel, stride, pad, dilation, activation, residual)
DEPTHWISE = [
    ('mobilenet_3x3', 1, 96, 56, 56, 1, 3, 1, 1, 1, 'Clip', ''),
    ('mobilenet_3x3_s2', 1, 144, 55, 55, 1, 3, 2, 1, 1, 'Relu', ''),
    ('lcnet_5x5', 1, 64, 29, 31, 1, 5, 1, 2, 1, 'HardSwish', ''),
    ('odd_channels', 2, 37, 17, 13, 1, 3, 2, 1, 1, '', 'before'),
    ('even_channels_half2', 1, 22, 15, 16, 1, 3, 1, 1, 1, 'LeakyRelu', 'after'),
    ('multiplier_2', 1, 24, 20, 20, 2, 3, 1, 1, 1, 'Sigmoid', ''),
    ('dilated_7x7', 1, 32, 24, 24, 1, 7, 1, 6, 2, 'SiLU', 'after'),
]


@pytest.mark.parametrize('layer', DEPTHWISE, ids=[case[0] for case in DEPTHWISE])
def test_depthwise_matches_numpy(layer):
    name, n, c, h, w, mult, r, s, p, d, act, res = layer
    rng = np.random.default_rng(1)
    x = fp16_round(rng.standard_normal((n, c, h, w)))
    wt = fp16_round(rng.standard_normal((c * mult, 1, r, r)) / r)
    b = (rng.standard_normal(c * mult) * 0.1).astype(np.float32)
    attrs = dict(kernel_shape=[r, r], strides=[s, s], pads=[p] * 4, dilations=[d, d], group=c,
                 activation=act, alpha=0.1, clip_min=0.0, clip_max=6.0,
                 residual_after_act=int(res == 'after'))
    ho, wo = ((v + 2 * p - d * (r - 1) - 1) // s + 1 for v in (h, w))
    shape = (n, c * mult, ho, wo)
    graph = one_node_graph('FusedConv', {'x': x.shape}, shape, {'w': wt, 'b': b}, attrs)
    feeds = {'x': x}
    if res:
        feeds['r'] = fp16_round(rng.standard_normal(shape))
        graph.inputs.append('r')
        graph.values['r'] = Value('r', shape, 'float32', 'NCHW')
        graph.nodes[0].inputs.append('r')
    ref = FusedConv(x, wt, b, feeds.get('r'), **attrs)
    vec = next((v for v in (8, 2) if mult == 1 and c % v == 0), 1)
    for path in PATHS:
        out, kernels = run_conv(graph, feeds, path)
        assert kernels == [{8: 'depthwise_v8', 2: 'depthwise_h2', 1: 'depthwise'}[vec]]
        assert_close(f'{name} {path} {kernels} y', out, ref, TOL)


@pytest.mark.parametrize('shape', [(1, 32, 19, 17), (2, 6, 8, 8), (2, 7, 8, 8), (4, 10),
                                   (2, 6, 9)])
def test_standalone_batchnorm_matches_numpy(shape):
    rng = np.random.default_rng(2)
    c = shape[1]
    x = fp16_round(rng.standard_normal(shape) * 3)
    params = {'s': rng.standard_normal(c), 'b': rng.standard_normal(c),
              'm': rng.standard_normal(c), 'v': rng.random(c) + 0.01}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    graph = one_node_graph('BatchNormalization', {'x': shape}, shape, params,
                           {'epsilon': 1e-3})
    ref = BatchNormalization(x, *params.values(), epsilon=1e-3)
    out, kernels = run_conv(graph, {'x': x}, 'tc')
    vec = next((v for v in (8, 2) if c % v == 0), 1)
    if len(shape) == 4:
        assert kernels == [{8: 'depthwise_v8', 2: 'depthwise_h2', 1: 'depthwise'}[vec]]
    else:
        assert len(kernels) == 2  # a Mul and an Add launch
    assert_close(f'BatchNormalization {shape} {kernels} y', out, ref, TOL)


def test_conv_transpose_into_a_concat_slice_then_depthwise():
    """Channel placement: the ConvTranspose writes channels 5..10 of the Concat's 11-channel
    rows (y_pix 11, y_off 5, odd: scalar stores), the depthwise conv reads the whole rows."""
    rng = np.random.default_rng(4)
    shapes = {'x': (1, 8, 6, 6), 'u': (1, 5, 12, 12), 'a': (1, 6, 12, 12),
              'b': (1, 5, 12, 12), 'c': (1, 11, 12, 12), 'y': (1, 11, 12, 12)}
    values = {n: Value(n, s, 'float32', 'NCHW') for n, s in shapes.items()}
    weights = {'w': fp16_round(rng.standard_normal((8, 6, 2, 2)) / 3),
               'dw': fp16_round(rng.standard_normal((11, 1, 3, 3)) / 3)}
    nodes = [Node('ConvTranspose', 'ct', ['x', 'w'], ['a'], {'strides': [2, 2]}),
             Node('Relu', 'relu', ['u'], ['b']),
             Node('Concat', 'cat', ['b', 'a'], ['c'], {'axis': 1}),
             Node('Conv', 'dw', ['c', 'dw'], ['y'], {'group': 11, 'pads': [1, 1, 1, 1]})]
    graph = Graph(nodes, ['x', 'u'], ['y'], values, weights)
    feeds = {'x': fp16_round(rng.standard_normal(shapes['x'])),
             'u': fp16_round(rng.standard_normal(shapes['u']))}
    optimised, _ = optimize(graph)
    out, kernels = run_conv(optimised, feeds, 'tc')
    assert kernels[0].startswith('convt_') and kernels[-1] == 'depthwise'
    assert_close(f'convT into concat slice {kernels} y', out,
                 reference.execute(graph, feeds)['y'], TOL)
