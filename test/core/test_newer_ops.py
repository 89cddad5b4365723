"""Ops newer than opset 21 (``newer_ops.py``, ``attention_rewrite.py``): one-node opset-23/24
models against ``onnx.reference``, through our numpy and ort backends; refusals by name; an
opset-23 attention block fused into ``FusedAttention``."""
import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tx2_infer_core import reference
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.passes import optimize

RNG = np.random.default_rng(23)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def one_node(op, feeds, attrs=None, n_out=1, opset=23, weights=None):
    """A model of one ``op``: ``feeds`` graph inputs (None: an absent input), ``weights``
    initializers; outputs y0.. (None in ``n_out`` positions: absent)."""
    weights = weights or {}
    names = [k if v is not None else '' for k, v in {**feeds, **weights}.items()]
    outs = [f'y{i}' for i in range(n_out)]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **(attrs or {}))], op,
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items() if v is not None],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def check(model, feeds, tmp_path=None, backends=('numpy', 'ort')):
    """Ours (the reference interpreter, then each backend) == onnx.reference."""
    feeds = {k: v for k, v in feeds.items() if v is not None}
    want = ReferenceEvaluator(model).run(None, feeds)
    got = reference.execute(graph_from_model(model, next(iter(feeds.values())).shape), feeds)
    for i, expected in enumerate(want):
        np.testing.assert_allclose(got[f'y{i}'], expected, rtol=1e-4, atol=1e-5)
    if tmp_path is None:
        return
    onnx.save(model, str(tmp_path / 'm.onnx'))
    for backend in backends:
        with Engine.build(tmp_path / 'm.onnx', next(iter(feeds.values())).shape,
                          backend=backend) as engine:
            out = engine.run(feeds)
        np.testing.assert_allclose(out['y0'], want[0], rtol=1e-4, atol=1e-5)


ATTENTION_CASES = [  # (q, k, v shapes, mask, attrs)
    ((2, 4, 3, 8), (2, 4, 5, 8), (2, 4, 5, 6), None, {}),
    ((2, 4, 3, 8), (2, 2, 5, 8), (2, 2, 5, 6), None, {'is_causal': 1}),            # GQA
    ((2, 4, 5, 8), (2, 4, 5, 8), (2, 4, 5, 8), 'float', {'is_causal': 1, 'scale': 0.3}),
    ((1, 4, 3, 8), (1, 1, 6, 8), (1, 1, 6, 8), 'bool', {'softcap': 2.0}),
    ((2, 3, 16), (2, 5, 8), (2, 5, 8), 'bool',
     {'q_num_heads': 4, 'kv_num_heads': 2, 'is_causal': 1}),
    ((2, 3, 12), (2, 5, 12), (2, 5, 6), None, {'q_num_heads': 3, 'kv_num_heads': 3}),
]


@pytest.mark.parametrize('q, k, v, mask, attrs', ATTENTION_CASES)
def test_attention_matches_onnx_reference(q, k, v, mask, attrs, tmp_path):
    feeds = {'q': rand(*q), 'k': rand(*k), 'v': rand(*v)}
    scores = (q[-2], k[-2])
    if mask == 'bool':
        feeds['m'] = RNG.random(scores) > 0.3
        feeds['m'][1] = False                           # a fully masked row: zeros
    elif mask == 'float':
        feeds['m'] = rand(1, *scores)
    check(one_node('Attention', feeds, attrs), feeds, tmp_path)


@pytest.mark.parametrize('mode', [0, 1, 2, 3])
def test_attention_past_present_and_qk_output(mode):
    feeds = {'q': rand(1, 4, 2, 8), 'k': rand(1, 2, 2, 8), 'v': rand(1, 2, 2, 8),
             'm': rand(2, 5), 'pk': rand(1, 2, 3, 8), 'pv': rand(1, 2, 3, 8)}
    attrs = {'is_causal': 1, 'softcap': 3.0, 'qk_matmul_output_mode': mode}
    check(one_node('Attention', feeds, attrs, n_out=4), feeds)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.sampled_from([(4, 4), (4, 2), (4, 1), (6, 3)]),
       st.integers(1, 5), st.integers(1, 6), st.sampled_from([2, 4]),
       st.booleans(), st.sampled_from([None, 'bool', 'float']))
