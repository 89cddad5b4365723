"""Graph passes keep the outputs (real weights, real photos) and decline when unsafe.

Small hand-built graphs use real weight slices from YOLOv8 and YOLOv3-tiny, compared with the
unoptimised graph through the reference interpreter; ``test_passes_models.py`` optimises the
three real models whole.
"""
import logging

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tx2_infer_core import assets, detect, reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node
from tx2_infer_core.ops.conv import ConvTranspose
from tx2_infer_core.passes.weights import fuse_conv_transpose_bn_weights
from tx2_infer_core.passes import (PIPELINES, fold_batchnorm, fold_constants,
                                   fuse_conv_activation, fuse_conv_bn_weights, fuse_residual_add,
                                   infer_layouts, optimize, remove_noops, sink_transposes)

CONV3 = {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1], 'strides': [1, 1]}


def photo(name, shape):
    image = cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR)
    return detect.preprocess(image, shape)[0]


def rel_error(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def assert_same_outputs(graph, optimised, feeds, tol=1e-4):
    before, after = reference.execute(graph, feeds), reference.execute(optimised, feeds)
    assert list(after) == list(before)
    for name in before:
        assert after[name].shape == before[name].shape
        assert rel_error(after[name], before[name]) <= tol, name


def tiny(nodes, weights, outputs, in_shape=(1, 3, 32, 32)):
    """A graph reading ``images`` with shapes filled in by the reference interpreter."""
    graph = Graph(nodes, ['images'], outputs, {'images': Value('images', in_shape)},
                  dict(weights), 'tiny')
    reference.infer_shapes(graph)
    return graph


def conv(name, x, w, b=''):
    return Node('Conv', name, [x, w] + ([b] if b else []), [name], dict(CONV3))


def silu(x, name):
    return [Node('Sigmoid', f'{name}.sig', [x], [f'{name}.s']),
            Node('Mul', name, [x, f'{name}.s'], [name])]


@pytest.fixture(scope='module')
def v8_stem(yolov8):
    """images -> conv(3->32) SiLU -> conv(32->32) SiLU = 'x' (YOLOv8 stem and bottleneck cv1)."""
    w = {k: yolov8.weights[k] for k in yolov8.weights if k.startswith(('model.0.', 'model.2.m.0'))}
    nodes = ([conv('c0', 'images', 'model.0.conv.weight', 'model.0.conv.bias')]
             + silu('c0', 'a0')
             + [conv('c1', 'a0', 'model.2.m.0.cv1.conv.weight', 'model.2.m.0.cv1.conv.bias')]
             + silu('c1', 'x'))
    return nodes, w


def test_fuse_conv_bn_weights_matches_unfused_composition(yolov3):
    w, g = yolov3.weights['conv_2.weight'], yolov3.weights
    bn = [g[f'bn_2.{k}'] for k in ('scale', 'bias', 'mean', 'var')]
    x = photo('dog.jpg', (1, 3, 24, 24))
    x = np.concatenate([x] * 6, axis=1)[:, :16].astype(np.float64)
    conv_node = Node('Conv', 'c', [], ['y'], dict(CONV3))
    unfused = run_node(Node('BatchNormalization', 'bn', [], ['z'], {'epsilon': 1e-5}),
                       [run_node(conv_node, [x, w.astype(np.float64)])[0]]
                       + [p.astype(np.float64) for p in bn])[0]
    fw, fb = fuse_conv_bn_weights(w.astype(np.float64), None, *bn, 1e-5)
    fused = run_node(conv_node, [x, fw, fb])[0]
    assert rel_error(fused, unfused) < 1e-12
    fw32, fb32 = fuse_conv_bn_weights(w, np.zeros(32, np.float32), *bn, 1e-5)
    assert fw32.dtype == np.float32 and fb32.dtype == np.float32
    assert np.allclose(fw32, fw, rtol=1e-6) and np.allclose(fb32, fb, rtol=1e-6, atol=1e-6)


def _conv_bn_leaky(yolov3, outputs):
    w = {k: yolov3.weights[k] for k in yolov3.weights if k.endswith(('_0.weight',))
         or k.startswith('bn_0.')}
    nodes = [Node('Conv', 'conv', ['images', 'conv_0.weight'], ['y'], dict(CONV3)),
             Node('BatchNormalization', 'bn', ['y', 'bn_0.scale', 'bn_0.bias', 'bn_0.mean',
                                               'bn_0.var'], ['z'], {'epsilon': 1e-5}),
             Node('LeakyRelu', 'leaky', ['z'], ['out'], {'alpha': 0.1})]
    return tiny(nodes, w, outputs)


def test_conv_bn_leaky_becomes_one_fused_conv(yolov3):
    graph = _conv_bn_leaky(yolov3, ['out'])
    optimised, report = optimize(graph)
    assert report['fold_batchnorm'] == 1 and report['fuse_conv_activation'] == 1
    assert [n.op for n in optimised.nodes] == ['FusedConv']
    node = optimised.nodes[0]
    assert node.attrs['activation'] == 'LeakyRelu' and node.attrs['alpha'] == 0.1
    assert node.outputs == ['out'] and optimised.outputs == ['out']
    assert [n.op for n in graph.nodes] == ['Conv', 'BatchNormalization', 'LeakyRelu']
    assert_same_outputs(graph, optimised, {'images': photo('dog.jpg', (1, 3, 32, 32))})


@pytest.mark.parametrize('epsilon', [1e-3, 1e-1])
def test_batchnorm_fold_keeps_epsilon(yolov3, epsilon):
    # Guards against a fold that drops epsilon or misplaces it (sqrt(var) + eps): YOLOv3-tiny's
    # first BN has variances down to 0.013, where eps = 1e-3 (YOLOv8's) moves outputs by ~4%.
    names = ['bn_0.scale', 'bn_0.bias', 'bn_0.mean', 'bn_0.var']
    w = {k: yolov3.weights[k] for k in ['conv_0.weight'] + names}
    nodes = [Node('Conv', 'conv', ['images', 'conv_0.weight'], ['y'], dict(CONV3)),
             Node('BatchNormalization', 'bn', ['y'] + names, ['z'], {'epsilon': epsilon})]
    graph = tiny(nodes, w, ['z'])
    optimised, report = optimize(graph)
    assert report['fold_batchnorm'] == 1 and [n.op for n in optimised.nodes] == ['FusedConv']
    feeds = {'images': photo('dog.jpg', (1, 3, 32, 32))}
    y = reference.execute(graph, feeds, keep_all=True)['y'].astype(np.float64)
    scale, bias, mean, var = (w[k].astype(np.float64).reshape(1, -1, 1, 1) for k in names)

    def batchnorm(eps):
        return (y - mean) / np.sqrt(var + eps) * scale + bias

    assert rel_error(batchnorm(epsilon), batchnorm(1e-5)) > 1e-2     # epsilon matters here
    assert rel_error(reference.execute(graph, feeds)['z'], batchnorm(epsilon)) <= 1e-5
    assert rel_error(reference.execute(optimised, feeds)['z'], batchnorm(epsilon)) <= 1e-4


def test_fusions_decline_on_graph_outputs_and_shared_values(yolov3):
    graph = _conv_bn_leaky(yolov3, ['out', 'y'])          # conv output is a graph output
    assert fold_batchnorm(graph.copy()) == 0
    graph = _conv_bn_leaky(yolov3, ['out', 'z'])          # BN output is a graph output
    copy = graph.copy()
    assert fold_batchnorm(copy) == 1 and fuse_conv_activation(copy) == 0
    assert [n.op for n in copy.nodes] == ['FusedConv', 'LeakyRelu']
    graph.nodes.append(Node('Relu', 'second_reader', ['y'], ['y2']))
    graph.outputs.append('y2')                            # conv output has two readers
    assert fold_batchnorm(graph.copy()) == 0
    optimised, _ = optimize(graph)
    assert optimised.summary()['BatchNormalization'] == 1
    assert_same_outputs(graph, optimised, {'images': photo('dog.jpg', (1, 3, 32, 32))})


def test_silu_fuses_and_declines_when_sigmoid_is_read_elsewhere(v8_stem):
    nodes, w = v8_stem
    graph = tiny(nodes, w, ['x'])
    optimised, report = optimize(graph)
    assert report['fuse_conv_activation'] == 2
    assert [(n.op, n.attrs['activation']) for n in optimised.nodes] == [('FusedConv', 'SiLU')] * 2
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})
    shared = tiny(nodes, w, ['x', 'x.s'])                 # the sigmoid is also an output
    assert fuse_conv_activation(shared) == 1
    assert shared.summary()['Sigmoid'] == 1


