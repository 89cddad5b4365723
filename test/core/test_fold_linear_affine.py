"""Per-column scale and shift after a product by a constant matrix fold into its weights
(``passes/fold_linear_affine.py``, run by ``fold_scale_shift``): the weight maths against
numpy, small ONNX graphs (MatMul with its bias, Gemm) on the reference interpreter and the
numpy backend against ONNX Runtime, the refusals, and the zoo's vit-focus, whose 24 layer
scales no longer cost a pointwise launch each.
"""
import importlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from test_attention import numpy_outputs, ort_output, rel
from test_fuse_linear import linear_model, ort_outputs
from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Node
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.ops import run_node
from tx2_infer_core.passes import optimize
from tx2_infer_core.passes.weights import affine_of, fuse_output_affine_weights

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(11)
FOLD_MODULE = importlib.import_module('tx2_infer_core.passes.fold_batchnorm')


# The weight maths ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 7), n=st.integers(1, 7), rows=st.integers(1, 4),
       layout=st.sampled_from(['kn', 'nk', 'conv']), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 99))
def test_folded_weights_compute_the_affine_of_the_product(k, n, rows, layout, bias, dtype,
                                                          seed):
    """``x @ W' + b' == (x @ W + b) * scale + shift`` for a MatMul's ``[K, N]``, a Gemm's
    transposed ``[N, K]`` and a Conv's ``[N, C, kh, kw]`` weights (``fuse_output_affine_weights``
    with the output channel along axis -1 or 0)."""
    rng = np.random.default_rng(seed)
    stored = {'kn': (k, n), 'nk': (n, k), 'conv': (n, k, 2, 3)}[layout]
    w = rng.standard_normal(stored).astype(dtype)
    b = rng.standard_normal(n).astype(dtype) if bias else None
    scale, shift = rng.standard_normal(n), rng.standard_normal(n)
    axis = -1 if layout == 'kn' else 0

    def matrix(weights):                          # as [K, N]
        return weights if layout == 'kn' else weights.reshape(n, -1).T
    x = rng.standard_normal((rows, matrix(w).shape[0]))
    w2, b2 = fuse_output_affine_weights(w, b, scale, shift, axis)
    assert w2.shape == w.shape and w2.dtype == w.dtype and b2.shape == (n,)
    want = (x @ matrix(w).astype(np.float64) + (0 if b is None else b)) * scale + shift
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(x @ matrix(w2) + b2, want, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(op=st.sampled_from(['Add', 'Sub', 'Mul', 'Div']), first=st.booleans(),
       seed=st.integers(0, 99))
def test_affine_of_writes_the_op_as_scale_and_shift(op, first, seed):
    """``op(y, c)`` (or ``op(c, y)``) is ``y * scale + shift`` per column, by the op's own
    numpy implementation; ``c / y`` is no affine map of ``y``."""
    rng = np.random.default_rng(seed)
    y, c = rng.standard_normal((3, 5)), rng.uniform(0.5, 2.0, 5) * rng.choice([-1, 1], 5)
    maps = affine_of(op, c, first)
    if op == 'Div' and not first:
        assert maps is None
        return
    inputs = [y, c] if first else [c, y]
    want = run_node(Node(op, op, ['a', 'b'], ['z']), inputs)[0]
    np.testing.assert_allclose(y * maps[0] + maps[1], want, rtol=1e-12, atol=1e-12)


# MatMul chains ---------------------------------------------------------------------------------

# name: (chain steps after x -> MatMul, folds made)
FOLDS = {
    'scale': (['scale'], 1),                              # no bias: the weights alone
    'bias_scale': (['bias', 'scale'], 1),
    'bias_scale_residual': (['bias', 'scale', 'residual'], 1),     # a ViT layer scale
    'bias_scale_first_residual': (['bias', 'scale_first', 'residual'], 1),
    'bias_scalar_scale': (['bias', 'scalar_scale'], 1),
    'bias_div': (['bias', 'div'], 1),
    'bias_shift_scale': (['bias', 'shift', 'scale'], 2),
    'sub': (['sub'], 1),                                  # a shift and no bias: an Add made
    'sub_from_residual': (['sub_from', 'residual'], 1),   # c - y: W negated
    'bias_sub_from_div': (['bias', 'sub_from', 'div'], 2),
}


@pytest.mark.parametrize('name', sorted(FOLDS))
def test_chain_folds_and_matches_onnxruntime(tmp_path, name):
    """Level 2 (the cpu builds) leaves only MatMul and Adds with the reference interpreter's
    outputs unchanged; level 3 (cuda builds) one node, run on the numpy backend."""
    steps, folds = FOLDS[name]
    path, graph, feeds = linear_model(tmp_path, steps)
    ref = ort_outputs(path, feeds)[0]
    folded, report = optimize(graph, 2)
    assert report['fold_scale_shift'] == folds
    assert set(folded.summary()) <= {'MatMul', 'Add'}, folded.summary()
    before, after = reference.execute(graph, feeds), reference.execute(folded, feeds)
    out = graph.outputs[0]
    assert rel(after[out], before[out]) <= 1e-6 and rel(after[out], ref) <= 1e-6
    fused, _ = optimize(graph, 3)
    assert len(fused.nodes) == 1, fused.summary()
    assert rel(numpy_outputs(fused, feeds)[out], ref) <= 1e-6


# name: (chain steps, extra graph outputs): the affine op stays
DECLINED = {
    'bias_relu_scale': (['bias', 'relu', 'scale'], ()),   # an activation in between
    'bias_row_scale': (['bias', 'row_scale'], ()),        # varies along the rows
    'bias_divided_by': (['bias', 'divided_by'], ()),      # c / y
    'bias_div_by_zero': (['bias', 'div_by_zero'], ()),
    'bias_read_twice': (['bias', 'side_read', 'scale'], ()),
    'product_read_twice': (['side_read', 'scale'], ()),
    'product_is_an_output': (['scale'], ('product',)),
}


@pytest.mark.filterwarnings('ignore:divide by zero')
@pytest.mark.parametrize('name', sorted(DECLINED))
def test_declines_and_still_matches_onnxruntime(tmp_path, name):
    steps, extra = DECLINED[name]
    path, graph, feeds = linear_model(tmp_path, steps, extra_outputs=extra)
    for level in (2, 3):
        optimised, report = optimize(graph, level)
        assert report['fold_scale_shift'] == 0
        ours = reference.execute(optimised, feeds)
        for out, ref in zip(optimised.outputs, ort_outputs(path, feeds)):
            np.testing.assert_allclose(ours[out], ref, rtol=1e-5, atol=1e-5)


# Gemm ------------------------------------------------------------------------------------------

def gemm_model(tmp_path, trans_b, c_shape, tail):
    """(path, graph, feeds) of x[4, 6] -> Gemm(W, C of ``c_shape`` or none, alpha, beta)
    -> ``tail``: (op, constant shape) pairs, the constant second."""
    n, inits = 5, []

    def const(name, shape):
        inits.append(numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32),
                                             name))
        return name
    inputs = ['x', const('w', (n, 6) if trans_b else (6, n))]
    inputs += [const('c', c_shape)] if c_shape is not None else []
    nodes = [helper.make_node('Gemm', inputs, ['y0'], alpha=0.5, beta=2.0, transB=trans_b)]
    for i, (op, shape) in enumerate(tail):
        nodes.append(helper.make_node(op, [f'y{i}', const(f'k{i}', shape)], [f'y{i + 1}']))
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
            for name, shape in (('x', [4, 6]), (f'y{len(tail)}', [4, n]))]
    model = helper.make_model(helper.make_graph(nodes, 'gemm', info[:1], info[1:], inits),
                              opset_imports=[helper.make_opsetid('', 13)], ir_version=10)
    path = tmp_path / 'gemm.onnx'
    onnx.save(model, str(path))
    return path, load_onnx(path), {'x': RNG.standard_normal((4, 6)).astype(np.float32)}


