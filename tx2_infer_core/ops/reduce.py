"""Reductions. ``axes`` is an attribute before opset 18 (13 for ReduceSum), an input after."""
import numpy as np

from tx2_infer_core.ops.common import axis_of, ints


def _reduce(fn, data, axes, keepdims, noop_with_empty_axes, **kwargs):
    """Apply ``fn(data, axis=..., keepdims=...)``; empty axes reduce all (or nothing)."""
    axes = [] if axes is None else ints(axes)
    if not axes and noop_with_empty_axes:
        return data
    axis = tuple(axis_of(a, data.ndim) for a in axes) if axes else None
    return np.asarray(fn(data, axis=axis, keepdims=bool(keepdims), **kwargs)).astype(
        data.dtype, copy=False)


def ReduceMean(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Mean over ``axes``."""
    return _reduce(np.mean, data, axes, keepdims, noop_with_empty_axes)


def ReduceSum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Sum over ``axes``."""
    return _reduce(np.sum, data, axes, keepdims, noop_with_empty_axes)


def _lowest(data):
    return -np.inf if data.dtype.kind == 'f' else np.iinfo(data.dtype).min


def _highest(data):
    return np.inf if data.dtype.kind == 'f' else np.iinfo(data.dtype).max


def ReduceMax(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Maximum over ``axes`` (-inf over an empty set)."""
    if data.dtype == np.bool_:
        return _reduce(np.any, data, axes, keepdims, noop_with_empty_axes)
    return _reduce(np.max, data, axes, keepdims, noop_with_empty_axes, initial=_lowest(data))


def ReduceMin(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Minimum over ``axes`` (+inf over an empty set)."""
    if data.dtype == np.bool_:
        return _reduce(np.all, data, axes, keepdims, noop_with_empty_axes)
    return _reduce(np.min, data, axes, keepdims, noop_with_empty_axes, initial=_highest(data))


def ReduceProd(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Product over ``axes``."""
    return _reduce(np.prod, data, axes, keepdims, noop_with_empty_axes)


def ReduceL1(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Sum of absolute values over ``axes``."""
    return _reduce(np.sum, np.abs(data), axes, keepdims, noop_with_empty_axes)


def ReduceL2(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Euclidean norm over ``axes``."""
    squares = _reduce(np.sum, data * data, axes, keepdims, noop_with_empty_axes)
    return np.sqrt(squares).astype(data.dtype, copy=False)


def ReduceSumSquare(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """Sum of squares over ``axes``."""
    return _reduce(np.sum, data * data, axes, keepdims, noop_with_empty_axes)


def ReduceLogSum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """log(sum) over ``axes``."""
    with np.errstate(divide='ignore'):
        return np.log(_reduce(np.sum, data, axes, keepdims, noop_with_empty_axes))


def ReduceLogSumExp(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """log(sum(exp)) over ``axes``, computed stably."""
    peak = ReduceMax(data, axes, keepdims=1, noop_with_empty_axes=noop_with_empty_axes)
    peak = np.where(np.isfinite(peak), peak, 0).astype(data.dtype)
    with np.errstate(divide='ignore'):
        total = np.log(ReduceSum(np.exp(data - peak), axes, keepdims=1,
                                 noop_with_empty_axes=noop_with_empty_axes)) + peak
    if not keepdims:
        total = ReduceSum(total, axes, keepdims=0, noop_with_empty_axes=noop_with_empty_axes)
    return total.astype(data.dtype, copy=False)


def _arg(fn, data, axis, keepdims, select_last_index):
    axis = axis_of(axis, data.ndim)
    if select_last_index:
        flipped = np.flip(data, axis=axis)
        index = data.shape[axis] - 1 - fn(flipped, axis=axis)
    else:
        index = fn(data, axis=axis)
    index = np.expand_dims(index, axis) if keepdims else index
    return index.astype(np.int64)


def ArgMax(data, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the maximum along ``axis`` (int64)."""
    return _arg(np.argmax, data, axis, keepdims, select_last_index)


def ArgMin(data, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the minimum along ``axis`` (int64)."""
    return _arg(np.argmin, data, axis, keepdims, select_last_index)


def _cumulative(fn, identity, x, axis, exclusive, reverse):
    """Running ``fn`` along ``axis`` (an input), optionally exclusive and/or from the end."""
    axis = axis_of(ints(axis)[0], x.ndim)
    y = np.flip(x, axis) if reverse else x
    out = fn(y, axis=axis, dtype=x.dtype)
    if exclusive:               # shift by one step: each sum leaves its own element out
        out = np.roll(out, 1, axis=axis)
        out[(slice(None),) * axis + (0,)] = identity
    return np.flip(out, axis) if reverse else out


def CumSum(x, axis, *, exclusive=0, reverse=0):
    """Running sum along ``axis``."""
    return _cumulative(np.cumsum, 0, x, axis, exclusive, reverse)


def CumProd(x, axis, *, exclusive=0, reverse=0):
    """Running product along ``axis`` (opset 26)."""
    return _cumulative(np.cumprod, 1, x, axis, exclusive, reverse)
