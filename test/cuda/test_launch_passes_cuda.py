"""The launch-saving passes on the GPU (``test/core/test_launch_passes.py`` has them on the
CPU): what they make runs on the kernels as the graph before them runs on numpy (an edge Pad
folded into MaxPool's asymmetric pads, a Pad folded through a Transpose into a Conv, a fused
LayerNormalization, an affine chain folded into a 1x1 conv), and the zoo models they change
against ONNX Runtime."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, assert_engine_matches_onnxruntime, core_module, fp16_round,
                      run_graph, zoo_model_path)
from tx2_infer_core import reference
from tx2_infer_core.passes import fold_input_affine, fold_pads, fuse_layernorm, run_pass

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402


CASES = core_module('test_launch_passes')
GRAPHS = {
    'edge pad + maxpool': (lambda: CASES._pool_after(*CASES._pad('edge')), fold_pads),
    'pad + conv': (lambda: CASES._conv_after(*CASES._pad(value=0.0), pads=[1, 0, 0, 1]),
                   fold_pads),
    'layernorm': (lambda: CASES._layernorm(gamma=(1, 1, 8)), fuse_layernorm),
    'affine + 1x1 conv': (lambda: CASES._affine_conv(
        [('Mul', 0.75, False), ('Add', -0.25, False)]), fold_input_affine)}


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_pass_output_runs_on_the_kernels(name):
    make, fn = GRAPHS[name]
    graph = make()
    folded = graph.copy()
    assert run_pass(folded, fn) == 1
    feeds = {'x': fp16_round(np.random.default_rng(3).standard_normal(
        graph.values['x'].shape))}
    want = reference.execute(graph, feeds)
    got = run_graph(folded, feeds)
    for out in graph.outputs:
        assert_close(f'{name} {out}', got[out], want[out], 1e-2)


@pytest.mark.parametrize('name', ['open-nsfw', 'ppocr-rec', 'ppocr-det'])
def test_zoo_model_matches_onnxruntime(name, tmp_path):
    model = zoo_data.BY_NAME[name]
    assert_engine_matches_onnxruntime(name, zoo_model_path(name, tmp_path), model)
