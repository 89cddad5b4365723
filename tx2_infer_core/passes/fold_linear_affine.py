"""Fold per-column scale and shift arithmetic after a product by a constant matrix into the
product's weights (``fold_batchnorm.fold_scale_shift`` runs it beside its Conv fold).

Patterns::

    x -> MatMul(W) -> y -> [Add(y, b)] -> u -> Mul | Div | Add | Sub (u, c) -> z
      => x -> MatMul(W') -> y -> Add(y, b') -> z      (no Add when there is nothing to add)
    x -> Gemm(W, [C]) -> y -> Mul | Div | Add | Sub (y, c) -> z
      => x -> Gemm(W', C', beta=1) -> z

``c`` holds one value per output column (or one value); ``affine_of`` writes the op as
``u * scale + shift`` and ``fuse_output_affine_weights`` gives ``W' = W * scale`` column by
column and ``b' = b * scale + shift``. A ViT's layer scale (``Linear -> Mul(gamma) ->
Add(residual)``) so becomes ``MatMul -> Add(b') -> Add(residual)``, which ``fuse_linear``
then takes whole into one FusedLinear (no pointwise launch left).

Safety: ``W`` a constant 2-D float matrix and ``x`` an activation (``fuse_linear.is_product``;
a Gemm's ``C`` absent or a constant of one value per column); ``y`` and ``u`` each have the
next node as their only reader and are no graph output, so nothing between the product and
the folded op (an activation above all) is skipped; ``c`` is a finite constant of ``u``'s
dtype that varies along the last axis only (it does not grow the output); a Div divides by
``c`` and by no zero; the new weights are finite.
"""
from typing import NamedTuple

import numpy as np

from tx2_infer_core.ir import Node
from tx2_infer_core.passes.fuse_linear import bias_add, is_product
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, shape_of, sole_consumer)
from tx2_infer_core.passes.weights import affine_of, column_vector, fuse_output_affine_weights

AFFINE_OPS = ('Add', 'Sub', 'Mul', 'Div')


class LinearFold(NamedTuple):
    """A match: the ``product`` (MatMul or Gemm), a MatMul's ``bias`` Add (or None), the
    ``affine`` node folded away, and the new weights ``w`` (None: unchanged) and bias ``b``
    (None: none)."""

    product: Node
    bias: Node
    affine: Node
    w: np.ndarray
    b: np.ndarray


def column_affine(graph, node, name):
    """``(scale, shift)``, float64 vectors, when ``node`` computes ``name`` op a per-column
    constant, an affine map of each column of ``name``; None otherwise."""
    if node is None or node.op not in AFFINE_OPS or len(node.inputs) != 2 or \
            node.inputs[0] == node.inputs[1]:
        return None
    first = node.inputs[0] == name
    c = constant(graph, node.inputs[1] if first else node.inputs[0])
    shape, dtype = shape_of(graph, name), dtype_of(graph, name)
    if c is None or shape is None or c.dtype.name != dtype or \
            dtype_of(graph, node.outputs[0]) != dtype or not np.isfinite(c).all():
        return None
    vector = column_vector(c, len(shape), shape[-1])
    return None if vector is None else affine_of(node.op, vector.astype(np.float64), first)


def _gemm(graph, node):
    """``(W, column axis of W, bias vector or None)`` of a Gemm by a constant matrix with a
    per-column (or no) C, or None."""
    w = constant(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or w.ndim != 2 or w.dtype.name not in FLOAT_DTYPES or \
            constant(graph, node.inputs[0]) is not None:
        return None
    axis = 0 if node.attrs.get('transB', 0) else -1
    c_name = node.inputs[2] if len(node.inputs) > 2 else ''
    if not c_name:
        return w, axis, None
    c = constant(graph, c_name)
    b = column_vector(c, 2, w.shape[axis]) if c is not None else None
    return None if b is None else (w, axis, b * float(node.attrs.get('beta', 1.0)))


def _product(graph, consumers, node):
    """``(W, column axis of W, bias vector or None, bias Add or None, output)`` of a product
    by a constant matrix (a MatMul with the Add of its bias), or None."""
    if node.op == 'MatMul' and is_product(graph, node):
        found = bias_add(graph, consumers, node.outputs[0])
        b, add = found if found else (None, None)
        out = add.outputs[0] if add else node.outputs[0]
        return constant(graph, node.inputs[1]), -1, b, add, out
    found = _gemm(graph, node) if node.op == 'Gemm' else None
    return None if found is None else found + (None, node.outputs[0])


def _match(graph, consumers, node):
    """The ``LinearFold`` of ``node`` and the affine op after it, or None."""
    found = _product(graph, consumers, node)
    if found is None:
        return None
    w, axis, b, add, out = found
    affine = sole_consumer(graph, consumers, out)
    maps = column_affine(graph, affine, out)
    if maps is None:
        return None
    new_w, new_b = fuse_output_affine_weights(w, b, *maps, axis)
    if not (np.isfinite(new_w).all() and np.isfinite(new_b).all()):
        return None
    if b is None and not np.any(maps[1]):
        new_b = None                        # a scale alone: no bias to add
    if np.all(maps[0] == 1):
        new_w = None                        # a shift alone: W stays (and stays shared)
    return LinearFold(node, add, affine, new_w, new_b)


def _rewrite(graph, fold):
    """Apply ``fold`` to its nodes; returns ``(replace, remove)`` for ``rewrite_nodes``."""
    node, add, affine = fold.product, fold.bias, fold.affine
    w = node.inputs[1] if fold.w is None else add_weight(graph, f'{node.name}.w', fold.w)
    node.inputs = [node.inputs[0], w]
    b = '' if fold.b is None else add_weight(graph, f'{node.name}.b', fold.b)
    if node.op == 'Gemm':
        node.inputs += [b] if b else []
        node.attrs = {**node.attrs, 'beta': 1.0}
    if add is not None:                     # the bias Add takes the new bias and the output
        y = node.outputs[0]
        add.inputs = [i if i == y else b for i in add.inputs]
        graph.values.pop(add.outputs[0], None)
        add.outputs = list(affine.outputs)
    elif b and node.op == 'MatMul':         # a shift with no bias yet: the Add of one
        return {id(affine): [Node('Add', affine.name, [node.outputs[0], b],
                                  list(affine.outputs))]}, []
    else:
        graph.values.pop(node.outputs[0], None)
        node.outputs = list(affine.outputs)
    return {}, [id(affine)]


def fold_into_linear(graph) -> int:
    """Fold each per-column Add/Sub/Mul/Div by a constant after a MatMul (and its bias) or
    Gemm by a constant matrix into its weights (module docstring); returns folds made."""
    consumers = graph.consumers()
    folds = [f for f in (_match(graph, consumers, n) for n in graph.nodes) if f is not None]
    replace, remove = {}, []
    for fold in folds:
        more_replace, more_remove = _rewrite(graph, fold)
        replace.update(more_replace)
        remove += more_remove
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(folds)
