"""Detection pre/post-processing against independent oracles (OpenCV, ONNX Runtime, brute force)."""
import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect
from tx2_infer_core.errors import ModelFormatError, InputError
from tx2_infer_core.ir import Value

ort = pytest.importorskip('onnxruntime')


def _session(name):
    return ort.InferenceSession(str(assets.fetch(name)), providers=['CPUExecutionProvider'])


@pytest.fixture(scope='module')
def photos():
    return {p.name: cv2.imread(str(p)) for p in assets.fetch_photos()}


@pytest.fixture(scope='module')
def yolov8():
    return _session('yolov8-fall.onnx')


class OrtEngine:
    """The part of the Engine contract detect_image uses, served by ONNX Runtime."""

    def __init__(self, session, meta):
        self.session, self.meta = session, meta
        self.input_specs = [Value(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape))
                            for i in session.get_inputs()]
        self.output_specs = [Value(o.name, tuple(o.shape)) for o in session.get_outputs()]

    def run(self, feeds):
        names = [o.name for o in self.output_specs]
        return dict(zip(names, self.session.run(names, feeds)))


# --- letterbox -------------------------------------------------------------------------------

@pytest.mark.parametrize('size', [(640, 640), (416, 416), (320, 256)])
def test_letterbox_round_trip_on_real_photos(photos, size):
    rng = np.random.default_rng(0)
    for name, image in photos.items():
        out, lb = detect.letterbox(image, size)
        h, w = image.shape[:2]
        assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
        assert (lb.src_w, lb.src_h, lb.dst_w, lb.dst_h) == (w, h) + size
        new_w, new_h = round(w * lb.scale), round(h * lb.scale)
        top, left = int(lb.pad_y), int(lb.pad_x)
        np.testing.assert_array_equal(out[top:top + new_h, left:left + new_w],
                                      cv2.resize(image, (new_w, new_h)))
        assert (out[:top] == 114).all() and (out[top + new_h:] == 114).all()
        assert (out[:, :left] == 114).all() and (out[:, left + new_w:] == 114).all()
        # Boxes in original pixels -> network pixels -> back again.
        xy = rng.uniform(0, 1, (20, 4)) * [w, h, w, h]
        boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]),
                                np.maximum(xy[:, :2], xy[:, 2:])], axis=1)
        net = boxes * lb.scale + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
        np.testing.assert_allclose(detect.unletterbox_boxes(net, lb), boxes, atol=1e-2)
        # The whole image region maps back onto the whole image, within rounding.
        full = detect.unletterbox_boxes([[left, top, left + new_w, top + new_h]], lb)[0]
        np.testing.assert_allclose(full, [0, 0, w, h], atol=1.0)


def test_unletterbox_clips_to_the_image(photos):
    _, lb = detect.letterbox(photos['dog.jpg'], (416, 416))
    boxes = detect.unletterbox_boxes([[-50, -50, 500, 500]], lb)
    np.testing.assert_allclose(boxes[0], [0, 0, lb.src_w, lb.src_h])


def test_stretch_round_trip(photos):
    image = photos['bus.jpg']
    out, lb = detect.stretch(image, (224, 224))
    np.testing.assert_array_equal(out, cv2.resize(image, (224, 224)))
    boxes = np.float32([[10, 20, 300, 400]])
    net = boxes * [lb.scale, lb.scale_y, lb.scale, lb.scale_y]
    np.testing.assert_allclose(detect.unletterbox_boxes(net, lb), boxes, rtol=1e-5)


def test_preprocess_yolo_matches_opencv_blob(photos):
    image = photos['zidane.jpg']
    tensor, lb = detect.preprocess(image, (1, 3, 640, 640), {})
    boxed, _ = detect.letterbox(image, (640, 640))
    expected = cv2.dnn.blobFromImage(boxed, 1 / 255, swapRB=True)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, expected, atol=1e-6)


