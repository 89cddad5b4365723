"""tx2_infer_ros.cdr against rclpy's own serialisation on real photos: our bytes have
rclpy's length and deserialise (with rclpy) to the message rclpy serialises; rclpy's bytes
read back (with ours) to its fields. (Byte equality is too strict: Fast CDR leaves its
alignment padding uninitialised.)"""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rospeer  # noqa: F401  (vision_msgs from the dev workspace)
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs import msg as vision_msgs  # noqa: E402

from tx2_infer_core import assets  # noqa: E402
from tx2_infer_core.detect import Detection  # noqa: E402
from tx2_infer_ros import cdr  # noqa: E402
from tx2_infer_ros import conversions as conv  # noqa: E402


def header(sec=1712, nanosec=345678901, frame_id='camera_optical_frame'):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


@pytest.fixture(scope='module')
def photo():
    return cv2.imread(str(assets.fetch('dog.jpg')))


@pytest.mark.parametrize('encoding,channels', [('bgr8', 3), ('mono8', 1), ('bgra8', 4)])
@pytest.mark.parametrize('frame_id', ['', 'cam', 'camera_optical_frame'])
def test_image_bytes_equal_rclpy(photo, encoding, channels, frame_id):
    pixels = photo[:, :, 0] if channels == 1 else (
        cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA) if channels == 4 else photo)
    msg = Image(header=header(frame_id=frame_id), height=pixels.shape[0],
                width=pixels.shape[1], encoding=encoding, step=pixels[0].nbytes,
                data=pixels.tobytes())
    ours = cdr.image_bytes(1712, 345678901, frame_id, pixels, encoding)
    assert len(ours) == len(serialize_message(msg))
    assert deserialize_message(ours, Image) == msg


@pytest.mark.parametrize('frame_id', ['', 'c', 'camera_optical_frame'])
def test_image_view_reads_rclpy_bytes_without_copy(photo, frame_id):
    msg = conv.fill_image(Image(), photo[:101, :77], 'bgr8', row_padding=3)
    msg.header = header(frame_id=frame_id)
    data = serialize_message(msg)
    view = cdr.image_view(data)
    assert (view.stamp, view.frame_id) == ((1712, 345678901), frame_id)
    assert (view.height, view.width, view.encoding, view.step) == (101, 77, 'bgr8', 77 * 3 + 3)
    np.testing.assert_array_equal(view.data, np.frombuffer(bytes(msg.data), np.uint8))
    assert not view.data.flags.owndata


def test_compressed_view_reads_rclpy_bytes(photo):
    ok, jpeg = cv2.imencode('.jpg', photo)
    msg = CompressedImage(header=header(), format='jpeg', data=jpeg.tobytes())
    view = cdr.compressed_view(serialize_message(msg))
    assert (view.stamp, view.frame_id, view.format) == ((1712, 345678901),
                                                        'camera_optical_frame', 'jpeg')
    assert view.data.tobytes() == jpeg.tobytes()


def test_restamp_changes_only_the_stamp(photo):
    buffer = bytearray(cdr.image_bytes(1, 2, 'cam', photo, 'bgr8'))
    cdr.restamp(buffer, 99, 123)
    back = deserialize_message(bytes(buffer), Image)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (99, 123)
    np.testing.assert_array_equal(np.frombuffer(bytes(back.data), np.uint8).reshape(photo.shape),
                                  photo)


keypoints = st.none() | st.integers(1, 17).flatmap(lambda k: hnp.arrays(
    np.float32, (k, 3), elements=st.floats(0, 1000, width=32)).map(
        lambda a: np.column_stack([a[:, :2], a[:, 2] / 1000])))
detections = st.lists(st.builds(
    Detection, x1=st.floats(-10, 700), y1=st.floats(-10, 500), x2=st.floats(0, 800),
    y2=st.floats(0, 600), score=st.floats(0, 1), class_id=st.integers(0, 999),
    keypoints=keypoints), max_size=12)


# frame ids rclpy can serialise: no NUL, no lone surrogate (rclpy raises on those)
FRAME_IDS = st.text(st.characters(blacklist_characters='\x00', blacklist_categories=('Cs',)),
                    max_size=12)


@settings(max_examples=60, deadline=None)
@given(dets=detections, data=st.data(), frame_id=FRAME_IDS)
def test_detection_array_bytes_equal_rclpy(dets, frame_id, data):
    tracks = data.draw(st.none() | st.lists(st.integers(-1, 10**6), min_size=len(dets),
                                            max_size=len(dets)))
    threshold = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    msg = conv.fill_detection_array(vision_msgs.Detection2DArray(), dets,
                                    header(frame_id=frame_id), vision_msgs, tracks, threshold)
    ours = cdr.detection_array_bytes(1712, 345678901, frame_id, dets, tracks, threshold)
    assert len(ours) == len(serialize_message(msg))
    assert deserialize_message(ours, vision_msgs.Detection2DArray) == msg


def test_a_lone_surrogate_frame_id_is_written_as_a_question_mark():
    """rclpy cannot serialise '\ud800'; ours writes '?' (as received bad bytes read), so a
    strange frame id never stops a detection message."""
    msg = deserialize_message(cdr.detection_array_bytes(1, 2, 'cam\ud800', [], None, 0.5),
                              vision_msgs.Detection2DArray)
    assert msg.header.frame_id == 'cam?' and msg.detections == []


def test_keypoints_are_extra_hypotheses_after_the_class():
    """Our convention read back from the bytes with rclpy: the class hypothesis first, then
    'keypoint/<index>' with the visibility as score and pixel x, y; below the threshold none."""
    points = np.float32([[10.5, 20.25, 0.9], [30, 40, 0.2], [50, 60, 0.5]])
    dets = [Detection(1, 2, 100, 200, 0.8, 0, keypoints=points), Detection(5, 6, 7, 8, 0.3, 2)]
    msg = deserialize_message(cdr.detection_array_bytes(1, 2, 'cam', dets, None, 0.5),
                              vision_msgs.Detection2DArray)
    first, second = msg.detections
    assert [r.hypothesis.class_id for r in first.results] == ['0', 'keypoint/0', 'keypoint/2']
    kp0 = first.results[1]
    assert kp0.hypothesis.score == pytest.approx(0.9)
    assert (kp0.pose.pose.position.x, kp0.pose.pose.position.y, kp0.pose.pose.position.z) == \
        (10.5, 20.25, 0.0)
    assert kp0.pose.pose.orientation.w == 1.0
    assert [r.hypothesis.class_id for r in second.results] == ['2']
    got = conv.detections_from_array(msg)
    assert got[0]['keypoints'] == [(0, 10.5, 20.25, pytest.approx(0.9)),
                                   (2, 50.0, 60.0, 0.5)]
    assert got[1]['keypoints'] == [] and got[0]['class_id'] == 0


@pytest.mark.parametrize('cut', [0, 3, 10, 30, 200])
def test_truncated_image_bytes_are_refused(photo, cut):
    data = cdr.image_bytes(1, 2, 'cam', photo[:20, :20], 'bgr8')
    with pytest.raises(cdr.CdrError):
        cdr.image_view(data[:cut])


def test_a_lying_data_length_is_refused(photo):
    data = bytearray(cdr.image_bytes(1, 2, 'cam', photo[:20, :20], 'bgr8'))
    length_at = len(data) - 20 * 20 * 3 - 4
    data[length_at:length_at + 4] = (10**8).to_bytes(4, 'little')
    with pytest.raises(cdr.CdrError, match='overruns'):
        cdr.image_view(bytes(data))
