"""Tensors walked as rows of elements: the geometry of ``kernels/norm.cu``, ``arg.cu`` and
``scan.cu`` (``kernels/rows.cuh``).

Such a kernel takes a ``RowWalk``: row r is the index triple (r / (r2 r3), r / r3 % r2, r % r3),
element j the pair (j / j2, j % j2), and each index has a stride per tensor. A lowering names
the logical dims of the rows and of the elements, each with its size and the strides every
operand (input, output, parameters) has along it; ``row_walk`` drops size-1 dims and merges the
neighbours that every operand steps over as one dim, so that row-major tensors, NHWC images and
channel slices of them are read and written where they lie. More than three dims of rows or two
of elements left: ``walk_or_copy`` first copies the input into the output, else refuses.
``float_data``, ``float_slots`` and ``address`` are the lowerings' shared first steps.
"""
import numpy as np

from tx2_infer_core.cuda.launch import Launch
from tx2_infer_core.cuda.lower_ops import copy_launch, slot_view

TEAM_MAX = 256  # TX2_TEAM_MAX: a team of a whole block
BLOCK_THREADS = 256
INT32_MAX = 2 ** 31 - 1
ROW_DIMS, ELEMENT_DIMS = 3, 2  # index dims of a row and of an element
ROW_WALK = np.dtype([('rows', 'i8'), ('n', 'i4'), ('r2', 'i4'), ('r3', 'i4'), ('j2', 'i4')]
                    + [(f'{t}{k}', 'i8') for t in 'xy' for k in ('r1', 'r2', 'r3', 'j1', 'j2')],
                    align=True)  # struct RowWalk


def _merged(dims) -> list:
    """``dims`` [(size, strides)] in this order, size-1 dims dropped, a dim merged into the one
    before it when every operand's stride there is this dim's stride times its size."""
    out = []
    for size, strides in dims:
        if size == 1:
            continue
        if out and all(a == b * size for a, b in zip(out[-1][1], strides)):
            out[-1] = (out[-1][0] * size, tuple(strides))
        else:
            out.append((size, tuple(strides)))
    return out


def merge(dims) -> list:
    """The fewest dims [(size, strides per operand)] walking ``dims`` in their order or with
    the first operand's largest strides first (an NHWC image's pixels before its channels)."""
    dims = [(int(n), tuple(int(s) for s in st)) for n, st in dims]
    by_stride = sorted(dims, key=lambda d: -abs(d[1][0]))
    return min(_merged(dims), _merged(by_stride), key=len)


def _dims(dims, count, operands):
    """(sizes, [strides per operand]) of ``dims`` merged into exactly ``count`` dims (size-1
    dims put in front), or None when they do not fit (or a size passes int32)."""
    found = merge(dims)
    if len(found) > count or any(n > INT32_MAX for n, _ in found):
        return None
    found = [(1, (0,) * operands)] * (count - len(found)) + found
    return [n for n, _ in found], [tuple(st[k] for _, st in found) for k in range(operands)]


def row_walk(rows, elements):
    """(RowWalk record, [(r1, r2, r3, j1, j2) strides of each further operand]) of a walk over
    ``rows`` and ``elements``: [(size, (input stride, output stride, *further operands'))] per
    logical dim; None when they do not come down to ROW_DIMS and ELEMENT_DIMS dims."""
    operands = len((rows + elements)[0][1]) if rows or elements else 2
    r, j = _dims(rows, ROW_DIMS, operands), _dims(elements, ELEMENT_DIMS, operands)
    n = int(np.prod([d[0] for d in elements], dtype=np.int64))
    if r is None or j is None or n > INT32_MAX:
        return None
    walk = np.zeros((), ROW_WALK)
    walk['rows'] = int(np.prod([d[0] for d in rows], dtype=np.int64))
    walk['n'], walk['r2'], walk['r3'], walk['j2'] = n, r[0][1], r[0][2], j[0][1]
    strides = [r[1][k] + j[1][k] for k in range(operands)]
    for k, side in enumerate('xy'):
        for name, stride in zip(('r1', 'r2', 'r3', 'j1', 'j2'), strides[k]):
            walk[side + name] = stride
    return walk, strides[2:]


def team_size(n, most=32) -> int:
    """Threads per row of ``n`` elements: a power of two near n / 4, at most 32, or ``most``
    (TEAM_MAX: the whole block) for rows of 2048 elements and more."""
    if most > 32 and n >= 2048:
        return most
    return min(32, 1 << max(int(np.ceil(n / 4)) - 1, 0).bit_length())


def team_launch(module, kernel, walk, team, dtype, fields, name) -> Launch:
    """A launch of ``kernel`` with a team of ``team`` threads per row of ``walk``."""
    per_block = BLOCK_THREADS // team
    blocks = max(1, min(65535, -(-int(walk['rows']) // per_block)))
    return Launch(module, kernel, (blocks, 1, 1), (team, per_block, 1), dtype, fields, name)


def float_data(lc, node):
    """Refuse ``node`` unless its first input is float data."""
    name = node.inputs[0]
    dtype = lc.const(name).dtype if lc.is_const(name) else np.dtype(lc.dtype_of(name))
    if dtype.kind != 'f':
        lc.unsupported(node, f'{dtype} data: float only (the arena is FP16)')


def float_slots(lc, node):
    """The input and output slots of a row op's ``node``, refused unless float data of rank
    1 or more, not empty."""
    float_data(lc, node)
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    if not x.shape or 0 in x.shape:
        lc.unsupported(node, f'an input of shape {x.shape}: rank 1 or more, not empty')
    return x, y


def address(slot):
    """The device address of a slot's first element."""
    return slot.address()


def walk_or_copy(lc, node, x, y, walk_of, in_place=True):
    """(launches first, the kernel's input slot, ``walk_of(input, y)``): x itself where its
    storage allows the walk; else (``in_place``: the kernel may overwrite its input) a copy of x
    into y (of x's shape, stored dense) and the walk of y in place. Refused otherwise."""
    found = walk_of(x, y)
    if found is not None:
        return [], x, found
    if in_place and tuple(x.shape) == tuple(y.shape) and y.dense():
        found = walk_of(y, y)
        if found is not None:
            n = int(np.prod(y.shape, dtype=np.int64))
            return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), n)], y, found
    lc.unsupported(node, f'{tuple(x.shape)} stored with strides {tuple(x.strides)} -> '
                         f'{tuple(y.strides)}: more than two dims of rows or of elements')
