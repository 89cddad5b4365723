"""The unary and bitwise ops added for the CPU (trigonometric and hyperbolic, Selu, Celu,
ThresholdedRelu, Shrink, Swish, Bitwise*, BitShift): each between real ops of a tiny ONNX
model, imported and run by the engine on the numpy and ONNX Runtime backends, against ONNX
Runtime on the original model; the float ones fused into CUDA pointwise programs."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from tx2_infer_core.engine import Engine
from tx2_infer_core.ir import Node
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.ops import elementwise as ew, run_node, traits
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
from tx2_infer_core.passes.pointwise_chains import POINTWISE_OPS
from tx2_infer_core.reference import execute

ort = pytest.importorskip('onnxruntime')
RNG = np.random.default_rng(3)
SHAPE = (2, 3, 4, 5)
TRIG = ('Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh', 'Acosh', 'Atanh')
ACTIVATIONS = [('Selu', {}), ('Selu', {'alpha': 1.5, 'gamma': 0.7}), ('Celu', {}),
               ('Celu', {'alpha': 0.4}), ('ThresholdedRelu', {}),
               ('ThresholdedRelu', {'alpha': 0.3}), ('Shrink', {}),
               ('Shrink', {'bias': 0.25, 'lambd': 0.8})]
NEW_OPS = TRIG + ('Selu', 'Celu', 'ThresholdedRelu', 'Shrink', 'Swish', 'BitShift',
                  'BitwiseAnd', 'BitwiseOr', 'BitwiseXor', 'BitwiseNot')


def make_model(nodes, inputs, output, initializers=(), opset=18):
    """An ONNX model: ``inputs`` and ``output`` as (name, dtype, shape)."""
    info = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(d)), s)
            for n, d, s in inputs]
    out = helper.make_tensor_value_info(output[0], helper.np_dtype_to_tensor_dtype(
        np.dtype(output[1])), output[2])
    graph = helper.make_graph(nodes, 'g', info, [out],
                              [numpy_helper.from_array(v, k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def ort_outputs(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    return session.run(None, feeds)[0]


def engine_outputs(model, feeds, tmp_path):
    """{backend: output} of the engine built from ``model`` on the numpy and ort backends."""
    path = tmp_path / 'model.onnx'
    path.write_bytes(model.SerializeToString())
    found = {}
    for backend in ('numpy', 'ort'):
        with Engine.build(path, backend=backend) as engine:
            assert type(engine.backend).__name__.lower().startswith(backend)
            found[backend] = next(iter(engine.run(feeds).values()))
    return found


def float_model(op, attrs):
    """x -> Mul(0.5) -> op -> Add(b) -> y (float32)."""
    nodes = [helper.make_node('Mul', ['x', 'half'], ['t']),
             helper.make_node(op, ['t'], ['u'], **attrs),
             helper.make_node('Add', ['u', 'b'], ['y'])]
    consts = [('half', np.array(0.5, np.float32)),
              ('b', RNG.standard_normal(SHAPE[1:]).astype(np.float32))]
    return make_model(nodes, [('x', np.float32, SHAPE)], ('y', np.float32, SHAPE), consts)


def assert_float_op_matches(op, attrs, x, tmp_path):
    model = float_model(op, attrs)
    want = ort_outputs(model, {'x': x})
    for backend, got in engine_outputs(model, {'x': x}, tmp_path).items():
        assert got.dtype == np.float32, backend
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=backend)


@pytest.mark.parametrize('op', TRIG)
def test_trigonometric_ops_match_onnxruntime(op, tmp_path):
    low, high = {'Acosh': (2.2, 8.0), 'Sinh': (-6, 6), 'Cosh': (-6, 6)}.get(op, (-1.9, 1.9))
    x = RNG.uniform(low, high, SHAPE).astype(np.float32)
    assert_float_op_matches(op, {}, x, tmp_path)


@pytest.mark.parametrize('op,attrs', ACTIVATIONS)
def test_activations_with_attributes_match_onnxruntime(op, attrs, tmp_path):
    x = (4 * RNG.standard_normal(SHAPE)).astype(np.float32)
    x.flat[:6] = [-1.6, 1.6, -1.0, 1.0, 0.0, 0.6]       # x * 0.5 on the thresholds
    assert_float_op_matches(op, attrs, x, tmp_path)


@pytest.mark.parametrize('op', TRIG + tuple(op for op, _ in ACTIVATIONS[::2]) + ('Swish',))
@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_float_ops_keep_their_dtype(op, dtype):
    """float16, float32 and float64 in, the same out (values as computed in float64)."""
    x = RNG.uniform(1.1, 1.9, (9,)) if op == 'Acosh' else RNG.uniform(-0.95, 0.95, (9,))
    got = run_node(Node(op, 'n', ['x'], ['y']), [x.astype(dtype)])[0]
    assert got.dtype == dtype
    tol = 2e-3 if dtype == np.float16 else 1e-6
    np.testing.assert_allclose(got, getattr(ew, op)(x), rtol=tol, atol=tol)


def test_swish_matches_onnxruntime_and_an_opset_24_model_imports():
    """Swish is ONNX opset 24: the reference op matches ONNX Runtime, and a model holding it
    imports (rewritten as x * Sigmoid(alpha x) before the conversion to opset 21) and runs the
    same."""
    x = (3 * RNG.standard_normal(SHAPE)).astype(np.float32)
    model = make_model([helper.make_node('Swish', ['x'], ['y'], alpha=0.7)],
                       [('x', np.float32, SHAPE)], ('y', np.float32, SHAPE), opset=24)
    want = ort_outputs(model, {'x': x})
    got = run_node(Node('Swish', 'n', ['x'], ['y'], {'alpha': 0.7}), [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    graph = graph_from_model(model)
    assert 'Swish' not in [n.op for n in graph.nodes]
    np.testing.assert_allclose(execute(graph, {'x': x})['y'], want, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize('dtype', [np.int32, np.uint8, np.int64])
def test_bitwise_ops_match_onnxruntime(dtype, tmp_path):
    """a, b -> And -> Xor(c) -> Not -> Or(a) -> Add(a) -> y, b broadcast over a's rows."""
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), dtype=dtype, endpoint=True)
    b = RNG.integers(info.min, info.max, (4,), dtype=dtype, endpoint=True)
    c = RNG.integers(info.min, info.max, (3, 4), dtype=dtype, endpoint=True)
    nodes = [helper.make_node('BitwiseAnd', ['a', 'b'], ['t']),
             helper.make_node('BitwiseXor', ['t', 'c'], ['u']),
             helper.make_node('BitwiseNot', ['u'], ['v']),
             helper.make_node('BitwiseOr', ['v', 'a'], ['w']),
             helper.make_node('Add', ['w', 'a'], ['y'])]
    model = make_model(nodes, [('a', dtype, (3, 4)), ('b', dtype, (4,))],
                       ('y', dtype, (3, 4)), [('c', c)])
    feeds = {'a': a, 'b': b}
    want = ort_outputs(model, feeds)
    for backend, got in engine_outputs(model, feeds, tmp_path).items():
        assert got.dtype == dtype, backend
        np.testing.assert_array_equal(got, want, err_msg=backend)