def test_residual_add_yolo_style_adds_after_activation(v8_stem):
    nodes, w = v8_stem
    nodes = nodes + [conv('c2', 'x', 'model.2.m.0.cv2.conv.weight', 'model.2.m.0.cv2.conv.bias')]
    nodes += silu('c2', 'a2') + [Node('Add', 'add', ['x', 'a2'], ['out'])]
    graph = tiny(nodes, w, ['out'])
    optimised, report = optimize(graph)
    assert report['fuse_residual_add'] == 1
    last = optimised.nodes[-1]
    assert last.op == 'FusedConv' and last.inputs[3] == 'x' and last.outputs == ['out']
    assert last.attrs['activation'] == 'SiLU' and last.attrs['residual_after_act'] == 1
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})


def test_residual_add_resnet_style_activation_after_add(v8_stem):
    nodes, w = v8_stem
    nodes = nodes + [conv('c2', 'x', 'model.2.m.0.cv2.conv.weight', 'model.2.m.0.cv2.conv.bias'),
                     Node('Add', 'add', ['c2', 'x'], ['sum']),
                     Node('Relu', 'relu', ['sum'], ['out'])]
    graph = tiny(nodes, w, ['out'])
    optimised, _ = optimize(graph)
    last = optimised.nodes[-1]
    assert len(optimised.nodes) == 3 and last.inputs[3] == 'x'
    assert last.attrs['activation'] == 'Relu' and last.attrs['residual_after_act'] == 0
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})
    graph.outputs.append('c2')                            # conv output read outside the Add
    copy = graph.copy()
    fuse_conv_activation(copy)
    assert fuse_residual_add(copy) == 0


