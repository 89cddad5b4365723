"""Lowering of TopK to ``kernels/topk.cu`` (``topk_rows``): one block per row, the rows being
every dim but the axis (``rows.py``), input and outputs read and written where they lie.

K rounds of a block-wide pick of the best element ranked after the previous pick, in the numpy
reference's order (``ops/index.py`` TopK: ties in ascending index order, NaN above every
number); ``sorted=0`` gets the same sorted output (ONNX leaves that order open). The indices are
int32 in the arena where every node reading them has an int32 form (``int32_values.py``), else
FP16, exact up to 2048: then a longer axis is refused by name, naming the reader.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.int32_values import index_range_problem
from tx2_infer_core.cuda.launch import NULL, Launch
from tx2_infer_core.cuda.lower_index import axis_index, stored_problem
from tx2_infer_core.cuda.rows import ROW_WALK, TEAM_MAX, address, row_walk

TOPK_ARGS = np.dtype([('x', params.PTR), ('values', params.PTR), ('indices', params.PTR),
                      ('w', ROW_WALK)] + [(f'i{k}', 'i8') for k in ('r1', 'r2', 'r3', 'j1', 'j2')]
                     + [('k_count', 'i4'), ('largest', 'i4'), ('indices_i32', 'i4')],
                     align=True)
MAX_BLOCKS = 65535


def block_threads(n) -> int:
    """Threads of a row's block: a power of two from 32 to TEAM_MAX, about one per element."""
    return min(TEAM_MAX, max(32, 1 << max(int(n) - 1, 0).bit_length()))


def _k(lc, node, n) -> int:
    if len(node.inputs) < 2 or not lc.is_const(node.inputs[1]):
        lc.unsupported(node, 'K must be a constant')
    k = int(np.asarray(lc.const(node.inputs[1])).reshape(-1)[0])
    if not 0 <= k <= n:
        lc.unsupported(node, f'K={k} outside 0..{n}')
    return k


def _outputs(lc, node, n):
    """The slots of the Values and Indices outputs (None where there is none)."""
    names = (list(node.outputs) + ['', ''])[:2]
    why = index_range_problem(lc.graph, lc.int32, names[1], n)
    if why:
        lc.unsupported(node, why)
    return [lc.slots.get(name) if name else None for name in names]


def lower_topk(lc, node):
    """TopK(X, K) along ``axis``, ``largest`` or smallest: values and indices (int32, or
    FP16)."""
    why = stored_problem(lc, node.inputs[0])
    if why:
        lc.unsupported(node, why)
    x = lc.slot(node.inputs[0])
    if not x.shape or 0 in x.shape:
        lc.unsupported(node, f'an input of shape {x.shape}: rank 1 or more, not empty')
    axis = axis_index(lc, node, node.attrs.get('axis', -1), len(x.shape))
    n = x.shape[axis]
    k = _k(lc, node, n)
    values, indices = _outputs(lc, node, n)
    if k == 0 or (values is None and indices is None):
        return []
    dims = [(size, tuple(int(s.strides[d]) if s else 0 for s in (x, values, indices)))
            for d, size in enumerate(x.shape)]  # (size, strides of each operand) per dim
    found = row_walk(dims[:axis] + dims[axis + 1:], [dims[axis]])
    if found is None:
        lc.unsupported(node, f'{tuple(x.shape)} stored with strides {tuple(x.strides)}: more '
                             'than three dims of rows')
    walk, (index_strides,) = found
    fields = dict(x=address(x), values=address(values) if values else NULL,
                  indices=address(indices) if indices else NULL, w=walk, k_count=k,
                  largest=int(bool(node.attrs.get('largest', 1))),
                  indices_i32=int(bool(indices and indices.int32)))
    fields.update(zip(('ir1', 'ir2', 'ir3', 'ij1', 'ij2'), index_strides))
    blocks = max(1, min(MAX_BLOCKS, int(walk['rows'])))
    return [Launch('topk', 'topk_rows', (blocks, 1, 1), (block_threads(n), 1, 1), TOPK_ARGS,
                   fields, node.name)]
