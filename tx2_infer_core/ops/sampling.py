"""Spatial sampling ops: grids (GridSample, AffineGrid), regions of interest (RoiAlign,
MaxRoiPool) and CenterCropPad. Each is vectorised over pixels; RoiAlign and MaxRoiPool loop
over the regions only."""
import itertools

import numpy as np

from tx2_infer_core.ops.common import axis_of, ints, unsupported
from tx2_infer_core.ops.resize import cubic_kernel

_GRID_MODES = {'linear': 'linear', 'bilinear': 'linear', 'nearest': 'nearest',
               'cubic': 'cubic', 'bicubic': 'cubic'}   # opset 20 names, opset 16 names


def _reflect(c, lo, hi):
    """Fold coordinates ``c`` back into [lo, hi] by reflecting at the borders."""
    span = hi - lo
    if span <= 0:
        return np.zeros_like(c)
    below = c < lo
    dist = np.where(below, lo - c, c - hi)
    turns = np.floor(dist / span)
    rest = dist - turns * span
    from_lo = (turns % 2 == 0) == below     # an even turn below, or odd above: measure from lo
    return np.where((c < lo) | (c > hi), np.where(from_lo, lo + rest, hi - rest), c)


def _grid_taps(c, size, mode, padding_mode, align_corners):
    """[(index, weight)] of one spatial axis: the pixels that the points at coordinates ``c``
    (normalised to [-1, 1]) read, and how much each counts."""
    c = (c + 1) / 2 * (size - 1) if align_corners else ((c + 1) * size - 1) / 2
    lo, hi = (0, size - 1) if align_corners else (-0.5, size - 0.5)
    if mode == 'nearest':
        c = np.rint(c)  # half to even, as PyTorch
    outside = (c < lo) | (c > hi)
    if padding_mode == 'border':
        c = np.where(outside, np.clip(c, 0, size - 1), c)
    elif padding_mode == 'reflection':
        c = _reflect(c, lo, hi)
    if mode == 'nearest':
        taps = [(c.astype(np.int64), np.ones_like(c))]
    else:
        first = np.floor(c)
        frac = c - first
        if mode == 'linear':
            taps = [(first, 1 - frac), (first + 1, frac)]
        else:   # Keys cubic (a = -0.75) over the four nearest pixels
            taps = [(first + k, cubic_kernel(k - frac, -0.75)) for k in (-1, 0, 1, 2)]
        taps = [(i.astype(np.int64), w.astype(c.dtype)) for i, w in taps]
    return [_pad_tap(i, w, size, padding_mode, lo, hi) for i, w in taps]


def _pad_tap(index, weight, size, padding_mode, lo, hi):
    """A tap's index inside the image: zeros padding zeroes its weight outside."""
    if padding_mode == 'zeros':
        weight = weight * ((index >= 0) & (index < size))
    elif padding_mode == 'reflection':
        index = _reflect(index.astype(np.float64), lo, hi).astype(np.int64)
    return np.clip(index, 0, size - 1), weight


def GridSample(x, grid, *, align_corners=0, mode='linear', padding_mode='zeros'):
    """Sample ``x`` (N, C, *S) at the normalised points of ``grid`` (N, *out, len(S)), whose
    last axis lists the coordinates from the innermost spatial axis (x, y[, z])."""
    if mode not in _GRID_MODES:
        unsupported(f'mode={mode!r}')
    if padding_mode not in ('zeros', 'border', 'reflection'):
        unsupported(f'padding_mode={padding_mode!r}')
    mode, sizes = _GRID_MODES[mode], x.shape[2:]
    if mode == 'cubic' and len(sizes) != 2:
        unsupported(f'mode=cubic on {len(sizes)} spatial axes')
    axes = [_grid_taps(grid[..., len(sizes) - 1 - d], size, mode, padding_mode, align_corners)
            for d, size in enumerate(sizes)]
    pixels = np.moveaxis(x, 1, -1)                       # (N, *S, C)
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    y = np.zeros(grid.shape[:-1] + (x.shape[1],), x.dtype)
    for taps in itertools.product(*axes):
        weight = np.prod([w for _, w in taps], axis=0)
        y += weight[..., None] * pixels[(batch,) + tuple(i for i, _ in taps)]
    return np.moveaxis(y, -1, 1)


def AffineGrid(theta, size, *, align_corners=0):
    """The GridSample grid (N, *S, k) of the affine maps ``theta`` (N, k, k + 1) over the
    normalised pixel centres (or corners) of an image of ``size`` (N, C, *S)."""
    spatial = ints(size)[2:]
    axes = [np.linspace(-1, 1, n) if align_corners else (2 * np.arange(n) + 1) / n - 1
            for n in spatial]
    points = list(np.meshgrid(*axes, indexing='ij'))[::-1]    # x first
    base = np.stack(points + [np.ones(spatial)], axis=-1)
    return np.einsum('...k,njk->n...j', base, theta).astype(theta.dtype)


