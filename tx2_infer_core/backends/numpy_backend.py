"""The numpy reference backend: every activation is a view into one arena buffer.

Running inside the planner's arena (instead of fresh arrays) means a planner bug, such as two
live values sharing bytes, shows up as a wrong answer in the tests.

Build once, run many: at ``prepare`` each step becomes an object bound to its arena views.
Convolutions are prepared (``numpy_prepack``: weights laid out once, output written straight
into the arena, bands of rows on one thread per core); every other node runs its reference op
from ``ops/`` and the result is copied into its view.
"""
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tx2_infer_core.backends.base import Backend, fill_outputs
from tx2_infer_core.backends.numpy_prepack import (ConvWorkspace, PreparedConv, prepare_conv,
                                                   prepare_max_pool)
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import OPS, run_node

MAX_WORKERS = 8


def arena_views(arena: np.ndarray, graph, offsets: dict) -> dict:
    """One ndarray view per activation, at its planned byte offset in ``arena``."""
    views = {}
    for name, offset in offsets.items():
        value = graph.values[name]
        views[name] = np.ndarray(value.shape, np.dtype(value.dtype), buffer=arena,
                                 offset=int(offset))
    return views


def single_threaded_blas():
    """A context factory that holds BLAS to one thread (process-wide, while it is entered), so
    conv bands on our own threads do not fight BLAS's threads for the cores; None without
    threadpoolctl (then the convs run on one thread of ours and BLAS threads as configured)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1, user_api='blas')


class ReferenceStep:
    """A node run by its reference op; each result is copied into its arena view."""

    def __init__(self, node, args, outs):
        self.node, self.args, self.outs = node, args, outs

    def run(self) -> None:
        """Run the op and copy its results into the output views; a result of another shape
        than planned (an output shape that depends on the input data, e.g. NonZero's) is
        refused, never broadcast or cut."""
        for view, result in zip(self.outs, run_node(self.node, self.args)):
            if view is None:
                continue
            if np.shape(result) != view.shape:
                raise UnsupportedOpError(
                    self.node.op, self.node.name, OPS,
                    f'output shape {np.shape(result)} at run time, built for {view.shape}: '
                    'an output shape that depends on the input data cannot run in the '
                    'static arena')
            view[...] = result


class NumpyBackend(Backend):
    """CPU oracle backend (float32).

    ``steps`` is a list of (node, step) in execution order; ``step.run()`` executes the node
    inside the arena (time each to profile a model). ``workers`` threads (one per core, at
    most ``MAX_WORKERS``; 1 without threadpoolctl) run the bands of each conv.
    """

    name = 'numpy'

    def __init__(self, workers=None):
        self.blas_limit = single_threaded_blas()
        cores = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
        self.workers = 1 if self.blas_limit is None else (workers or cores)
        self.pool = None

    def prepare(self, graph, memory_plan) -> None:
        self.graph = graph
        self.arena = np.zeros(max(int(memory_plan.arena_bytes), 1), np.uint8)
        self.views = arena_views(self.arena, graph, memory_plan.offsets)
        skipped = set(memory_plan.placed_concats)
        if self.workers > 1 and self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix='tx2-numpy')
        self.steps = []
        for node in graph.nodes:
            if node.name in skipped:
                continue
            args = [self._source(name) for name in node.inputs]
            outs = [self.views.get(name) if name else None for name in node.outputs]
            step = (prepare_conv(node, args, outs, graph, self.workers)
                    or prepare_max_pool(node, args, outs, self.workers, self.pool))
            self.steps.append((node, step or ReferenceStep(node, args, outs)))
        convs = [step for _, step in self.steps if isinstance(step, PreparedConv)]
        self.workspace = ConvWorkspace(convs, self.workers)
        for conv in convs:
            conv.bind(self.workspace, self.pool)

    def _source(self, name):
        if not name:
            return None
        if name in self.graph.weights:
            return self.graph.weights[name]
        return self.views[name]

    def run(self, feeds: dict, out=None) -> dict:
        for name, array in feeds.items():
            np.copyto(self.views[name], array, casting='same_kind')
        limit = self.blas_limit() if self.workers > 1 else contextlib.nullcontext()
        with limit:
            for _, step in self.steps:
                step.run()
        if out is not None:
            return fill_outputs({n: self._source(n) for n in self.graph.outputs}, out)
        return {name: np.array(self._source(name)) for name in self.graph.outputs}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.pool = None
        self.arena = None
        self.views = {}
        self.steps = []
