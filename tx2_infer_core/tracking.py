"""Multi-object tracking by detection: a small ByteTrack-class tracker (one per camera).

Per frame (``ByteTracker.update``), as in ByteTrack (Zhang et al., 2022):

1. every track's box is predicted by a constant-velocity Kalman filter on (centre x, centre y,
   aspect w/h, height) and their velocities (ByteTrack's ``KalmanFilterXYAH`` and noise);
2. high-score detections (score >= ``high_threshold``) are matched to all tracks, active and
   lost, by IoU (Hungarian, ``assignment.py``; pairs under ``match_iou`` are refused);
3. low-score detections (``low_threshold`` <= score < high) are matched to the active tracks
   left over, with the stricter ``low_match_iou``: an occluded or blurred object whose score
   dropped keeps its track instead of losing it;
4. active tracks left unmatched become lost; a track lost for more than ``buffer`` frames is
   removed; unmatched high-score detections start new tracks (IDs count from 1 per tracker).

Matching ignores the class, as ByteTrack does (a detector often flips between close classes,
truck and car, on one object); ``per_class`` restricts it to tracks of the detection's class.
Differences from ByteTrack, on purpose: a new track gets its ID at once (no unconfirmed first
frame); no duplicate-track removal.
Plain Python per track (``kalman.py``): each frame predicts every track, then needs the IoU
of a track's box only with the detections it overlaps (a cheap corner test skips the rest,
whose cost 1 - IoU is 1.0), computed once for both stages; a stage's matrix holds the tracks
overlapping one of its detections and the first ``detections + 1`` tracks overlapping none
(rows of 1.0: the Hungarian never reaches the others, ``assignment.py``), matched in plain
Python (``match_lists``). At the sizes of a camera (a few detections, tens of tracks) this
costs less than numpy's per-call overhead, above all after idle time with cold caches; numpy
computes the IoU of larger crowds. No ROS.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.assignment import match_lists
from tx2_infer_core.kalman import (full_covariance, kalman_init, kalman_predict, kalman_update,
                                   xyah_to_box)
from tx2_infer_core.kalman import KalmanBox, box_to_xyah  # noqa: F401 (API)

NUMPY_PAIRS = 1024  # track-detection pairs from which numpy computes the IoU


@dataclass(frozen=True)
class TrackParams:
    """Tracker settings: score thresholds, IoU match thresholds and the lost-track buffer."""

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    match_iou: float = 0.2  # ByteTrack's match_thresh 0.8 on the cost 1 - IoU
    low_match_iou: float = 0.5
    buffer: int = 30  # frames a lost track is kept for
    per_class: bool = False  # a detection only matches a track of its own class


def iou_matrix(a, b):
    """IoU of every box of ``a`` (N x 4, x1 y1 x2 y2) with every box of ``b`` (M x 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    corner1 = np.maximum(a[:, None, :2], b[None, :, :2])
    corner2 = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.maximum(corner2 - corner1, 0)
    inter = overlap[:, :, 0] * overlap[:, :, 1]
    size_a, size_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    area_a, area_b = size_a[:, 0] * size_a[:, 1], size_b[:, 0] * size_b[:, 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def overlap_costs(tracks, dets):
    """Per box of ``tracks``, {index in ``dets``: 1 - IoU} of the boxes of ``dets`` it
    overlaps with a cost under 1.0 (every other pair costs 1.0): ``1 - iou_matrix``, the same
    roundings, in plain Python on few pairs."""
    if len(tracks) * len(dets) > NUMPY_PAIRS:
        cost = 1.0 - iou_matrix(tracks, dets)
        rows, cols = (cost < 1.0).nonzero()
        costs = [{} for _ in tracks]
        for r, c, value in zip(rows.tolist(), cols.tolist(), cost[rows, cols].tolist()):
            costs[r][c] = value
        return costs
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in dets]
    costs = []
    for a in tracks:
        ax1, ay1, ax2, ay2 = a
        area, near = (ax2 - ax1) * (ay2 - ay1), {}
        for j, b in enumerate(dets):
            if ax1 < b[2] and b[0] < ax2 and ay1 < b[3] and b[1] < ay2:  # else IoU 0
                cost = 1.0 - _iou(a, b, area, areas[j])
                if cost < 1.0:
                    near[j] = cost
        costs.append(near)
    return costs


def _iou(a, b, area_a, area_b):
    """IoU of the overlapping boxes ``a`` and ``b`` of areas ``area_a`` and ``area_b``, as
    ``iou_matrix`` rounds it (a zero's sign aside, which does not change 1 - IoU)."""
    width = (a[2] if a[2] < b[2] else b[2]) - (a[0] if a[0] > b[0] else b[0])
    height = (a[3] if a[3] < b[3] else b[3]) - (a[1] if a[1] > b[1] else b[1])
    inter = (width if width > 0 else 0.0) * (height if height > 0 else 0.0)
    union = area_a + area_b - inter
    return inter / (union if union > 1e-12 else 1e-12) if union > 0 else 0.0


class _Track:
    """One track: its ID, class, the last frame a detection matched it, its Kalman state."""

    __slots__ = ('id', 'class_id', 'last', 'mean', 'cov')

    def __init__(self, track_id, class_id, frame, box):
        self.id, self.class_id, self.last = track_id, class_id, frame
        self.mean, self.cov = kalman_init(box)


class ByteTracker:
    """Gives each detection a track ID that stays the same from frame to frame (see module)."""

    def __init__(self, params=None):
        self.params = params or TrackParams()
        self.reset()

    def reset(self):
        """Forget every track; IDs count from 1 again."""
        self._tracks = []  # active ones first, then lost ones
        self._n_active = 0
        self.frame, self._next_id = 0, 1

    @property
    def active_count(self) -> int:
        """Tracks matched in the latest frame."""
        return self._n_active

    @property
    def active_ids(self):
        """IDs of the tracks matched in the latest frame (int array)."""
        return np.array([t.id for t in self._tracks[:self._n_active]], np.int64)

    @property
    def lost_ids(self):
        """IDs of the lost tracks still kept (int array)."""
        return np.array([t.id for t in self._tracks[self._n_active:]], np.int64)

    def track_states(self):
        """(IDs, Kalman means T x 8, covariances T x 8 x 8) of every kept track, active first:
        copies, for tests and diagnostics."""
        ids = np.array([t.id for t in self._tracks], np.int64)
        means = np.array([t.mean for t in self._tracks], np.float64).reshape(-1, 8)
        return ids, means, full_covariance([t.cov for t in self._tracks])

    def update(self, boxes, scores, class_ids):
        """One frame's detections -> their track IDs (int array, -1 for an untracked one).

        ``boxes`` N x 4 (x1 y1 x2 y2, pixels), ``scores`` and ``class_ids`` N values. A
        detection under ``low_threshold``, or a low-score one matching no track, gets -1.
        """
        p = self.params
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()
        scores = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
        class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1).tolist()
        self.frame += 1
        for t in self._tracks:
            t.mean, t.cov = kalman_predict(t.mean, t.cov)
        dets = [i for i, s in enumerate(scores) if s >= p.low_threshold]  # may be tracked
        high = [j for j, i in enumerate(dets) if scores[i] >= p.high_threshold]
        low = [j for j, i in enumerate(dets) if scores[i] < p.high_threshold]
        costs = self._costs([boxes[i] for i in dets], [class_ids[i] for i in dets])
        pairs = self._associate(costs, range(len(self._tracks)), high, p.match_iou)
        matched = {r for r, _ in pairs}
        left = [r for r in range(self._n_active) if r not in matched]
        pairs += self._associate(costs, left, low, p.low_match_iou)
        ids = [-1] * len(boxes)
        for r, j in pairs:
            ids[dets[j]] = self._hit(self._tracks[r], boxes[dets[j]], class_ids[dets[j]])
        taken = {j for _, j in pairs}
        new = [dets[j] for j in high if j not in taken]
        for i, track_id in zip(new, self._retire_and_start(pairs, new, boxes, class_ids)):
            ids[i] = track_id
        return np.array(ids, np.int64)

    def _costs(self, boxes, class_ids):
        """Per track, {detection: cost} of the detections it overlaps (``overlap_costs``),
        of its class only when ``per_class``."""
        costs = overlap_costs([xyah_to_box(t.mean) for t in self._tracks], boxes)
        if self.params.per_class:
            costs = [{j: c for j, c in near.items() if class_ids[j] == t.class_id}
                     for t, near in zip(self._tracks, costs)]
        return costs

    def _associate(self, costs, rows, cols, min_iou):
        """Match the detections ``cols`` to the tracks ``rows`` -> [(row, col)].

        The matrix keeps the rows overlapping a detection of ``cols`` and the first
        ``len(cols) + 1`` others (their costs are all 1.0, the largest: the Hungarian never
        reaches past the first ``len(cols)`` of them, and ``len(cols) + 1`` keep more rows
        than columns when there were)."""
        if not rows or not cols:
            return []
        kept, spare = [], len(cols) + 1
        for r in rows:
            if not costs[r].keys().isdisjoint(cols):
                kept.append(r)
            elif spare:
                kept.append(r)
                spare -= 1
        cost = [[costs[r].get(j, 1.0) for j in cols] for r in kept]
        return [(kept[r], cols[c]) for r, c in match_lists(cost, 1.0 - min_iou)]

    def _hit(self, track, box, class_id):
        """A detection ``box`` of ``class_id`` matched ``track`` this frame -> its ID."""
        track.mean, track.cov = kalman_update(track.mean, track.cov, box)
        track.class_id, track.last = class_id, self.frame
        return track.id

    def _retire_and_start(self, pairs, new, boxes, class_ids):
        """Keep the matched tracks active, then new tracks for the detections ``new``, then
        the lost ones (dropped once lost for more than ``buffer`` frames); returns the new
        IDs."""
        matched = {r for r, _ in pairs}
        born = [_Track(self._next_id + k, class_ids[i], self.frame, boxes[i])
                for k, i in enumerate(new)]
        lost = [t for r, t in enumerate(self._tracks)
                if r not in matched and self.frame - t.last <= self.params.buffer]
        self._tracks = [self._tracks[r] for r in sorted(matched)] + born + lost
        self._n_active = len(self._tracks) - len(lost)
        self._next_id += len(new)
        return [t.id for t in born]
