"""The launch-shape knobs (cuda/launch_knobs.py) on the GPU: attention_mma CTAs of 2 and 1
warps, split-K in a cluster for linears ('linear') and linear norms ('linear+norm'), and both;
the BERT-shaped graph (seeded LayerNorm weights, padding mask) and the zoo's vit-focus (real
weights, its photo) against ONNX Runtime FP32 under each, the launch shapes asserted on sm_90,
the BERT graph replayed to the same bits (the cluster sums in a fixed order)."""
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
# (unset, $TX2_INFER_LINEAR_SPLITK is 'auto': BERT's 4-CTA norms are a GEMM + layernorm, the
# FFN-out's GEMM split)
SETTINGS = {'attn2': {'TX2_INFER_ATTN_WARPS': '2'}, 'attn1': {'TX2_INFER_ATTN_WARPS': '1'},
            'off': {'TX2_INFER_LINEAR_SPLITK': 'off'},
            'fused_few': {'TX2_INFER_LINEAR_SPLITK': 'fused_few'},
            'linear': {'TX2_INFER_LINEAR_SPLITK': 'linear'},
            'linear+norm': {'TX2_INFER_LINEAR_SPLITK': 'linear+norm'},
            'attn1+linear+norm': {'TX2_INFER_ATTN_WARPS': '1',
                                  'TX2_INFER_LINEAR_SPLITK': 'linear+norm'}}


def set_knobs(monkeypatch, env):
    for name in ('TX2_INFER_ATTN_WARPS', 'TX2_INFER_LINEAR_SPLITK', 'TX2_INFER_SPLITK'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def built(path, input_shape=None) -> tuple:
    """(launches, whether the GPU is sm_90+) of a cuda FP16 engine of ``path``."""
    engine = Engine.build(path, input_shape, precision='fp16', backend='cuda')
    try:
        return list(engine.backend.launches), engine.backend.arch >= 90
    finally:
        engine.close()


def check_shapes(launches, env, split_wanted):
    """The knobs' launch shapes on sm_90: attention CTAs of the warps asked for; split
    linear launches (K >= 256) where ``split_wanted``, each a cluster of its splits."""
    warps = int(env.get('TX2_INFER_ATTN_WARPS', 4))
    att = [k for k in launches if k.kernel == 'attention_mma']
    assert att and all(k.block[0] == 32 * min(warps, -(-k.fields['Sq'] // 16)) for k in att)
    split = [k for k in launches if k.kernel.startswith('conv_mma_64x64_cl')]
    assert bool(split) == split_wanted
    assert all(k.grid[2] == k.fields['splits'] > 1 and k.fields['Cg'] >= 256 for k in split)


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_bert_shaped_matches_onnxruntime(tmp_path, setting, monkeypatch):
    env = SETTINGS[setting]
    set_knobs(monkeypatch, env)
    path = tmp_path / 'bert.onnx'
    onnx.save(cases.bert_model(mask=cases.padding_mask(128, 100), ln_affine=True), str(path))
    feeds = {'embeddings': cases.embeddings()}
    engine = Engine.build(path, None, precision='fp16', backend='cuda')
    try:
        got, launches = engine.run(feeds), list(engine.backend.launches)
        hopper, graph = engine.backend.arch >= 90, engine.backend.graph
    finally:
        engine.close()
    if hopper:  # BERT's K = 512 GEMMs are norms
        mode = env.get('TX2_INFER_LINEAR_SPLITK', 'auto')
        norm_split = mode in ('auto', 'linear+norm', 'fused_few')
        check_shapes(launches, env, norm_split)
        assert len(launches) == (15 if mode == 'auto' else 13 if norm_split else 11)
    for name, ref in CASES.ort_run(path, feeds).items():
        assert_close(f'bert-shaped {setting} {name}', got[name], ref, 1e-2)
    assert_replays_the_same(graph, feeds)


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_vit_focus_matches_onnxruntime(tmp_path, setting, monkeypatch):
    env = SETTINGS[setting]
    set_knobs(monkeypatch, env)
    model = zoo_data.BY_NAME['vit-focus']
    path = zoo_model_path(model.name, tmp_path)
    got, want = zoo_outputs_fp16_and_onnxruntime(path, model)
    for out, ref in want.items():
        assert_close(f'vit-focus {setting} {out}', got[out], ref, 2e-2)
    launches, hopper = built(path, model.input_shape)
    if hopper:
        check_shapes(launches, env, 'linear' in setting)
        assert len(launches) == (95 if 'norm' in setting else 71)
