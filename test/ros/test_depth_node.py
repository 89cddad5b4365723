"""3D positions through the real node (own process, own ROS_DOMAIN_ID) from rendered depth of
known geometry: crops of a real photo (person.jpg: a person, a horse, two dogs) pasted where
flat objects at known distances project with known intrinsics, and the depth image rendered
from the same objects (a few mm of noise, 15% of pixels without a measurement; the dogs' with
none at all). Oracle: the pinhole model written out here, applied to the node's own 2D boxes
at the rendered distance; positions within 1 cm, for 16UC1 and 32FC1."""
import cv2
import numpy as np
import pytest

from rospeer import active_node, free_domain_id
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

from tx2_infer_core import assets
from tx2_infer_ros import conversions as conv

DOMAIN = free_domain_id()
FX, FY, CX, CY = 500.0, 520.0, 330.0, 235.0
W, H = 640, 480
BACKGROUND_Z, SLOP = 8.0, 0.02
OPTICAL = 'camera_color_optical_frame'
# (crop x1 y1 x2 y2 of person.jpg, flat object: centre X Y Z, width, height in metres, depth?)
OBJECTS = [((180, 95, 285, 390), (-0.7, 0.1, 2.5, 0.6, 1.7), True),     # person
           ((390, 128, 612, 340), (1.2, 0.3, 5.0, 1.6, 1.5), True),     # horse
           ((60, 258, 208, 360), (1.3, 1.0, 3.0, 0.9, 0.6), False)]     # dogs: no depth


def project(x, y, z, width, height):
    """Pixel rectangle (x1 y1 x2 y2) of a flat object facing the camera."""
    return [int(round(v)) for v in (CX + (x - width / 2) * FX / z, CY + (y - height / 2) * FY / z,
                                    CX + (x + width / 2) * FX / z, CY + (y + height / 2) * FY / z)]


@pytest.fixture(scope='module')
def scene():
    """(colour image, depth in metres with NaN where unmeasured, [(rect, Z or None)])."""
    photo = cv2.imread(str(assets.fetch('person.jpg')))
    rng = np.random.default_rng(3)
    colour = np.full((H, W, 3), 110, np.uint8)
    depth = np.full((H, W), BACKGROUND_Z)
    rects = []
    for (x1, y1, x2, y2), geometry, measured in OBJECTS:
        r = project(*geometry)
        colour[r[1]:r[3], r[0]:r[2]] = cv2.resize(photo[y1:y2, x1:x2], (r[2] - r[0], r[3] - r[1]))
        z = geometry[2]
        depth[r[1]:r[3], r[0]:r[2]] = z + rng.uniform(-0.003, 0.003, (r[3] - r[1], r[2] - r[0]))
        if not measured:
            depth[r[1]:r[3], r[0]:r[2]] = np.nan
        rects.append((r, z if measured else None))
    depth[rng.uniform(size=depth.shape) < 0.15] = np.nan
    return colour, depth, rects


def depth_msg(depth, encoding):
    if encoding == '16UC1':
        data = np.where(np.isfinite(depth), np.round(depth * 1000), 0).astype('<u2')
    else:
        data = depth.astype('<f4')
    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding, is_bigendian=0,
                step=depth.shape[1] * data.itemsize)
    msg.data = data.tobytes()
    msg.header.frame_id = OPTICAL
    return msg


def info_msg(stamp):
    msg = CameraInfo(width=W, height=H, distortion_model='plumb_bob', d=[0.0] * 5,
                     k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0])
    msg.header.stamp, msg.header.frame_id = stamp, OPTICAL
    return msg


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    args = ['-p', 'depth_topic:=depth/image', '-p', 'depth_info_topic:=depth/camera_info',
            '-p', f'depth_slop:={SLOP}', '-p', 'publish_annotated:=true']
    with active_node(DOMAIN, tmp_path_factory.mktemp('ros_depth'), args) as p:
        p.depth_pub = p.node.create_publisher(Image, 'depth/image', 10)
        p.info_pub = p.node.create_publisher(CameraInfo, 'depth/camera_info', 10)
        p.arrays, p.annotated, p.count = [], [], 0
        p.node.create_subscription(Detection3DArray, 'detections_3d', p.arrays.append, 10)
        p.node.create_subscription(Image, 'annotated_image', p.annotated.append, 10)
        assert p.wait_for(lambda: p.depth_pub.get_subscription_count() > 0 and
                          p.info_pub.get_subscription_count() > 0)
        yield p


