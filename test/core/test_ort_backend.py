"""The ort backend (ONNX Runtime on our optimised graph) against the numpy oracle, and the
backend names: cpu is ort when onnxruntime imports, else numpy; ort without it is a clear error.

Real models (conftest fixtures) and real photos: outputs within 1e-4 relative error, the same
detections through ``Detector``.
"""
import logging
import sys

import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect, engine as engine_mod
from tx2_infer_core.backends import ort_backend
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine
from tx2_infer_core.passes import optimize
from tx2_infer_core.planner import ALIGNMENT, plan_memory

PHOTOS = ['dog.jpg', 'bus.jpg', 'zidane.jpg']
NSFW_FORMAT = {'color': 'BGR', 'layout': 'NHWC', 'scale': 1.0, 'mean': [104.0, 117.0, 123.0],
               'resize': 'stretch'}


def rel_error(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / np.linalg.norm(ref))


def engine_pair(graph):
    """(numpy engine, ort engine) on one optimised graph and memory plan."""
    optimised, report = optimize(graph)
    assert report['fuse_conv_activation'] > 0
    memory_plan = plan_memory(optimised, ALIGNMENT)
    options = {'precision': 'fp32', 'backend': 'cpu', 'model': graph.name}
    return (Engine(optimised, memory_plan, options, 'numpy'),
            Engine(optimised, memory_plan, options, 'ort'))


def photo(name):
    return cv2.imread(str(assets.fetch(name)))


def assert_same_outputs(pair, input_format):
    oracle, ours = pair
    spec = oracle.input_specs[0]
    for name in PHOTOS:
        tensor, _ = detect.preprocess(photo(name), spec.shape, input_format)
        want, got = oracle.run(tensor), ours.run(tensor)
        assert sorted(got) == sorted(want)
        for out in want:
            assert got[out].shape == want[out].shape and got[out].dtype == want[out].dtype
            err = rel_error(got[out], want[out])
            assert err <= 1e-4, f'{name} {out}: relative error {err:.2e}'


def assert_same_detections(pair):
    found = 0
    oracle, ours = (Detector(engine) for engine in pair)
    assert ours.path == oracle.path == 'host'
    for name in PHOTOS:
        want, got = oracle.detect(photo(name)), ours.detect(photo(name))
        assert [d.class_id for d in got] == [d.class_id for d in want], name
        for a, b in zip(got, want):
            box_a, box_b = (np.array([d.x1, d.y1, d.x2, d.y2]) for d in (a, b))
            np.testing.assert_allclose(box_a, box_b, atol=0.5)
            assert abs(a.score - b.score) <= 1e-4
        found += len(want)
    assert found >= len(PHOTOS)


@pytest.mark.parametrize('model', ['yolov3', 'yolov8'])
def test_detectors_match_the_numpy_oracle(request, model):
    pair = engine_pair(request.getfixturevalue(model))
    assert [type(e.backend).__name__ for e in pair] == ['NumpyBackend', 'OrtBackend']
    assert_same_outputs(pair, pair[0].meta.get('input_format'))
    assert_same_detections(pair)


def test_resnet50_classifier_matches_the_numpy_oracle(open_nsfw):
    pair = engine_pair(open_nsfw)
    assert 'FusedConv' in {n.op for n in pair[1].graph.nodes}
    assert any(len(n.inputs) > 3 and n.inputs[3] for n in pair[1].graph.nodes
               if n.op == 'FusedConv'), 'no residual fused: the test would miss its export'
    assert_same_outputs(pair, NSFW_FORMAT)


def test_a_cpu_plan_loads_on_ort(tmp_path):
    """A plan built on the numpy backend targets 'cpu' and runs on ort unchanged."""
    cfg, weights, _ = assets.yolov3_tiny()
    with Engine.build(cfg, weights_path=weights, backend='numpy') as built:
        assert built.options['backend'] == 'cpu'
        built.save(tmp_path / 'tiny.tx2plan')
        tensor, _ = detect.preprocess(photo('dog.jpg'), built.input_specs[0].shape,
                                      built.meta['input_format'])
        want = built.run(tensor)
    with Engine.load(tmp_path / 'tiny.tx2plan', 'cpu') as loaded:
        assert loaded.backend.name == 'ort' and loaded.precision == 'fp32'
        got = loaded.run(tensor)
    for out in want:
        assert rel_error(got[out], want[out]) <= 1e-4


def test_session_is_built_once_with_optimisation_and_physical_cores(yolov3):
    _, ours = engine_pair(yolov3)
    session = ours.backend.session
    options = session.get_session_options()
    ort = ort_backend.import_onnxruntime()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == ort_backend.physical_cores()
    for pool in ('intra_op', 'inter_op'):   # threads sleep between runs: no spinning cores
        assert options.get_session_config_entry(f'session.{pool}.allow_spinning') == '0'
    assert [i.name for i in session.get_inputs()] == ours.graph.inputs
    ours.run(np.zeros(ours.input_specs[0].shape, np.float32))
    assert ours.backend.session is session
    ours.close()
    assert ours.backend.session is None


def test_physical_cores_counts_hyperthreads_once(tmp_path):
    cpus = sorted(__import__('os').sched_getaffinity(0))
    text = ''.join(f'processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu // 2}\n\n'
                   for cpu in cpus)
    (tmp_path / 'cpuinfo').write_text(text)
    assert ort_backend.physical_cores(tmp_path / 'cpuinfo') == len({c // 2 for c in cpus})
    assert ort_backend.physical_cores(tmp_path / 'missing') == len(cpus)


# --- without onnxruntime -----------------------------------------------------------------------

@pytest.fixture
def no_onnxruntime(monkeypatch):
    """``import onnxruntime`` fails (as when it is not installed); no GPU answers."""
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    monkeypatch.setattr(engine_mod, 'cuda_available', lambda: False)
    monkeypatch.setattr(engine_mod, '_warned', set())


def test_cpu_falls_back_to_numpy_with_one_log_line(no_onnxruntime, caplog):
    assert not ort_backend.ort_available()
    with caplog.at_level(logging.INFO, 'tx2_infer.engine'):
        assert engine_mod.resolve_backend('cpu') == 'numpy'
        assert engine_mod.resolve_backend('auto') == 'numpy'
    lines = [r for r in caplog.records if 'onnxruntime' in r.getMessage()]
    assert len(lines) == 1 and 'numpy' in lines[0].getMessage()


def test_ort_without_onnxruntime_names_the_package(no_onnxruntime, yolov3):
    with pytest.raises(ort_backend.BackendUnavailableError, match="'ort' needs the onnxruntime"):
        engine_mod.resolve_backend('ort')
    with pytest.raises(ort_backend.BackendUnavailableError, match='pip install onnxruntime'):
        ort_backend.OrtBackend()
    cfg, weights, _ = assets.yolov3_tiny()
    with pytest.raises(ort_backend.BackendUnavailableError, match='onnxruntime'):
        Engine.build(cfg, weights_path=weights, backend='ort')


def test_backend_names():
    assert engine_mod.BACKENDS == ('auto', 'cpu', 'numpy', 'ort', 'cuda')
    assert engine_mod.resolve_backend('cpu') == 'ort'       # onnxruntime is installed here
    assert engine_mod.resolve_backend('numpy') == 'numpy'
    with pytest.raises(engine_mod.Tx2InferError, match="unknown backend 'tpu'"):
        engine_mod.resolve_backend('tpu')
    assert engine_mod.plan_target('ort') == engine_mod.plan_target('numpy') == 'cpu'