def test_attention_shapes_heads_masks(batch, heads, sq, skv, size, causal, mask):
    (hq, hkv), shape = heads, (sq, skv)
    feeds = {'q': rand(batch, hq, sq, size), 'k': rand(batch, hkv, skv, size),
             'v': rand(batch, hkv, skv, size)}
    if mask:
        feeds['m'] = RNG.random(shape) > 0.5 if mask == 'bool' else rand(*shape)
    check(one_node('Attention', feeds, {'is_causal': int(causal)}), feeds)


@pytest.mark.parametrize('interleaved', [0, 1])
@pytest.mark.parametrize('rank, rot_dim, positions', [
    (4, 0, True), (4, 4, True), (3, 0, True), (3, 4, False)])
def test_rotary_embedding_matches_onnx_reference(interleaved, rank, rot_dim, positions,
                                                 tmp_path):
    half = (rot_dim or 8) // 2
    x = rand(2, 3, 4, 8) if rank == 4 else rand(2, 4, 24)
    feeds = {'x': x, 'cos': rand(10, half), 'sin': rand(10, half),
             'pos': RNG.integers(0, 10, (2, 4))}
    if not positions:
        feeds.update(cos=rand(2, 4, half), sin=rand(2, 4, half), pos=None)
    attrs = {'interleaved': interleaved, 'rotary_embedding_dim': rot_dim}
    if rank == 3:
        attrs['num_heads'] = 3
    check(one_node('RotaryEmbedding', feeds, attrs), feeds, tmp_path)


def test_swish_and_parked_native_ops(tmp_path):
    x = {'x': rand(2, 6)}
    check(one_node('Swish', x, {'alpha': 0.7}, opset=24), x, tmp_path)
    # (the ort backend's export writes opset 13, which has no RMSNormalization)
    check(one_node('RMSNormalization', x, weights={'s': rand(6)}), x, tmp_path, ('numpy',))


@pytest.mark.parametrize('op, feeds, attrs, match', [
    ('TensorScatter', {'c': rand(1, 4, 3), 'u': rand(1, 1, 3)}, {},
     r'TensorScatter \(opset 24\) has no opset-21 form; not supported yet'),
    ('Attention', {'q': rand(1, 2, 3, 4), 'k': rand(1, 2, 3, 4), 'v': rand(1, 2, 3, 4)},
     {'qk_matmul_output_mode': 5}, 'qk_matmul_output_mode=5'),
    ('Attention', {'q': rand(1, 3, 8), 'k': rand(1, 3, 8), 'v': rand(1, 3, 8)}, {},
     'without q_num_heads'),
])
def test_newer_ops_refused_by_name(op, feeds, attrs, match):
    with pytest.raises(UnsupportedOpError, match=match):
        graph_from_model(one_node(op, feeds, attrs, opset=24), next(iter(feeds.values())).shape)


def block(seq=6, hidden=16, heads=4):
    """x -> q/k/v projections -> RotaryEmbedding(q, k) -> Attention(3-D, causal) -> out
    projection: an opset-23 attention block."""
    w = {n: rand(hidden, hidden) * 0.3 for n in ('wq', 'wk', 'wv', 'wo')}
    w.update(cos=np.cos(rand(seq, 2)), sin=np.sin(rand(seq, 2)),
             pos=np.arange(seq, dtype=np.int64)[None])
    nodes = [helper.make_node('MatMul', ['x', f'w{n}'], [n]) for n in 'qkv'] + [
        helper.make_node('RotaryEmbedding', [n, 'cos', 'sin', 'pos'], [f'r{n}'],
                         num_heads=heads) for n in 'qk'] + [
        helper.make_node('Attention', ['rq', 'rk', 'v'], ['a'], is_causal=1,
                         q_num_heads=heads, kv_num_heads=heads),
        helper.make_node('MatMul', ['a', 'wo'], ['y0'])]
    graph = helper.make_graph(
        nodes, 'block', [helper.make_tensor_value_info('x', TensorProto.FLOAT, (1, seq, hidden))],
        [helper.make_tensor_value_info('y0', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 23)])


def test_attention_block_end_to_end_and_fused(tmp_path):
    model, feeds = block(), {'x': rand(1, 6, 16)}
    check(model, feeds, tmp_path)
    graph, _ = optimize(graph_from_model(model, (1, 6, 16)), 3)
    assert 'FusedAttention' in {n.op for n in graph.nodes}
