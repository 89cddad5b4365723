"""Unit tests of the tricky reference-op cases (ONNX Runtime as the oracle where it helps)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import OPS, run_node
from tx2_infer_core.ops import elementwise as ew
from tx2_infer_core.ops.conv import Conv
from tx2_infer_core.ops.fused import FusedConv
from tx2_infer_core.ops.pool import MaxPool
from tx2_infer_core.ops.resize import Resize

ort = pytest.importorskip('onnxruntime')
RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def ort_run(op, inputs, opset=17, **attrs):
    """Run one ONNX op in ONNX Runtime; ``inputs`` maps name -> array (None: omitted)."""
    names = [name if value is not None else '' for name, value in inputs.items()]
    node = helper.make_node(op, names, ['y'], **attrs)
    feeds = {k: v for k, v in inputs.items() if v is not None}
    graph = helper.make_graph(
        [node], 'g',
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items()],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return session.run(None, feeds)[0]


def test_maxpool_asymmetric_padding_matches_darknet_stride_1():
    """YOLOv3-tiny's 2x2 stride-1 MaxPool pads only at the end; the size is kept."""
    x = randn(1, 3, 13, 13)
    y = MaxPool(x, kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    assert y.shape == x.shape
    want = ort_run('MaxPool', {'x': x}, kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize('ceil_mode', [0, 1])
def test_maxpool_ceil_mode_and_dilation(ceil_mode):
    x = randn(1, 2, 11, 9)
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 1], pads=[1, 0, 0, 1],
                 ceil_mode=ceil_mode)
    np.testing.assert_array_equal(MaxPool(x, **attrs), ort_run('MaxPool', {'x': x}, **attrs))


