"""A pose model (YOLO11n-pose, 640x640, cpu backend) through the real node (own process, real
DDS on loopback): each person's keypoints in the published Detection2DArray ('keypoint/<index>'
hypotheses after the class, README) against the oracle, a ``Detector`` on the same model and
photo in this process; the skeletons on the annotated image; ``keypoint_threshold`` live."""
import cv2
import numpy as np
import pytest

from rospeer import active_node, free_domain_id
from sensor_msgs.msg import Image

from tx2_infer_core import assets
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine
from tx2_infer_ros import conversions as conv
from tx2_infer_ros import params

DOMAIN = free_domain_id()
PHOTOS = ('bus.jpg', 'zidane.jpg')


@pytest.fixture(scope='module')
def model_path():
    return str(assets.yolo11n_pose_onnx())


@pytest.fixture(scope='module')
def peer(tmp_path_factory, model_path):
    args = ['-p', f'model_path:={model_path}', '-p', 'publish_annotated:=true']
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_pose'), args) as p:
        p.annotated = []
        p.node.create_subscription(Image, 'annotated_image', p.annotated.append, 10)
        p.count = 0
        yield p


@pytest.fixture(scope='module')
def oracle(model_path):
    engine = Engine.build_cached(model_path, backend='cpu')
    yield Detector(engine)
    engine.close()


@pytest.fixture(scope='module')
def photos():
    return {name: cv2.imread(str(assets.fetch(name))) for name in PHOTOS}


def red(pixel) -> bool:
    """A keypoint dot's colour (draw_pose.draw_keypoints: BGR (0, 0, 255), anti-aliased)."""
    b, g, r = (int(v) for v in pixel)
    return r >= 200 and g <= 60 and b <= 60


def roundtrip(peer, image):
    """Publish ``image`` (bgr8) with a unique frame_id -> (Detection2DArray, annotated Image)."""
    peer.count += 1
    msg = conv.fill_image(Image(), image, 'bgr8')
    msg.header.frame_id = f'pose{peer.count}'
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    peer.image_pub.publish(msg)

    def found(items):
        return [m for m in items if m.header.frame_id == msg.header.frame_id]
    assert peer.wait_for(lambda: found(m for m, _ in peer.detections) and
                         found(peer.annotated), timeout=60), 'no answer'
    return found(m for m, _ in peer.detections)[0], found(peer.annotated)[0]


def expected_keypoints(det, threshold):
    return [(k, float(x), float(y), float(v)) for k, (x, y, v) in enumerate(det.keypoints)
            if v >= threshold]


def assert_same_people(got, dets, threshold):
    assert len(got) == len(dets) >= 2
    for g, e in zip(got, dets):
        assert g['class_id'] == 0 and g['score'] == pytest.approx(e.score, abs=1e-4)
        np.testing.assert_allclose([g['x1'], g['y1'], g['x2'], g['y2']],
                                   [e.x1, e.y1, e.x2, e.y2], atol=1e-2)
        want = expected_keypoints(e, threshold)
        assert [k[0] for k in g['keypoints']] == [k[0] for k in want]
        np.testing.assert_allclose(np.array(g['keypoints'], ndmin=2)[:, 1:],
                                   np.array(want, ndmin=2)[:, 1:], atol=1e-3)


@pytest.mark.parametrize('name', PHOTOS)
def test_published_keypoints_equal_the_detector(peer, oracle, photos, name):
    msg, _ = roundtrip(peer, photos[name])
    dets = oracle.detect(photos[name])
    assert_same_people(conv.detections_from_array(msg), dets, 0.5)
    for d in msg.detections:     # the class first, then only keypoints, each with z 0
        assert d.results[0].hypothesis.class_id == '0'
        assert all(r.hypothesis.class_id.startswith('keypoint/') and
                   r.pose.pose.position.z == 0.0 for r in d.results[1:])
    assert sum(len(d.results) - 1 for d in msg.detections) >= 5 * len(dets)


def test_annotated_image_has_a_dot_on_every_published_keypoint(peer, photos):
    image = photos['zidane.jpg']
    msg, annotated = roundtrip(peer, image)
    drawn = np.frombuffer(bytes(annotated.data), np.uint8).reshape(image.shape)
    height, width = image.shape[:2]
    points = [k for d in conv.detections_from_array(msg) for k in d['keypoints']
              if round(k[1]) < width and round(k[2]) < height]   # the edge: clipped, off-image
    assert len(points) >= 10
    for _, x, y, _ in points:
        col, row = int(round(x)), int(round(y))
        assert red(drawn[row, col]), (x, y, drawn[row, col])
    assert sum(not red(image[int(round(y)), int(round(x))]) for _, x, y, _ in points) \
        >= len(points) - 1


def test_keypoint_threshold_is_live_and_validated(peer, oracle, photos):
    image = photos['bus.jpg']
    try:
        assert peer.set_params(keypoint_threshold=0.0)[0].successful
        msg, _ = roundtrip(peer, image)
        assert all(len(d.results) == 1 + 17 for d in msg.detections)
        assert_same_people(conv.detections_from_array(msg), oracle.detect(image), 0.0)
        assert peer.set_params(keypoint_threshold=0.9)[0].successful
        assert_same_people(conv.detections_from_array(roundtrip(peer, image)[0]),
                           oracle.detect(image), 0.9)
        bad = peer.set_params(keypoint_threshold=1.5)[0]
        assert not bad.successful and 'keypoint_threshold out of range' in bad.reason
        assert params.validate('keypoint_threshold', -0.1) == \
            'keypoint_threshold must be in [0.0, 1.0], got -0.1'
        assert not peer.set_params(keypoint_threshold='high')[0].successful
        assert_same_people(conv.detections_from_array(roundtrip(peer, image)[0]),
                           oracle.detect(image), 0.9)      # unchanged by the refusals
    finally:
        peer.set_params(keypoint_threshold=0.5)
