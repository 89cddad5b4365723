"""A plain sequential interpreter over the IR: the simplest possible oracle.

``execute`` runs nodes one by one with the reference ops and fresh arrays (no arena), so it is
independent of the memory planner. ``infer_shapes`` runs it once to record every value's static
shape and dtype.
"""
import numpy as np

from tx2_infer_core.ir import Value
from tx2_infer_core.ops import run_node


def execute(graph, feeds, keep_all=False, observe=None) -> dict:
    """Run ``graph`` on ``feeds`` ({input name: array}); returns its outputs (or every value).
    ``observe(name, array)``, when given, sees each feed and each node output as it is made."""
    env = dict(graph.weights)
    env.update(feeds)
    for name, value in feeds.items() if observe else ():
        observe(name, value)
    refcount = {}
    for node in graph.nodes:
        for name in node.inputs:
            refcount[name] = refcount.get(name, 0) + 1
    outputs = set(graph.outputs)
    for node in graph.nodes:
        args = [env[name] if name else None for name in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            if name:
                env[name] = value
                if observe:
                    observe(name, value)
        if not keep_all:
            for name in node.inputs:
                refcount[name] -= 1
                if refcount[name] == 0 and name not in outputs and name not in graph.weights:
                    env.pop(name, None)
    if keep_all:
        return {k: v for k, v in env.items() if k not in graph.weights}
    return {name: env[name] for name in graph.outputs}


def _example_input(value) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(value.dtype).kind == 'f':
        return rng.random(value.shape).astype(value.dtype)
    return np.zeros(value.shape, value.dtype)


def infer_shapes(graph) -> None:
    """Fill ``graph.values`` with the static shape and dtype of every activation."""
    feeds = {name: _example_input(graph.values[name]) for name in graph.inputs}
    result = execute(graph, feeds, keep_all=True)
    for name, array in result.items():
        array = np.asarray(array)
        old = graph.values.get(name)
        layout = old.layout if old else ''      # passes.infer_layouts fills the rest
        graph.values[name] = Value(name, tuple(array.shape), array.dtype.name, layout)
