"""Fold a per-channel affine chain into the weights of the unpadded Conv that reads it.

Pattern::

    x -> Add | Sub | Mul | Div (per-channel or scalar constants, one or more) -> y
      -> Conv | FusedConv (pads 0) -> z

becomes ``x -> Conv(w', b') -> z`` (``fold_input_affine_weights``): a convolution of
``s * x + t`` is ``conv(x, w * s) + sum(w * t)`` when it reads no padding (the pad would hold
0, not t). PP-LCNetV3's learnable affine blocks (``hardswish(...) * a + b`` before each 1x1
conv: half the pointwise launches of PP-OCRv4) are this pattern.

Safety: every value of the chain and ``y`` have one reader and are no graph output; the
constants are float and broadcast along the channel axis only; ``y`` is the Conv's data input;
the Conv's pads are all 0 with no auto_pad (or VALID); its weights (and bias) are constants.
Run after the activation and Conv fusions: an activation's own constant arithmetic (a
decomposed HardSwish's ``/ 6``) is not a chain here.
"""
import numpy as np

from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, sole_consumer)
from tx2_infer_core.passes.weights import affine_of, channel_vector

AFFINE_OPS = ('Add', 'Sub', 'Mul', 'Div')
CONV_OPS = ('Conv', 'FusedConv')


def fold_input_affine_weights(w, b, scale, shift, group=1) -> tuple:
    """``(w', b')`` with ``conv(x * scale + shift, w) + b == conv(x, w') + b'`` for an unpadded
    convolution; ``w`` is ``[C_out, C_in/group, *kernel]``, ``scale`` and ``shift`` are
    ``[C_in]``. float64 maths, results in ``w``'s dtype."""
    w = np.asarray(w)
    c_out, per_group = w.shape[0], w.shape[1]
    w64 = w.astype(np.float64)
    # input channel of (output channel o, weight column c): (o // (C_out/group)) * Cg + c
    rows = (np.arange(c_out) // (c_out // group))[:, None] * per_group + np.arange(per_group)
    expand = (slice(None), slice(None)) + (None,) * (w.ndim - 2)
    new_w = w64 * np.asarray(scale, np.float64)[rows][expand]
    b64 = np.zeros(c_out) if b is None else np.asarray(b, np.float64)
    taps = w64.reshape(c_out, per_group, -1).sum(axis=2)
    new_b = b64 + (taps * np.asarray(shift, np.float64)[rows]).sum(axis=1)
    return new_w.astype(w.dtype), new_b.astype(w.dtype)


def _step(graph, node, x, channels):
    """``(scale, shift)`` of elementwise ``node`` applied to ``x`` (per channel), or None."""
    if node.op not in AFFINE_OPS or len(node.inputs) != 2 or node.inputs.count(x) != 1:
        return None
    first = node.inputs[0] == x
    c = constant(graph, node.inputs[1] if first else node.inputs[0])
    if c is None or c.dtype.name not in FLOAT_DTYPES:
        return None
    vec = channel_vector(c, len(graph.values[x].shape), channels)
    return affine_of(node.op, vec, first) if vec is not None else None


def _chain(graph, producers, consumers, conv):
    """(chain nodes in order, chain input, scale, shift) ending at ``conv``'s data input."""
    nodes, y = [], conv.inputs[0]
    value = graph.values.get(y)
    if value is None or len(value.shape) < 3 or dtype_of(graph, y) not in FLOAT_DTYPES:
        return None
    channels = int(value.shape[1])
    scale, shift = np.ones(channels), np.zeros(channels)
    while True:
        node = producers.get(y)
        if node is None or sole_consumer(graph, consumers, y) is None:
            break
        x = next((i for i in node.inputs if i in graph.values and i not in graph.weights),
                 None)
        step = _step(graph, node, x, channels) if x is not None else None
        if step is None or graph.values[x].shape != value.shape:
            break
        scale, shift = scale * step[0], scale * step[1] + shift   # conv(s * (a x + t) + u)
        nodes.insert(0, node)
        y = x
    return (nodes, y, scale, shift) if nodes else None


def _unpadded(conv) -> bool:
    auto = conv.attrs.get('auto_pad', 'NOTSET')
    auto = auto.decode() if isinstance(auto, bytes) else auto
    return auto in ('NOTSET', 'VALID') and not any(conv.attrs.get('pads') or [0])


def fold_input_affine(graph) -> int:
    """Fold every per-channel affine chain into the unpadded Conv reading it (see the module
    doc); returns the number of Convs changed."""
    producers, consumers = graph.producers(), graph.consumers()
    matches = []
    for conv in graph.nodes:
        if conv.op not in CONV_OPS or len(conv.inputs) < 2 or not _unpadded(conv) or \
                conv.inputs.count(conv.inputs[0]) != 1:
            continue
        w = constant(graph, conv.inputs[1])
        has_b = len(conv.inputs) > 2 and conv.inputs[2]
        b = constant(graph, conv.inputs[2]) if has_b else None
        if w is None or w.dtype.name not in FLOAT_DTYPES or (has_b and b is None):
            continue
        found = _chain(graph, producers, consumers, conv)
        if found is not None:
            matches.append((conv, w, b, found))
    for conv, w, b, (nodes, x, scale, shift) in matches:
        new_w, new_b = fold_input_affine_weights(w, b, scale, shift,
                                                 int(conv.attrs.get('group', 1)))
        conv.inputs = [x, add_weight(graph, f'{conv.name}.w', new_w),
                       add_weight(graph, f'{conv.name}.b', new_b)] + conv.inputs[3:]
    rewrite_nodes(graph, remove=[id(n) for _, _, _, (nodes, *_) in matches for n in nodes])
    return len(matches)
