"""FP16 range fitted at build (``fp16_range.py``) on the GPU: oww-melspec (openWakeWord's mel
front end: STFT power up to 7.3e11 on its recording, past FP16's 65504).

Built without range inputs its outputs are inf (the arena overflows); built with its recording
as ``range_feeds`` it matches ONNX Runtime FP32 on that recording and on louder and softer
copies of it (the rescale keeps 16x headroom), and it agrees with the host emulation of the
FP16 arena (``test/core/fp16_storage.py``) that ``test/core/test_fp16_range.py`` checks.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close, core_module, zoo_model_path
from tx2_infer_core.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402

MODEL = zoo_data.BY_NAME['oww-melspec']
TOLERANCE = 2e-2          # the zoo models on the GPU vs ONNX Runtime FP32 (rel L2)


def onnxruntime_output(path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, feeds)[0]


@pytest.fixture(scope='module')
def oww(tmp_path_factory):
    """(model path, recording feeds)."""
    path = zoo_model_path(MODEL.name, tmp_path_factory.mktemp('oww'))
    return path, {'input': zoo_data.photo_tensor(MODEL)}


def test_unscaled_the_outputs_overflow(oww):
    path, feeds = oww
    with Engine.build(path, MODEL.input_shape, 'fp16', 'cuda') as engine:
        assert not np.isfinite(engine.run(feeds)['output']).all()


@pytest.mark.parametrize('gain', [1.0, 2.0, 0.25])
def test_rescaled_it_matches_onnxruntime(oww, gain):
    """Range measured on the recording; run on it times ``gain`` (2: int16's full scale)."""
    path, feeds = oww
    run_feeds = {'input': (feeds['input'] * gain).astype(np.float32)}
    with Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=feeds) as engine:
        assert engine.options['passes']['fp16_range'] > 0
        got = engine.run(run_feeds)['output']
    want = onnxruntime_output(path, run_feeds)
    err = assert_close(f'oww-melspec gain {gain}', got, want, TOLERANCE)
    print(f'max rel {np.abs(got - want).max() / np.abs(want).max():.2e}, rel L2 {err:.2e}')


def test_gpu_agrees_with_the_host_fp16_emulation(oww):
    """The GPU run and ``run_fp16_storage`` of the same rescaled graph (FP32 accumulation,
    FP16 storage both) agree: the emulation the CPU tests trust is what the GPU does."""
    storage = core_module('fp16_storage')
    path, feeds = oww
    with Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=feeds) as engine:
        got = engine.run(feeds)['output']
        emulated = storage.run_fp16_storage(engine.graph, feeds)['output']
    assert_close('oww-melspec GPU vs FP16 emulation', got, emulated, 5e-3)


def test_cli_build_with_range_inputs_runs_on_the_gpu(oww, tmp_path):
    """``tx2-infer build --range-inputs speech.npz`` on the GPU; the plan, loaded, matches
    ONNX Runtime FP32 on the recording and lists its rescaled values in ``inspect``."""
    from tx2_infer_core import cli
    path, feeds = oww
    np.savez(tmp_path / 'speech.npz', **feeds)
    plan = tmp_path / 'oww.tx2plan'
    assert cli.main(['build', str(path), '-o', str(plan), '--backend', 'cuda', '--precision',
                     'fp16', '--input-shape', '1x21760', '--range-inputs',
                     str(tmp_path / 'speech.npz')]) == 0
    with Engine.load(plan, 'cuda') as engine:
        assert engine.options['fp16_range']['onnx::MatMul_18'] == -28
        got = engine.run(feeds)['output']
    assert_close('oww-melspec CLI plan', got, onnxruntime_output(path, feeds), TOLERANCE)
