"""Detection pre/post-processing against independent oracles.

The oracles: OpenCV (blobFromImage, NMSBoxes, its Darknet reader), ONNX Runtime, brute force.
"""
import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect, heads
from tx2_infer_core.detector import Detector
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
    """The part of the Engine contract a host-path Detector uses, served by ONNX Runtime."""

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


# --- YOLOv8 decode ---------------------------------------------------------------------------

def _straightforward_yolov8(output, conf, iou):
    """Per anchor: best class, threshold, corners; then OpenCV's class-aware NMS."""
    boxes, scores, ids = [], [], []
    for column in output[0].T:
        cls = int(np.argmax(column[4:]))
        if column[4 + cls] >= conf:
            cx, cy, w, h = column[:4]
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            scores.append(float(column[4 + cls]))
            ids.append(cls)
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, ids, conf, iou), int).reshape(-1)
    kept = kept[np.argsort([-scores[k] for k in kept], kind='stable')]
    return np.float32(boxes)[kept], np.float32(scores)[kept], np.int64(ids)[kept]


@pytest.mark.parametrize('photo', ['bus.jpg', 'zidane.jpg'])
def test_yolov8_decode_matches_straightforward_decode(yolov8, photos, photo):
    tensor, lb = detect.preprocess(photos[photo], (1, 3, 640, 640))
    output = yolov8.run(None, {'images': tensor})[0]
    head = detect.head_from_outputs({'output0': output.shape})
    assert head == {'type': 'yolov8', 'num_classes': 2, 'output': 'output0'}
    boxes, scores, ids = detect.decode({'output0': output}, head, 0.25, 0.45)
    want_boxes, want_scores, want_ids = _straightforward_yolov8(output, 0.25, 0.45)
    assert len(boxes) >= 2   # bus.jpg and zidane.jpg show several people
    assert ids.tolist() == want_ids.tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-3)
    # Filtering by class and capping the count.
    only = detect.decode({'output0': output}, head, 0.25, 0.45, classes=[int(ids[0])])[2]
    assert set(only.tolist()) == {int(ids[0])}
    assert len(detect.decode({'output0': output}, head, 0.25, 0.45, max_detections=1)[0]) == 1


def test_detector_with_an_ort_engine_finds_people(yolov8, photos):
    engine = OrtEngine(yolov8, {'labels': ['person', 'fallen person']})
    dets = Detector(engine, path='host').detect(photos['bus.jpg'])
    assert len(dets) >= 3 and all(d.label in ('person', 'fallen person') for d in dets)
    h, w = photos['bus.jpg'].shape[:2]
    for d in dets:
        assert 0 <= d.x1 < d.x2 <= w and 0 <= d.y1 < d.y2 <= h and 0.25 <= d.score <= 1
    drawn = detect.draw_detections(photos['bus.jpg'], dets)
    assert drawn.shape == photos['bus.jpg'].shape and (drawn != photos['bus.jpg']).any()


def test_head_from_outputs_and_unknown_heads():
    assert detect.head_from_outputs({'y': (1, 25200, 85)})['type'] == 'yolov5'
    assert detect.head_from_outputs({'p': (1, 2)}) == {'type': 'classifier', 'output': 'p'}
    with pytest.raises(ModelFormatError, match='cannot tell'):
        detect.head_from_outputs({'a': (1, 255, 13, 13), 'b': (1, 255, 26, 26)})
    with pytest.raises(ModelFormatError, match="unknown detector head type 'ssd'"):
        detect.decode({'y': np.zeros((1, 6, 10))}, {'type': 'ssd'})
    with pytest.raises(ModelFormatError, match='expects an output'):
        detect.decode({'y': np.zeros((1, 7, 10))}, {'type': 'yolov8', 'num_classes': 2})


def test_yolov5_decode_multiplies_objectness():
    rows = np.zeros((1, 3, 7), np.float32)   # cx, cy, w, h, obj, class0, class1
    rows[0, 0] = [50, 50, 20, 20, 0.9, 0.2, 0.8]
    rows[0, 1] = [52, 50, 20, 20, 0.5, 0.9, 0.1]
    rows[0, 2] = [10, 10, 4, 4, 0.3, 0.5, 0.5]
    boxes, scores, ids = detect.decode({'y': rows}, {'type': 'yolov5', 'num_classes': 2})
    np.testing.assert_allclose(scores, [0.72, 0.45], rtol=1e-6)
    assert ids.tolist() == [1, 0]
    np.testing.assert_allclose(boxes[0], [40, 40, 60, 60])