def test_preprocess_open_nsfw_format_runs_the_classifier(photos):
    fmt = {'color': 'BGR', 'layout': 'NHWC', 'mean': [104, 117, 123], 'scale': 1.0,
           'resize': 'stretch'}
    image = photos['chelsea.png']
    tensor, lb = detect.preprocess(image, (1, 224, 224, 3), fmt)
    blob = cv2.dnn.blobFromImage(image, 1.0, (224, 224), (104, 117, 123), swapRB=False)
    np.testing.assert_allclose(tensor, blob.transpose(0, 2, 3, 1), atol=1e-4)
    session = _session('open_nsfw.onnx')
    probs = session.run(None, {'input_0': tensor})[0]
    boxes, scores, ids = detect.decode({'prob': probs}, {'type': 'classifier'})
    assert boxes.shape == (2, 4) and not boxes.any()
    assert ids.tolist() == np.argsort(-probs[0]).tolist()
    np.testing.assert_allclose(scores, np.sort(probs[0])[::-1])
    assert ids[0] == 0   # a cat photo is safe for work


def test_preprocess_rejects_bad_input(photos):
    with pytest.raises(InputError, match='HxWx3'):
        detect.preprocess(np.zeros((10, 10), np.uint8), (1, 3, 64, 64))
    with pytest.raises(InputError, match='batch 1 and 3'):
        detect.preprocess(photos['dog.jpg'], (1, 4, 64, 64))
    with pytest.raises(InputError, match='resize'):
        detect.preprocess(photos['dog.jpg'], (1, 3, 64, 64), {'resize': 'crop'})


# --- NMS -------------------------------------------------------------------------------------

def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _brute_force_nms(boxes, scores, class_ids, threshold):
    """Keep a box iff no kept box of its class with a higher score overlaps it too much."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(class_ids[k] != class_ids[i] or _iou(boxes[k], boxes[i]) <= threshold
               for k in kept):
            kept.append(i)
    return kept


def _yolov8_candidates(session, image, conf=0.01):
    tensor, _ = detect.preprocess(image, (1, 3, 640, 640))
    rows = session.run(None, {'images': tensor})[0][0].T
    scores, ids = rows[:, 4:].max(1), rows[:, 4:].argmax(1)
    keep = scores > conf
    cx, cy, w, h = rows[keep, :4].T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), scores[keep], ids[keep]


def test_nms_matches_brute_force_on_synthetic_boxes():
    rng = np.random.default_rng(1)
    for trial in range(5):
        xy = rng.uniform(0, 100, (60, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2))], 1)
        scores, ids = rng.uniform(0, 1, 60), rng.integers(0, 3, 60)
        for threshold in (0.3, 0.5, 0.7):
            kept = detect.nms(boxes, scores, ids, threshold)
            assert kept.tolist() == _brute_force_nms(boxes, scores, ids, threshold)


def test_nms_matches_brute_force_and_opencv_on_real_candidates(yolov8, photos):
    boxes, scores, ids = _yolov8_candidates(yolov8, photos['bus.jpg'])
    assert len(boxes) > 30   # many overlapping real candidates
    kept = detect.nms(boxes, scores, ids, 0.45)
    assert kept.tolist() == _brute_force_nms(boxes, scores, ids, 0.45)
    assert np.all(np.diff(scores[kept]) <= 0)
    for cls in np.unique(ids):
        members = np.flatnonzero(ids == cls)
        xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
                for b in boxes[members]]
        ours = sorted(kept[ids[kept] == cls].tolist())
        theirs = cv2.dnn.NMSBoxes(xywh, scores[members].tolist(), 0.0, 0.45)
        assert ours == sorted(members[np.asarray(theirs, int).reshape(-1)].tolist())


def test_nms_empty_and_mismatched():
    assert detect.nms(np.zeros((0, 4)), [], [], 0.5).tolist() == []
    with pytest.raises(ValueError, match='same length'):
        detect.nms(np.zeros((2, 4)), [1.0], [0, 0], 0.5)
