"""Multi-object tracking by detection: a small ByteTrack-class tracker (one per camera).

Per frame (``ByteTracker.update``), as in ByteTrack (Zhang et al., 2022):

1. every track's box is predicted by a constant-velocity Kalman filter on (centre x, centre y,
   aspect w/h, height) and their velocities (ByteTrack's ``KalmanFilterXYAH`` and noise):
   ``predict``, which a caller may run ahead, before the frame's detections exist;
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
Two paths, the same IDs and states bit for bit (test_tracking_lists.py), chosen per frame by
size (``batched``). The tracks are columns (IDs, classes, last frames, Kalman means and
covariance blocks, ``kalman.py``), kept in the order active then lost: lists after a
plain-Python frame, arrays after a batched one, converted (exactly) only when the path
changes, so that neither path pays for the other's form in a steady scene (``_columns``):

- few tracks and detections (a camera's usual scene): plain Python per track
  (``_update_lists``). Each track is predicted; the IoU of a track's box is computed only
  with the detections it overlaps (a cheap corner test skips the rest, whose cost 1 - IoU
  is 1.0), once for both stages; a stage's matrix holds the tracks overlapping one of its
  detections and the first ``detections + 1`` tracks overlapping none (rows of 1.0: the
  Hungarian never reaches the others, ``assignment.py``), matched in plain Python
  (``match_lists``). This costs less than numpy's per-call overhead, above all after idle
  time with cold caches;
- crowds: batched numpy (``_update_arrays``), every track predicted and corrected in one
  step, the IoU of every track with every detection computed once for both stages, matched
  by ``match_arrays``: its cost grows slowly with the size, where plain Python's grows with
  tracks x detections.

Pure Python and numpy; no ROS.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.assignment import match_arrays, match_lists
from tx2_infer_core.kalman import (full_covariance, init_arrays, kalman_init, kalman_predict,
                                   kalman_update, predict_arrays, update_arrays, xyah_to_box,
                                   xyah_to_boxes)
from tx2_infer_core.kalman import KalmanBox, box_to_xyah  # noqa: F401 (API)

# ``update`` runs batched from tracks x (detections + PER_TRACK) = BATCHED_COST on (see
# ``batched``): fitted to per-frame timings of both paths forced, 2 to 40 objects walking.
BATCHED_COST, PER_TRACK = 1300, 40


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
    roundings, in plain Python."""
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


def plain_lists(boxes, scores, class_ids):
    """Detections (N x 4 boxes, N scores, N class IDs; lists or arrays) -> plain Python
    lists of floats and ints, the values numpy's float64 / int64 conversion gives, without a
    numpy call: at a camera's few detections numpy's per-call cost, above all with cold
    caches after idle time (the node's case), exceeds the work."""
    if not len(boxes) == len(scores) == len(class_ids):
        raise ValueError(f'{len(boxes)} boxes, {len(scores)} scores and {len(class_ids)} '
                         'class IDs: one of each per detection')
    return ([[float(x1), float(y1), float(x2), float(y2)] for x1, y1, x2, y2 in boxes],
            [float(score) for score in scores], [int(class_id) for class_id in class_ids])


def batched(n_tracks, n_dets):
    """Whether ``update`` runs batched on arrays (``_update_arrays``) for ``n_tracks`` tracks
    and ``n_dets`` detections, rather than in plain Python (``_update_lists``).

    Plain Python costs a part per track (its Kalman steps, its box, its reordering: measured,
    about ``PER_TRACK`` track-detection pairs' worth) and a part per pair (the corner test,
    the IoU); the batched path costs numpy's per-call overhead, nearly flat up to crowds. The
    switch is where the first overtakes the second: a camera's usual scene (under ~25
    tracks and ~10 detections) stays in plain Python, crowds (``bench_tracking_cost.py``'s
    ``crowd20`` on) run batched."""
    return n_tracks * (n_dets + PER_TRACK) >= BATCHED_COST


