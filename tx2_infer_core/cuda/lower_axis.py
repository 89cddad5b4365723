"""Lowering of the ops along one axis: ArgMax, ArgMin and Hardmax to ``kernels/arg.cu``
(``arg_rows``), CumSum and CumProd to ``kernels/scan.cu`` (``scan_rows``), Softmax and
LogSoftmax to ``kernels/softmax.cu`` (``softmax``; a whole block a row of 2048 elements or
more). The axis is the elements of a row, every other dim the rows (``rows.py``), input and
output read and written where they lie. The semantics are those of ``ops/reduce.py`` and
``ops/nn.py`` (Hardmax, Softmax).

ArgMax/ArgMin indices are int32 in the arena where every reader has an int32 form
(``int32_values.py``), else FP16, exact up to 2048: then a longer axis is refused by name.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.int32_values import index_range_problem
from tx2_infer_core.cuda.rows import (ROW_WALK, TEAM_MAX, address, float_slots, row_walk,
                                      team_launch, team_size, walk_or_copy)
from tx2_infer_core.ops.common import AttributeNotSupported, axis_of

ARG_MODES = {'ArgMax': 0, 'ArgMin': 1, 'Hardmax': 2}  # ARG_<MODE> of kernels/arg.cu
ARG_ARGS = np.dtype([('x', params.PTR), ('y', params.PTR), ('w', ROW_WALK), ('mode', 'i4'),
                     ('last', 'i4'), ('y_i32', 'i4')], align=True)
SCAN_ARGS = np.dtype([('x', params.PTR), ('y', params.PTR), ('w', ROW_WALK),
                      ('exclusive', 'i4'), ('reverse', 'i4'), ('prod', 'i4')], align=True)
SOFTMAX_ARGS = np.dtype([('x', params.PTR), ('y', params.PTR), ('w', ROW_WALK),
                         ('log_softmax', 'i4')], align=True)


def _axis(lc, node, axis, rank) -> int:
    try:
        return axis_of(int(axis), rank)
    except AttributeNotSupported as err:
        lc.unsupported(node, str(err))


def axis_walk(lc, node, x, y, axis, index_output=False):
    """(launches first, input slot, RowWalk) of ``x`` along ``axis``, the other dims the rows
    (``rows.walk_or_copy``); ``index_output``: y holds one value per row (ArgMax's index, any
    keepdims), else it has x's shape."""
    def walk_of(src, dst):
        strides = list(dst.strides)
        if index_output:
            strides = strides if len(dst.shape) == len(src.shape) else \
                strides[:axis] + [0] + strides[axis:]
            strides[axis] = 0
        dims = [(n, (a, b)) for n, a, b in zip(src.shape, src.strides, strides)]
        found = row_walk(dims[:axis] + dims[axis + 1:], [dims[axis]])
        return found and found[0]

    return walk_or_copy(lc, node, x, y, walk_of, in_place=not index_output)


def lower_arg(lc, node):
    """ArgMax, ArgMin (``keepdims``, ``select_last_index``) and Hardmax along ``axis``."""
    x, y = float_slots(lc, node)
    rank, a = len(x.shape), node.attrs
    axis = _axis(lc, node, a.get('axis', -1 if node.op == 'Hardmax' else 0), rank)
    n = x.shape[axis]
    why = '' if node.op == 'Hardmax' else \
        index_range_problem(lc.graph, lc.int32, node.outputs[0], n)
    if why:
        lc.unsupported(node, why)
    launches, src, walk = axis_walk(lc, node, x, y, axis, index_output=node.op != 'Hardmax')
    fields = dict(x=address(src), y=address(y), w=walk, mode=ARG_MODES[node.op],
                  last=int(a.get('select_last_index', 0)), y_i32=int(y.int32))
    return launches + [team_launch('arg', 'arg_rows', walk, team_size(n), ARG_ARGS, fields,
                                   node.name)]


def lower_scan(lc, node):
    """CumSum and CumProd along a constant ``axis`` (``exclusive``, ``reverse``)."""
    x, y = float_slots(lc, node)
    if len(node.inputs) < 2 or not lc.is_const(node.inputs[1]):
        lc.unsupported(node, 'the axis must be a constant')
    axis = _axis(lc, node, np.asarray(lc.const(node.inputs[1])).reshape(-1)[0], len(x.shape))
    launches, src, walk = axis_walk(lc, node, x, y, axis)
    fields = dict(x=address(src), y=address(y), w=walk,
                  exclusive=int(node.attrs.get('exclusive', 0)),
                  reverse=int(node.attrs.get('reverse', 0)), prod=int(node.op == 'CumProd'))
    return launches + [team_launch('scan', 'scan_rows', walk, team_size(x.shape[axis]),
                                   SCAN_ARGS, fields, node.name)]


def lower_softmax(lc, node):
    """Softmax and LogSoftmax along ``axis`` (opset 13; older ones are rewritten on import)."""
    x, y = float_slots(lc, node)
    axis = _axis(lc, node, node.attrs.get('axis', -1), len(x.shape))
    launches, src, walk = axis_walk(lc, node, x, y, axis)
    fields = dict(x=address(src), y=address(y), w=walk,
                  log_softmax=int(node.op == 'LogSoftmax'))
    team = team_size(x.shape[axis], TEAM_MAX)
    return launches + [team_launch('softmax', 'softmax', walk, team, SOFTMAX_ARGS, fields,
                                   node.name)]
