"""``Detector.detect_batch`` on the host path: a batch of real photos (of different sizes) gives
what ``detect`` gives each photo on a batch-1 engine of the same model (the oracle), in order;
fewer photos than the batch are padded (counted); the engine runs once per batch."""
import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.detector import STAGES, Detector
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import InputError

PHOTOS = ['bus.jpg', 'zidane.jpg', 'dog.jpg', 'horses.jpg', 'person.jpg']
PARAMS = DetectParams(conf_threshold=0.2)


def photos():
    return [cv2.imread(str(assets.fetch(p))) for p in PHOTOS]


def model(name):
    return str(assets.yolov3_tiny()[0]) if name == 'yolov3-tiny' else str(assets.fetch(name))


@pytest.fixture(scope='module', params=[('yolov3-tiny', 416), ('nudenet-320n.onnx', 320)])
def detectors(request):
    """(batch-4 Detector, batch-1 Detector) of one model on ONNX Runtime, host path."""
    name, size = request.param
    four = Engine.build(model(name), (4, 3, size, size), backend='ort')
    one = Engine.build(model(name), (1, 3, size, size), backend='ort')
    labels = detect.load_labels(assets.yolov3_tiny()[2]) if name == 'yolov3-tiny' else None
    return Detector(four, labels=labels), Detector(one, labels=labels)


def assert_same(got, want):
    """Same detections (class, label, order), boxes and scores within float noise."""
    assert [(d.class_id, d.label) for d in got] == [(d.class_id, d.label) for d in want]
    for a, b in zip(got, want):
        assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], atol=0.05)
        assert abs(a.score - b.score) < 1e-4


def counting(engine):
    """Count the engine's runs from now (a wrapper around its own ``run``)."""
    engine.runs = 0
    run = engine.__dict__.get('own_run') or engine.run
    engine.own_run = run

    def counted(feeds):
        engine.runs += 1
        return run(feeds)
    engine.run = counted


@pytest.mark.parametrize('count', [4, 3, 1])
def test_detect_batch_equals_detect_of_each(detectors, count):
    four, one = detectors
    images = photos()[:count]
    counting(four.engine)
    padded, times = four.padded, {}
    results = four.detect_batch(images, PARAMS, times)
    assert four.engine.runs == 1                              # one run for the whole batch
    assert four.padded - padded == 4 - count                  # padded with the last image
    assert set(STAGES) <= set(times)
    assert len(results) == count
    for image, got in zip(images, results):
        assert_same(got, one.detect(image, PARAMS))
    assert sum(len(r) for r in results) > 0


def test_detect_on_a_batch_engine_is_a_batch_of_one(detectors):
    four, one = detectors
    image = photos()[1]
    assert_same(four.detect(image, PARAMS), one.detect(image, PARAMS))


def test_order_follows_the_images(detectors):
    four, _ = detectors
    images = photos()[:3]
    forward = four.detect_batch(images, PARAMS)
    backward = four.detect_batch(images[::-1], PARAMS)
    for got, want in zip(backward, forward[::-1]):
        assert_same(got, want)


def test_too_many_or_no_images_refused(detectors):
    four, _ = detectors
    with pytest.raises(InputError, match='1 to 4 images'):
        four.detect_batch(photos()[:5])
    with pytest.raises(InputError, match='1 to 4 images'):
        four.detect_batch([])
    with pytest.raises(InputError):
        four.detect_batch([np.zeros((4, 4), np.float32)])


def test_stack_batch_pads_with_the_last():
    tensors = [np.full((1, 2), v, np.float32) for v in (1, 2)]
    assert detect.stack_batch(tensors, 4)[:, 0].tolist() == [1, 2, 2, 2]
    with pytest.raises(InputError):
        detect.stack_batch(tensors * 3, 4)