@pytest.mark.parametrize('direction', ['LEFT', 'RIGHT'])
@pytest.mark.parametrize('dtype', [np.uint8, np.uint32, np.uint64])
def test_bitshift_matches_onnxruntime(direction, dtype, tmp_path):
    """x -> Add(1) -> BitShift(by) -> BitwiseXor(c) -> y, shift amounts from 0 to the bit
    width - 1 broadcast over x's rows (left shifts wrap, as in ONNX Runtime)."""
    bits = np.iinfo(dtype).bits
    x = RNG.integers(0, np.iinfo(dtype).max - 1, (5, bits), dtype=dtype)
    nodes = [helper.make_node('Add', ['x', 'one'], ['t']),
             helper.make_node('BitShift', ['t', 'by'], ['u'], direction=direction),
             helper.make_node('BitwiseXor', ['u', 'c'], ['y'])]
    consts = [('one', np.array(1, dtype)), ('c', np.array(0x5A, dtype)),
              ('by', np.arange(bits, dtype=dtype))]
    model = make_model(nodes, [('x', dtype, x.shape)], ('y', dtype, x.shape), consts)
    want = ort_outputs(model, {'x': x})
    for backend, got in engine_outputs(model, {'x': x}, tmp_path).items():
        assert got.dtype == dtype, backend
        np.testing.assert_array_equal(got, want, err_msg=backend)


def test_bitshift_without_direction_names_the_attribute():
    with pytest.raises(Exception, match="BitShift.*direction=''"):
        run_node(Node('BitShift', 'n', ['x', 'y'], ['z']),
                 [np.ones(2, np.uint8), np.ones(2, np.uint8)])


def test_float_ops_fuse_for_cuda_and_bitwise_ops_stay_cpu_only():
    """The float ops run on CUDA, generated (``ops/traits.py`` ``generated``) or, Selu, Celu and
    ThresholdedRelu, as activations (a kernel code, a convolution's epilogue): in a CUDA-level
    optimisation each is a step of its neighbours' pointwise program; the bitwise ops have no
    CUDA lowering and no pointwise step."""
    bitwise = [op for op in NEW_OPS if op.startswith('Bit')]
    assert all(not traits.TRAITS[op].cuda and traits.TRAITS[op].code is None for op in bitwise)
    assert not set(bitwise) & set(POINTWISE_OPS)
    assert set(NEW_OPS) - set(bitwise) <= set(POINTWISE_OPS)
    activations = {'Selu', 'Celu', 'ThresholdedRelu'}
    assert all(traits.TRAITS[op].cuda == 'pointwise'
               for op in set(NEW_OPS) - set(bitwise) - activations)
    assert all(traits.TRAITS[op].kind == traits.ACTIVATION for op in activations)
    x = (0.3 * RNG.standard_normal(SHAPE)).astype(np.float32)
    for op in TRIG[:2] + ('Selu', 'Shrink'):
        nodes = [helper.make_node('Relu', ['x'], ['a']), helper.make_node('Neg', ['a'], ['t']),
                 helper.make_node(op, ['t'], ['u']), helper.make_node('Exp', ['u'], ['v']),
                 helper.make_node('Abs', ['v'], ['y'])]
        model = make_model(nodes, [('x', np.float32, SHAPE)], ('y', np.float32, SHAPE))
        graph, _ = optimize(graph_from_model(model), POINTWISE_LEVEL)
        assert [n.op for n in graph.nodes] == ['FusedPointwise']
        assert f'"{op}"' in graph.nodes[0].attrs['program']
        np.testing.assert_allclose(execute(graph, {'x': x})['y'], ort_outputs(model, {'x': x}),
                                   rtol=1e-5, atol=1e-6)
