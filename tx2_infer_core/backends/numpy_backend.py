"""The numpy reference backend: every activation is a view into one arena buffer.

Running inside the planner's arena (instead of fresh arrays) means a planner bug, such as two
live values sharing bytes, shows up as a wrong answer in the tests.

Build once, run many: at ``prepare`` each step becomes a callable bound to its arena views.
Convolutions are prepared (``numpy_prepack``: weights laid out once, output written straight
into the arena); every other node runs its reference op from ``ops/`` and the result is copied
into its view.
"""
import numpy as np

from tx2_infer_core.backends.base import Backend
from tx2_infer_core.backends.numpy_prepack import prepare_conv
from tx2_infer_core.ops import run_node


def arena_views(arena: np.ndarray, graph, offsets: dict) -> dict:
    """One ndarray view per activation, at its planned byte offset in ``arena``."""
    views = {}
    for name, offset in offsets.items():
        value = graph.values[name]
        views[name] = np.ndarray(value.shape, np.dtype(value.dtype), buffer=arena,
                                 offset=int(offset))
    return views


class ReferenceStep:
    """A node run by its reference op; each result is copied into its arena view."""

    def __init__(self, node, args, outs):
        self.node, self.args, self.outs = node, args, outs

    def run(self) -> None:
        """Run the op and copy its results into the output views."""
        for view, result in zip(self.outs, run_node(self.node, self.args)):
            if view is not None:
                view[...] = result


class NumpyBackend(Backend):
    """CPU oracle backend (float32).

    ``steps`` is a list of (node, step) in execution order; ``step.run()`` executes the node
    inside the arena (time each to profile a model).
    """

    name = 'cpu'

    def prepare(self, graph, memory_plan) -> None:
        self.graph = graph
        self.arena = np.zeros(max(int(memory_plan.arena_bytes), 1), np.uint8)
        self.views = arena_views(self.arena, graph, memory_plan.offsets)
        skipped = set(memory_plan.placed_concats)
        self.steps = []
        for node in graph.nodes:
            if node.name in skipped:
                continue
            args = [self._source(name) for name in node.inputs]
            outs = [self.views.get(name) if name else None for name in node.outputs]
            step = prepare_conv(node, args, outs, graph) or ReferenceStep(node, args, outs)
            self.steps.append((node, step))

    def _source(self, name):
        if not name:
            return None
        if name in self.graph.weights:
            return self.graph.weights[name]
        return self.views[name]

    def run(self, feeds: dict) -> dict:
        for name, array in feeds.items():
            np.copyto(self.views[name], array, casting='same_kind')
        for _, step in self.steps:
            step.run()
        return {name: np.array(self._source(name)) for name in self.graph.outputs}

    def close(self) -> None:
        self.arena = None
        self.views = {}
        self.steps = []
