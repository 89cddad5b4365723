"""FP16 range inputs from files (``range_inputs.py``) through ``tx2-infer build --range-inputs``
and ``inspect``, on the numpy stand-in for the cuda backend (``FakeCudaBackend``).

oww-melspec (openWakeWord's mel front end) on an .npz of its real recording: the plan the CLI
writes holds the rescaled graph (the same as ``Engine.build(..., range_feeds=)``'s), finite
over an emulated FP16 arena and matching ONNX Runtime FP32; without the range inputs it is inf
there. A folder of images is fed exactly as the Detector feeds the model; bad range inputs are
one clear line.
"""
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fp16_storage import run_fp16_storage
from test_engine_knobs import FakeCudaBackend
from tx2_infer_core import assets, cli, engine as engine_mod, plan_file
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine, feeds_digest
from tx2_infer_core.range_inputs import RangeInputs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402

MODEL = zoo_data.BY_NAME['oww-melspec']
TOLERANCE = 2e-2        # test_fp16_range.py's: the GPU's zoo tolerance vs ORT FP32 (rel L2)
CUDA_FP16 = ['--backend', 'cuda', '--precision', 'fp16', '--input-shape', '1x21760']


@pytest.fixture
def fake_cuda(monkeypatch):
    from tx2_infer_core.backends import cuda_backend
    monkeypatch.setattr(cuda_backend, 'CudaBackend', FakeCudaBackend)
    monkeypatch.setattr(engine_mod, '_warned', set())


@pytest.fixture(scope='module')
def oww(tmp_path_factory):
    """(model path, its recording as feeds, that feeds' .npz, ONNX Runtime's session)."""
    path = zoo_data.model_files(MODEL)[0]
    feeds = {'input': zoo_data.photo_tensor(MODEL)}
    npz = tmp_path_factory.mktemp('range') / 'speech.npz'
    np.savez(npz, **feeds)
    return path, feeds, npz, ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


def tx2_infer(*args) -> int:
    """``tx2-infer ARGS`` in this process (the cuda stand-in is patched in here)."""
    return cli.main([str(a) for a in args])


def rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_build_with_range_inputs_writes_a_plan_that_fits_fp16(oww, fake_cuda, tmp_path, capsys):
    path, feeds, npz, session = oww
    plan = tmp_path / 'oww.tx2plan'
    assert tx2_infer('build', path, '-o', plan, *CUDA_FP16, '--range-inputs', npz) == 0
    assert 'fp16 range: 7 values stored rescaled' in capsys.readouterr().out
    graph, _, options = plan_file.load_plan(plan)
    assert options['fp16_range']['onnx::MatMul_18'] == -28
    with Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=feeds) as api:
        assert graph.nodes == api.graph.nodes
    for gain in (1.0, 2.0):     # measured on the recording, run on it and twice as loud
        x = {'input': (feeds['input'] * gain).astype(np.float32)}
        got = run_fp16_storage(graph, x)[graph.outputs[0]]
        assert np.isfinite(got).all()
        assert rel_l2(got, session.run(None, x)[0]) < TOLERANCE
    assert tx2_infer('inspect', plan, '--backend', 'numpy') == 0
    out = capsys.readouterr().out
    assert 'fp16 range: 7 values stored times 2^k' in out
    assert 'onnx::MatMul_18.pre  2^-28' in out and 'onnx::Log_24         2^-22' in out


def test_without_range_inputs_the_plan_overflows_fp16(oww, fake_cuda, tmp_path):
    path, feeds = oww[:2]
    plan = tmp_path / 'plain.tx2plan'
    assert tx2_infer('build', path, '-o', plan, *CUDA_FP16) == 0
    graph, _, options = plan_file.load_plan(plan)
    assert 'fp16_range' not in options
    assert not np.isfinite(run_fp16_storage(graph, feeds)[graph.outputs[0]]).any()


def test_an_npz_of_several_runs_measures_them_all(oww, fake_cuda, tmp_path):
    """Two runs: the recording and it twice as loud (int16's full scale): the loud one sets
    the exponents (one more for the STFT, two for the power spectrum)."""
    path, feeds, npz = oww[:3]
    runs = tmp_path / 'runs.npz'
    np.savez(runs, input=np.stack([feeds['input'], feeds['input'] * 2]))
    one = Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=npz)
    both = Engine.build(path, MODEL.input_shape, 'fp16', 'cuda', range_feeds=runs)
    assert one.options['fp16_range']['onnx::MatMul_18'] == -28
    assert both.options['fp16_range']['onnx::MatMul_18'] == -30
    assert both.options['fp16_range']['onnx::Unsqueeze_6'] == \
        one.options['fp16_range']['onnx::Unsqueeze_6'] - 1


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp('photos')
    for name in ('dog.jpg', 'bus.jpg', 'chelsea.png'):
        shutil.copy(assets.fetch(name), folder / name)
    return folder


