"""IR -> ONNX export: onnx.checker, ONNX Runtime, and round trips through our importer."""
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tx2_infer_core import assets, darknet
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_export import export_opset, save_onnx, to_onnx


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def photo_blob(name, size=416):
    image = cv2.imread(str(assets.fetch(name)))
    return cv2.dnn.blobFromImage(image, 1 / 255, (size, size), swapRB=True, crop=False)


def require_reference_ops(op_types):
    from tx2_infer_core.ops.registry import OPS
    missing = set(op_types) - set(OPS)
    if missing:
        pytest.skip(f'reference ops not registered yet (the importer infers shapes with them): '
                    f'{sorted(missing)}')


@pytest.fixture(scope='module')
def tiny_graph():
    cfg, weights, names = assets.yolov3_tiny()
    return darknet.load_darknet(cfg, weights, names_path=names)


def test_darknet_export_is_checked_and_runs(tiny_graph, tmp_path):
    path = save_onnx(tiny_graph, tmp_path / 'tiny.onnx')
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == tiny_graph.outputs
    assert len(model.graph.initializer) == len(tiny_graph.weights)
    assert {v.name for v in model.graph.value_info} >= {'leaky_0', 'pool_11', 'route_20'}
    pool = next(n for n in model.graph.node if n.name == 'pool_11')
    assert onnx.helper.get_attribute_value(pool.attribute[1]) == [0, 0, 1, 1]
    out = run_ort(model, {'images': photo_blob('dog.jpg')})
    assert out['conv_15'].shape == (1, 255, 13, 13) and np.isfinite(out['conv_22']).all()


def test_round_trip_darknet(tiny_graph):
    """import(export(g)) gives the same graph and the same ONNX Runtime outputs."""
    from tx2_infer_core.onnx_import import graph_from_model
    require_reference_ops(n.op for n in tiny_graph.nodes)
    first = to_onnx(tiny_graph)
    again = graph_from_model(first, source='tiny.onnx')

    def key(g):     # any topological order is fine; float attributes are float32 in ONNX
        return sorted((n.name, n.op, n.inputs, n.outputs, str(sorted(
            (k, np.float32(v) if isinstance(v, float) else v) for k, v in n.attrs.items())))
            for n in g.nodes)
    assert key(again) == key(tiny_graph)
    assert all(again.values[k].shape == v.shape for k, v in tiny_graph.values.items())
    x = {'images': photo_blob('bus.jpg')}
    expected, got = run_ort(first, x), run_ort(to_onnx(again), x)
    for name in tiny_graph.outputs:
        np.testing.assert_array_equal(got[name], expected[name])


def test_round_trip_real_onnx_model():
    """A full YOLOv8 graph (Split, Softmax DFL head, Resize, ...) survives import and export."""
    from tx2_infer_core.onnx_import import load_onnx
    path = assets.fetch('yolov8-fall.onnx')
    original = onnx.load(str(path))
    require_reference_ops({n.op_type for n in original.graph.node} - {'Constant'})
    graph = load_onnx(path, input_shape=(1, 3, 640, 640))
    opset = next(o.version for o in original.opset_import if o.domain in ('', 'ai.onnx'))
    x = {'images': photo_blob('bus.jpg', 640)}
    expected, got = run_ort(original, x), run_ort(to_onnx(graph, opset), x)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5)


# --- FusedConv is expanded back into Conv, Add and the activation ------------------------------

ACTIVATIONS = {
    '': (lambda y: y, {}),
    'Relu': (lambda y: np.maximum(y, 0), {}),
    'LeakyRelu': (lambda y: np.where(y > 0, y, 0.1 * y), {'alpha': 0.1}),
    'Sigmoid': (lambda y: 1 / (1 + np.exp(-y)), {}),
    'Tanh': (np.tanh, {}),
    'SiLU': (lambda y: y / (1 + np.exp(-y)), {}),
    'HardSwish': (lambda y: y * np.clip(y / 6 + 0.5, 0, 1), {}),
    'HardSigmoid': (lambda y: np.clip(0.2 * y + 0.5, 0, 1), {}),
    'Clip': (lambda y: np.clip(y, 0, 6), {'clip_min': 0.0, 'clip_max': 6.0}),
    'Mish': (lambda y: y * np.tanh(np.log1p(np.exp(y))), {}),
}


