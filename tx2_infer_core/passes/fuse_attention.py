"""Fuse scaled dot-product attention into one ``FusedAttention`` node (pass level 3: the cuda
backend's builds; ``ops/attention.py`` has the op, ``kernels/attention.cu`` its kernel).

Pattern (bracketed steps are optional; "copies" are any Reshape, Transpose, Squeeze,
Unsqueeze, Flatten, Slice or Identity nodes, "*s" scalar Mul/Div by constants)::

    q_src -[copies, *s]-> Q  --.
    k_src -[copies, *s]-> K^T -+-> MatMul -> [*s] -> [Add mask] -> [copies] -> Softmax(last)
                                                                                 |
    v_src -[copies]-----> V  ----> MatMul <- [copies] <--------------------------'
                                     '-> [Transpose, Reshape, ...] -> out

becomes ``FusedAttention(q_src, k_src, v_src, mask) -> out``: the kernel reads Q, K and V
straight from their sources as strided views and writes ``out`` through a strided view, so
the copies around the attention disappear (those read elsewhere stay).

Safety: the scores, the probabilities and every value between them, and the values of the
output copies, have one reader and are no graph output; float tensors; Q, K^T, V of rank 2
to 4 whose batch dims broadcast to the scores'; Softmax over the last axis (copies around it
keep that axis); a mask that broadcasts to the scores without growing them. Each operand is
read from the furthest source of which it is a strided view (the scales on the chain taken
into ``scale``; V's chain must hold none); the output is written to the last value of the
output copies it reaches with strides.
"""
from tx2_infer_core.ir import Node
from tx2_infer_core.passes import attention_views as views
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, dtype_of, rewrite_nodes, shape_of,
                                              sole_consumer)

SOFTMAX_COPIES = ('Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity')
RANK = 4  # the kernel's [batch, head, row, column]


def _scales(graph, consumers, name):
    """(scale, nodes, last value) of the scalar Mul/Div chain reading ``name``."""
    scale, nodes, node = 1.0, [], sole_consumer(graph, consumers, name)
    while node is not None:
        found = views.scalar_factor(graph, node)
        if found is None or found[0] != name:
            break
        scale, name = scale * found[1], node.outputs[0]
        nodes.append(node)
        node = sole_consumer(graph, consumers, name)
    return scale, nodes, name


def _mask(graph, consumers, name, scores_shape):
    """(mask value, [Add node], sum value) when ``name`` is read by an Add of a mask that
    broadcasts to the scores without growing them; else ('', [], name)."""
    node = sole_consumer(graph, consumers, name)
    if node is None or node.op != 'Add' or len(node.inputs) != 2 or name not in node.inputs:
        return '', [], name
    mask = node.inputs[1] if node.inputs[0] == name else node.inputs[0]
    shape = shape_of(graph, mask)
    if mask == name or shape is None or len(shape) > len(scores_shape) or any(
            m not in (1, s) for m, s in zip(shape[::-1], scores_shape[::-1])):
        return '', [], name
    return mask, [node], node.outputs[0]


def _copies(graph, consumers, name, last):
    """(nodes, last value) of the copies reading ``name`` that keep the last axis ``last``."""
    nodes, node = [], sole_consumer(graph, consumers, name)
    while (node is not None and node.op in SOFTMAX_COPIES and node.inputs[0] == name
           and (shape_of(graph, node.outputs[0]) or (0,))[-1:] == (last,)):
        nodes.append(node)
        name = node.outputs[0]
        node = sole_consumer(graph, consumers, name)
    return nodes, name


def _softmax(graph, consumers, name, last):
    """(nodes, probabilities) of [copies] -> Softmax(last axis) -> [copies] from ``name``."""
    before, name = _copies(graph, consumers, name, last)
    node = sole_consumer(graph, consumers, name)
    rank = len(shape_of(graph, name) or ())
    if node is None or node.op != 'Softmax' or node.attrs.get('axis', -1) not in (-1, rank - 1):
        return None
    after, probs = _copies(graph, consumers, node.outputs[0], last)
    return before + [node] + after, probs


def _middle(graph, consumers, mm1):
    """(scale, mask, nodes, probabilities) between the two MatMuls, or None."""
    scores = shape_of(graph, mm1.outputs[0])
    if scores is None or not 2 <= len(scores) <= RANK:
        return None
    scale, scaled, name = _scales(graph, consumers, mm1.outputs[0])
    mask, added, name = _mask(graph, consumers, name, scores)
    found = _softmax(graph, consumers, name, scores[-1])
    if found is None or shape_of(graph, found[1]) != scores:
        return None
    return scale, mask, scaled + added + found[0], found[1]


