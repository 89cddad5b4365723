"""Lowering of the index ops of ``ops/index.py`` with constant indices: ScatterND,
ScatterElements (and opset 9's Scatter) to a copy of the data and ``kernels/scatter.cu``, and
OneHot to one generated pointwise kernel.

Scatter: the indices are constants, so where every update lands is known at build time. The
host turns the indices into output element offsets (through the output slot's strides: any
storage, NHWC or a strided view) and lists, per output element written, its updates in order::

    y = data                        a copy (``unary``), none where y is stored over the data
    y[dst[m]] = reduce(y[dst[m]], u[src[first[m]]], ..., u[src[first[m + 1] - 1]])   scatter

Reduction 'none' keeps an element's last update (numpy's assignment; ONNX leaves duplicates
undefined), add, mul, max and min reduce in FP32 in update order. The three tables are int32
in the weight buffer, as Gather's (``lower_gather.py``). Indices computed at run time are
refused: the FP16 arena holds no index tables. YOLOv5/YOLOv7 Detect heads exported with
in-place slice assignment (``y[..., 0:2] = ...``) are ScatterNDs of constant indices.

OneHot: ``Where(Equal(i < 0 ? i + depth : i, classes), on, off)`` over the output, the indices
``i`` (FP16 integers, truncated if float) read with a size-1 dim at ``axis`` (broadcast over the
classes), ``classes`` a constant ``0..depth-1`` along ``axis``. Depth and values are constants;
a depth past 2048 is refused (FP16 classes would not be exact), as are integer values past it.
"""
import numpy as np

from tx2_infer_core.cuda import codegen_pointwise as cg, params
from tx2_infer_core.cuda.launch import BLOCK, Launch, Slot, grid_1d
from tx2_infer_core.cuda.lower_logic import EXACT_INT, FP16_MAX, check_exact, value_dtype
from tx2_infer_core.cuda.lower_movement import moved_copy
from tx2_infer_core.cuda.lower_ops import slot_view

REDUCTIONS = {'none': 0, 'add': 1, 'mul': 2, 'max': 3, 'min': 4}  # scatter.cu SCATTER_<NAME>
RUNTIME_INDICES = 'indices computed at run time: the FP16 arena holds no index tables'
SCATTER = np.dtype([('u', params.PTR), ('uv', params.VIEW), ('dst', params.PTR),
                    ('first', params.PTR), ('src', params.PTR), ('count', 'i8'),
                    ('y', params.PTR), ('op', 'i4')], align=True)
INT32_MAX = 2 ** 31 - 1


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def scatter_tables(coords, strides, offset, reduction) -> tuple:
    """(dst, first, src) int64 tables of the updates whose output coordinates are the rows of
    ``coords`` (update j's in row j): each output element written once, in ``dst``; its updates
    ``src[first[m]:first[m + 1]]`` in update order ('none': the last one only)."""
    at = np.asarray(coords, np.int64) @ np.asarray(strides, np.int64) + int(offset)
    if reduction == 'none':
        dst, last = np.unique(at[::-1], return_index=True)
        return dst, np.arange(len(dst) + 1), len(at) - 1 - last
    order = np.argsort(at, kind='stable')
    dst, first = np.unique(at[order], return_index=True)
    return dst, np.append(first, len(at)), order


def elements_coords(indices, axis) -> np.ndarray:
    """[M, rank] output coordinates of ScatterElements' updates (``indices`` normalised)."""
    coords = np.indices(indices.shape).reshape(indices.ndim, -1).T.copy()
    coords[:, axis] = indices.reshape(-1)
    return coords


def nd_coords(indices, data_shape) -> np.ndarray:
    """[M, rank] output coordinates of ScatterND's updates (``indices`` normalised): each
    index tuple a slice over the data's trailing dims, row-major."""
    k = indices.shape[-1]
    tuples = indices.reshape(-1, k)
    inner = tuple(data_shape[k:])
    within = np.indices(inner).reshape(len(inner), -1).T if inner else np.zeros((1, 0), int)
    count = within.shape[0]
    return np.concatenate([np.repeat(tuples, count, axis=0), np.tile(within, (len(tuples), 1))],
                          axis=1)


def _indices(lc, node, name, sizes) -> np.ndarray:
    """The constant integer indices ``name``, negative ones normalised against ``sizes``
    (broadcast over the index array); refused when computed at run time or out of range."""
    if not name or not lc.is_const(name):
        lc.unsupported(node, RUNTIME_INDICES)
    idx = lc.const(name)
    if idx.dtype.kind not in 'iu':
        lc.unsupported(node, f'indices of dtype {idx.dtype}: only integers')
    idx = idx.astype(np.int64)
    bad = (idx < -sizes) | (idx >= sizes)
    if bad.any():
        lc.unsupported(node, f'index {int(idx[bad].flat[0])} out of range')
    return np.where(idx < 0, idx + sizes, idx)


