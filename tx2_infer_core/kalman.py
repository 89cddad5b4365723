"""The tracker's constant-velocity Kalman filter on one box (ByteTrack's ``KalmanFilterXYAH``:
state x, y, a, h and their velocities; noise relative to the height).

Each of x, y, a, h moves by its own velocity and is measured on its own (F = [[I, I], [0, I]],
Q, H = [I 0] and R act per coordinate), so the 8 x 8 covariance is four 2 x 2 blocks, one
per coordinate and its velocity, [[pp, pv], [vp, vv]], zeros elsewhere, and stays so. The
covariance is kept as those blocks in a flat list of 16 floats: pp of x, y, a, h, then pv,
vp and vv of each, and every step is a few float operations per coordinate. Each step
rounds as the 8 x 8 matrix form (``F P F^T + Q``, LAPACK's solve, which multiplies by 1 / s)
does; pv and vp are kept apart, as that form rounds them apart.

Plain Python floats, one track at a time (``kalman_init``, ``kalman_predict``,
``kalman_update``): a camera's tracker holds tens of tracks, and at that size a few float
operations per track cost less than numpy's per-call overhead, above all when the call comes
after idle time with cold caches (the node's case). For crowds the batched form
(``init_arrays``, ``predict_arrays``, ``update_arrays``): N states as arrays, means N x 8 and
covariance blocks N x 4 x 4 (``cov[:, k, i]`` entry k, in ``PP, PV, VP, VV``, of coordinate
i's block: the flat list's 16 floats in order), each step a few elementwise operations on
N x 4 arrays whatever N. Both round alike, bit for bit (test_tracking_lists.py).
"""
import numpy as np

# ByteTrack's standard deviations of (x, y, a, h, vx, vy, va, vh): multiples of the box
# height (_P for x, y, h, _V for their velocities), fixed for the aspect and its velocity.
_P, _V = 1.0 / 20, 1.0 / 160
_INIT_STD = (2 * _P, 1e-2, 10 * _V, 1e-5)  # (position, aspect, velocity, aspect velocity)
_PROCESS_STD = (_P, 1e-2, _V, 1e-5)
_MEASURE_STD = (_P, 1e-1)


