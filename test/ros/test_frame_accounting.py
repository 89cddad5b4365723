"""Every frame the node receives is accounted for, through the real node (own process, real
DDS): a known mix of good and malformed frames sent faster than the node answers ends with

    received = answered + dropped_stale + sum(dropped_<cause>)

in /diagnostics (node and camera), each malformed frame under its own cause (never 'stale':
the header checks run as a frame arrives) and every answered frame received as detections."""
import cv2
import numpy as np
import pytest

from rospeer import T, active_node, free_domain_id
from sensor_msgs.msg import CompressedImage, Image

from tx2_infer_core import assets
from tx2_infer_ros import conversions as conv
from tx2_infer_ros.stats import DROP_CAUSES

DOMAIN = free_domain_id()
PHOTOS = ('dog.jpg', 'bus.jpg', 'horses.jpg')
ROUNDS = 3


def raw_bad():
    """(message, cause) of malformed raw images, one per header problem."""
    def image(encoding, width, height, step, nbytes):
        return Image(encoding=encoding, width=width, height=height, step=step,
                     data=bytes(nbytes))
    return [(image('weird', 640, 480, 1920, 1920 * 480), 'encoding'),
            (image('bgr8', 0, 0, 0, 0), 'empty'),
            (image('yuv422', 641, 480, 1282, 1282 * 480), 'size'),
            (image('bgr8', 640, 480, 1920, 1000), 'size'),
            (image('bgr8', 640, 480, 100, 100 * 480), 'size'),
            (image('mono8', 100000, 100000, 100000, 16), 'size')]


def compressed_bad():
    """(message, cause) of malformed compressed images: no data, not JPEG/PNG, no size in
    the header, headers claiming a huge size."""
    small = np.full((8, 8, 3), 127, np.uint8)
    jpeg = bytearray(conv.fill_compressed(CompressedImage(), small, 'jpeg').data)
    sof = jpeg.index(b'\xff\xc0')
    jpeg[sof + 5:sof + 9] = (32000).to_bytes(2, 'big') * 2
    png = bytearray(conv.fill_compressed(CompressedImage(), small, 'png').data)
    png[16:24] = (40000).to_bytes(4, 'big') * 2
    return [(CompressedImage(format='jpeg', data=b''), 'empty'),
            (CompressedImage(format='jpeg', data=b'GIF89a' + bytes(40)), 'decode'),
            (CompressedImage(format='jpeg', data=b'\xff\xd8\xff\xd9' + bytes(20)), 'decode'),
            (CompressedImage(format='jpeg', data=bytes(jpeg)), 'size'),
            (CompressedImage(format='png', data=bytes(png)), 'size')]


@pytest.fixture(scope='module')
def photos():
    return [cv2.resize(cv2.imread(str(p)), (640, 480))
            for p in assets.fetch_photos(list(PHOTOS))]


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_accounting'),
                     args=['-p', 'publish_annotated:=false']) as p:
        p.raw_pub = p.node.create_publisher(Image, 'image', 500)
        p.jpeg_pub = p.node.create_publisher(CompressedImage, 'image/compressed', 500)
        yield p


def statuses(peer):
    """{'node': values, 'camera': values} of the latest diagnostics array."""
    for array in reversed(peer.diagnostics):
        out = {}
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            out['camera' if ': camera ' in status.name else 'node'] = values
        if 'node' in out:
            return out
    return {}


def counts(values) -> dict:
    out = {'received': int(values.get('received', 0)), 'frames': int(values.get('frames', 0))}
    out.update({c: int(values.get(f'dropped_{c}', 0)) for c in DROP_CAUSES})
    return out


def settled(values) -> bool:
    c = counts(values)
    return c['received'] == c['frames'] + sum(c[k] for k in DROP_CAUSES)


def send_mix(peer, publisher, good, bad, tag):
    """Each malformed frame between two good ones, ``ROUNDS`` times, the three back to back and
    4 ms between triples (faster than the node answers, however fast the machine: the second
    good frame replaces the first); -> (good sent, {cause: malformed sent})."""
    sent_good, causes, k = 0, dict.fromkeys(DROP_CAUSES, 0), 0
    for _ in range(ROUNDS):
        for msg, cause in bad:
            for item in (good[k % len(good)], msg, good[(k + 1) % len(good)]):
                item.header.frame_id = f'{tag}{k}'
                item.header.stamp = peer.node.get_clock().now().to_msg()
                publisher.publish(item)
                k += 1
            peer.spin_for(0.004)
            sent_good += 2
            causes[cause] += 1
    return sent_good, causes


def check_accounting(peer, before, sent_good, causes, tag):
    """Wait until the node has settled on every frame, then check the identity."""
    sent = sent_good + sum(causes.values())

    def done():
        values = statuses(peer).get('node', {})
        return (counts(values)['received'] >= before['received'] + sent and settled(values)
                and statuses(peer).get('camera') is not None)
    assert peer.wait_for(done, timeout=60), statuses(peer)
    peer.spin_for(1.2)      # one more diagnostics period: nothing else arrives
    now = statuses(peer)
    node, camera = counts(now['node']), counts(now['camera'])
    delta = {k: node[k] - before[k] for k in node}
    assert delta['received'] == sent, (delta, sent)
    for cause in DROP_CAUSES:
        if cause != 'stale':
            assert delta[cause] == causes[cause], (cause, delta, causes)
    assert delta['frames'] + delta['stale'] == sent_good, delta
    assert delta['stale'] > 0, f'frames never replaced: not faster than the node ({delta})'
    answered = [m for m, _ in peer.detections if m.header.frame_id.startswith(tag)]
    assert len(answered) == delta['frames'], (len(answered), delta)
    assert camera['received'] == camera['frames'] + sum(camera[c] for c in DROP_CAUSES)
    return node


def test_raw_frames_all_accounted_for(peer, photos):
    peer.wait_for(lambda: statuses(peer).get('node') is not None, timeout=5)
    before = counts(statuses(peer)['node'])
    good = [conv.fill_image(Image(), p, 'bgr8') for p in photos]
    sent_good, causes = send_mix(peer, peer.raw_pub, good, raw_bad(), 'raw')
    check_accounting(peer, before, sent_good, causes, 'raw')


def test_compressed_frames_all_accounted_for(peer, photos):
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    assert peer.set_params(input_type='compressed')[0].successful
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    peer.spin_for(1.5)  # the new subscription matches; a diagnostics period passes
    before = counts(statuses(peer)['node'])
    good = [conv.fill_compressed(CompressedImage(), p, 'jpeg') for p in photos]
    sent_good, causes = send_mix(peer, peer.jpeg_pub, good, compressed_bad(), 'jpg')
    check_accounting(peer, before, sent_good, causes, 'jpg')
