"""Bad input gets a clear error naming the problem (ONNX files, engine inputs, plan files)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core import assets
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import (InputError, ModelFormatError, PlanFileError,
                                   Tx2InferError, UnsupportedOpError)
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_import import load_onnx


def tiny_model(op='Relu', domain='', opset=13, weight=None):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    inits = []
    if weight is not None:
        inits.append(numpy_helper.from_array(weight, 'w'))
        node = helper.make_node('Add', ['x', 'w'], ['y'], name='add_w')
    else:
        node = helper.make_node(op, ['x'], ['y'], name='the_node', domain=domain)
    graph = helper.make_graph([node], 'tiny', [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def test_truncated_onnx_names_the_file(tmp_path):
    data = assets.fetch('open_nsfw.onnx').read_bytes()
    path = tmp_path / 'cut.onnx'
    path.write_bytes(data[:len(data) // 3])
    with pytest.raises(ModelFormatError, match='cut.onnx'):
        load_onnx(path)


def test_garbage_onnx(tmp_path):
    path = tmp_path / 'garbage.onnx'
    path.write_bytes(b'\xff\x00not a model' * 50)
    with pytest.raises(ModelFormatError, match='not a valid ONNX model'):
        load_onnx(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFormatError, match='not found'):
        load_onnx(tmp_path / 'nope.onnx')


def test_unsupported_op_names_op_node_and_supported_list(tmp_path):
    path = tmp_path / 'custom.onnx'
    onnx.save(tiny_model('NonMaxSuppressionV9'), path)
    with pytest.raises(UnsupportedOpError) as info:
        load_onnx(path)
    message = str(info.value)
    assert "'NonMaxSuppressionV9'" in message and "'the_node'" in message
    assert 'Conv' in message and 'Relu' in message


def test_opset_out_of_range(tmp_path):
    path = tmp_path / 'old.onnx'
    onnx.save(tiny_model(opset=6), path)   # 7..10 are upgraded on import (test_zoo.py)
    with pytest.raises(ModelFormatError, match='opset 6'):
        load_onnx(path)


def _external_model(tmp_path, location):
    model = tiny_model(weight=np.arange(4, dtype=np.float32).reshape(1, 4))
    tensor = model.graph.initializer[0]
    tensor.ClearField('raw_data')
    tensor.ClearField('float_data')
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (('location', location), ('offset', '0'), ('length', '16')):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / 'ext.onnx'
    onnx.save(model, path)
    return path


def test_external_data_loads_when_present(tmp_path):
    (tmp_path / 'w.bin').write_bytes(np.arange(4, dtype=np.float32).tobytes())
    graph = load_onnx(_external_model(tmp_path, 'w.bin'))
    assert np.array_equal(graph.weights['w'].ravel(), np.arange(4, dtype=np.float32))


def test_external_data_missing(tmp_path):
    with pytest.raises(ModelFormatError, match="'w.bin' not found"):
        load_onnx(_external_model(tmp_path, 'w.bin'))


def test_external_data_escaping_the_model_folder(tmp_path):
    with pytest.raises(ModelFormatError, match='escapes'):
        load_onnx(_external_model(tmp_path, '../../etc/passwd'))


@pytest.fixture(scope='module')
def small_engine(tmp_path_factory):
    path = tmp_path_factory.mktemp('m') / 'tiny.onnx'
    onnx.save(tiny_model(weight=np.ones((1, 4), np.float32)), path)
    return Engine.build(path)


def test_wrong_input_shape(small_engine):
    with pytest.raises(InputError, match=r'shape \(1, 5\).*\(1, 4\)'):
        small_engine.run({'x': np.zeros((1, 5), np.float32)})


def test_wrong_input_dtype(small_engine):
    with pytest.raises(InputError, match='dtype float64'):
        small_engine.run({'x': np.zeros((1, 4), np.float64)})


def test_wrong_input_name(small_engine):
    with pytest.raises(InputError, match='unknown'):
        small_engine.run({'images': np.zeros((1, 4), np.float32)})


def test_corrupted_plan_files(small_engine, tmp_path):
    path = tmp_path / 'tiny.tx2plan'
    small_engine.save(path)
    good = path.read_bytes()
    cases = {
        'flipped.tx2plan': good[:40] + bytes([good[40] ^ 0xFF]) + good[41:],
        'truncated.tx2plan': good[:len(good) // 2],
        'magic.tx2plan': b'NOTAPLAN' + good[8:],
        'empty.tx2plan': b'',
    }
    messages = {'flipped.tx2plan': 'checksum', 'truncated.tx2plan': 'checksum|too short',
                'magic.tx2plan': 'bad magic', 'empty.tx2plan': 'too short'}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PlanFileError, match=messages[name]):
            Engine.load(tmp_path / name)
    with pytest.raises(PlanFileError, match='cannot read'):
        Engine.load(tmp_path / 'missing.tx2plan')


def test_softmax_before_opset_13_flattens_at_axis(tmp_path):
    """Opset 11 Softmax(axis=1) on (2, 3, 4) normalises over the last 12 values of each row."""
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [2, 3, 4])
    node = helper.make_node('Softmax', ['x'], ['y'], name='sm', axis=1)
    model = helper.make_model(helper.make_graph([node], 'sm', [x], [y]),
                              opset_imports=[helper.make_opsetid('', 11)])
    path = tmp_path / 'sm11.onnx'
    onnx.save(model, path)
    data = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    import onnxruntime as ort
    expected = ort.InferenceSession(str(path), providers=['CPUExecutionProvider']).run(
        None, {'x': data})[0]
    result = Engine.build(path).run({'x': data})['y']
    assert np.allclose(result, expected, rtol=1e-5, atol=1e-6)


def _constant_model(tmp_path, location, op='Constant'):
    """A model whose Constant (or ConstantOfShape) value attribute is external data."""
    value = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), 'c')
    if op == 'ConstantOfShape':
        value = numpy_helper.from_array(np.array([7], np.float32), 'c')
    value.ClearField('raw_data')
    value.data_location = TensorProto.EXTERNAL
    for key, val in (('location', location), ('offset', '0'), ('length', str(value.dims[-1] * 4))):
        entry = value.external_data.add()
        entry.key, entry.value = key, val
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    if op == 'ConstantOfShape':
        shape = numpy_helper.from_array(np.array([1, 4], np.int64), 'shape')
        nodes = [helper.make_node(op, ['shape'], ['c'], value=value)]
        inits = [shape]
    else:
        nodes, inits = [helper.make_node(op, [], ['c'], value=value)], []
    nodes.append(helper.make_node('Add', ['x', 'c'], ['y']))
    model = helper.make_model(helper.make_graph(nodes, 'const', [x], [y], inits),
                              opset_imports=[helper.make_opsetid('', 13)])
    folder = tmp_path / 'model'
    folder.mkdir(exist_ok=True)
    onnx.save(model, folder / 'const.onnx')
    return folder / 'const.onnx'


@pytest.mark.parametrize('op', ['Constant', 'ConstantOfShape'])
def test_attribute_external_data_is_read_from_the_model_folder(tmp_path, monkeypatch, op):
    """Not from the current directory: a decoy there must not be read."""
    path = _constant_model(tmp_path, 'c.bin', op)
    values = np.arange(4, dtype=np.float32) if op == 'Constant' else np.array([7], np.float32)
    (path.parent / 'c.bin').write_bytes(values.tobytes())
    (tmp_path / 'c.bin').write_bytes((values + 100).tobytes())
    monkeypatch.chdir(tmp_path)
    out = Engine.build(path).run({'x': np.zeros((1, 4), np.float32)})['y']
    assert np.array_equal(out, np.broadcast_to(values, (1, 4)))


@pytest.mark.parametrize('op', ['Constant', 'ConstantOfShape'])
def test_attribute_external_data_escaping_the_model_folder(tmp_path, monkeypatch, op):
    path = _constant_model(tmp_path, '../secret.bin', op)
    (tmp_path / 'secret.bin').write_bytes(bytes(16))
    monkeypatch.chdir(path.parent)
    with pytest.raises(ModelFormatError, match="attribute 'value'.*escapes"):
        load_onnx(path)


@pytest.mark.parametrize('where', ['input', 'output'])
def test_string_input_or_output_is_refused_at_build(tmp_path, where):
    kinds = {'input': TensorProto.STRING if where == 'input' else TensorProto.FLOAT,
             'output': TensorProto.STRING if where == 'output' else TensorProto.FLOAT}
    x = helper.make_tensor_value_info('text', kinds['input'], [1, 4])
    y = helper.make_tensor_value_info('y', kinds['output'], [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node('Identity', ['text'], ['y'])],
                                                's', [x], [y]),
                              opset_imports=[helper.make_opsetid('', 13)])
    path = tmp_path / 'string.onnx'
    onnx.save(model, path)
    name = 'text' if where == 'input' else 'y'
    with pytest.raises(ModelFormatError, match=f"{where} '{name}'.*STRING"):
        Engine.build(path)


def _conv_model(tmp_path, channels, filters, group, dtype=TensorProto.FLOAT):
    w = np.ones((filters, max(channels // max(group, 1), 1), 3, 3), np.float32)
    x = helper.make_tensor_value_info('x', dtype, [1, channels, 6, 6])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    node = helper.make_node('Conv', ['x', 'w'], ['y'], name='bad_conv', group=group)
    model = helper.make_model(helper.make_graph([node], 'c', [x], [y],
                                                [numpy_helper.from_array(w, 'w')]),
                              opset_imports=[helper.make_opsetid('', 13)])
    path = tmp_path / 'conv.onnx'
    onnx.save(model, path)
    return path


@pytest.mark.parametrize('channels,filters,group', [(4, 3, 2), (6, 4, 4), (4, 4, 0)])
def test_conv_group_must_divide_the_channels(tmp_path, channels, filters, group):
    with pytest.raises(UnsupportedOpError, match=f"'bad_conv'.*group={group}"):
        load_onnx(_conv_model(tmp_path, channels, filters, group))


def test_conv_on_uint8_is_refused(tmp_path):
    with pytest.raises(UnsupportedOpError, match="'bad_conv'.*uint8"):
        load_onnx(_conv_model(tmp_path, 4, 4, 1, TensorProto.UINT8))


def test_a_cycle_is_a_model_format_error(tmp_path):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node('Add', ['x', 'b'], ['a'], name='first'),
             helper.make_node('Relu', ['a'], ['b'], name='second'),
             helper.make_node('Relu', ['a'], ['y'], name='out')]
    model = helper.make_model(helper.make_graph(nodes, 'loop', [x], [y]),
                              opset_imports=[helper.make_opsetid('', 13)])
    path = tmp_path / 'cycle.onnx'
    onnx.save(model, path)
    with pytest.raises(ModelFormatError, match=r"cycle through nodes \['first', 'second', 'out'"):
        load_onnx(path)


def _chain(count):
    """x -> n0 -> n1 -> ... (Relu nodes), as a Graph."""
    nodes = [Node('Relu', f'n{i}', ['x' if i == 0 else f'v{i - 1}'], [f'v{i}'])
             for i in range(count)]
    values = {'x': Value('x', (1,))}
    return Graph(nodes=nodes, inputs=['x'], outputs=[f'v{count - 1}'], values=values,
                 weights={})


def test_toposort_orders_a_shuffled_long_chain_and_keeps_an_ordered_one():
    graph = _chain(10000)
    ordered = list(graph.nodes)
    graph.toposort()
    assert graph.nodes == ordered
    graph.nodes = ordered[::-1]
    graph.toposort()
    assert [n.name for n in graph.nodes] == [n.name for n in ordered]


def test_toposort_undefined_value():
    graph = _chain(3)
    graph.nodes[1].inputs = ['nowhere']
    with pytest.raises(ModelFormatError, match=r"no node produces: \['nowhere'\]"):
        graph.toposort()


def test_data_dependent_output_shape_is_refused_not_broadcast(tmp_path):
    """NonZero's output shape depends on the data: built on one input, run on another, the
    numpy backend refuses the node by name (it raised a numpy ValueError, and a result that
    happened to broadcast would have been written silently); ONNX Runtime (backend cpu)
    sizes it at run time and answers."""
    nodes = [helper.make_node('Relu', ['x'], ['r']),
             helper.make_node('NonZero', ['r'], ['nz'], name='where_positive'),
             helper.make_node('Cast', ['nz'], ['y'], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, [1, 8])], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, None)])
    path = tmp_path / 'nonzero.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]), path)
    numpy_engine, cpu_engine = (Engine.build(path, backend=b) for b in ('numpy', 'cpu'))
    refused = 0
    for x in (np.ones((1, 8), np.float32), -np.ones((1, 8), np.float32)):  # 8 and 0 found
        want = np.stack(np.nonzero(np.maximum(x, 0))).astype(np.float32)
        np.testing.assert_array_equal(cpu_engine.run(x)['y'], want)
        try:
            np.testing.assert_array_equal(numpy_engine.run(x)['y'], want)
        except UnsupportedOpError as exc:
            assert "'where_positive'" in str(exc) and 'depends on the input data' in str(exc)
            refused += 1
    assert refused >= 1   # the build's shape cannot be both 8 and 0


def test_a_failure_inside_the_run_is_a_project_error(tmp_path):
    """Gather on indices computed from the input: an index out of range at run time (the build
    ran on in-range values) ends in a Tx2InferError naming the failure, on both CPU backends,
    and the engine keeps answering good inputs."""
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), 'table')
    nodes = [helper.make_node('Cast', ['x'], ['i'], to=TensorProto.INT64),
             helper.make_node('Gather', ['table', 'i'], ['y'], axis=0)]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, [1, 2])], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, [1, 2, 3])], [table])
    path = tmp_path / 'gather.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]), path)
    for backend in ('numpy', 'cpu'):
        engine = Engine.build(path, backend=backend)
        with pytest.raises(Tx2InferError, match='the run failed'):
            engine.run(np.array([[0, 40]], np.float32))
        good = engine.run(np.array([[3, 1]], np.float32))['y']
        want = np.arange(12, dtype=np.float32).reshape(4, 3)[[[3, 1]]]
        np.testing.assert_array_equal(good, want)
