"""The model zoo (bench/ZOO.md) on the numpy and ort backends against ONNX Runtime FP32.

Each real model is built at its fixed zoo input shape, run on a real photo (audio models: a
real speech recording) preprocessed the way its package does, recurrent states at zero, and
every output must match ONNX Runtime (relative L2 error <= the model's tolerance, 1e-4 unless
ZOO.md says why). A model the engine cannot run yet is a strict xfail naming the missing op:
it fails loudly once that op lands. The three models that
test_engine_models.py already checks on eight photos run only with ``TX2_INFER_ZOO=all``.

Also here: opset 7-10 models are upgraded and 22+ converted down on import (a real model
converted to opset 10 and 23).
"""
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, version_converter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))

import zoo_data  # noqa: E402

from tx2_infer_core import assets  # noqa: E402
from tx2_infer_core.engine import Engine  # noqa: E402
from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError  # noqa: E402
from tx2_infer_core.onnx_import import load_onnx  # noqa: E402

ALL = os.environ.get('TX2_INFER_ZOO') == 'all'


def _param(model):
    marks = []
    if model.slow and not ALL:
        marks.append(pytest.mark.skip(reason='also in test_engine_models; TX2_INFER_ZOO=all'))
    if model.missing:
        marks.append(pytest.mark.xfail(strict=True, raises=UnsupportedOpError,
                                       reason=f'no {model.missing} op yet'))
    return pytest.param(model, id=model.name, marks=marks)


def ort_outputs(path, feeds) -> dict:
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def check_against_ort(engine, onnx_path, feeds, tolerance):
    """``feeds``: every input by name, or an array for the first (and only) input."""
    if isinstance(feeds, np.ndarray):
        feeds = {engine.input_specs[0].name: feeds}
    ours, ref = engine.run(feeds), ort_outputs(onnx_path, feeds)
    assert set(ref) <= set(ours), (sorted(ref), sorted(ours))
    for name, expected in ref.items():
        assert ours[name].shape == expected.shape, name
        err = zoo_data.rel_error(ours[name], expected)
        assert err <= tolerance, f'{name}: relative error {err:.2e} > {tolerance:.0e}'
    return ours


@pytest.mark.parametrize('backend', ['numpy', 'ort'])
@pytest.mark.parametrize('model', [_param(m) for m in zoo_data.ZOO])
def test_zoo_model_matches_onnxruntime(model, backend, tmp_path):
    """The numpy oracle and the ort backend (our optimised graph exported to ONNX) both."""
    model_path, weights = zoo_data.model_files(model)
    try:
        engine = Engine.build(model_path, input_shape=model.input_shape, weights_path=weights,
                              backend=backend)
    except UnsupportedOpError as exc:       # only the op the zoo names may be missing
        assert model.missing and f"'{model.missing}'" in str(exc), str(exc)
        raise
    feeds = zoo_data.feeds(model, engine.input_specs)    # recurrent states start at zero
    reference = zoo_data.reference_onnx(model, model_path, weights, tmp_path)
    outputs = check_against_ort(engine, reference, feeds, model.tolerance)
    assert all(np.isfinite(v).all() for v in outputs.values())


def test_zoo_has_every_kind_of_model():
    tasks = ' '.join(m.task for m in zoo_data.ZOO)
    for kind in ('classification', 'anchor-based', 'anchor-free', 'mobile', 'segmentation',
                 'OCR detection', 'OCR recognition', 'face detection', 'transformer',
                 'landmarks', 'table structure', 'audio'):
        assert kind in tasks, kind
    assert len(zoo_data.ZOO) >= 12 and len(set(zoo_data.BY_NAME)) == len(zoo_data.ZOO)


