"""FP16 range at build (``fp16_range.py``) on the zoo's oww-melspec, without a GPU.

openWakeWord's mel front end on its real recording: STFT convolutions up to 7.6e5, a power
spectrum up to 7.3e11, mel energies up to 1.4e10, all past FP16's 65504. Run over an emulated
FP16 arena (``fp16_storage.py``: every stored value rounded to FP16) the graph the cuda backend
lowers gives inf; rescaled by ``fit_fp16`` on the same recording it matches ONNX Runtime FP32,
and in FP32 the rescaled graph is the model (the rewrite is exact in real numbers).
"""
import logging
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fp16_storage import run_fp16_storage
from test_engine_knobs import FakeCudaBackend
from tx2_infer_core import engine as engine_mod, fp16_range, plan_file, reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import Fp16RangeError, InputError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.fused import program_text
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402

MODEL = zoo_data.BY_NAME['oww-melspec']
TOLERANCE = 2e-2        # test/cuda's zoo models on the GPU vs ONNX Runtime FP32 (rel L2)


def rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.fixture(scope='module')
def oww():
    """(graph as the cuda backend lowers it, feeds, ONNX Runtime FP32 output, its session)."""
    path = zoo_data.model_files(MODEL)[0]
    graph = optimize(engine_mod.import_model(path, MODEL.input_shape), POINTWISE_LEVEL)[0]
    feeds = {graph.inputs[0]: zoo_data.photo_tensor(MODEL)}
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return graph, feeds, session.run(None, feeds)[0], session


@pytest.fixture(scope='module')
def rescaled(oww):
    graph, feeds = oww[:2]
    return fp16_range.fit_fp16(graph, feeds)


def test_unscaled_it_overflows_the_fp16_arena(oww):
    graph, feeds = oww[:2]
    stored = run_fp16_storage(graph, feeds, keep_all=True)
    assert np.isinf(stored['onnx::MatMul_18.pre']).any()    # the power spectrum
    assert not np.isfinite(stored[graph.outputs[0]]).any()


@pytest.mark.parametrize('gain', [1.0, 2.0, 0.25])
def test_rescaled_it_matches_onnxruntime_over_the_fp16_arena(oww, rescaled, gain):
    """Range measured on the recording, run on it times ``gain`` (2: int16's full scale; at
    1/64 the quiet bins sink into FP16's subnormals: 5.9e-2)."""
    feeds = {'input': (oww[1]['input'] * gain).astype(np.float32)}
    want = oww[3].run(None, feeds)[0]
    scaled, exponents = rescaled
    stored = run_fp16_storage(scaled, feeds, keep_all=True)
    assert not any(np.isposinf(v).any() for v in stored.values())  # -inf: log(0) is one
    got = stored[scaled.outputs[0]]
    err = rel_l2(got, want)
    max_rel = float(np.abs(got - want).max() / np.abs(want).max())
    print(f'oww-melspec gain {gain} over an FP16 arena: rel L2 {err:.2e}, max rel {max_rel:.2e}')
    assert err < TOLERANCE and max_rel < TOLERANCE
    assert exponents['onnx::MatMul_18.pre'] == exponents['onnx::MatMul_18'] < -20


def test_rescaled_graph_in_fp32_is_the_model(oww, rescaled):
    graph, feeds, want, _ = oww
    got = reference.execute(rescaled[0], feeds)[graph.outputs[0]]
    assert rel_l2(got, want) < 1e-4
    assert np.array_equal(got, reference.execute(graph, feeds)[graph.outputs[0]])


def test_rescaled_values_keep_headroom(oww, rescaled):
    """On the range input the rescaled values reach FP16_MAX / HEADROOM, within a factor 2
    (the nearest power of two); the others (the input: 15317) stay under FP16_MAX / MARGIN."""
    ranges = fp16_range.value_ranges(rescaled[0], [oww[1]])
    limit = fp16_range.FP16_MAX / fp16_range.HEADROOM
    assert all(limit / 2 < ranges[name] <= limit for name in rescaled[1])
    assert max(ranges.values()) <= fp16_range.FP16_MAX / fp16_range.MARGIN


