"""3D from depth on rendered geometry of known size and place; the stamp synchroniser."""
import numpy as np
import pytest

from tx2_infer_core.depth import (Intrinsics, back_project, box_depth, box_position,
                                  depth_metres, inner_box)
from tx2_infer_core.sync import ApproxTimeSync

K = [525.0, 0.0, 319.5, 0.0, 515.0, 243.5, 0.0, 0.0, 1.0]  # 640x480; fx != fy on purpose
CAM = Intrinsics.from_k(K)
SHAPE = (480, 640)


def render(plane_z, cube=None):
    """Depth (metres) of a wall at ``plane_z`` and an axis-aligned box ``cube`` = (x0, x1, y0,
    y1, z0, z1) in front of it, ray-cast through every pixel centre."""
    v, u = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(np.float64)
    dx, dy = (u - CAM.cx) / CAM.fx, (v - CAM.cy) / CAM.fy  # ray (dx, dy, 1), t = depth z
    depth = np.full(SHAPE, float(plane_z))
    if cube is not None:
        x0, x1, y0, y1, z0, z1 = cube
        near = np.full(SHAPE, -np.inf)
        far = np.full(SHAPE, np.inf)
        for d, lo, hi in ((dx, x0, x1), (dy, y0, y1)):
            with np.errstate(divide='ignore', invalid='ignore'):
                ta, tb = lo / d, hi / d
            inside = (d == 0) & (lo <= 0) & (0 <= hi)
            near = np.maximum(near, np.where(d == 0, np.where(inside, -np.inf, np.inf),
                                             np.minimum(ta, tb)))
            far = np.minimum(far, np.where(d == 0, np.where(inside, np.inf, -np.inf),
                                           np.maximum(ta, tb)))
        near, far = np.maximum(near, z0), np.minimum(far, z1)
        hit = near <= far
        depth[hit] = np.minimum(depth[hit], near[hit])
    return depth


def front_face_box(cube):
    """The pixel box of the cube's front face (what a detector would draw)."""
    x0, x1, y0, y1, z0, _ = cube
    return [CAM.fx * x0 / z0 + CAM.cx, CAM.fy * y0 / z0 + CAM.cy,
            CAM.fx * x1 / z0 + CAM.cx, CAM.fy * y1 / z0 + CAM.cy]


CUBES = [(-0.25, 0.25, -0.2, 0.2, 2.0, 2.5),     # on the optical axis
         (0.4, 0.9, -0.6, -0.1, 1.5, 1.8),       # up and to the right: a side face shows
         (-1.2, -0.7, 0.3, 0.7, 2.4, 2.6)]       # down and to the left


def test_back_project_uses_each_axis_own_focal_length():
    assert back_project(CAM.cx + CAM.fx, CAM.cy + 2 * CAM.fy, 2.0, CAM) == \
        pytest.approx((2.0, 4.0, 2.0))


def test_plane_at_known_distance():
    depth = depth_metres(render(3.0), '32FC1')
    for box in ([100, 100, 200, 180], [0, 0, 640, 480], [600, 400, 700, 500]):
        pos = box_position(depth, box, CAM)
        assert pos.center[2] == pytest.approx(3.0, abs=1e-6)
        u, v = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        assert pos.center[:2] == pytest.approx(back_project(u, v, 3.0, CAM)[:2], abs=1e-9)
        assert pos.size[2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('cube', CUBES)
@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_box_in_front_of_a_wall_within_1cm(cube, encoding):
    """The centre of the cube's front face and its width and height, within 1 cm, with 10% of
    the pixels invalid (0 or NaN) and the mm rounding of 16UC1."""
    metres = render(4.0, cube)
    rng = np.random.default_rng(1)
    holes = rng.uniform(size=SHAPE) < 0.1
    if encoding == '16UC1':
        image = np.round(metres * 1000).astype(np.uint16)
        image[holes] = 0
    else:
        image = metres.astype(np.float32)
        image[holes] = np.where(rng.uniform(size=holes.sum()) < 0.5, np.nan, 0.0)
    box = front_face_box(cube)
    pos = box_position(depth_metres(image, encoding), box, CAM)
    x0, x1, y0, y1, z0, _ = cube
    assert pos.center == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2, z0), abs=0.01)
    assert pos.size[:2] == pytest.approx((x1 - x0, y1 - y0), abs=0.01)