def test_load_labels():
    labels = detect.load_labels(assets.fetch('coco.names'))
    assert len(labels) == 80 and labels[0] == 'person' and labels[16] == 'dog'


# --- Darknet yolo decode against OpenCV's Darknet reader -----------------------------------------

def _darknet_head(cfg_path):
    """The [yolo] sections of a Darknet cfg as a darknet_yolo head (outputs named as OpenCV)."""
    sections, current = [], None
    for line in open(cfg_path):
        line = line.split('#')[0].strip()
        if line.startswith('['):
            current = {'type': line.strip('[]')}
            sections.append(current)
        elif '=' in line:
            key, value = (s.strip() for s in line.split('=', 1))
            current[key] = value
    layers = []
    for index, section in enumerate(sections[1:]):
        if section['type'] == 'yolo':
            pairs = [float(v) for v in section['anchors'].split(',')]
            anchors = [pairs[2 * m:2 * m + 2] for m in map(int, section['mask'].split(','))]
            layers.append({'output': f'conv_{index - 1}', 'anchors': anchors, 'yolo': index})
    return {'type': 'darknet_yolo', 'num_classes': int(section['classes']), 'layers': layers}


@pytest.fixture(scope='module')
def darknet():
    if not hasattr(cv2.dnn, 'readNetFromDarknet'):
        pytest.skip('this OpenCV has no Darknet reader (removed in OpenCV 5); need OpenCV 4.x')
    cfg, weights, _ = assets.yolov3_tiny()
    return cv2.dnn.readNetFromDarknet(str(cfg), str(weights)), _darknet_head(cfg)


def test_darknet_yolo_decode_matches_opencv(darknet, photos):
    net, head = darknet
    blob = cv2.dnn.blobFromImage(photos['dog.jpg'], 1 / 255, (416, 416), swapRB=True)
    net.setInput(blob)
    names = [layer['output'] for layer in head['layers']]
    yolo_names = [f"yolo_{layer['yolo']}" for layer in head['layers']]
    assert set(yolo_names) == set(net.getUnconnectedOutLayersNames())
    results = dict(zip(names + yolo_names, net.forward(names + yolo_names)))
    for layer, yolo_name in zip(head['layers'], yolo_names):
        raw = results[layer['output']]
        layer['stride'] = 416 // raw.shape[3]
        boxes, obj, probs = heads.darknet_yolo_layer(raw, layer['anchors'],
                                                     layer['stride'], 80)
        theirs = results[yolo_name]   # rows (y, x, anchor): cx, cy, w, h (0..1), obj, probs
        np.testing.assert_allclose(boxes / 416, theirs[:, :4], atol=1e-4)
        np.testing.assert_allclose(obj, theirs[:, 4], atol=1e-5)
        scores = obj[:, None] * probs
        nonzero = theirs[:, 5:] > 0   # OpenCV zeroes class scores under its threshold
        np.testing.assert_allclose(scores[nonzero], theirs[:, 5:][nonzero], atol=1e-5)
        assert scores[~nonzero].max() < 0.25
    outputs = {name: results[name] for name in names}
    boxes, scores, ids = detect.decode(outputs, head, 0.25, 0.45)
    labels = detect.load_labels(assets.fetch('coco.names'))
    found = {labels[i] for i in ids}
    assert {'dog', 'bicycle'} <= found and found & {'car', 'truck'}
    # The same set as decoding OpenCV's own yolo outputs.
    rows = np.concatenate([results[n] for n in yolo_names])
    rows = np.concatenate([rows[:, :4] * 416, np.ones((len(rows), 1)), rows[:, 5:]], 1)
    want = detect.decode({'y': rows[None]}, {'type': 'yolov5', 'num_classes': 80}, 0.25, 0.45)
    assert ids.tolist() == want[2].tolist()
    np.testing.assert_allclose(boxes, want[0], atol=0.1)


def _darknet_get_yolo_boxes(raw, anchors, net_w, net_h, num_classes, conf):
    """Darknet's forward_yolo_layer + get_yolo_box, written out loop by loop (the oracle)."""
    def logistic(v):
        return 1.0 / (1.0 + np.exp(-float(v)))
    _, _, lh, lw = raw.shape
    rows = []
    for n, (anchor_w, anchor_h) in enumerate(anchors):
        entries = raw[0, n * (5 + num_classes):(n + 1) * (5 + num_classes)]
        for j in range(lh):
            for i in range(lw):
                objectness = logistic(entries[4, j, i])
                probs = [objectness * logistic(entries[5 + c, j, i])
                         for c in range(num_classes)]
                best = int(np.argmax(probs))
                if probs[best] < conf:
                    continue
                x = (i + logistic(entries[0, j, i])) / lw * net_w
                y = (j + logistic(entries[1, j, i])) / lh * net_h
                w = np.exp(entries[2, j, i]) * anchor_w
                h = np.exp(entries[3, j, i]) * anchor_h
                rows.append(([x - w / 2, y - h / 2, x + w / 2, y + h / 2], probs[best], best))
    return rows


