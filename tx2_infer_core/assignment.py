"""Minimum-cost assignment (the Hungarian algorithm) for the tracker's matching step.

scipy is not a dependency, so this is the classic O(n^2 m) shortest-augmenting-path form with
row and column potentials (Kuhn-Munkres as in Jonker-Volgenant), with the inner column scan done
by numpy. ``linear_sum_assignment`` returns what scipy's function of that name returns.
"""
import numpy as np


def linear_sum_assignment(cost):
    """Rows and columns of a minimum-cost assignment of the 2-D ``cost`` matrix.

    Every row is assigned when rows <= columns, else every column; returns ``(rows, cols)``
    (int arrays, sorted by row) so that ``cost[rows, cols].sum()`` is minimal. Raises
    ``ValueError`` on a matrix that is not 2-D or holds NaN or infinity.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f'cost must be a 2-D matrix, got shape {cost.shape}')
    if not np.all(np.isfinite(cost)):
        raise ValueError('cost holds NaN or infinity')
    if cost.shape[0] > cost.shape[1]:
        cols, rows = _assign_rows(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    return _assign_rows(cost)


def _assign_rows(cost):
    """Assign every row of ``cost`` (rows <= columns) to a distinct column."""
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: 1-based row of column j, 0 = free
    for row in range(1, n + 1):
        way = _augmenting_path(cost, row, u, v, owner)
        _augment(owner, way)
    cols = np.nonzero(owner[1:])[0]
    rows = owner[1:][cols] - 1
    order = np.argsort(rows)
    return rows[order], cols[order]


def _augmenting_path(cost, row, u, v, owner):
    """Grow a shortest alternating path from ``row`` to a free column (Dijkstra on reduced
    costs), updating the potentials; returns the predecessor array ending at a free column
    stored as ``way[0]``."""
    m = cost.shape[1]
    owner[0] = row
    minv = np.full(m + 1, np.inf)
    used = np.zeros(m + 1, dtype=bool)
    way = np.zeros(m + 1, dtype=np.int64)
    col = 0
    while True:
        used[col] = True
        i = owner[col]
        reduced = cost[i - 1] - u[i] - v[1:]
        free = ~used[1:]
        better = free & (reduced < minv[1:])
        minv[1:][better] = reduced[better]
        way[1:][better] = col
        candidates = np.where(free, minv[1:], np.inf)
        nxt = int(np.argmin(candidates)) + 1
        delta = candidates[nxt - 1]
        u[owner[used]] += delta
        v[used] -= delta
        minv[1:][free] -= delta
        col = nxt
        if owner[col] == 0:
            way[0] = col
            return way


def _augment(owner, way):
    """Flip the alternating path that ends at free column ``way[0]``."""
    col = int(way[0])
    while col:
        prev = int(way[col])
        owner[col] = owner[prev]
        col = prev


def match(cost, max_cost):
    """Minimum-cost matching that keeps only pairs costing at most ``max_cost``.

    Returns ``(pairs, unmatched_rows, unmatched_cols)``: a list of (row, col) and two lists.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= max_cost
    pairs = [(int(r), int(c)) for r, c in zip(rows[keep], cols[keep])]
    matched_rows = {r for r, _ in pairs}
    matched_cols = {c for _, c in pairs}
    return (pairs, [r for r in range(n) if r not in matched_rows],
            [c for c in range(m) if c not in matched_cols])