def _scatter(lc, node, coords_of) -> list:
    """The copy of the data into the output (none when the output is stored over the data,
    ``views.py``), then the scatter launch; ``coords_of(shape)`` gives the update coordinates
    for output ``shape``."""
    reduction = _text(node.attrs.get('reduction', 'none'))
    if reduction not in REDUCTIONS:
        lc.unsupported(node, f"reduction='{reduction}': only {', '.join(REDUCTIONS)}")
    data, _, updates = node.inputs[:3]
    for name in (data, updates, node.outputs[0]):
        check_exact(lc, node, name)
    x, u, y = lc.slot(data), lc.slot(updates), lc.slot(node.outputs[0])
    if max(len(y.shape), len(u.shape)) > params.MAX_DIMS:
        lc.unsupported(node, f'rank {max(len(y.shape), len(u.shape))}: at most {params.MAX_DIMS}')
    coords = coords_of(tuple(int(d) for d in y.shape))
    launches = moved_copy(lc, node, x, x.strides, y, y.strides, y.shape)
    if not len(coords):
        return launches
    dst, first, src = scatter_tables(coords, y.strides, y.channel_off, reduction)
    if max(int(dst.max()), len(src)) > INT32_MAX:
        lc.unsupported(node, 'more than 2^31 elements: the index tables are int32')
    tables = [lc.add_weight(t.astype(np.int32)) for t in (dst, first, src)]
    fields = dict(u=u.ref, uv=slot_view(u), dst=tables[0], first=tables[1], src=tables[2],
                  count=len(dst), y=y.ref, op=REDUCTIONS[reduction])
    return launches + [Launch('scatter', 'scatter', grid_1d(len(dst)), (BLOCK, 1, 1), SCATTER,
                              fields, node.name)]


def lower_scatter_elements(lc, node):
    """ScatterElements (and Scatter) with constant indices: a copy, then one scatter."""
    def coords(shape):
        rank = len(shape)
        axis = int(node.attrs.get('axis', 0))
        if not -rank <= axis < rank:
            lc.unsupported(node, f'axis={axis} of a rank-{rank} input')
        idx = _indices(lc, node, node.inputs[1], shape[axis % rank])
        return elements_coords(idx, axis % rank)
    return _scatter(lc, node, coords)


def lower_scatter_nd(lc, node):
    """ScatterND with constant indices: a copy, then one scatter."""
    def coords(shape):
        name = node.inputs[1]
        k = lc.const(name).shape[-1] if name and lc.is_const(name) else 0
        if k > len(shape):
            lc.unsupported(node, f'index tuples of {k} over a rank-{len(shape)} input')
        idx = _indices(lc, node, name, np.array(shape[:k], np.int64))
        return nd_coords(idx, shape)
    return _scatter(lc, node, coords)


def _one_hot_values(lc, node) -> tuple:
    """(depth, off, on) of a OneHot whose depth and values are constants."""
    depth_name, values_name = node.inputs[1], node.inputs[2]
    if not (lc.is_const(depth_name) and lc.is_const(values_name)):
        lc.unsupported(node, 'depth and values must be constants')
    depth = int(lc.const(depth_name).reshape(-1)[0])
    if not 0 < depth <= EXACT_INT:
        lc.unsupported(node, f'depth {depth}: 1 to {EXACT_INT} classes (FP16 exact)')
    check_exact(lc, node, values_name)
    off, on = (float(np.clip(v, -FP16_MAX, FP16_MAX)) if np.isfinite(v) else float(v)
               for v in lc.const(values_name).astype(np.float64).reshape(-1)[:2])
    return depth, off, on


def lower_one_hot(lc, node):
    """OneHot with a constant depth and values: one generated kernel (see the module doc)."""
    depth, off, on = _one_hot_values(lc, node)
    check_exact(lc, node, node.inputs[0])
    check_exact(lc, node, node.outputs[0])
    y = lc.slot(node.outputs[0])
    rank = len(y.shape)
    axis = int(node.attrs.get('axis', -1))
    if not -rank <= axis < rank:
        lc.unsupported(node, f'axis={axis} for an output of rank {rank}')
    axis %= rank
    if 0 in y.shape:
        return []
    x = lc.slot(node.inputs[0])
    x_strides = tuple(x.strides[:axis]) + (0,) + tuple(x.strides[axis:])
    spread = Slot(x.ref, tuple(y.shape[:axis]) + (1,) + tuple(y.shape[axis + 1:]), x_strides,
                  False, x.channel_off, x.itemsize)
    classes = np.arange(depth, dtype=np.float16).reshape(
        [depth if d == axis else 1 for d in range(rank)])
    steps = []
    if value_dtype(lc, node.inputs[0]).kind == 'f':
        steps.append(('Cast', ['x0'], {'to': 7}))  # float indices: truncated
    i = f't{len(steps) - 1}' if steps else 'x0'
    j = len(steps)
    steps += [('Less', [i, 0.0], {}), ('Add', [i, float(depth)], {}),
              ('Where', [f't{j}', f't{j + 1}', i], {}), ('Equal', [f't{j + 2}', 'x1'], {}),
              ('Where', [f't{j + 3}', on, off], {})]
    return [cg.pointwise_launch(node.name, steps, [spread, lc.const_slot(classes)], y)]
