"""The tracker, on either path (plain Python or batched arrays, ``tracking.batched``) and
switching between them mid-sequence, gives what the batched numpy one of ``BATCHED_COMMIT``
gave (its files read with ``git show``): the same IDs frame by frame and the same tracks
with the same Kalman states, bit for bit; its Hungarian (``match_lists``) the same
assignment as numpy's, ties included, also with the rows of 1.0 it drops."""
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from test_tracking_equivalence import sequences, track_params
from tx2_infer_core import tracking
from tx2_infer_core.assignment import SMALL_ENTRIES, match_arrays, match_lists
from tx2_infer_core.tracking import ByteTracker, TrackParams

ROOT = Path(__file__).resolve().parents[2]
BATCHED_COMMIT = '1cfc32b'  # the last commit with the batched numpy tracker
FILES = ('tx2_infer_core/tracking.py', 'tx2_infer_core/kalman.py',
         'tx2_infer_core/assignment.py')


@pytest.fixture(scope='module')
def batched():
    """The batched tracking module of ``BATCHED_COMMIT``."""
    sys.path.insert(0, str(ROOT / 'bench'))
    from bench_tracking_cost import load_before
    try:
        return load_before(BATCHED_COMMIT, FILES, 'batched_tracker')['tracking']
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f'git show {BATCHED_COMMIT} failed: {error}')


def run_both(old, new, frames):
    """Feed ``frames`` to both trackers; the same IDs and states (bit for bit) each frame."""
    for i, (boxes, scores, classes) in enumerate(frames):
        want = old.update(boxes, scores, classes)
        got = new.update(boxes, scores, classes)
        assert got.dtype == want.dtype and got.tolist() == want.tolist(), f'frame {i}'
        for a, b in zip(old.track_states(), new.track_states()):
            np.testing.assert_array_equal(b, a, err_msg=f'frame {i}')
        assert new.active_count == old.active_count
        assert new.active_ids.tolist() == old.active_ids.tolist()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(frames=sequences(), params=track_params)
def test_same_ids_and_states_as_the_batched_tracker(batched, frames, params):
    run_both(batched.ByteTracker(params), ByteTracker(params), frames)


@st.composite
def crowds(draw):
    """Sequences with many tracks and detections, some frames past ``batched``'s threshold,
    some not: the path switches both ways mid-sequence."""
    frames = draw(sequences())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    most = draw(st.integers(0, 60))
    out = []
    for boxes, scores, classes in frames:
        extra = int(rng.integers(0, most + 1))
        xy = rng.uniform(0, 300, (extra, 2))
        more = np.hstack([xy, xy + rng.uniform(5, 40, (extra, 2))])
        out.append((np.vstack([boxes, more]), np.concatenate([scores, rng.uniform(0, 1, extra)]),
                    np.concatenate([classes, rng.integers(0, 3, extra)])))
    return out


@pytest.fixture
def paths(monkeypatch):
    """The path of each ``update`` call, True for the batched one, as ``tracking.batched``
    chose it."""
    taken, choose = [], tracking.batched

    def spy(*size):
        taken.append(choose(*size))
        return taken[-1]
    monkeypatch.setattr(tracking, 'batched', spy)
    return taken


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(frames=crowds(), params=track_params)
def test_same_ids_and_states_in_crowds(batched, frames, params):
    run_both(batched.ByteTracker(params), ByteTracker(params), frames)


