"""Packing blocks with lifetimes into one arena: pure numpy functions, no graph.

A block ``i`` is alive on the closed step interval [``starts[i]``, ``ends[i]``] and needs
``sizes[i]`` bytes (already aligned by the caller). ``assign_offsets`` gives every block a byte
offset so that no two blocks alive at one step share bytes, aiming at the lower bound
``peak_live`` (the most bytes alive at one step). ``check_overlaps`` is the independent check.
"""
import heapq

import numpy as np

from tx2_infer_core.errors import MemoryPlanError


def live_bytes(starts, ends, sizes) -> np.ndarray:
    """Total size of the blocks alive at each step."""
    delta = np.zeros(int(ends.max(initial=0)) + 2, dtype=np.int64)
    np.add.at(delta, starts, sizes)
    np.add.at(delta, ends + 1, -sizes)
    return np.cumsum(delta)


def peak_live(starts, ends, sizes) -> int:
    """Largest total size of blocks alive at one step (the arena's lower bound)."""
    return int(live_bytes(starts, ends, sizes).max())


def _fit(busy, size, best_fit) -> int:
    """Lowest (or, if ``best_fit``, tightest) free offset for ``size`` bytes.

    ``busy`` is a list of (low, high) byte ranges sorted by ``low``.
    """
    offset, choice, slack = 0, None, None
    for low, high in busy:
        free = low - offset
        if free >= size:
            if not best_fit:
                return offset
            if choice is None or free < slack:
                choice, slack = offset, free
        offset = max(offset, high)
    return offset if choice is None else choice


def _fit_many(lows, highs, size, best_fit) -> int:
    """``_fit`` for many busy ranges at once (numpy); ``lows`` sorted, ``highs`` alike."""
    gap_starts = np.concatenate(([0], np.maximum.accumulate(highs)))
    free = np.concatenate((lows, [np.iinfo(np.int64).max // 2])) - gap_starts
    fits = np.nonzero(free >= size)[0]
    return int(gap_starts[fits[np.argmin(free[fits])] if best_fit else fits[0]])


def _overlapping(starts, ends) -> list:
    """For each block, the sorted indices of the blocks alive at a step it is alive (itself
    included), by one sweep in birth order: time linear in the blocks plus the pairs found."""
    order = np.lexsort((ends, starts)).tolist()
    start_list, end_list = starts.tolist(), ends.tolist()
    near = [[i] for i in range(len(start_list))]
    alive = []                                      # heap of (end, index)
    for i in order:
        while alive and alive[0][0] < start_list[i]:
            heapq.heappop(alive)
        for _, j in alive:
            near[i].append(j)
            near[j].append(i)
        heapq.heappush(alive, (end_list[i], i))
    return [sorted(n) for n in near]


def _conflicts(starts, ends, many=64) -> list:
    """For each block, the blocks alive at a step it is alive: a list, or an array if many."""
    return [np.array(n, dtype=np.int64) if len(n) > many else n
            for n in _overlapping(starts, ends)]


def _greedy(conflicts, sizes, order, best_fit) -> tuple:
    """Place blocks one by one in ``order``; returns (offsets, arena bytes)."""
    offsets, placed = np.full(len(sizes), -1, dtype=np.int64), [None] * len(sizes)
    size_array = np.array(sizes, dtype=np.int64)
    for i in order:
        near = conflicts[i]
        if isinstance(near, list):
            busy = sorted((placed[j], placed[j] + sizes[j]) for j in near if placed[j] is not None)
            placed[i] = _fit(busy, sizes[i], best_fit)
        else:
            near = near[offsets[near] >= 0]
            near = near[np.argsort(offsets[near], kind='stable')]
            lows = offsets[near]
            placed[i] = _fit_many(lows, lows + size_array[near], sizes[i], best_fit)
        offsets[i] = placed[i]
    return placed, max(o + s for o, s in zip(placed, sizes))


def _orders(starts, ends, sizes) -> list:
    """A few greedy placement orders (the breadth order places busy steps' blocks first)."""
    lengths, live = ends - starts, live_bytes(starts, ends, sizes)
    breadth = np.array([live[s:e + 1].max() for s, e in zip(starts, ends)], dtype=np.int64)
    return [np.lexsort((starts, -sizes)),                  # biggest first
            np.lexsort((-sizes, -lengths)),                # longest-lived first
            np.lexsort((-sizes, starts)),                  # in birth order
            np.lexsort((starts, -sizes * (lengths + 1))),  # biggest area first
            np.lexsort((starts, -sizes, -breadth))]        # busiest steps first


def assign_offsets(starts, ends, sizes, budget=1_000_000) -> tuple:
    """Offsets for blocks with lifetimes [starts, ends]; returns (offsets, arena bytes).

    Best of a few greedy orders (first fit and best fit); then, while above the lower bound, a
    seeded search that tries random orders and swaps of two blocks in the best order so far,
    within ``budget`` (conflict checks plus 32 per block and order: well under a second).
    """
    if not len(sizes):
        return np.zeros(0, dtype=np.int64), 0
    bound, best = peak_live(starts, ends, sizes), None
    conflicts, size_list = _conflicts(starts, ends), sizes.tolist()
    for order in _orders(starts, ends, sizes):
        for best_fit in (True, False):
            offsets, arena = _greedy(conflicts, size_list, order.tolist(), best_fit)
            if best is None or arena < best[1]:
                best = offsets, arena, order.tolist()
            if arena == bound:
                return np.array(offsets, dtype=np.int64), arena
    rng = np.random.default_rng(0)
    run_cost = sum(len(c) for c in conflicts) + 32 * len(sizes)
    for attempt in range(min(2000, budget // run_cost)):
        if best[1] == bound:
            break
        order = rng.permutation(len(sizes)).tolist() if attempt % 2 else list(best[2])
        if attempt % 2 == 0:
            i, j = rng.integers(len(order), size=2)
            order[i], order[j] = order[j], order[i]
        offsets, arena = _greedy(conflicts, size_list, order, False)
        if arena <= best[1]:
            best = offsets, arena, order
    return np.array(best[0], dtype=np.int64), best[1]


def check_overlaps(names, lives, offsets, sizes, allowed) -> None:
    """Raise if two values alive at one step share bytes, unless ``{a, b}`` is in ``allowed``."""
    start, end = np.array(lives, dtype=np.int64).reshape(-1, 2).T
    low = np.array(offsets, dtype=np.int64)
    high = low + np.asarray(sizes, dtype=np.int64)
    for i, near in enumerate(_overlapping(start, end)):
        near = np.array(near, dtype=np.int64)
        near = near[(near > i) & (low[near] < high[i]) & (high[near] > low[i])]
        for j in near.tolist():
            if frozenset((names[i], names[j])) not in allowed:
                raise MemoryPlanError(
                    f"'{names[i]}' (steps {start[i]}-{end[i]}, bytes {low[i]}-{high[i]}) and "
                    f"'{names[j]}' (steps {start[j]}-{end[j]}, bytes {low[j]}-{high[j]}) "
                    'overlap in time and memory')
