"""The maths of pointwise fusion, as pure functions over a graph (no rewriting here).

A *group* is a set of elementwise nodes computed as one: every value passed between them has
one reader (the next member) and is not a graph output, and every member's output has the
group output's shape, so the group is a tree of steps over one index space. ``chain_groups``
finds them, ``group_program`` writes one as a pointwise program (``ops/fused.py``) and
``recognise_activation`` tells whether a program of one input is a known activation
(HardSwish, HardSigmoid, SiLU, GELU), by evaluating it, whatever the exporter wrote.
"""
import numpy as np

from tx2_infer_core.cuda.codegen_pointwise import C_OPS
from tx2_infer_core.ops import elementwise, fused, traits
from tx2_infer_core.passes.graph_edit import ONNX_DTYPES, constant, dtype_of, shape_of

MAX_INPUTS = 8          # external tensor inputs of one fused node (cuda/codegen_pointwise.py)
MAX_ACTIVATION_STEPS = 16   # longest group tried as a decomposed activation (GELU's is 5)
# From ops/traits.py: the one-input elementwise ops the CUDA generator writes (``C_OPS``: a C
# expression or a kernel code; CPU-only ops such as Acos are never fused; Clip and Not are
# steps of their own; IsNaN and IsInf make bool) and the binary ops with a kernel code (the
# rest are variadic or logic ops).
UNARY = tuple(t.name for t in traits.TRAITS.values()
              if t.kind in (traits.ACTIVATION, traits.UNARY) and t.name in C_OPS
              and t.name not in ('Clip', 'Not', 'IsNaN', 'IsInf'))
BINARY = tuple(traits.codes(traits.BINARY))
COMPARE = ('Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual')
# Every op a pointwise program may hold (the CUDA generator has a C expression for each).
POINTWISE_OPS = UNARY + BINARY + COMPARE + ('Clip', 'Where', 'Cast', 'Not')
FLOAT, BOOL = 'float32', 'bool'
CAST_INTS = ('int16', 'int32', 'int64', 'uint16', 'uint32', 'uint64')  # FP16 values on CUDA


def _input_dtypes_ok(graph, node) -> bool:
    """Float32 data inputs; bool for Where's condition and Not; Cast from float32, bool or an
    integer the arena holds."""
    names = [n for n in node.inputs if n]
    want = {'Where': [BOOL, FLOAT, FLOAT], 'Not': [BOOL]}.get(node.op)
    if node.op == 'Cast':
        return dtype_of(graph, names[0]) in (FLOAT, BOOL) + CAST_INTS
    if node.op == 'Clip':
        names = names[:1]
    if want is None:
        want = [FLOAT] * len(names)
    return len(want) == len(names) and [dtype_of(graph, n) for n in names] == want


def _clip_bounds_ok(graph, node) -> bool:
    """Clip bounds are omitted or constant scalars (they become literals)."""
    for name in node.inputs[1:3]:
        c = constant(graph, name) if name else None
        if name and (c is None or c.size != 1):
            return False
    return True


def fusable(graph, node) -> bool:
    """Whether ``node`` may be a step of a pointwise program."""
    if node.op not in POINTWISE_OPS or len([o for o in node.outputs if o]) != 1:
        return False
    out = node.outputs[0]
    want = BOOL if node.op in COMPARE + ('Not',) else FLOAT
    if node.op == 'Cast':  # to float32, bool or an integer (cuda/codegen_pointwise.py)
        want = ONNX_DTYPES.get(int(node.attrs.get('to', 0)))
        want = want if want in (FLOAT, BOOL) + CAST_INTS else None
    if want is None or dtype_of(graph, out) != want or shape_of(graph, out) is None:
        return False
    if node.op in ('Max', 'Min') and len([n for n in node.inputs if n]) != 2:
        return False
    if node.op == 'Gelu' and _text(node.attrs.get('approximate', 'none')) not in ('none', 'tanh'):
        return False
    if node.op == 'Clip' and not _clip_bounds_ok(graph, node):
        return False
    return _input_dtypes_ok(graph, node)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _read_only_by(graph, consumers, name, node) -> bool:
    """``name`` is not a graph output and ``node`` is its only reader (maybe twice)."""
    readers = consumers.get(name, [])
    return name not in graph.outputs and bool(readers) and all(r is node for r in readers)


