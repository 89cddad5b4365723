"""Fuse a residual Add (and the activation after it) into the FusedConv that feeds it.

Patterns::

    ResNet:   x -> FusedConv(act='') -> y -> Add(y, r) -> a -> [Act] -> z
              => x -> FusedConv(residual=r, act=Act, residual_after_act=0) -> z
    YOLOv5/8: x -> FusedConv(act=SiLU) -> y -> Add(r, y) -> a
              => x -> FusedConv(residual=r, act=SiLU, residual_after_act=1) -> a

Safety: ``y`` has the Add as its only reader and is not a graph output; ``r`` is an activation
(not a constant) of exactly ``y``'s shape and dtype; the trailing activation is absorbed only
when the conv had none and ``a`` has no other reader. The fused node stays where the conv was
when ``r`` is computed before it, otherwise it moves to where the Add was (its inputs are all
ready there), so the graph stays topologically ordered.
"""
from tx2_infer_core.passes.fuse_conv import (FUSED_CONV_OPS, add_slope, conv_inputs,
                                             epilogue_inputs, match_activation, slope_input)
from tx2_infer_core.passes.graph_edit import dtype_of, rewrite_nodes, shape_of, sole_consumer


def has_post_affine(node) -> bool:
    """Whether fused ``node`` scales or shifts after its activation (fold_post_affine.py): a
    residual then goes after that, never before the activation."""
    return node.attrs.get('post_scale', 1.0) != 1.0 or node.attrs.get('post_shift', 0.0) != 0.0


def residual_input(graph, y, add):
    """The other input of ``add`` (which reads ``y``) if it can be a residual added to ``y``:
    an activation of ``y``'s shape and dtype; else None."""
    if add is None or add.op != 'Add' or len(add.inputs) != 2 or \
            add.inputs[0] == add.inputs[1]:
        return None
    other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
    if other in graph.weights or not other:
        return None
    if shape_of(graph, other) != shape_of(graph, y) or shape_of(graph, y) is None:
        return None
    if dtype_of(graph, other) != dtype_of(graph, y):
        return None
    return other


def _matches(graph):
    """``(conv, add, residual, act_match)`` for every fusable FusedConv -> Add.

    Walks backwards so that when both Add inputs are convs, the later one takes the Add and
    the earlier one's output (already computed) is its residual.
    """
    consumers = graph.consumers()
    claimed, found = set(), []
    for conv in reversed(graph.nodes):
        if conv.op not in FUSED_CONV_OPS or (len(conv.inputs) > 3 and conv.inputs[3]):
            continue
        add = sole_consumer(graph, consumers, conv.outputs[0])
        if add is None or id(add) in claimed:
            continue
        residual = residual_input(graph, conv.outputs[0], add)
        if residual is None:
            continue
        act = None
        if not conv.attrs.get('activation') and not has_post_affine(conv):
            act = match_activation(graph, consumers, add.outputs[0])
        claimed.add(id(add))
        found.append((conv, add, residual, act))
    return found


def fuse_residual_add(graph) -> int:
    """Fuse residual Adds into FusedConv nodes. Returns the number of Adds fused."""
    index = {id(node): i for i, node in enumerate(graph.nodes)}
    producers = graph.producers()
    found = _matches(graph)
    replace, remove = {}, []
    for conv, add, residual, act in found:
        ready_before_conv = (residual not in producers
                             or index[id(producers[residual])] < index[id(conv)])
        slope = slope_input(conv)
        conv.attrs['residual_after_act'] = int(bool(conv.attrs.get('activation'))
                                               or has_post_affine(conv))
        conv.outputs = [add.outputs[0]]
        if act is not None:
            conv.attrs.update(act.attrs)
            conv.outputs = [act.output]
            slope = add_slope(graph, conv.name, act)
            remove.extend(id(n) for n in act.nodes)
        conv.inputs = epilogue_inputs(conv_inputs(conv), residual, slope)
        if ready_before_conv:
            remove.append(id(add))
        else:                       # move the fused node to where the Add was
            remove.append(id(conv))
            replace[id(add)] = [conv]
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(found)
