"""FusedConvInt8 (notes/int8.md) against ONNX Runtime running standard ONNX integer ops.

ORT's ConvInteger gives the exact int32 accumulator (compared exactly); the epilogue is the
same graph of ORT float ops (Cast, Mul, Add, the activation) ending in ONNX QuantizeLinear
(ORT divides by the scale where we multiply by its float32 reciprocal, so a rare value sits
one unit away), and ORT's own QLinearConv requantises by itself.
"""
import numpy as np
import onnxruntime as ort
import pytest

import int8_cases
from onnx import helper, numpy_helper, TensorProto

from tx2_infer_core.int8.quant_math import EXACT_FLOAT32_TERMS, conv_accumulator
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import run_node
from tx2_infer_core.ops.conv import conv_nd

# (name, attrs): strides, pads, groups (depthwise too), dilations, 1x1
GEOMETRIES = [
    ('3x3', dict(c=8, m=16, k=3, pads=[1, 1, 1, 1])),
    ('stride2', dict(c=8, m=8, k=3, pads=[1, 1, 1, 1], strides=[2, 2])),
    ('asym_pads', dict(c=4, m=8, k=3, pads=[0, 1, 2, 0])),
    ('groups', dict(c=8, m=12, k=3, pads=[1, 1, 1, 1], group=4)),
    ('depthwise', dict(c=8, m=8, k=3, pads=[1, 1, 1, 1], group=8)),
    ('dilated', dict(c=4, m=8, k=3, pads=[2, 2, 2, 2], dilations=[2, 2])),
    ('pointwise', dict(c=16, m=8, k=1)),
    ('wide_k', dict(c=64, m=8, k=5, pads=[2, 2, 2, 2])),         # float32 in channel chunks
    ('grouped_wide', dict(c=256, m=8, k=3, group=2)),  # float64 (no chunks)
]
ACTIVATIONS = [('', {}), ('Relu', {}), ('LeakyRelu', {'alpha': 0.1}),
               ('Clip', {'clip_min': 0.0, 'clip_max': 6.0}), ('Sigmoid', {}), ('SiLU', {}),
               ('HardSwish', {}), ('Tanh', {})]


