"""Lowering of the gathers by an index tensor to ``kernels/gather_nd.cu``: GatherND,
GatherElements, and Gather whose indices are computed at run time (constant ones:
``lower_gather.py``). Each is one ``gather_nd`` launch over its output's elements::

    GatherND        data (B, D0..Dd-1, I), indices (B, M, d)    -> (B, M, I)
    GatherElements  data x, indices of the output's shape        -> x[i with i[axis] = idx[i]]
    Gather          data (O, D, I), indices (M)                  -> (O, M, I)

(B, M, I, O: dims merged into one). Indices computed at run time are int32 in the arena where
every node touching them has an int32 form (``int32_values.py``): the kernel reads them as its
int32 table; else FP16, exact up to 2048: then indices into a longer dim are refused by name,
naming why they are not int32. Constant indices become an int32 table in the weights, made
non-negative (one out of range is refused). Negative indices count from the end of their dim,
as ONNX says.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, NULL, Launch, Ref, grid_1d, row_major
from tx2_infer_core.cuda.int32_values import FP16_EXACT, why_not_int32
from tx2_infer_core.cuda.lower_ops import slot_view
from tx2_infer_core.cuda.views import reshape_strides
from tx2_infer_core.ops.common import AttributeNotSupported, axis_of

GATHER_ND = np.dtype([('x', params.PTR), ('xv', params.VIEW), ('sel', params.VIEW),
                      ('idx', params.PTR), ('table', params.PTR), ('iv', params.VIEW),
                      ('ik', 'i8'), ('y', params.PTR), ('yv', params.VIEW), ('n', 'i8')],
                     align=True)


@dataclass
class Indices:
    """An index input as the kernel reads it: FP16 at ``idx`` or int32 at ``table`` (the
    weights' constant table or an int32 arena value)."""

    idx: Ref
    table: Ref
    shape: tuple
    strides: tuple
    offset: int = 0


def axis_index(lc, node, axis, rank) -> int:
    """``axis`` of a rank-``rank`` input in range(rank), else ``node`` is refused."""
    try:
        return axis_of(int(axis), rank)
    except AttributeNotSupported as err:
        lc.unsupported(node, str(err))


def stored_problem(lc, name) -> str:
    """Why value ``name`` is not held exactly in the FP16 arena ('' when it is): floats,
    bools and integers wider than a byte made by a node are; an integer constant up to 2048
    in magnitude; not an integer graph input (FP32 -> FP16 rounds it past 2048)."""
    if lc.is_const(name):
        array = lc.const(name)
        if array.dtype.kind == 'f' or (array.dtype.kind in 'iub' and (
                array.size == 0 or np.abs(array.astype(np.int64)).max() <= FP16_EXACT)):
            return ''
        return f'a constant of dtype {array.dtype} past {FP16_EXACT}: not exact in FP16'
    dtype = np.dtype(lc.dtype_of(name))
    if dtype.kind in 'iu' and name in lc.graph.inputs:
        return f'{dtype} data fed as a graph input: its values past {FP16_EXACT} are not exact'
    if dtype.kind in 'fb' or (dtype.kind in 'iu' and dtype.itemsize > 1):
        return ''
    return f'{dtype} data: the FP16 arena holds floats, bools and wide integers only'


def indices_of(lc, node, name, sizes) -> Indices:
    """Index input ``name`` of ``node``, its indices addressing dims of ``sizes`` (one size,
    or GatherND's one per component along the last dim)."""
    sizes = np.asarray(sizes, np.int64)
    if not lc.is_const(name):
        s = lc.slot(name)
        if s.int32:
            return Indices(NULL, s.ref, tuple(s.shape), tuple(s.strides), s.channel_off)
        if sizes.max(initial=0) > FP16_EXACT:
            lc.unsupported(node, f'indices computed at run time into a dim of {sizes.max()} '
                                 f'elements: FP16 indices are exact up to {FP16_EXACT}, and '
                                 f'these are not int32 ({why_not_int32(lc.int32, name)})')
        return Indices(s.ref, NULL, tuple(s.shape), tuple(s.strides), s.channel_off)
    idx = lc.const(name)
    if idx.dtype.kind not in 'iu':
        lc.unsupported(node, f'indices of dtype {idx.dtype}: only integers')
    idx = idx.astype(np.int64)
    size = np.broadcast_to(sizes, idx.shape)
    fixed = np.where(idx < 0, idx + size, idx)
    bad = (fixed < 0) | (fixed >= size)
    if bad.any():
        lc.unsupported(node, f'index {int(idx[bad][0])} out of range for a dim of size '
                             f'{int(size[bad][0])}')
    table = np.ascontiguousarray(fixed, np.int32)
    return Indices(NULL, lc.add_weight(table), table.shape, row_major(table.shape))


def _slots(lc, node):
    """The data and output slots of a gather, refused unless the data is stored exactly."""
    why = stored_problem(lc, node.inputs[0])
    if why:
        lc.unsupported(node, why)
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    if len(x.shape) > params.MAX_DIMS:
        lc.unsupported(node, f'data of rank {len(x.shape)}: the kernels take at most '
                             f'{params.MAX_DIMS} dims')
    return x, y


def _strides(lc, node, what, shape, strides, new_shape) -> tuple:
    """``reshape_strides`` of ``what`` (a message names it when it has none)."""
    found = reshape_strides(shape, strides, new_shape)
    if found is None:
        lc.unsupported(node, f'the {what} {tuple(shape)} stored with strides {tuple(strides)}: '
                             f'not one stride per dim of {tuple(new_shape)}')
    return found


def _launch(node, x, xv, sel, ind, iv, ik, y, yv, n) -> Launch:
    fields = dict(x=x.ref, xv=xv, sel=sel, idx=ind.idx, table=ind.table, iv=iv, ik=int(ik),
                  y=y.ref, yv=yv, n=int(n))
    return Launch('gather_nd', 'gather_nd', grid_1d(n), (BLOCK, 1, 1), GATHER_ND, fields,
                  node.name)


def _along_axis(lc, node) -> tuple:
    """(data slot, output slot, the gathered axis, output elements) of a gather along
    ``axis``."""
    x, y = _slots(lc, node)
    axis = axis_index(lc, node, node.attrs.get('axis', 0), len(x.shape))
    return x, y, axis, int(np.prod(y.shape, dtype=np.int64))


def lower_gather_elements(lc, node):
    """GatherElements(data, indices, axis): the output has the indices' shape."""
    x, y, axis, n = _along_axis(lc, node)
    if n == 0:
        return []
    ind = indices_of(lc, node, node.inputs[1], x.shape[axis])
    strides = [0 if d == axis or size == 1 else s
               for d, (size, s) in enumerate(zip(x.shape, x.strides))]  # size 1: broadcast
    sel = params.view_record((x.shape[axis],), (x.strides[axis],))
    iv = params.view_record(y.shape, ind.strides, ind.offset)
    return [_launch(node, x, slot_view(x, y.shape, strides), sel, ind, iv, 0, y, slot_view(y),
                    n)]


def lower_gather_by_value(lc, node):
    """Gather(data, indices computed at run time, axis): data (O, D, I) -> (O, M, I)."""
    x, y, axis, n = _along_axis(lc, node)
    if n == 0:
        return []
    ind = indices_of(lc, node, node.inputs[1], x.shape[axis])
    count = int(np.prod(ind.shape, dtype=np.int64))
    shape = tuple(x.shape[:axis]) + (count,) + tuple(x.shape[axis + 1:])
    y_strides = _strides(lc, node, 'output', y.shape, y.strides, shape)
    (step,) = _strides(lc, node, 'indices', ind.shape, ind.strides, (count,))
    x_strides, i_strides = list(x.strides), [0] * len(shape)
    x_strides[axis], i_strides[axis] = 0, step
    sel = params.view_record((x.shape[axis],), (x.strides[axis],))
    iv = params.view_record(shape, i_strides, ind.offset)
    return [_launch(node, x, slot_view(x, shape, x_strides), sel, ind, iv, 0, y,
                    slot_view(y, shape, y_strides), n)]


def lower_gather_nd(lc, node):
    """GatherND(data, indices, batch_dims): data (B, D0..Dd-1, I), indices (B, M, d)."""
    x, y = _slots(lc, node)
    name = node.inputs[1]
    i_shape = tuple(lc.const(name).shape if lc.is_const(name) else lc.slot(name).shape)
    b = int(node.attrs.get('batch_dims', 0))
    depth = i_shape[-1] if i_shape else 0
    if not 0 <= b < len(i_shape) or not 1 <= depth <= len(x.shape) - b:
        lc.unsupported(node, f'indices of shape {i_shape} with batch_dims={b} into data of '
                             f'shape {tuple(x.shape)}')
    n = int(np.prod(y.shape, dtype=np.int64))
    if n == 0:
        return []
    picked = tuple(x.shape[b:b + depth])
    ind = indices_of(lc, node, name, picked)
    batch = int(np.prod(x.shape[:b], dtype=np.int64))
    rows = int(np.prod(i_shape[b:-1], dtype=np.int64))
    inner = int(np.prod(x.shape[b + depth:], dtype=np.int64))
    out = (batch, rows, inner)
    xs = _strides(lc, node, 'data', x.shape, x.strides, (batch,) + picked + (inner,))
    ys = _strides(lc, node, 'output', y.shape, y.strides, out)
    i_strides = _strides(lc, node, 'indices', ind.shape, ind.strides, (batch, rows, depth))
    sel = params.view_record(picked, xs[1:-1])
    iv = params.view_record(out, (i_strides[0], i_strides[1], 0), ind.offset)
    return [_launch(node, x, slot_view(x, out, (xs[0], 0, xs[-1])), sel, ind, iv, i_strides[2],
                    y, slot_view(y, out, ys), n)]
