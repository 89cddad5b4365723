"""The batched tracker and Hungarian give what the per-track ones gave (tracking_oracle.py):
the same IDs frame by frame, the same tracks in the same order, Kalman states within 1e-9,
on real detections of vtest.avi and on generated sequences (births, deaths, crossing
objects, duplicates, low scores)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tracking_oracle as oracle
from tx2_infer_core import assets
from tx2_infer_core.assignment import linear_sum_assignment, match
from tx2_infer_core.tracking import ByteTracker, TrackParams

ROOT = Path(__file__).resolve().parents[2]
VTEST_FRAMES = 100


def assert_same_trackers(old, new):
    """The same kept tracks, in the same order (active first), with the same states."""
    pool = old.active + old.lost
    ids, means, covs = new.track_states()
    assert ids.tolist() == [t.track_id for t in pool]
    assert new.active_count == len(old.active)
    if pool:
        np.testing.assert_allclose(means, [t.kalman.mean for t in pool], rtol=0, atol=1e-9)
        np.testing.assert_allclose(covs, [t.kalman.cov for t in pool], rtol=0, atol=1e-9)


def run_both(params, frames):
    """Feed ``frames`` (boxes, scores, classes) to both trackers, comparing every frame;
    returns the IDs given."""
    old, new, given_ids = oracle.ByteTracker(params), ByteTracker(params), []
    for i, (boxes, scores, classes) in enumerate(frames):
        want = old.update(boxes, scores, classes)
        got = new.update(boxes, scores, classes)
        assert got.tolist() == want.tolist(), f'frame {i}'
        assert_same_trackers(old, new)
        given_ids.extend(got.tolist())
    return given_ids


def detect_vtest():
    """YOLOv3-tiny person detections (score >= 0.1) of the first frames of vtest.avi."""
    sys.path.insert(0, str(ROOT / 'bench'))
    from bench_tracking_video import read_frames
    from tx2_infer_core.detect_params import DetectParams
    from tx2_infer_ros.pipeline import load_detector
    frames = read_frames(assets.fetch('vtest.avi'), VTEST_FRAMES)
    detector, _ = load_detector(backend='cpu', log=lambda _: None)
    params = DetectParams(conf_threshold=0.1, classes=[0])
    try:
        dets = [detector.detect(frame, params) for frame in frames]
    finally:
        detector.engine.close()
    rows = [[i, d.x1, d.y1, d.x2, d.y2, d.score, d.class_id]
            for i, frame in enumerate(dets) for d in frame]
    return np.array(rows, np.float64).reshape(-1, 7)


@pytest.fixture(scope='module')
def vtest_detections():
    """Per frame (boxes, scores, classes); the detections are cached beside the assets."""
    cache = assets.cache_dir() / 'tracking' / f'vtest_yolov3_tiny_{VTEST_FRAMES}.npy'
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, detect_vtest())
    rows = np.load(cache)
    frames = []
    for i in range(VTEST_FRAMES):
        r = rows[rows[:, 0] == i]
        frames.append((r[:, 1:5], r[:, 5], r[:, 6].astype(np.int64)))
    return frames


@pytest.mark.parametrize('params', [TrackParams(), TrackParams(buffer=5, match_iou=0.4),
                                    TrackParams(high_threshold=0.3, low_match_iou=0.3)])
def test_same_ids_on_vtest(vtest_detections, params):
    assert sum(len(f[0]) for f in vtest_detections) > 5 * VTEST_FRAMES
    given_ids = run_both(params, vtest_detections)
    assert len(set(given_ids) - {-1}) > 10


@st.composite
def sequences(draw):
    """Per frame (boxes, scores, classes) of objects moving in a 200 x 200 square (so they
    cross), each born and dying on its own frames, sometimes missed, sometimes doubled."""
    count, length = draw(st.integers(1, 12)), draw(st.integers(2, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    start = rng.integers(0, 160, (count, 2)).astype(float)
    size = rng.integers(8, 60, (count, 2)).astype(float)
    speed = rng.choice([-6.0, -2.5, 0.0, 1.0, 4.0], (count, 2))
    born = rng.integers(0, length // 2 + 1, count)
    dies = born + rng.integers(2, length + 1, count)
    classes = rng.integers(0, 3, count)
    score_levels = draw(st.sampled_from([(0.9,), (0.9, 0.3), (0.95, 0.6, 0.3, 0.05)]))
    jitter = draw(st.sampled_from([0.0, 1.0, 4.0]))
    frames = []
    for f in range(length):
        alive = np.flatnonzero((born <= f) & (f < dies) & (rng.uniform(size=count) > 0.1))
        alive = np.concatenate([alive, alive[rng.uniform(size=len(alive)) < 0.05]])
        xy = start[alive] + speed[alive] * (f - born[alive])[:, None]
        boxes = np.hstack([xy, xy + size[alive]]) + rng.normal(0, jitter, (len(alive), 4))
        frames.append((boxes, rng.choice(score_levels, len(alive)), classes[alive]))
    return frames


track_params = st.builds(TrackParams, high_threshold=st.sampled_from([0.5, 0.7]),
                         low_threshold=st.sampled_from([0.1, 0.4]),
                         match_iou=st.sampled_from([0.2, 0.5]),
                         low_match_iou=st.sampled_from([0.3, 0.5]),
                         buffer=st.integers(0, 6), per_class=st.booleans())


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(frames=sequences(), params=track_params)
def test_same_ids_on_generated_sequences(frames, params):
    run_both(params, frames)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(n=st.integers(1, 7), m=st.integers(1, 7), seed=st.integers(0, 2 ** 32 - 1),
       levels=st.sampled_from([2, 4, 0]))
def test_same_assignment_as_the_per_row_hungarian(n, m, seed, levels):
    """Ties included (few integer levels): the same optimal assignment, not just as cheap."""
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, levels, (n, m)).astype(float) if levels else rng.uniform(size=(n, m))
    want, got = oracle.linear_sum_assignment(cost), linear_sum_assignment(cost)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    for max_cost in (0.5, 1.0, 2.0):
        assert match(cost, max_cost) == oracle.match(cost, max_cost)