def _roi_samples(start, length, bins, ratio, size):
    """Bilinear taps of the sample points of one ROI axis: (low, high, low weight, high
    weight), each (bins, samples per bin)."""
    count = ratio if ratio > 0 else int(np.ceil(length / bins))
    real = np.asarray(start).dtype     # the ROI's dtype, as ONNX Runtime computes
    step = length / bins
    pos = start + np.arange(bins, dtype=real)[:, None] * step + \
        (np.arange(count, dtype=real) + real.type(0.5)) * step / real.type(max(count, 1))
    valid = (pos >= -1) & (pos <= size)
    pos = np.maximum(pos, 0)
    low = np.minimum(pos.astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = np.where(low >= size - 1, 0, pos - low)
    return low, high, (1 - frac) * valid, frac * valid


def _roi_align_one(image, box, out_hw, ratio, mode):
    """RoiAlign of one box (x1, y1, x2, y2 in pixels) over ``image`` (C, H, W)."""
    (x1, y1, x2, y2), (height, width) = box, image.shape[1:]
    ylow, yhigh, ywl, ywh = _roi_samples(y1, y2 - y1, out_hw[0], ratio, height)
    xlow, xhigh, xwl, xwh = _roi_samples(x1, x2 - x1, out_hw[1], ratio, width)
    if mode == 'avg':
        rows = np.zeros((out_hw[0], height), image.dtype)
        cols = np.zeros((out_hw[1], width), image.dtype)
        for target, index, weight in ((rows, ylow, ywl), (rows, yhigh, ywh),
                                      (cols, xlow, xwl), (cols, xhigh, xwh)):
            np.add.at(target, (np.arange(len(index))[:, None], index), weight)
        count = max(ylow.shape[1] * xlow.shape[1], 1)
        return np.einsum('ph,chw,qw->cpq', rows, image, cols) / count
    if not ylow.size or not xlow.size:
        return np.zeros((image.shape[0],) + tuple(out_hw), image.dtype)
    corners = [wy[:, :, None, None] * wx * image[:, iy[:, :, None, None], ix]
               for iy, wy in ((ylow, ywl), (yhigh, ywh)) for ix, wx in ((xlow, xwl),
                                                                        (xhigh, xwh))]
    return np.max(corners, axis=0).max(axis=(2, 4))


def RoiAlign(x, rois, batch_indices, *, coordinate_transformation_mode='half_pixel',
             mode='avg', output_height=1, output_width=1, sampling_ratio=0,
             spatial_scale=1.0):
    """Average (or max) of bilinear samples in each of output_height x output_width bins of
    each region ``rois`` (R, 4: x1, y1, x2, y2) of image ``batch_indices`` of ``x``."""
    if mode not in ('avg', 'max'):
        unsupported(f'mode={mode!r}')
    if coordinate_transformation_mode not in ('half_pixel', 'output_half_pixel'):
        unsupported(f'coordinate_transformation_mode={coordinate_transformation_mode!r}')
    half = coordinate_transformation_mode == 'half_pixel'
    y = np.zeros((len(rois), x.shape[1], output_height, output_width), x.dtype)
    for k, (roi, b) in enumerate(zip(rois, batch_indices.reshape(-1))):
        box = roi * roi.dtype.type(spatial_scale) - roi.dtype.type(0.5 if half else 0)
        if not half:    # legacy: a region is at least one pixel wide and high
            box[2:] = np.maximum(box[2:], box[:2] + 1)
        y[k] = _roi_align_one(x[int(b)], box, (output_height, output_width), sampling_ratio,
                              mode)
    return y


def _round_half_away(v):
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def MaxRoiPool(x, rois, *, pooled_shape, spatial_scale=1.0):
    """Maximum over each of pooled_shape bins of each region ``rois`` (R, 5: batch index,
    x1, y1, x2, y2, rounded to pixels); an empty bin gives 0."""
    y = np.zeros((len(rois), x.shape[1]) + tuple(pooled_shape), x.dtype)
    sizes = x.shape[2:]
    for k, roi in enumerate(rois):
        image = x[int(roi[0])]
        x1, y1, x2, y2 = (_round_half_away(v * spatial_scale) for v in roi[1:])
        starts, extents = (y1, x1), (max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1))
        edges = [[(int(np.floor(p * e / n)) + s, int(np.ceil((p + 1) * e / n)) + s)
                  for p in range(n)] for s, e, n in zip(starts, extents, pooled_shape)]
        for (i, (h0, h1)), (j, (w0, w1)) in itertools.product(*map(enumerate, edges)):
            h0, h1 = np.clip([h0, h1], 0, sizes[0])
            w0, w1 = np.clip([w0, w1], 0, sizes[1])
            if h1 > h0 and w1 > w0:
                y[k, :, i, j] = image[:, h0:h1, w0:w1].max(axis=(1, 2))
    return y


def CenterCropPad(x, shape, *, axes=None):
    """Crop or zero-pad ``x`` to ``shape`` along ``axes`` (all by default), centred (an odd
    difference leaves the extra row at the end)."""
    axes = [axis_of(a, x.ndim) for a in (axes if axes is not None else range(x.ndim))]
    size, crop, place = list(x.shape), [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for axis, want in zip(axes, ints(shape)):
        have = x.shape[axis]
        size[axis] = want
        if want < have:
            start = (have - want) // 2
            crop[axis] = slice(start, start + want)
        elif want > have:
            start = (want - have) // 2
            place[axis] = slice(start, start + have)
    y = np.zeros(size, x.dtype)
    y[tuple(place)] = x[tuple(crop)]
    return y