def test_lowered_launches_carry_the_scales(rescaled):
    scaled, exponents = rescaled
    launches = {k.node: k for k in lower_graph(scaled, arch=90, sm_count=132).launches}
    conv = exponents['onnx::Unsqueeze_6']
    assert float(launches['Conv_2'].fields['act']['post_scale']) == 2.0 ** conv
    mel, power = exponents['onnx::Log_24'], exponents['onnx::MatMul_18']
    act = launches['MatMul_15'].fields['act']
    assert float(act['post_scale']) == 2.0 ** (mel - power)
    assert float(act['lo']) == np.float32(1e-10 * 2.0 ** power)


def test_engine_build_with_range_feeds_on_cuda(oww, monkeypatch, tmp_path, caplog):
    """Engine.build(..., range_feeds=) on the cuda backend (numpy standing in): the passes
    report the rescale, the plan keeps it (saved, loaded), and its key names the inputs."""
    from tx2_infer_core.backends import cuda_backend
    monkeypatch.setattr(cuda_backend, 'CudaBackend', FakeCudaBackend)
    _, feeds, want, _ = oww
    path = zoo_data.model_files(MODEL)[0]
    with caplog.at_level(logging.INFO, 'tx2_infer.fp16_range'):
        engine = Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=feeds)
    assert "'onnx::MatMul_18.pre' reaches 7.32e+11 on the range inputs: stored times 2^-28" \
        in caplog.text
    assert engine.options['passes']['fp16_range'] == 7
    assert rel_l2(engine.run(feeds)['output'], want) < 1e-4
    engine.save(tmp_path / 'oww.tx2plan')
    graph = plan_file.load_plan(tmp_path / 'oww.tx2plan')[0]
    assert graph.nodes == engine.graph.nodes
    plain = Engine.build(path, MODEL.input_shape, 'fp16', 'cuda')
    assert 'fp16_range' not in plain.options['passes']
    assert plain.options['key'] != engine.options['key']
    with pytest.raises(InputError, match="range input 'input' is float32"):
        Engine.build(path, MODEL.input_shape, 'fp16', 'cuda',
                     range_feeds={'input': feeds['input'][:, :100]})


def _huge_into_softmax():
    """x -> x * 2**20 (a fused kernel) -> Softmax -> y: b cannot be rescaled."""
    program = program_text([['Mul', ['x0', 2.0 ** 20], {}]])
    nodes = [Node('FusedPointwise', 'big', ['x'], ['b'], {'program': program}),
             Node('Softmax', 'soft', ['b'], ['y'])]
    values = {n: Value(n, (1, 8), 'float32', '') for n in ('x', 'b', 'y')}
    return Graph(nodes, ['x'], ['y'], values, {})


def test_a_value_past_fp16_that_cannot_be_rescaled_is_refused_by_name():
    feeds = {'x': np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)}
    with pytest.raises(Fp16RangeError, match=r"value 'b' reaches 1\.05e\+06 on the range inputs "
                       r"\(FP16 holds at most 65504\) and cannot be rescaled: node 'soft' "
                       r'\(Softmax\)'):
        fp16_range.fit_fp16(_huge_into_softmax(), feeds)


def test_a_value_only_near_the_limit_is_kept_with_a_warning(caplog):
    graph = _huge_into_softmax()
    feeds = {'x': np.full((1, 8), 0.04, np.float32)}          # b = 41943: under 65504
    with caplog.at_level(logging.WARNING, 'tx2_infer.fp16_range'):
        assert fp16_range.fit_fp16(graph, feeds)[1] == {}
    assert "value 'b' reaches 4.19e+04" in caplog.text and 'kept as it is' in caplog.text
