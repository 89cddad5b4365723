"""Einsum on CUDA without a GPU: the plan (``passes/einsum_plan.py``), the pass
(``rewrite_einsum``) and the lowering. Random equations (hypothesis) rewritten and run on the
numpy backend against ``numpy.einsum``, and lowered for sm_90 over the emulated arena (the
copies and the batched matmul as launched); the plans of the attention equations; the ONNX
node cases lowered and emulated; a small ONNX model with Einsum attention built at level 3;
refusals by name."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import test_onnx_node_conformance as cpu
from node_cases import GPU, data_sets
from einsum_cases import attention_model
from emulated_arena import emulate
from tx2_infer_core import reference
from tx2_infer_core.backends.numpy_backend import NumpyBackend
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize
from tx2_infer_core.passes.einsum_plan import MAX_RANK, EinsumRefused, einsum_plan
from tx2_infer_core.passes.rewrite_einsum import rewrite_einsum, without_einsum
from tx2_infer_core.planner import plan_memory

RNG = np.random.default_rng(7)
PLAN_OPS = {'MatMul', 'Transpose', 'Reshape', 'Slice', 'Mul', 'ReduceSum', 'Identity'}
LAUNCHED = {'MatMul', 'Transpose', 'Reshape', 'Slice', 'Identity'}  # the rest: numpy ops


def einsum_graph(equation, arrays, constants=(), dtype='float32'):
    """(one-Einsum Graph, feeds): operand i is ``x{i}``, a constant when i is in
    ``constants``; the output ``y`` has numpy's shape."""
    names = [f'x{i}' for i in range(len(arrays))]
    values = {n: Value(n, a.shape, dtype) for n, a in zip(names, arrays)}
    out = np.einsum(equation, *arrays)
    values['y'] = Value('y', out.shape, dtype)
    weights = {n: a for i, (n, a) in enumerate(zip(names, arrays)) if i in constants}
    inputs = [n for n in names if n not in weights]
    graph = Graph([Node('Einsum', 'e', names, ['y'], {'equation': equation})], inputs, ['y'],
                  values, weights)
    return graph, {n: a for n, a in zip(names, arrays) if n in inputs}


def numpy_run(graph, feeds) -> np.ndarray:
    backend = NumpyBackend()
    backend.prepare(graph, plan_memory(graph))
    try:
        return backend.run(feeds)['y']
    finally:
        backend.close()


def check_rewrite(equation, shapes, constants=()):
    """The rewritten graph on the numpy backend and over the emulated CUDA arena against
    ``numpy.einsum``."""
    arrays = [RNG.standard_normal(s).astype(np.float16).astype(np.float32)  # the weight
              for s in shapes]                                             # image's FP16
    graph, feeds = einsum_graph(equation, arrays, constants)
    want = np.einsum(equation, *[a.astype(np.float64) for a in arrays])
    if want.ndim > MAX_RANK:  # past the CUDA views: left alone (the lowering refuses it)
        assert rewrite_einsum(graph) == 0
        return
    assert rewrite_einsum(graph) == 1
    assert {n.op for n in graph.nodes} <= PLAN_OPS, [n.op for n in graph.nodes]
    np.testing.assert_allclose(numpy_run(graph, feeds), want, rtol=1e-4, atol=1e-4)
    gemm_1x1 = any(n.op == 'MatMul' and np.ndim(graph.weights.get(n.inputs[1])) == 2
                   for n in graph.nodes)  # a 1x1 convolution launch: numpy's MatMul here
    got, _ = emulate(graph, feeds, LAUNCHED - {'MatMul'} if gemm_1x1 else LAUNCHED)
    np.testing.assert_allclose(got['y'], want, rtol=1e-4, atol=1e-4)


@st.composite
def two_operands(draw):
    """(equation, shapes): two operands of 1-4 letters, batch letters (in both and the
    output), contracted ones (in both only), free ones (in one and the output), summed ones
    (in one only); letters in any order, sizes 1-4, sometimes an implicit output."""
    len_a, len_b = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shared = draw(st.integers(0, min(len_a, len_b)))
    n_batch = draw(st.integers(0, shared))
    sum_a = draw(st.integers(0, min(1, len_a - shared)))
    sum_b = draw(st.integers(0, min(1, len_b - shared)))
    pool = iter('abcdefghijkl')
    batch, contract, free_a, free_b, sum_a, sum_b = (
        [next(pool) for _ in range(k)] for k in (n_batch, shared - n_batch,
                                                 len_a - shared - sum_a, len_b - shared - sum_b,
                                                 sum_a, sum_b))
    a = draw(st.permutations(batch + contract + free_a + sum_a))
    b = draw(st.permutations(batch + contract + free_b + sum_b))
    size = {c: draw(st.integers(1, 4)) for c in a + b}
    out = ''.join(draw(st.permutations(batch + free_a + free_b)))
    arrow = '' if draw(st.integers(0, 4)) == 0 else f'->{out}'
    equation = f"{''.join(a)},{''.join(b)}{arrow}"
    return equation, [tuple(size[c] for c in a), tuple(size[c] for c in b)]


