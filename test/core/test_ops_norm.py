"""Normalisation and spatial-sampling ops through the real importer and the engine (numpy and
ort backends), against ONNX Runtime on the original model; and the import-time refusal of a
shape-setting input that is not a constant.

Each model puts the op between real ops (Conv, Relu, Add), with fixed seeded inputs.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.ops import run_node
from tx2_infer_core.passes import optimize
from tx2_infer_core.planner import ALIGNMENT, plan_memory

ort = pytest.importorskip('onnxruntime')
RNG = np.random.default_rng(0)
F32 = TensorProto.FLOAT


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make_model(nodes, inputs, weights, opset, outputs=('y',)):
    """A model of ``nodes``; ``inputs`` maps name -> example array, ``weights`` name -> array."""
    graph = helper.make_graph(
        nodes, 'g',
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(name, F32, None) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def conv_weights(c_in, c_out):
    return {'w': randn(c_out, c_in, 3, 3) * 0.3, 'b': randn(c_out)}


CONV = helper.make_node('Conv', ['x', 'w', 'b'], ['c'], pads=[1, 1, 1, 1])


def assert_engines_match(model, feeds, rtol=1e-4, atol=1e-5):
    """The numpy and ort engines on the imported model give ONNX Runtime's outputs."""
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    graph, _ = optimize(graph_from_model(model, source='op_test.onnx'))
    plan = plan_memory(graph, ALIGNMENT)
    options = {'precision': 'fp32', 'backend': 'cpu', 'model': 'op_test'}
    for backend in ('numpy', 'ort'):
        got = Engine(graph, plan, options, backend).run(feeds)
        for name, array in want.items():
            np.testing.assert_allclose(got[name], array, rtol=rtol, atol=atol,
                                       err_msg=f'{backend} backend, output {name}')


@pytest.mark.parametrize('opset, per', [(21, 'channel'), (18, 'group')])
def test_conv_group_norm_relu(opset, per):
    """Conv -> GroupNormalization -> Relu; opset 18 scales per group, 21 per channel."""
    size = 8 if per == 'channel' else 4
    weights = dict(conv_weights(3, 8), s=randn(size) + 1, t=randn(size))
    nodes = [CONV, helper.make_node('GroupNormalization', ['c', 's', 't'], ['n'], num_groups=4,
                                    epsilon=1e-3),
             helper.make_node('Relu', ['n'], ['y'])]
    x = randn(2, 3, 12, 10)
    assert_engines_match(make_model(nodes, {'x': x}, weights, opset), {'x': x})


@pytest.mark.parametrize('op, attrs', [
    ('MeanVarianceNormalization', {}),
    ('MeanVarianceNormalization', {'axes': [2, 3]}),
    ('LpNormalization', {'axis': 1, 'p': 2}),
    ('LpNormalization', {'axis': -1, 'p': 1}),
    ('GlobalLpPool', {'p': 2}),
    ('GlobalLpPool', {'p': 3}),
])
def test_conv_norm_add(op, attrs):
    """Conv -> op -> Add (a broadcasting residual)."""
    nodes = [CONV, helper.make_node(op, ['c'], ['n'], **attrs),
             helper.make_node('Add', ['n', 'x0'], ['y'])]
    weights = dict(conv_weights(3, 4), x0=randn(1, 4, 1, 1))
    x = randn(1, 3, 9, 11)
    assert_engines_match(make_model(nodes, {'x': x}, weights, 18), {'x': x})


def test_rms_normalization_matches_onnxruntime():
    """RMSNormalization is opset 23, past the importer's opsets: the op alone, against ORT."""
    x, scale = randn(2, 5, 16), randn(16)
    for axis in (-1, 1):
        node = helper.make_node('RMSNormalization', ['x', 's'], ['y'], axis=axis, epsilon=1e-3)
        s = scale if axis == -1 else randn(5, 16)
        model = make_model([node], {'x': x, 's': s}, {}, 23)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=['CPUExecutionProvider'])
        want = session.run(None, {'x': x, 's': s})[0]
        got = run_node(Node('RMSNormalization', 'n', ['x', 's'], ['y'],
                            {'axis': axis, 'epsilon': 1e-3}), [x, s])[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def rotation(angle, scale, shift):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[[c, -s, shift], [s, c, -shift]]], np.float32)


@pytest.mark.parametrize('mode, padding, align, opset', [
    ('linear', 'zeros', 0, 20), ('linear', 'border', 1, 20), ('nearest', 'reflection', 0, 20),
    ('nearest', 'zeros', 1, 20), ('cubic', 'reflection', 1, 20), ('cubic', 'zeros', 0, 20),
    ('bilinear', 'reflection', 0, 16), ('bicubic', 'zeros', 0, 16)])