def test_shape_arithmetic_folds_and_noops_go(v8_stem):
    nodes, w = v8_stem
    w = dict(w, zero=np.array(0, np.int64), one=np.array(1, np.int64), axes=np.array([0]),
             minus1=np.array([-1], np.int64))
    nodes = nodes[:3] + [
        Node('Shape', 'shape', ['a0'], ['s']), Node('Gather', 'n', ['s', 'zero'], ['n'],
                                                    {'axis': 0}),
        Node('Gather', 'c', ['s', 'one'], ['c'], {'axis': 0}),
        Node('Unsqueeze', 'un', ['n', 'axes'], ['n1']), Node('Unsqueeze', 'uc', ['c', 'axes'],
                                                             ['c1']),
        Node('Concat', 'cat', ['n1', 'c1', 'minus1'], ['shape4'], {'axis': 0}),
        Node('Reshape', 'flat', ['a0', 'shape4'], ['flat']),
        Node('Identity', 'id', ['flat'], ['id']), Node('Cast', 'cast', ['id'], ['out'], {'to': 1})]
    graph = tiny(nodes, w, ['out'])
    copy = graph.copy()
    assert fold_constants(copy) == 6
    assert list(copy.weights['shape4']) == [1, 32, -1]
    assert remove_noops(copy) == 2
    assert [n.op for n in copy.nodes][-1] == 'Reshape' and copy.nodes[-1].outputs == ['out']
    optimised, _ = optimize(graph)
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})


def _nhwc_wrapped(v8_stem, outputs=('out',)):
    """conv -> Transpose to NHWC -> Add(per-channel bias) -> Relu -> Transpose back (tf2onnx)."""
    nodes, w = v8_stem
    nodes = nodes[:1] + [
        Node('Transpose', 't', ['c0'], ['t'], {'perm': [0, 2, 3, 1]}),
        Node('Add', 'bias', ['t', 'model.0.conv.bias'], ['b']),
        Node('Relu', 'relu', ['b'], ['r']),
        Node('Transpose', 'back', ['r'], ['out'], {'perm': [0, 3, 1, 2]})]
    return tiny(nodes, w, list(outputs))