def test_inner_fraction_ignores_the_background_at_the_box_edges():
    """A box drawn 30% too large: the whole box's median is the wall, the inner half's the
    object."""
    cube = CUBES[0]
    depth = depth_metres(render(4.0, cube), '32FC1')
    x1, y1, x2, y2 = front_face_box(cube)
    grow_x, grow_y = 0.8 * (x2 - x1), 0.8 * (y2 - y1)
    big = [x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y]
    assert box_depth(depth, big, inner=1.0) == pytest.approx(4.0)
    assert box_depth(depth, big, inner=0.3) == pytest.approx(2.0)


def test_no_valid_depth_and_bad_inputs():
    depth = depth_metres(np.zeros(SHAPE, np.uint16), '16UC1')
    assert box_depth(depth, [10, 10, 50, 50]) is None
    assert box_position(depth, [10, 10, 50, 50], CAM) is None
    assert box_depth(depth, [700, 500, 800, 600]) is None  # outside the image
    assert inner_box([10, 10, 50, 50], 0.5, SHAPE) == (20, 20, 40, 40)
    with pytest.raises(ValueError, match='inner'):
        inner_box([0, 0, 10, 10], 0.0, SHAPE)
    with pytest.raises(ValueError, match='encoding'):
        depth_metres(np.zeros((2, 2)), 'bgr8')
    with pytest.raises(ValueError, match='calibrated'):
        Intrinsics.from_k([0.0] * 9)


def test_depth_metres_marks_invalid_pixels():
    got = depth_metres(np.array([[0, 1500], [65535, 1]], np.uint16), '16UC1')
    assert np.isnan(got[0, 0]) and got[0, 1] == pytest.approx(1.5)
    assert got[1, 0] == pytest.approx(65.535) and got[1, 1] == pytest.approx(0.001)
    got = depth_metres(np.array([[np.nan, np.inf, -1.0, 2.5]], np.float32), '32FC1')
    assert np.isnan(got[0, :3]).all() and got[0, 3] == 2.5


MS = 1_000_000


def test_sync_pairs_within_slop_nearest_first():
    sync = ApproxTimeSync(slop_ns=10 * MS)
    assert sync.add(1, 0, 'd0') is None
    assert sync.add(1, 30 * MS, 'd30') is None
    assert sync.add(0, 27 * MS, 'c27') == ('c27', 'd30')
    # d0 is older than the pair: dropped, it can never pair with a later colour frame.
    assert list(sync.queues[1]) == [] and sync.dropped == 1
    assert sync.add(0, 60 * MS, 'c60') is None
    assert sync.add(1, 71 * MS, 'd71') is None  # 11 ms: outside the slop
    assert sync.add(1, 55 * MS, 'd55') == ('c60', 'd55')


def test_sync_queues_are_bounded_and_reset():
    sync = ApproxTimeSync(slop_ns=MS, queue_size=3)
    for k in range(10):
        assert sync.add(0, k * 100 * MS, k) is None
    assert [m for _, m in sync.queues[0]] == [7, 8, 9] and sync.dropped == 7
    assert sync.add(1, 800 * MS, 'd') == (8, 'd')
    assert [m for _, m in sync.queues[0]] == [9]
    sync.reset()
    assert not sync.queues[0] and not sync.queues[1]
    with pytest.raises(ValueError):
        sync.add(2, 0, 'x')
    with pytest.raises(ValueError):
        ApproxTimeSync(slop_ns=-1)


def test_sync_every_message_used_once():
    """Random interleaved streams with jitter: no message in two pairs, pairs within slop."""
    rng = np.random.default_rng(3)
    events = [(k * 33 * MS + int(rng.integers(0, 3 * MS)), 0, f'c{k}') for k in range(200)]
    events += [(k * 33 * MS + int(rng.integers(0, 8 * MS)), 1, f'd{k}') for k in range(200)]
    events.sort(key=lambda e: e[0] + int(rng.integers(0, 20 * MS)))  # arrival order jitters
    sync, pairs = ApproxTimeSync(slop_ns=10 * MS), []
    stamps = {msg: stamp for stamp, _, msg in events}
    for stamp, stream, msg in events:
        pair = sync.add(stream, stamp, msg)
        if pair:
            pairs.append(pair)
    used = [m for pair in pairs for m in pair]
    assert len(used) == len(set(used))
    assert all(abs(stamps[c] - stamps[d]) <= 10 * MS for c, d in pairs)
    assert all(c.startswith('c') and d.startswith('d') for c, d in pairs)
    assert len(pairs) > 150