def test_affine_grid_sample_warp(mode, padding, align, opset):
    """A real-sized 1x3x64x64 image warped by GridSample along an AffineGrid of a runtime
    theta (rotated, zoomed out and shifted: part of it samples outside the image)."""
    x, theta = randn(1, 3, 64, 64), rotation(0.4, 1.3, 0.2)
    if opset < 20:      # AffineGrid is opset 20: the older form takes a ready grid
        nodes, inputs = [], {'x': x, 'grid': RNG.uniform(-1.3, 1.3, (1, 64, 64, 2)).astype(
            np.float32)}
    else:
        nodes, inputs = [helper.make_node('AffineGrid', ['theta', 'size'], ['grid'],
                                          align_corners=align)], {'x': x, 'theta': theta}
    nodes += [helper.make_node('Relu', ['x'], ['r']),
              helper.make_node('GridSample', ['r', 'grid'], ['g'], mode=mode,
                               padding_mode=padding, align_corners=align),
              helper.make_node('Add', ['g', 'r'], ['y'])]
    model = make_model(nodes, inputs, {'size': np.array([1, 3, 64, 64], np.int64)}, opset)
    assert_engines_match(model, inputs, atol=1e-4)


def test_cubic_border_follows_the_onnx_reference():
    """Cubic sampling with border padding moves an out-of-bound point onto the border first
    (the ONNX spec and reference); ONNX Runtime clamps only the taps, so it is not the
    oracle here."""
    x, grid = randn(1, 2, 6, 5), RNG.uniform(-1.6, 1.6, (1, 7, 9, 2)).astype(np.float32)
    for align in (0, 1):
        node = helper.make_node('GridSample', ['x', 'g'], ['y'], mode='cubic',
                                padding_mode='border', align_corners=align)
        model = make_model([node], {'x': x, 'g': grid}, {}, 20)
        want = ReferenceEvaluator(model).run(None, {'x': x, 'g': grid})[0]
        got = run_node(Node('GridSample', 'n', ['x', 'g'], ['y'], dict(
            mode='cubic', padding_mode='border', align_corners=align)), [x, grid])[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('attrs, opset', [
    ({'mode': 'avg', 'coordinate_transformation_mode': 'half_pixel', 'sampling_ratio': 2}, 16),
    ({'mode': 'avg', 'coordinate_transformation_mode': 'output_half_pixel'}, 16),
    ({'mode': 'max', 'sampling_ratio': 1, 'spatial_scale': 0.5}, 16),
    ({'mode': 'avg', 'spatial_scale': 0.5}, 13),    # RoiAlign-10: output_half_pixel
])
def test_conv_roi_align_relu(attrs, opset):
    """Conv -> RoiAlign over boxes of two images (one partly outside) -> Relu."""
    rois = np.array([[1, 1, 9, 7], [0, 0, 15, 15], [3.3, 2.7, 5.1, 12.9], [-3, 8, 6, 19]],
                    np.float32) * (2 if attrs.get('spatial_scale') else 1)
    weights = dict(conv_weights(3, 5), rois=rois, bi=np.array([0, 1, 1, 0], np.int64))
    nodes = [CONV, helper.make_node('RoiAlign', ['c', 'rois', 'bi'], ['r'], output_height=3,
                                    output_width=4, **attrs),
             helper.make_node('Relu', ['r'], ['y'])]
    x = randn(2, 3, 16, 16)
    assert_engines_match(make_model(nodes, {'x': x}, weights, opset), {'x': x})


def test_conv_max_roi_pool():
    """Conv -> MaxRoiPool (boxes rounded to pixels, one half outside) -> Relu."""
    rois = np.array([[0, 1, 1, 9, 7], [1, 0, 0, 15, 15], [1, 3.4, 2.6, 5.5, 12.9],
                     [0, -4, 8, 6, 19]], np.float32)
    weights = dict(conv_weights(3, 5), rois=rois)
    nodes = [CONV, helper.make_node('MaxRoiPool', ['c', 'rois'], ['r'], pooled_shape=[3, 2],
                                    spatial_scale=1.0),
             helper.make_node('Relu', ['r'], ['y'])]
    x = randn(2, 3, 16, 16)
    assert_engines_match(make_model(nodes, {'x': x}, weights, 13), {'x': x})


def unpool_indices(shape, kernel):
    """Flat indices (over the whole N, C, H, W tensor) of one random pixel per window."""
    n, c, h, w = shape
    rows = np.arange(h // kernel)[:, None] * kernel + RNG.integers(0, kernel, (h // kernel, 1))
    cols = np.arange(w // kernel) * kernel + RNG.integers(0, kernel, w // kernel)
    plane = rows * w + cols
    return (np.arange(n * c).reshape(n, c, 1, 1) * h * w + plane).astype(np.int64)


@pytest.mark.parametrize('size, given', [(9, True), (8, False)])
def test_max_unpool_to_the_shape_of_its_input(size, given):
    """x -> MaxPool -> MaxUnpool (output_shape = Shape(x), an odd size; or the default) ->
    Add x."""
    x = randn(1, 2, size, size)
    nodes = [helper.make_node('MaxPool', ['x'], ['p'], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node('Shape', ['x'], ['s']),
             helper.make_node('MaxUnpool', ['p', 'i', 's'] if given else ['p', 'i'], ['u'],
                              kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node('Add', ['u', 'x'], ['y'])]
    weights = {'i': unpool_indices((1, 2, 8, 8), 2)}
    assert_engines_match(make_model(nodes, {'x': x}, weights, 13), {'x': x})


@pytest.mark.parametrize('attrs', [{}, {'strides': [2, 1], 'pads': [1, 0, 1, 2]},
                                   {'dilations': [2, 2]}])
def test_col2im_between_relus(attrs):
    """cols -> Relu -> Col2Im (3 channels, 2x3 blocks, overlapping) -> Relu."""
    image, block = [7, 8], [2, 3]
    strides, dilations = attrs.get('strides', [1, 1]), attrs.get('dilations', [1, 1])
    pads = attrs.get('pads', [0, 0, 0, 0])
    count = [(image[i] + pads[i] + pads[i + 2] - dilations[i] * (block[i] - 1) - 1)
             // strides[i] + 1 for i in range(2)]
    x = randn(1, 3 * 6, count[0] * count[1])
    nodes = [helper.make_node('Relu', ['x'], ['r']),
             helper.make_node('Col2Im', ['r', 'image', 'block'], ['c'], **attrs),
             helper.make_node('Relu', ['c'], ['y'])]
    weights = {'image': np.array(image, np.int64), 'block': np.array(block, np.int64)}
    assert_engines_match(make_model(nodes, {'x': x}, weights, 18), {'x': x})


def test_center_crop_pad_between_convs():
    """Conv -> CenterCropPad (crop H by an odd amount, pad W) -> Relu."""
    weights = dict(conv_weights(3, 4), shape=np.array([13, 21], np.int64))
    nodes = [CONV, helper.make_node('CenterCropPad', ['c', 'shape'], ['p'], axes=[-2, -1]),
             helper.make_node('Relu', ['p'], ['y'])]
    x = randn(1, 3, 20, 16)
    assert_engines_match(make_model(nodes, {'x': x}, weights, 18), {'x': x})


@pytest.mark.parametrize('op, inputs, attrs', [
    ('MaxUnpool', ['x', 'i', 'n'], {'kernel_shape': [2, 2], 'strides': [2, 2]}),
    ('CenterCropPad', ['x', 'n'], {}),
])
def test_runtime_shape_input_is_refused(op, inputs, attrs):
    """An output shape from a runtime input cannot be planned: refused at import, named."""
    x = randn(1, 2, 4, 4)
    nodes = [helper.make_node(op, inputs, ['y'], **attrs)]
    model = make_model(nodes, {'x': x, 'n': np.array([1, 2, 8, 8], np.int64)},
                       {'i': unpool_indices((1, 2, 8, 8), 2)}, 18)
    refusal = f"'{op}'.*input {len(inputs) - 1} \\('n'\\) must be a constant"
    with pytest.raises(UnsupportedOpError, match=refusal):
        graph_from_model(model, source='op_test.onnx')


def test_opset_18_forms_export_together():
    """An opset 18 model with a per-group GroupNormalization, a default RoiAlign and an opset
    16 GridSample mode: the import settles them into one form, so the ort backend's export
    finds an opset for all of them (21)."""
    rois = np.array([[1, 1, 9, 7], [0, 0, 15, 15]], np.float32)
    grid = RNG.uniform(-1.2, 1.2, (2, 5, 5, 2)).astype(np.float32)
    weights = dict(conv_weights(3, 4), s=randn(2), t=randn(2), rois=rois, grid=grid,
                   bi=np.array([0, 1], np.int64))
    nodes = [CONV, helper.make_node('GroupNormalization', ['c', 's', 't'], ['n'], num_groups=2),
             helper.make_node('RoiAlign', ['n', 'rois', 'bi'], ['r'], output_height=5,
                              output_width=5),
             helper.make_node('GridSample', ['r', 'grid'], ['y'], mode='bilinear',
                              padding_mode='border')]
    x = randn(2, 3, 16, 16)
    assert_engines_match(make_model(nodes, {'x': x}, weights, 18), {'x': x})