def _bad_inputs(folder, photos):
    """{case: (path, words of the error)} over files written to ``folder``."""
    (folder / 'empty').mkdir()
    np.savez(folder / 'named.npz', audio=np.zeros((1, 21760), np.float32))
    np.savez(folder / 'short.npz', input=np.zeros((1, 100), np.float32))
    np.savez(folder / 'f64.npz', input=np.zeros((1, 21760)))
    (folder / 'text.npz').write_text('not a zip')
    return {'missing': (folder / 'nope', "range inputs '.*nope' do not exist"),
            'empty': (folder / 'empty', "range inputs folder '.*empty' holds no images"),
            'images for audio': (photos, r"the model's input 'input' \(1, 21760\): image "
                                 'input must be 4-D.*give an .npz'),
            'names': (folder / 'named.npz', r"hold arrays \['audio'\]; the model's inputs "
                      r"are \['input'\]"),
            'shape': (folder / 'short.npz', r"'input' is float32 \(1, 100\); the model takes "
                      r'float32 \(1, 21760\)'),
            'dtype': (folder / 'f64.npz', r"'input' is float64 \(1, 21760\); the model takes "
                      'float32'),
            'not a zip': (folder / 'text.npz', 'are not an .npz file')}


def test_bad_range_inputs_are_one_clear_line(oww, fake_cuda, photos, tmp_path, capsys):
    for case, (source, words) in _bad_inputs(tmp_path, photos).items():
        status = tx2_infer('build', oww[0], '-o', tmp_path / 'p.tx2plan', *CUDA_FP16,
                           '--range-inputs', source)
        err = [line for line in capsys.readouterr().err.splitlines()
               if line.startswith('tx2-infer build: error:')]
        assert status == 2 and len(err) == 1 and re.search(words, err[0]), (case, err)
    assert not (tmp_path / 'p.tx2plan').exists()


@pytest.fixture(scope='module')
def tiny():
    """YOLOv3-tiny at batch 2, 128x128, on numpy (the graph the range images are fed to)."""
    cfg, weights, _ = assets.yolov3_tiny()
    with Engine.build(cfg, (2, 3, 128, 128), weights_path=weights) as engine:
        yield engine


class Spy:
    """The engine as a Detector sees it, recording every feeds dict it is run on."""

    def __init__(self, engine, input_format=None):
        self.engine, self.fed = engine, []
        self.meta = dict(engine.meta)
        if input_format:
            self.meta['input_format'] = dict(self.meta['input_format'], **input_format)
        self.input_specs, self.output_specs = engine.input_specs, engine.output_specs

    def run(self, feeds):
        self.fed.append({k: v.copy() for k, v in feeds.items()})
        return self.engine.run(feeds)


@pytest.mark.parametrize('input_format', [None, {'color': 'BGR', 'scale': 0.5}])
def test_range_images_are_what_the_detector_feeds(tiny, photos, input_format):
    """Three photos at batch 2: two runs, the second padded with its last photo, each tensor
    what ``Detector.detect_batch`` passes to the engine (also with --input-format's
    override)."""
    images = [assets.fetch(p.name) for p in sorted(photos.iterdir())]
    spy = Spy(tiny, input_format)
    detector = Detector(spy, path='host')
    from tx2_infer_core.image_header import read_image
    detector.detect_batch([read_image(p) for p in images[:2]])
    detector.detect_batch([read_image(images[2])])
    feeds = RangeInputs(photos, input_format).feeds(tiny.graph)
    assert len(feeds) == len(spy.fed) == 2
    for ours, fed in zip(feeds, spy.fed):
        assert sorted(ours) == sorted(fed)
        for name in fed:
            assert ours[name].dtype == fed[name].dtype
            assert np.array_equal(ours[name], fed[name])


def test_the_files_key_the_plan(photos, tmp_path):
    folder = tmp_path / 'frames'
    shutil.copytree(photos, folder)
    first = feeds_digest(str(folder))
    assert feeds_digest(RangeInputs(folder)) == first
    assert feeds_digest(RangeInputs(folder, {'color': 'BGR'})) != first
    image = bytearray((folder / 'dog.jpg').read_bytes())
    image[len(image) // 2] ^= 1                         # one bit: same name and size
    (folder / 'dog.jpg').write_bytes(image)
    assert feeds_digest(str(folder)) != first


def test_range_inputs_on_the_cpu_are_not_used_and_said_so(photos, tmp_path, capsys):
    cfg, weights, _ = assets.yolov3_tiny()
    plan = tmp_path / 'tiny.tx2plan'
    assert tx2_infer('build', cfg, '--weights', weights, '-o', plan, '--backend', 'numpy',
                     '--input-shape', '1x3x128x128', '--range-inputs', photos) == 0
    assert '--range-inputs not used: the numpy backend runs fp32' in capsys.readouterr().err
    assert 'fp16_range' not in plan_file.load_plan(plan)[2]['passes']