def _conv_graph(tiny_graph, op, attrs, with_residual):
    """A one-node graph on the real first convolution of YOLOv3-tiny (weights and BN beta)."""
    weights = {'w': tiny_graph.weights['conv_0.weight'], 'b': tiny_graph.weights['bn_0.bias']}
    inputs = ['x', 'w', 'b'] + (['r'] if with_residual else [])
    values = {n: Value(n, (1, 3 if n == 'x' else 16, 64, 64), 'float32', 'NCHW')
              for n in ('x', 'r', 'y')}
    conv = {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1], 'strides': [1, 1]}
    node = Node(op, 'fc', inputs, ['y'], {**conv, **attrs})
    graph_inputs = ['x', 'r'] if with_residual else ['x']
    return Graph([node], graph_inputs, ['y'], {k: values[k] for k in graph_inputs + ['y']},
                 weights)


@pytest.mark.parametrize('after', [0, 1])
@pytest.mark.parametrize('activation', sorted(ACTIVATIONS))
def test_fused_conv_expansion(tiny_graph, activation, after):
    fn, extra = ACTIVATIONS[activation]
    crop = photo_blob('dog.jpg')[:, :, 200:264, 100:164]
    feeds = {'x': crop, 'r': run_ort(to_onnx(_conv_graph(tiny_graph, 'Conv', {}, False)),
                                     {'x': photo_blob('kite.jpg')[:, :, :64, :64]})['y']}
    conv = run_ort(to_onnx(_conv_graph(tiny_graph, 'Conv', {}, False)), {'x': crop})['y']
    attrs = {'activation': activation, 'residual_after_act': after, **extra}
    fused = _conv_graph(tiny_graph, 'FusedConv', attrs, True)
    got = run_ort(to_onnx(fused), feeds)['y']
    expected = fn(conv) + feeds['r'] if after else fn(conv + feeds['r'])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_internal_ops_fail_loudly(tiny_graph):
    bad = _conv_graph(tiny_graph, 'FusedConv', {'activation': 'Gelu'}, False)
    with pytest.raises(UnsupportedOpError, match="'FusedConv' at node 'fc'.*Gelu"):
        to_onnx(bad)
    other = _conv_graph(tiny_graph, 'Conv', {}, False)
    other.nodes[0].op = 'tx2::Mystery'
    with pytest.raises(UnsupportedOpError, match="'tx2::Mystery' at node 'fc'"):
        to_onnx(other)


@pytest.mark.parametrize('model', ['yolov3-tiny', 'yolov8-fall'])
def test_optimised_graph_exports(tiny_graph, model):
    """Graphs after our passes (FusedConv, residual fusion) run in ONNX Runtime, unchanged."""
    from tx2_infer_core.onnx_import import load_onnx
    from tx2_infer_core.passes import optimize
    if model == 'yolov3-tiny':
        graph, x = tiny_graph, {'images': photo_blob('dog.jpg')}
    else:
        require_reference_ops({n.op_type for n in onnx.load(
            str(assets.fetch('yolov8-fall.onnx'))).graph.node} - {'Constant'})
        graph = load_onnx(assets.fetch('yolov8-fall.onnx'), input_shape=(1, 3, 640, 640))
        x = {'images': photo_blob('bus.jpg', 640)}
    optimised, report = optimize(graph)
    assert any(n.op == 'FusedConv' for n in optimised.nodes), report
    expected, got = run_ort(to_onnx(graph), x), run_ort(to_onnx(optimised), x)
    for name, value in expected.items():
        err = np.abs(got[name] - value).max() / np.abs(value).max()
        assert err <= 1e-4, (name, err)


