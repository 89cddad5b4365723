"""Static memory planner: value lifetimes to byte offsets in one arena.

``plan_memory(graph)`` is a pure, device-free function::

    lifetimes ─▶ concat placement ─▶ in-place aliases ─▶ blocks ─▶ offsets (arena_packing)

Steps: graph inputs are born at step 0, node ``i`` runs at step ``i + 1`` and graph outputs live
to step ``len(nodes) + 1``. A value lives on the closed interval [birth step, last-use step].

A *block* is a run of memory whose members are placed together: a placed Concat output with its
inputs laid out as slices (``output offset + prefix bytes``, so producers write straight into
their slice and the Concat node is not executed), and in-place chains (an elementwise op writing
over an input that dies at that op). Blocks start 256-byte aligned; a placed input is aligned to
``PLACEMENT_ALIGNMENT`` bytes at least (the planner declines a concat whose slices are not).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tx2_infer_core.arena_packing import assign_offsets, check_overlaps, peak_live
from tx2_infer_core.errors import MemoryPlanError
from tx2_infer_core.ops.traits import names

# Ops whose output element i depends only on input elements at i (broadcast inputs aside), so
# their output may overwrite an input of the same shape that dies at the op (``inplace`` in
# ops/traits.py).
ELEMENTWISE_OPS = names(inplace=True)
# Byte alignment of every arena block (the planner's, the engine's and the CUDA backend's).
ALIGNMENT = 256
# A concat input is placed only if its slice offset is a multiple of this (vector loads).
PLACEMENT_ALIGNMENT = 16


@dataclass
class MemoryPlan:
    """Where every activation lives in one arena, and how good the packing is."""

    offsets: dict
    arena_bytes: int
    lower_bound: int
    naive_bytes: int
    alignment: int = ALIGNMENT
    inplace: dict = field(default_factory=dict)
    placed_concats: list = field(default_factory=list)

    def report(self) -> str:
        """One line: arena vs lower bound vs naive sum, in MiB."""
        mib = 1 << 20
        ratio = self.arena_bytes / self.lower_bound if self.lower_bound else 1.0
        return (f'arena {self.arena_bytes / mib:.2f} MiB, lower bound '
                f'{self.lower_bound / mib:.2f} MiB ({ratio:.3f}x), '
                f'naive {self.naive_bytes / mib:.2f} MiB')

    def to_dict(self) -> dict:
        """A JSON-able dict (plain str/int/list/dict) for plan files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> 'MemoryPlan':
        """Inverse of ``to_dict``; a missing or unknown key raises ``MemoryPlanError``."""
        names = {f for f in cls.__dataclass_fields__}
        missing, unknown = names - set(d), set(d) - names
        if missing or unknown:
            raise MemoryPlanError(f'memory plan dict: missing keys {sorted(missing)}, '
                                  f'unknown keys {sorted(unknown)}')
        return cls(offsets={str(k): int(v) for k, v in d['offsets'].items()},
                   arena_bytes=int(d['arena_bytes']), lower_bound=int(d['lower_bound']),
                   naive_bytes=int(d['naive_bytes']), alignment=int(d['alignment']),
                   inplace={str(k): str(v) for k, v in d['inplace'].items()},
                   placed_concats=[str(n) for n in d['placed_concats']])