def case(seed, c, m, k, group=1, hw=(9, 11), **conv):
    """Random int8 input and weights, int32 bias and scales that use the int8 output range."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, c) + hw).astype(np.int8)
    w = rng.integers(-127, 128, (m, c // group, k, k)).astype(np.int8)
    b = rng.integers(-3000, 3000, m).astype(np.int32)
    w_scales = rng.uniform(0.002, 0.01, m).astype(np.float32)
    return dict(x=x, w=w, b=b, x_scale=0.02, w_scales=w_scales, out_scale=1.0,
                conv=dict(conv, group=group), rng=rng)


def fit_out_scale(t, y_float):
    """``t`` with an out_scale that spreads ``y_float`` over int8 (its top 1% saturating)."""
    return dict(t, out_scale=float(np.percentile(np.abs(y_float), 99)) / 127)


def ours(t, activation='', act=None, residual=None, after=0, out_scale=None):
    attrs = dict(t['conv'], x_scale=t['x_scale'], w_scales=[float(s) for s in t['w_scales']],
                 out_scale=t['out_scale'] if out_scale is None else out_scale,
                 activation=activation, residual_after_act=after, **(act or {}))
    node = Node('FusedConvInt8', 'conv', ['x', 'w', 'b', 'r'], ['y'], attrs)
    return run_node(node, [t['x'], t['w'], t['b'], residual])[0]


def _act_nodes(activation, act, src, dst):
    if activation == 'SiLU':
        return [helper.make_node('Sigmoid', [src], [dst + '_s']),
                helper.make_node('Mul', [src, dst + '_s'], [dst])]
    if activation == 'Clip':
        return [helper.make_node('Clip', [src, 'clip_lo', 'clip_hi'], [dst])]
    return [helper.make_node(activation, [src], [dst], **act)]


def ort_reference(t, activation='', act=None, residual=None, after=0, quantize=True):
    """(int32 accumulator, final output) of the same conv as an ONNX graph run by ORT."""
    act = act or {}
    dq = (np.float32(t['x_scale']) * t['w_scales']).reshape(1, -1, 1, 1)
    inits = {'w': t['w'], 'b': t['b'].reshape(1, -1, 1, 1), 'dq': dq.astype(np.float32),
             'inv': np.float32(t['out_scale']), 'zp': np.int8(0),
             'clip_lo': np.float32(act.get('clip_min', 0)),
             'clip_hi': np.float32(act.get('clip_max', 0))}
    nodes = [helper.make_node('ConvInteger', ['x', 'w'], ['acc0'], **t['conv']),
             helper.make_node('Add', ['acc0', 'b'], ['acc']),
             helper.make_node('Cast', ['acc'], ['accf'], to=TensorProto.FLOAT),
             helper.make_node('Mul', ['accf', 'dq'], ['y0'])]
    y, inputs = 'y0', [helper.make_tensor_value_info('x', TensorProto.INT8, t['x'].shape)]
    if residual is not None:
        inputs.append(helper.make_tensor_value_info('r', TensorProto.FLOAT, residual.shape))
    steps = []
    if residual is not None and not after:
        steps.append('add')
    if activation:
        steps.append('act')
    if residual is not None and after:
        steps.append('add')
    for i, step in enumerate(steps):
        out = f'y{i + 1}'
        nodes += ([helper.make_node('Add', [y, 'r'], [out])] if step == 'add'
                  else _act_nodes(activation, act, y, out))
        y = out
    outputs = ['acc', y]
    if quantize:
        nodes.append(helper.make_node('QuantizeLinear', [y, 'inv', 'zp'], ['q']))
        outputs[1] = 'q'
    graph = helper.make_graph(nodes, 'int8conv', inputs,
                              [helper.make_empty_tensor_value_info(o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k)
                               for k, v in inits.items()])
    feeds = {'x': t['x']} if residual is None else {'x': t['x'], 'r': residual}
    return int8_cases.ort_run(graph, feeds, outputs)


def assert_int8_close(got, want):
    """Within one unit everywhere, and equal almost everywhere (a floor for rint would make
    about half the values one unit off)."""
    assert got.dtype == np.int8 and got.shape == want.shape
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1, f'off by up to {diff.max()}'
    assert np.count_nonzero(diff) <= max(2, diff.size // 500), \
        f'{np.count_nonzero(diff)} of {diff.size} values differ'
    assert np.unique(want).size > 50  # the test uses the int8 range, not a few values


@pytest.mark.parametrize('name,geometry', GEOMETRIES, ids=[g[0] for g in GEOMETRIES])
def test_accumulator_is_exact(name, geometry):
    t = case(1, **geometry)
    acc, _ = ort_reference(t)
    t1 = dict(t, x_scale=1.0, w_scales=np.ones_like(t['w_scales']))
    y = ours(t1, out_scale=0.0)   # dq = 1: float32(acc), exact below 2**24
    assert np.abs(acc).max() < 2 ** 24
    np.testing.assert_array_equal(y, acc.astype(np.float32))


@pytest.mark.parametrize('c,k,group', [(114, 3, 1), (115, 3, 1), (1032, 1, 1), (2000, 1, 1),
                                       (230, 3, 2)])
def test_accumulator_is_exact_at_the_extremes(c, k, group):
    """Products at their largest (-128 * -127; one channel -127 * -127 so the sums are
    odd): sums right at and past 2**24, where float32 rounds."""
    t = case(7, c=c, m=2 * group, k=k, group=group, hw=(k + 1, k + 1))
    t['x'][...] = -128
    t['x'][:, 0] = -127
    t['w'][...] = -127
    t['w'][-1, 0] = 127
    acc, _ = ort_reference(t)
    assert np.abs(acc).max() >= 2 ** 24 or c * k * k <= EXACT_FLOAT32_TERMS
    ours_acc = conv_accumulator(lambda a, b: conv_nd(a, b, group), t['x'], t['w'], t['b'], group)
    np.testing.assert_array_equal(ours_acc, acc)


@pytest.mark.parametrize('name,geometry', GEOMETRIES, ids=[g[0] for g in GEOMETRIES])
def test_int8_output_matches_onnxruntime(name, geometry):
    t = case(2, **geometry)
    t = fit_out_scale(t, ours(t, out_scale=0.0))
    assert_int8_close(ours(t), ort_reference(t)[1])


@pytest.mark.parametrize('activation,act', ACTIVATIONS, ids=[a[0] or 'none' for a in ACTIVATIONS])
@pytest.mark.parametrize('after', [0, 1])
def test_epilogue_with_residual_and_activation(activation, act, after):
    t = case(3, c=8, m=8, k=3, pads=[1, 1, 1, 1])
    y_float = ours(t, activation, act, out_scale=0.0)
    residual = t['rng'].normal(0, np.std(y_float), y_float.shape).astype(np.float32)
    _, want_float = ort_reference(t, activation, act, residual, after, quantize=False)
    got_float = ours(t, activation, act, residual, after, out_scale=0.0)
    t = fit_out_scale(t, want_float)
    _, want = ort_reference(t, activation, act, residual, after)
    assert_int8_close(ours(t, activation, act, residual, after), want)
    assert got_float.dtype == np.float32
    np.testing.assert_allclose(got_float, want_float, rtol=1e-5, atol=1e-6)


def test_int8_residual_is_dequantized_with_its_scale():
    t = case(4, c=8, m=8, k=3, pads=[1, 1, 1, 1])
    r_q = t['rng'].integers(-128, 128, (1, 8, 9, 11)).astype(np.int8)
    t = fit_out_scale(t, ours(t, 'Relu', out_scale=0.0))
    node = Node('FusedConvInt8', 'conv', ['x', 'w', 'b', 'r'], ['y'],
                dict(t['conv'], x_scale=0.02, w_scales=list(map(float, t['w_scales'])),
                     out_scale=t['out_scale'], residual_scale=0.05, activation='Relu'))
    got = run_node(node, [t['x'], t['w'], t['b'], r_q])[0]
    _, want = ort_reference(t, 'Relu', {}, r_q.astype(np.float32) * np.float32(0.05))
    assert_int8_close(got, want)


@pytest.mark.parametrize('name,geometry', GEOMETRIES[:5], ids=[g[0] for g in GEOMETRIES[:5]])
def test_matches_onnxruntime_qlinearconv(name, geometry):
    """ORT's own QLinearConv (its requantisation, not our epilogue) within one unit."""
    t = case(5, **geometry)
    t = fit_out_scale(t, ours(t, out_scale=0.0))
    inits = [(t['w'], 'w'), (np.float32(t['x_scale']), 'xs'), (np.int8(0), 'xz'),
             (t['w_scales'], 'ws'), (np.zeros(len(t['b']), np.int8), 'wz'),
             (np.float32(t['out_scale']), 'ys'), (np.int8(0), 'yz'), (t['b'], 'b')]
    node = helper.make_node('QLinearConv', ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz', 'b'],
                            ['y'], **t['conv'])
    graph = helper.make_graph(
        [node], 'q', [helper.make_tensor_value_info('x', TensorProto.INT8, t['x'].shape)],
        [helper.make_tensor_value_info('y', TensorProto.INT8, None)],
        [numpy_helper.from_array(np.asarray(a), n) for a, n in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)])
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    got, want = ours(t), session.run(None, {'x': t['x']})[0]
    diff = np.abs(got.astype(np.int32) - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 100


def test_refuses_float_inputs():
    from tx2_infer_core.errors import UnsupportedOpError
    t = case(6, c=4, m=4, k=1)
    node = Node('FusedConvInt8', 'conv', ['x', 'w'], ['y'], dict(x_scale=1.0, w_scales=[1.0] * 4))
    with pytest.raises(UnsupportedOpError, match='want int8'):
        run_node(node, [t['x'].astype(np.float32), t['w']])
