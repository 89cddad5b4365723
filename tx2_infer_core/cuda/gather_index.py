"""Gather with constant indices, as the CUDA backend sees it (pure functions, no launches).

``gather_problem`` says why a Gather has no CUDA lowering ('' when it has one); ``gather_args``
gives its axis and indices (negative ones normalised); ``index_run`` finds an arithmetic run in
the indices, which makes the output a strided view of the data (``run_strides``)::

    x (20, 1, 4096) ── Gather(axis=0, indices=7) ──▶ (1, 4096)   offset 7 * 4096, strides (4096, 1)
    x (5, 8)        ── Gather(axis=1, [1, 3, 5]) ──▶ (5, 3)      offset 1, strides (8, 2)

``views.py`` stores such an output as that view; ``lower_gather.py`` copies it or runs the
gather kernel for any other index list.
"""
import numpy as np

from tx2_infer_core.cuda.launch import row_major
from tx2_infer_core.cuda.params import MAX_DIMS

RUNTIME_INDICES = 'indices computed at run time: the FP16 arena holds no integer indices'


def _shape(graph, name) -> tuple:
    if name in graph.weights:
        return tuple(np.shape(graph.weights[name]))
    return tuple(int(d) for d in graph.values[name].shape)


def gather_problem(graph, node) -> str:
    """Why Gather ``node`` has no CUDA lowering: indices computed at run time, data that is not
    a float activation or constant, an axis or an index out of range, too many dims; '' when
    it has one."""
    data, indices = (list(node.inputs) + ['', ''])[:2]
    if not indices or indices not in graph.weights:
        return RUNTIME_INDICES
    dtype = np.dtype(graph.values[data].dtype if data in graph.values
                     else np.asarray(graph.weights[data]).dtype)
    if dtype.kind != 'f':
        return f'data of dtype {dtype}: the arena holds FP16 values only'
    idx = np.asarray(graph.weights[indices])
    if idx.dtype.kind not in 'iu':
        return f'indices of dtype {idx.dtype}: only integers'
    shape = _shape(graph, data)
    rank, axis = len(shape), int(node.attrs.get('axis', 0))
    if not -rank <= axis < rank:
        return f'axis={axis} of a rank-{rank} input'
    if rank > MAX_DIMS:
        return f'data of rank {rank}: the kernels take at most {MAX_DIMS} dims'
    n = shape[axis % rank]
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        return f'index {int(bad.flat[0])} out of range for axis {axis % rank} of size {n}'
    return ''


def gather_args(graph, node) -> tuple:
    """(axis, int64 indices in [0, n)) of a Gather without ``gather_problem``."""
    shape = _shape(graph, node.inputs[0])
    axis = int(node.attrs.get('axis', 0)) % len(shape)
    idx = np.asarray(graph.weights[node.inputs[1]]).astype(np.int64)
    return axis, np.where(idx < 0, idx + shape[axis], idx)


def index_run(indices):
    """(start, step) when the flattened ``indices`` are ``start + step * j`` (one index: step
    1), else None (no index at all included)."""
    flat = np.asarray(indices).reshape(-1)
    if flat.size == 0:
        return None
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if np.any(np.diff(flat) != step):
        return None
    return int(flat[0]), step


def run_strides(strides, axis, idx_shape, start, step) -> tuple:
    """(element offset, strides) of the Gather of the run ``start + step * j`` along ``axis``
    of a view with ``strides``, over the output's dims (the index dims replace ``axis``)."""
    along = int(strides[axis])
    inner = tuple(step * along * r for r in row_major(idx_shape))
    return start * along, tuple(strides[:axis]) + inner + tuple(strides[axis + 1:])