def swinging_crowd(seed=0):
    """A crowd that comes and goes: 3 objects walking, then 40, then 3..., 15 frames each."""
    rng = np.random.default_rng(seed)
    start, size = rng.uniform(0, 600, (40, 2)), rng.uniform(10, 60, (40, 2))
    speed = rng.uniform(-3, 3, (40, 2))
    frames = []
    for f in range(75):
        n = 40 if (f // 15) % 2 else 3
        xy = start[:n] + speed[:n] * f
        boxes = np.hstack([xy, xy + size[:n]]) + rng.normal(0, 1, (n, 4))
        frames.append((boxes, rng.uniform(0.05, 1, n), rng.integers(0, 3, n)))
    return frames


@pytest.mark.parametrize('per_class', [False, True])
def test_a_crowd_coming_and_going_switches_paths_both_ways(batched, paths, per_class):
    params = TrackParams(buffer=5, per_class=per_class)
    run_both(batched.ByteTracker(params), ByteTracker(params), swinging_crowd())
    switches = set(zip(paths, paths[1:]))
    assert {(False, True), (True, False)} <= switches, paths


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(frames=sequences(), params=track_params, seed=st.integers(0, 2 ** 32 - 1))
def test_paths_chosen_at_random_frame_by_frame(batched, frames, params, seed):
    """Whichever path runs each frame, the state handed from one to the other stays exact."""
    choice = iter((np.random.default_rng(seed).uniform(size=len(frames)) < 0.5).tolist())
    with mock.patch.object(tracking, 'batched', lambda *size: next(choice)):
        run_both(batched.ByteTracker(params), ByteTracker(params), frames)


@st.composite
def cost_lists(draw):
    """Small cost matrices in [0, 1] with ties (a few levels) and rows of 1.0."""
    n, m = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    levels = draw(st.sampled_from([2, 3, 5, 0]))
    cost = rng.integers(0, levels, (n, m)) / (levels - 1) if levels else rng.uniform(size=(n, m))
    cost[rng.uniform(size=n) < draw(st.sampled_from([0.0, 0.5, 0.9]))] = 1.0
    return cost, draw(st.sampled_from([0.5, 0.8, 1.0]))


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(case=cost_lists())
def test_match_lists_is_match_arrays(case):
    cost, max_cost = case
    rows, cols = match_arrays(cost, max_cost)
    assert match_lists(cost.tolist(), max_cost) == list(zip(rows.tolist(), cols.tolist()))


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(case=cost_lists())
def test_dropping_rows_of_ones_keeps_the_answer(case):
    """The tracker's reduction: rows of 1.0 past the first ``columns + 1`` dropped."""
    cost, max_cost = case
    ones = (cost == 1.0).all(axis=1).nonzero()[0]
    kept = np.setdiff1d(np.arange(len(cost)), ones[cost.shape[1] + 1:])
    rows, cols = match_arrays(cost, max_cost)
    got = match_lists(cost[kept].tolist(), max_cost)
    assert [(int(kept[r]), c) for r, c in got] == list(zip(rows.tolist(), cols.tolist()))


def test_match_lists_hands_large_matrices_to_numpy():
    rng = np.random.default_rng(0)
    cost = rng.integers(0, 3, (SMALL_ENTRIES // 10 + 1, 10)) / 2
    rows, cols = match_arrays(cost, 0.6)
    assert match_lists(cost.tolist(), 0.6) == list(zip(rows.tolist(), cols.tolist()))
    assert match_lists([], 0.5) == [] and match_lists([[]], 0.5) == []


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(0, 12), m=st.integers(0, 12))
def test_overlap_costs_is_one_minus_iou_matrix(seed, n, m):
    """The same pairs and the same costs, bit for bit, as 1 - iou_matrix."""
    rng = np.random.default_rng(seed)
    boxes = np.round(rng.uniform(0, 100, (n + m, 2)), 1)
    boxes = np.hstack([boxes, boxes + rng.integers(-2, 40, (n + m, 2))]).tolist()
    cost = 1.0 - tracking.iou_matrix(boxes[:n], boxes[n:])
    assert (tracking.overlap_costs(boxes[:n], boxes[n:])
            == [{j: c for j, c in enumerate(row) if c < 1.0} for row in cost.tolist()])


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(frames=crowds(), params=track_params, seed=st.integers(0, 2 ** 32 - 1))
def test_predict_ahead_changes_nothing(frames, params, seed):
    """``predict`` before ``update`` (once or twice, as the node calls it while the GPU runs
    the frame) gives the IDs and states of ``update`` alone, bit for bit, on either path."""
    calls = iter(np.random.default_rng(seed).integers(0, 3, len(frames)).tolist())
    plain, ahead = ByteTracker(params), ByteTracker(params)
    for i, (boxes, scores, classes) in enumerate(frames):
        for _ in range(next(calls)):
            ahead.predict()
        want = plain.update(boxes, scores, classes)
        got = ahead.update(boxes, scores, classes)
        assert got.tolist() == want.tolist(), f'frame {i}'
        for a, b in zip(plain.track_states(), ahead.track_states()):
            np.testing.assert_array_equal(b, a, err_msg=f'frame {i}')
        assert ahead.frame == plain.frame


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(0, 8),
       kind=st.sampled_from(['list', 'float32', 'float64', 'tuples']))
def test_plain_lists_are_numpys_conversion(seed, n, kind):
    rng = np.random.default_rng(seed)
    boxes, scores = rng.uniform(-5, 700, (n, 4)), rng.uniform(0, 1, n)
    classes = rng.integers(0, 80, n)
    if kind == 'float32':
        boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
    elif kind in ('list', 'tuples'):
        boxes, scores, classes = boxes.tolist(), scores.tolist(), classes.tolist()
        if kind == 'tuples':
            boxes = [tuple(box) for box in boxes]
    got = tracking.plain_lists(boxes, scores, classes)
    want = (np.asarray(boxes, np.float64).reshape(-1, 4).tolist(),
            np.asarray(scores, np.float64).tolist(), np.asarray(classes, np.int64).tolist())
    assert got == want
    values = [v for box in got[0] for v in box] + got[1]
    assert all(type(v) is float for v in values) and all(type(c) is int for c in got[2])


def test_plain_lists_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match='2 boxes, 1 scores and 2 class IDs'):
        tracking.plain_lists([[0, 0, 1, 1]] * 2, [0.5], [0, 1])
    with pytest.raises(ValueError):
        tracking.plain_lists([[0, 0, 1]], [0.5], [0])
