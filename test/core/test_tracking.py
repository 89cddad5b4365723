"""The tracker: Hungarian matching against a brute-force oracle, its forced-pairs fast path
against the Hungarian, IDs over synthetic sequences."""
import itertools

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

from tx2_infer_core.assignment import forced_pairs, linear_sum_assignment, match
from tx2_infer_core.tracking import (ByteTracker, KalmanBox, TrackParams, box_to_xyah,
                                     iou_matrix, xyah_to_box)


def brute_force_cost(cost):
    """Minimum total cost over every assignment of min(rows, cols) pairs (the oracle)."""
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n))
                   for p in itertools.permutations(range(m), n))
    return min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))


@st.composite
def cost_matrices(draw):
    n, m = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # Small integers make ties (several optimal assignments) common; floats test the rest.
    values = st.one_of(st.integers(0, 4).map(float),
                       st.floats(-100, 100, allow_nan=False, allow_infinity=False))
    return np.array(draw(st.lists(values, min_size=n * m, max_size=n * m))).reshape(n, m)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(cost=cost_matrices())
def test_hungarian_matches_brute_force(cost):
    rows, cols = linear_sum_assignment(cost)
    k = min(cost.shape)
    assert len(rows) == len(cols) == k
    assert len(set(rows.tolist())) == k and len(set(cols.tolist())) == k
    assert list(rows) == sorted(rows)
    assert cost[rows, cols].sum() == pytest.approx(brute_force_cost(cost), abs=1e-9)


def test_hungarian_refuses_bad_matrices():
    with pytest.raises(ValueError, match='2-D'):
        linear_sum_assignment(np.zeros(3))
    with pytest.raises(ValueError, match='NaN'):
        linear_sum_assignment(np.array([[0.0, np.nan]]))


@st.composite
def iou_costs(draw):
    """1 - IoU of random boxes against jittered copies (the tracker's cost matrices): mostly
    one clear candidate a row, sometimes crowded; and a threshold."""
    n, m = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    coords = st.integers(0, 60)
    boxes = [draw(st.tuples(coords, coords, st.integers(4, 30), st.integers(4, 30)))
             for _ in range(max(n, m))]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], float)
    jitter = np.array(draw(st.lists(st.integers(-3, 3), min_size=4 * m, max_size=4 * m)))
    cost = 1.0 - iou_matrix(boxes[:n], boxes[:m] + jitter.reshape(m, 4))
    return cost, draw(st.sampled_from([0.8, 0.5, 0.3, 1.0]))


@st.composite
def near_threshold_costs(draw):
    """Costs in [0, 1] from a few values either side of the threshold 0.8."""
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    values = st.sampled_from([0.79, 0.81, 1.0, 0.8, 0.3])
    return np.array(draw(st.lists(values, min_size=n * m, max_size=n * m))).reshape(n, m), 0.8


def hungarian_pairs(cost, max_cost):
    """``match``'s definition: the full assignment, then pairs over ``max_cost`` dropped."""
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= max_cost
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(case=st.one_of(iou_costs(), near_threshold_costs(),
                      cost_matrices().map(lambda c: (c, 1.0))))
def test_forced_pairs_equal_the_hungarian_when_they_apply(case):
    cost, max_cost = case
    forced = forced_pairs(cost, max_cost)
    event(f'forced, {min(len(forced[0]), 2)}+ pairs' if forced is not None else 'hungarian')
    if forced is not None:
        assert list(zip(*(a.tolist() for a in forced))) == hungarian_pairs(cost, max_cost)
    assert match(cost, max_cost)[0] == hungarian_pairs(cost, max_cost)


def test_forced_pairs_apply_to_separate_objects():
    boxes = np.array([[0, 0, 10, 20], [30, 0, 40, 20], [60, 5, 75, 30]], float)
    cost = 1.0 - iou_matrix(boxes, boxes[::-1] + 1)
    rows, cols = forced_pairs(cost, 0.8)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [2, 1, 0]


def test_one_candidate_per_row_does_not_force_it():
    """(0, 0) is the only pair under 0.8, yet the assignment takes the two 0.81 pairs
    (1.62 < 0.79 + 1.0), so ``match`` keeps nothing: greedy would be wrong here."""
    cost = np.array([[0.79, 0.81], [0.81, 1.0]])
    assert forced_pairs(cost, 0.8) is None
    assert match(cost, 0.8) == ([], [0, 1], [0, 1])


def test_match_drops_pairs_over_max_cost():
    cost = np.array([[0.1, 0.9], [0.95, 0.9]])
    pairs, rows, cols = match(cost, 0.5)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]
    assert match(np.zeros((0, 3)), 0.5) == ([], [], [0, 1, 2])


