"""Lowering of Pad, modes 'constant' and 'edge', as strided copies.

Constant padding fills the output with the value, then copies the input inside. Edge padding
copies the input inside, then, axis by axis, repeats the first and last rows of what is already
in the output into the pads (a view with stride 0 along that axis): open_nsfw pads its
Caffe-style pooling input this way. Pads may name their axes (the optional ``axes`` input).
"""
import numpy as np

from tx2_infer_core.cuda.lower_ops import copy_launch, slot_view
from tx2_infer_core.ops.tensor import pads_over_all_axes


def _input(node, i):
    return node.inputs[i] if len(node.inputs) > i else ''


def full_pads(lc, node, rank) -> list:
    """[begin per axis..., end per axis...] over all ``rank`` axes (``axes`` expanded)."""
    if _input(node, 1):
        pads = lc.const(node.inputs[1]).reshape(-1).tolist()
    else:
        pads = node.attrs.get('pads')
    axes = lc.const(node.inputs[3]).reshape(-1).tolist() if _input(node, 3) else None
    full = pads_over_all_axes(pads, axes, rank)
    if full is None:
        lc.unsupported(node, f'pads {pads} do not match axes {axes or list(range(rank))}')
    return full


def lower_pad(lc, node):
    """Pad with mode 'constant' or 'edge' (non-negative pads)."""
    mode = node.attrs.get('mode', 'constant')
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    rank = len(y.shape)
    pads = full_pads(lc, node, rank)
    if mode not in ('constant', 'edge') or min(pads) < 0:
        lc.unsupported(node, f"mode={mode}, pads {pads}: only 'constant' or 'edge' mode with "
                             'non-negative pads')
    begin, end = pads[:rank], pads[rank:]
    offset = sum(b * s for b, s in zip(begin, y.strides))
    inside = copy_launch(node.name, x, slot_view(x), y, slot_view(y, x.shape, y.strides, offset),
                         np.prod(x.shape))
    if mode == 'constant':
        return [_fill(lc, node, y), inside]
    return [inside] + _edges(node, x, y, begin, end)


def _fill(lc, node, y):
    """The launch writing the constant value over the whole output."""
    value = float(lc.const(node.inputs[2])) if _input(node, 2) else \
        float(node.attrs.get('value', 0.0))  # Pad-2 had it as an attribute
    fill = lc.const_slot(np.array([value], np.float16))
    return copy_launch(node.name, fill, slot_view(fill, y.shape, [0] * len(y.shape)), y,
                       slot_view(y), np.prod(y.shape))


def _edges(node, x, y, begin, end) -> list:
    """Edge mode: the copies repeating the outer rows into the pads, axis by axis."""
    rank, launches = len(y.shape), []
    for axis in range(rank):
        for start, width, src in ((0, begin[axis], begin[axis]),
                                  (begin[axis] + x.shape[axis], end[axis],
                                   begin[axis] + x.shape[axis] - 1)):
            if width == 0:
                continue
            # axes before ``axis`` are complete in y; those after hold the input only
            shape = [y.shape[d] if d < axis else x.shape[d] for d in range(rank)]
            shape[axis] = width
            base = [0 if d <= axis else begin[d] for d in range(rank)]
            dst_off = sum(b * s for b, s in zip(base, y.strides)) + start * y.strides[axis]
            src_off = sum(b * s for b, s in zip(base, y.strides)) + src * y.strides[axis]
            src_strides = list(y.strides)
            src_strides[axis] = 0
            launches.append(copy_launch(node.name, y, slot_view(y, shape, src_strides, src_off), y,
                                        slot_view(y, shape, y.strides, dst_off), np.prod(shape)))
    return launches
