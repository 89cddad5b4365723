"""Copies stored as views (``cuda/views.py``) on the GPU: the small graphs of
``test/core/test_cuda_views.py`` (YOLOv8's and PicoDet's heads, an attention split, graph
outputs written in place) against the numpy ops, and the zoo models whose copies became views
against ONNX Runtime (FP16 tolerance), with the copy launches the CPU test counts."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, assert_engine_matches_onnxruntime, core_module, fp16_round,
                      run_graph, zoo_model_path)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402


CASES = core_module('test_cuda_views')
GRAPHS = {'yolov8_head': CASES.yolov8_head, 'picodet_head': CASES.picodet_head,
          'attention_split': CASES.attention_split, 'nhwc_input': CASES.nhwc_input,
          'conv_slice': CASES.conv_slice, 'outputs_in_place': CASES.outputs_in_place}


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_small_graph_matches_numpy(name):
    graph = GRAPHS[name]()
    rng = np.random.default_rng(7)
    feeds = {n: fp16_round(rng.standard_normal(graph.values[n].shape)) for n in graph.inputs}
    want = CASES.reference(graph, feeds)
    got = run_graph(graph, feeds)
    for out in graph.outputs:
        assert_close(f'views {name} {out}', got[out], want[out], 1e-2)


@pytest.mark.parametrize('name', ['nudenet-320n', 'layout-cdla', 'mtcnn-pnet'])
def test_zoo_model_with_views_matches_onnxruntime(name, tmp_path):
    model = zoo_data.BY_NAME[name]
    assert_engine_matches_onnxruntime(f'views {name}', zoo_model_path(name, tmp_path), model)
