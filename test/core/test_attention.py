"""FusedAttention without a GPU: the passes (``fuse_attention``, ``merge_matmuls``) on a
BERT-shaped graph and on the zoo's ppocr-rec (numpy backend against ONNX Runtime), the numpy op
against an unfused float64 computation (hypothesis), the lowered launches (a count), refusals.

The BERT-shaped graph (``attention_cases.py``) has seeded weights: no trained BERT-tiny is in
the registries the project fetches from; ppocr-rec (PP-OCRv4 SVTR) is the real model.
"""
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attention_cases as cases
from tx2_infer_core.backends.numpy_backend import NumpyBackend
from tx2_infer_core.cuda import compile as cc, lower_attention
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.ops import run_node
from tx2_infer_core.passes import optimize
from tx2_infer_core.passes.merge_matmuls import concat_linear_weights
from tx2_infer_core.plan_file import save_plan
from tx2_infer_core.planner import plan_memory

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

MASKED = dict(mask=cases.padding_mask(128, 100))
VARIANTS = {'torchscript': {}, 'mask': MASKED, 'div_mask': dict(MASKED, div_scale=True)}


def rel(out, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(out, np.float64) - ref) / np.linalg.norm(ref))


def numpy_outputs(graph, feeds) -> dict:
    """One run of ``graph`` on the numpy backend (inside its planned arena)."""
    backend = NumpyBackend()
    backend.prepare(graph, plan_memory(graph))
    try:
        return backend.run(feeds)
    finally:
        backend.close()


def bert(tmp_path, **kw):
    """(path, unoptimised graph) of a BERT-shaped model."""
    path = tmp_path / 'bert.onnx'
    onnx.save(cases.bert_model(**kw), str(path))
    return path, load_onnx(path)


def ort_output(path, feeds):
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider']).run(None,
                                                                                   feeds)[0]


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_bert_shaped_fuses_and_matches_onnxruntime(tmp_path, variant):
    path, graph = bert(tmp_path, **VARIANTS[variant])
    optimised, report = optimize(graph, 3)
    assert report['fuse_attention'] == 2 and report['merge_matmuls'] == 2
    summary = optimised.summary()
    assert summary['FusedAttention'] == 2 and summary['FusedLinear'] == 4  # qkv, ffn in x2
    assert summary['FusedLinearNorm'] == 4 and summary['LayerNormalization'] == 1  # o, ffn out
    assert not {'Softmax', 'Transpose', 'Reshape', 'Mul', 'Div'} & set(summary)
    for node in (n for n in optimised.nodes if n.op == 'FusedAttention'):
        assert len(set(node.inputs[:3])) == 1          # one merged QKV tensor, three views
        assert bool(node.inputs[3]) == ('mask' in variant)
        assert node.attrs['scale'] == pytest.approx(64 ** -0.5, rel=1e-6)
    x = cases.embeddings()
    ours = numpy_outputs(optimised, {'embeddings': x})[optimised.outputs[0]]
    assert rel(ours, ort_output(path, {'embeddings': x})) <= 1e-5


def test_ppocr_rec_attention_matches_onnxruntime():
    model = zoo_data.BY_NAME['ppocr-rec']
    path, _ = zoo_data.model_files(model)
    graph = load_onnx(path, model.input_shape)
    optimised, report = optimize(graph, 3)
    assert report['fuse_attention'] == 2 and report['merge_matmuls'] == 0  # already one qkv
    for node in (n for n in optimised.nodes if n.op == 'FusedAttention'):
        assert node.attrs['dims'] == [1, 8, 40, 40, 15, 15]
        assert [node.attrs[v][0] for v in ('q_view', 'k_view', 'v_view')] == [0, 120, 240]
    assert 'Softmax' in optimised.summary()             # the CTC head's, not an attention's
    x = zoo_data.photo_tensor(model)
    feeds = {graph.inputs[0]: x}
    ours = numpy_outputs(optimised, feeds)[optimised.outputs[0]]
    assert rel(ours, ort_output(path, feeds)) <= 1e-5


def test_bert_shaped_lowers_to_15_launches(tmp_path):
    """A count, not a time: per layer one QKV GEMM (its bias in the epilogue), one attention,
    then o, FFN (test_fuse_linear.py) launches; on sm_90 the LayerNorms after o (4 CTAs) and
    after FFN out (K = 512 on 4 CTAs, split in a cluster) are a GEMM + layernorm each
    (launch_knobs' 'auto', few CTAs); on sm_62 too. No batched matmul, softmax or copy launch
    is left."""
    _, graph = bert(tmp_path, **MASKED)
    optimised, _ = optimize(graph, 3)
    for arch, attention, total, norms in ((90, 'attention_mma', 15, 5),
                                          (62, 'attention_simt', 15, 5)):
        kernels = Counter(k.kernel for k in lower_graph(optimised, arch, sm_count=132).launches)
        assert sum(kernels.values()) == total, kernels
        assert kernels[attention] == 2 and kernels['layernorm'] == norms
        assert not {'matmul', 'softmax', 'unary', 'unary_vec8'} & set(kernels), kernels


