"""Fuse a product with a constant matrix and the epilogue after it into one ``FusedLinear``
(pass level 3: one GEMM launch with its bias, activation and residual on CUDA).

Patterns::

    x -> MatMul(W) -> y -> [Add(y, b)] -> [Act] -> [Add(., r)] -> z     residual_after_act=1
    x -> MatMul(W) -> y -> [Add(y, b)] -> Add(., r) -> Act -> z         residual_after_act=0

become ``x -> FusedLinear(W, b, r, activation=Act) -> z`` (at least one bracket taken: a
transformer's QKV projection with its bias, the attention output and FFN out projections with
bias and residual, the FFN inter projection with bias and GELU). ``Act`` is what FusedConv
takes (``fuse_conv.match_activation``, PRelu with a per-column slope: FusedLinear's fifth input)
or a Gelu node (``ops/fused.py`` GELU_FORMS).

Safety: ``W`` a constant 2-D matrix, ``x`` a float activation of rank 2 or more; each value
passed along the chain has the next node as its only reader and is no graph output; ``b`` a
constant of one value per column (or one value) of the product's dtype that does not grow it;
``r`` an activation of exactly the chain's shape and dtype. The fused node takes the place of
the chain's last node (its inputs are all computed there). The ONNX export does not take
FusedLinear: level 3 only (cuda builds), as FusedPointwise.
"""
from tx2_infer_core.ir import Node
from tx2_infer_core.ops.fused import GELU_FORMS
from tx2_infer_core.passes.fuse_conv import (ActivationMatch, add_slope, epilogue_inputs,
                                             match_activation)
from tx2_infer_core.passes.fuse_residual import residual_input
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, shape_of, sole_consumer)
from tx2_infer_core.passes.weights import column_vector

GELU_NAMES = {approximate: name for name, approximate in GELU_FORMS.items()}


def _other_input(add, name):
    """The input of two-input Add ``add`` that is not ``name``, or None."""
    if add is None or add.op != 'Add' or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
        return None
    return add.inputs[1] if add.inputs[0] == name else add.inputs[0]


def bias_add(graph, consumers, name):
    """``(bias vector, Add)`` when ``name``'s only reader adds a per-column constant."""
    add = sole_consumer(graph, consumers, name)
    other = _other_input(add, name)
    c = constant(graph, other)
    shape = shape_of(graph, name)
    if c is None or shape is None or c.dtype.name != dtype_of(graph, name):
        return None
    vector = column_vector(c, len(shape), shape[-1])
    return None if vector is None else (vector, add)


def _residual(graph, consumers, name):
    """``(residual, Add)`` when ``name``'s only reader adds an activation of its shape."""
    add = sole_consumer(graph, consumers, name)
    other = residual_input(graph, name, add)
    return None if other is None else (other, add)


def _activation(graph, consumers, name):
    """The ``ActivationMatch`` of the activation applied to ``name``: FusedConv's (a PRelu
    slope per column), or a Gelu node (erf or tanh form); None when there is none."""
    gelu = sole_consumer(graph, consumers, name)
    if gelu is not None and gelu.op == 'Gelu' and gelu.inputs[0] == name:
        form = gelu.attrs.get('approximate', 'none')
        form = form.decode() if isinstance(form, bytes) else form
        return ActivationMatch({'activation': GELU_NAMES[form]}, [gelu], gelu.outputs[0]) \
            if form in GELU_NAMES else None
    return match_activation(graph, consumers, name, channel_axis=-1)


def is_product(graph, node) -> bool:
    """A MatMul of a float activation of rank >= 2 by a constant 2-D matrix."""
    if node.op != 'MatMul' or dtype_of(graph, node.outputs[0]) not in FLOAT_DTYPES:
        return False
    w, x_shape = constant(graph, node.inputs[1]), shape_of(graph, node.inputs[0])
    return (w is not None and w.ndim == 2 and constant(graph, node.inputs[0]) is None
            and x_shape is not None and len(x_shape) >= 2)


def epilogue(graph, consumers, matmul):
    """``(bias vector or None, residual, attrs, absorbed nodes, output, activation match or
    None)`` of the chain after ``matmul`` (module docstring), or None when there is nothing to
    absorb."""
    out, nodes, attrs, bias, residual = matmul.outputs[0], [], {}, None, ''
    found = bias_add(graph, consumers, out)
    if found:
        bias, add = found
        nodes, out = [add], add.outputs[0]
    act = _activation(graph, consumers, out)
    if act:
        attrs, nodes, out = dict(act.attrs), nodes + act.nodes, act.output
    found = _residual(graph, consumers, out)
    if found:
        residual, add = found
        nodes, out = nodes + [add], add.outputs[0]
        attrs['residual_after_act'] = 1 if act else 0
        if not act:
            act = _activation(graph, consumers, out)
            if act:
                attrs.update(act.attrs)
                nodes, out = nodes + act.nodes, act.output
    return (bias, residual, attrs, nodes, out, act) if nodes else None


def fuse_linear(graph) -> int:
    """Fuse each MatMul by a constant matrix with its bias, activation and residual into one
    FusedLinear (module docstring); returns how many were made."""
    consumers = graph.consumers()
    replace, remove = {}, []
    for matmul in [n for n in graph.nodes if is_product(graph, n)]:
        found = epilogue(graph, consumers, matmul)
        if found is None:
            continue
        bias, residual, attrs, nodes, out, act = found
        b = '' if bias is None else add_weight(graph, f'{matmul.name}/bias', bias)
        slope = add_slope(graph, matmul.name, act) if act else ''
        inputs = epilogue_inputs(matmul.inputs[:2] + [b], residual, slope)
        replace[id(nodes[-1])] = [Node('FusedLinear', matmul.name, inputs, [out], attrs)]
        remove += [id(matmul)] + [id(n) for n in nodes[:-1]]
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace)