# name: (transB, C's shape or None, tail, folds made)
GEMMS = {
    'scale': (0, None, [('Mul', (5,))], 1),
    'bias_scale_shift': (1, (5,), [('Mul', (1, 5)), ('Sub', (5,))], 2),
    'scalar_bias_div': (0, (), [('Div', (5,))], 1),
    'bias_shift': (1, (1, 5), [('Add', (5,)), ('Sub', (1, 5))], 2),   # W stays shared
    'row_bias': (1, (4, 1), [('Mul', (5,))], 0),           # C varies along the rows
    'row_scale': (0, (5,), [('Mul', (4, 1))], 0),
}


@pytest.mark.parametrize('name', sorted(GEMMS))
def test_gemm_folds_and_matches_onnxruntime(tmp_path, name):
    trans_b, c_shape, tail, folds = GEMMS[name]
    path, graph, feeds = gemm_model(tmp_path, trans_b, c_shape, tail)
    optimised, report = optimize(graph, 2)
    assert report['fold_scale_shift'] == folds
    assert len(optimised.nodes) == len(graph.nodes) - folds
    shift_only = all(op in ('Add', 'Sub') for op, _ in tail)
    assert (optimised.nodes[0].inputs[1] == 'w') == (shift_only or not folds)
    ours = reference.execute(optimised, feeds)[graph.outputs[0]]
    assert rel(ours, ort_outputs(path, feeds)[0]) <= 1e-6
    if folds == len(tail):                                # one GEMM launch on CUDA
        assert len(lower_graph(optimize(graph, 3)[0], 90, sm_count=132).launches) == 1


# The zoo's vit-focus ---------------------------------------------------------------------------

def launches_by_op(graph):
    ops = {node.name: node.op for node in graph.nodes}
    return Counter(ops[k.node] for k in lower_graph(graph, 90, sm_count=132).launches)


def test_vit_focus_layer_scales_fold_into_the_gemms(monkeypatch):
    """Each of the 12 layers' two ``Linear -> Mul(gamma) -> Add(residual)`` becomes one
    FusedLinear (bias and residual in the GEMM epilogue): 24 pointwise launches fewer (and
    24 layernorm launches: fuse_linear_norm takes them into those GEMMs), and
    the numpy backend still matches ONNX Runtime on the unoptimised model."""
    model = zoo_data.BY_NAME['vit-focus']
    path, _ = zoo_data.model_files(model)
    graph = load_onnx(path, model.input_shape)
    optimised, report = optimize(graph, 3)
    assert report['fold_scale_shift'] == 24
    after = launches_by_op(optimised)
    with monkeypatch.context() as patch:                  # the same build without the fold
        patch.setattr(FOLD_MODULE, 'fold_into_linear', lambda g: 0)
        before = launches_by_op(optimize(graph, 3)[0])
    assert before['FusedPointwise'] == 24 and after['FusedPointwise'] == 0
    # and with the scales gone, the LayerNorm after each such GEMM joins its epilogue
    assert sum(after.values()) == sum(before.values()) - 24 - 24
    assert after['FusedLinear'] + after['FusedLinearNorm'] == before['FusedLinear']
    residuals = [n for n in optimised.nodes if n.op in ('FusedLinear', 'FusedLinearNorm')
                 and len(n.inputs) > 3]
    assert len(residuals) == 24
    feeds = {graph.inputs[0]: zoo_data.photo_tensor(model)}
    ours = numpy_outputs(optimised, feeds)[optimised.outputs[0]]
    assert rel(ours, ort_output(path, feeds)) <= model.tolerance