def test_a_plan_file_keeps_the_fused_attention(tmp_path):
    """A cuda build's graph (level 3) saved and loaded: the attention's attributes pass the
    plan checks and the reference run of the load."""
    _, graph = bert(tmp_path, layers=1, **MASKED)
    optimised, _ = optimize(graph, 3)
    save_plan(tmp_path / 'b.tx2plan', optimised, plan_memory(optimised).to_dict(),
              {'precision': 'fp32', 'backend': 'cpu', 'model': 'b', 'input_shape': [1, 128, 128]})
    feeds = {'embeddings': cases.embeddings()}
    with Engine.load(tmp_path / 'b.tx2plan', backend='numpy') as engine:
        assert engine.graph.summary()['FusedAttention'] == 1
        out = engine.run(feeds)[optimised.outputs[0]]
    np.testing.assert_array_equal(out, numpy_outputs(optimised, feeds)[optimised.outputs[0]])


def test_kernel_constants_match_the_lowering():
    text = (ROOT / 'kernels' / 'attention.cu').read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r'#define\s+(ATT_\w+)\s+(\d+)', text)}
    assert found['ATT_MAX_D'] == lower_attention.MAX_HEAD
    assert found['ATT_SIMT_WARPS'] * found['ATT_SIMT_ROWS'] == lower_attention.SIMT_ROWS
    assert found['ATT_SIMT_WARPS'] * 32 == lower_attention.SIMT_THREADS
    assert lower_attention.MMA_WARPS * 32 <= int(re.search(
        r'__launch_bounds__\((\d+)\) attention_mma', text)[1])


@pytest.mark.parametrize('arch', [62, 72, 87])
def test_attention_mma_holds_tensor_core_code_only_from_sm80(arch):
    """NVRTC's PTX: attention_simt everywhere; attention_mma is mma.sync on sm_87 (Orin) and a
    trap stub on sm_62/72, which the lowering never picks there."""
    try:
        cc.load_nvrtc()
    except cc.CompileError as exc:
        pytest.skip(f'NVRTC unavailable: {exc}')
    ptx = cc.nvrtc_compile('attention', arch, {}, ptx=True).decode()
    assert '.entry attention_simt(' in ptx and '.entry attention_mma(' in ptx
    assert ('mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32' in ptx) == (arch >= 80)


def test_declines_when_the_scores_are_read_elsewhere(tmp_path):
    path, graph = bert(tmp_path, layers=1)
    softmax = next(n for n in graph.nodes if n.op == 'Softmax')
    graph.outputs.append(softmax.inputs[0])
    optimised, report = optimize(graph, 3)
    assert report['fuse_attention'] == 0 and 'FusedAttention' not in optimised.summary()


def test_declines_a_softmax_over_another_axis(tmp_path):
    _, graph = bert(tmp_path, layers=1)
    next(n for n in graph.nodes if n.op == 'Softmax').attrs['axis'] = 2
    optimised, report = optimize(graph, 3)
    assert report['fuse_attention'] == 0
    x = cases.embeddings()
    ref = numpy_outputs(optimize(graph, 2)[0], {'embeddings': x})
    assert rel(numpy_outputs(optimised, {'embeddings': x})[graph.outputs[0]],
               ref[graph.outputs[0]]) <= 1e-6


def test_concat_linear_weights_is_the_side_by_side_product():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    ws = [rng.standard_normal((6, n)) for n in (3, 4, 2)]
    bs = [rng.standard_normal(3), None, rng.standard_normal(2)]
    w, b = concat_linear_weights(ws, bs)
    want = np.concatenate([x @ wi + (0 if bi is None else bi) for wi, bi in zip(ws, bs)], 1)
    np.testing.assert_allclose(x @ w + b, want, rtol=1e-12)
    assert concat_linear_weights(ws, [None] * 3)[1] is None


# --- the numpy op against an unfused computation -------------------------------------------

def _unfused(q, k, v, mask, scale):
    """softmax(scale * q k^T + mask) v in float64, [B, H, S, D] operands."""
    s = scale * np.matmul(q.astype(np.float64), np.swapaxes(k, -1, -2).astype(np.float64))
    if mask is not None:
        s = s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return np.matmul(e / e.sum(-1, keepdims=True), v.astype(np.float64))


def _rows(x):
    """[B, H, S, D] -> [B, S, H * D] and the view reading it back."""
    b, h, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, h * d), [0, s * h * d, d, h * d, 1]


def _bhsd(x):
    b, h, s, d = x.shape
    return x, [0, h * s * d, s * d, d, 1]