def test_layout_transposes_cancel_and_the_conv_absorbs_the_rest(v8_stem):
    graph = _nhwc_wrapped(v8_stem)
    optimised, report = optimize(graph)
    assert report['sink_transposes'] == 2
    assert [(n.op, n.attrs['activation']) for n in optimised.nodes] == [('FusedConv', 'Relu')]
    assert optimised.outputs == ['out']
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})
    both = _nhwc_wrapped(v8_stem, ('out', 'r'))          # the NHWC value is an output too
    copy = both.copy()
    assert sink_transposes(copy) == 1 and copy.outputs == ['out', 'r']
    assert_same_outputs(both, copy, {'images': photo('bus.jpg', (1, 3, 32, 32))})
    nodes, w = v8_stem                                   # nothing to cancel: declines
    lone = tiny(nodes[:1] + [Node('Transpose', 't', ['c0'], ['t'], {'perm': [0, 2, 3, 1]}),
                             Node('Relu', 'relu', ['t'], ['out'])], w, ['out'])
    assert sink_transposes(lone) == 0
    assert [n.op for n in lone.nodes] == ['Conv', 'Transpose', 'Relu']


def test_layouts_filled_in_where_unknown(v8_stem):
    graph = _nhwc_wrapped(v8_stem)
    for value in graph.values.values():
        value.layout = ''
    graph.values['images'].layout = 'NCHW'
    infer_layouts(graph)
    layouts = {name: v.layout for name, v in graph.values.items()}
    assert layouts['c0'] == layouts['out'] == 'NCHW'
    assert layouts['t'] == layouts['b'] == layouts['r'] == 'NHWC'


@pytest.mark.parametrize('act, attrs, extra', [
    ('Clip', {}, {'clip_min': 0.0, 'clip_max': 6.0}),
    ('HardSigmoid', {'alpha': 0.25}, {'alpha': 0.25, 'beta': 0.5}),
    ('HardSwish', {}, {}), ('Tanh', {}, {})])
def test_other_activations_fuse(v8_stem, act, attrs, extra):
    nodes, w = v8_stem
    w = dict(w, lo=np.array(0, np.float32), hi=np.array(6, np.float32))
    inputs = ['c0', 'lo', 'hi'] if act == 'Clip' else ['c0']
    graph = tiny(nodes[:1] + [Node(act, 'act', inputs, ['out'], attrs)], w, ['out'])
    optimised, _ = optimize(graph)
    (node,) = optimised.nodes
    assert node.attrs['activation'] == act
    assert {k: node.attrs[k] for k in extra} == extra
    assert_same_outputs(graph, optimised, {'images': photo('bus.jpg', (1, 3, 32, 32))})


def test_noop_before_a_graph_output_keeps_the_output_name(v8_stem):
    nodes, w = v8_stem
    nodes = nodes[:1] + [Node('Dropout', 'drop', ['c0'], ['d']),
                         Node('Identity', 'id', ['d'], ['out'])]
    graph = tiny(nodes, w, ['out'])
    copy = graph.copy()
    assert remove_noops(copy) == 2
    assert [n.outputs for n in copy.nodes] == [['out']] and copy.outputs == ['out']
    passthrough = tiny([Node('Identity', 'id', ['images'], ['out'])], {}, ['out'])
    assert remove_noops(passthrough) == 0                # input and output names both stay


def test_optimize_logs_one_line_per_pass(yolov3, caplog):
    graph = _conv_bn_leaky(yolov3, ['out'])
    with caplog.at_level(logging.INFO, logger='tx2_infer.passes'):
        _, report = optimize(graph)
    lines = [r.getMessage() for r in caplog.records if r.name == 'tx2_infer.passes']
    assert any(line.startswith('fold_batchnorm: 1 rewrites') for line in lines)
    assert len(lines) == len(PIPELINES[2])
    assert set(report) >= {'fold_constants', 'fuse_residual_add'}
    with pytest.raises(ValueError):
        optimize(graph, level=7)


