"""Level 3 (the CUDA pipeline, FP16): write the import rewrite's exact requantisation
(``qoperator_rewrite.requantized``) back as a float Mul, which ``fold_scale_shift`` then folds
into the conv (MatMul) weights.

Pattern::

    x -> Conv | MatMul (integer operands) -> acc -> Cast(int32) -> DequantizeLinear(m) -> y
    =>   x -> Conv | MatMul -> acc -> Mul(m) -> y

The CPU levels keep the exact form: there ``float32(acc) * m`` after the exact integer sum is
ONNX Runtime's rounding bit for bit. The FP16 arena holds neither the int32 sums (up to 2**24,
past FP16's 65504) nor an int32 DequantizeLinear, and an FP16 conv rounds differently anyway:
folded into the weights, the conv's outputs stay in the output's quanta, as before the exact
form.
Safety: ``acc`` holds integers, so the Cast to int32 changes no value: the product's data input
is a DequantizeLinear by scale 1 (or a Cast from an integer type) and its weights (and bias)
are integer-valued float constants; ``acc`` and the int32 sum have one reader each and are no
graph output; ``m`` is a float32 constant (one value, or one per channel along the
DequantizeLinear's axis) and there is no zero point.
"""
import numpy as np

from tx2_infer_core.ir import Node
from tx2_infer_core.passes.graph_edit import (add_weight, constant, dtype_of, rewrite_nodes,
                                              shape_of, sole_consumer)

PRODUCTS = ('Conv', 'MatMul')
INT32 = 6       # ONNX TensorProto INT32


def _integer_valued(graph, producers, name) -> bool:
    """Whether value or constant ``name`` holds integers only (from its producer's form)."""
    c = constant(graph, name)
    if c is not None:
        return c.dtype.kind in 'iu' or bool(np.all(np.rint(c) == c))
    node = producers.get(name)
    if node is None:
        return False
    if node.op == 'Cast':
        return dtype_of(graph, node.inputs[0]) in ('uint8', 'int8', 'uint16', 'int16', 'int32')
    scale = constant(graph, node.inputs[1]) if node.op == 'DequantizeLinear' else None
    return scale is not None and bool(np.all(scale == 1))


def _multiplier(graph, dq, like) -> np.ndarray:
    """The DequantizeLinear ``dq``'s float32 scale shaped to broadcast over ``like`` (its
    axis), or None (a zero point, a scale that is not a float32 constant)."""
    m = constant(graph, dq.inputs[1])
    shape = shape_of(graph, like)
    if m is None or m.dtype != np.float32 or len(dq.inputs) > 2 and dq.inputs[2] or \
            shape is None:
        return None
    if m.size == 1:
        return m.reshape(())
    axis = dq.attrs.get('axis', 1) % len(shape)
    return m.reshape([m.size if i == axis else 1 for i in range(len(shape))])


def _match(graph, producers, consumers, product):
    """``(cast, dq, m)`` after ``product`` when the pattern holds, else None."""
    if product.op not in PRODUCTS or not all(
            _integer_valued(graph, producers, name) for name in product.inputs if name):
        return None
    cast = sole_consumer(graph, consumers, product.outputs[0])
    if cast is None or cast.op != 'Cast' or cast.attrs.get('to') != INT32:
        return None
    dq = sole_consumer(graph, consumers, cast.outputs[0])
    if dq is None or dq.op != 'DequantizeLinear' or dq.inputs[0] != cast.outputs[0]:
        return None
    m = _multiplier(graph, dq, product.outputs[0])
    return None if m is None else (cast, dq, m)


def requantize_in_float(graph) -> int:
    """Write each exact requantisation (Conv | MatMul -> Cast int32 -> DequantizeLinear) as
    a Mul by the multiplier after the product (see the module doc). Returns how many."""
    producers, consumers = graph.producers(), graph.consumers()
    replace, remove = {}, []
    for product in graph.nodes:
        found = _match(graph, producers, consumers, product)
        if found is None:
            continue
        cast, dq, m = found
        scale = add_weight(graph, f'{dq.name}.multiplier', m)
        graph.values.pop(cast.outputs[0], None)
        replace[id(dq)] = [Node('Mul', dq.name, [product.outputs[0], scale], list(dq.outputs))]
        remove.append(id(cast))
    rewrite_nodes(graph, replace, remove)
    return len(replace)
