"""Fuse Conv (+bias) with the activation after it into one ``FusedConv`` node.

Patterns::

    x -> Conv(w, b) -> y -> Act -> z               Act: an op of kind 'activation' in
                                                    ops/traits.py (Relu, LeakyRelu, Clip...)
    x -> Conv(w, b) -> y -> Sigmoid -> s            (SiLU written as y * sigmoid(y))
                       \\______________-> Mul(y, s) -> z
    x -> Conv(w, b) -> y -> PRelu(y, slope) -> z    slope a constant, per channel or one value
    x -> Conv(w, b) -> y -> Transpose -> Squeeze -> t -> Act -> z     (copies: LAYOUT_COPIES)

become ``x -> FusedConv(w, b, activation=Act) -> z`` (PRelu: ``FusedConv(w, b, '', slope)``,
its slope input shaped ``[C, 1, ...]`` to broadcast over the output's channels; after copies,
``FusedConv(Act) -> y -> Transpose -> Squeeze -> z``, PRelu excepted); a Conv with no
activation after it becomes ``FusedConv(activation='')`` so backends have one conv op.
ConvTranspose likewise becomes ``FusedConvTranspose`` (its attributes, then the same
activation and residual ones).
Safety: ``y`` (and ``s``) are not graph outputs and have exactly the readers drawn; Clip
bounds are constants (an open bound becomes the float32 limit, so attributes stay finite); an
activation's attributes (LeakyRelu's ``alpha``, HardSigmoid's ``alpha`` and ``beta``, Selu's
``alpha`` and ``gamma``: its traits' ``params``) become ``alpha`` and ``beta``; a PRelu slope
is a constant of the output's dtype that broadcasts along the channel axis only (so it does
not grow the output).
"""
from typing import NamedTuple

import numpy as np

from tx2_infer_core.ir import Node
from tx2_infer_core.ops import traits
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, shape_of, sole_consumer)
from tx2_infer_core.passes.weights import channel_vector, column_vector

# Activation ops fused as they are (SiLU also as its Sigmoid * x pattern; a SiLU node is
# what fuse_pointwise.fuse_activation_patterns writes for other forms of it).
ACTIVATIONS = traits.names(kind=traits.ACTIVATION)
FLOAT32_MAX = 3.4028234663852886e38
CONV_ATTRS = ('auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides',
              'output_padding', 'output_shape')  # the last two: ConvTranspose only