def send(peer, colour, depth=None, depth_offset_ns=0):
    """Publish CameraInfo and ``depth`` (an Image, stamped colour stamp + offset) first, then
    ``colour``; returns (colour header, its Detection2DArray)."""
    peer.count += 1
    now = peer.node.get_clock().now()
    if depth is not None:
        stamp = now.nanoseconds + depth_offset_ns
        depth.header.stamp.sec, depth.header.stamp.nanosec = divmod(stamp, 10**9)
        peer.info_pub.publish(info_msg(depth.header.stamp))
        peer.depth_pub.publish(depth)
        peer.spin_for(0.3)
    msg = conv.fill_image(Image(), colour)
    msg.header.frame_id, msg.header.stamp = f'frame{peer.count}', now.to_msg()

    def found():
        return [m for m, _ in peer.detections if m.header.frame_id == msg.header.frame_id]
    peer.image_pub.publish(msg)
    assert peer.wait_for(found, timeout=30), f'no detections for {msg.header.frame_id}'
    return msg.header, found()[0]


def arrays_at(peer, stamp):
    return [a for a in peer.arrays if a.header.stamp == stamp]


def object_z(rects, u, v):
    """The rendered distance of the object under pixel (u, v) (None: no depth there)."""
    for (x1, y1, x2, y2), z in rects:
        if x1 <= u < x2 and y1 <= v < y2:
            return z
    raise AssertionError(f'({u}, {v}) is on no object')


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_positions_within_a_centimetre(peer, scene, encoding):
    colour, depth, rects = scene
    header, dets2d = send(peer, colour, depth_msg(depth, encoding))
    assert peer.wait_for(lambda: arrays_at(peer, header.stamp), timeout=10)
    array = arrays_at(peer, header.stamp)[0]
    assert array.header.frame_id == OPTICAL
    with_depth = [d for d in dets2d.detections if object_z(
        rects, d.bbox.center.position.x, d.bbox.center.position.y) is not None]
    assert len(with_depth) >= 2 and len(with_depth) < len(dets2d.detections)  # dogs left out
    assert len(array.detections) == len(with_depth)
    for d2, d3 in zip(with_depth, array.detections):
        u, v = d2.bbox.center.position.x, d2.bbox.center.position.y
        z = object_z(rects, u, v)
        expected = ((u - CX) * z / FX, (v - CY) * z / FY, z)
        p = d3.bbox.center.position
        np.testing.assert_allclose([p.x, p.y, p.z], expected, atol=0.01)
        np.testing.assert_allclose([d3.bbox.size.x, d3.bbox.size.y],
                                   [d2.bbox.size_x * z / FX, d2.bbox.size_y * z / FY], atol=0.01)
        assert 0 <= d3.bbox.size.z < 0.01 and d3.bbox.center.orientation.w == 1.0
        assert d3.id == d2.id != '' and d3.header.frame_id == OPTICAL
        h2, h3 = d2.results[0].hypothesis, d3.results[0].hypothesis
        assert (h3.class_id, h3.score) == (h2.class_id, h2.score)
    peer.last = (header, dets2d, array)


