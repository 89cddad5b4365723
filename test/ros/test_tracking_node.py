"""Track IDs through the real node (own process, own ROS_DOMAIN_ID): the same photo shifted a
few pixels a frame keeps its IDs; /diagnostics counts the tracks; cleanup resets the trackers;
``track: false`` leaves ``Detection2D.id`` empty."""
import cv2
import numpy as np
import pytest

from rospeer import T, active_node, free_domain_id
from sensor_msgs.msg import Image

from tx2_infer_core import assets
from tx2_infer_core.tracking import iou_matrix
from tx2_infer_ros import conversions as conv

DOMAIN = free_domain_id()
SHIFT = 3  # pixels a frame, to the right


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_tracking')) as p:
        p.count = 0
        yield p


@pytest.fixture(scope='module')
def dog():
    return cv2.imread(str(assets.fetch('dog.jpg')))


def shifted(image, dx):
    """``image`` moved ``dx`` pixels to the right (edge pixels repeated)."""
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def tracked(peer, image):
    """Publish ``image``; the node's detections for it: [(track id, class id, box)]."""
    peer.count += 1
    msg = conv.fill_image(Image(), image)
    msg.header.frame_id = f'frame{peer.count}'
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    peer.image_pub.publish(msg)

    def found():
        return [m for m, _ in peer.detections if m.header.frame_id == msg.header.frame_id]
    assert peer.wait_for(found, timeout=30), f'no detections for {msg.header.frame_id}'
    return [(d.id, int(d.results[0].hypothesis.class_id), box)
            for d, box in zip(found()[0].detections, conv.detections_from_array(found()[0]))]


def test_shifted_photo_keeps_its_track_ids(peer, dog):
    """Six frames moving right; in frame 2 the first track's object is painted over (lost for
    a frame): it comes back with its ID, and the others keep theirs meanwhile."""
    first = {t: box for t, _, box in tracked(peer, dog) if t}
    assert len(first) >= 2 and sorted(map(int, first)) == list(range(1, len(first) + 1))
    hidden = first['1']
    for k in range(1, 6):
        image = shifted(dog, SHIFT * k)
        if k == 2:
            x1, y1 = int(hidden['x1']) + SHIFT * k, int(hidden['y1'])
            image[y1:int(hidden['y2']), x1:int(hidden['x2']) + SHIFT * k] = 127
        now = {t: box for t, _, box in tracked(peer, image) if t}
        assert set(now) <= set(first) and (k == 2 or set(now) == set(first)), (k, now, first)
        for track, box in now.items():  # the class may flip (truck, car): not checked
            # Same object: its box overlaps where the first frame's box has moved to (the
            # detector's boxes jitter; the truck and car boxes of this photo overlap < 0.3).
            was = first[track]
            moved = [was['x1'] + SHIFT * k, was['y1'], was['x2'] + SHIFT * k, was['y2']]
            iou = iou_matrix([[box[c] for c in ('x1', 'y1', 'x2', 'y2')]], [moved])[0, 0]
            assert iou > 0.6, (k, track, box, was)
    assert peer.wait_for(lambda: peer.diag_values().get('active_tracks') == str(len(first)),
                         timeout=10), peer.diag_values()


def test_cleanup_resets_the_trackers(peer, dog):
    before = [t for t, _, _ in tracked(peer, dog) if t]
    for transition in (T.TRANSITION_DEACTIVATE, T.TRANSITION_CLEANUP, T.TRANSITION_CONFIGURE,
                       T.TRANSITION_ACTIVATE):
        assert peer.change_state(transition)
    # cleanup destroyed the node's subscription and publisher: a frame published before the
    # new ones are matched is dropped (reliable, volatile), so wait for both
    assert peer.wait_reliable_readers([peer.image_pub])
    assert peer.wait_for(lambda: len(peer.node.get_publishers_info_by_topic('detections')) == 1)
    peer.spin_for(0.3)
    # The photo mirrored: no old track fits, so every box starts a track; IDs from 1 again.
    after = [int(t) for t, _, _ in tracked(peer, cv2.flip(dog, 1)) if t]
    assert before and sorted(after) == list(range(1, len(after) + 1))


def test_track_false_leaves_ids_empty(peer, dog):
    assert peer.set_params(track=False)[0].successful
    try:
        ids = [t for t, _, _ in tracked(peer, dog)]
        assert ids and ids == [''] * len(ids)
    finally:
        assert peer.set_params(track=True)[0].successful
    bad = peer.set_params(track_buffer=0)[0]
    assert not bad.successful and 'track_buffer' in bad.reason