# --- lone internal activations and the opset the nodes are written for -----------------------

@pytest.mark.parametrize('op', ['SiLU', 'Mish'])
def test_lone_internal_activations_export(op):
    """SiLU (internal) and Mish (ONNX opset 18) are written as standard ops below opset 18."""
    values = {n: Value(n, (1, 4, 8, 8), 'float32', 'NCHW') for n in 'xy'}
    graph = Graph([Node(op, 'act', ['x'], ['y'], {})], ['x'], ['y'], values, {})
    assert export_opset(graph) == 13
    x = np.linspace(-6, 6, 256, dtype=np.float32).reshape(1, 4, 8, 8)
    expected = x * (1 / (1 + np.exp(-x)) if op == 'SiLU' else np.tanh(np.log1p(np.exp(x))))
    got = run_ort(to_onnx(graph), {'x': x})['y']
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if op == 'Mish':
        native = to_onnx(graph, 18)
        assert [n.op_type for n in native.graph.node] == ['Mish']
        np.testing.assert_allclose(run_ort(native, {'x': x})['y'], expected, rtol=1e-5,
                                   atol=1e-6)


def _one_node_graph(op, inputs, attrs, weights=None):
    names = [i for i in inputs if i and i not in (weights or {})]
    values = {n: Value(n, (1, 4, 8, 8), 'float32', 'NCHW') for n in names + ['y']}
    return Graph([Node(op, op.lower(), inputs, ['y'], attrs)], names, ['y'], values,
                 weights or {})


@pytest.mark.parametrize('op, inputs, attrs, weights, opset', [
    ('Relu', ['x'], {}, None, 13),
    ('HardSwish', ['x'], {}, None, 14),                     # new in opset 14
    ('ReduceMean', ['x'], {'axes': [1], 'keepdims': 1}, None, 13),
    ('ReduceMean', ['x', 'a'], {'keepdims': 1}, {'a': np.array([1])}, 18),  # axes input: 18+
    ('ReduceSum', ['x'], {'axes': [1], 'keepdims': 1}, None, 12),      # axes attribute: < 13
    ('Squeeze', ['x'], {'axes': [0]}, None, 12),
    ('Unsqueeze', ['x', 'a'], {}, {'a': np.array([0])}, 13),
])
def test_export_opset_follows_the_node_forms(op, inputs, attrs, weights, opset):
    assert export_opset(_one_node_graph(op, inputs, attrs, weights)) == opset


def test_export_opset_refuses_nodes_of_two_eras():
    old = _one_node_graph('ReduceSum', ['x'], {'axes': [1], 'keepdims': 1})
    new = _one_node_graph('HardSwish', ['x'], {})
    new.nodes[0].inputs, new.nodes[0].outputs = ['y'], ['z']
    old.nodes.append(new.nodes[0])
    old.values['z'] = Value('z', (1, 1, 8, 8), 'float32', 'NCHW')
    old.outputs = ['z']
    with pytest.raises(UnsupportedOpError, match='no ONNX opset fits every node'):
        export_opset(old)


@pytest.mark.parametrize('dtype, opset', [('float32', 13), ('uint8', 14), ('int8', 14),
                                          ('uint16', 14), ('int32', 13)])
def test_export_opset_follows_the_input_types(dtype, opset):
    """Add takes (u)int8 and (u)int16 from opset 14 only: a graph adding them must be written
    for 14, and ONNX Runtime must then run it to numpy's answer (it refuses it at 13)."""
    graph = _one_node_graph('Add', ['x', 'b'], {})
    for name in ('x', 'b', 'y'):
        graph.values[name] = Value(name, (2, 3), dtype, '')
    graph.inputs = ['x', 'b']
    assert export_opset(graph) == opset
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    b = np.full((2, 3), 3, dtype)
    got = run_ort(to_onnx(graph), {'x': x, 'b': b})['y']
    np.testing.assert_array_equal(got, x + b)