def box_to_xyah(box):
    """x1 y1 x2 y2 -> [centre x, centre y, aspect (w / h), height]."""
    x1, y1, x2, y2 = box
    h = max(y2 - y1, 1e-6)
    return [(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h]


def xyah_to_box(xyah):
    """centre x, centre y, aspect, height (and maybe velocities after) -> [x1, y1, x2, y2]."""
    x, y, a, h = xyah[:4]
    half_w, half_h = a * h / 2, h / 2
    return [x - half_w, y - half_h, x + half_w, y + half_h]


def _variances(h, std):
    """The variances ``(per_height * h + fixed) ** 2`` of a state of height ``h``, for
    ``std``'s (position, aspect[, velocity, aspect velocity]) -> a flat list, one a value."""
    out = []
    for k, value in enumerate(std):
        s = h * value if k % 2 == 0 else h * 0.0 + value  # per height, fixed
        out.append(s * s)
    return out


def kalman_init(box):
    """State of a new track from its box: (mean [8], covariance blocks [16]); velocities 0."""
    mean = box_to_xyah(box) + [0.0] * 4
    pos, aspect, vel, aspect_vel = _variances(mean[3], _INIT_STD)
    return mean, [pos, pos, aspect, pos] + [0.0] * 8 + [vel, vel, aspect_vel, vel]


def kalman_predict(mean, cov):
    """Advance a state one frame: x += v; P = F P F^T + Q -> (mean, cov), new lists."""
    x, y, a, h, vx, vy, va, vh = mean
    q, qa, w, wa = _variances(h, _PROCESS_STD)  # Q's position and velocity entries
    pp0, pp1, pp2, pp3, pv0, pv1, pv2, pv3, vp0, vp1, vp2, vp3, vv0, vv1, vv2, vv3 = cov
    s0, s1, s2, s3 = pv0 + vv0, pv1 + vv1, pv2 + vv2, pv3 + vv3  # F P's first rows: pv + vv
    return ([x + vx, y + vy, a + va, h + vh, vx, vy, va, vh],
            [pp0 + vp0 + s0 + q, pp1 + vp1 + s1 + q, pp2 + vp2 + s2 + qa, pp3 + vp3 + s3 + q,
             s0, s1, s2, s3,
             vp0 + vv0, vp1 + vv1, vp2 + vv2, vp3 + vv3,
             vv0 + w, vv1 + w, vv2 + wa, vv3 + w])


def kalman_update(mean, cov, box):
    """Correct a state with a measured box (x1 y1 x2 y2) -> (mean, cov), new lists."""
    r, ra = _variances(mean[3], _MEASURE_STD)
    zx, zy, za, zh = box_to_xyah(box)
    x, vx, xpp, xpv, xvp, xvv = _correct(mean[0], mean[4], zx, cov[0], cov[4], cov[8], cov[12], r)
    y, vy, ypp, ypv, yvp, yvv = _correct(mean[1], mean[5], zy, cov[1], cov[5], cov[9], cov[13], r)
    a, va, app, apv, avp, avv = _correct(mean[2], mean[6], za, cov[2], cov[6], cov[10], cov[14],
                                         ra)
    h, vh, hpp, hpv, hvp, hvv = _correct(mean[3], mean[7], zh, cov[3], cov[7], cov[11], cov[15], r)
    return ([x, y, a, h, vx, vy, va, vh],
            [xpp, ypp, app, hpp, xpv, ypv, apv, hpv, xvp, yvp, avp, hvp, xvv, yvv, avv, hvv])


def _correct(m, v, z, pp, pv, vp, vv, noise):
    """One coordinate's update: innovation covariance s = pp + noise, gain k = (pp, pv) / s;
    the mean (m, v) moves by k times the innovation, the block loses (k s) k^T."""
    s = pp + noise
    inverse = 1.0 / s  # as LAPACK rounds it
    k_pos, k_vel = pp * inverse, pv * inverse
    innovation = z - m
    ks_pos, ks_vel = k_pos * s, k_vel * s
    return (m + k_pos * innovation, v + k_vel * innovation, pp - ks_pos * k_pos,
            pv - ks_pos * k_vel, vp - ks_vel * k_pos, vv - ks_vel * k_vel)


PP, PV, VP, VV = range(4)  # the blocks' entries: pos pos, pos vel, vel pos, vel vel


def _coordinate_std(std):
    """``std``'s (per height, fixed) pairs as two vectors over x, y, a, h (and velocities)."""
    per_height, fixed = [], []
    for value, aspect in zip(std[::2], std[1::2]):
        per_height += [value, value, 0.0, value]
        fixed += [0.0, 0.0, aspect, 0.0]
    return np.array(per_height), np.array(fixed)


_PROCESS_VECTORS, _MEASURE_VECTORS = _coordinate_std(_PROCESS_STD), _coordinate_std(_MEASURE_STD)


def _variance_arrays(mean, per_height, fixed):
    """Variances ``(per_height * h + fixed) ** 2`` of states with heights ``mean[:, 3]``."""
    return (mean[:, 3:4] * per_height + fixed) ** 2


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


def init_arrays(boxes):
    """``kalman_init`` of N x 4 boxes -> (means N x 8, covariance blocks N x 4 x 4)."""
    states = [kalman_init(box) for box in boxes.tolist()]
    return (np.array([mean for mean, _ in states], np.float64).reshape(-1, 8),
            np.array([cov for _, cov in states], np.float64).reshape(-1, 4, 4))


def predict_arrays(mean, cov):
    """``kalman_predict`` of N states: means N x 8, covariance blocks N x 4 x 4."""
    var = _variance_arrays(mean, *_PROCESS_VECTORS)
    sums = cov[:, :2] + cov[:, 2:]  # F P, first rows: pp + vp, pv + vv
    out = np.empty_like(cov)
    out[:, PP] = sums[:, 0] + sums[:, 1] + var[:, :4]
    out[:, PV] = sums[:, 1]
    out[:, VP] = cov[:, VP] + cov[:, VV]
    out[:, VV] = cov[:, VV] + var[:, 4:]
    mean = mean.copy()
    mean[:, :4] += mean[:, 4:]
    return mean, out


def update_arrays(mean, cov, boxes):
    """``kalman_update`` of N states with N x 4 measured boxes (``_correct`` per coordinate)."""
    s = cov[:, PP] + _variance_arrays(mean, *_MEASURE_VECTORS)
    gain = cov[:, :2] * (1.0 / s)[:, None]  # (k_pos, k_vel) N x 2 x 4, as LAPACK rounds it
    innovation = boxes_to_xyah(boxes) - mean[:, :4]
    mean = mean + (gain * innovation[:, None]).reshape(-1, 8)
    gain_s = gain * s[:, None]
    return mean, cov - (gain_s[:, :, None] * gain[:, None]).reshape(-1, 4, 4)


def full_covariance(covs):
    """N covariances as blocks (N x 16) -> the N x 8 x 8 covariance matrices."""
    blocks = np.asarray(covs, np.float64).reshape(-1, 4, 4)
    full = np.zeros((len(blocks), 8, 8))
    i = np.arange(4)
    full[:, i, i], full[:, i, i + 4] = blocks[:, 0], blocks[:, 1]
    full[:, i + 4, i], full[:, i + 4, i + 4] = blocks[:, 2], blocks[:, 3]
    return full


class KalmanBox:
    """The filter of one box."""

    def __init__(self, box):
        self._mean, self._cov = kalman_init([float(v) for v in box])

    @property
    def mean(self):
        """State (x, y, a, h, vx, vy, va, vh)."""
        return np.array(self._mean)

    @property
    def cov(self):
        """8 x 8 state covariance."""
        return full_covariance([self._cov])[0]

    def predict(self):
        """Advance one frame."""
        self._mean, self._cov = kalman_predict(self._mean, self._cov)

    def update(self, box):
        """Correct the state with a measured box (x1 y1 x2 y2)."""
        self._mean, self._cov = kalman_update(self._mean, self._cov, [float(v) for v in box])

    @property
    def box(self):
        """The current box estimate, x1 y1 x2 y2."""
        return np.array(xyah_to_box(self._mean))
