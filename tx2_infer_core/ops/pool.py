"""Pooling ops over sliding windows (one vectorised step per kernel offset, no pixel loops)."""
import numpy as np

from tx2_infer_core.ops.common import ints
from tx2_infer_core.ops.conv import pad_spatial, resolve_pads, window_slices


def pool_geometry(sizes, kernel, strides, dilations, pads, auto_pad, ceil_mode):
    """(begin pads, end pads as given, extra end pads for ceil_mode) of a pooling window sweep.

    With ceil_mode the last window may hang over the end; a window that would start inside
    the end padding only is dropped (ONNX / PyTorch rule).
    """
    nd = len(sizes)
    pads = resolve_pads(sizes, kernel, strides, dilations, pads, auto_pad)
    begins, ends, extra = pads[:nd], pads[nd:], []
    for i in range(nd):
        span = sizes[i] + begins[i] + ends[i] - ((kernel[i] - 1) * dilations[i] + 1)
        out = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (out - 1) * strides[i] >= sizes[i] + begins[i]:
            out -= 1
        need = (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        extra.append(max(need - (sizes[i] + begins[i] + ends[i]), 0))
    return begins, ends, extra


def _defaults(x, kernel_shape, strides, dilations):
    nd = x.ndim - 2
    return list(kernel_shape), list(strides or [1] * nd), list(dilations or [1] * nd)


def MaxPool(x, *, auto_pad='NOTSET', ceil_mode=0, dilations=None, kernel_shape, pads=None,
            storage_order=0, strides=None):
    """Maximum over each window; padding never wins (pads with -inf / the dtype minimum)."""
    kernel, strides, dilations = _defaults(x, kernel_shape, strides, dilations)
    begins, ends, extra = pool_geometry(x.shape[2:], kernel, strides, dilations, pads,
                                        auto_pad, ceil_mode)
    low = -np.inf if x.dtype.kind == 'f' else np.iinfo(x.dtype).min
    xp = pad_spatial(x, begins, [e + x_ for e, x_ in zip(ends, extra)], low)
    return sliding_max(xp, kernel, strides, dilations)


def sliding_max(xp, kernel, strides, dilations, out=None):
    """Window maxima of padded ``xp`` (N, C, *S), one spatial axis at a time: max is
    separable, so a 3x3 window costs 3 + 3 passes instead of 9, and the first axis reads whole
    contiguous rows. The last pass writes into ``out`` when given."""
    y = xp
    for axis, (k, s, d) in enumerate(zip(kernel, strides, dilations), start=2):
        n = (y.shape[axis] - (k - 1) * d - 1) // s + 1
        parts = [y[(slice(None),) * axis + (slice(o * d, o * d + (n - 1) * s + 1, s),)]
                 for o in range(k)]
        last = axis == xp.ndim - 1 and out is not None
        acc = out if last else np.empty(parts[0].shape, xp.dtype)
        if k == 1:
            np.copyto(acc, parts[0])
        else:
            np.maximum(parts[0], parts[1], out=acc)
        for part in parts[2:]:
            np.maximum(acc, part, out=acc)
        y = acc
    return y


def AveragePool(x, *, auto_pad='NOTSET', ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape, pads=None, strides=None):
    """Mean over each window; pads count only with count_include_pad (ceil overhang never)."""
    kernel, strides, dilations = _defaults(x, kernel_shape, strides, dilations)
    begins, ends, extra = pool_geometry(x.shape[2:], kernel, strides, dilations, pads,
                                        auto_pad, ceil_mode)
    total = _window_sum(pad_spatial(x, begins, [e + x_ for e, x_ in zip(ends, extra)]),
                        kernel, strides, dilations)
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    if count_include_pad:
        counted = pad_spatial(pad_spatial(ones, begins, ends, 1.0), [0] * len(extra), extra)
    else:
        counted = pad_spatial(ones, begins, [e + x_ for e, x_ in zip(ends, extra)])
    count = _window_sum(counted, kernel, strides, dilations)
    return (total / count).astype(x.dtype, copy=False)


def _window_sum(xp, kernel, strides, dilations):
    y = None
    for _, part in window_slices(xp, kernel, strides, dilations):
        y = part.copy() if y is None else np.add(y, part, out=y)
    return y


def LpPool(x, *, auto_pad='NOTSET', ceil_mode=0, dilations=None, kernel_shape, p=2,
           pads=None, strides=None):
    """(sum |x|^p over each window)^(1/p); zero padding."""
    kernel, strides, dilations = _defaults(x, kernel_shape, strides, dilations)
    begins, ends, extra = pool_geometry(x.shape[2:], kernel, strides, dilations, pads,
                                        auto_pad, ceil_mode)
    xp = pad_spatial(np.abs(x) ** p, begins, [e + x_ for e, x_ in zip(ends, extra)])
    return (_window_sum(xp, kernel, strides, dilations) ** (1.0 / p)).astype(x.dtype)


def GlobalAveragePool(x):
    """Mean over all spatial axes, kept as size-1 dimensions."""
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=x.dtype)


def GlobalMaxPool(x):
    """Maximum over all spatial axes, kept as size-1 dimensions."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


def GlobalLpPool(x, *, p=2):
    """(sum |x|^p over all spatial axes)^(1/p), kept as size-1 dimensions."""
    axes = tuple(range(2, x.ndim))
    return (((np.abs(x) ** p).sum(axis=axes, keepdims=True)) ** (1.0 / p)).astype(x.dtype)


def MaxUnpool(x, indices, output_shape=None, *, kernel_shape, pads=None, strides=None):
    """Scatter ``x`` to the flat positions ``indices`` (MaxPool's second output: positions in
    MaxPool's input) of a zeros tensor of ``output_shape``, by default the size the window
    sweep gives back. (ONNX's reference scatters into that default size and pads it to
    ``output_shape``; ONNX Runtime and PyTorch index ``output_shape`` itself, as here.)"""
    nd = x.ndim - 2
    strides, pads = list(strides or [1] * nd), list(pads or [0] * (2 * nd))
    size = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * strides[i] + kernel_shape[i]
                                - pads[i] - pads[nd + i] for i in range(nd)]
    if output_shape is not None:
        size = ints(output_shape)
    y = np.zeros(int(np.prod(size)), x.dtype)
    y[indices.reshape(-1)] = x.reshape(-1)
    return y.reshape(size)


def Col2Im(x, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Sum the sliding blocks of ``x`` (N, C * prod(block), L) back into (N, C, *image),
    the inverse of im2col: overlapping blocks add up."""
    image, block = ints(image_shape), ints(block_shape)
    nd = len(image)
    dilations, strides = list(dilations or [1] * nd), list(strides or [1] * nd)
    pads = list(pads or [0] * (2 * nd))
    padded = [image[i] + pads[i] + pads[nd + i] for i in range(nd)]
    counts = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1
              for i in range(nd)]
    n = x.shape[0]
    cols = x.reshape([n, -1] + block + counts)
    y = np.zeros([n, cols.shape[1]] + padded, x.dtype)
    for offset in np.ndindex(*block):
        window = tuple(slice(o * d, o * d + (c - 1) * s + 1, s)
                       for o, d, c, s in zip(offset, dilations, counts, strides))
        y[(slice(None), slice(None)) + window] += cols[(slice(None), slice(None)) + offset]
    crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(nd))
    return y[(slice(None), slice(None)) + crop]
