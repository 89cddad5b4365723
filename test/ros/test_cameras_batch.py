"""Several cameras, one batch: three real publishers (own topics, real DDS) into the real node
built for a batch of 4 (cpu backend, YOLOv3-tiny). Frames of the cameras that arrive together
run as one batch; each camera's detections equal the single-frame oracle (a batch-1 Detector)
for its own photo and carry its own header; every frame is accounted for
(received = answered + stale + causes, node and each camera)."""
import cv2
import numpy as np
import pytest

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rospeer import T, Peer, free_domain_id, start_node, stop_node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_infer_core import assets, detect
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine
from tx2_infer_ros import conversions as conv
from tx2_infer_ros.stats import DROP_CAUSES

DOMAIN = free_domain_id()
NAMES = ('front', 'rear', 'left')
PHOTOS = {'front': 'dog.jpg', 'rear': 'bus.jpg', 'left': 'horses.jpg'}


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    logs = tmp_path_factory.mktemp('ros_cameras_batch')
    cameras = ','.join(f'{n}/image_raw' for n in NAMES)
    proc = start_node(DOMAIN, logs, args=['-p', 'backend:=cpu', '-p', 'batch:=4',
                                          '-p', 'batch_wait_ms:=200.0', '-p', 'track:=false',
                                          '-p', f'cameras:=[{cameras}]'])
    p = Peer(DOMAIN, logs)
    p.ready()
    assert p.change_state(T.TRANSITION_CONFIGURE) and p.change_state(T.TRANSITION_ACTIVATE)
    p.got = {name: [] for name in NAMES}
    for name, got in p.got.items():
        p.node.create_subscription(Detection2DArray, f'{name}/detections', got.append, 100)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    p.pubs = {name: p.node.create_publisher(Image, f'{name}/image_raw', qos) for name in NAMES}
    assert p.wait_reliable_readers(p.pubs.values())
    yield p
    p.close()
    assert stop_node(proc) == 0, (logs / 'det.log').read_text()[-3000:]


@pytest.fixture(scope='module')
def photos():
    return {n: cv2.resize(cv2.imread(str(assets.fetch(p))), (640, 480))
            for n, p in PHOTOS.items()}


@pytest.fixture(scope='module')
def oracle():
    """The single-frame path: a batch-1 engine of the same model, same backend."""
    cfg, _, names = assets.yolov3_tiny()
    detector = Detector(Engine.build_cached(str(cfg), backend='cpu'),
                        labels=detect.load_labels(names))
    return lambda image: detector.detect(image, DetectParams())


def statuses(peer):
    """{status name: values} of the latest diagnostics array with camera statuses."""
    for array in reversed(peer.diagnostics):
        found = {s.name: {kv.key: kv.value for kv in s.values} for s in array.status}
        if any(': camera ' in name for name in found):
            return found
    return {}


def counts(values):
    out = {'received': int(values.get('received', 0)), 'frames': int(values.get('frames', 0))}
    out.update({c: int(values.get(f'dropped_{c}', 0)) for c in DROP_CAUSES})
    return out


def publish_round(peer, photos, tag):
    """One frame of each camera, back to back; -> {camera: header}."""
    headers = {}
    for name in NAMES:
        msg = conv.fill_image(Image(), photos[name], 'bgr8')
        msg.header.frame_id = f'{name}_{tag}'
        msg.header.stamp = peer.node.get_clock().now().to_msg()
        peer.pubs[name].publish(msg)
        headers[name] = msg.header
    return headers


def answer(peer, name, header):
    found = [m for m in peer.got[name] if m.header.frame_id == header.frame_id]
    return found[0] if found else None


def test_each_camera_gets_the_oracle_detections_of_its_photo_with_its_header(peer, photos,
                                                                             oracle):
    for rnd in range(3):
        headers = publish_round(peer, photos, f'r{rnd}')
        assert peer.wait_for(lambda: all(answer(peer, n, h) for n, h in headers.items()),
                             timeout=30), rnd
        for name, header in headers.items():
            msg = answer(peer, name, header)
            assert msg.header == header
            got, want = conv.detections_from_array(msg), oracle(photos[name])
            assert len(got) == len(want) > 0, name
            for g, e in zip(got, want):
                assert g['class_id'] == e.class_id and g['score'] == pytest.approx(e.score,
                                                                                   abs=1e-3)
                np.testing.assert_allclose([g['x1'], g['y1'], g['x2'], g['y2']],
                                           [e.x1, e.y1, e.x2, e.y2], atol=1.0)
    for name, msgs in peer.got.items():
        assert all(m.header.frame_id.startswith(name) for m in msgs)


def test_frames_run_as_batches_and_are_all_accounted_for(peer, photos):
    assert peer.wait_for(lambda: statuses(peer), timeout=5)
    node_name = next(n for n in statuses(peer) if ': camera ' not in n)
    peer.spin_for(2.2)                        # diagnostics (1 Hz) past the earlier frames
    before = statuses(peer)[node_name]
    sent = 0
    for k in range(8):                        # faster than the node: some frames go stale
        publish_round(peer, photos, f'flood{k}')
        sent += len(NAMES)
        peer.spin_for(0.01)

    def settled():
        values = counts(statuses(peer).get(node_name, {}))
        return (values['received'] >= counts(before)['received'] + sent and
                values['received'] == values['frames'] + sum(values[c] for c in DROP_CAUSES))
    assert peer.wait_for(settled, timeout=60), statuses(peer)
    peer.spin_for(1.2)
    now = statuses(peer)
    node = counts(now[node_name])
    assert node['received'] - counts(before)['received'] == sent
    for name in NAMES:
        cam = counts(now[f'{node_name.split(":")[0]}: camera {name}/image_raw'])
        assert cam['received'] == cam['frames'] + sum(cam[c] for c in DROP_CAUSES), name
        answered = [m for m in peer.got[name] if 'flood' in m.header.frame_id]
        assert cam['frames'] >= len(answered) > 0, name
    info = now[node_name]
    assert info['batch'] == '4' and 0 < int(info['batches']) < node['frames']   # shared runs
    # 3 cameras in a batch of 4: at least one slot of every batch is padded
    assert int(info['padded_slots']) >= int(info['batches'])