FUSED = {'Conv': 'FusedConv', 'ConvTranspose': 'FusedConvTranspose'}
FUSED_CONV_OPS = tuple(FUSED.values())
SLOPE_INPUT = 4  # PRelu's slope: the input after x, w, bias and residual of a fused node
# Copies that only move values, which a one-value activation after them may come before.
LAYOUT_COPIES = ('Transpose', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity')
MAX_COPIES = 4


class ActivationMatch(NamedTuple):
    """An activation found after a value: FusedConv's activation ``attrs``, the ``nodes`` it
    replaces, the activated ``output``, and PRelu's ``slope`` (None for the others): a
    constant shaped to broadcast over the channel axis of the output."""

    attrs: dict
    nodes: list
    output: str
    slope: np.ndarray = None


def _clip_bounds(graph, node):
    """``(min, max)`` of a Clip from its constant inputs or (opset 6) attributes, or None."""
    bounds = []
    for k, attr, default in ((1, 'min', -FLOAT32_MAX), (2, 'max', FLOAT32_MAX)):
        name = node.inputs[k] if len(node.inputs) > k else ''
        if name:
            c = constant(graph, name)
            if c is None or c.size != 1:
                return None
            bounds.append(float(c.reshape(())))
        else:
            bounds.append(float(node.attrs.get(attr, default)))
    return tuple(bounds)


def _silu_mul(graph, consumers, name, sigmoid):
    """The ``Mul(name, sigmoid(name))`` node of a SiLU on ``name``, or None."""
    s_out = sigmoid.outputs[0]
    readers = consumers.get(s_out, [])
    if s_out in graph.outputs or len(readers) != 1 or readers[0].op != 'Mul':
        return None
    mul = readers[0]
    if sorted(mul.inputs) != sorted([name, s_out]):
        return None
    others = [n for n in consumers.get(name, []) if n is not mul and n is not sigmoid]
    return None if others else mul


def prelu_slope(graph, prelu, channel_axis):
    """The slope of PRelu node ``prelu`` shaped to broadcast over the channels of its input
    (``channel_axis`` 1: ``[C, 1, ...]``; -1: ``[C]``), or None when it is not a constant of
    the input's dtype that broadcasts along that axis only."""
    slope = constant(graph, prelu.inputs[1]) if len(prelu.inputs) > 1 else None
    shape, dtype = shape_of(graph, prelu.inputs[0]), dtype_of(graph, prelu.inputs[0])
    if slope is None or shape is None or len(shape) < 2 or slope.dtype.name != dtype:
        return None
    if channel_axis == 1:
        vector = channel_vector(slope, len(shape), shape[1])
        spatial = (1,) * (len(shape) - 2)
    else:
        vector, spatial = column_vector(slope, len(shape), shape[-1]), ()
    return None if vector is None else vector.astype(dtype).reshape((-1,) + spatial)


def match_activation(graph, consumers, name, channel_axis=1):
    """The activation applied to value ``name`` as an ``ActivationMatch``, or None.

    ``name`` must not be a graph output; its channels (a PRelu slope's axis) are along
    ``channel_axis``: 1 for a convolution's output, -1 for a product's (FusedLinear).
    """
    readers = consumers.get(name, [])
    if name in graph.outputs or not readers:
        return None
    if len(readers) == 2:
        sigmoid = next((n for n in readers if n.op == 'Sigmoid'), None)
        mul = _silu_mul(graph, consumers, name, sigmoid) if sigmoid else None
        return ActivationMatch({'activation': 'SiLU'}, [sigmoid, mul], mul.outputs[0]) \
            if mul else None
    act = readers[0]
    if len(readers) != 1 or act.inputs[0] != name:
        return None
    attrs, slope = None, None
    if act.op == 'Clip':
        bounds = _clip_bounds(graph, act)
        attrs = bounds and {'activation': 'Clip', 'clip_min': bounds[0], 'clip_max': bounds[1]}
    elif act.op in ACTIVATIONS:
        attrs = {'activation': act.op, **traits.activation_values(act.op, act.attrs)}
    elif act.op == 'PRelu':
        slope = prelu_slope(graph, act, channel_axis)
        attrs = None if slope is None else {'activation': 'PRelu'}
    return ActivationMatch(attrs, [act], act.outputs[0], slope) if attrs else None


def conv_inputs(conv):
    """``[x, w, b]`` of a (Fused)Conv or (Fused)ConvTranspose, ``''`` for an omitted bias
    (no residual)."""
    return list(conv.inputs[:3]) + [''] * (3 - len(conv.inputs[:3]))


def epilogue_inputs(inputs, residual='', slope=''):
    """A fused node's inputs: ``inputs`` (x, w, bias), then the residual and PRelu's slope
    where present (``''`` marking an omitted residual before a slope)."""
    tail = [residual, slope] if slope else [residual] if residual else []
    return list(inputs) + tail


def slope_input(node) -> str:
    """The PRelu slope input of a fused node ('' when none)."""
    return node.inputs[SLOPE_INPUT] if len(node.inputs) > SLOPE_INPUT else ''


def add_slope(graph, node_name, match) -> str:
    """The name of ``match``'s PRelu slope, stored as a new constant ('' for another
    activation)."""
    return '' if match.slope is None else add_weight(graph, f'{node_name}/slope', match.slope)


def replace_outputs(node, outputs) -> Node:
    """A copy of ``node`` writing ``outputs``."""
    return Node(node.op, node.name, list(node.inputs), list(outputs), dict(node.attrs))


def fused_conv(conv, activation_attrs, output, slope=''):
    """A FusedConv (FusedConvTranspose) node doing what Conv (ConvTranspose) ``conv`` does,
    then the activation (PRelu: with constant ``slope``), writing ``output``."""
    inputs = epilogue_inputs(conv_inputs(conv), slope=slope)
    attrs = {k: v for k, v in conv.attrs.items() if k in CONV_ATTRS}
    attrs.update(activation_attrs)
    return Node(FUSED[conv.op], conv.name, inputs, [output], attrs)


def match_after_copies(graph, consumers, name):
    """``(copies, match)`` when a one-value activation (not PRelu: its channels would move) is
    applied after a chain of up to ``MAX_COPIES`` data-movement copies of ``name`` (each value
    read by the next node only, no graph output), else None. Such an activation commutes
    with the copies: the convolution may apply it and the copies move activated values."""
    copies = []
    while len(copies) < MAX_COPIES:
        node = sole_consumer(graph, consumers, name)
        if node is None or node.op not in LAYOUT_COPIES or node.inputs[0] != name or \
                len(node.outputs) != 1:
            break
        copies.append(node)
        name = node.outputs[0]
    match = match_activation(graph, consumers, name) if copies else None
    return (copies, match) if match is not None and match.slope is None else None


def fuse_conv_activation(graph) -> int:
    """Turn every float Conv into a FusedConv (ConvTranspose into a FusedConvTranspose),
    absorbing the activation after it (or after copies of its output: ``match_after_copies``).

    Returns the number of activations fused (plain Conv -> FusedConv is not counted).
    """
    consumers = graph.consumers()
    replace, remove, fused = {}, [], 0
    for conv in graph.nodes:
        out_value = graph.values.get(conv.outputs[0]) if conv.op in FUSED else None
        if out_value is None or out_value.dtype not in FLOAT_DTYPES:
            continue
        match = match_activation(graph, consumers, conv.outputs[0])
        after = None if match else match_after_copies(graph, consumers, conv.outputs[0])
        if after:  # the last copy writes the activation's output
            copies, match = after
            replace[id(copies[-1])] = [replace_outputs(copies[-1], [match.output])]
            match = match._replace(output=conv.outputs[0])
        if match is None:
            replace[id(conv)] = [fused_conv(conv, {'activation': ''}, conv.outputs[0])]
            continue
        slope = add_slope(graph, conv.name, match)
        replace[id(conv)] = [fused_conv(conv, match.attrs, match.output, slope)]
        remove.extend(id(n) for n in match.nodes)
        fused += 1
    rewrite_nodes(graph, replace=replace, remove=remove)
    return fused
