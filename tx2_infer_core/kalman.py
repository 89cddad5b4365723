"""The tracker's constant-velocity Kalman filter, batched over tracks (ByteTrack's
``KalmanFilterXYAH``: state x, y, a, h and their velocities; noise relative to the height).

Each of x, y, a, h moves by its own velocity and is measured on its own (F = [[I, I], [0, I]],
Q, H = [I 0] and R act per coordinate), so the 8 x 8 covariance is four 2 x 2 blocks, one
per coordinate and its velocity, [[pp, pv], [vp, vv]], zeros elsewhere, and stays so. The
covariances are kept as those blocks: ``cov[:, k, i]`` is entry k (``PP, PV, VP, VV``) of
coordinate i's block, N x 4 x 4, and every step is a few elementwise operations on N x 4
arrays. Each step rounds as the 8 x 8 matrix form (``F P F^T + Q``, LAPACK's solve, which
multiplies by 1 / s) does; pv and vp are kept apart, as that form rounds them apart.
"""
import numpy as np

PP, PV, VP, VV = range(4)  # (K S)-row and K-row of each entry: PP = pos pos, PV = pos vel...

# ByteTrack's standard deviations of (x, y, a, h, vx, vy, va, vh): multiples of the box
# height, but for the aspect and its velocity (fixed); as (per height, fixed) pairs.
_STD_POSITION, _STD_VELOCITY = 1.0 / 20, 1.0 / 160
_P, _V = _STD_POSITION, _STD_VELOCITY
_FIXED = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])
_INIT_STD = (np.array([2 * _P, 2 * _P, 0, 2 * _P, 10 * _V, 10 * _V, 0, 10 * _V]), _FIXED)
_PROCESS_STD = (np.array([_P, _P, 0, _P, _V, _V, 0, _V]), _FIXED)
_MEASURE_STD = (np.array([_P, _P, 0, _P]), np.array([0, 0, 1e-1, 0]))


def box_to_xyah(box):
    """x1 y1 x2 y2 -> centre x, centre y, aspect (w / h), height."""
    return boxes_to_xyah(np.asarray(box, dtype=np.float64).reshape(1, 4))[0]


def xyah_to_box(xyah):
    """centre x, centre y, aspect, height -> x1 y1 x2 y2."""
    return xyah_to_boxes(np.asarray(xyah, dtype=np.float64).reshape(1, -1))[0]


def boxes_to_xyah(boxes):
    """N x 4 boxes (x1 y1 x2 y2) -> N x 4 (centre x, centre y, aspect w / h, height)."""
    size = boxes[:, 2:] - boxes[:, :2]
    h = np.maximum(size[:, 1:], 1e-6)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, size[:, :1] / h, h], axis=1)


def xyah_to_boxes(xyah):
    """N x (4 or more) rows (x, y, a, h, ...) -> N x 4 boxes (x1 y1 x2 y2)."""
    half = xyah[:, 2:4].copy()
    half[:, 0] *= xyah[:, 3]  # w = a h
    half /= 2
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


def _variance(mean, per_height, fixed):
    """Variances ``(per_height * h + fixed) ** 2`` of states with heights ``mean[:, 3]``."""
    return (mean[:, 3:4] * per_height + fixed) ** 2


def kalman_init(boxes):
    """States of new tracks: N x 4 boxes -> (means N x 8, covariance blocks N x 4 x 4); the
    velocities are 0."""
    mean = np.zeros((len(boxes), 8))
    mean[:, :4] = boxes_to_xyah(boxes)
    var = _variance(mean, *_INIT_STD)
    cov = np.zeros((len(boxes), 4, 4))
    cov[:, PP], cov[:, VV] = var[:, :4], var[:, 4:]
    return mean, cov


def kalman_predict(mean, cov):
    """Advance N states one frame: x += v; P = F P F^T + Q."""
    var = _variance(mean, *_PROCESS_STD)
    sums = cov[:, :2] + cov[:, 2:]  # F P, first rows: pp + vp, pv + vv
    out = np.empty_like(cov)
    out[:, PP] = sums[:, 0] + sums[:, 1] + var[:, :4]
    out[:, PV] = sums[:, 1]
    out[:, VP] = cov[:, VP] + cov[:, VV]
    out[:, VV] = cov[:, VV] + var[:, 4:]
    mean = mean.copy()
    mean[:, :4] += mean[:, 4:]
    return mean, out


def kalman_update(mean, cov, boxes):
    """Correct N states with N measured boxes (x1 y1 x2 y2) -> (means, covariance blocks).

    Per coordinate: innovation covariance s = pp + r, gain k = (pp, pv) / s; the mean moves
    by k times the innovation, the block loses (k s) k^T."""
    s = cov[:, PP] + _variance(mean, *_MEASURE_STD)
    gain = cov[:, :2] * (1.0 / s)[:, None]  # (k_pos, k_vel) N x 2 x 4, as LAPACK rounds it
    innovation = boxes_to_xyah(boxes) - mean[:, :4]
    mean = mean + (gain * innovation[:, None]).reshape(-1, 8)
    gain_s = gain * s[:, None]
    return mean, cov - (gain_s[:, :, None] * gain[:, None]).reshape(-1, 4, 4)


def full_covariance(cov):
    """N x 4 x 4 covariance blocks -> the N x 8 x 8 covariance matrices."""
    full = np.zeros((len(cov), 8, 8))
    i = np.arange(4)
    full[:, i, i], full[:, i, i + 4] = cov[:, PP], cov[:, PV]
    full[:, i + 4, i], full[:, i + 4, i + 4] = cov[:, VP], cov[:, VV]
    return full


class KalmanBox:
    """The filter of one box (the batched functions on one state)."""

    def __init__(self, box):
        self._mean, self._cov = kalman_init(np.asarray(box, np.float64).reshape(1, 4))

    @property
    def mean(self):
        """State (x, y, a, h, vx, vy, va, vh)."""
        return self._mean[0]

    @property
    def cov(self):
        """8 x 8 state covariance."""
        return full_covariance(self._cov)[0]

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
