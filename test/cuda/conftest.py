"""GPU tests: skipped with a reason where pycuda or a CUDA device is missing."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tx2_infer_core import cuda
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.cuda import lower_conv
from tx2_infer_core.ir import Graph, Node, Value


CORE_TESTS = Path(__file__).resolve().parents[1] / 'core'

# One line per GPU output compared with the CPU oracle (``assert_close``), written at the end of
# the run by ``pytest_terminal_summary`` so every log states the tolerance each output met.
TOLERANCE_LINES = []


def pytest_collection_modifyitems(config, items):
    if cuda.available():
        return
    skip = pytest.mark.skip(reason='needs pycuda and a CUDA GPU (none found)')
    for item in items:
        if '/test/cuda/' in str(item.fspath):
            item.add_marker(skip)


def core_module(name):
    """The module ``test/core/<name>.py`` (a helper or a CPU test whose cases a GPU test
    reuses), loaded by path: both test folders have a conftest. Its own imports of its
    siblings resolve from test/core, after this folder (so ``conftest`` stays this one)."""
    if str(CORE_TESTS) not in sys.path:
        sys.path.append(str(CORE_TESTS))
    spec = importlib.util.spec_from_file_location(f'tx2_{name}', CORE_TESTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_node_graph(op, inputs, out_shape, weights=None, attrs=None, extra_inputs=()):
    """A graph of one node: ``inputs`` {name: shape} activations, ``weights`` constants."""
    weights = dict(weights or {})
    values = {n: Value(n, tuple(s), 'float32', 'NCHW' if len(s) == 4 else '')
              for n, s in inputs.items()}
    values['y'] = Value('y', tuple(out_shape), 'float32', 'NCHW' if len(out_shape) == 4 else '')
    names = list(inputs) + list(weights) + list(extra_inputs)
    node = Node(op, 'n0', names, ['y'], dict(attrs or {}))
    return Graph([node], list(inputs), ['y'], values, weights)


def fp16_round(x):
    """float32 values exactly representable in fp16 (what the GPU sees)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def rel_err(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert np.isfinite(out).all(), 'non-finite output'
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-12))


def assert_close(label, out, ref, tol):
    """Assert ``rel_err(out, ref) < tol`` and log one line for ``label``: max abs error, max
    relative error (to the largest ``|ref|``), relative L2 error and the tolerance used."""
    out64, ref64 = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert out64.shape == ref64.shape, f'{label}: shape {out64.shape} != {ref64.shape}'
    err = rel_err(out64, ref64)
    diff = float(np.abs(out64 - ref64).max()) if out64.size else 0.0
    scale = float(np.abs(ref64).max()) if ref64.size else 0.0
    line = (f'{label}: max abs err {diff:.2e}, max rel err {diff / max(scale, 1e-12):.2e}, '
            f'rel L2 err {err:.2e}, tolerance rel L2 < {tol:.0e}: '
            f"{'ok' if err < tol else 'FAIL'}")
    TOLERANCE_LINES.append(line)
    print(line)
    assert err < tol, line
    return err


def pytest_terminal_summary(terminalreporter):
    """The tolerance lines of this run, one per compared output (only when GPU tests ran)."""
    if TOLERANCE_LINES:
        terminalreporter.section('GPU outputs vs CPU oracle: error and tolerance per output')
        for line in TOLERANCE_LINES:
            terminalreporter.write_line(line)


def run_conv(graph, feeds, path='tc', monkeypatch=None):
    """One run of ``graph`` on a CUDA backend; path 'wmma' is 'tc' with conv_mma disabled
    (the sm_70..sm_79 kernel). Returns (output, kernel names)."""
    if path == 'wmma':
        monkeypatch.setattr(lower_conv, 'MMA_MIN_ARCH', 10 ** 6)
    backend = CudaBackend(conv_path='simt' if path == 'simt' else 'tc')
    backend.prepare(graph)
    try:
        return backend.run(feeds)['y'], [k.kernel for k in backend.launches]
    finally:
        backend.close()


def run_graph(graph, feeds, **options) -> dict:
    """Every output of one run of ``graph`` on a fresh CUDA backend (``options`` for it)."""
    backend = CudaBackend(**options)
    backend.prepare(graph)
    try:
        return backend.run(feeds)
    finally:
        backend.close()


def assert_replays_the_same(graph, feeds):
    """Two runs of ``graph`` on one CUDA backend (its captured CUDA graph replayed) give the
    same outputs: what a frame uses (scratch, states) is rewritten every frame."""
    backend = CudaBackend()
    backend.prepare(graph)
    try:
        first = {k: v.copy() for k, v in backend.run(feeds).items()}
        second = backend.run(feeds)
    finally:
        backend.close()
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def first_output_fp16(model_path, feeds, conv_path, input_shape=None) -> tuple:
    """(first output, kernel names) of ``model_path`` built for cuda FP16 on ``conv_path``."""
    from tx2_infer_core.engine import Engine
    engine = Engine.build(model_path, input_shape, precision='fp16', backend='cuda',
                          backend_options={'conv_path': conv_path})
    try:
        kernels = [k.kernel for k in engine.backend.launches]
        return engine.run(feeds)[engine.graph.outputs[0]], kernels
    finally:
        engine.close()


def zoo_outputs_fp16_and_onnxruntime(path, model) -> tuple:
    """(cuda FP16 outputs, ONNX Runtime FP32 outputs in the model's order) of zoo ``model``
    (file ``path``) on its real photo, by output name."""
    import onnxruntime as ort
    import zoo_data
    from tx2_infer_core.engine import Engine
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    feeds = {session.get_inputs()[0].name: zoo_data.photo_tensor(model)}
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    engine = Engine.build(path, input_shape=model.input_shape, backend='cuda',
                          precision='fp16')
    try:
        return engine.run(feeds), want
    finally:
        engine.close()


def assert_engine_matches_onnxruntime(label, path, model, tol=2e-2):
    """Zoo ``model`` (file ``path``) built for cuda FP16 against ONNX Runtime FP32 on its
    real photo, every output within ``tol`` (``assert_close``)."""
    got, want = zoo_outputs_fp16_and_onnxruntime(path, model)
    for out, ref in want.items():
        assert_close(f'{label} {out}', got[out], ref, tol)


def zoo_model_path(name, tmp_path):
    """The ONNX file of zoo model ``name``: from the zoo pack named by $TX2_INFER_ZOO_PACKED
    (``python bench/zoo_data.py pack .zoo 1``) on a machine without the asset cache, else from
    the cache; skips when the pack holds another group."""
    import zoo_data
    packed = os.environ.get('TX2_INFER_ZOO_PACKED')
    if not packed:
        return zoo_data.model_files(zoo_data.BY_NAME[name])[0]
    found = zoo_data.unpack(packed, tmp_path)
    if name not in found:
        pytest.skip(f'{name} is in another zoo pack group (zoo_data.py groups)')
    return found[name][0]
