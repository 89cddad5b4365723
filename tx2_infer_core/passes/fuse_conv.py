"""Fuse Conv (+bias) with the activation after it into one ``FusedConv`` node.

Patterns::

    x -> Conv(w, b) -> y -> Act -> z               Act: an op of kind 'activation' in
                                                    ops/traits.py (Relu, LeakyRelu, Clip...)
    x -> Conv(w, b) -> y -> Sigmoid -> s            (SiLU written as y * sigmoid(y))
                       \\______________-> Mul(y, s) -> z

become ``x -> FusedConv(w, b, activation=Act) -> z``; a Conv with no activation after it becomes
``FusedConv(activation='')`` so backends have one conv op. ConvTranspose likewise becomes
``FusedConvTranspose`` (its attributes, then the same activation and residual ones).
Safety: ``y`` (and ``s``) are not graph outputs and have exactly the readers drawn; Clip
bounds are constants (an open bound becomes the float32 limit, so attributes stay finite); an
activation's attributes (LeakyRelu's ``alpha``, HardSigmoid's ``alpha`` and ``beta``: its
traits' ``params``) become ``alpha`` and ``beta``.
"""
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import traits
from tx2_infer_core.passes.graph_edit import FLOAT_DTYPES, constant, rewrite_nodes

# Activation ops fused as they are (SiLU also as its Sigmoid * x pattern; a SiLU node is
# what fuse_pointwise.fuse_activation_patterns writes for other forms of it).
ACTIVATIONS = traits.names(kind=traits.ACTIVATION)
FLOAT32_MAX = 3.4028234663852886e38
CONV_ATTRS = ('auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides',
              'output_padding', 'output_shape')  # the last two: ConvTranspose only
FUSED = {'Conv': 'FusedConv', 'ConvTranspose': 'FusedConvTranspose'}
FUSED_CONV_OPS = tuple(FUSED.values())


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


def match_activation(graph, consumers, name):
    """The activation applied to value ``name`` as ``(attrs, nodes, output)``, or None.

    ``attrs`` are the FusedConv activation attributes, ``nodes`` the nodes it replaces and
    ``output`` the activated value. ``name`` must not be a graph output.
    """
    readers = consumers.get(name, [])
    if name in graph.outputs or not readers:
        return None
    if len(readers) == 2:
        sigmoid = next((n for n in readers if n.op == 'Sigmoid'), None)
        mul = _silu_mul(graph, consumers, name, sigmoid) if sigmoid else None
        return ({'activation': 'SiLU'}, [sigmoid, mul], mul.outputs[0]) if mul else None
    act = readers[0]
    if len(readers) != 1 or act.inputs[0] != name:
        return None
    attrs = None
    if act.op == 'Clip':
        bounds = _clip_bounds(graph, act)
        attrs = bounds and {'activation': 'Clip', 'clip_min': bounds[0], 'clip_max': bounds[1]}
    elif act.op in ACTIVATIONS:
        attrs = {'activation': act.op, **traits.activation_values(act.op, act.attrs)}
    return (attrs, [act], act.outputs[0]) if attrs else None


def conv_inputs(conv):
    """``[x, w, b]`` of a (Fused)Conv or (Fused)ConvTranspose, ``''`` for an omitted bias
    (no residual)."""
    return list(conv.inputs[:3]) + [''] * (3 - len(conv.inputs[:3]))


def fused_conv(conv, activation_attrs, output):
    """A FusedConv (FusedConvTranspose) node doing what Conv (ConvTranspose) ``conv`` does,
    then the activation, writing ``output``."""
    inputs = conv_inputs(conv)
    attrs = {k: v for k, v in conv.attrs.items() if k in CONV_ATTRS}
    attrs.update(activation_attrs)
    return Node(FUSED[conv.op], conv.name, inputs, [output], attrs)


def fuse_conv_activation(graph) -> int:
    """Turn every float Conv into a FusedConv (ConvTranspose into a FusedConvTranspose),
    absorbing the activation after it.

    Returns the number of activations fused (plain Conv -> FusedConv is not counted).
    """
    consumers = graph.consumers()
    replace, remove, fused = {}, [], 0
    for conv in graph.nodes:
        out_value = graph.values.get(conv.outputs[0]) if conv.op in FUSED else None
        if out_value is None or out_value.dtype not in FLOAT_DTYPES:
            continue
        match = match_activation(graph, consumers, conv.outputs[0])
        if match is None:
            replace[id(conv)] = [fused_conv(conv, {'activation': ''}, conv.outputs[0])]
            continue
        attrs, nodes, output = match
        replace[id(conv)] = [fused_conv(conv, attrs, output)]
        remove.extend(id(n) for n in nodes)
        fused += 1
    rewrite_nodes(graph, replace=replace, remove=remove)
    return fused
