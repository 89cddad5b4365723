"""Fold a scalar affine after an activated fused convolution into its epilogue.

Pattern (PP-LCNetV3's "learnable affine block", one value each)::

    x -> FusedConv(act=A) -> y -> Mul | Div(c) -> m -> Add | Sub(d) -> z
    =>   x -> FusedConv(act=A, post_scale=c, post_shift=d) -> z

either op alone too; FusedConvTranspose and FusedLinear likewise. The affine cannot fold into
the weights (the activation is in between); the epilogue applies it right after the
activation: ``act(conv + b [+ r]) * post_scale + post_shift [+ r after the activation]``
(ops/fused.py ``post_affine``, kernels/common.cuh ``tx2_act_epilogue``).
Safety: the fused node has an activation and no residual added after it; ``y`` has the affine
node as its only reader and is not a graph output; the constant is one float value of ``y``'s
dtype and rank at most ``y``'s (it does not broadcast ``y`` up); a Mul or Div folds only while
the shift is still 0 (so the epilogue's ``* scale + shift`` is the graph's order, rounding
included), a Div only by a nonzero value with ``y`` as the dividend. Each op folds one at a
time, to a fixpoint.
"""
import numpy as np

from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, constant, dtype_of, rewrite_nodes,
                                              shape_of, sole_consumer)

FUSED_OPS = ('FusedConv', 'FusedConvTranspose', 'FusedLinear')
AFFINE_OPS = ('Mul', 'Div', 'Add', 'Sub')


def compose_post_affine(scale, shift, op, c, fused_first):
    """``(scale', shift')`` such that ``op(v * scale + shift, c)`` (``op(c, ...)`` when not
    ``fused_first``) is ``v * scale' + shift'``; None when that would reorder roundings
    (a Mul or Div after a shift), divide by zero or not be affine."""
    if op == 'Add':
        return scale, shift + c
    if op == 'Sub':
        return (scale, shift - c) if fused_first else (-scale, c - shift)
    if shift != 0.0:
        return None
    if op == 'Mul':
        return scale * c, 0.0
    if op == 'Div' and fused_first and c != 0.0:
        return scale / c, 0.0
    return None


def _foldable(node) -> bool:
    """A fused node with an activation and no residual added after it."""
    if node.op not in FUSED_OPS or not node.attrs.get('activation'):
        return False
    has_residual = len(node.inputs) > 3 and bool(node.inputs[3])
    return not (has_residual and node.attrs.get('residual_after_act', 0))


def _scalar_operand(graph, node, y):
    """``(c, fused_first)`` of affine ``node`` reading ``y``: its other input a one-value
    float constant of ``y``'s dtype and rank at most ``y``'s; None otherwise."""
    if node.op not in AFFINE_OPS or len(node.inputs) != 2 or node.inputs[0] == node.inputs[1]:
        return None
    fused_first = node.inputs[0] == y
    c = constant(graph, node.inputs[1] if fused_first else node.inputs[0])
    shape = shape_of(graph, y)
    if c is None or c.size != 1 or shape is None or c.ndim > len(shape):
        return None
    if c.dtype.name not in FLOAT_DTYPES or c.dtype.name != dtype_of(graph, y) or \
            dtype_of(graph, node.outputs[0]) != dtype_of(graph, y):
        return None
    return float(c.reshape(())), fused_first


def _matches(graph) -> list:
    """``(fused node, affine node, (post_scale, post_shift))`` for every foldable pair."""
    consumers, found = graph.consumers(), []
    for node in graph.nodes:
        if not _foldable(node):
            continue
        nxt = sole_consumer(graph, consumers, node.outputs[0])
        operand = _scalar_operand(graph, nxt, node.outputs[0]) if nxt is not None else None
        post = (node.attrs.get('post_scale', 1.0), node.attrs.get('post_shift', 0.0))
        composed = compose_post_affine(*post, nxt.op, *operand) if operand else None
        if composed is not None:
            found.append((node, nxt, composed))
    return found


def fold_post_affine(graph) -> int:
    """Fold scalar Mul/Div/Add/Sub after activated fused convolutions (and FusedLinear) into
    their ``post_scale`` / ``post_shift``, to a fixpoint. Returns the ops folded."""
    total = 0
    while True:
        found = _matches(graph)
        for node, nxt, (scale, shift) in found:
            graph.values.pop(node.outputs[0], None)
            node.attrs['post_scale'] = float(np.float32(scale))
            node.attrs['post_shift'] = float(np.float32(shift))
            node.outputs = [nxt.outputs[0]]
        rewrite_nodes(graph, remove=[id(nxt) for _, nxt, _ in found])
        total += len(found)
        if not found:
            return total
