"""The numpy reference backend: every activation is a view into one arena buffer.

Running inside the planner's arena (instead of fresh arrays) means a planner bug, such as two
live values sharing bytes, shows up as a wrong answer in the tests.
"""
import numpy as np

from tx2_infer_core.backends.base import Backend
from tx2_infer_core.ops import run_node


def arena_views(arena: np.ndarray, graph, offsets: dict) -> dict:
    """One ndarray view per activation, at its planned byte offset in ``arena``."""
    views = {}
    for name, offset in offsets.items():
        value = graph.values[name]
        views[name] = np.ndarray(value.shape, np.dtype(value.dtype), buffer=arena,
                                 offset=int(offset))
    return views


class NumpyBackend(Backend):
    """CPU oracle backend (float32)."""

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
            self.steps.append((node, args, outs))

    def _source(self, name):
        if not name:
            return None
        if name in self.graph.weights:
            return self.graph.weights[name]
        return self.views[name]

    def run(self, feeds: dict) -> dict:
        for name, array in feeds.items():
            np.copyto(self.views[name], array, casting='same_kind')
        for node, args, outs in self.steps:
            results = run_node(node, args)
            for view, result in zip(outs, results):
                if view is not None:
                    view[...] = result
        return {name: np.array(self._source(name)) for name in self.graph.outputs}

    def close(self) -> None:
        self.arena = None
        self.views = {}
        self.steps = []
