"""Take the LayerNormalization of a FusedLinear's rows into one ``FusedLinearNorm`` (pass level
3: on sm_90 one GEMM launch whose epilogue normalises whole rows, ``kernels/linear_norm.cuh``).

Pattern (a transformer's residual projections: the attention output and the FFN out)::

    x -> FusedLinear(W, b, r) -> s -> LayerNormalization(gamma, beta, axis=-1) -> y
                                 s -> [other readers]       (pre-norm: the residual stream)

becomes ``x -> FusedLinearNorm(W, b, r, slope, gamma, beta) -> (y, [s])``: the second output
only when ``s`` has other readers or is a graph output (post-norm layers read ``y`` alone).

Safety: ``s`` a float value of rank 2 or more; the norm over its last axis alone, stash_type 1,
its Mean and InvStdDev outputs unread; ``gamma`` (and ``beta`` when given) constants of ``s``'s
dtype with one value per column (or one value). The fused node takes the FusedLinear's place:
its inputs are the product's and constants, and every reader of ``s`` or ``y`` comes later.
"""
from tx2_infer_core.ir import Node
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, shape_of)
from tx2_infer_core.passes.weights import column_vector


def _is_read(graph, consumers, name) -> bool:
    return bool(name) and (bool(consumers.get(name)) or name in graph.outputs)


def _vector(graph, name, shape, dtype):
    """Constant ``name`` as one value per column of ``shape``, or None."""
    c = constant(graph, name)
    if c is None or c.dtype.name != dtype:
        return None
    return column_vector(c, len(shape), shape[-1])


def _norm_of(graph, consumers, s):
    """``(norm node, gamma, beta or None)`` of the LayerNormalization over the last axis of
    ``s`` (module docstring), or None."""
    shape, dtype = shape_of(graph, s), dtype_of(graph, s)
    if shape is None or len(shape) < 2 or dtype not in FLOAT_DTYPES:
        return None
    for node in consumers.get(s, []):
        if node.op != 'LayerNormalization' or node.inputs[0] != s:
            continue
        axis = node.attrs.get('axis', -1)
        if axis not in (-1, len(shape) - 1) or node.attrs.get('stash_type', 1) != 1 or \
                any(_is_read(graph, consumers, o) for o in node.outputs[1:]):
            continue
        gamma = _vector(graph, node.inputs[1], shape, dtype)
        has_beta = len(node.inputs) > 2 and node.inputs[2]
        beta = _vector(graph, node.inputs[2], shape, dtype) if has_beta else None
        if gamma is not None and (beta is not None or not has_beta):
            return node, gamma, beta
    return None


def fuse_linear_norm(graph) -> int:
    """Fuse each FusedLinear with the LayerNormalization of its rows into one FusedLinearNorm
    (module docstring); returns how many were made."""
    consumers = graph.consumers()
    replace, remove = {}, []
    for linear in [n for n in graph.nodes if n.op == 'FusedLinear']:
        s = linear.outputs[0]
        found = _norm_of(graph, consumers, s)
        if found is None:
            continue
        norm, gamma, beta = found
        scale = add_weight(graph, f'{linear.name}/norm_scale', gamma)
        shift = add_weight(graph, f'{linear.name}/norm_shift', beta) if beta is not None else ''
        inputs = (list(linear.inputs) + [''] * 5)[:5] + [scale, shift]
        while not inputs[-1]:
            inputs.pop()
        kept = [r for r in consumers.get(s, []) if r is not norm]
        outputs = [norm.outputs[0]] + ([s] if kept or s in graph.outputs else [])
        attrs = dict(linear.attrs, epsilon=float(norm.attrs.get('epsilon', 1e-5)))
        replace[id(linear)] = [Node('FusedLinearNorm', linear.name, inputs, outputs, attrs)]
        remove.append(id(norm))
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace)
