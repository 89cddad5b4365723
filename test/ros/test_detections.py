"""Real images through the real node (own process, real DDS on loopback) against the oracle:
a ``Detector`` on the same engine and the same photo, in this process."""
import cv2
import numpy as np
import pytest

from rospeer import T, active_node, free_domain_id
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs import msg as vision_msgs

from tx2_infer_core import assets, detect
from tx2_infer_core.detect_params import DEFAULTS, DetectParams
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine, resolve_backend
from tx2_infer_ros import conversions as conv

DOMAIN = free_domain_id()
ENCODINGS = ['bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'mono16', 'yuv422', 'yuv422_yuy2']


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_detections')) as p:
        p.jpeg_pub = p.node.create_publisher(CompressedImage, 'image/compressed', 10)
        p.annotated = []
        p.node.create_subscription(Image, 'annotated_image', p.annotated.append, 10)
        p.count = 0
        yield p


@pytest.fixture(scope='module')
def oracle():
    cfg, _, names = assets.yolov3_tiny()
    engine = Engine.build_cached(str(cfg), backend='cpu')
    detector = Detector(engine, labels=detect.load_labels(names))
    return lambda image, **kw: detector.detect(image, DetectParams(**kw))


@pytest.fixture(scope='module')
def dog():
    return cv2.imread(str(assets.fetch('dog.jpg')))


def roundtrip(peer, msg, publisher=None):
    """Publish ``msg`` with a unique frame_id; the node's detections for it (as dicts)."""
    peer.count += 1
    msg.header.frame_id = f'frame{peer.count}'
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    (publisher or peer.image_pub).publish(msg)

    def found():
        return [m for m, _ in peer.detections if m.header.frame_id == msg.header.frame_id]
    assert peer.wait_for(found, timeout=30), f'no detections for {msg.header.frame_id}'
    return conv.detections_from_array(found()[0])


def assert_same(got, expected, tol=1.0):
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g['class_id'] == e.class_id
        assert g['score'] == pytest.approx(e.score, abs=1e-3)
        np.testing.assert_allclose([g['x1'], g['y1'], g['x2'], g['y2']],
                                   [e.x1, e.y1, e.x2, e.y2], atol=tol)


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_every_encoding_matches_the_detector(peer, oracle, dog, encoding):
    msg = conv.fill_image(Image(), dog, encoding, row_padding=0 if encoding == 'bgr8' else 8)
    if encoding.startswith('mono'):
        expected_image = cv2.cvtColor(cv2.cvtColor(dog, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    elif encoding.startswith('yuv'):
        code = 'UYVY' if encoding == 'yuv422' else 'YUY2'
        yuv = cv2.cvtColor(dog, getattr(cv2, 'COLOR_BGR2YUV_' + code))
        expected_image = cv2.cvtColor(yuv, getattr(cv2, 'COLOR_YUV2BGR_' + code))
    else:
        expected_image = dog
    got = roundtrip(peer, msg)
    assert_same(got, oracle(expected_image))
    # Boxes are in original pixels: the dog photo's dog (COCO 16) sits in its lower left.
    dogs = [d for d in got if d['class_id'] == 16]
    assert dogs and dogs[0]['x1'] < 200 and dogs[0]['y2'] > 450 and dogs[0]['x2'] <= 768


def test_other_photos_match_the_detector(peer, oracle):
    for name in ('bus.jpg', 'horses.jpg', 'person.jpg'):
        photo = cv2.imread(str(assets.fetch(name)))
        assert_same(roundtrip(peer, conv.fill_image(Image(), photo, 'rgb8')), oracle(photo))


def test_detection_array_fields(peer, dog):
    peer.count += 1
    roundtrip(peer, conv.fill_image(Image(), dog, 'bgr8'))
    msg = peer.detections[-1][0]
    assert isinstance(msg, vision_msgs.Detection2DArray)
    det = msg.detections[0]
    assert det.header == msg.header and len(det.results) == 1
    # A model without keypoints: exactly the class hypothesis on every detection.
    assert len(msg.detections) >= 2 and all(len(d.results) == 1 for d in msg.detections)
    assert all(d['keypoints'] == [] for d in conv.detections_from_array(msg))
    assert det.bbox.size_x > 0 and det.bbox.size_y > 0 and det.bbox.center.theta == 0.0


def test_frame_timing_matches_the_detections_by_stamp(peer, dog):
    timings = []
    peer.node.create_subscription(DiagnosticArray, '/det/frame_timing', timings.append, 10)
    assert peer.set_params(publish_timing=True)[0].successful
    try:
        peer.spin_for(0.5)  # let the subscription match
        roundtrip(peer, conv.fill_image(Image(), dog, 'bgr8'))
        header = peer.detections[-1][0].header
        assert peer.wait_for(lambda: any(t.header == header for t in timings), timeout=10)
        timing = next(t for t in timings if t.header == header).status[0]
        values = {kv.key: float(kv.value) for kv in timing.values}
        stages = ('receive', 'wait', 'decode', 'preprocess', 'infer', 'postprocess', 'publish')
        assert all(values[f'{s}_ms'] >= 0 for s in stages[1:]), values
        assert values['infer_ms'] > 0 and values['detections'] == len(
            peer.detections[-1][0].detections)
        assert sum(values[f'{s}_ms'] for s in stages) <= values['latency_ms'] + 1.0
    finally:
        peer.set_params(publish_timing=False)


def test_parameters_change_the_next_frame(peer, oracle, dog):
    msg = conv.fill_image(Image(), dog, 'bgr8')
    try:
        assert peer.set_params(conf_threshold=0.5)[0].successful
        assert_same(roundtrip(peer, msg), oracle(dog, conf_threshold=0.5))
        assert peer.set_params(classes=['dog', '2'])[0].successful
        assert {d['class_id'] for d in roundtrip(peer, msg)} == {16, 2}
        bad = peer.set_params(classes=['unicorn'])[0]
        assert not bad.successful and "unknown class 'unicorn'" in bad.reason
        assert peer.set_params(classes=[], max_detections=1)[0].successful
        assert len(roundtrip(peer, msg)) == 1
        assert peer.set_params(publish_annotated=True)[0].successful
        roundtrip(peer, msg)
        assert peer.wait_for(lambda: peer.annotated, timeout=10)
        assert (peer.annotated[-1].height, peer.annotated[-1].width) == dog.shape[:2]
    finally:
        peer.set_params(conf_threshold=DEFAULTS.conf_threshold, classes=[],
                        max_detections=DEFAULTS.max_detections, publish_annotated=False)


def test_malformed_messages_are_counted_and_never_stop_the_node(peer, oracle, dog):
    bad = [Image(height=4, width=4, step=12, encoding='32FC1', data=bytes(48)),
           Image(height=480, width=640, step=1920, encoding='bgr8', data=bytes(1000)),
           Image(height=0, width=0, step=0, encoding='bgr8', data=b'')]
    for msg in bad:
        msg.header.frame_id = 'bad'
        peer.image_pub.publish(msg)
        peer.spin_for(0.3)
    assert_same(roundtrip(peer, conv.fill_image(Image(), dog, 'bgr8')), oracle(dog))

    def counted():
        return all(int(peer.diag_values().get(f'dropped_{c}', 0)) >= 1
                   for c in ('encoding', 'size', 'empty'))
    assert peer.wait_for(counted, timeout=5), peer.diag_values()
    values = peer.diag_values()
    for key in ('fps', 'decode_ms', 'preprocess_ms', 'infer_ms', 'postprocess_ms',
                'latency_p50_ms', 'backend', 'precision', 'model'):
        assert key in values, key
    assert values['backend'] == resolve_backend('cpu')      # ort, or numpy without it
    assert values['model'] == 'yolov3-tiny.cfg'
    assert values['precision'] == 'fp32' and values['frame_path'] == 'host'


def test_compressed_input_jpeg_and_garbage(peer, oracle, dog):
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    assert peer.set_params(input_type='compressed')[0].successful
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    peer.spin_for(1.0)  # let the new subscription match
    msg = conv.fill_compressed(CompressedImage(), dog, 'jpeg')
    decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    assert_same(roundtrip(peer, msg, peer.jpeg_pub), oracle(decoded))
    for data in (b'\xff\xd8not a jpeg' * 20, b''):
        peer.jpeg_pub.publish(CompressedImage(format='jpeg', data=data))
        peer.spin_for(0.3)
    assert_same(roundtrip(peer, msg, peer.jpeg_pub), oracle(decoded))
    assert peer.wait_for(lambda: int(peer.diag_values().get('dropped_decode', 0)) >= 1, 5)
