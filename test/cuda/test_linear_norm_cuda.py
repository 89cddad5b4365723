"""FusedLinearNorm on the GPU: on sm_90 one ``conv_mma_*_ln`` launch whose cluster of CTAs along a
row LayerNorms it in the GEMM epilogue (kernels/linear_norm.cuh); elsewhere (and on the 'simt'
path) the GEMM + layernorm launches. Against ONNX Runtime FP32: small graphs of the CPU test's
shapes (a row over 6 CTAs, one CTA, odd N; pre-norm with the sum as an output too), the zoo's
vit-focus (pre-norm, real weights) and the BERT-shaped graph with seeded LayerNorm weights
(post-norm); the replayed graph gives the same bits twice (the cluster sums in a fixed order)."""
import sys
from pathlib import Path

import onnx
import pytest

from conftest import (assert_close, assert_replays_the_same, core_module,
                      zoo_outputs_fp16_and_onnxruntime, zoo_model_path)
from tx2_infer_core.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
sys.path.insert(0, str(ROOT / 'test' / 'core'))
import attention_cases as cases  # noqa: E402
import zoo_data  # noqa: E402

CASES = core_module('test_fuse_linear_norm')


def build_and_run(path, feeds, conv_path='tc') -> tuple:
    """(every output, kernel names, whether the GPU is sm_90+) of one cuda FP16 engine run of
    ``path``."""
    engine = Engine.build(path, None, precision='fp16', backend='cuda',
                          backend_options={'conv_path': conv_path})
    try:
        kernels = [k.kernel for k in engine.backend.launches]
        return engine.run(feeds), kernels, engine.backend.arch >= 90
    finally:
        engine.close()


@pytest.mark.parametrize('keep_sum', [False, True], ids=['post_norm', 'pre_norm'])
@pytest.mark.parametrize('shape', CASES.SHAPES, ids=lambda s: f'{s[0]}x{s[1]}x{s[2]}')
def test_small_graphs_match_onnxruntime(tmp_path, shape, keep_sum, monkeypatch):
    """The one-launch ``_ln`` kernels ('fused_few' keeps few-CTA norms in them; 'auto' lowers
    those apart, test_launch_knobs_cuda) against ONNX Runtime."""
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'fused_few')
    rows, k, n, sm90 = shape
    path = tmp_path / 'm.onnx'
    graph, feeds = CASES.linear_norm_model(path, rows, k, n, keep_sum)
    got, kernels, hopper = build_and_run(path, feeds)
    assert (kernels == sm90) if hopper else kernels[-1] == 'layernorm', kernels
    for name, ref in CASES.ort_run(path, feeds).items():
        assert_close(f'linear_norm {rows}x{k}x{n} {name} {kernels}', got[name], ref, 1e-2)
    assert_replays_the_same(graph, feeds)


def test_vit_focus_matches_onnxruntime_with_its_norms_in_the_gemms(tmp_path):
    """24 of its 25 LayerNorms inside the attention-output and fc2 GEMMs (sm_90)."""
    model = zoo_data.BY_NAME['vit-focus']
    path = zoo_model_path(model.name, tmp_path)
    got, want = zoo_outputs_fp16_and_onnxruntime(path, model)
    for out, ref in want.items():
        assert_close(f'vit-focus {out}', got[out], ref, 2e-2)
    engine = Engine.build(path, input_shape=model.input_shape, backend='cuda', precision='fp16')
    try:
        kernels, hopper = [k.kernel for k in engine.backend.launches], engine.backend.arch >= 90
    finally:
        engine.close()
    if hopper:
        assert sum(k.endswith('_ln') for k in kernels) == 24, kernels
        assert kernels.count('layernorm') == 1


@pytest.mark.parametrize('path', ('simt', 'tc'))
def test_bert_shaped_post_norm_matches_onnxruntime(tmp_path, path, monkeypatch):
    """Seeded LayerNorm gammas and betas (a column mix-up shows); 'tc' on sm_90: 11 launches,
    the four post-attention and post-FFN LayerNorms in their GEMMs (no few-CTA split:
    $TX2_INFER_LINEAR_SPLITK=off; test_launch_knobs_cuda runs the split); 'simt': 15."""
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'off')
    onnx_path = tmp_path / 'bert.onnx'
    onnx.save(cases.bert_model(mask=cases.padding_mask(128, 100), ln_affine=True),
              str(onnx_path))
    feeds = {'embeddings': cases.embeddings()}
    got, kernels, hopper = build_and_run(onnx_path, feeds, path)
    fused = 4 if path == 'tc' and hopper else 0
    assert sum(k.endswith('_ln') for k in kernels) == fused and len(kernels) == 15 - fused
    want = CASES.ort_run(onnx_path, feeds)
    for name, ref in want.items():
        assert_close(f'bert-shaped ln_affine {path} {name}', got[name], ref, 1e-2)