def align(nbytes: int, alignment: int) -> int:
    """``nbytes`` rounded up to a multiple of ``alignment``."""
    return -(-int(nbytes) // alignment) * alignment


def lifetimes(graph) -> dict:
    """Map every activation name -> [birth step, last-use step] (see the module docstring)."""
    life = {name: [0, 0] for name in graph.inputs if not graph.is_constant(name)}
    for step, node in enumerate(graph.nodes, 1):
        for name in node.inputs:
            if not name or graph.is_constant(name):
                continue
            if name not in life:
                raise MemoryPlanError(f"node '{node.name}' reads '{name}' before it is produced"
                                      ' (nodes must be topologically ordered)')
            life[name][1] = step
        for name in node.outputs:
            if name in life:
                raise MemoryPlanError(f"value '{name}' is produced twice (node '{node.name}')")
            if name:
                life[name] = [step, step]
    for name in graph.outputs:
        if name in life:
            life[name][1] = len(graph.nodes) + 1
        elif not graph.is_constant(name):
            raise MemoryPlanError(f"graph output '{name}' is produced by no node")
    for name in life:
        shape = graph.values[name].shape if name in graph.values else None
        if shape is None or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
            raise MemoryPlanError(f"value '{name}' has no static shape in graph.values "
                                  f'(got {shape}); fix shapes before planning memory')
    return life


def concat_slices(node, graph) -> list:
    """[(input, prefix bytes)] if ``node`` is a Concat contiguous per input, else None."""
    out = graph.values.get(node.outputs[0]) if len(node.outputs) == 1 else None
    if node.op != 'Concat' or out is None or 'axis' not in node.attrs:
        return None
    axis = node.attrs['axis'] % len(out.shape) if out.shape else 0
    if not out.shape or any(d != 1 for d in out.shape[:axis]):
        return None
    names, prefix, slices = node.inputs, 0, []
    if '' in names or any(n not in graph.values for n in names):
        return None
    for name in names:
        if graph.values[name].dtype != out.dtype or prefix % PLACEMENT_ALIGNMENT:
            return None
        slices.append((name, prefix))
        prefix += graph.values[name].nbytes
    return slices if prefix == out.nbytes else None


def _place_concats(graph) -> tuple:
    """Choose the Concats to place. Returns ({input: (concat output, prefix)}, [node names])."""
    producers, consumers = graph.producers(), graph.consumers()
    inputs, parent, placed = set(graph.inputs), {}, []
    for node in graph.nodes:
        slices = concat_slices(node, graph)
        if slices is None or len({n for n, _ in slices}) != len(slices):
            continue
        names = [n for n, _ in slices]
        if any(n in inputs or n not in producers or n in parent for n in names):
            continue
        if any(sum(c.op == 'Concat' for c in consumers[n]) > 1 for n in names):
            continue
        parent.update({n: (node.outputs[0], prefix) for n, prefix in slices})
        placed.append(node.name)
    return parent, placed


class _Blocks:
    """Union of values into blocks: each value has a parent (value, byte offset) or is a root.

    ``root`` and ``relative`` are memoised (a long in-place chain is walked once, not once per
    link): ``alias`` only ever hangs a value that has no children yet under another, so the
    answers already given stay true.
    """

    def __init__(self, life, parent):
        self.parent = dict(parent)
        self.parents_of = {up for up, _ in self.parent.values()}
        self._where = {}
        self.span = {}
        for name, (start, end) in life.items():
            root = self.root(name)
            lo, hi = self.span.get(root, (start, end))
            self.span[root] = (min(lo, start), max(hi, end))

    def _locate(self, name):
        """(root, byte offset from the root) of ``name``, walking each link once overall."""
        path = []
        while name in self.parent and name not in self._where:
            path.append(name)
            name = self.parent[name][0]
        root, offset = self._where.get(name, (name, 0))
        for link in reversed(path):
            offset += self.parent[link][1]
            self._where[link] = (root, offset)
        return root, offset

    def root(self, name):
        return self._locate(name)[0]

    def relative(self, name):
        return self._locate(name)[1]

    def alias(self, out, over, end):
        if out in self.parents_of:          # not the planner's use; keep the memo honest
            self._where.clear()
        root = self.root(over)
        self.parent[out] = (over, 0)
        self.parents_of.add(over)
        self._where.pop(out, None)
        self.span.pop(out)
        self.span[root] = (self.span[root][0], max(self.span[root][1], end))


def _inplace_target(node, step, graph, blocks, placed):
    """The input ``node`` may overwrite, or None (see ``ELEMENTWISE_OPS``)."""
    outs = [o for o in node.outputs if o]
    if node.op not in ELEMENTWISE_OPS or len(outs) != 1 or outs[0] in placed:
        return None
    out = graph.values[outs[0]]
    io = set(graph.inputs) | set(graph.outputs)
    roots = [blocks.root(n) for n in node.inputs if n and not graph.is_constant(n)]
    for name in dict.fromkeys(node.inputs):
        if not name or graph.is_constant(name) or name in io or name in placed:
            continue
        value, root = graph.values[name], blocks.root(name)
        if value.shape != out.shape or value.nbytes != out.nbytes:
            continue
        if blocks.span[root][1] == step and roots.count(root) == node.inputs.count(name):
            return name
    return None


def _alias_inplace(graph, life, blocks, placed) -> dict:
    """Alias outputs of elementwise ops onto a dying input; returns {output: input}."""
    inplace = {}
    for step, node in enumerate(graph.nodes, 1):
        target = _inplace_target(node, step, graph, blocks, placed)
        if target is not None:
            out = next(o for o in node.outputs if o)
            inplace[out] = target
            blocks.alias(out, target, life[out][1])
    return inplace


def plan_memory(graph, alignment=ALIGNMENT, inplace=True, concat_placement=True,
                views=None) -> MemoryPlan:
    """Plan one arena for every activation of ``graph`` (see the module docstring).

    ``views`` ({value: parent value}) are values a backend stores inside their parent (an
    NHWC channel slice, see ``cuda/placement.py``): they get the parent's offset and keep
    the parent's storage alive while they live; neither side is ever written in place.
    """
    life = lifetimes(graph)
    parent, placed_concats = _place_concats(graph) if concat_placement else ({}, [])
    views = dict(views or {})
    parent.update({name: (up, 0) for name, up in views.items()})
    blocks = _Blocks(life, parent)
    held = set(parent) | set(views.values())
    aliases = _alias_inplace(graph, life, blocks, held) if inplace else {}
    roots = list(blocks.span)
    starts = np.array([blocks.span[r][0] for r in roots], dtype=np.int64)
    ends = np.array([blocks.span[r][1] for r in roots], dtype=np.int64)
    sizes = np.array([align(graph.values[r].nbytes, alignment) for r in roots], dtype=np.int64)
    root_offsets, arena = assign_offsets(starts, ends, sizes)
    where = dict(zip(roots, root_offsets.tolist()))
    offsets = {n: where[blocks.root(n)] + blocks.relative(n) for n in life}
    naive = sum(align(graph.values[n].nbytes, alignment) for n in life)
    return MemoryPlan(offsets=offsets, arena_bytes=int(arena),
                      lower_bound=peak_live(starts, ends, sizes), naive_bytes=naive,
                      alignment=alignment, inplace=aliases, placed_concats=placed_concats)


def _placement_parents(graph, plan) -> dict:
    """{placed input: concat output}, checking every slice sits where its Concat says."""
    placed, parent = set(plan.placed_concats), {}
    for node in graph.nodes:
        if node.name not in placed:
            continue
        slices = concat_slices(node, graph)
        if slices is None:
            raise MemoryPlanError(f"placed concat '{node.name}' is not contiguous per input")
        base = plan.offsets[node.outputs[0]]
        for name, prefix in slices:
            if plan.offsets[name] != base + prefix:
                raise MemoryPlanError(f"'{name}' is not at its slice of placed concat "
                                      f"'{node.name}' (offset {plan.offsets[name]}, "
                                      f'expected {base + prefix})')
            parent[name] = node.outputs[0]
    return parent


def _check_inplace(graph, plan, life) -> None:
    for out, over in plan.inplace.items():
        if plan.offsets[out] != plan.offsets[over] or life[over][1] != life[out][0]:
            raise MemoryPlanError(f"in-place '{out}' over '{over}': not the same offset, or "
                                  f"'{over}' is still read after '{out}' is written")


def check_plan(graph, plan) -> None:
    """Raise ``MemoryPlanError`` unless ``plan`` is a safe memory plan for ``graph``.

    Checks: every activation (and no constant) has an offset inside the arena, unplaced values
    are aligned, placed concat inputs sit at their slices, in-place pairs share an offset, and no
    two values live at the same step share bytes unless one aliases the other by design.
    """
    life = lifetimes(graph)
    names = list(life)
    missing = [n for n in names if n not in plan.offsets]
    extra = [n for n in plan.offsets if n not in life]
    if missing or extra:
        raise MemoryPlanError(f'memory plan: no offset for {missing[:5]}; offsets for values that'
                              f' are not activations {extra[:5]}')
    parent = _placement_parents(graph, plan)
    _check_inplace(graph, plan, life)
    for name in names:
        offset, nbytes = plan.offsets[name], graph.values[name].nbytes
        if offset < 0 or offset + nbytes > plan.arena_bytes:
            raise MemoryPlanError(f"'{name}' [{offset}, {offset + nbytes}) is outside the arena "
                                  f'of {plan.arena_bytes} bytes')
        if name not in parent and offset % plan.alignment:
            raise MemoryPlanError(f"'{name}' offset {offset} is not {plan.alignment}-aligned")
    allowed = {frozenset(pair) for pair in plan.inplace.items()}
    for name in parent:
        up = name
        while up in parent:
            up = parent[up]
            allowed.add(frozenset((name, up)))
    check_overlaps(names, [life[n] for n in names], [plan.offsets[n] for n in names],
                   [graph.values[n].nbytes for n in names], allowed)
