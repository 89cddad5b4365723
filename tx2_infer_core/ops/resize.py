"""Resize and Upsample: separable, one axis at a time (nearest, linear, cubic)."""
import numpy as np

from tx2_infer_core.ops.common import axis_of, ints, unsupported

NEAREST = {
    'round_prefer_floor': lambda c: np.ceil(c - 0.5),
    'round_prefer_ceil': lambda c: np.floor(c + 0.5),
    'floor': np.floor,
    'ceil': np.ceil,
}


def source_coords(size_in, size_out, scale, mode, roi=(0.0, 1.0)):
    """Input coordinate of each output index for a coordinate_transformation_mode."""
    x = np.arange(size_out, dtype=np.float64)
    if mode == 'half_pixel':
        return (x + 0.5) / scale - 0.5
    if mode == 'half_pixel_symmetric':
        adjust = size_out / (scale * size_in)
        return size_in / 2 * (1 - adjust) + (x + 0.5) / scale - 0.5
    if mode == 'pytorch_half_pixel':
        return (x + 0.5) / scale - 0.5 if size_out > 1 else np.zeros_like(x)
    if mode == 'align_corners':  # the resized length is size_in * scale, not floored
        return x * (size_in - 1) / (size_in * scale - 1) if size_out > 1 else np.zeros_like(x)
    if mode == 'asymmetric':
        return x / scale
    if mode == 'tf_half_pixel_for_nn':
        return (x + 0.5) / scale
    if mode == 'tf_crop_and_resize':
        start, end = roi
        if size_out == 1:
            return np.full_like(x, 0.5 * (start + end) * (size_in - 1))
        return start * (size_in - 1) + x * (end - start) * (size_in - 1) / (size_out - 1)
    return unsupported(f"coordinate_transformation_mode='{mode}'")


def cubic_kernel(t, a):
    """Keys cubic convolution kernel with coefficient ``a``."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def linear_kernel(t):
    """Triangle (tent) kernel."""
    return np.clip(1 - np.abs(t), 0, 1)


def _taps(coords, size_in, scale, opts):
    """(indices, weights) of shape (size_out, taps) for one axis.

    With antialias a downscaling kernel is stretched by 1 / scale (more taps, normalised).
    """
    if opts['mode'] == 'nearest':
        index = NEAREST[opts['nearest_mode']](coords)
        return np.clip(index, 0, size_in - 1).astype(np.int64)[:, None], np.ones((len(index), 1))
    base = np.floor(coords)
    frac = (coords - base)[:, None]
    stretch = min(scale, 1.0) if opts['antialias'] else 1.0
    radius = 1 if opts['mode'] == 'linear' else 2
    first = int(np.floor(-radius / stretch) + 1)
    offsets = np.arange(first, 2 - first)
    if opts['mode'] == 'linear':
        weights = linear_kernel((offsets - frac) * stretch)
    else:
        weights = cubic_kernel((offsets - frac) * stretch, opts['cubic_coeff_a'])
    if opts['antialias']:
        weights = weights / weights.sum(axis=1, keepdims=True)
    index = base[:, None].astype(np.int64) + offsets
    if opts['exclude_outside']:
        weights = np.where((index >= 0) & (index < size_in), weights, 0.0)
        weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(index, 0, size_in - 1), weights


def resize_axis(x, axis, size_out, scale, roi, opts):
    """Resize ``x`` along one axis."""
    size_in = x.shape[axis]
    coords = source_coords(size_in, size_out, scale, opts['coordinate_transformation_mode'], roi)
    index, weights = _taps(coords, size_in, scale, opts)
    if opts['mode'] == 'nearest':
        y = np.moveaxis(np.take(x, index[:, 0], axis=axis), axis, -1)
    else:
        y = (np.moveaxis(x, axis, -1)[..., index] * weights).sum(axis=-1)
    if opts['coordinate_transformation_mode'] == 'tf_crop_and_resize':
        outside = (coords < 0) | (coords > size_in - 1)
        y[..., outside] = opts['extrapolation_value']
    return np.moveaxis(y, -1, axis)


def _targets(x, axes, roi, scales, sizes, policy):
    """Per resized axis: (axis, output size, scale, roi pair)."""
    rank = len(axes)
    roi = [] if roi is None else [float(v) for v in roi.reshape(-1)]
    roi = roi if roi else [0.0] * rank + [1.0] * rank
    if sizes is not None:
        sizes = ints(sizes)
        ratios = [s / x.shape[a] for s, a in zip(sizes, axes)]
        if policy != 'stretch':
            pick = min(ratios) if policy == 'not_larger' else max(ratios)
            ratios = [pick] * rank
            sizes = [int(np.floor(x.shape[a] * pick + 0.5)) for a in axes]
    else:
        ratios = [float(s) for s in scales.reshape(-1)]
        sizes = [int(np.floor(x.shape[a] * r)) for a, r in zip(axes, ratios)]
    return [(a, sizes[i], ratios[i], (roi[i], roi[i + rank])) for i, a in enumerate(axes)]


def _check_modes(mode, nearest_mode, policy):
    if mode not in ('nearest', 'linear', 'cubic'):
        unsupported(f"mode='{mode}'")
    if mode == 'nearest' and nearest_mode not in NEAREST:
        unsupported(f"nearest_mode='{nearest_mode}'")
    if policy not in ('stretch', 'not_larger', 'not_smaller'):
        unsupported(f"keep_aspect_ratio_policy='{policy}'")


def _given(array):
    """None for an omitted or empty optional input (opset 11-12 models pass empty tensors)."""
    return None if array is None or array.size == 0 else array


def Resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode='half_pixel', cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy='stretch', mode='nearest',
           nearest_mode='round_prefer_floor'):
    """ONNX Resize (opset 11-21): nearest (all rounding modes), linear and cubic, antialias."""
    _check_modes(mode, nearest_mode, keep_aspect_ratio_policy)
    roi, scales, sizes = _given(roi), _given(scales), _given(sizes)
    if (scales is None) == (sizes is None):
        unsupported('exactly one of scales and sizes must be given')
    axes = list(range(x.ndim)) if axes is None else [axis_of(a, x.ndim) for a in axes]
    opts = dict(mode=mode, nearest_mode=nearest_mode, antialias=antialias,
                cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                extrapolation_value=extrapolation_value,
                coordinate_transformation_mode=coordinate_transformation_mode)
    crop = coordinate_transformation_mode == 'tf_crop_and_resize'
    y = x
    for axis, size, scale, pair in _targets(x, axes, roi, scales, sizes,
                                            keep_aspect_ratio_policy):
        if size != y.shape[axis] or scale != 1 or crop:
            y = resize_axis(y, axis, size, scale, pair, opts)
    return y.astype(x.dtype, copy=False)


def Upsample(x, scales=None, *, mode='nearest'):
    """Deprecated Upsample: Resize with asymmetric coordinates (floor for nearest)."""
    return Resize(x, scales=np.asarray(scales, dtype=np.float32), mode=mode,
                  coordinate_transformation_mode='asymmetric', nearest_mode='floor')
