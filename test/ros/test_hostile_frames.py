"""Frames a glitching camera sends, through the real node (own process, real DDS): each is
dropped and counted, and the next good frame is answered (the worker never dies)."""
import cv2
import numpy as np
import pytest

from rospeer import T, active_node, free_domain_id
from sensor_msgs.msg import CompressedImage, Image

from tx2_infer_core import assets
from tx2_infer_ros import conversions as conv

DOMAIN = free_domain_id()


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_hostile')) as p:
        p.jpeg_pub = p.node.create_publisher(CompressedImage, 'image/compressed', 10)
        yield p


@pytest.fixture(scope='module')
def dog():
    return cv2.imread(str(assets.fetch('dog.jpg')))


def answered(peer, msg, publisher, frame_id):
    """Publish ``msg`` as ``frame_id``; True when the node publishes detections for it."""
    msg.header.frame_id = frame_id
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    publisher.publish(msg)
    return peer.wait_for(lambda: any(m.header.frame_id == frame_id and m.detections
                                     for m, _ in peer.detections), timeout=30)


def dropped(peer, cause) -> int:
    return int(peer.diag_values().get(f'dropped_{cause}', 0))


def test_odd_width_yuv422_then_a_good_frame(peer, dog):
    for k, encoding in enumerate(('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')):
        bad = Image(height=480, width=641, step=1282, encoding=encoding, data=bytes(480 * 1282))
        bad.header.frame_id = f'odd{k}'
        peer.image_pub.publish(bad)
        peer.spin_for(0.3)
    assert answered(peer, conv.fill_image(Image(), dog, 'bgr8'), peer.image_pub, 'good_raw')
    assert peer.wait_for(lambda: dropped(peer, 'size') >= 1, 5), peer.diag_values()


def test_huge_jpeg_and_png_headers_then_a_good_frame(peer, dog):
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    assert peer.set_params(input_type='compressed')[0].successful
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    peer.spin_for(1.0)  # let the new subscription match
    before = dropped(peer, 'size')
    small = np.full((8, 8, 3), 127, np.uint8)
    for fmt in ('jpeg', 'png'):
        data = bytearray(conv.fill_compressed(CompressedImage(), small, fmt).data)
        if fmt == 'png':
            data[16:24] = (40000).to_bytes(4, 'big') * 2
        else:
            sof = data.index(b'\xff\xc0')
            data[sof + 5:sof + 9] = (32000).to_bytes(2, 'big') * 2
        peer.jpeg_pub.publish(CompressedImage(format=fmt, data=bytes(data)))
        peer.spin_for(0.3)
    good = conv.fill_compressed(CompressedImage(), dog, 'jpeg')
    assert answered(peer, good, peer.jpeg_pub, 'good_jpeg')
    assert peer.wait_for(lambda: dropped(peer, 'size') >= before + 2, 5), peer.diag_values()
