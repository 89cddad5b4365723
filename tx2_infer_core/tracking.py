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
Pure Python and numpy; no ROS.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.assignment import match

# ByteTrack's process and measurement noise, relative to the box height.
_STD_POSITION, _STD_VELOCITY = 1.0 / 20, 1.0 / 160


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
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_to_xyah(box):
    """x1 y1 x2 y2 -> centre x, centre y, aspect (w / h), height."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h = max(y2 - y1, 1e-6)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h])


def xyah_to_box(xyah):
    """centre x, centre y, aspect, height -> x1 y1 x2 y2."""
    x, y, a, h = (float(v) for v in xyah[:4])
    w = a * h
    return np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2])


class KalmanBox:
    """Constant-velocity Kalman filter of one box: state (x, y, a, h, vx, vy, va, vh)."""

    _F = np.eye(8) + np.eye(8, k=4)  # x += v each frame
    _H = np.eye(4, 8)

    def __init__(self, box):
        xyah = box_to_xyah(box)
        self.mean = np.concatenate([xyah, np.zeros(4)])
        h = xyah[3]
        std = np.array([2 * _STD_POSITION * h, 2 * _STD_POSITION * h, 1e-2,
                        2 * _STD_POSITION * h, 10 * _STD_VELOCITY * h,
                        10 * _STD_VELOCITY * h, 1e-5, 10 * _STD_VELOCITY * h])
        self.cov = np.diag(std ** 2)

    def predict(self):
        """Advance one frame."""
        h = self.mean[3]
        std = np.array([_STD_POSITION * h, _STD_POSITION * h, 1e-2, _STD_POSITION * h,
                        _STD_VELOCITY * h, _STD_VELOCITY * h, 1e-5, _STD_VELOCITY * h])
        self.mean = self._F @ self.mean
        self.cov = self._F @ self.cov @ self._F.T + np.diag(std ** 2)

    def update(self, box):
        """Correct the state with a measured box (x1 y1 x2 y2)."""
        z = box_to_xyah(box)
        h = self.mean[3]
        noise = np.diag(np.array([_STD_POSITION * h, _STD_POSITION * h, 1e-1,
                                  _STD_POSITION * h]) ** 2)
        proj_cov = self._H @ self.cov @ self._H.T + noise
        gain = np.linalg.solve(proj_cov, self._H @ self.cov).T
        self.mean = self.mean + gain @ (z - self._H @ self.mean)
        self.cov = self.cov - gain @ proj_cov @ gain.T

    @property
    def box(self):
        """The current box estimate, x1 y1 x2 y2."""
        return xyah_to_box(self.mean)


class Track:
    """One tracked object: its ID, class, filter, and the last frame it was matched in."""

    def __init__(self, track_id, box, class_id, frame):
        self.track_id, self.class_id = track_id, int(class_id)
        self.kalman = KalmanBox(box)
        self.last_frame = self.first_frame = frame
        self.hits = 1

    def hit(self, box, class_id, frame):
        """A detection of ``class_id`` matched this track in ``frame``."""
        self.kalman.update(box)
        self.class_id = int(class_id)
        self.last_frame = frame
        self.hits += 1


class ByteTracker:
    """Gives each detection a track ID that stays the same from frame to frame (see module)."""

    def __init__(self, params=None):
        self.params = params or TrackParams()
        self.reset()

    def reset(self):
        """Forget every track; IDs count from 1 again."""
        self.active, self.lost = [], []
        self.frame, self._next_id = 0, 1

    @property
    def active_count(self) -> int:
        """Tracks matched in the latest frame."""
        return len(self.active)

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
        ids = np.full(len(boxes), -1, dtype=np.int64)
        for track in self.active + self.lost:
            track.kalman.predict()
        high = np.nonzero(scores >= p.high_threshold)[0]
        low = np.nonzero((scores >= p.low_threshold) & (scores < p.high_threshold))[0]
        pool = self.active + self.lost
        left, left_high = self._associate(pool, high, boxes, class_ids, p.match_iou, ids)
        self._associate([t for t in left if t in self.active], low, boxes, class_ids,
                        p.low_match_iou, ids)
        self._retire(pool)
        for det in left_high:
            ids[det] = self._start(boxes[det], class_ids[det])
        return ids

    def _associate(self, tracks, dets, boxes, class_ids, min_iou, ids):
        """Match ``dets`` (indices) to ``tracks`` by IoU; write matched IDs into ``ids``.
        Returns the unmatched tracks and unmatched detection indices."""
        if not len(tracks) or not len(dets):
            return list(tracks), list(dets)
        predicted = np.array([t.kalman.box for t in tracks])
        iou = iou_matrix(predicted, boxes[dets])
        cost = 1.0 - iou
        if self.params.per_class:
            same = np.array([t.class_id for t in tracks])[:, None] == class_ids[dets][None]
            cost = np.where(same, cost, 1.0)
        pairs, rows, cols = match(cost, 1.0 - min_iou)
        for row, col in pairs:
            tracks[row].hit(boxes[dets[col]], class_ids[dets[col]], self.frame)
            ids[dets[col]] = tracks[row].track_id
        return [tracks[r] for r in rows], [dets[c] for c in cols]

    def _retire(self, pool):
        """Tracks matched this frame are active; the others are lost, and dropped once lost
        for more than ``buffer`` frames."""
        self.active = [t for t in pool if t.last_frame == self.frame]
        self.lost = [t for t in pool if t.last_frame != self.frame
                     and self.frame - t.last_frame <= self.params.buffer]

    def _start(self, box, class_id) -> int:
        track = Track(self._next_id, box, class_id, self.frame)
        self._next_id += 1
        self.active.append(track)
        return track.track_id
