"""``detector.Detector``, the one frame path: host path against the separate steps it chains,
the path chosen once from ``Backend.frame_pipeline``, input checks, and ``DetectParams``
defaults that every consumer shares."""
import inspect

import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect, heads
from tx2_infer_core.backends.base import Backend
from tx2_infer_core.detect_params import DEFAULTS, DetectParams
from tx2_infer_core.detector import STAGES, Detector
from tx2_infer_core.errors import InputError, ModelFormatError, Tx2InferError
from tx2_infer_core.ir import Value

ort = pytest.importorskip('onnxruntime')
LABELS = ['person', 'fallen person']


class OrtEngine:
    """The Engine surface a Detector reads, served by ONNX Runtime; ``backend`` a bare one."""

    def __init__(self, session, meta, backend=None):
        self.session, self.meta, self.backend = session, meta, backend or Backend()
        self.input_specs = [Value(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape))
                            for i in session.get_inputs()]
        self.output_specs = [Value(o.name, tuple(o.shape)) for o in session.get_outputs()]
        self.runs = 0

    def run(self, feeds):
        self.runs += 1
        names = [o.name for o in self.output_specs]
        return dict(zip(names, self.session.run(names, feeds)))


class StubFrames:
    """A frame pipeline that records its calls and returns one fixed detection."""

    def __init__(self):
        self.calls = []

    def detect(self, image, conf, iou, max_det, classes, overlap=None):
        self.calls.append((image.shape, conf, iou, max_det, classes))
        if overlap is not None:
            overlap()
        return np.float32([[1, 2, 30, 40]]), np.float32([0.9]), np.int64([1])


@pytest.fixture(scope='module')
def yolov8():
    path = assets.fetch('yolov8-fall.onnx')
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


@pytest.fixture(scope='module')
def bus():
    return cv2.imread(str(assets.fetch('bus.jpg')))


def test_host_path_is_preprocess_run_decode_in_image_pixels(yolov8, bus):
    engine = OrtEngine(yolov8, {'labels': LABELS})
    detector = Detector(engine)
    assert detector.path == 'host' and detector.input_size() == (640, 640)
    times = {}
    dets = detector.detect(bus, times=times)
    assert sorted(times) == sorted(STAGES) and all(t >= 0 for t in times.values())
    tensor, lb = detect.preprocess(bus, (1, 3, 640, 640))
    outputs = engine.run({'images': tensor})
    head = heads.head_from_outputs({v.name: v.shape for v in engine.output_specs})
    want = detect.to_detections(*heads.decode(outputs, head), lb, head, LABELS)
    assert len(dets) >= 3 and dets == want
    # Per-call settings, then the detector's own again.
    strict = detector.detect(bus, DetectParams(conf_threshold=0.6, max_detections=2))
    assert 0 < len(strict) <= 2 and all(d.score >= 0.6 for d in strict)
    only = detector.detect(bus, DetectParams(classes=[dets[0].class_id]))
    assert {d.class_id for d in only} == {dets[0].class_id}
    assert detector.detect(bus) == dets


def test_grey_image_is_detected_as_its_bgr_copy(yolov8, bus):
    detector = Detector(OrtEngine(yolov8, {}), labels=LABELS)
    grey = cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY)
    assert detector.detect(grey) == detector.detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))


@pytest.mark.parametrize('image, words', [
    (np.zeros((8, 8, 3), np.float32), 'uint8'), (np.zeros((8, 8, 4), np.uint8), 'HxWx3'),
    (np.zeros((0, 8, 3), np.uint8), 'empty'), ([[1, 2]], 'HxWx3')])
def test_bad_images_are_refused(yolov8, image, words):
    with pytest.raises(InputError, match=words):
        Detector(OrtEngine(yolov8, {})).detect(image)


def test_the_gpu_path_is_chosen_once_from_the_backends_frame_pipeline(yolov8, bus):
    backend = Backend()
    backend.frame_pipeline = frames = StubFrames()
    engine = OrtEngine(yolov8, {'labels': LABELS}, backend)
    detector = Detector(engine, DetectParams(0.3, 0.5, 7, [1]))
    assert detector.path == 'gpu'
    times = {}
    dets = detector.detect(cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY), times=times)
    assert frames.calls == [(bus.shape, 0.3, 0.5, 7, (1,))] and engine.runs == 0
    assert dets == [detect.Detection(1, 2, 30, 40, pytest.approx(0.9), 1, 'fallen person')]
    assert sorted(times) == sorted(STAGES) and times['preprocess'] == 0.0
    backend.frame_pipeline = None          # read at construction only: still the GPU path
    assert detector.detect(bus) == dets and len(frames.calls) == 2
    backend.frame_pipeline = frames
    host = Detector(engine, path='host')
    assert host.path == 'host' and host.detect(bus) and engine.runs == 1


def test_overlap_runs_once_a_frame_on_either_path(yolov8, bus):
    """The node's tracker prediction: once per detect or detect_batch call, before the
    engine's run on the host path, handed to the frame pipeline on the GPU path."""
    engine = OrtEngine(yolov8, {'labels': LABELS})
    seen = []
    host = Detector(engine, path='host')
    dets = host.detect(bus, overlap=lambda: seen.append(engine.runs))
    assert seen == [0] and engine.runs == 1 and dets == host.detect(bus)
    host.detect_batch([bus], overlap=lambda: seen.append(engine.runs))
    assert seen == [0, 2]
    backend = Backend()
    backend.frame_pipeline = frames = StubFrames()
    gpu = Detector(OrtEngine(yolov8, {'labels': LABELS}, backend))
    gpu.detect(bus, overlap=lambda: seen.append('gpu'))
    assert seen == [0, 2, 'gpu'] and len(frames.calls) == 1
    with pytest.raises(ZeroDivisionError):     # an overlap's error is the caller's
        host.detect(bus, overlap=lambda: 1 / 0)


def test_path_and_head_are_checked_at_construction(yolov8):
    with pytest.raises(Tx2InferError, match='no GPU frame pipeline'):
        Detector(OrtEngine(yolov8, {}), path='gpu')
    with pytest.raises(Tx2InferError, match='path must be one of'):
        Detector(OrtEngine(yolov8, {}), path='fast')
    with pytest.raises(ModelFormatError, match="unknown detector head type 'none'"):
        Detector(OrtEngine(yolov8, {'head': {'type': 'none'}}))


def test_warm_up_runs_one_frame_of_the_input_size(yolov8):
    engine = OrtEngine(yolov8, {})
    Detector(engine).warm_up()
    assert engine.runs == 1


def _defaults(fn, names):
    params = inspect.signature(fn).parameters
    return tuple(params[n].default for n in names)


def test_every_consumer_takes_the_detect_params_defaults():
    from tx2_infer_core import cli
    from tx2_infer_core.cuda.pipeline import FramePipeline
    want = (DEFAULTS.conf_threshold, DEFAULTS.iou_threshold, DEFAULTS.max_detections)
    assert DetectParams() == DEFAULTS and DEFAULTS.classes is None
    assert _defaults(heads.decode, ('conf_threshold', 'iou_threshold', 'max_detections')) == want
    assert _defaults(FramePipeline.detect, ('conf', 'iou', 'max_det')) == want
    args = cli.make_parser().parse_args(['run', 'm.onnx', 'x.jpg'])
    assert (args.conf, args.iou, args.max_det, args.classes) == want + (None,)
    assert cli.detect_params(args) == DEFAULTS