def group_trees(graph) -> dict:
    """{value: (node, [child values], member count)}: each fusable node with the groups of the
    inputs only it reads (of its output's shape) as children; insertion in graph order.

    Linear in the graph: a group's members are listed (``members``) only when asked.
    """
    consumers = graph.consumers()
    trees = {}
    for node in graph.nodes:
        if not fusable(graph, node):
            continue
        out, kids = node.outputs[0], []
        for name in dict.fromkeys(node.inputs):
            if (name in trees and _read_only_by(graph, consumers, name, node)
                    and shape_of(graph, name) == shape_of(graph, out)):
                kids.append(name)
        trees[out] = (node, kids, 1 + sum(trees[k][2] for k in kids))
    return trees


def members(trees, out, order) -> list:
    """The nodes of the group rooted at ``out`` in graph order (``order``: id(node) -> index)."""
    stack, found = [out], []
    while stack:
        node, kids, _ = trees[stack.pop()]
        found.append(node)
        stack.extend(kids)
    return sorted(found, key=lambda n: order[id(n)])


def rooted_groups(graph) -> dict:
    """{value: the group computing it}: each fusable node with the groups of the inputs only it
    reads (of its output's shape), members in graph order; insertion in graph order.
    (Every group listed in full: quadratic on a long chain; the passes use ``group_trees``.)"""
    trees, order = group_trees(graph), {id(n): i for i, n in enumerate(graph.nodes)}
    return {out: members(trees, out, order) for out in trees}


def chain_groups(graph) -> list:
    """The largest groups of two or more nodes whose output is float32 and which read at most
    ``MAX_INPUTS`` tensors, in graph order: a tree that would read more is cut
    (``bounded_groups``), e.g. a sum of 11 tensors into a group of 8 inputs and one of 4."""
    trees, order = group_trees(graph), {id(n): i for i, n in enumerate(graph.nodes)}
    inner = {kid for _, kids, _ in trees.values() for kid in kids}
    groups = [g for out in trees if out not in inner
              for g in bounded_groups(graph, trees, out, order)]
    return sorted((g for g in groups if len(g) > 1 and dtype_of(graph, g[-1].outputs[0]) == FLOAT),
                  key=lambda g: order[id(g[-1])])


def bounded_groups(graph, trees, root, order, limit=None) -> list:
    """The tree of ``root`` (``group_trees``) cut into groups of at most ``limit`` external
    inputs (``MAX_INPUTS``), members in graph order: children first, each node takes its
    children's groups and, while it reads too many tensors, leaves out the child group reading
    the most (which stays a group of its own; its value becomes an input). Iterative: a chain
    may be thousands of nodes long."""
    limit = limit or MAX_INPUTS
    rank = len(shape_of(graph, root))
    open_groups, done, stack = {}, [], [(root, False)]
    while stack:
        out, expanded = stack.pop()
        node, kids, _ = trees[out]
        if not expanded:
            stack.append((out, True))
            stack.extend((kid, False) for kid in kids)
            continue
        kept = {kid: open_groups.pop(kid) for kid in kids}
        while True:
            own = set(node_reads(graph, node, kept, rank))
            reads = own.union(*(inputs for _, inputs in kept.values()))
            if len(reads) <= limit or not kept:
                break
            widest = max(kept, key=lambda kid: (len(kept[kid][1]), order[id(trees[kid][0])]))
            done.append(kept.pop(widest)[0])
        nodes = [node] + [n for group, _ in kept.values() for n in group]
        open_groups[out] = (nodes, reads)
    done.append(open_groups[root][0])
    return [sorted(group, key=lambda n: order[id(n)]) for group in done]


def activation_groups(graph) -> list:
    """``[(group, input, (op, attrs))]``: the largest groups of one input that compute a known
    activation (``recognise_activation``), no node in two of them. Groups of more than
    ``MAX_ACTIVATION_STEPS`` nodes are not tried (every known form is far shorter), so a long
    chain costs linear time, not one evaluation per prefix."""
    trees, taken, found = group_trees(graph), set(), []
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    for out, (_, _, size) in reversed(list(trees.items())):
        if not 2 <= size <= MAX_ACTIVATION_STEPS or dtype_of(graph, out) != FLOAT:
            continue
        group = members(trees, out, order)
        if taken & {id(n) for n in group}:
            continue
        inputs, steps = group_program(graph, group)
        if len(inputs) != 1 or shape_of(graph, inputs[0]) != shape_of(graph, out):
            continue
        act = recognise_activation(steps)
        if act is not None:
            found.append((group, inputs[0], act))
            taken |= {id(n) for n in group}
    return found


