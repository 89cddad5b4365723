"""Indexing and scatter ops: TopK, GatherND, the scatters, OneHot and ReverseSequence.

Indices may be negative (counted from the end of their axis). Scatters with a reduction apply
it once per index, repeated indices included (``np.<ufunc>.at``); without one a repeated index
keeps its last update (ONNX leaves that case undefined).
"""
import numpy as np

from tx2_infer_core.ops.common import axis_of, ints, unsupported

# reduction attribute -> the ufunc whose ``at`` applies it
REDUCTIONS = {'add': np.add, 'mul': np.multiply, 'max': np.maximum, 'min': np.minimum}


def TopK(X, K, *, axis=-1, largest=1, sorted=1):
    """The K largest (or smallest) values along ``axis`` and their int64 indices, sorted
    (``sorted=0`` too: ONNX leaves that order open); equal values come in index order."""
    axis = axis_of(axis, X.ndim)
    (k,) = ints(K)
    if not 0 <= k <= X.shape[axis]:
        raise ValueError(f'TopK: K={k} is outside 0..{X.shape[axis]} (axis {axis})')
    if largest:
        # a stable ascending sort of the flipped axis, read backwards: descending values,
        # ties in ascending index order (and no negation, which unsigned types lack)
        last = X.shape[axis] - 1
        order = last - np.flip(np.argsort(np.flip(X, axis), axis=axis, kind='stable'), axis)
    else:
        order = np.argsort(X, axis=axis, kind='stable')
    indices = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    return np.take_along_axis(X, indices, axis=axis), indices


def GatherND(data, indices, *, batch_dims=0):
    """Slices of ``data`` addressed by the last axis of ``indices`` (after ``batch_dims``
    leading axes both share)."""
    b, depth = batch_dims, indices.shape[-1]
    batch = int(np.prod(data.shape[:b]))
    rows = data.reshape((batch,) + data.shape[b:])
    where = indices.astype(np.int64).reshape(batch, -1, depth)
    picked = [row[tuple(w.T)] for row, w in zip(rows, where)]
    return np.stack(picked).reshape(indices.shape[:-1] + data.shape[b + depth:])


def _scatter(data, index, updates, reduction):
    """``data`` with ``updates`` written (or reduced) at the numpy ``index``."""
    out = data.copy()
    if reduction == 'none':
        out[index] = updates
    elif reduction in REDUCTIONS:
        REDUCTIONS[reduction].at(out, index, updates)
    else:
        unsupported(f"reduction='{reduction}'")
    return out


def ScatterND(data, indices, updates, *, reduction='none'):
    """Write ``updates`` into the slices of ``data`` that ``indices`` address (GatherND's
    inverse): YOLOv5 exports write box slices of the head output this way."""
    depth = indices.shape[-1]
    where = indices.astype(np.int64).reshape(-1, depth)
    updates = updates.reshape((where.shape[0],) + data.shape[depth:])
    return _scatter(data, tuple(where.T), updates, reduction)


def ScatterElements(data, indices, updates, *, axis=0, reduction='none'):
    """Write each update at its own position, ``indices`` giving the coordinate along
    ``axis`` (GatherElements' inverse)."""
    axis = axis_of(axis, data.ndim)
    index = list(np.indices(indices.shape, sparse=True))
    index[axis] = indices.astype(np.int64)
    return _scatter(data, tuple(index), updates, reduction)


def Scatter(data, indices, updates, *, axis=0):
    """Opset 9-10 name of ScatterElements (no reduction)."""
    return ScatterElements(data, indices, updates, axis=axis)


def OneHot(indices, depth, values, *, axis=-1):
    """A new axis of ``depth`` classes: ``values[1]`` at each index, ``values[0]`` elsewhere
    (an index outside -depth..depth-1 gives a row of ``values[0]``)."""
    depth = int(np.asarray(depth).reshape(-1)[0])
    rank = indices.ndim + 1
    axis = axis_of(axis, rank)
    index = indices.astype(np.int64)
    index = np.expand_dims(np.where(index < 0, index + depth, index), axis)
    classes = np.arange(depth).reshape([depth if i == axis else 1 for i in range(rank)])
    off, on = values.reshape(-1)[:2]
    return np.where(index == classes, on, off).astype(values.dtype)


def ReverseSequence(x, sequence_lens, *, batch_axis=1, time_axis=0):
    """Reverse the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch b."""
    out = np.moveaxis(x, (batch_axis, time_axis), (0, 1)).copy()
    for b, length in enumerate(ints(sequence_lens)):
        out[b, :length] = out[b, :length][::-1]
    return np.moveaxis(out, (0, 1), (batch_axis, time_axis))