# ConvTranspose: BN and per-channel affine folding, activation fusion, export ---------------

def _convt_graph(x_shape, w, b, attrs, tail):
    """images -> ConvTranspose(w, b) -> 'y' -> ``tail`` nodes (reading 'y'), shapes inferred."""
    weights = {'ct.w': w, **({'ct.b': b} if b is not None else {})}
    inputs = ['images', 'ct.w'] + (['ct.b'] if b is not None else [])
    nodes = [Node('ConvTranspose', 'ct', inputs, ['y'], dict(attrs))] + tail[0]
    return tiny(nodes, {**weights, **tail[1]}, [tail[2]], x_shape)


def _bn_tail(channels, rng, epsilon=1e-3):
    names = ['bn.scale', 'bn.bias', 'bn.mean', 'bn.var']
    params = [rng.standard_normal(channels), rng.standard_normal(channels),
              rng.standard_normal(channels), rng.random(channels) + 0.05]
    weights = {n: p.astype(np.float32) for n, p in zip(names, params)}
    return [Node('BatchNormalization', 'bn', ['y'] + names, ['z'], {'epsilon': epsilon})], \
        weights, 'z'


@settings(max_examples=40, deadline=None)
@given(groups=st.sampled_from([1, 2, 3]), cg=st.integers(1, 4), kg=st.integers(1, 4),
       k=st.integers(1, 4), stride=st.integers(1, 3), pad=st.integers(0, 1),
       out_pad=st.integers(0, 1), bias=st.booleans(), seed=st.integers(0, 99))
def test_conv_transpose_bn_weights_match_the_reference(groups, cg, kg, k, stride, pad, out_pad,
                                                       bias, seed):
    """BatchNormalization(ConvTranspose(x, w, b)) == ConvTranspose(x, w', b') (the numpy
    reference, float64) for groups, kernels, strides, pads and output_padding."""
    rng = np.random.default_rng(seed)
    attrs = dict(group=groups, strides=[stride, stride], pads=[min(pad, k - 1)] * 4,
                 output_padding=[min(out_pad, stride - 1)] * 2)
    x = rng.standard_normal((1, groups * cg, 4, 3))
    w = rng.standard_normal((groups * cg, kg, k, k))
    b = rng.standard_normal(groups * kg) if bias else None
    scale, shift, mean = (rng.standard_normal(groups * kg) for _ in range(3))
    var = rng.random(groups * kg) + 0.05
    unfused = run_node(Node('BatchNormalization', 'bn', [], ['z'], {'epsilon': 1e-3}),
                       [ConvTranspose(x, w, b, **attrs), scale, shift, mean, var])[0]
    w2, b2 = fuse_conv_transpose_bn_weights(w, b, scale, shift, mean, var, 1e-3, groups)
    assert w2.shape == w.shape and b2.shape == (groups * kg,)
    np.testing.assert_allclose(ConvTranspose(x, w2, b2, **attrs), unfused, rtol=1e-9,
                               atol=1e-9)


@pytest.mark.parametrize('groups', [1, 2])
def test_conv_transpose_bn_relu_becomes_one_fused_node(groups):
    rng = np.random.default_rng(groups)
    w = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    b = rng.standard_normal(3 * groups).astype(np.float32)
    nodes, weights, _ = _bn_tail(3 * groups, rng)
    tail = (nodes + [Node('Relu', 'relu', ['z'], ['out'])], weights, 'out')
    attrs = {'strides': [2, 2], 'pads': [1, 1, 1, 1], 'group': groups}
    graph = _convt_graph((1, 4, 5, 6), w, b, attrs, tail)
    optimised, report = optimize(graph)
    assert report['fold_batchnorm'] == 1 and report['fuse_conv_activation'] == 1
    assert [n.op for n in optimised.nodes] == ['FusedConvTranspose']
    node = optimised.nodes[0]
    assert node.attrs['activation'] == 'Relu' and node.attrs['group'] == groups
    assert_same_outputs(graph, optimised, {'images': rng.standard_normal((1, 4, 5, 6)).astype(
        np.float32)}, tol=1e-5)


