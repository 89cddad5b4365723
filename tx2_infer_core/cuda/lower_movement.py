"""Lowering of the data movement ops Expand, Tile, DepthToSpace, SpaceToDepth, CastLike (float
to float) and EyeLike as strided copies (``kernels/elementwise.cu`` ``unary`` with op 0)
between views of their slots, so any storage (NHWC images, channel slices, strided views) goes
in and out::

    Expand        x read with stride 0 along the broadcast dims
    Tile          x copied into y's first block, then per tiled dim (innermost first) the
                  filled part of y copied into the other repeats (a stride-0 source)
    DepthToSpace  y walked as [N, C/b^2, H, b, W, b], each element read from x's channel of
                  (b, b, C/b^2) (DCR) or (C/b^2, b, b) (CRD)
    SpaceToDepth  y walked as [N, b, b, C, H/b, W/b] (DCR) or [N, C, b, b, H/b, W/b] (CRD)
    CastLike      a copy (FP16 in, FP16 out) when the target type is float16, float32 or double
    EyeLike       a constant identity copied in

A copy's dims are merged where both sides step over them as one (size-1 dims dropped); one of
more than ``MAX_DIMS`` dims is refused. The values move unchanged: an integer input must be
exact in FP16 as for the logic ops (``lower_logic.check_exact``).
"""
import numpy as np

from tx2_infer_core.cuda.codegen_pointwise import broadcast_strides
from tx2_infer_core.cuda.lower_logic import check_exact, value_dtype
from tx2_infer_core.cuda.lower_ops import copy_launch, same_place, slot_view
from tx2_infer_core.cuda.params import MAX_DIMS

CAST_LIKE_TARGETS = tuple(np.dtype(t) for t in ('float16', 'float32', 'float64'))


def merge_dims(shape, src_strides, dst_strides) -> tuple:
    """(shape, src strides, dst strides) with size-1 dims dropped and each dim merged into the
    one before it where both sides step over the pair as one dim."""
    out = []
    for n, s, d in zip(shape, src_strides, dst_strides):
        if n == 1:
            continue
        if out and out[-1][1] == s * n and out[-1][2] == d * n:
            out[-1] = (out[-1][0] * n, s, d)
        else:
            out.append((int(n), int(s), int(d)))
    return tuple(o[0] for o in out), tuple(o[1] for o in out), tuple(o[2] for o in out)


def moved_copy(lc, node, src, src_strides, dst, dst_strides, shape, src_off=0, dst_off=0):
    """The copy launch of the elements of ``shape``: ``src`` read with ``src_strides`` from
    element ``src_off`` on, written to ``dst`` with ``dst_strides`` from ``dst_off``; none when
    there is nothing to copy or both are the same elements."""
    shape, ss, ds = merge_dims(shape, src_strides, dst_strides)
    n = int(np.prod(shape, dtype=np.int64))
    if len(shape) > MAX_DIMS:
        lc.unsupported(node, f'a copy over {len(shape)} dims (shape {list(shape)}): at most '
                             f'{MAX_DIMS}')
    src_view = slot_view(src, shape, ss, src_off)
    dst_view = slot_view(dst, shape, ds, dst_off)
    if n == 0 or same_place(src.ref, src_view, dst.ref, dst_view, src.itemsize):
        return []
    return [copy_launch(node.name, src, src_view, dst, dst_view, n)]


def _slots(lc, node) -> tuple:
    """(x, y) slots of ``node``, their values checked exact in FP16."""
    check_exact(lc, node, node.inputs[0])
    check_exact(lc, node, node.outputs[0])
    return lc.slot(node.inputs[0]), lc.slot(node.outputs[0])


def lower_expand(lc, node):
    """Expand: x broadcast to y's shape (stride 0 along the broadcast dims)."""
    x, y = _slots(lc, node)
    return moved_copy(lc, node, x, broadcast_strides(x, y.shape), y, y.strides, y.shape)


