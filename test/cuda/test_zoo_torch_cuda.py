"""The torch column of bench_zoo.py on the GPU (bench/zoo_torch*.py): real zoo models converted
by onnx2torch, FP16 eager and CUDA-graph outputs against ONNX Runtime FP32, and one
``torch_row`` with our engine's kernels graph in the rounds. Needs torch and onnx2torch
(``pip install --no-index --no-deps --target /tmp/site onnx2torch-*.whl``) besides the GPU.
"""
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from conftest import zoo_model_path
from tx2_infer_core.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

pytest.importorskip('torch')
if importlib.util.find_spec('onnx2torch') is None:
    pytest.skip('needs onnx2torch', allow_module_level=True)

import zoo_torch  # noqa: E402
import zoo_torch_child  # noqa: E402


def case(name, tmp_path) -> tuple:
    """(ONNX path, feeds: the real photo, ORT FP32 outputs) of zoo model ``name``."""
    path = zoo_model_path(name, tmp_path)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    feeds = {session.get_inputs()[0].name: zoo_data.photo_tensor(zoo_data.BY_NAME[name])}
    return path, feeds, session.run(None, feeds)


def max_rel(outputs, reference) -> float:
    return max(float(np.abs(np.asarray(o, np.float64) - r).max() / np.abs(r).max())
               for o, r in zip(outputs, reference))


@pytest.mark.parametrize('name', ['ppocr-cls', 'orientation'])
def test_fp16_eager_and_graph_match_onnxruntime(name, tmp_path):
    """Reshape shapes kept on the host, so the capture works (MTCNN's PRelu does not)."""
    path, feeds, reference = case(name, tmp_path)
    zoo_torch_child.import_onnx2torch()
    model = zoo_torch_child.Contender(path, feeds, tmp_path)
    assert model.info['precision'] == 'fp16' and 'graph_error' not in model.info
    eager, graph = model.outputs['eager'], model.outputs['graph']
    assert max_rel(eager, reference) <= 2e-2 and max_rel(graph, reference) <= 2e-2
    assert max_rel(graph, eager) <= 1e-3
    for contender in ('eager', 'graph'):
        timing = model.time(contender, 20, 5)
        assert timing['runs'] == 20 and timing['median_ms'] > 0


def test_a_torch_row_beside_our_kernels_graph(tmp_path):
    path, feeds, reference = case('ppocr-cls', tmp_path)
    model = zoo_data.BY_NAME['ppocr-cls']
    engine = Engine.build(path, input_shape=model.input_shape, backend='cuda',
                          precision='fp16')
    names = [o.name for o in ort.InferenceSession(
        str(path), providers=['CPUExecutionProvider']).get_outputs()]
    worker = zoo_torch.TorchWorker(tmp_path / 'torch')
    args = SimpleNamespace(torch_runs=20, warmup=5, torch_rounds=2)
    try:
        with zoo_torch.ours_rounds(engine) as ours:
            row = zoo_torch.torch_row(
                worker, ours, path, feeds, names,
                lambda outs: dict(max_rel=max_rel([outs[n] for n in names], reference)), args)
    finally:
        worker.stop()
        engine.close()
    assert row['info']['precision'] == 'fp16', row
    assert all(row['accuracy'][c]['max_rel'] <= 2e-2 for c in ('eager', 'graph'))
    assert [row['contenders'][c]['repeats'] for c in ('ours', 'eager', 'cuda_graph')] == [2] * 3
    assert set(row['ratios']) == {'ours/eager', 'ours/cuda_graph', 'ours/best_torch'}