def test_conv_transpose_folds_per_channel_affine_and_declines_a_shared_output():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    c = rng.standard_normal((1, 6, 1, 1)).astype(np.float32)
    tail = ([Node('Mul', 'mul', ['y', 'c'], ['out'])], {'c': c}, 'out')
    graph = _convt_graph((1, 4, 3, 3), w, None, {'strides': [2, 2], 'group': 2}, tail)
    optimised, report = optimize(graph)
    assert report['fold_scale_shift'] == 1 and [n.op for n in optimised.nodes] == [
        'FusedConvTranspose']
    feeds = {'images': rng.standard_normal((1, 4, 3, 3)).astype(np.float32)}
    assert_same_outputs(graph, optimised, feeds, tol=1e-5)
    nodes, weights, _ = _bn_tail(6, rng)
    shared = _convt_graph((1, 4, 3, 3), w, None, {'strides': [2, 2], 'group': 2},
                          (nodes, weights, 'z'))
    shared.outputs.append('y')                          # the ConvTranspose output is read
    assert fold_batchnorm(shared.copy()) == 0
    optimised, _ = optimize(shared)
    assert [n.op for n in optimised.nodes] == ['FusedConvTranspose', 'BatchNormalization']
    assert_same_outputs(shared, optimised, feeds, tol=1e-5)


def test_fused_conv_transpose_exports_to_onnx_runtime():
    """A FusedConvTranspose (activation and residual) is written back as ConvTranspose,
    LeakyRelu and Add, and ONNX Runtime computes what the reference does."""
    ort = pytest.importorskip('onnxruntime')
    from tx2_infer_core.onnx_export import to_onnx
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    attrs = {'strides': [2, 2], 'pads': [1, 1, 0, 0], 'output_padding': [1, 1]}
    out_shape = ConvTranspose(np.zeros((1, 4, 5, 5), np.float32), w, **attrs).shape
    nodes = [Node('ConvTranspose', 'ct', ['images', 'ct.w'], ['y'], attrs),
             Node('LeakyRelu', 'act', ['y'], ['a'], {'alpha': 0.2}),
             Node('Add', 'add', ['a', 'images2'], ['out'])]
    graph = Graph(nodes, ['images', 'images2'], ['out'],
                  {'images': Value('images', (1, 4, 5, 5)),
                   'images2': Value('images2', out_shape)}, {'ct.w': w}, 'tiny')
    reference.infer_shapes(graph)
    optimised, _ = optimize(graph)
    assert [n.op for n in optimised.nodes] == ['FusedConvTranspose']
    assert optimised.nodes[0].attrs['residual_after_act'] == 1
    feeds = {'images': rng.standard_normal((1, 4, 5, 5)).astype(np.float32),
             'images2': rng.standard_normal(out_shape).astype(np.float32)}
    session = ort.InferenceSession(to_onnx(optimised).SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    got = session.run(None, feeds)[0]
    assert rel_error(got, reference.execute(graph, feeds)['out']) <= 1e-5


def test_bias_add_then_bn_then_relu_after_conv_transpose_is_one_node():
    """paddle2onnx writes ConvTranspose, its bias as an Add, then BN and Relu: the Add folds,
    then the BN behind it, then the Relu fuses (PP-OCRv4 det's head)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 2, 2)).astype(np.float32)
    c = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
    nodes, weights, _ = _bn_tail(4, rng)
    nodes[0].inputs[0] = 'biased'
    tail = ([Node('Add', 'bias', ['y', 'c'], ['biased'])] + nodes
            + [Node('Relu', 'relu', ['z'], ['out'])], {'c': c, **weights}, 'out')
    graph = _convt_graph((1, 6, 4, 5), w, None, {'strides': [2, 2]}, tail)
    optimised, report = optimize(graph)
    assert report['fold_scale_shift'] == 2
    assert [n.op for n in optimised.nodes] == ['FusedConvTranspose']
    assert optimised.nodes[0].attrs['activation'] == 'Relu'
    assert_same_outputs(graph, optimised, {'images': rng.standard_normal((1, 6, 4, 5)).astype(
        np.float32)}, tol=1e-5)
