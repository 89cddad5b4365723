"""Which integer activations the CUDA arena stores as int32 (4 bytes) instead of FP16.

FP16 holds every integer exactly up to 2048 only, so an index into a longer dim (TopK over
8400 anchors, then a gather by those indices) needs int32. Integer activations (int32 and
int64 in the graph, the latter stored as int32) are grouped into classes joined by the nodes
that touch several of them (a copy, Tile, an integer Add...); a class is int32 when an index
op (``INDEX_OPS``) makes or reads one of its values and every node touching it has an int32
form for that operand (``INT32_INPUTS``, ``INT32_OUTPUTS``). Else it stays FP16, as before
(``blocker`` names the node that keeps an index class there); so a float truncated by a Cast
to an integer and back stays one FP16 launch::

    scores ─▶ TopK ─▶ idx ─▶ Unsqueeze ─▶ Tile ─▶ GatherElements(boxes, ·)   int32 class
                        └──▶ Cast(float) ─▶ box decode                      (Cast reads int32)

The int32 forms: TopK's Indices and ArgMax/ArgMin write int32 (``topk.cu``, ``arg.cu``); the
gathers read int32 index tensors as their table (``gather_nd.cu``); the copies (Reshape and
friends, Transpose, Slice, Split, Concat, Expand, Tile) copy int32 elements (``copy_i32``);
Cast, the integer Add, Sub, Mul, Div, Mod, Where and the comparisons are generated pointwise
kernels reading and writing int32 (FP32 maths: exact while values stay below 2**24); graph
inputs and outputs are converted from and to the FP32 staging area (``io.cu``).
"""
from dataclasses import dataclass, field

import numpy as np

from tx2_infer_core.ops import traits

ALL = None  # every position
COPY_OPS = frozenset(traits.names(kind=traits.COPY)) - {'Cast'}
MOVE_OPS = frozenset({'Transpose', 'Slice', 'Split', 'Concat', 'Expand', 'Tile'})
ARITHMETIC = frozenset({'Add', 'Sub', 'Mul', 'Div', 'Mod'})
COMPARE = frozenset({'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual'})
# op: the input positions that may be int32 (ALL: any)
INT32_INPUTS = {**{op: (0,) for op in COPY_OPS | {'Expand', 'Tile', 'Transpose', 'Slice',
                                                  'Split'}},
                'Concat': ALL, 'Cast': (0,), 'FusedPointwise': ALL, 'Where': (1, 2),
                **{op: (0, 1) for op in ARITHMETIC | COMPARE},
                'GatherElements': (1,), 'GatherND': (1,), 'Gather': (1,), 'OneHot': (0,)}
# op: the output positions that may be int32
INT32_OUTPUTS = {**{op: ALL for op in COPY_OPS | MOVE_OPS | ARITHMETIC},
                 'Cast': (0,), 'Where': (0,), 'TopK': (1,), 'ArgMax': (0,), 'ArgMin': (0,)}
# the index ops: a class is int32 only when one of these makes or reads one of its values
INDEX_OPS = frozenset({'TopK', 'ArgMax', 'ArgMin', 'Gather', 'GatherElements', 'GatherND',
                       'OneHot'})
INT32_EXACT = 1 << 24  # integers the FP32 maths and staging of int32 values hold exactly
FP16_EXACT = 2048  # the largest n with every integer up to it exact in FP16


@dataclass
class Int32Values:
    """``values``: the activations stored int32; ``blocker``: for an integer activation kept
    FP16, the node (op and name) that has no int32 form for it."""

    values: frozenset = frozenset()
    blocker: dict = field(default_factory=dict)


def is_wide_int(dtype) -> bool:
    """True for the integer dtypes an int32 class may hold: 4 and 8 bytes, signed."""
    dtype = np.dtype(dtype)
    return dtype.kind == 'i' and dtype.itemsize in (4, 8)


def _allowed(table, op, position) -> bool:
    if op not in table:
        return False
    return table[op] is ALL or position in table[op]


def _candidates(graph) -> set:
    return {name for name, v in graph.values.items()
            if name not in graph.weights and is_wide_int(v.dtype)}


def _find(parent, name):
    while parent[name] != name:
        parent[name] = parent[parent[name]]
        name = parent[name]
    return name


def _classes(graph, ints) -> dict:
    """{value: class root}: the integer activations touched by one node share a class."""
    parent = {name: name for name in ints}
    for node in graph.nodes:
        touched = [n for n in list(node.inputs) + list(node.outputs) if n in ints]
        for name in touched[1:]:
            parent[_find(parent, name)] = _find(parent, touched[0])
    return {name: _find(parent, name) for name in ints}


def _blockers(graph, ints) -> dict:
    """{value: 'Op node'} of each integer activation some node has no int32 form for."""
    found = {}
    for node in graph.nodes:
        for table, names in ((INT32_INPUTS, node.inputs), (INT32_OUTPUTS, node.outputs)):
            for k, name in enumerate(names):
                if name in ints and not _allowed(table, node.op, k):
                    found.setdefault(name, f"{node.op} '{node.name}'")
    return found


def int32_values(graph) -> Int32Values:
    """The int32 classes of ``graph`` (see the module doc); a pure function of the graph."""
    ints = _candidates(graph)
    root = _classes(graph, ints)
    seeded = {root[n] for node in graph.nodes if node.op in INDEX_OPS
              for n in list(node.inputs) + list(node.outputs) if n in ints}
    class_blocker = {}
    for name, why in _blockers(graph, ints).items():
        class_blocker.setdefault(root[name], why)
    values = frozenset(n for n in ints if root[n] in seeded and root[n] not in class_blocker)
    return Int32Values(values, {n: class_blocker[root[n]] for n in ints
                                if root[n] in seeded and n not in values})


def is_read(graph, name) -> bool:
    """True when value ``name`` is a graph output or the input of a node."""
    return bool(name) and (name in graph.outputs
                           or any(name in node.inputs for node in graph.nodes))


def why_not_int32(found: Int32Values, name) -> str:
    """Why integer activation ``name`` is not stored int32 ('' when it is)."""
    if name in found.values:
        return ''
    blocker = found.blocker.get(name)
    return f"'{name}' is read or written by {blocker}, which has no int32 form" \
        if blocker else f"'{name}' is no int32 or int64 activation"


def index_range_problem(graph, found: Int32Values, name, n) -> str:
    """Why index output ``name`` (of TopK, ArgMax, ArgMin), when read, cannot hold indices
    into an axis of ``n`` elements ('' when it can): FP16 past 2048 (not int32: why said),
    int32 past 2**24 (FP32 maths)."""
    if not is_read(graph, name):
        return ''
    if n > INT32_EXACT:
        return (f'an axis of {n} elements: its indices pass 2**24, past what the int32 index '
                'values keep exact through FP32 maths')
    why = why_not_int32(found, name)
    if n > FP16_EXACT and why:
        return (f'an axis of {n} elements with its indices read: they are FP16 in the arena, '
                f'exact up to {FP16_EXACT}, not int32 ({why})')
    return ''
