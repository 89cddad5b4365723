"""Sink layout transposes through elementwise ops and cancel inverse pairs.

Exporters from NHWC frameworks (tf2onnx: open_nsfw) wrap every Conv in transposes::

    Conv -> Transpose(0,2,3,1) -> Add(c) -> Mul(c) -> Relu -> Transpose(0,3,1,2) -> Conv

Sinking moves a transpose below an elementwise op (``op(T(x), c) == T(op(x, T^-1(c)))``, and
``op(T(x), T(y)) == T(op(x, y))``) until it meets its inverse, and the pair cancels::

    Conv -> Add(c') -> Mul(c') -> Relu -> Conv

after which the per-channel arithmetic folds into the Conv. The rewrite is tried on a copy and
kept only when it leaves fewer Transpose nodes than before (otherwise the pass declines).
"""
import numpy as np

from tx2_infer_core.ir import Node, Value
from tx2_infer_core.ops import traits
from tx2_infer_core.passes.graph_edit import (add_weight, alias, can_alias, rewrite_nodes,
                                              unique_name)

# elementwise ops of one data input (the others, e.g. Clip's bounds, are scalars), and those
# broadcasting every input (``ops/traits.py``)
UNARY = frozenset(traits.names(kind=traits.ACTIVATION) + traits.names(kind=traits.UNARY)
                  + traits.names(kind=traits.COPY, keeps_layout=True))
BINARY = frozenset(traits.names(kind=traits.BINARY))


def inverse_perm(perm):
    """The permutation undoing ``perm``."""
    return [int(i) for i in np.argsort(perm)]


def _perm_of(producers, name):
    node = producers.get(name)
    return list(node.attrs['perm']) if node is not None and node.op == 'Transpose' \
        and node.attrs.get('perm') is not None else None


def _sink_perm(graph, producers, node):
    """The permutation P if every activation input of ``node`` is a Transpose(P) output."""
    if len(node.outputs) != 1 or (node.op not in UNARY and node.op not in BINARY):
        return None
    data = node.inputs[:1] if node.op in UNARY else node.inputs
    perms = [_perm_of(producers, i) for i in data if i and i not in graph.weights]
    if not perms or any(p is None or p != perms[0] for p in perms):
        return None
    rank = len(perms[0])
    if any(np.ndim(graph.weights[i]) > rank for i in data if i in graph.weights):
        return None
    return perms[0]


def _sink(graph, producers, node, perm):
    """Rewrite ``node`` to run before the transpose; returns the new Transpose node."""
    inv, out = inverse_perm(perm), node.outputs[0]
    data = node.inputs[:1] if node.op in UNARY else node.inputs
    new_inputs = list(node.inputs)
    for k, name in enumerate(data):
        if name in graph.weights:
            c = np.asarray(graph.weights[name])
            c = np.transpose(c.reshape((1,) * (len(perm) - c.ndim) + c.shape), inv)
            new_inputs[k] = add_weight(graph, f'{name}.T', c)
        elif name:
            new_inputs[k] = producers[name].inputs[0]
    pre = unique_name(graph, f'{out}.pre')
    value = graph.values[out]
    shape = [0] * len(perm)
    for i, p in enumerate(perm):
        shape[p] = value.shape[i]
    graph.values[pre] = Value(pre, tuple(shape), value.dtype, '')
    node.inputs, node.outputs = new_inputs, [pre]
    return Node('Transpose', unique_name(graph, f'{node.name}.T'), [pre], [out],
                {'perm': list(perm)})


def _sink_round(graph) -> int:
    producers = graph.producers()
    replace = {}
    for node in graph.nodes:
        perm = _sink_perm(graph, producers, node)
        if perm is not None:
            replace[id(node)] = [node, _sink(graph, producers, node, perm)]
    return rewrite_nodes(graph, replace=replace)


def _cancel_round(graph) -> int:
    producers = graph.producers()
    removed = []
    for node in graph.nodes:
        if node.op != 'Transpose' or node.attrs.get('perm') is None:
            continue
        first = producers.get(node.inputs[0])
        outer = list(node.attrs['perm'])
        if first is None or _perm_of(producers, node.inputs[0]) is None:
            continue
        inner = list(first.attrs['perm'])
        if len(inner) == len(outer) and all(inner[q] == i for i, q in enumerate(outer)):
            if can_alias(graph, node.outputs[0], first.inputs[0]):
                alias(graph, node.outputs[0], first.inputs[0])
                removed.append(id(node))
    return rewrite_nodes(graph, remove=removed)


def _count(graph):
    return sum(1 for n in graph.nodes if n.op == 'Transpose')


def sink_transposes(graph) -> int:
    """Sink transposes and cancel inverse pairs when that removes transposes.

    Mutates ``graph`` only when the result has fewer Transpose nodes; returns how many fewer.
    """
    trial = graph.copy()
    while _sink_round(trial) + _cancel_round(trial):
        trial.prune()
    trial.prune()
    gained = _count(graph) - _count(trial)
    if gained <= 0:
        return 0
    graph.nodes, graph.values, graph.weights = trial.nodes, trial.values, trial.weights
    graph.outputs = trial.outputs
    return gained
