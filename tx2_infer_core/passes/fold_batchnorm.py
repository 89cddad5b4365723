"""Fold BatchNormalization, and per-channel scale / shift arithmetic, into the Conv (or
ConvTranspose) before it.

Patterns::

    x -> Conv(w, b) -> y -> BatchNormalization(scale, bias, mean, var) -> z
    x -> Conv(w, b) -> y -> Add | Sub | Mul | Div (per-channel constant c) -> z

both become ``x -> Conv(w', b') -> z`` (``fuse_conv_bn_weights`` / ``fuse_conv_affine_weights``
compute ``w'``, ``b'``). The second form is how exporters that unroll batch-norm (tf2onnx,
open_nsfw) and bias-free convs followed by ``Add`` write it. The same with ConvTranspose,
whose weights are ``[C_in, C_out/group, *kernel]`` (``fuse_conv_transpose_affine_weights``
scales them per output channel). ``fold_scale_shift`` also folds the per-column form after a
MatMul or Gemm by a constant matrix (``fold_linear_affine.py``).

Safety: ``y`` has exactly one reader and is not a graph output; the Conv weight, bias and all
batch-norm parameters are float constants of matching channel count; BN is in inference form
(one output). A standalone BN (after anything but a foldable Conv) stays as it is (the CUDA
backend runs it as one per-channel scale and shift, ``cuda/lower_conv.lower_batchnorm``).
"""
import numpy as np

from tx2_infer_core.passes.fold_linear_affine import fold_into_linear
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, sole_consumer)
from tx2_infer_core.passes.weights import (affine_of, batchnorm_scale_shift, channel_vector,
                                           fuse_conv_affine_weights,
                                           fuse_conv_transpose_affine_weights)

AFFINE_OPS = ('Add', 'Sub', 'Mul', 'Div')
CONV_OPS = ('Conv', 'ConvTranspose')


def _conv_weights(graph, conv):
    """``(w, b)`` of a Conv or ConvTranspose with constant float weights, or None."""
    if conv.op not in CONV_OPS or len(conv.inputs) < 2:
        return None
    w = constant(graph, conv.inputs[1])
    b = constant(graph, conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
    if w is None or w.dtype.name not in FLOAT_DTYPES:
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] and b is None:
        return None                       # a bias computed at run time
    return w, b


def out_channels(conv, w) -> int:
    """Output channels of Conv or ConvTranspose ``conv`` with weights ``w``."""
    if conv.op == 'ConvTranspose':
        return w.shape[1] * int(conv.attrs.get('group', 1))
    return w.shape[0]


def scale_output_channels(conv, w, b, scale, shift):
    """``(w', b')`` of ``conv`` followed by ``* scale + shift`` per output channel."""
    if conv.op == 'ConvTranspose':
        return fuse_conv_transpose_affine_weights(w, b, scale, shift,
                                                  int(conv.attrs.get('group', 1)))
    return fuse_conv_affine_weights(w, b, scale, shift)


def _bn_fold(graph, conv, bn, w, b):
    """New ``(w, b)`` for Conv followed by BatchNormalization ``bn``, or None."""
    params = [constant(graph, name) for name in bn.inputs[1:5]]
    if (len(params) != 4 or any(p is None for p in params)
            or any(o for o in bn.outputs[1:]) or bn.attrs.get('training_mode', 0)):
        return None
    if any(np.shape(p) != (out_channels(conv, w),) for p in params):
        return None
    k, shift = batchnorm_scale_shift(*params, bn.attrs.get('epsilon', 1e-5))
    return scale_output_channels(conv, w, b, k, shift)


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
    vec = channel_vector(c, len(out.shape), out_channels(conv, w))
    affine = affine_of(node.op, vec, conv_first) if vec is not None else None
    if affine is None:
        return None
    return scale_output_channels(conv, w, b, *affine)


def _scale_shift_fold(graph, conv, node, w, b):
    """New ``(w, b)`` for Conv followed by a per-channel affine ``node`` (Add/Sub/Mul/Div
    with a constant, or an inference BatchNormalization), or None."""
    if node.op == 'BatchNormalization':
        return _bn_fold(graph, conv, node, w, b)
    return _affine_fold(graph, conv, node, w, b)


def _fold_into_conv(graph, folder) -> int:
    """Collect Conv (or ConvTranspose) -> node pairs ``folder`` accepts, then rewrite them
    all at once."""
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
    """Fold every Conv (or ConvTranspose) -> BatchNormalization pair into the Conv. Returns
    pairs folded."""
    return _fold_into_conv(
        graph, lambda g, conv, nxt, w, b: _bn_fold(g, conv, nxt, w, b)
        if nxt.op == 'BatchNormalization' else None)


def fold_scale_shift(graph) -> int:
    """Fold per-channel Add/Sub/Mul/Div constants after a Conv (or ConvTranspose) into it,
    to a fixpoint; a BatchNormalization reached that way folds too (Conv -> bias Add -> BN,
    as paddle2onnx writes a ConvTranspose with its bias). Per-column ones after a MatMul or
    Gemm by a constant matrix fold into its weights likewise (``fold_linear_affine.py``)."""
    total = 0
    while True:
        folded = _fold_into_conv(graph, _scale_shift_fold) + fold_into_linear(graph)
        total += folded
        if not folded:
            return total