@pytest.mark.parametrize('strides', [[2, 1], [1, 1]])
@pytest.mark.parametrize('group,c_in,c_out', [(1, 4, 6), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
def test_grouped_and_depthwise_conv(group, c_in, c_out, strides):
    x, w, b = randn(2, c_in, 9, 8), randn(c_out, c_in // group, 3, 2), randn(c_out)
    attrs = dict(group=group, strides=strides, pads=[1, 0, 1, 2], dilations=[1, 2])
    got = Conv(x, w, b, **attrs)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ort_run('Conv', {'x': x, 'w': w, 'b': b}, **attrs),
                               rtol=1e-4, atol=1e-5)


def test_pointwise_conv_and_same_padding():
    x, w = randn(1, 8, 7, 7), randn(5, 8, 1, 1)
    np.testing.assert_allclose(Conv(x, w), ort_run('Conv', {'x': x, 'w': w}), rtol=1e-4,
                               atol=1e-5)
    w3 = randn(5, 8, 3, 3)
    attrs = dict(auto_pad='SAME_UPPER', strides=[2, 2])
    np.testing.assert_allclose(Conv(x, w3, **attrs), ort_run('Conv', {'x': x, 'w': w3}, **attrs),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('attrs', [
    dict(mode='nearest', coordinate_transformation_mode='asymmetric', nearest_mode='floor'),
    dict(mode='nearest', coordinate_transformation_mode='half_pixel',
         nearest_mode='round_prefer_ceil'),
    dict(mode='nearest', coordinate_transformation_mode='align_corners',
         nearest_mode='round_prefer_floor'),
    dict(mode='linear', coordinate_transformation_mode='half_pixel'),
    dict(mode='linear', coordinate_transformation_mode='pytorch_half_pixel'),
    dict(mode='linear', coordinate_transformation_mode='align_corners'),
    dict(mode='cubic', coordinate_transformation_mode='half_pixel'),
    dict(mode='cubic', coordinate_transformation_mode='half_pixel', antialias=1),
    dict(mode='linear', coordinate_transformation_mode='half_pixel', antialias=1),
])
@pytest.mark.parametrize('scales', [[1, 1, 2, 2], [1, 1, 0.5, 1.5]])
def test_resize_modes_match_onnxruntime(attrs, scales):
    x = randn(1, 2, 6, 8)
    opset = 18 if 'antialias' in attrs else 17
    scales = np.array(scales, dtype=np.float32)
    want = ort_run('Resize', {'x': x, 'roi': None, 'scales': scales}, opset=opset, **attrs)
    np.testing.assert_allclose(Resize(x, None, scales, **attrs), want, rtol=1e-4, atol=1e-5)


def test_resize_sizes_and_yolov8_upsample():
    x = randn(1, 4, 20, 20)
    y = Resize(x, scales=np.array([1, 1, 2, 2], np.float32), mode='nearest',
               coordinate_transformation_mode='asymmetric', nearest_mode='floor')
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    z = Resize(x, sizes=np.array([1, 4, 30, 10], np.int64), mode='linear')
    assert z.shape == (1, 4, 30, 10) and z.dtype == np.float32


def test_unimplemented_attribute_value_names_it():
    node = Node('Resize', 'up1', ['x', '', 's'], ['y'], {'mode': 'area'})
    with pytest.raises(UnsupportedOpError, match="mode='area'") as err:
        run_node(node, [randn(1, 1, 4, 4), None, np.array([1, 1, 2, 2], np.float32)])
    assert "'up1'" in str(err.value)


def test_unknown_attribute_names_it():
    node = Node('Relu', 'r', ['x'], ['y'], {'bogus': 3})
    with pytest.raises(UnsupportedOpError, match="'bogus'"):
        run_node(node, [randn(2)])


def test_unknown_op_names_op_and_node():
    node = Node('FancyOp', 'layer7/fancy', ['x'], ['y'], {})
    with pytest.raises(UnsupportedOpError) as err:
        run_node(node, [randn(2)])
    message = str(err.value)
    assert "'FancyOp'" in message and "'layer7/fancy'" in message and 'Conv' in message


def test_split_defaults_to_node_output_count():
    node = Node('Split', 's', ['x'], ['a', 'b', 'c'], {'axis': 1})
    parts = run_node(node, [randn(1, 6, 2)])
    assert [p.shape for p in parts] == [(1, 2, 2)] * 3


def test_dropout_mask_only_when_asked():
    x = randn(3, 4)
    assert len(run_node(Node('Dropout', 'd', ['x'], ['y'], {}), [x])) == 1
    y, mask = run_node(Node('Dropout', 'd', ['x'], ['y', 'm'], {}), [x])
    assert y is x and mask.all()


def test_shape_ops_give_int64():
    x = randn(2, 3, 4)
    assert OPS['Shape'](x).dtype == np.int64
    assert OPS['Shape'](x, start=1).tolist() == [3, 4]
    assert OPS['Range'](np.int64(0), np.int64(5), np.int64(2)).dtype == np.int64


ACTIVATIONS = [
    ('', {}, lambda y: y),
    ('Relu', {}, ew.Relu),
    ('LeakyRelu', {'alpha': 0.1}, lambda y: ew.LeakyRelu(y, alpha=0.1)),
    ('Sigmoid', {}, ew.Sigmoid),
    ('SiLU', {}, lambda y: ew.Mul(y, ew.Sigmoid(y))),
    ('HardSwish', {}, ew.HardSwish),
    ('HardSigmoid', {'alpha': 0.3, 'beta': 0.4},
     lambda y: ew.HardSigmoid(y, alpha=0.3, beta=0.4)),
    ('Clip', {'clip_min': 0.0, 'clip_max': 6.0},
     lambda y: ew.Clip(y, np.float32(0), np.float32(6))),
    ('Tanh', {}, ew.Tanh),
]


@pytest.mark.parametrize('name,params,act', ACTIVATIONS, ids=[a[0] or 'none' for a in ACTIVATIONS])
@pytest.mark.parametrize('after', [0, 1])
def test_fused_conv_equals_composition(name, params, act, after):
    x, w, b = randn(1, 4, 8, 8), randn(6, 4, 3, 3), randn(6)
    conv = dict(pads=[1, 1, 1, 1], strides=[2, 2]) if after else dict(pads=[0, 1, 2, 1])
    base = Conv(x, w, b, **conv)
    r = randn(*base.shape)
    node = Node('FusedConv', 'f', ['x', 'w', 'b', 'r'], ['y'],
                dict(conv, activation=name, residual_after_act=after, **params))
    (got,) = run_node(node, [x, w, b, r])
    want = ew.Add(act(base), r) if after else act(ew.Add(base, r))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32


def test_fused_conv_without_residual_and_unknown_activation():
    x, w = randn(1, 2, 5, 5), randn(3, 2, 1, 1)
    np.testing.assert_allclose(FusedConv(x, w, activation='Relu'), ew.Relu(Conv(x, w)))
    with pytest.raises(UnsupportedOpError, match='Gelu'):
        run_node(Node('FusedConv', 'f', ['x', 'w'], ['y'], {'activation': 'Gelu'}), [x, w])


def test_constant_attribute_kinds():
    tensor = numpy_helper.to_array(numpy_helper.from_array(np.arange(3, dtype=np.int32)))
    assert OPS['Constant'](value=tensor).dtype == np.int32
    assert OPS['Constant'](value_float=1.5).dtype == np.float32
    assert OPS['Constant'](value_ints=[1, 2]).dtype == np.int64