def test_iou_and_box_forms():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]
    assert iou_matrix(a, b) == pytest.approx(np.array([[1 / 3, 0.0, 1.0]]))
    box = np.array([4.0, 6.0, 10.0, 18.0])
    assert box_to_xyah(box) == pytest.approx([7, 12, 0.5, 12])
    assert xyah_to_box(box_to_xyah(box)) == pytest.approx(box)


def test_kalman_learns_constant_velocity():
    kalman = KalmanBox([0, 0, 20, 40])
    for frame in range(1, 30):
        kalman.predict()
        kalman.update([5 * frame, 0, 5 * frame + 20, 40])
    kalman.predict()
    assert kalman.box == pytest.approx([150, 0, 170, 40], abs=0.5)


def moving_scene(frames=40):
    """Three people walking (class 0) and a car (class 2): per frame, a list of
    (object, box, score). Object 1 is hidden in frames 12-16 (occlusion); in frame 25
    object 0's score drops to 0.3 (motion blur: ByteTrack's low-score case); object 2 stands
    still; the car drives left across the frame."""
    scene = []
    for f in range(frames):
        objects = [(0, [10 + 6 * f, 50, 50 + 6 * f, 150], 0.3 if f == 25 else 0.9),
                   (1, [400 - 5 * f, 60, 440 - 5 * f, 160], 0.85),
                   (2, [300, 300, 340, 400], 0.8),
                   (3, [500 - 8 * f, 200, 580 - 8 * f, 240], 0.7)]
        scene.append([o for o in objects if not (o[0] == 1 and 12 <= f <= 16)])
    return scene


def run_scene(tracker, scene, classes=(0, 0, 0, 2)):
    """Feed ``scene`` to ``tracker``; returns {object: [track id per frame it is seen]}."""
    seen = {}
    for objects in scene:
        boxes = [o[1] for o in objects]
        ids = tracker.update(boxes, [o[2] for o in objects], [classes[o[0]] for o in objects])
        for (obj, _, _), track_id in zip(objects, ids):
            seen.setdefault(obj, []).append(int(track_id))
    return seen


def id_switches(ids):
    """Times a track ID changes along one object's frames (-1, untracked, counts too)."""
    return sum(1 for a, b in zip(ids, ids[1:]) if a != b)


def test_ids_are_stable_through_occlusion_and_a_low_score_frame():
    seen = run_scene(ByteTracker(), moving_scene())
    assert {obj: id_switches(ids) for obj, ids in seen.items()} == {0: 0, 1: 0, 2: 0, 3: 0}
    assert sorted({ids[0] for ids in seen.values()}) == [1, 2, 3, 4]


def test_low_score_detection_keeps_its_track():
    """ByteTrack's point: frame 25's 0.3-score box of object 0 carries object 0's ID."""
    seen = run_scene(ByteTracker(), moving_scene())
    assert seen[0][25] == seen[0][0] != -1


def test_short_buffer_starts_a_new_track_after_occlusion():
    seen = run_scene(ByteTracker(TrackParams(buffer=3)), moving_scene())
    assert id_switches(seen[1]) == 1
    assert id_switches(seen[0]) == id_switches(seen[2]) == 0


def test_class_flip_keeps_the_track_unless_per_class():
    """A detector flipping truck -> car on one object keeps its ID (ByteTrack matches by IoU
    alone); with ``per_class`` the same box as another class is a new track."""
    for per_class, same in ((False, True), (True, False)):
        tracker = ByteTracker(TrackParams(per_class=per_class))
        first = tracker.update([[0, 0, 10, 10]], [0.9], [7])
        second = tracker.update([[0, 0, 10, 10]], [0.4], [2])
        third = tracker.update([[0, 0, 10, 10]], [0.9], [2])
        assert (first[0] == second[0] == third[0]) == same


def test_below_low_threshold_and_unmatched_low_scores_are_untracked():
    tracker = ByteTracker()
    ids = tracker.update([[0, 0, 10, 10], [50, 50, 60, 60], [90, 90, 99, 99]],
                         [0.9, 0.3, 0.05], [0, 0, 0])
    assert ids.tolist() == [1, -1, -1]
    assert tracker.active_count == 1


def test_reset_forgets_tracks_and_restarts_ids():
    tracker = ByteTracker()
    run_scene(tracker, moving_scene(10))
    assert tracker.active_count == 4
    tracker.reset()
    assert tracker.active_count == 0 and tracker.lost_ids.tolist() == []
    assert tracker.update([[400, 400, 420, 440]], [0.9], [0]).tolist() == [1]


def test_empty_frames():
    tracker = ByteTracker()
    assert tracker.update(np.zeros((0, 4)), [], []).tolist() == []
    tracker.update([[0, 0, 10, 10]], [0.9], [0])
    assert tracker.update(np.zeros((0, 4)), [], []).tolist() == []
    assert tracker.active_count == 0 and len(tracker.lost_ids) == 1