def lower_tile(lc, node):
    """Tile: x into y's first block, then one copy per tiled dim filling its other repeats
    from the part of y already filled (see the module doc)."""
    x, y = _slots(lc, node)
    if 0 in y.shape:
        return []
    reps = [int(n) // int(m) for n, m in zip(y.shape, x.shape)]
    launches = moved_copy(lc, node, x, x.strides, y, y.strides, x.shape)
    filled = [int(m) for m in x.shape]
    for d in reversed(range(len(reps))):
        if reps[d] == 1:
            continue
        block = filled[d] * y.strides[d]
        shape = filled[:d] + [reps[d] - 1] + filled[d:]
        src = y.strides[:d] + (0,) + y.strides[d:]
        dst = y.strides[:d] + (block,) + y.strides[d:]
        launches += moved_copy(lc, node, y, src, y, dst, shape, 0, block)
        filled[d] = int(y.shape[d])
    return launches


def _block_args(lc, node, x) -> tuple:
    """(blocksize, mode) of DepthToSpace / SpaceToDepth over 4-D ``x``, refused otherwise."""
    b = int(node.attrs.get('blocksize', 0))
    mode = node.attrs.get('mode', 'DCR')
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ('DCR', 'CRD'):
        lc.unsupported(node, f"mode='{mode}': only 'DCR' and 'CRD'")
    if b < 1 or len(x.shape) != 4:
        lc.unsupported(node, f'blocksize {b} over a rank-{len(x.shape)} input: a positive '
                             'blocksize over NCHW')
    return b, mode


def lower_depth_to_space(lc, node):
    """DepthToSpace (DCR or CRD): one copy, y walked as [N, C/b^2, H, b, W, b]."""
    x, y = _slots(lc, node)
    b, mode = _block_args(lc, node, x)
    n, c, h, w = (int(d) for d in x.shape)
    cq = c // (b * b)
    if cq * b * b != c:
        lc.unsupported(node, f'{c} channels: not a multiple of blocksize^2 = {b * b}')
    sn, sc, sh, sw = x.strides
    yn, yc, yh, yw = y.strides
    src = ((sn, sc, sh, sc * b * cq, sw, sc * cq) if mode == 'DCR'
           else (sn, sc * b * b, sh, sc * b, sw, sc))
    dst = (yn, yc, yh * b, yh, yw * b, yw)
    return moved_copy(lc, node, x, src, y, dst, (n, cq, h, b, w, b))


def lower_space_to_depth(lc, node):
    """SpaceToDepth (DCR or CRD): one copy, y walked with its channel split into blocks."""
    x, y = _slots(lc, node)
    b, mode = _block_args(lc, node, x)
    n, c, h, w = (int(d) for d in x.shape)
    if h % b or w % b:
        lc.unsupported(node, f'{h} x {w} pixels: not multiples of blocksize {b}')
    sn, sc, sh, sw = x.strides
    yn, yc, yh, yw = y.strides
    if mode == 'DCR':  # y channel = (b1 * b + b2) * C + c
        shape = (n, b, b, c, h // b, w // b)
        src, dst = (sn, sh, sw, sc, sh * b, sw * b), (yn, yc * b * c, yc * c, yc, yh, yw)
    else:  # y channel = c * b * b + b1 * b + b2
        shape = (n, c, b, b, h // b, w // b)
        src, dst = (sn, sc, sh, sw, sh * b, sw * b), (yn, yc * b * b, yc * b, yc, yh, yw)
    return moved_copy(lc, node, x, src, y, dst, shape)


def lower_cast_like(lc, node):
    """CastLike to float16, float32 or double: a copy of the FP16 values."""
    target = node.inputs[1] if len(node.inputs) > 1 else ''
    dtype = value_dtype(lc, target) if target else None
    if dtype is None or dtype not in CAST_LIKE_TARGETS:
        lc.unsupported(node, f'target type {dtype}: only float16, float32 and double')
    x, y = _slots(lc, node)
    return moved_copy(lc, node, x, x.strides, y, y.strides, y.shape)


def lower_eye_like(lc, node):
    """EyeLike: its identity (ones on diagonal ``k``: exact in any dtype) copied from the
    weights."""
    check_exact(lc, node, node.outputs[0])
    y = lc.slot(node.outputs[0])
    if len(y.shape) != 2:
        lc.unsupported(node, f'output of rank {len(y.shape)}: only 2')
    eye = lc.const_slot(np.eye(*y.shape, int(node.attrs.get('k', 0)), dtype=np.float16))
    return moved_copy(lc, node, eye, eye.strides, y, y.strides, y.shape)
