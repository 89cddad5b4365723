"""FusedAttention on the GPU: kernels/attention.cu (attention_mma on the 'tc' path from sm_80,
attention_simt on 'simt' and older GPUs) against the numpy op on many shapes, layouts and masks;
the zoo's ppocr-rec and the BERT-shaped graph (test/core/attention_cases.py) against ONNX
Runtime, both paths."""
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import assert_close, first_output_fp16, fp16_round, zoo_model_path
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
sys.path.insert(0, str(ROOT / 'test' / 'core'))
import attention_cases as cases  # noqa: E402
import zoo_data  # noqa: E402

PATHS = ('simt', 'tc')
KERNEL = {'simt': 'attention_simt', 'tc': 'attention_mma'}
# (B, H, Sq, Sk, D, Dv): BERT-tiny, ppocr-rec (D = 15), decode-like, odd sizes, the largest
# head, long sequences (several key tiles, a partial last one), a single element
SHAPES = [(1, 2, 128, 128, 64, 64), (1, 8, 40, 40, 15, 15), (2, 3, 1, 7, 16, 16),
          (1, 1, 65, 200, 80, 72), (1, 4, 512, 512, 128, 128), (1, 2, 17, 300, 32, 8),
          (2, 2, 100, 33, 128, 128), (1, 1, 1, 1, 1, 1), (3, 5, 33, 70, 24, 40)]
MASKS = ('none', 'keys', 'full')
RNG = np.random.default_rng(12)


def _bhsd_view(b, h, s, d):
    return [0, h * s * d, s * d, d, 1]


def separate(dims):
    """Q, K, V as three [B, H, S, D] inputs, the output [B, H, Sq, Dv]."""
    b, h, sq, sk, d, dv = dims
    inputs = {'q': (b, h, sq, d), 'k': (b, h, sk, d), 'v': (b, h, sk, dv)}
    views = {n: _bhsd_view(*s) for n, s in inputs.items()}
    return inputs, ['q', 'k', 'v'], views, [b, h, sq, dv], _bhsd_view(b, h, sq, dv)


def merged(dims):
    """Q, K, V as column slices of one [B, S, 3 * H * D] input (the merged projection), the
    output [B, Sq, H * Dv] (what the next projection reads). Needs Sq == Sk, D == Dv."""
    b, h, s, _, d, _ = dims
    w = 3 * h * d
    views = {n: [i * h * d, s * w, d, w, 1] for i, n in enumerate('qkv')}
    return ({'x': (b, s, w)}, ['x', 'x', 'x'], views, [b, s, h * d],
            [0, s * h * d, d, h * d, 1])


def attention_graph(dims, layout, mask):
    """A one-node FusedAttention graph and its fp16-exact feeds."""
    b, h, sq, sk, _, _ = dims
    inputs, names, views, out_shape, out_view = layout(dims)
    weights, mask_name = {}, ''
    if mask == 'keys':      # a constant padding mask, one key always visible
        m = np.where(RNG.random((b, 1, 1, sk)) < 0.3, -1e4, 0.0).astype(np.float32)
        m[..., 0] = 0.0
        weights, mask_name = {'m': m}, 'm'
    elif mask == 'full':    # an activation, one value per (head, query, key)
        inputs, mask_name = dict(inputs, m=(1, h, sq, sk)), 'm'
    values = {n: Value(n, tuple(s)) for n, s in inputs.items()}
    values['y'] = Value('y', tuple(out_shape))
    attrs = dict(scale=float(RNG.uniform(0.1, 0.5)), dims=list(dims), q_view=views['q'],
                 k_view=views['k'], v_view=views['v'], out_view=out_view,
                 out_shape=list(out_shape))
    node = Node('FusedAttention', 'att', names + [mask_name], ['y'], attrs)
    graph = Graph([node], list(inputs), ['y'], values, weights)
    feeds = {n: fp16_round(RNG.standard_normal(s)) for n, s in inputs.items()}
    return graph, feeds


def _run(graph, feeds, path):
    backend = CudaBackend(conv_path=path)
    backend.prepare(graph)
    try:
        return backend.run(feeds)['y'], [k.kernel for k in backend.launches]
    finally:
        backend.close()


def _numpy_reference(graph, feeds):
    """The numpy op's output for the graph's one FusedAttention node."""
    node = graph.nodes[0]
    args = [feeds.get(n, graph.weights.get(n)) if n else None for n in node.inputs]
    return run_node(node, args)[0]


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('mask', MASKS)
@pytest.mark.parametrize('dims', SHAPES, ids=lambda d: 'x'.join(map(str, d)))
def test_kernel_matches_numpy_op_separate(dims, mask, path):
    graph, feeds = attention_graph(dims, separate, mask)
    ref = _numpy_reference(graph, feeds)
    out, kernels = _run(graph, feeds, path)
    assert kernels == [KERNEL[path]]
    assert_close(f'attention {path} separate {dims} mask={mask}', out, ref, 3e-3)


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('mask', MASKS)
@pytest.mark.parametrize('dims', [s for s in SHAPES if s[2] == s[3] and s[4] == s[5]],
                         ids=lambda d: 'x'.join(map(str, d)))
def test_kernel_matches_numpy_op_merged_qkv(dims, mask, path):
    graph, feeds = attention_graph(dims, merged, mask)
    ref = _numpy_reference(graph, feeds)
    out, _ = _run(graph, feeds, path)
    assert_close(f'attention {path} merged {dims} mask={mask}', out, ref, 3e-3)


def _ort(path, feeds):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize('path', PATHS)
def test_ppocr_rec_matches_onnxruntime(path, tmp_path):
    model = zoo_data.BY_NAME['ppocr-rec']
    onnx_path = zoo_model_path(model.name, tmp_path)
    x = zoo_data.photo_tensor(model)
    feeds = {onnx.load(str(onnx_path)).graph.input[0].name: x}
    out, kernels = first_output_fp16(onnx_path, feeds, path, model.input_shape)
    assert kernels.count(KERNEL[path]) == 2
    assert_close(f'ppocr-rec {path}', out, _ort(onnx_path, feeds), 2e-2)


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('mask', [False, True])
def test_bert_shaped_matches_onnxruntime(tmp_path, path, mask):
    onnx_path = tmp_path / 'bert.onnx'
    onnx.save(cases.bert_model(mask=cases.padding_mask(128, 100) if mask else None),
              str(onnx_path))
    feeds = {'embeddings': cases.embeddings()}
    out, kernels = first_output_fp16(onnx_path, feeds, path)
    # 'tc' on sm_90: LayerNorms in the GEMM epilogues (test_fuse_linear_norm.py), each one
    # launch fewer; 2 of the 4 where the few-CTA FFN-out GEMMs split (launch_knobs 'auto')
    fused = sum(k.endswith('_ln') for k in kernels)
    assert kernels.count(KERNEL[path]) == 2 and len(kernels) == 15 - fused
    assert fused in ((2, 4) if path == 'tc' and '_ln' in str(kernels) else (0,))
    assert_close(f'bert-shaped {path} mask={mask}', out, _ort(onnx_path, feeds), 1e-2)