def test_photo_preprocessing_follows_the_prep():
    """Channel order, mean/std, grey and layout: a uniform BGR photo gives known values."""
    image = np.zeros((10, 20, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30        # B, G, R
    rgb = zoo_data.image_tensor(image, (1, 3, 4, 8), zoo_data.Prep(mean=(1, 2, 3),
                                                                   std=(1, 2, 3)))
    assert np.allclose(rgb[0, :, 0, 0], [29, 9, 7 / 3])             # (R-1)/1, (G-2)/2, (B-3)/3
    bgr = zoo_data.image_tensor(image, (1, 4, 8, 3), zoo_data.Prep(
        color='BGR', layout='NHWC', mean=(0, 0, 0), std=(1, 1, 1)))
    assert bgr.shape == (1, 4, 8, 3) and np.allclose(bgr[0, 0, 0], [10, 20, 30])
    grey = zoo_data.image_tensor(image, (1, 1, 4, 8), zoo_data.Prep(color='GRAY'))
    assert grey.shape == (1, 1, 4, 8) and 0.07 < grey[0, 0, 0, 0] < 0.09


def test_audio_inputs_follow_the_packages():
    """Silero's rows each carry the 64 samples before them (zeros before the first); madmom's
    feature widths are its models' (onsets 2 x (39 + 45 + 49), beats 81, downbeats 4 sub-beats
    x 45 bands); resampling keeps a tone's pitch."""
    rate = 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    rows = zoo_data.audio_tensor(tone, (32, 576), zoo_data.BY_NAME['silero-vad'].audio)
    assert rows.shape == (32, 576) and not rows[0, :64].any()
    assert np.array_equal(rows[1:, :64], rows[:-1, -64:])
    assert np.array_equal(rows[0, 64:], tone[:512].astype(np.float32))
    for name in ('madmom-onsets', 'madmom-beats', 'madmom-downbeats'):
        model = zoo_data.BY_NAME[name]
        x = zoo_data.audio_tensor(zoo_data.resample(tone, rate, 44100), model.input_shape,
                                  model.audio)
        assert x.shape == model.input_shape and np.isfinite(x).all() and x.any(), name
    khz = zoo_data.resample(np.sin(2 * np.pi * 1000 * np.arange(4800) / 48000), 48000, 16000)
    assert len(khz) == 1600 and np.argmax(np.abs(np.fft.rfft(khz))) == 100   # 10 Hz bins


# --- old opsets ---------------------------------------------------------------------------------

@pytest.mark.parametrize('opset', [10, 23])
def test_other_opsets_are_converted_on_import(tmp_path, opset):
    """MTCNN O-Net (real weights, opset 12) converted to opset 10 (upgraded on import) and to
    23 (converted down on import): each builds and answers as ONNX Runtime on the original."""
    original = assets.fetch('mtcnn-onet.onnx')
    path = tmp_path / f'onet-opset{opset}.onnx'
    onnx.save(version_converter.convert_version(onnx.load(str(original)), opset), path)
    assert onnx.load(str(path)).opset_import[0].version == opset
    engine = Engine.build(path, input_shape=(1, 48, 48, 3))
    x = zoo_data.photo_tensor(zoo_data.BY_NAME['mtcnn-onet'])
    outputs = check_against_ort(engine, path, x, 1e-4)             # ORT on the converted file
    reference = ort_outputs(original, {engine.input_specs[0].name: x})
    for name, expected in reference.items():                       # and on the original
        assert zoo_data.rel_error(outputs[name], expected) <= 1e-4


@pytest.mark.parametrize('op, opset, message', [
    ('NoSuchOp', 9, 'opset 9 could not be upgraded'),          # unknown at opset 9
    ('NoSuchOp', 24, 'opset 24 could not be converted down'),  # unknown at opset 24
    ('Relu', 999, 'opset 999 is outside')])                    # newer than the installed onnx
def test_a_failed_opset_conversion_names_the_opset(tmp_path, op, opset, message):
    """A model the converter cannot bring into range is refused with its opset in the
    message, not a converter traceback."""
    node = helper.make_node(op, ['x'], ['y'])
    graph = helper.make_graph(
        [node], 'g', [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1, 4])])
    path = tmp_path / 'model.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)]), path)
    with pytest.raises(ModelFormatError, match=message):
        load_onnx(path)


# --- carrying the zoo to the GPU machine --------------------------------------------------------

def test_pack_unpack_restores_every_weight(tmp_path):
    """PP-OCRv4 det keeps its weights in Constant nodes and has a BatchNorm variance beyond
    the float16 range (9.8e7): it must come back finite, each weight its float16 rounding
    or, where that would overflow, exact; the packed files are about half the model."""
    from onnx import numpy_helper
    zoo_data.pack(tmp_path / 'packed', ['ppocr-det'])
    restored = zoo_data.unpack(tmp_path / 'packed', tmp_path / 'work')['ppocr-det'][0]
    packed = sum(p.stat().st_size for p in (tmp_path / 'packed').glob('ppocr-det.*'))
    original_path = assets.fetch('ppocr-det.onnx')
    assert packed < 0.6 * original_path.stat().st_size
    original, back = onnx.load(str(original_path)), onnx.load(str(restored))
    pairs = list(zip(zoo_data.float_tensors(original), zoo_data.float_tensors(back)))
    assert len(pairs) > 100
    for a, b in pairs:
        a, b = numpy_helper.to_array(a), numpy_helper.to_array(b)
        assert np.isfinite(b).all()
        if np.abs(a).max() > zoo_data.FP16_MAX:
            assert np.array_equal(a, b)
        else:
            assert np.array_equal(a.astype(np.float16).astype(np.float32), b)


@pytest.mark.parametrize('model', [_param(m) for m in zoo_data.ZOO])
def test_zoo_model_cuda_graph_matches_onnxruntime(model, tmp_path):
    """The graph the cuda backend lowers (every pass of POINTWISE_LEVEL: fused epilogues, the
    scale folds, pointwise chains) run by the numpy reference against ONNX Runtime, and lowered
    for sm_90 and sm_62 with no refusal: the CUDA build of every zoo model, checked without a
    GPU (the kernels themselves are test/cuda's)."""
    import zoo_launches
    from tx2_infer_core import reference as numpy_reference
    from tx2_infer_core.cuda.lowering import lower_graph
    graph = zoo_launches.cuda_graph(model)
    for arch, sms in ((90, 132), (62, 2)):
        assert lower_graph(graph, arch, sm_count=sms).launches
    model_path, weights = zoo_data.model_files(model)
    feeds = zoo_data.feeds(model, [graph.values[n] for n in graph.inputs])
    got = numpy_reference.execute(graph, feeds)
    want = ort_outputs(zoo_data.reference_onnx(model, model_path, weights, tmp_path), feeds)
    for name, expected in want.items():
        err = zoo_data.rel_error(got[name], expected)
        assert err <= model.tolerance, f'{name}: relative error {err:.2e}'