def _mask(kind, b, h, sq, sk, rng):
    if kind == 'none':
        return None
    if kind == 'keys':
        m = np.where(rng.random((b, 1, 1, sk)) < 0.3, -1e4, 0.0)
        m[..., 0] = 0.0                                   # one key always visible
        return m.astype(np.float32)
    if kind == 'causal':
        return np.triu(np.full((sq, sk), -1e4, np.float32), 1)
    return rng.standard_normal((1, h, sq, sk)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 2), h=st.integers(1, 4), sq=st.integers(1, 40), sk=st.integers(1, 40),
       d=st.integers(1, 20), dv=st.integers(1, 20),
       mask=st.sampled_from(['none', 'keys', 'causal', 'full']),
       layout=st.sampled_from(['bhsd', 'rows']), seed=st.integers(0, 2 ** 16))
def test_numpy_op_matches_unfused(b, h, sq, sk, d, dv, mask, layout, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(np.float32)
               for s in ((b, h, sq, d), (b, h, sk, d), (b, h, sk, dv)))
    m = _mask(mask, b, h, sq, sk, rng)
    scale = float(rng.uniform(0.05, 1.0))
    store = _rows if layout == 'rows' else _bhsd
    (qx, qv), (kx, kv), (vx, vv) = store(q), store(k), store(v)
    out_shape, out_view = ([b, sq, h * dv], [0, sq * h * dv, dv, h * dv, 1]) if (
        layout == 'rows') else ([b, h, sq, dv], [0, h * sq * dv, sq * dv, dv, 1])
    node = Node('FusedAttention', 'att', ['q', 'k', 'v', 'm' if m is not None else ''], ['y'],
                dict(scale=scale, dims=[b, h, sq, sk, d, dv], q_view=qv, k_view=kv, v_view=vv,
                     out_view=out_view, out_shape=out_shape))
    got = run_node(node, [qx, kx, vx, m])[0]
    want = _unfused(q, k, v, m, scale)
    if layout == 'rows':
        want = _rows(want)[0]
    # each output is a weighted mean of V's rows: FP32 rounding is relative to |V|, not to the
    # output, which can cancel to near zero (sk=38, dv=1: -5.6e-4 from values of about 1)
    err = np.abs(np.asarray(got, np.float64) - want).max() if want.size else 0.0
    assert got.shape == want.shape and err <= 1e-5 * max(1.0, float(np.abs(v).max()))


def test_merged_qkv_views_read_their_columns():
    """Q, K, V as three column slices of one [B, S, 3 * H * D] tensor (the merged GEMM)."""
    rng = np.random.default_rng(3)
    b, h, s, d = 1, 2, 9, 5
    qkv = rng.standard_normal((b, s, 3 * h * d)).astype(np.float32)
    q, k, v = (qkv[..., i * h * d:(i + 1) * h * d].reshape(b, s, h, d).transpose(0, 2, 1, 3)
               for i in range(3))
    views = [[i * h * d, s * 3 * h * d, d, 3 * h * d, 1] for i in range(3)]
    node = Node('FusedAttention', 'att', ['x', 'x', 'x', ''], ['y'],
                dict(scale=0.5, dims=[b, h, s, s, d, d], q_view=views[0], k_view=views[1],
                     v_view=views[2], out_view=[0, h * s * d, s * d, d, 1],
                     out_shape=[b, h, s, d]))
    assert rel(run_node(node, [qkv, qkv, qkv])[0], _unfused(q, k, v, None, 0.5)) <= 1e-5


# --- refusals ----------------------------------------------------------------------------------

def _one_node(dims, views=None, out_shape=None):
    b, h, sq, sk, d, dv = dims
    shapes = {'q': (b, h, sq, d), 'k': (b, h, sk, d), 'v': (b, h, sk, dv)}
    out_shape = out_shape or [b, h, sq, dv]
    values = {n: Value(n, s) for n, s in shapes.items()}
    values['y'] = Value('y', tuple(out_shape))
    views = views or {n: _bhsd(np.zeros(s))[1] for n, s in shapes.items()}
    attrs = dict(scale=1.0, dims=list(dims), q_view=views['q'], k_view=views['k'],
                 v_view=views['v'], out_view=_bhsd(np.zeros(out_shape))[1],
                 out_shape=list(out_shape))
    node = Node('FusedAttention', 'att', ['q', 'k', 'v', ''], ['y'], attrs)
    return Graph([node], ['q', 'k', 'v'], ['y'], values, {})


def test_lowering_refuses_a_head_over_128():
    with pytest.raises(UnsupportedOpError, match='head size 160'):
        lower_graph(_one_node([1, 2, 8, 8, 160, 64]), 90)


def test_a_view_outside_its_tensor_is_refused():
    graph = _one_node([1, 1, 4, 4, 8, 8])
    graph.nodes[0].attrs['k_view'] = [0, 0, 0, 9, 1]   # rows 9 apart in a 32-element tensor
    with pytest.raises(UnsupportedOpError, match='reaches outside'):
        lower_graph(graph, 90)
    args = [np.zeros((1, 1, 4, 8), np.float32)] * 3
    with pytest.raises(UnsupportedOpError, match='reaches outside'):
        run_node(graph.nodes[0], args)
