"""Strided views through copy ops, for the attention passes (``fuse_attention.py``,
``merge_matmuls.py``).

A chain of copy ops (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Slice, Identity) moves
elements without changing them. To know whether a kernel can read an operand straight from the
tensor before the chain, the chain is run on an array of element indices with the reference
ops themselves: the operand is a strided view of that tensor when the indices it ends up with
are affine in its multi-index, ``offset + sum(i_k * stride_k)`` (``affine``). Scalar Mul/Div by
a constant on the way are scale factors (the attention kernel applies them to the scores).
"""
import numpy as np

from tx2_infer_core.ops import run_node
from tx2_infer_core.passes.graph_edit import constant, shape_of, sole_consumer

VIEW_OPS = ('Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Slice', 'Identity')
BIJECTIVE_OPS = tuple(op for op in VIEW_OPS if op != 'Slice')  # every element kept, once
MAX_TRACE = 1 << 22  # elements of the index arrays a trace may build


def size_of(shape) -> int:
    """Number of elements of ``shape``."""
    return int(np.prod(shape, dtype=np.int64))


def affine(index):
    """``[offset, stride per axis]`` with ``index[i] == offset + sum(i_k * stride_k)`` for every
    multi-index ``i`` of the integer array ``index``, or None when it is not affine."""
    if index.size == 0:
        return None
    offset = int(index.reshape(-1)[0])
    strides, expected = [], np.full(index.shape, offset, np.int64)
    for axis, n in enumerate(index.shape):
        step = 0
        if n > 1:
            step = int(index[(0,) * axis + (1,) + (0,) * (index.ndim - axis - 1)]) - offset
        strides.append(step)
        shape = [1] * index.ndim
        shape[axis] = n
        expected = expected + np.arange(n, dtype=np.int64).reshape(shape) * step
    return [offset] + strides if np.array_equal(index, expected) else None


def _consts_only(graph, node) -> bool:
    return all(not name or constant(graph, name) is not None for name in node.inputs[1:])


def scalar_factor(graph, node):
    """(data input, factor) of a Mul or Div of an activation by a one-element constant that
    keeps the activation's shape, or None."""
    if node.op not in ('Mul', 'Div') or len(node.inputs) != 2:
        return None
    for data, other in (node.inputs, node.inputs[::-1]):
        c = constant(graph, other)
        if (c is None or c.size != 1 or constant(graph, data) is not None
                or (node.op == 'Div' and other != node.inputs[1])
                or shape_of(graph, data) != shape_of(graph, node.outputs[0])):
            continue
        value = float(np.asarray(c, np.float64).reshape(()))
        if node.op == 'Div' and value == 0:
            return None
        return data, (1.0 / value if node.op == 'Div' else value)
    return None


def _step_up(graph, producers, name):
    """(node, data input, factor) when ``name`` is made by a copy op or a scalar Mul/Div."""
    node = producers.get(name)
    if node is None:
        return None
    if node.op in VIEW_OPS and _consts_only(graph, node) and node.outputs[0] == name:
        return node, node.inputs[0], 1.0
    found = scalar_factor(graph, node)
    return (node, found[0], found[1]) if found else None


def sources(graph, producers, name) -> list:
    """Where operand ``name`` may be read from, furthest first: ``(source value, chain of copy
    and scale nodes from the source to the operand, product of the scale factors)``. The last
    entry is the operand itself (empty chain)."""
    found, chain, scale, current = [(name, [], 1.0)], [], 1.0, name
    while True:
        step = _step_up(graph, producers, current)
        if step is None:
            return found[::-1]
        node, current, factor = step
        chain, scale = [node] + chain, scale * factor
        found.append((current, chain, scale))


def run_chain(graph, chain, index):
    """Push an array of element indices through the copy nodes of ``chain`` (scale nodes are
    skipped: they do not move elements)."""
    for node in chain:
        if node.op in VIEW_OPS:
            args = [index] + [constant(graph, name) if name else None
                              for name in node.inputs[1:]]
            index = run_node(node, args)[0]
    return index


def read_view(graph, source, chain, shape):
    """``[offset, *strides]`` over ``shape`` (the operand's shape broadcast to the kernel's
    rank: leading 1s, broadcast batch dims) of the operand made from ``source`` by ``chain``,
    or None when it is not a strided view of ``source``."""
    src_shape = shape_of(graph, source)
    if src_shape is None or size_of(src_shape) > MAX_TRACE:
        return None
    index = np.arange(size_of(src_shape), dtype=np.int64).reshape(src_shape)
    index = run_chain(graph, chain, index)
    rank = len(shape)
    index = index.reshape((1,) * (rank - index.ndim) + index.shape)
    return affine(np.broadcast_to(index, shape))


def outputs(graph, consumers, name) -> list:
    """Where the result ``name`` may be written to, nearest first: ``(value, chain of copy
    nodes from ``name`` to it)``; each value on the way has one reader and is no graph
    output, and every copy keeps every element (no Slice)."""
    found, chain, current = [(name, [])], [], name
    while True:
        node = sole_consumer(graph, consumers, current)
        if (node is None or node.op not in BIJECTIVE_OPS or node.inputs[0] != current
                or not _consts_only(graph, node)):
            return found
        chain, current = chain + [node], node.outputs[0]
        found.append((current, chain))


def write_view(graph, chain, shape, rank):
    """``[offset, *strides]`` of where each element of a result of ``shape`` (seen with
    leading 1s as ``rank`` dims) lands in the value ``chain`` makes from it, or None when
    that is not strided."""
    n = size_of(shape)
    if n > MAX_TRACE:
        return None
    moved = run_chain(graph, chain, np.arange(n, dtype=np.int64).reshape(shape)).reshape(-1)
    if moved.size != n:
        return None
    where = np.empty(n, np.int64)
    where[moved] = np.arange(n, dtype=np.int64)
    return affine(where.reshape((1,) * (rank - len(shape)) + tuple(shape)))
