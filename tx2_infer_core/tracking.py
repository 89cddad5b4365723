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
The tracks live in arrays (Kalman means T x 8, covariances T x 8 x 8, IDs, classes, last
frames), kept in the order active then lost; each frame predicts every track and corrects
the matched ones in one batched step. Pure Python and numpy; no ROS.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.assignment import match_arrays

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
    return boxes_to_xyah(np.asarray(box, dtype=np.float64).reshape(1, 4))[0]


def xyah_to_box(xyah):
    """centre x, centre y, aspect, height -> x1 y1 x2 y2."""
    return xyah_to_boxes(np.asarray(xyah, dtype=np.float64).reshape(1, -1))[0]


def boxes_to_xyah(boxes):
    """N x 4 boxes (x1 y1 x2 y2) -> N x 4 (centre x, centre y, aspect w / h, height)."""
    x1, y1, x2, y2 = boxes.T
    h = np.maximum(y2 - y1, 1e-6)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h], axis=1)


def xyah_to_boxes(xyah):
    """N x (4 or more) rows (x, y, a, h, ...) -> N x 4 boxes (x1 y1 x2 y2)."""
    x, y, a, h = xyah[:, 0], xyah[:, 1], xyah[:, 2], xyah[:, 3]
    w = a * h
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def _diag(std):
    """N x 8 standard deviations -> N x 8 x 8 diagonal covariances."""
    cov = np.zeros(std.shape + (std.shape[1],))
    idx = np.arange(std.shape[1])
    cov[:, idx, idx] = std ** 2
    return cov


def kalman_init(boxes):
    """Constant-velocity Kalman states of new tracks: N x 4 boxes -> (means N x 8, covariances
    N x 8 x 8); state (x, y, a, h, vx, vy, va, vh), velocities 0."""
    xyah = boxes_to_xyah(boxes)
    h = xyah[:, 3]
    pos, vel = 2 * _STD_POSITION * h, 10 * _STD_VELOCITY * h
    std = np.stack([pos, pos, np.full_like(h, 1e-2), pos, vel, vel, np.full_like(h, 1e-5),
                    vel], axis=1)
    return np.hstack([xyah, np.zeros_like(xyah)]), _diag(std)


def kalman_predict(mean, cov):
    """Advance N states one frame: x += v; P = F P F^T + Q with F = [[I, I], [0, I]]."""
    h = mean[:, 3]
    pos, vel = _STD_POSITION * h, _STD_VELOCITY * h
    std = np.stack([pos, pos, np.full_like(h, 1e-2), pos, vel, vel, np.full_like(h, 1e-5),
                    vel], axis=1)
    mean = mean.copy()
    mean[:, :4] += mean[:, 4:]
    fp = cov.copy()  # F P: row block 0 += row block 1
    fp[:, :4] += cov[:, 4:]
    fpf = fp.copy()  # (F P) F^T: column block 0 += column block 1
    fpf[:, :, :4] += fp[:, :, 4:]
    return mean, fpf + _diag(std)


def kalman_update(mean, cov, boxes):
    """Correct N states with N measured boxes (x1 y1 x2 y2) -> (means, covariances)."""
    z = boxes_to_xyah(boxes)
    h = mean[:, 3]
    pos = _STD_POSITION * h
    noise = np.stack([pos, pos, np.full_like(h, 1e-1), pos], axis=1)
    proj_cov = cov[:, :4, :4] + _diag(noise)  # H P H^T + R, H = [I 0]
    gain = np.linalg.solve(proj_cov, cov[:, :4, :]).transpose(0, 2, 1)  # P H^T S^-1
    mean = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
    return mean, cov - gain @ proj_cov @ gain.transpose(0, 2, 1)