class ByteTracker:
    """Gives each detection a track ID that stays the same from frame to frame (see module)."""

    def __init__(self, params=None):
        self.params = params or TrackParams()
        self.reset()

    def reset(self):
        """Forget every track; IDs count from 1 again."""
        # Per track, active ones first, then lost ones (see ``_columns``).
        self._ids, self._classes, self._last, self._mean, self._cov = [], [], [], [], []
        self._n_active = 0
        self.frame, self._next_id = 0, 1
        self._predicted = False  # the states are already at the next frame (``predict``)

    @property
    def active_count(self) -> int:
        """Tracks matched in the latest frame."""
        return self._n_active

    @property
    def active_ids(self):
        """IDs of the tracks matched in the latest frame (int array)."""
        return np.array(self._ids[:self._n_active], np.int64)

    @property
    def lost_ids(self):
        """IDs of the lost tracks still kept (int array)."""
        return np.array(self._ids[self._n_active:], np.int64)

    def track_states(self):
        """(IDs, Kalman means T x 8, covariances T x 8 x 8) of every kept track, active first:
        copies, for tests and diagnostics."""
        return (np.array(self._ids, np.int64), np.array(self._mean, np.float64).reshape(-1, 8),
                full_covariance(np.reshape(self._cov, (-1, 16))))

    def update(self, boxes, scores, class_ids):
        """One frame's detections -> their track IDs (int array, -1 for an untracked one).

        ``boxes`` N x 4 (x1 y1 x2 y2, pixels), ``scores`` and ``class_ids`` N values. A
        detection under ``low_threshold``, or a low-score one matching no track, gets -1.
        """
        self.predict()
        self._predicted = False
        if batched(len(self._ids), len(scores)):
            self._columns_as_arrays()
            return self._update_arrays(np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                       np.asarray(scores, dtype=np.float64).reshape(-1),
                                       np.asarray(class_ids, dtype=np.int64).reshape(-1))
        self._columns_as_lists()
        return self._update_lists(*plain_lists(boxes, scores, class_ids))

    def predict(self):
        """Step 1 of ``update`` ahead of it: every track's Kalman state advanced to the next
        frame, which needs no detection. ``update`` runs it when it was not called since the
        last frame; the node calls it while the GPU runs the frame, off the latency path. The
        same states bit for bit either way (the lists and arrays forms round alike)."""
        if self._predicted:
            return
        self.frame += 1
        if isinstance(self._mean, list):
            means, covs = self._mean, self._cov
            for r, (mean, cov) in enumerate(zip(means, covs)):
                means[r], covs[r] = kalman_predict(mean, cov)
        else:
            self._mean, self._cov = predict_arrays(self._mean, self._cov)
        self._predicted = True

    def _columns(self):
        """The per-track columns, in the order ``_retire_and_start`` sets them: IDs, classes,
        the last frame a detection matched each, Kalman means and covariance blocks. Lists
        after a plain-Python update (a value a track, a list of 8 a mean, of 16 a
        covariance), arrays after a batched one (``kalman.py``'s N x 8 and N x 4 x 4): each
        path takes them in its own kind, converted (exactly) when the last frame ran the
        other."""
        return self._ids, self._classes, self._last, self._mean, self._cov

    def _columns_as_arrays(self):
        """The columns as ``_update_arrays`` takes them."""
        if isinstance(self._ids, list):
            ids, classes, last, mean, cov = self._columns()
            self._ids, self._classes, self._last = (np.array(column, np.int64)
                                                    for column in (ids, classes, last))
            self._mean = np.array(mean, np.float64).reshape(-1, 8)
            self._cov = np.array(cov, np.float64).reshape(-1, 4, 4)

    def _columns_as_lists(self):
        """The columns as ``_update_lists`` takes them."""
        if not isinstance(self._ids, list):
            ids, classes, last, mean, cov = self._columns()
            self._ids, self._classes, self._last = ids.tolist(), classes.tolist(), last.tolist()
            self._mean, self._cov = mean.tolist(), cov.reshape(-1, 16).tolist()

    def _update_arrays(self, boxes, scores, class_ids):
        """``update`` batched on the arrays (see module)."""
        p = self.params
        dets = (scores >= p.low_threshold).nonzero()[0]  # the detections that may be tracked
        high = scores[dets] >= p.high_threshold
        low = (~high).nonzero()[0]
        iou = iou_matrix(xyah_to_boxes(self._mean), boxes[dets])  # both stages' IoU
        rows, cols = self._match_arrays(iou, np.arange(len(self._ids)), high.nonzero()[0],
                                        class_ids[dets], p.match_iou)
        matched = np.zeros(len(self._ids), bool)
        matched[rows] = True
        high[cols] = False  # left: the unmatched high-score detections
        low_rows, low_cols = self._match_arrays(iou, (~matched[:self._n_active]).nonzero()[0],
                                                low, class_ids[dets], p.low_match_iou)
        matched[low_rows] = True
        rows, hits = np.concatenate([rows, low_rows]), dets[np.concatenate([cols, low_cols])]
        self._hit(rows, boxes[hits], class_ids[hits])
        ids = np.full(len(boxes), -1, dtype=np.int64)
        ids[hits] = self._ids[rows]
        new = dets[high]
        ids[new] = self._retire_and_start(matched, boxes[new], class_ids[new])
        return ids

    def _match_arrays(self, iou, rows, cols, class_ids, min_iou):
        """Match the detections ``cols`` of ``iou`` (with classes ``class_ids``) to its tracks
        ``rows`` -> (matched rows, their columns)."""
        if not len(rows) or not len(cols):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cost = 1.0 - iou[rows[:, None], cols]
        if self.params.per_class:
            cost = np.where(self._classes[rows][:, None] == class_ids[cols], cost, 1.0)
        r, c = match_arrays(cost, 1.0 - min_iou)
        return rows[r], cols[c]

    def _hit(self, rows, boxes, class_ids):
        """Detections ``boxes`` of ``class_ids`` matched the tracks ``rows`` this frame."""
        if len(rows):
            self._mean[rows], self._cov[rows] = update_arrays(self._mean[rows],
                                                              self._cov[rows], boxes)
        self._classes[rows] = class_ids
        self._last[rows] = self.frame

    def _retire_and_start(self, matched, boxes, class_ids):
        """Keep the matched tracks active, then new tracks for ``boxes``, then the lost ones
        (dropped once lost for more than ``buffer`` frames); returns the new IDs."""
        n_old, n_new = len(self._ids), len(boxes)
        lost = (~matched & (self.frame - self._last <= self.params.buffer)).nonzero()[0]
        order = np.concatenate([matched.nonzero()[0], np.arange(n_old, n_old + n_new),
                                lost])
        new_ids = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
        tracks = self._columns()
        if n_new:
            born = (new_ids, class_ids, np.full(n_new, self.frame)) + init_arrays(boxes)
            tracks = [np.concatenate(pair) for pair in zip(tracks, born)]
        self._ids, self._classes, self._last, self._mean, self._cov = (a[order] for a in tracks)
        self._n_active = len(order) - len(lost)
        self._next_id += n_new
        return new_ids

    def _update_lists(self, boxes, scores, class_ids):
        """``update`` in plain Python on the columns as lists (see module)."""
        p = self.params
        track_ids, classes, last, means, covs = self._columns()
        dets = [i for i, s in enumerate(scores) if s >= p.low_threshold]  # may be tracked
        high = [j for j, i in enumerate(dets) if scores[i] >= p.high_threshold]
        low = [j for j, i in enumerate(dets) if scores[i] < p.high_threshold]
        costs = overlap_costs([xyah_to_box(mean) for mean in means], [boxes[i] for i in dets])
        if p.per_class:
            costs = [{j: c for j, c in near.items() if class_ids[dets[j]] == track_class}
                     for track_class, near in zip(classes, costs)]
        pairs = _match_lists(costs, range(len(means)), high, p.match_iou)
        matched = {r for r, _ in pairs}
        left = [r for r in range(self._n_active) if r not in matched]
        pairs += _match_lists(costs, left, low, p.low_match_iou)
        ids = [-1] * len(boxes)
        for r, j in pairs:
            i = dets[j]
            means[r], covs[r] = kalman_update(means[r], covs[r], boxes[i])
            classes[r], last[r], ids[i] = class_ids[i], self.frame, track_ids[r]
        taken = {j for _, j in pairs}
        new = [dets[j] for j in high if j not in taken]
        new_ids = self._retire_and_start_lists({r for r, _ in pairs}, [boxes[i] for i in new],
                                               [class_ids[i] for i in new])
        for i, track_id in zip(new, new_ids):
            ids[i] = track_id
        return np.array(ids, np.int64)

    def _retire_and_start_lists(self, matched, boxes, class_ids):
        """``_retire_and_start`` on the columns as lists, ``matched`` a set of rows."""
        last, n_old, n_new = self._last, len(self._last), len(boxes)
        lost = [r for r in range(n_old)
                if r not in matched and self.frame - last[r] <= self.params.buffer]
        order = sorted(matched) + list(range(n_old, n_old + n_new)) + lost
        new_ids = list(range(self._next_id, self._next_id + n_new))
        for track_id, box, class_id in zip(new_ids, boxes, class_ids):  # appended, then ordered
            values = (track_id, class_id, self.frame) + kalman_init(box)
            for column, value in zip(self._columns(), values):
                column.append(value)
        self._ids, self._classes, self._last, self._mean, self._cov = (
            [column[r] for r in order] for column in self._columns())
        self._n_active = len(order) - len(lost)
        self._next_id += n_new
        return new_ids


def _match_lists(costs, rows, cols, min_iou):
    """Match the detections ``cols`` to the tracks ``rows`` of ``costs`` (per track,
    {detection: cost}) -> [(row, col)].

    The matrix keeps the rows overlapping a detection of ``cols`` and the first
    ``len(cols) + 1`` others (their costs are all 1.0, the largest: the Hungarian never
    reaches past the first ``len(cols)`` of them, and ``len(cols) + 1`` keep more rows than
    columns when there were)."""
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
