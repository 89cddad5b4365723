"""Lowering of Pad, modes 'constant', 'edge', 'reflect' and 'wrap', as strided copies.

Constant padding fills the output with the value, then copies the input inside. The other
modes copy the input inside, then, axis by axis, copy rows of what is already in the output
into the pads: edge repeats the first and last rows (a view with stride 0 along that axis;
open_nsfw pads its Caffe-style pooling input this way), reflect mirrors the rows next to them
(a view with a negative stride; silero-vad pads its STFT input so), wrap copies the other end.
Pads may name their axes (the optional ``axes`` input).
"""
import numpy as np

from tx2_infer_core.cuda.lower_ops import copy_launch, slot_view
from tx2_infer_core.ops.tensor import pads_over_all_axes

MODES = ('constant', 'edge', 'reflect', 'wrap')


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
    """Pad with mode 'constant', 'edge', 'reflect' or 'wrap' (non-negative pads)."""
    mode = node.attrs.get('mode', 'constant')
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    rank = len(y.shape)
    pads = full_pads(lc, node, rank)
    if mode not in MODES:
        lc.unsupported(node, f"mode={mode}: only {', '.join(MODES)}")
    if min(pads) < 0:
        lc.unsupported(node, f'mode={mode}, pads {pads}: negative pads (a crop)')
    begin, end = pads[:rank], pads[rank:]
    for axis, n in enumerate(x.shape):
        widest = n - 1 if mode == 'reflect' else n
        if mode in ('reflect', 'wrap') and max(begin[axis], end[axis]) > widest:
            lc.unsupported(node, f'mode={mode}, pads {pads}: axis {axis} of size {n} takes '
                                 f'pads of at most {widest}')
    offset = sum(b * s for b, s in zip(begin, y.strides))
    inside = copy_launch(node.name, x, slot_view(x), y, slot_view(y, x.shape, y.strides, offset),
                         np.prod(x.shape))
    if mode == 'constant':
        return [_fill(lc, node, y), inside]
    return [inside] + _borders(node, mode, x, y, begin, end)


def _fill(lc, node, y):
    """The launch writing the constant value over the whole output."""
    value = float(lc.const(node.inputs[2])) if _input(node, 2) else \
        float(node.attrs.get('value', 0.0))  # Pad-2 had it as an attribute
    fill = lc.const_slot(np.array([value], np.float16))
    return copy_launch(node.name, fill, slot_view(fill, y.shape, [0] * len(y.shape)), y,
                       slot_view(y), np.prod(y.shape))


def border_sources(mode, b, n, e) -> list:
    """[(first output row, rows, first source row, source step)] filling the begin (``b``
    rows) and end (``e`` rows) pads of an axis of ``n`` input rows (output rows ``b`` to
    ``b + n - 1``) from rows already in the output: ``mode`` 'edge', 'reflect' or 'wrap'."""
    last = b + n - 1
    first_src = {'edge': (b, 0), 'reflect': (2 * b, -1), 'wrap': (n, 1)}[mode]
    end_src = {'edge': (last, 0), 'reflect': (last - 1, -1), 'wrap': (b, 1)}[mode]
    return [(start, width) + src for start, width, src in ((0, b, first_src),
                                                           (last + 1, e, end_src)) if width]


def _borders(node, mode, x, y, begin, end) -> list:
    """The copies filling the pads from the output's own rows, axis by axis (as numpy does:
    axes before ``axis`` are complete in y, those after hold the input only)."""
    rank, launches = len(y.shape), []
    for axis in range(rank):
        for start, width, src, step in border_sources(mode, begin[axis], x.shape[axis],
                                                      end[axis]):
            shape = [y.shape[d] if d < axis else x.shape[d] for d in range(rank)]
            shape[axis] = width
            base = sum(0 if d <= axis else begin[d] * y.strides[d] for d in range(rank))
            src_strides = list(y.strides)
            src_strides[axis] = step * y.strides[axis]
            src_view = slot_view(y, shape, src_strides, base + src * y.strides[axis])
            dst_view = slot_view(y, shape, y.strides, base + start * y.strides[axis])
            launches.append(copy_launch(node.name, y, src_view, y, dst_view, np.prod(shape)))
    return launches