def literal(graph, name, rank):
    """The float value of constant ``name`` when it can be written into a program as a number
    (a float32 scalar of at most ``rank`` dims, so the output shape is unchanged), else None."""
    c = constant(graph, name)
    if c is None or c.size != 1 or c.dtype != np.float32 or c.ndim > rank:
        return None
    return float(c.reshape(()))


def node_reads(graph, node, made, rank) -> list:
    """The tensors ``node`` reads from outside a group making the values ``made``
    (activations and non-literal constants)."""
    return [n for n in node.inputs if n and n not in made and literal(graph, n, rank) is None]


def group_inputs(graph, group) -> list:
    """The tensors a group reads from outside (activations and non-literal constants)."""
    made = {n.outputs[0] for n in group}
    rank = len(shape_of(graph, group[-1].outputs[0]))
    return list(dict.fromkeys(n for node in group for n in node_reads(graph, node, made, rank)))


def group_program(graph, group) -> tuple:
    """``(external input names, program steps)`` of a group (``ops/fused.py`` format)."""
    inputs = group_inputs(graph, group)
    rank = len(shape_of(graph, group[-1].outputs[0]))
    where = {n: f'x{k}' for k, n in enumerate(inputs)}
    where.update({node.outputs[0]: f't{j}' for j, node in enumerate(group)})
    steps = []
    for node in group:
        args = [None if not n else where.get(n, literal(graph, n, rank)) for n in node.inputs]
        attrs = {k: _text(v) for k, v in node.attrs.items()}
        steps.append((node.op, args, attrs))
    return inputs, steps


# Activation patterns --------------------------------------------------------------------------

PROBE = np.concatenate([np.linspace(-10, 10, 2001), [-1e3, -50, -20, 20, 50, 1e3]]).astype(
    np.float32)
TOLERANCE = 1e-5


def _evaluate(steps, x):
    with np.errstate(all='ignore'):
        try:
            y = fused.FusedPointwise(x, program=steps)
        except Exception:  # a step that cannot run on the probe: not an activation
            return None
    y = np.asarray(y)
    return y if y.shape == x.shape and y.dtype == x.dtype else None


def _matches(y, ref) -> bool:
    return bool(np.all(np.abs(y.astype(np.float64) - ref) <= TOLERANCE * (1 + np.abs(ref))))


def _hard_sigmoid_fit(y):
    """HardSigmoid attrs ``{alpha, beta}`` of the line through the probe outputs strictly
    between 0 and 1 (verified by the caller), or None."""
    inside = np.flatnonzero((y[:-6] > 1e-3) & (y[:-6] < 1 - 1e-3))
    if len(inside) < 2:
        return None
    (x0, x1), (y0, y1) = PROBE[inside[[0, -1]]].astype(float), y[inside[[0, -1]]].astype(float)
    alpha = (y1 - y0) / (x1 - x0)
    return {'alpha': float(alpha), 'beta': float(y0 - alpha * x0)}


def recognise_activation(steps):
    """``(op, attrs)`` of the activation a one-input program computes (HardSwish,
    HardSigmoid, SiLU, Gelu), or None."""
    x = PROBE.copy()
    y = _evaluate(steps, x)
    if y is None or not np.isfinite(y[:-6]).all():
        return None
    x64 = x.astype(np.float64)
    candidates = [('HardSwish', {}), ('SiLU', {}), ('Gelu', {}),
                  ('HardSigmoid', _hard_sigmoid_fit(y))]
    for op, attrs in candidates:
        if attrs is None or attrs.get('alpha', 1) <= 0:
            continue
        with np.errstate(all='ignore'):
            ref = getattr(elementwise, op)(x64, **attrs)
        if _matches(y, ref):
            return op, attrs
    return None
