"""A small graph IR: values with shape, dtype and layout; nodes with attributes; weights.

The IR is deliberately plain data. Passes rewrite it, the planner reads it, backends run it.
Layout and dtype are properties of values (a GPU backend may choose NHWC and float16), never
assumptions baked into ops.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from tx2_infer_core.errors import ModelFormatError


@dataclass
class Value:
    """A tensor flowing between nodes. ``layout`` is 'NCHW', 'NHWC' or '' (not an image)."""

    name: str
    shape: tuple
    dtype: str = 'float32'
    layout: str = ''

    @property
    def nbytes(self) -> int:
        return int(math.prod(int(d) for d in self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    """One operator. ``inputs`` use '' for an omitted optional input (as ONNX does)."""

    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)

    def __repr__(self):
        return f'{self.op}({self.name}: {self.inputs} -> {self.outputs})'


@dataclass
class Graph:
    """A topologically ordered list of nodes over named values.

    ``weights`` holds constant tensors (initializers); a name in ``weights`` is never produced
    by a node. ``values`` has an entry for every activation, graph input and graph output.
    ``meta`` carries model facts the engine does not interpret (detector head, labels, source).
    """

    nodes: list
    inputs: list
    outputs: list
    values: dict
    weights: dict
    name: str = 'graph'
    meta: dict = field(default_factory=dict)

    def copy(self) -> 'Graph':
        """A deep copy of the structure; weights are shared (passes replace, never mutate)."""
        return Graph(
            nodes=[dataclasses.replace(n, inputs=list(n.inputs), outputs=list(n.outputs),
                                       attrs=dict(n.attrs)) for n in self.nodes],
            inputs=list(self.inputs), outputs=list(self.outputs),
            values={k: dataclasses.replace(v) for k, v in self.values.items()},
            weights=dict(self.weights), name=self.name, meta=dict(self.meta))

    def producers(self) -> dict:
        """Map value name -> node producing it."""
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self) -> dict:
        """Map value name -> list of nodes reading it (graph outputs are not nodes)."""
        result = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    result.setdefault(name, []).append(node)
        return result

    def is_constant(self, name: str) -> bool:
        return name in self.weights

    def activations(self) -> list:
        """Names of non-constant values, graph inputs first, in execution order."""
        seen = dict.fromkeys(self.inputs)
        for node in self.nodes:
            for out in node.outputs:
                if out:
                    seen.setdefault(out)
        return list(seen)

    def toposort(self) -> None:
        """Reorder nodes so every node follows its producers, in linear time (Kahn's algorithm,
        ready nodes taken in their original order, so an ordered graph keeps its order).

        A value read (or a graph output) that no node produces and is no input or weight, or
        a cycle, raises
        ``ModelFormatError`` naming a few of the values or nodes involved.
        """
        ready = set(self.inputs) | set(self.weights) | {''}
        produced = {out for node in self.nodes for out in node.outputs if out}
        undefined = sorted(({i for n in self.nodes for i in n.inputs} | set(self.outputs))
                           - ready - produced)
        if undefined:
            raise ModelFormatError(f'graph {self.name!r} reads values no node produces: '
                                   f'{undefined[:5]}')
        waiting, readers = [], {}
        for index, node in enumerate(self.nodes):
            needs = set(node.inputs) - ready
            waiting.append(len(needs))
            for name in needs:
                readers.setdefault(name, []).append(index)
        heap = [index for index, count in enumerate(waiting) if count == 0]
        ordered = []
        while heap:
            node = self.nodes[heapq.heappop(heap)]
            ordered.append(node)
            for out in node.outputs:
                for index in readers.pop(out, ()):
                    waiting[index] -= 1
                    if waiting[index] == 0:
                        heapq.heappush(heap, index)
        if len(ordered) < len(self.nodes):
            stuck = [n.name for n, count in zip(self.nodes, waiting) if count]
            raise ModelFormatError(f'graph {self.name!r} has a cycle through nodes {stuck[:5]}')
        self.nodes = ordered

    def prune(self) -> int:
        """Remove nodes whose outputs nobody reads; drop unused weights. Returns nodes removed."""
        needed, kept = set(self.outputs), []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.outputs):
                kept.append(node)
                needed.update(i for i in node.inputs if i)
        removed = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        self.weights = {k: v for k, v in self.weights.items() if k in needed}
        live = needed | set(self.inputs) | {o for n in self.nodes for o in n.outputs}
        self.values = {k: v for k, v in self.values.items() if k in live}
        return removed

    def summary(self) -> dict:
        """Counts of node types, for logs and `tx2-infer inspect`."""
        counts = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return counts
