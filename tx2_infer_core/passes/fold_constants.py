"""Constant folding, shape arithmetic included.

Pattern::

    const ... const              value with a static shape
        \\     |    /                     |
          SomeOp           or           Shape
            |                             |
          y (becomes a constant)        s = static shape (a constant)

A node whose inputs are all constants is run once with the reference op and its outputs become
weights; ``Shape`` of a value with a known static shape folds too, so the usual
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains collapse to one constant shape.
Declines on graph outputs, random ops, ops the reference cannot run, and results much larger
than their inputs (folding an ``Expand`` would only bloat the weights).
"""
import logging

import numpy as np

from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.ops import run_node

log = logging.getLogger('tx2_infer.passes')

NEVER_FOLD = {'RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike',
              'Multinomial', 'Bernoulli'}
GROWTH_LIMIT_BYTES = 1 << 20   # a folded result may exceed its inputs by at most this


def static_shape(graph, name):
    """The static shape of activation ``name`` as a tuple of ints, or None."""
    value = graph.values.get(name)
    if value is None or value.shape is None:
        return None
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in value.shape):
        return None
    return tuple(int(d) for d in value.shape)


def shape_constant(shape, start=0, end=None) -> np.ndarray:
    """What ONNX ``Shape(start, end)`` returns for a tensor of ``shape``."""
    return np.array(shape[start:end], dtype=np.int64)


def constant_node_value(attrs) -> np.ndarray:
    """The tensor an ONNX ``Constant`` node holds (whichever ``value*`` attribute it has)."""
    dtypes = {'value_float': np.float32, 'value_floats': np.float32,
              'value_int': np.int64, 'value_ints': np.int64}
    key = next(k for k in attrs if k.startswith('value'))
    return np.asarray(attrs[key], dtype=dtypes.get(key))


def _fold_one(graph, node):
    """Constant outputs of ``node`` as a list, or None when it cannot be folded."""
    if node.op in NEVER_FOLD or any(o in graph.outputs for o in node.outputs):
        return None
    if node.op == 'Constant':
        return [constant_node_value(node.attrs)]
    if node.op == 'Shape' and node.inputs[0] not in graph.weights:
        shape = static_shape(graph, node.inputs[0])
        if shape is None:
            return None
        return [shape_constant(shape, node.attrs.get('start', 0), node.attrs.get('end'))]
    if not all(i == '' or i in graph.weights for i in node.inputs):
        return None
    args = [np.asarray(graph.weights[i]) if i else None for i in node.inputs]
    try:
        results = [np.asarray(r) for r in run_node(node, args)]
    except (Tx2InferError, ValueError, TypeError, IndexError, KeyError,
            NotImplementedError, ZeroDivisionError) as exc:
        log.debug('fold_constants: %s %s declined (%s)', node.op, node.name, exc)
        return None
    in_bytes = sum(a.nbytes for a in args if a is not None)
    if sum(r.nbytes for r in results) > in_bytes + GROWTH_LIMIT_BYTES:
        return None
    return results


def fold_constants(graph) -> int:
    """Fold constant subgraphs into weights, repeating to a fixpoint. Returns nodes folded."""
    folded_total = 0
    while True:
        kept, folded = [], 0
        for node in graph.nodes:      # one ordered sweep propagates constants forward
            results = _fold_one(graph, node)
            if results is None:
                kept.append(node)
                continue
            for name, array in zip(node.outputs, results):
                if name:
                    graph.weights[name] = array
                    graph.values.pop(name, None)
            folded += 1
        graph.nodes = kept
        folded_total += folded
        if not folded:
            return folded_total
