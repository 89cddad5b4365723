"""The ID-switch rule of bench/bench_tracking_video.py on hand-made tracks (the figures it
commits depend on it): a new ID on a vanished ID's box is a fragment, within the window only;
an ID jumping onto a vanished ID's box is a takeover; a person walking keeps none."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
pytest.importorskip('rclpy', reason='the bench loads the detector through tx2_infer_ros')
from bench_tracking_video import count_switches  # noqa: E402
from tx2_infer_core.detect import Detection  # noqa: E402


def frame(*tracks):
    """One frame from (track id, x) pairs: 20x50 boxes at x, y 100."""
    dets = [Detection(x, 100, x + 20, 150, 0.9, 0) for _, x in tracks]
    return dets, np.array([t for t, _ in tracks])


def test_a_walk_keeps_its_id():
    assert count_switches([frame((1, 10 + 2 * i)) for i in range(20)])[:2] == (0, 0)


def test_new_id_on_a_vanished_box_is_a_fragment_within_the_window():
    frames = [frame((1, 10)), frame((1, 12)), frame(), frame(), frame((2, 13))]
    assert count_switches(frames) == (1, 0, [(4, 'fragment', 1, 2)])
    late = frames[:2] + [frame()] * 30 + [frame((2, 13))]
    assert count_switches(late)[:2] == (0, 0)
    elsewhere = frames[:4] + [frame((2, 200))]
    assert count_switches(elsewhere)[:2] == (0, 0)


def test_id_jumping_onto_a_vanished_neighbour_is_a_takeover():
    frames = [frame((1, 10), (2, 100)), frame((1, 11), (2, 101)), frame((2, 12))]
    assert count_switches(frames) == (0, 1, [(2, 'takeover', 1, 2)])