@settings(max_examples=80, deadline=None)
@given(two_operands(), st.booleans())
def test_random_two_operand_equations_match_numpy(case, constant_b):
    equation, shapes = case
    check_rewrite(equation, shapes, constants=(1,) if constant_b else ())


@st.composite
def any_operands(draw):
    """(equation, shapes): 1-3 operands over letters 'abcd' (repeats: diagonals), an output
    of some of them or implicit, sometimes an ellipsis (right-aligned, size-1 axes
    broadcast)."""
    size = {c: draw(st.integers(1, 3)) for c in 'abcd'}
    terms = [draw(st.lists(st.sampled_from('abcd'), max_size=3)) for _ in
             range(draw(st.integers(1, 3)))]
    ellipsis = draw(st.lists(st.integers(1, 3), max_size=2))
    shapes = []
    for term in terms:
        dims = ellipsis[len(ellipsis) - draw(st.integers(0, len(ellipsis))):]
        dims = [d if draw(st.booleans()) else 1 for d in dims]
        shapes.append(tuple(dims) + tuple(size[c] for c in term))
    seen = sorted({c for t in terms for c in t})
    out = ''.join(draw(st.permutations(seen))[:draw(st.integers(0, len(seen)))])
    dots = '...' if ellipsis else ''
    arrow = '' if draw(st.booleans()) else f'->{dots}{out}'
    equation = ','.join(dots + ''.join(t) for t in terms) + arrow
    return equation, shapes


@settings(max_examples=80, deadline=None)
@given(any_operands())
def test_random_equations_with_diagonals_ellipses_and_three_operands(case):
    equation, shapes = case
    check_rewrite(equation, shapes)


ATTENTION = [  # equation, shapes, the plan's ops
    ('bhid,bhjd->bhij', [(2, 3, 5, 4), (2, 3, 6, 4)], ['Transpose', 'MatMul']),
    ('bhij,bhjd->bhid', [(2, 3, 5, 6), (2, 3, 6, 4)], ['MatMul']),
    ('bij,bjk->bik', [(3, 5, 4), (3, 4, 6)], ['MatMul']),
    ('bid,bjd->bij', [(3, 5, 4), (3, 6, 4)], ['Transpose', 'MatMul']),
    ('nchw,nc->nhw', [(2, 3, 4, 5), (2, 3)], ['Transpose', 'Reshape', 'Mul', 'ReduceSum']),
    ('bnd,dh->bnh', [(2, 5, 4), (4, 6)], ['Reshape', 'MatMul', 'Reshape']),
    ('i,j->ij', [(3,), (4,)], ['Reshape', 'Mul']),
    ('ij->ji', [(3, 4)], ['Transpose']),
    ('ij->i', [(3, 4)], ['ReduceSum']),
    ('ij->ij', [(3, 4)], ['Identity']),
    ('...ii->...i', [(2, 3, 3)], ['Reshape', 'Slice']),
]


@pytest.mark.parametrize('equation, shapes, ops', ATTENTION, ids=[c[0] for c in ATTENTION])
def test_plan_of_known_equations(equation, shapes, ops):
    steps = einsum_plan(equation, shapes)
    assert [s.op for s in steps] == ops
    check_rewrite(equation, shapes)


MORE = [  # equation, shapes: what numpy broadcasts, orders and chains
    ('...ij,...jk->...ik', [(2, 3, 4, 5), (3, 5, 6)]),  # ellipses right-aligned
    ('...i,...i->...', [(2, 1, 3), (4, 3)]),  # a size-1 ellipsis axis broadcast
    ('ij,jk', [(2, 1), (3, 4)]),  # a size-1 contracted axis broadcast
    ('aB,cA', [(2, 3), (4, 5)]),  # implicit output: capitals first
    ('ijk,jkl,lm->mi', [(2, 3, 4), (3, 4, 5), (5, 6)]),
    ('bii,bjj->bij', [(2, 3, 3), (2, 4, 4)]),
    ('ab,cd->', [(2, 3), (4, 5)]),
]


@pytest.mark.parametrize('equation, shapes', MORE, ids=[c[0] for c in MORE])
def test_broadcasts_implicit_outputs_and_chains(equation, shapes):
    check_rewrite(equation, shapes)


def test_attention_scores_transpose_only_the_keys():
    transpose, matmul = einsum_plan('bhid,bhjd->bhij', [(1, 2, 5, 4), (1, 2, 6, 4)])
    assert transpose.inputs == (1,) and transpose.args == (0, 1, 3, 2)
    assert matmul.inputs == (0, 2) and matmul.shape == (1, 2, 5, 6)


