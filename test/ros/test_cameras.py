"""Several cameras, one engine: two real publishers (own topics, real DDS) into the real node;
each camera's detections arrive on its own topic with its own header, a busy camera does not
starve the other, and /diagnostics has a status per camera."""
import numpy as np
import pytest

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rospeer import T, Peer, free_domain_id, start_node, stop_node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_infer_ros import conversions as conv

DOMAIN = free_domain_id()
CAMERAS = ('front/image_raw', 'rear/image_raw')


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    logs = tmp_path_factory.mktemp('ros_cameras')
    proc = start_node(DOMAIN, logs, args=['-p', 'backend:=cpu', '-p', 'input_size:=160',
                                          '-p', f"cameras:=[{','.join(CAMERAS)}]"])
    p = Peer(DOMAIN, logs)
    p.ready()
    assert p.change_state(T.TRANSITION_CONFIGURE) and p.change_state(T.TRANSITION_ACTIVATE)
    p.got = {name: [] for name in ('front', 'rear')}
    for name, got in p.got.items():
        p.node.create_subscription(Detection2DArray, f'{name}/detections', got.append, 100)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    p.pubs = {name: p.node.create_publisher(Image, f'{name}/image_raw', qos)
              for name in ('front', 'rear')}
    assert p.wait_reliable_readers(p.pubs.values())
    yield p
    p.close()
    assert stop_node(proc) == 0, (logs / 'det.log').read_text()[-3000:]


def frame(peer, frame_id):
    msg = conv.fill_image(Image(), np.full((240, 320, 3), 90, np.uint8), 'bgr8')
    msg.header.frame_id = frame_id
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    return msg


def frame_ids(msgs):
    return [m.header.frame_id for m in msgs]


def test_each_camera_gets_its_detections_with_its_header(peer):
    for i in range(3):
        for name in ('front', 'rear'):
            msg = frame(peer, f'{name}_{i}')
            peer.pubs[name].publish(msg)
            assert peer.wait_for(lambda: msg.header.frame_id in frame_ids(peer.got[name]),
                                 timeout=10), (name, i)
            answer = next(m for m in peer.got[name] if m.header.frame_id == msg.header.frame_id)
            assert answer.header == msg.header
    for name, msgs in peer.got.items():
        assert all(f.startswith(name) for f in frame_ids(msgs)), (name, frame_ids(msgs))


def test_a_busy_camera_does_not_starve_the_other(peer):
    for i in range(20):  # front floods, rear sends one frame in five
        peer.pubs['front'].publish(frame(peer, f'front_burst_{i}'))
        if i % 5 == 0:
            peer.pubs['rear'].publish(frame(peer, f'rear_burst_{i}'))
        peer.spin_for(0.01)
    assert peer.wait_for(lambda: 'rear_burst_15' in frame_ids(peer.got['rear']), timeout=15)
    rear = [f for f in frame_ids(peer.got['rear']) if 'burst' in f]
    assert len(rear) >= 2, rear  # the rear camera's frames were served between front frames


def test_diagnostics_per_camera(peer):
    def statuses():
        for array in reversed(peer.diagnostics):
            found = {s.name: {kv.key: kv.value for kv in s.values} for s in array.status
                     if s.name.startswith('det: camera ')}
            if found:
                return found
        return {}
    assert peer.wait_for(lambda: len(statuses()) == 2 and all(
        int(v['frames']) >= 3 and v['image_reliability'] == 'reliable'
        for v in statuses().values()), timeout=5), statuses()
    for topic in CAMERAS:
        values = statuses()[f'det: camera {topic}']
        assert values['topic'] == topic and values['image_reliability'] == 'reliable'
        assert float(values['latency_p50_ms']) > 0 and 'dropped_stale' in values
    assert peer.diag_values()['cameras'] == '2'


def test_cameras_refused_while_active_and_checked(peer):
    refused = peer.set_params(cameras=['left/image_raw'])[0]
    assert not refused.successful and 'deactivate' in refused.reason
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    try:
        same = peer.set_params(cameras=['cam/left', 'cam/right'])[0]
        assert not same.successful and "'cam/detections'" in same.reason
    finally:
        assert peer.change_state(T.TRANSITION_ACTIVATE)