def test_annotated_image_shows_id_and_distance(peer, scene):
    """The label band of the person (alone on the left) is as wide as its text with the ID
    and the distance, drawn with OpenCV's font here."""
    header, dets2d, array = peer.last
    assert peer.wait_for(lambda: [m for m in peer.annotated if m.header == header], timeout=10)
    drawn = conv.image_to_bgr([m for m in peer.annotated if m.header == header][0])
    names = assets.fetch('coco.names').read_text().split('\n')
    d2, d3 = next((a, b) for a, b in zip(dets2d.detections, array.detections)
                  if a.results[0].hypothesis.class_id == '0')
    p = d3.bbox.center.position
    hyp = d2.results[0].hypothesis
    text = f'#{d2.id} {names[0]} {hyp.score:.2f} {np.linalg.norm([p.x, p.y, p.z]):.2f} m'
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    x1 = int(round(d2.bbox.center.position.x - d2.bbox.size_x / 2))
    y1 = int(round(d2.bbox.center.position.y - d2.bbox.size_y / 2))
    row = max(y1, th + base) - 2  # inside the band, above the box's own top edge
    changed = (drawn[row] != scene[0][row]).any(axis=1)
    assert changed[x1:x1 + tw + 1].all() and not changed[x1 + tw + 1:x1 + tw + 4].any()


def test_diagnostics_count_tracks_and_3d(peer):
    _, dets2d, array = peer.last
    tracked = sum(d.id != '' for d in dets2d.detections)
    objects = sum(len(a.detections) for a in peer.arrays)
    left_out = 2 * (len(dets2d.detections) - len(array.detections))  # two frames alike

    def right():
        v = peer.diag_values()
        return (v.get('active_tracks'), v.get('depth_published'), v.get('depth_objects'),
                v.get('depth_no_depth'), v.get('depth_size_error')) == (
                    str(tracked), str(len(peer.arrays)), str(objects), str(left_out), '0')
    assert peer.wait_for(right, timeout=10), peer.diag_values()


def test_depth_of_another_size_is_counted_not_fatal(peer, scene):
    colour, depth, _ = scene
    small = depth_msg(cv2.resize(depth, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST),
                      '32FC1')
    header, _ = send(peer, colour, small)
    assert peer.wait_for(lambda: peer.diag_values().get('depth_size_error') == '1', timeout=10)
    assert not arrays_at(peer, header.stamp)
    header, _ = send(peer, colour, depth_msg(depth, '16UC1'))  # the node goes on
    assert peer.wait_for(lambda: arrays_at(peer, header.stamp), timeout=10)


def test_unsynchronised_stamps_give_no_3d(peer, scene):
    """Depth 50 ms after each colour frame (slop 20 ms): nothing pairs; both queues (5 each)
    fill, and the 2 oldest of each stream are counted unpaired."""
    colour, depth, _ = scene
    before = peer.diag_values()
    assert before.get('depth_waiting') == '0', before
    stamps = [send(peer, colour, depth_msg(depth, '16UC1'), 50_000_000)[0].stamp
              for _ in range(7)]
    expected = str(int(before['depth_unpaired']) + 4)
    assert peer.wait_for(lambda: peer.diag_values().get('depth_unpaired') == expected,
                         timeout=10), peer.diag_values()
    assert peer.diag_values()['depth_waiting'] == '10'
    assert not [a for a in peer.arrays if a.header.stamp in stamps]


def test_depth_array_reads_padded_rows_and_byte_order():
    """Rows padded to a wider step, big-endian data; an unknown encoding or short data is a
    DepthError naming the cause."""
    from tx2_infer_ros.depth_output import DepthError, depth_array
    values = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    padded = np.zeros((3, 6), '>u2')
    padded[:, :4] = values
    msg = Image(height=3, width=4, encoding='16UC1', is_bigendian=1, step=12)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(depth_array(msg), values)
    msg.encoding = 'rgb8'
    with pytest.raises(DepthError, match='encoding') as bad:
        depth_array(msg)
    msg.encoding, msg.data = '32FC1', bytes(20)
    with pytest.raises(DepthError, match='bytes of data') as short:
        depth_array(msg)
    assert (bad.value.cause, short.value.cause) == ('encoding', 'size')