def _dims(graph, mm1, mm2):
    """[B, H, Sq, Sk, D, Dv] of the two MatMuls, or None when their shapes do not fit."""
    q, kt, v = (shape_of(graph, n) for n in (mm1.inputs[0], mm1.inputs[1], mm2.inputs[1]))
    scores, out = shape_of(graph, mm1.outputs[0]), shape_of(graph, mm2.outputs[0])
    if any(s is None or not 2 <= len(s) <= RANK for s in (q, kt, v, out)):
        return None
    batch = ((1,) * RANK + tuple(scores))[-RANK:-2]
    if tuple(out) != tuple(scores[:-2]) + (scores[-2], v[-1]) or v[-2] != scores[-1]:
        return None
    return list(batch) + [scores[-2], scores[-1], q[-1], v[-1]]


def _operand(graph, producers, name, shape, transposed=False, scaled=True):
    """(source, view, scale, chain) of the furthest source operand ``name`` is a strided view
    of; ``transposed``: the operand is K^T and the view is K's."""
    for source, chain, scale in views.sources(graph, producers, name):
        if scale != 1.0 and not scaled:
            continue
        view = views.read_view(graph, source, chain, shape)
        if view is not None:
            if transposed:
                view = view[:3] + [view[4], view[3]]
            return source, view, scale, chain
    return None


def _output(graph, consumers, name):
    """(value, view, chain) of the furthest output copy the result can be written into."""
    for value, chain in views.outputs(graph, consumers, name)[::-1]:
        view = views.write_view(graph, chain, shape_of(graph, name), RANK)
        if view is not None:
            return value, view, chain
    return None


def match_attention(graph, producers, consumers, mm1):
    """The attention whose first MatMul is ``mm1``, as ``(FusedAttention node, nodes it
    replaces, nodes its operands are read through)``, or None."""
    middle = _middle(graph, consumers, mm1) if mm1.op == 'MatMul' else None
    mm2 = middle and sole_consumer(graph, consumers, middle[3])
    if mm2 is None or mm2.op != 'MatMul' or mm2.inputs[0] != middle[3]:
        return None
    dims = _dims(graph, mm1, mm2)
    names = [mm1.inputs[0], mm1.inputs[1], mm2.inputs[1], mm2.outputs[0]]
    if dims is None or any(dtype_of(graph, n) not in FLOAT_DTYPES for n in names):
        return None
    b, h, sq, sk, d, dv = dims
    q = _operand(graph, producers, names[0], (b, h, sq, d))
    k = _operand(graph, producers, names[1], (b, h, d, sk), transposed=True)
    v = _operand(graph, producers, names[2], (b, h, sk, dv), scaled=False)
    out = _output(graph, consumers, names[3])
    if None in (q, k, v, out):
        return None
    scale, mask, between, _ = middle
    attrs = dict(scale=float(scale * q[2] * k[2]), dims=dims, q_view=q[1], k_view=k[1],
                 v_view=v[1], out_view=out[1],
                 out_shape=list(shape_of(graph, out[0])))
    node = Node('FusedAttention', mm2.name, [q[0], k[0], v[0], mask], [out[0]], attrs)
    return node, [mm1] + between + [mm2] + out[2], q[3] + k[3] + v[3]


def _clashes(producers, match, taken, sources) -> bool:
    """Whether ``match`` touches nodes an earlier match removes (``taken``: their ids), or
    removes the producer of a source an earlier match reads (``sources``)."""
    node, removed, read = match
    ids = {id(n) for n in removed}
    return (any(id(n) in taken for n in removed + read)
            or any(id(producers.get(s)) in taken for s in node.inputs if s in producers)
            or any(id(producers.get(s)) in ids for s in sources if s in producers))


def fuse_attention(graph) -> int:
    """Replace every attention (module docstring) by one ``FusedAttention`` node; returns
    how many."""
    producers, consumers = graph.producers(), graph.consumers()
    replace, remove, taken, sources = {}, [], set(), set()
    for mm1 in list(graph.nodes):
        match = match_attention(graph, producers, consumers, mm1)
        if match is None or _clashes(producers, match, taken, sources):
            continue
        node, removed, _ = match
        replace[id(removed[-1])] = [node]
        remove += [id(n) for n in removed[:-1]]
        taken.update(id(n) for n in removed)
        sources.update(s for s in node.inputs if s)
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace)