def test_darknet_yolo_decode_matches_a_loop_decode_on_real_raw_maps(photos):
    """Raw maps from ONNX Runtime on the Darknet model exported to ONNX (any OpenCV)."""
    from tx2_infer_core.darknet import load_darknet
    from tx2_infer_core.onnx_export import to_onnx
    cfg, weights, names = assets.yolov3_tiny()
    graph = load_darknet(cfg, weights)
    head = graph.meta['head']
    session = ort.InferenceSession(to_onnx(graph).SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    tensor, _ = detect.preprocess(photos['dog.jpg'], (1, 3, 416, 416), {})
    outputs = dict(zip(graph.outputs, session.run(graph.outputs, {graph.inputs[0]: tensor})))
    rows = [row for layer in head['layers']
            for row in _darknet_get_yolo_boxes(outputs[layer['output']], layer['anchors'],
                                               416, 416, 80, 0.25)]
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b, _, _ in rows]
    kept = cv2.dnn.NMSBoxesBatched(xywh, [s for _, s, _ in rows], [c for _, _, c in rows],
                                   0.25, 0.45)
    want = sorted((rows[k] for k in np.asarray(kept, int).reshape(-1)), key=lambda r: -r[1])
    boxes, scores, ids = detect.decode(outputs, head, 0.25, 0.45)
    assert ids.tolist() == [c for _, _, c in want]
    np.testing.assert_allclose(scores, [s for _, s, _ in want], rtol=1e-5)
    np.testing.assert_allclose(boxes, [b for b, _, _ in want], atol=1e-2)
    labels = detect.load_labels(names)
    found = {labels[i] for i in ids}
    assert {'dog', 'bicycle'} <= found and found & {'car', 'truck'}


# --- NMS exactly at the IoU threshold --------------------------------------------------------
# The rule (ONNX NonMaxSuppression, torchvision, Darknet, kernels/yolo.cu): a box is suppressed
# when its IoU with a kept box is ABOVE the threshold; at exactly the threshold it stays.
# Integer boxes whose IoU is exact in binary: 100/200 = 0.5, 100/400 = 0.25, 300/400 = 0.75.

def _exact_nms(boxes, scores, threshold):
    """Brute force in exact rationals (no float rounding): kept indices, best score first."""
    from fractions import Fraction

    def iou(a, b):
        a, b = [Fraction(float(v)) for v in a], [Fraction(float(v)) for v in b]
        iw = max(Fraction(0), min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(Fraction(0), min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / union

    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[k], boxes[i]) <= Fraction(float(threshold)) for k in kept):
            kept.append(i)
    return kept


A, B = [0, 0, 10, 10], [0, 0, 10, 20]                   # IoU 100/200 = 0.5


@pytest.mark.parametrize('first, other, threshold, suppressed', [
    (A, B, 0.5, False),                                  # IoU == threshold: kept
    (A, [0, 0, 20, 20], 0.25, False),
    ([0, 0, 30, 10], [0, 0, 40, 10], 0.75, False),
    (A, B, np.nextafter(0.5, 0), True),                  # threshold a hair below the IoU
    (A, B, np.nextafter(0.5, 1), False),                 # a hair above
    (A, [0, 0, 10, 20 - 1e-6], 0.5, True),               # IoU just above 0.5
    (A, [0, 0, 10, 20 + 1e-6], 0.5, False),              # IoU just below 0.5
])
def test_nms_at_the_iou_threshold(first, other, threshold, suppressed):
    boxes, scores = np.array([first, other], np.float64), np.array([0.9, 0.8])
    for pair in (boxes, boxes[::-1]):                    # either box may be the better one
        kept = detect.nms(pair, scores, [3, 3], threshold)
        assert kept.tolist() == _exact_nms(pair, scores, threshold)
        assert kept.tolist() == ([0] if suppressed else [0, 1])
    assert detect.nms(boxes, scores, [3, 4], threshold).tolist() == [0, 1]    # other class
