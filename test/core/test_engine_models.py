"""Acceptance: the numpy backend on three real models and real photos against ONNX Runtime FP32.

YOLOv3-tiny comes through our Darknet importer (ORT runs our ONNX export of it), YOLOv8 640 and
the ResNet-50-style classifier come through the ONNX importer. Outputs must agree to a relative
error <= 1e-4 and the decoded detection sets must be the same (classes equal, IoU >= 0.99).
"""
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tx2_infer_core import assets, detect
from tx2_infer_core.engine import Engine

PHOTOS = assets.PHOTOS[:8]
NSFW_FORMAT = {'color': 'BGR', 'layout': 'NHWC', 'scale': 1.0, 'mean': [104.0, 117.0, 123.0],
               'resize': 'stretch'}


def rel_error(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / np.linalg.norm(ref))


def iou(a, b):
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    area = lambda box: np.prod(box[2:] - box[:2])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def assert_same_detections(ours, ref, head):
    boxes_a, scores_a, cls_a = detect.decode(ours, head)
    boxes_b, scores_b, cls_b = detect.decode(ref, head)
    assert len(cls_a) == len(cls_b), (cls_a, cls_b)
    order_a, order_b = np.argsort(-scores_a), np.argsort(-scores_b)
    assert list(cls_a[order_a]) == list(cls_b[order_b])
    for i, j in zip(order_a, order_b):
        assert iou(boxes_a[i], boxes_b[j]) >= 0.99
    return len(cls_a)


def ort_session(path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def check_model(engine, session, input_format, photos, detections=True):
    spec = engine.input_specs[0]
    total = 0
    for name in photos:
        image = cv2.imread(str(assets.fetch(name)))
        tensor, _ = detect.preprocess(image, spec.shape, input_format)
        ours = engine.run({spec.name: tensor})
        ref = dict(zip(engine.graph.outputs, session.run(engine.graph.outputs,
                                                         {spec.name: tensor})))
        for out in engine.graph.outputs:
            err = rel_error(ours[out], ref[out])
            assert err <= 1e-4, f'{name} {out}: relative error {err:.2e}'
        if detections:
            total += assert_same_detections(ours, ref, engine.meta['head'])
    return total


@pytest.fixture(scope='module')
def yolov3_tiny(tmp_path_factory):
    from tx2_infer_core.onnx_export import save_onnx
    from tx2_infer_core.darknet import load_darknet
    cfg, weights, names = assets.yolov3_tiny()
    onnx_path = tmp_path_factory.mktemp('dn') / 'yolov3-tiny.onnx'
    save_onnx(load_darknet(cfg, weights), onnx_path)
    return Engine.build(cfg, weights_path=weights), ort_session(onnx_path)


def test_yolov3_tiny_darknet_matches_onnxruntime(yolov3_tiny):
    engine, session = yolov3_tiny
    found = check_model(engine, session, engine.meta['input_format'], PHOTOS)
    print(f'yolov3-tiny: {len(PHOTOS)} photos, {found} detections identical to ORT')
    assert found >= len(PHOTOS)


def test_yolov8_matches_onnxruntime():
    path = assets.fetch('yolov8-fall.onnx')
    engine = Engine.build(path)
    found = check_model(engine, ort_session(path), engine.meta['input_format'], PHOTOS)
    print(f'yolov8: {len(PHOTOS)} photos, {found} detections identical to ORT')
    assert found > 0


def test_resnet50_classifier_matches_onnxruntime():
    path = assets.fetch('open_nsfw.onnx')
    engine = Engine.build(path, input_shape=(1, 224, 224, 3))
    session = ort_session(path)
    check_model(engine, session, NSFW_FORMAT, PHOTOS, detections=False)
    for name in PHOTOS:
        tensor, _ = detect.preprocess(cv2.imread(str(assets.fetch(name))), (1, 224, 224, 3),
                                      NSFW_FORMAT)
        ours = engine.run(tensor)[engine.graph.outputs[0]]
        ref = session.run(None, {engine.graph.inputs[0]: tensor})[0]
        assert np.argmax(ours) == np.argmax(ref)
