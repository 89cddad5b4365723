"""Copies stored as views (``cuda/views.py``) on the GPU: the small graphs of
``test/core/test_cuda_views.py`` (YOLOv8's and PicoDet's heads, an attention split, graph
outputs written in place) against the numpy ops, and the zoo models whose copies became views
against ONNX Runtime (FP16 tolerance), with the copy launches the CPU test counts."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close, assert_engine_matches_onnxruntime, fp16_round, run_graph

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402


def _core_tests():
    """test/core/test_cuda_views.py (loaded by path: both test folders have a conftest)."""
    spec = importlib.util.spec_from_file_location('tx2_views_cases',
                                                  ROOT / 'test' / 'core' / 'test_cuda_views.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _core_tests()
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


def _model_path(model, tmp_path):
    """The model from the asset cache, or from a zoo pack named by $TX2_INFER_ZOO_PACKED."""
    packed = os.environ.get('TX2_INFER_ZOO_PACKED')
    if not packed:
        return zoo_data.model_files(model)[0]
    found = zoo_data.unpack(packed, tmp_path)
    if model.name not in found:
        pytest.skip(f'{model.name} is in another zoo pack group (zoo_data.py groups)')
    return found[model.name][0]


@pytest.mark.parametrize('name', ['nudenet-320n', 'layout-cdla', 'mtcnn-pnet'])
def test_zoo_model_with_views_matches_onnxruntime(name, tmp_path):
    model = zoo_data.BY_NAME[name]
    assert_engine_matches_onnxruntime(f'views {name}', _model_path(model, tmp_path), model)
