"""Fold BatchNormalization, and per-channel scale / shift arithmetic, into the Conv before it.

Patterns::

    x -> Conv(w, b) -> y -> BatchNormalization(scale, bias, mean, var) -> z
    x -> Conv(w, b) -> y -> Add | Sub | Mul | Div (per-channel constant c) -> z

both become ``x -> Conv(w', b') -> z`` (``fuse_conv_bn_weights`` / ``fuse_conv_affine_weights``
compute ``w'``, ``b'``). The second form is how exporters that unroll batch-norm (tf2onnx,
open_nsfw) and bias-free convs followed by ``Add`` write it.

Safety: ``y`` has exactly one reader and is not a graph output; the Conv weight, bias and all
batch-norm parameters are float constants of matching channel count; BN is in inference form
(one output). A standalone BN (after anything but a foldable Conv) stays as it is.
"""
import numpy as np

from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, sole_consumer)
from tx2_infer_core.passes.weights import (affine_of, channel_vector, fuse_conv_affine_weights,
                                           fuse_conv_bn_weights)

AFFINE_OPS = ('Add', 'Sub', 'Mul', 'Div')


def _conv_weights(graph, conv):
    """``(w, b)`` of a Conv with constant float weights, or None."""
    if conv.op != 'Conv' or len(conv.inputs) < 2:
        return None
    w = constant(graph, conv.inputs[1])
    b = constant(graph, conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
    if w is None or w.dtype.name not in FLOAT_DTYPES:
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] and b is None:
        return None                       # a bias computed at run time
    return w, b


def _bn_fold(graph, conv, bn, w, b):
    """New ``(w, b)`` for Conv followed by BatchNormalization ``bn``, or None."""
    params = [constant(graph, name) for name in bn.inputs[1:5]]
    if (len(params) != 4 or any(p is None for p in params)
            or any(o for o in bn.outputs[1:]) or bn.attrs.get('training_mode', 0)):
        return None
    if any(np.shape(p) != (w.shape[0],) for p in params):
        return None
    scale, bias, mean, var = params
    return fuse_conv_bn_weights(w, b, scale, bias, mean, var, bn.attrs.get('epsilon', 1e-5))


def _affine_fold(graph, conv, node, w, b):
    """New ``(w, b)`` for Conv followed by elementwise ``node`` with a constant, or None."""
    if node.op not in AFFINE_OPS or len(node.inputs) != 2:
        return None
    conv_first = node.inputs[0] == conv.outputs[0]
    other = node.inputs[1] if conv_first else node.inputs[0]
    c = constant(graph, other)
    if c is None or other == conv.outputs[0] or c.dtype.name not in FLOAT_DTYPES:
        return None
    out = graph.values.get(conv.outputs[0])
    if out is None or dtype_of(graph, node.outputs[0]) != out.dtype:
        return None
    vec = channel_vector(c, len(out.shape), w.shape[0])
    affine = affine_of(node.op, vec, conv_first) if vec is not None else None
    if affine is None:
        return None
    return fuse_conv_affine_weights(w, b, *affine)


def _fold_into_conv(graph, folder) -> int:
    """Collect Conv -> node pairs ``folder`` accepts, then rewrite them all at once."""
    consumers = graph.consumers()
    matches = []
    for conv in graph.nodes:
        weights = _conv_weights(graph, conv)
        nxt = sole_consumer(graph, consumers, conv.outputs[0]) if weights else None
        fused = folder(graph, conv, nxt, *weights) if nxt is not None else None
        if fused is not None:
            matches.append((conv, nxt, fused))
    for conv, nxt, (w, b) in matches:
        graph.values.pop(conv.outputs[0], None)
        conv.inputs = [conv.inputs[0], add_weight(graph, f'{conv.name}.w', w),
                       add_weight(graph, f'{conv.name}.b', b)]
        conv.outputs = [nxt.outputs[0]]
    return rewrite_nodes(graph, remove=[id(nxt) for _, nxt, _ in matches])


def fold_batchnorm(graph) -> int:
    """Fold every Conv -> BatchNormalization pair into the Conv. Returns pairs folded."""
    return _fold_into_conv(
        graph, lambda g, conv, nxt, w, b: _bn_fold(g, conv, nxt, w, b)
        if nxt.op == 'BatchNormalization' else None)


def fold_scale_shift(graph) -> int:
    """Fold per-channel Add/Sub/Mul/Div constants after a Conv into it, to a fixpoint."""
    total = 0
    while True:
        folded = _fold_into_conv(graph, _affine_fold)
        total += folded
        if not folded:
            return total
