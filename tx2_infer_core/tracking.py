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
The tracks live in arrays (Kalman means T x 8 and covariance blocks T x 4 x 4, ``kalman.py``;
IDs, classes, last frames), kept in the order active then lost; each frame predicts every
track and corrects the matched ones in one batched step, and computes the IoU of every track
with every detection once for both stages. Pure Python and numpy; no ROS.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.assignment import match_arrays
from tx2_infer_core.kalman import (full_covariance, kalman_init, kalman_predict, kalman_update,
                                   xyah_to_boxes)
from tx2_infer_core.kalman import KalmanBox, box_to_xyah, xyah_to_box  # noqa: F401 (API)


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


class ByteTracker:
    """Gives each detection a track ID that stays the same from frame to frame (see module)."""

    def __init__(self, params=None):
        self.params = params or TrackParams()
        self.reset()

    def reset(self):
        """Forget every track; IDs count from 1 again."""
        self._ids = np.zeros(0, np.int64)  # per track, active ones first, then lost ones
        self._classes = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)  # the last frame a detection matched it
        self._mean, self._cov = np.zeros((0, 8)), np.zeros((0, 4, 4))
        self._n_active = 0
        self.frame, self._next_id = 0, 1

    @property
    def active_count(self) -> int:
        """Tracks matched in the latest frame."""
        return self._n_active

    @property
    def active_ids(self):
        """IDs of the tracks matched in the latest frame (int array)."""
        return self._ids[:self._n_active].copy()

    @property
    def lost_ids(self):
        """IDs of the lost tracks still kept (int array)."""
        return self._ids[self._n_active:].copy()

    def track_states(self):
        """(IDs, Kalman means T x 8, covariances T x 8 x 8) of every kept track, active first:
        copies, for tests and diagnostics."""
        return self._ids.copy(), self._mean.copy(), full_covariance(self._cov)

    def update(self, boxes, scores, class_ids):
        """One frame's detections -> their track IDs (int array, -1 for an untracked one).

        ``boxes`` N x 4 (x1 y1 x2 y2, pixels), ``scores`` and ``class_ids`` N values. A
        detection under ``low_threshold``, or a low-score one matching no track, gets -1.
        """
        p = self.params
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        self.frame += 1
        self._mean, self._cov = kalman_predict(self._mean, self._cov)
        dets = (scores >= p.low_threshold).nonzero()[0]  # the detections that may be tracked
        high = scores[dets] >= p.high_threshold
        low = (~high).nonzero()[0]
        iou = iou_matrix(xyah_to_boxes(self._mean), boxes[dets])  # both stages' IoU
        rows, cols = self._associate(iou, np.arange(len(self._ids)), high.nonzero()[0],
                                     class_ids[dets], p.match_iou)
        matched = np.zeros(len(self._ids), bool)
        matched[rows] = True
        high[cols] = False  # left: the unmatched high-score detections
        low_rows, low_cols = self._associate(iou, (~matched[:self._n_active]).nonzero()[0],
                                             low, class_ids[dets], p.low_match_iou)
        matched[low_rows] = True
        rows, hits = np.concatenate([rows, low_rows]), dets[np.concatenate([cols, low_cols])]
        self._hit(rows, boxes[hits], class_ids[hits])
        ids = np.full(len(boxes), -1, dtype=np.int64)
        ids[hits] = self._ids[rows]
        new = dets[high]
        ids[new] = self._retire_and_start(matched, boxes[new], class_ids[new])
        return ids

    def _associate(self, iou, rows, cols, class_ids, min_iou):
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
            self._mean[rows], self._cov[rows] = kalman_update(self._mean[rows],
                                                              self._cov[rows], boxes)
        self._classes[rows] = class_ids
        self._last[rows] = self.frame

    def _arrays(self):
        """The per-track arrays, in the order ``_retire_and_start`` sets them."""
        return self._ids, self._classes, self._last, self._mean, self._cov

    def _retire_and_start(self, matched, boxes, class_ids):
        """Keep the matched tracks active, then new tracks for ``boxes``, then the lost ones
        (dropped once lost for more than ``buffer`` frames); returns the new IDs."""
        n_old, n_new = len(self._ids), len(boxes)
        lost = (~matched & (self.frame - self._last <= self.params.buffer)).nonzero()[0]
        order = np.concatenate([matched.nonzero()[0], np.arange(n_old, n_old + n_new),
                                lost])
        new_ids = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
        tracks = self._arrays()
        if n_new:
            born = (new_ids, class_ids, np.full(n_new, self.frame)) + kalman_init(boxes)
            tracks = [np.concatenate(pair) for pair in zip(tracks, born)]
        self._ids, self._classes, self._last, self._mean, self._cov = (a[order] for a in tracks)
        self._n_active = len(order) - len(lost)
        self._next_id += n_new
        return new_ids
