"""Merge the Q, K, V projections of an attention into one MatMul (pass level 3, after
``fuse_attention``).

Pattern::

    x -> MatMul(Wq) -> [Add bq] -> q --.
    x -> MatMul(Wk) -> [Add bk] -> k --+-> FusedAttention(q, k, v, mask)
    x -> MatMul(Wv) -> [Add bv] -> v --'

becomes ``x -> MatMul([Wq | Wk | Wv]) -> [Add [bq | bk | bv]] -> qkv`` and
``FusedAttention(qkv, qkv, qkv, mask)`` whose views read their columns of ``qkv``: one GEMM
instead of three (any two or more projections of one input merge: K and V of a
cross-attention too). The weight maths is ``concat_linear_weights``.

Safety: constant 2-D weights with the same rows and dtype; a bias is a constant of one value
per column that does not grow the product; q, k, v and the products are read by nothing else
and are no graph outputs; each view is still strided in ``qkv`` (else the pass declines).
"""
import numpy as np

from tx2_infer_core.ir import Node, Value
from tx2_infer_core.ops.attention import view_index
from tx2_infer_core.passes.attention_views import affine
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, shape_of, sole_consumer,
                                              unique_name)

VIEWS = ('q_view', 'k_view', 'v_view')  # the view attribute of each operand input


def concat_linear_weights(weights, biases):
    """``(w, b)`` of one product doing the work of several sharing their input: weights
    [K, N_i] side by side, biases (None: zeros) end to end; ``b`` is None when every bias is."""
    w = np.concatenate([np.asarray(x) for x in weights], axis=1)
    if all(b is None for b in biases):
        return w, None
    parts = [np.zeros(x.shape[1], w.dtype) if b is None else np.asarray(b, w.dtype).reshape(-1)
             for x, b in zip(weights, biases)]
    return w, np.concatenate(parts)


def _bias_add(graph, producers, consumers, name):
    """(product value, bias) when ``name`` is Add(product, per-column constant)."""
    node = producers.get(name)
    if node is None or node.op != 'Add' or len(node.inputs) != 2:
        return None
    for data, other in (node.inputs, node.inputs[::-1]):
        bias = constant(graph, other)
        if (bias is not None and bias.size == shape_of(graph, name)[-1]
                and shape_of(graph, data) == shape_of(graph, name)
                and sole_consumer(graph, consumers, data) is node):
            return data, bias
    return None


def projection(graph, producers, consumers, name):
    """``(x, weight, bias or None, nodes)`` when value ``name`` is MatMul(x, W) with a constant
    2-D ``W``, optionally plus a per-column constant bias; else None."""
    found = _bias_add(graph, producers, consumers, name)
    product, bias = found if found else (name, None)
    node = producers.get(product)
    if node is None or node.op != 'MatMul':
        return None
    w = constant(graph, node.inputs[1])
    if w is None or w.ndim != 2 or constant(graph, node.inputs[0]) is not None:
        return None
    nodes = [node] + ([producers[name]] if found else [])
    return node.inputs[0], w, bias, nodes


def _groups(graph, producers, consumers, att) -> list:
    """Lists of ``(input value, projection)`` of the attention's operands made from one input
    (two or more each), read by nothing but ``att``."""
    groups = {}
    for value in dict.fromkeys(att.inputs[:3]):
        if (value in graph.outputs or dtype_of(graph, value) not in FLOAT_DTYPES
                or any(c is not att for c in consumers.get(value, []))):
            continue
        found = projection(graph, producers, consumers, value)
        if found is not None:
            groups.setdefault(found[0], []).append((value, found))
    return [g for g in groups.values() if len(g) > 1
            and len({(p[1].shape[0], p[1].dtype) for _, p in g}) == 1]


def _operand_shapes(att) -> tuple:
    b, h, sq, sk, d, dv = att.attrs['dims']
    return (b, h, sq, d), (b, h, sk, d), (b, h, sk, dv)


def moved_views(att, columns, total):
    """The attention's view attributes with each operand in ``columns`` ({input value:
    (first column, width)}) read from its columns of a ``total``-wide tensor, or None when one
    is no longer strided."""
    attrs = {}
    for slot, (name, shape) in enumerate(zip(att.inputs[:3], _operand_shapes(att))):
        if name not in columns:
            continue
        first, width = columns[name]
        index = view_index(att.attrs[VIEWS[slot]], shape)
        view = affine(index // width * total + index % width + first)
        if view is None:
            return None
        attrs[VIEWS[slot]] = view
    return attrs


def _columns(group) -> dict:
    """{input value: (first column, width)} of each projection's columns in the merged one."""
    first = np.cumsum([0] + [p[1].shape[1] for _, p in group])
    return {value: (int(first[i]), int(first[i + 1] - first[i]))
            for i, (value, _) in enumerate(group)}


def merged_nodes(graph, att, group):
    """(new nodes, merged value) of the one product replacing ``group``."""
    x = group[0][1][0]
    w, b = concat_linear_weights([p[1] for _, p in group], [p[2] for _, p in group])
    shape = tuple(shape_of(graph, x)[:-1]) + (w.shape[1],)
    dtype = dtype_of(graph, group[0][0])
    product = unique_name(graph, f'{att.name}/qkv_matmul')
    graph.values[product] = Value(product, shape, dtype)
    nodes = [Node('MatMul', f'{att.name}/qkv', [x, add_weight(graph, f'{att.name}/qkv_w', w)],
                  [product])]
    merged = product
    if b is not None:
        merged = unique_name(graph, f'{att.name}/qkv_out')
        graph.values[merged] = Value(merged, shape, dtype)
        nodes.append(Node('Add', f'{att.name}/qkv_bias',
                          [product, add_weight(graph, f'{att.name}/qkv_b', b)], [merged]))
    return nodes, merged


def merge_matmuls(graph) -> int:
    """Merge the projections feeding each FusedAttention (module docstring); returns how many
    merged products were made."""
    producers, consumers = graph.producers(), graph.consumers()
    order = {id(node): k for k, node in enumerate(graph.nodes)}
    replace, remove = {}, []
    for att in [n for n in graph.nodes if n.op == 'FusedAttention']:
        for group in _groups(graph, producers, consumers, att):
            columns = _columns(group)
            views = moved_views(att, columns, sum(width for _, width in columns.values()))
            if views is None:
                continue
            nodes, merged = merged_nodes(graph, att, group)
            olds = sorted((n for _, p in group for n in p[3]), key=lambda n: order[id(n)])
            replace[id(olds[0])] = nodes
            remove += [id(n) for n in olds[1:]]
            inputs = [merged if name in columns else name for name in att.inputs]
            replace[id(att)] = [Node(att.op, att.name, inputs, att.outputs,
                                     dict(att.attrs, **views))]
            break
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace) // 2
