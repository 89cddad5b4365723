"""Lowering of ``Gather`` with constant indices to a strided copy or ``kernels/gather.cu``.

The data is read over the output's elements with the index dims merged into one dim of
``count`` entries (``merged``: the data's rank). An arithmetic run of indices
(``gather_index.index_run``: one index, ``[2, 3, 4]``, ``[6, 4, 2]``) is a strided view of the
data, so a copy, or no launch where ``views.py`` already stored the output as that view (an
unrolled LSTM's time step ``x[t]``). Any other index list runs the ``gather`` kernel with the
indices as an int32 table in the weight buffer. What ``gather_index.gather_problem`` names
(an index out of range...) is refused; indices computed at run time are
``lower_index.lower_gather_by_value``'s.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.gather_index import gather_args, gather_problem, index_run
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d
from tx2_infer_core.cuda.lower_index import lower_gather_by_value
from tx2_infer_core.cuda.lower_ops import copy_launch, same_place, slot_view
from tx2_infer_core.cuda.views import reshape_strides

GATHER = np.dtype([('x', params.PTR), ('xv', params.VIEW), ('idx', params.PTR),
                   ('inner', 'i8'), ('count', 'i8'), ('step', 'i8'), ('y', params.PTR),
                   ('yv', params.VIEW), ('n', 'i8')], align=True)


def merged(shape, axis, count) -> tuple:
    """``shape`` with dim ``axis`` replaced by ``count`` (the output with its index dims
    merged into one)."""
    return tuple(shape[:axis]) + (int(count),) + tuple(shape[axis + 1:])


def lower_gather(lc, node):
    """Gather(data, constant indices, axis): a strided copy of an index run (none for a
    view), else one ``gather`` launch; indices computed at run time: ``gather_nd``."""
    if len(node.inputs) > 1 and node.inputs[1] and not lc.is_const(node.inputs[1]):
        return lower_gather_by_value(lc, node)
    why = gather_problem(lc.graph, node)
    if why:
        lc.unsupported(node, why)
    axis, idx = gather_args(lc.graph, node)
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    n = int(np.prod(y.shape, dtype=np.int64))
    if n == 0:
        return []
    shape = merged(x.shape, axis, idx.size)
    y_strides = reshape_strides(y.shape, y.strides, shape)
    if y_strides is None:
        lc.unsupported(node, f'an output stored with strides {y.strides}')
    dst = slot_view(y, shape, y_strides)
    run = index_run(idx)
    if run is not None:
        start, step = run
        strides = list(x.strides)
        strides[axis] *= step
        src = slot_view(x, shape, strides, start * x.strides[axis])
        if same_place(x.ref, src, y.ref, dst):
            return []
        return [copy_launch(node.name, x, src, y, dst, n)]
    strides = list(x.strides)
    strides[axis] = 0
    fields = dict(x=x.ref, xv=slot_view(x, shape, strides),
                  idx=lc.add_weight(idx.reshape(-1).astype(np.int32)),
                  inner=int(np.prod(shape[axis + 1:], dtype=np.int64)), count=idx.size,
                  step=int(x.strides[axis]), y=y.ref, yv=dst, n=n)
    return [Launch('gather', 'gather', grid_1d(n), (BLOCK, 1, 1), GATHER, fields, node.name)]