class KalmanBox:
    """Constant-velocity Kalman filter of one box (the batched functions on one state)."""

    def __init__(self, box):
        self._mean, self._cov = kalman_init(np.asarray(box, np.float64).reshape(1, 4))

    @property
    def mean(self):
        """State (x, y, a, h, vx, vy, va, vh)."""
        return self._mean[0]

    @property
    def cov(self):
        """8 x 8 state covariance."""
        return self._cov[0]

    def predict(self):
        """Advance one frame."""
        self._mean, self._cov = kalman_predict(self._mean, self._cov)

    def update(self, box):
        """Correct the state with a measured box (x1 y1 x2 y2)."""
        box = np.asarray(box, np.float64).reshape(1, 4)
        self._mean, self._cov = kalman_update(self._mean, self._cov, box)

    @property
    def box(self):
        """The current box estimate, x1 y1 x2 y2."""
        return xyah_to_box(self.mean)


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
        self._mean, self._cov = np.zeros((0, 8)), np.zeros((0, 8, 8))
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
        return self._ids.copy(), self._mean.copy(), self._cov.copy()

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
        predicted = xyah_to_boxes(self._mean)
        high = np.flatnonzero(scores >= p.high_threshold)
        low = np.flatnonzero((scores >= p.low_threshold) & (scores < p.high_threshold))
        rows, dets = self._associate(predicted, np.arange(len(self._ids)), high, boxes,
                                     class_ids, p.match_iou)
        matched = np.zeros(len(self._ids), bool)
        matched[rows] = True
        left_active = np.flatnonzero(~matched[:self._n_active])
        low_rows, low_dets = self._associate(predicted, left_active, low, boxes, class_ids,
                                             p.low_match_iou)
        matched[low_rows] = True
        is_new = np.zeros(len(boxes), bool)
        is_new[high] = True
        is_new[dets] = False
        new = np.flatnonzero(is_new)
        rows, dets = np.concatenate([rows, low_rows]), np.concatenate([dets, low_dets])
        self._hit(rows, boxes[dets], class_ids[dets])
        ids = np.full(len(boxes), -1, dtype=np.int64)
        ids[dets] = self._ids[rows]
        ids[new] = self._retire_and_start(matched, boxes[new], class_ids[new])
        return ids

    def _associate(self, predicted, rows, dets, boxes, class_ids, min_iou):
        """Match detections ``dets`` to tracks ``rows`` (indices) by the IoU of the predicted
        boxes -> (matched track rows, their detections)."""
        if not len(rows) or not len(dets):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cost = 1.0 - iou_matrix(predicted[rows], boxes[dets])
        if self.params.per_class:
            same = self._classes[rows][:, None] == class_ids[dets][None]
            cost = np.where(same, cost, 1.0)
        r, c = match_arrays(cost, 1.0 - min_iou)
        return rows[r], dets[c]

    def _hit(self, rows, boxes, class_ids):
        """Detections ``boxes`` of ``class_ids`` matched the tracks ``rows`` this frame."""
        if len(rows):
            self._mean[rows], self._cov[rows] = kalman_update(self._mean[rows],
                                                              self._cov[rows], boxes)
        self._classes[rows] = class_ids
        self._last[rows] = self.frame

    def _retire_and_start(self, matched, boxes, class_ids):
        """Keep the matched tracks active, then new tracks for ``boxes``, then the lost ones
        (dropped once lost for more than ``buffer`` frames); returns the new IDs."""
        n_old, n_new = len(self._ids), len(boxes)
        lost = np.flatnonzero(~matched & (self.frame - self._last <= self.params.buffer))
        order = np.concatenate([np.flatnonzero(matched), np.arange(n_old, n_old + n_new),
                                lost])
        new_ids = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
        mean, cov = kalman_init(boxes)
        self._ids = np.concatenate([self._ids, new_ids])[order]
        self._classes = np.concatenate([self._classes, class_ids])[order]
        self._last = np.concatenate([self._last, np.full(n_new, self.frame)])[order]
        self._mean = np.concatenate([self._mean, mean])[order]
        self._cov = np.concatenate([self._cov, cov])[order]
        self._n_active = len(order) - len(lost)
        self._next_id += n_new
        return new_ids
