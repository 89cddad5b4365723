"""qos_reliability auto (the default) against real publishers over real DDS: the node's image
subscription, as the ROS graph reports it, follows the publishers (best_effort while none is
known, reliable for a reliable camera, best_effort for a best-effort one), and frames arrive."""
import numpy as np
import pytest

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rospeer import T, Peer, free_domain_id, start_node, stop_node
from sensor_msgs.msg import Image

from tx2_infer_ros import conversions as conv
from tx2_infer_ros.qos import matching_reliability

DOMAIN = free_domain_id()
RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT


def test_matching_reliability_is_what_ros2_topic_echo_picks():
    assert matching_reliability([]) == 'best_effort'
    assert matching_reliability(['reliable', 'reliable']) == 'reliable'
    assert matching_reliability(['reliable', 'best_effort']) == 'best_effort'
    assert matching_reliability(['best_effort']) == 'best_effort'


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    logs = tmp_path_factory.mktemp('ros_qos')
    proc = start_node(DOMAIN, logs, args=['-p', 'backend:=cpu', '-p', 'input_size:=160'])
    p = Peer(DOMAIN, logs)
    p.ready()
    assert p.get_params('qos_reliability')[0].string_value == 'auto'
    assert p.change_state(T.TRANSITION_CONFIGURE) and p.change_state(T.TRANSITION_ACTIVATE)
    yield p
    p.close()
    assert stop_node(proc) == 0, (logs / 'det.log').read_text()[-3000:]


def node_reliability(peer):
    """The reliability of the detector's image subscription, from the ROS graph."""
    subs = [i for i in peer.node.get_subscriptions_info_by_topic('/image')
            if i.node_name == 'det']
    return subs[0].qos_profile.reliability if len(subs) == 1 else None


def frames_arrive(peer, publisher, count=3):
    image = np.zeros((480, 640, 3), np.uint8)
    for i in range(count):
        msg = conv.fill_image(Image(), image, 'bgr8')
        msg.header.frame_id = f'{publisher.qos_profile.reliability.name}{i}'
        publisher.publish(msg)
        assert peer.wait_for(lambda: any(m.header.frame_id == msg.header.frame_id
                                         for m, _ in peer.detections), timeout=10), i


def test_auto_follows_the_publishers(peer):
    assert peer.wait_for(lambda: node_reliability(peer) == BEST_EFFORT, timeout=10)
    for policy in (RELIABLE, BEST_EFFORT, RELIABLE):
        pub = peer.node.create_publisher(Image, 'image', QoSProfile(depth=1, reliability=policy))
        try:
            assert peer.wait_for(lambda: node_reliability(peer) == policy, timeout=10), policy
            assert peer.wait_for(lambda: pub.get_subscription_count() == 1, timeout=10)
            frames_arrive(peer, pub)
            assert peer.wait_for(lambda: peer.diag_values().get('image_reliability') ==
                                 policy.name.lower(), timeout=5)
        finally:
            peer.node.destroy_publisher(pub)
    peer.spin_for(2.0)  # no publisher left: the subscription stays as it was
    assert node_reliability(peer) == RELIABLE
