"""Remove nodes that return their input unchanged.

Pattern::

    x -> Noop -> y        becomes        x (readers of y read x)

where Noop is Identity, Dropout (inference), Cast to the same dtype, Reshape / Flatten /
Squeeze / Unsqueeze / Resize / Expand whose output shape equals the input shape,
Transpose by the identity permutation, Pad with all-zero pads, Concat of one input or Split
into one output. Graph output names stay stable: when ``y`` is a graph output the producer of
``x`` is renamed to write ``y``; the pass declines when ``x`` is itself a graph input, output
or constant in that case.
"""
import numpy as np

from tx2_infer_core.passes.graph_edit import (ONNX_DTYPES, alias, can_alias, constant,
                                              dtype_of, redirect, rewrite_nodes, shape_of)

SAME_SHAPE_NOOPS = {'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Expand'}


def _cast_target(to):
    return ONNX_DTYPES.get(to) if isinstance(to, (int, np.integer)) else np.dtype(to).name


def _same_shape(graph, node):
    a, b = shape_of(graph, node.inputs[0]), shape_of(graph, node.outputs[0])
    return a is not None and a == b


def _zero_pads(graph, node):
    pads = node.attrs.get('pads') if len(node.inputs) < 2 else constant(graph, node.inputs[1])
    return pads is not None and not np.any(np.asarray(pads))


def is_noop(graph, node) -> bool:
    """Whether ``node`` (one data input, one used output) returns its input unchanged."""
    op = node.op
    if op == 'Identity':
        return True
    if op == 'Dropout':
        mode = node.inputs[2] if len(node.inputs) > 2 else ''
        training = mode and (constant(graph, mode) is None or bool(constant(graph, mode)))
        mask_used = len(node.outputs) > 1 and node.outputs[1]
        return not mask_used and not training
    if op == 'Cast':
        return dtype_of(graph, node.inputs[0]) == _cast_target(node.attrs.get('to'))
    if op in SAME_SHAPE_NOOPS:
        return _same_shape(graph, node)
    if op == 'Transpose':
        perm = node.attrs.get('perm')
        return perm is not None and list(perm) == list(range(len(perm)))
    if op == 'Pad':
        return _zero_pads(graph, node)
    if op == 'Resize':
        return (node.attrs.get('mode', 'nearest') != 'tf_crop_and_resize'
                and node.attrs.get('coordinate_transformation_mode') != 'tf_crop_and_resize'
                and _same_shape(graph, node))
    if op == 'Concat':
        return len([i for i in node.inputs if i]) == 1
    if op == 'Split':
        return len(node.outputs) == 1
    return False


def remove_noops(graph) -> int:
    """Remove no-op nodes, keeping graph output names stable. Returns nodes removed.

    Readers of the no-ops' outputs are redirected in one sweep (linear in the graph); the
    few no-ops that write a graph output are then aliased one by one."""
    matches = [n for n in graph.nodes
               if n.inputs and n.inputs[0] and n.outputs and is_noop(graph, n)]
    outputs = set(graph.outputs)
    inner = [n for n in matches if n.outputs[0] not in outputs]
    redirect(graph, {n.outputs[0]: n.inputs[0] for n in inner})
    removed = [id(n) for n in inner]
    for node in matches:                 # each alias sees the previous rewrites
        src, dst = node.inputs[0], node.outputs[0]
        if dst in outputs and can_alias(graph, dst, src):
            alias(graph, dst, src)
            removed.append(id(node))
    rewrite_nodes(graph, remove=removed)
    return len(removed)
