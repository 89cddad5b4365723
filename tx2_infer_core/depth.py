"""3D positions of detections from a depth image aligned with the colour image (pure numpy).

Depth images come as ``16UC1`` (millimetres) or ``32FC1`` (metres), as ROS depth cameras
publish them (REP 118); 0 and NaN mean no measurement. ``depth_metres`` makes both float32
metres with NaN where invalid. Per box, ``box_depth`` is the median of the valid pixels in an
inner fraction of the box (the box's edges are mostly background); ``box_position``
back-projects the box centre at that depth with the pinhole intrinsics of the CameraInfo
(``Intrinsics.from_k``) to a point in the camera's optical frame (x right, y down, z forward,
metres): the centre of the object's visible surface, not of its volume.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

ENCODINGS = ('16UC1', 'mono16', '32FC1')


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths and principal point."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_k(cls, k):
        """From CameraInfo ``k`` (row-major 3x3: fx 0 cx / 0 fy cy / 0 0 1); raises
        ``ValueError`` on a zero or non-finite focal length (an uncalibrated camera)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f'K must have 9 values, got {k.size}')
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
            raise ValueError(f'K has no usable focal length (fx={fx}, fy={fy}): '
                             'is the camera calibrated?')
        return cls(float(fx), float(fy), float(cx), float(cy))


@dataclass(frozen=True)
class Box3D:
    """A detection in 3D: ``center`` (x, y, z) and ``size`` (width, height, depth extent),
    metres, in the camera's optical frame."""

    center: Tuple[float, float, float]
    size: Tuple[float, float, float]


def depth_metres(image, encoding) -> np.ndarray:
    """HxW depth in ``encoding`` -> float32 metres, NaN where there is no measurement (0, NaN,
    infinity or negative)."""
    image = np.asarray(image)
    if encoding in ('16UC1', 'mono16'):
        out = image.astype(np.float32) * np.float32(1e-3)
    elif encoding == '32FC1':
        out = image.astype(np.float32, copy=True)
    else:
        raise ValueError(f"depth encoding must be one of {', '.join(ENCODINGS)}, "
                         f'got {encoding!r}')
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def inner_box(box, inner, shape):
    """The integer pixel window (x1, y1, x2, y2) of the central ``inner`` fraction (0 < inner
    <= 1, per side) of ``box`` (x1 y1 x2 y2 pixels), clipped to an image of ``shape``."""
    if not 0 < inner <= 1:
        raise ValueError(f'inner fraction must be in (0, 1], got {inner}')
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * (1 - inner) / 2, (y2 - y1) * (1 - inner) / 2
    h, w = shape[:2]
    xa, xb = int(np.clip(np.floor(x1 + mx), 0, w)), int(np.clip(np.ceil(x2 - mx), 0, w))
    ya, yb = int(np.clip(np.floor(y1 + my), 0, h)), int(np.clip(np.ceil(y2 - my), 0, h))
    return xa, ya, max(xa, xb), max(ya, yb)


def box_depth(depth_m, box, inner=0.5) -> Optional[float]:
    """Median depth (metres) of the valid pixels in the central ``inner`` fraction of ``box``;
    None when there are none. ``depth_m`` comes from ``depth_metres``."""
    xa, ya, xb, yb = inner_box(box, inner, depth_m.shape)
    window = depth_m[ya:yb, xa:xb]
    valid = window[np.isfinite(window)]
    return float(np.median(valid)) if valid.size else None


def back_project(u, v, z, intrinsics) -> Tuple[float, float, float]:
    """Pixel (u, v) at depth ``z`` metres -> (x, y, z) in the optical frame."""
    k = intrinsics
    return ((u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z)


def box_position(depth_m, box, intrinsics, inner=0.5) -> Optional[Box3D]:
    """A box's ``Box3D`` (box in the pixel coordinates of K: pixel centres at integers): the
    box centre back-projected at its ``box_depth``; width and height
    from the box's pixel size at that depth; depth extent = 10th to 90th percentile of the
    valid depths in the inner window (a lower bound: only the visible surface is seen).
    None when the box has no valid depth."""
    z = box_depth(depth_m, box, inner)
    if z is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    center = back_project((x1 + x2) / 2, (y1 + y2) / 2, z, intrinsics)
    xa, ya, xb, yb = inner_box(box, inner, depth_m.shape)
    window = depth_m[ya:yb, xa:xb]
    valid = window[np.isfinite(window)]
    extent = float(np.percentile(valid, 90) - np.percentile(valid, 10))
    size = ((x2 - x1) * z / intrinsics.fx, (y2 - y1) * z / intrinsics.fy, extent)
    return Box3D(tuple(float(c) for c in center), size)
