"""THE ORACLE: the tracker and the Hungarian as they were before they were batched
(tx2_infer_core/tracking.py and assignment.py at commit 3491705f / 7697f7fb: one Python
object and one Kalman filter per track, one augmenting path per row). Frozen here, unchanged
but for this docstring and imports, so that test_tracking_equivalence.py can check the fast
version gives the same IDs and Kalman states. Do not optimise this file.
"""
import numpy as np

from tx2_infer_core.tracking import TrackParams


def linear_sum_assignment(cost):
    """Rows and columns of a minimum-cost assignment of the 2-D ``cost`` matrix.

    Every row is assigned when rows <= columns, else every column; returns ``(rows, cols)``
    (int arrays, sorted by row) so that ``cost[rows, cols].sum()`` is minimal. Raises
    ``ValueError`` on a matrix that is not 2-D or holds NaN or infinity.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f'cost must be a 2-D matrix, got shape {cost.shape}')
    if not np.all(np.isfinite(cost)):
        raise ValueError('cost holds NaN or infinity')
    if cost.shape[0] > cost.shape[1]:
        cols, rows = _assign_rows(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    return _assign_rows(cost)


def _assign_rows(cost):
    """Assign every row of ``cost`` (rows <= columns) to a distinct column."""
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: 1-based row of column j, 0 = free
    for row in range(1, n + 1):
        way = _augmenting_path(cost, row, u, v, owner)
        _augment(owner, way)
    cols = np.nonzero(owner[1:])[0]
    rows = owner[1:][cols] - 1
    order = np.argsort(rows)
    return rows[order], cols[order]


def _augmenting_path(cost, row, u, v, owner):
    """Grow a shortest alternating path from ``row`` to a free column (Dijkstra on reduced
    costs), updating the potentials; returns the predecessor array ending at a free column
    stored as ``way[0]``."""
    m = cost.shape[1]
    owner[0] = row
    minv = np.full(m + 1, np.inf)
    used = np.zeros(m + 1, dtype=bool)
    way = np.zeros(m + 1, dtype=np.int64)
    col = 0
    while True:
        used[col] = True
        i = owner[col]
        reduced = cost[i - 1] - u[i] - v[1:]
        free = ~used[1:]
        better = free & (reduced < minv[1:])
        minv[1:][better] = reduced[better]
        way[1:][better] = col
        candidates = np.where(free, minv[1:], np.inf)
        nxt = int(np.argmin(candidates)) + 1
        delta = candidates[nxt - 1]
        u[owner[used]] += delta
        v[used] -= delta
        minv[1:][free] -= delta
        col = nxt
        if owner[col] == 0:
            way[0] = col
            return way


def _augment(owner, way):
    """Flip the alternating path that ends at free column ``way[0]``."""
    col = int(way[0])
    while col:
        prev = int(way[col])
        owner[col] = owner[prev]
        col = prev


def match(cost, max_cost):
    """Minimum-cost matching that keeps only pairs costing at most ``max_cost``.

    Returns ``(pairs, unmatched_rows, unmatched_cols)``: a list of (row, col) and two lists.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= max_cost
    pairs = [(int(r), int(c)) for r, c in zip(rows[keep], cols[keep])]
    matched_rows = {r for r, _ in pairs}
    matched_cols = {c for _, c in pairs}
    return (pairs, [r for r in range(n) if r not in matched_rows],
            [c for c in range(m) if c not in matched_cols])


# ByteTrack's process and measurement noise, relative to the box height.
_STD_POSITION, _STD_VELOCITY = 1.0 / 20, 1.0 / 160


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
