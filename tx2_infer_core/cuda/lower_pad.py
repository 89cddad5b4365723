"""Lowering of Pad: 'constant' (``lower_ops.lower_pad``) and 'edge' as strided copies.

Edge padding copies the input inside, then, axis by axis, repeats the first and last rows of
what is already in the output into the pads (a view with stride 0 along that axis): open_nsfw
pads its Caffe-style pooling input this way.
"""
import numpy as np

from tx2_infer_core.cuda import lower_ops
from tx2_infer_core.cuda.lower_ops import _view, copy_launch


def _pads(be, node):
    if len(node.inputs) > 1 and node.inputs[1]:
        return [int(p) for p in be.const(node.inputs[1]).tolist()]
    return [int(p) for p in node.attrs.get('pads')]


def lower_pad(be, node):
    """Pad with mode 'constant' or 'edge' (non-negative pads over all axes)."""
    mode = node.attrs.get('mode', 'constant')
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != 'edge':
        return lower_ops.lower_pad(be, node)
    x, y = be.slot(node.inputs[0]), be.slot(node.outputs[0])
    rank = len(y.shape)
    pads = _pads(be, node)
    if min(pads) < 0 or len(pads) != 2 * rank or (len(node.inputs) > 3 and node.inputs[3]):
        be.unsupported(node, "edge pads must be non-negative and cover all axes")
    begin, end = pads[:rank], pads[rank:]
    offset = sum(b * s for b, s in zip(begin, y.strides))
    launches = [copy_launch(node.name, x, _view(x), y, _view(y, x.shape, y.strides, offset),
                            np.prod(x.shape))]
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
            launches.append(copy_launch(node.name, y, _view(y, shape, src_strides, src_off), y,
                                        _view(y, shape, y.strides, dst_off), np.prod(shape)))
    return launches
