"""ONNX Runtime's ``com.microsoft`` ops, written as standard ONNX ops at import
(``contrib_rewrite.py``), against ONNX Runtime itself: a real quantised model (ppocr-cls through
``quantize_static(QOperator)`` with its default settings (int8) and op types: QLinearAdd,
QLinearMul, QLinearSoftmax), then one small model per contrib op; unknown ones are refused by
name.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.onnx_import import graph_from_model, load_onnx
from tx2_infer_core.passes import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_qoperator import assert_within_one_quantum  # noqa: E402
from test_qoperator_zoo import (  # noqa: E402
    EVALUATION, MODEL, Calibration, photos, quantization, zoo_data)

MS = 'com.microsoft'
OPSETS = [helper.make_opsetid('', 17), helper.make_opsetid(MS, 1)]


def default_quantized(folder):
    """ppocr-cls quantised with ORT's default settings (int8) and op types; every input and
    output of a com.microsoft node is also a graph output. (path, input name, those nodes)."""
    source, _ = zoo_data.model_files(MODEL)
    input_name = onnx.load(str(source)).graph.input[0].name
    path = folder / 'q.onnx'
    quantization.quantize_static(str(source), str(path), Calibration(input_name),
                                 quant_format=quantization.QuantFormat.QOperator)
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.domain == MS]
    weights = {t.name for t in model.graph.initializer} | {input_name}
    seen = {o.name for o in model.graph.output} | weights
    for name in [v for n in nodes for v in list(n.input) + list(n.output)]:
        if name and name not in seen:
            seen.add(name)
            model.graph.output.append(
                helper.make_tensor_value_info(name, TensorProto.INT8, None))
    onnx.save(model, str(path))
    return path, input_name, nodes, model


@pytest.fixture(scope='module')
def quantized(tmp_path_factory):
    return default_quantized(tmp_path_factory.mktemp('q'))


@pytest.mark.parametrize('backend', ['numpy', 'ort'])
def test_default_quantized_ppocr_cls_matches_onnxruntime(quantized, backend):
    """End to end: the class probabilities within a few quanta, top-1 equal. (Per layer the
    two drift apart: ORT's QLinearAdd breaks exact ties its own way, see below.)"""
    path, input_name, nodes, _ = quantized
    assert {'QLinearAdd', 'QLinearMul', 'QLinearSoftmax'} <= {n.op_type for n in nodes}
    assert not any('::' in n.op for n in load_onnx(path, MODEL.input_shape).nodes)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    output = session.get_outputs()[0].name
    engine = Engine.build(path, input_shape=MODEL.input_shape, backend=backend)
    for x in photos(EVALUATION):
        want = session.run([output], {input_name: x})[0]
        got = engine.run({input_name: x})[output]
        np.testing.assert_allclose(got, want, atol=3 / 256)   # measured: 2 quanta at most
        assert got.argmax() == want.argmax()
    engine.close()


def test_each_contrib_node_of_ppocr_cls_matches_onnxruntime(quantized, tmp_path):
    """Every com.microsoft node of the quantised model alone, on the inputs ONNX Runtime gave
    it on a real photo: within one quantum. The QLinearAdds of HardSwish (x + 3, output scale
    3 / 127.5) meet an exact tie wherever x is at its zero point: up to 3.5% of elements
    (measured), every other node matches on all but 0.1%."""
    path, input_name, nodes, model = quantized
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    env = dict(zip(names, session.run(names, {input_name: photos(EVALUATION[:1])[0]})))
    weights = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        feeds = {v: env[v] for v in node.input if v and v not in weights}
        used = {v: numpy_helper.to_array(weights[v]) for v in node.input if v in weights}
        one = one_op_model(node.op_type, node.input, feeds, used,
                           {a.name: helper.get_attribute_value(a) for a in node.attribute},
                           outputs=node.output, out_type=TensorProto.INT8)
        (got,), _ = run_both(one, feeds, tmp_path)
        want = env[node.output[0]]
        ties = node.op_type == 'QLinearAdd' and np.ndim({**feeds, **used}[node.input[3]]) == 0
        assert_within_one_quantum(got, want, node.name, 0.035 if ties else 0.001)


def one_op_model(op, inputs, feeds, weights, attrs=None, outputs=('y',), out_type=None):
    """A model of one com.microsoft ``op``: ``feeds`` (name -> array) are the graph inputs,
    ``weights`` initializers; ``inputs`` its input names in order ('' for an absent one)."""
    def info(name, array):
        return helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
    node = helper.make_node(op, list(inputs), list(outputs), domain=MS, **(attrs or {}))
    out = [helper.make_tensor_value_info(name, out_type or TensorProto.FLOAT, None)
           for name in outputs if name]
    graph = helper.make_graph([node], op, [info(k, v) for k, v in feeds.items()], out,
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=OPSETS)


def run_both(model, feeds, folder, backend='numpy'):
    """(ours, ONNX Runtime's) outputs of ``model`` on ``feeds`` (the model saved in
    ``folder``, built for the first feed's shape)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    want = session.run(None, feeds)
    path = folder / 'm.onnx'
    onnx.save(model, str(path))
    engine = Engine.build(path, input_shape=next(iter(feeds.values())).shape, backend=backend)
    got = engine.run(feeds)
    engine.close()
    return [got[o.name] for o in model.graph.output], want


def q_scalars(scale, zero_point):
    return np.float32(scale), np.uint8(zero_point)


def quantized_case(op, attrs, n_inputs=1):
    """A QLinear unary/binary model over uint8 images and its feed."""
    rng = np.random.default_rng(1)
    feeds, weights, inputs = {}, {}, []
    for k in range(n_inputs):
        feeds[f'x{k}'] = rng.integers(0, 256, (1, 8, 9, 7), dtype=np.uint8)
        weights[f's{k}'], weights[f'z{k}'] = q_scalars(0.02 + 0.01 * k, 100 + 20 * k)
        inputs += [f'x{k}', f's{k}', f'z{k}']
    weights['ys'], weights['yz'] = q_scalars(*(
        (1 / 256, 0) if op == 'QLinearSoftmax' else (0.015, 90)))  # ORT's softmax: 1/256 only
    inputs += ['ys', 'yz']
    if op == 'QLinearConcat':
        inputs = inputs[-2:] + inputs[:-2]
    return one_op_model(op, inputs, feeds, weights, attrs, out_type=TensorProto.UINT8), feeds


QUANTIZED = [('QLinearGlobalAveragePool', {}, 1), ('QLinearSigmoid', {}, 1),
             ('QLinearLeakyRelu', {'alpha': 0.1}, 1), ('QLinearAdd', {}, 2),
             ('QLinearMul', {}, 2), ('QLinearConcat', {'axis': 1}, 3),
             ('QLinearAveragePool', {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1],
                                     'strides': [2, 2]}, 1),
             ('QLinearSoftmax', {'axis': -1, 'opset': 13}, 1),
             ('QLinearSoftmax', {'axis': 1, 'opset': 11}, 1)]   # over x flattened at 1


@pytest.mark.parametrize('op, attrs, n_inputs', QUANTIZED,
                         ids=[f'{c[0]}-{k}' for k, c in enumerate(QUANTIZED)])
@pytest.mark.parametrize('backend', ['numpy', 'ort'])
def test_qlinear_contrib_op_matches_onnxruntime(op, attrs, n_inputs, backend, tmp_path):
    (got,), (want,) = run_both(*quantized_case(op, attrs, n_inputs), tmp_path, backend)
    assert_within_one_quantum(got, want, op)


def float_cases():
    """(op, inputs, feeds, weights, attrs) of the fused float contrib ops."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32) * 2
    s = rng.standard_normal((2, 5, 16)).astype(np.float32)
    v = rng.standard_normal(16).astype(np.float32)
    img = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    z = rng.standard_normal((1, 6, 9, 9)).astype(np.float32)
    m = rng.standard_normal((3, 16, 5)).astype(np.float32)
    conv = {'pads': [1, 1, 1, 1], 'kernel_shape': [3, 3]}
    return [
        ('FastGelu', ['x', 'b'], {'x': x}, {'b': v}, {}),
        ('FastGelu', ['x'], {'x': x}, {}, {}),
        ('BiasGelu', ['x', 'b'], {'x': x}, {'b': v}, {}),
        ('Gelu', ['x'], {'x': x}, {}, {}),
        ('QuickGelu', ['x'], {'x': x}, {}, {'alpha': 1.5}),
        ('SkipLayerNormalization', ['x', 's', 'g', 'be', 'b'], {'x': x, 's': s},
         {'g': v * 0.5, 'be': v[::-1].copy(), 'b': v * 0.1}, {'epsilon': 1e-5}),
        ('SkipLayerNormalization', ['x', 's', 'g'], {'x': x, 's': s}, {'g': v}, {}),
        ('FusedConv', ['x', 'w', 'b'], {'x': img}, {'w': w, 'b': v[:6].copy()},
         dict(conv, activation='Relu')),
        ('FusedConv', ['x', 'w', '', 'z'], {'x': img, 'z': z}, {'w': w},
         dict(conv, activation='LeakyRelu', activation_params=[0.2])),
        ('FusedConv', ['x', 'w'], {'x': img}, {'w': w},
         dict(conv, activation='Clip', activation_params=[-0.5, 0.5])),
        ('FusedMatMul', ['x', 'm'], {'x': x[:1]}, {'m': m[:1]}, {'alpha': 0.5}),
        ('FusedMatMul', ['x', 'm'], {'x': x[0]}, {'m': m[0].T.copy()},
         {'alpha': 2.0, 'transB': 1}),
        ('FusedMatMul', ['m', 'x'], {'m': m}, {'x': x[0].T.copy()}, {'transA': 1}),
        ('FusedMatMul', ['x', 'y2'], {'x': x, 'y2': s}, {}, {'transB': 1}),
        ('FusedMatMul', ['y2', 'x'], {'x': x, 'y2': s}, {}, {'transA': 1, 'alpha': 0.3}),
    ]


CASES = float_cases()


@pytest.mark.parametrize('case', CASES, ids=[f'{c[0]}-{k}' for k, c in enumerate(CASES)])
@pytest.mark.parametrize('backend', ['numpy', 'ort'])
def test_fused_contrib_op_matches_onnxruntime(case, backend, tmp_path):
    op, inputs, feeds, weights, attrs = case
    model = one_op_model(op, inputs, feeds, weights, attrs)
    (got,), (want,) = run_both(model, feeds, tmp_path, backend)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bias_add_is_the_sum(tmp_path):
    """BiasAdd (ONNX Runtime runs it on CUDA only): x + bias + skip."""
    rng = np.random.default_rng(3)
    x, skip = rng.standard_normal((2, 3, 2, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    model = one_op_model('BiasAdd', ['x', 'b', 's'], {'x': x, 's': skip}, {'b': bias})
    onnx.save(model, str(tmp_path / 'm.onnx'))
    for backend in ('numpy', 'ort'):
        with Engine.build(tmp_path / 'm.onnx', input_shape=x.shape, backend=backend) as engine:
            got = engine.run({'x': x, 's': skip})['y']
        np.testing.assert_allclose(got, x + bias + skip, rtol=1e-6, atol=1e-6)


def test_skip_layer_norm_sum_output_and_refused_mean(tmp_path):
    op, inputs, feeds, weights, attrs = CASES[6]
    model = one_op_model(op, inputs, feeds, weights, attrs, outputs=('y', '', '', 'sum'))
    got, want = run_both(model, feeds, tmp_path)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    model = one_op_model(op, inputs, feeds, weights, attrs, outputs=('y', 'mean'))
    with pytest.raises(UnsupportedOpError, match="SkipLayerNormalization.*'mean'"):
        graph_from_model(model, feeds['x'].shape)


def test_unknown_contrib_op_is_refused_naming_its_domain():
    x = np.zeros((1, 4), np.float32)
    model = one_op_model('Attention', ['x'], {'x': x}, {})
    with pytest.raises(UnsupportedOpError, match=r"com\.microsoft::Attention.*domain "
                                                 r"'com\.microsoft'.*no rewrite"):
        graph_from_model(model, x.shape)


def test_fused_transformer_block_lowers_for_cuda():
    """FusedMatMul -> FastGelu -> SkipLayerNormalization -> QuickGelu, as ORT's transformer
    optimizer saves them: standard ops after import and the passes, lowered for sm_90 and
    sm_62 without a refusal."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 16)).astype(np.float32)
    weights = {name: rng.standard_normal(shape).astype(np.float32)
               for name, shape in [('w', (16, 16)), ('b', (16,)), ('g', (16,)), ('be', (16,))]}
    nodes = [helper.make_node('FusedMatMul', ['x', 'w'], ['h'], domain=MS, alpha=0.5, transB=1),
             helper.make_node('FastGelu', ['h', 'b'], ['f'], domain=MS),
             helper.make_node('SkipLayerNormalization', ['f', 'x', 'g', 'be'], ['n'], domain=MS),
             helper.make_node('QuickGelu', ['n'], ['y'], domain=MS)]
    graph = helper.make_graph(
        nodes, 'block', [helper.make_tensor_value_info('x', TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    graph, _ = optimize(graph_from_model(helper.make_model(graph, opset_imports=OPSETS),
                                         x.shape), 3)
    assert {n.op for n in graph.nodes} <= {'MatMul', 'FusedLinear', 'FusedPointwise',
                                           'LayerNormalization', 'FusedLinearNorm'}
    for arch in (90, 62):
        lower_graph(graph, arch)