def test_attention_lowers_to_one_matmul():
    """Q K^T on activations: the keys' Transpose is a view the matmul reads, or one copy."""
    graph, _ = einsum_graph('bhid,bhjd->bhij', [RNG.standard_normal((1, 4, 16, 8)),
                                                RNG.standard_normal((1, 4, 16, 8))])
    kernels = [k.kernel for k in lower_graph(graph, arch=90).launches]
    assert kernels.count('matmul') == 1 and len(kernels) <= 2, kernels


def _node_cases():
    cases = cpu.collect_cases().get('Einsum', [])
    return {f.name: f for f in cases}


NODE_CASES = _node_cases()


@pytest.mark.parametrize('name', sorted(NODE_CASES))
@pytest.mark.parametrize('all_activations', [False, True])
def test_onnx_node_case_lowers_and_matches(name, all_activations, monkeypatch):
    """Each case as the GPU conformance test builds it (the first operand an activation, the
    others constants) and with every operand an activation: lowered for sm_90 and sm_62 (never
    refused) and run over the emulated arena within its FP16 tolerance."""
    if all_activations:
        monkeypatch.setattr(GPU, 'ACTIVATION_OPS', GPU.ACTIVATION_OPS | {'Einsum'})
    for graph, acts, expected in data_sets(NODE_CASES[name]):
        if graph is None:  # bfloat16: not a float case
            pytest.skip(f'{name}: not a float case')
        lower_graph(graph, arch=62)
        rewritten, count = without_einsum(graph)
        assert count == 1
        got, _ = emulate(rewritten, acts, LAUNCHED)
        for out, want in expected.items():
            assert GPU.close(got[out], want), (name, out)


def test_cuda_build_of_einsum_attention_lowers(tmp_path):
    """Level 3 (the cuda builds) leaves no Einsum (the two become MatMuls that
    fuse_attention takes: one FusedAttention after the merged QKV projection), runs on the
    numpy backend like the unoptimised graph (numpy's einsum), and lowers for sm_90 and
    sm_62."""
    path = tmp_path / 'einsum_attention.onnx'
    onnx.save(attention_model(RNG), str(path))
    graph = load_onnx(path)
    fast, report = optimize(graph, level=3)
    assert report['rewrite_einsum'] == 2 and report['fuse_attention'] == 1
    assert 'Einsum' not in {n.op for n in fast.nodes}
    x = {'x': RNG.standard_normal((1, 6, 16)).astype(np.float32)}
    want = reference.execute(graph, x)['y']
    np.testing.assert_allclose(numpy_run(fast, x), want, rtol=1e-4, atol=1e-5)
    for arch in (90, 62):
        assert lower_graph(fast, arch=arch).launches
    slow, _ = optimize(graph, level=2)  # the cpu builds keep numpy's einsum
    assert [n.op for n in slow.nodes].count('Einsum') == 2


REFUSED = [  # equation, shapes, dtype, what the refusal says
    ('ij->ji', [(2, 3)], 'int64', 'floats only'),
    ('ij,jk->ik', [(2, 2), (3, 4)], 'float32', "letter 'j' has sizes [2, 3]"),
    ('...ij->ij', [(2, 3, 4)], 'float32', 'the output drops the ellipsis axes'),
]


@pytest.mark.parametrize('equation, shapes, dtype, why', REFUSED, ids=[c[0] for c in REFUSED])
def test_lowering_refuses_by_name(equation, shapes, dtype, why):
    """What the plan does not take stays an Einsum, which the lowering refuses naming the
    node, the equation and why."""
    arrays = [np.ones(s, dtype) for s in shapes]
    names = [f'x{i}' for i in range(len(arrays))]
    values = {n: Value(n, a.shape, dtype) for n, a in zip(names, arrays)}
    values['y'] = Value('y', (2, 4), dtype)
    graph = Graph([Node('Einsum', 'attn_scores', names, ['y'], {'equation': equation})], names,
                  ['y'], values, {})
    assert rewrite_einsum(graph.copy()) == 0
    with pytest.raises(UnsupportedOpError) as err:
        lower_graph(graph, arch=90)
    for part in ('Einsum', 'attn_scores', f"equation '{equation}'", why):
        assert part in str(err.value)


@pytest.mark.parametrize('equation, shapes', [
    ('abcdefg->a', [(1,) * 7]),  # past the CUDA views' 6 axes
    ('ij,jk,kl->il', [(2, 3), (3, 4)]),  # three subscripts, two inputs
    ('i->ii', [(3,)]),  # an output letter twice
    ('ij->k', [(3, 4)]),  # an output letter from no operand
    ('i.j->ij', [(3, 4)]),
    ('iij->ij', [(2, 3, 4)]),  # a diagonal of two sizes
])
def test_plan_refuses_what_numpy_refuses_or_cuda_cannot(equation, shapes):
    with pytest.raises(EinsumRefused):
        einsum_plan(equation, shapes)
