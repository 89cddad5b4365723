"""Minimum-cost assignment (the Hungarian algorithm) for the tracker's matching step.

scipy is not a dependency, so this is the classic O(n^2 m) shortest-augmenting-path form with
row and column potentials (Kuhn-Munkres as in Jonker-Volgenant), with the inner column scan done
by numpy, and the runs of rows whose best column is still free assigned in one numpy step.
``linear_sum_assignment`` returns what scipy's function of that name returns; ``match`` skips
it when its answer is forced (``forced_pairs``).

``match_lists`` runs the same steps in plain Python on a small matrix (a list of rows): the
same arithmetic in the same order, so the same assignment, ties included, without numpy's
per-call cost (the tracker's matrices are a few rows, and its calls often come with cold
caches). Its callers may drop columns (of the oriented problem, rows <= columns) that hold
only the matrix's largest value beyond the first ``rows`` of them: such columns are alike
(the same reduced costs, the same labels) until one is reached, a search reaches the first
of them, and each row reaches at most one, so the others are never touched.
"""
import math

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
    if not np.isfinite(cost).all():
        raise ValueError('cost holds NaN or infinity')
    if cost.shape[0] > cost.shape[1]:
        cols, rows = _assign_rows(cost.T)
        order = rows.argsort()
        return rows[order], cols[order]
    return _assign_rows(cost)


def _assign_rows(cost):
    """Assign every row of ``cost`` (rows <= columns) to a distinct column."""
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: 1-based row of column j, 0 = free
    row = 1
    while row <= n:
        row = _one_step_rows(cost, row, u, v, owner)
        if row <= n:
            way = _augmenting_path(cost, row, u, v, owner)
            _augment(owner, way)
            row += 1
    cols = owner[1:].nonzero()[0]
    rows = owner[1:][cols] - 1
    order = rows.argsort()
    return rows[order], cols[order]


def _one_step_rows(cost, first, u, v, owner):
    """Assign at once the rows from ``first`` on whose path is one step; returns the first
    row that needs ``_augmenting_path``.

    A row's path is one step when the least column of its reduced costs (the first one on a
    tie) is free: ``_augmenting_path`` then gives it that column, adds that reduced cost to
    its potential and changes no column potential but the unused ``v[0]``. So these rows
    are done together, with the same arithmetic, until the first one whose column is owned
    (by an earlier row, maybe one of this run)."""
    reduced = cost[first - 1:] - u[first:, None] - v[1:]
    cols = reduced.argmin(axis=1)
    owned, k = (owner[1:] != 0).tolist(), 0
    for col in cols.tolist():
        if owned[col]:
            break
        owned[col] = True
        k += 1
    owner[cols[:k] + 1] = np.arange(first, first + k)
    u[first:first + k] += reduced[np.arange(k), cols[:k]]
    return first + k


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
    rows, cols = match_arrays(cost, max_cost)
    row_free, col_free = np.ones(n, bool), np.ones(m, bool)
    row_free[rows], col_free[cols] = False, False
    return (list(zip(rows.tolist(), cols.tolist())), np.flatnonzero(row_free).tolist(),
            np.flatnonzero(col_free).tolist())


def match_arrays(cost, max_cost):
    """``match`` as two int arrays: the matched rows (ascending) and their columns.

    The full assignment of ``cost`` is solved, then its pairs costing more than ``max_cost``
    are dropped. Two shortcuts give the same answer: a single row or column is assigned its
    least entry (the first on a tie, as ``linear_sum_assignment`` does), and
    ``forced_pairs`` answers the common tracking case without the Hungarian.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f'cost must be a 2-D matrix, got shape {cost.shape}')
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n, m = cost.shape
    if min(n, m) == 1:  # one row or column: its least entry (the first on a tie)
        if not np.isfinite(cost).all():
            raise ValueError('cost holds NaN or infinity')
        least = int(cost.argmin())
        rows, cols = np.array([least // m]), np.array([least % m])
    else:
        forced = forced_pairs(cost, max_cost)
        if forced is not None:
            return forced
        rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= max_cost
    return rows[keep], cols[keep]


def forced_pairs(cost, max_cost, rel_margin=1e-9):
    """The pairs of ``match_arrays`` found without the Hungarian, or None when unsure.

    The answer is the set of candidates (entries <= ``max_cost``) when every candidate
    (i, j) is in every optimal assignment. That holds when it beats any swap with margin:
    c[i, j] + max(c) < second(row i) + second(column j), "second" the second least entry
    (max(c) for a lone one): swapping (i, j') and (i', j) for (i, j) and (i', j') then
    always lowers the total, and (i, j) is the least of its row and of its column (were it
    not, its row's second least would be <= c[i, j] and the test fail). "At most one
    candidate per row and column" alone is not enough: the assignment may prefer two
    entries just over ``max_cost`` to one under it. Raises ``ValueError`` on NaN or
    infinity, as ``linear_sum_assignment`` does.
    """
    top, bottom = float(cost.max()), float(cost.min())
    if not math.isfinite(top - bottom):
        raise ValueError('cost holds NaN or infinity')
    rows, cols = (cost <= max_cost).nonzero()
    if len(rows) == 0:
        return rows, cols
    n, m = cost.shape
    row_second = np.sort(cost, axis=1)[rows, 1] if m > 1 else top
    col_second = np.sort(cost, axis=0)[1, cols] if n > 1 else top
    margin = rel_margin * max(1.0, top, -bottom)
    if (cost[rows, cols] + top < row_second + col_second - margin).all():
        return rows, cols
    return None


SMALL_ENTRIES = 256  # ``match_lists`` runs plain Python up to this many entries, numpy above


def match_lists(cost, max_cost):
    """``match_arrays`` of a matrix given as a list of rows of finite floats -> the matched
    (row, col) pairs, by row; plain Python on a small matrix (see the module)."""
    if not cost or not cost[0]:
        return []
    if len(cost) * len(cost[0]) > SMALL_ENTRIES:
        rows, cols = match_arrays(np.array(cost), max_cost)
        return list(zip(rows.tolist(), cols.tolist()))
    if len(cost) <= len(cost[0]):
        pairs = _assign_rows_lists(cost)
    else:
        pairs = sorted((r, c) for c, r in _assign_rows_lists([list(c) for c in zip(*cost)]))
    return [(r, c) for r, c in pairs if cost[r][c] <= max_cost]


def _assign_rows_lists(cost):
    """``_assign_rows`` in plain Python: (row, col) pairs, by row."""
    n, m = len(cost), len(cost[0])
    u, v, owner = [0.0] * n, [0.0] * m, [-1] * m  # owner[j]: row of column j, -1 = free
    for row in range(n):
        reduced = [c - u[row] - vj for c, vj in zip(cost[row], v)]
        col = reduced.index(min(reduced))  # the first least, as argmin
        if owner[col] < 0:  # ``_one_step_rows``' case
            owner[col] = row
            u[row] += reduced[col]
        else:
            _augment_lists(owner, row, *_augmenting_path_lists(cost, row, u, v, owner))
    return sorted((r, j) for j, r in enumerate(owner) if r >= 0)


def _augmenting_path_lists(cost, row, u, v, owner):
    """``_augmenting_path`` in plain Python (column -1 is its virtual column 0) -> (way, the
    free column reached)."""
    m = len(v)
    minv, way, free, path = [math.inf] * m, [-1] * m, list(range(m)), []
    scanned, col = row, -1
    while True:
        costs, u_scanned, best, nxt = cost[scanned], u[scanned], math.inf, -1
        for j in free:  # ascending: the first least, as argmin
            reduced = costs[j] - u_scanned - v[j]
            if reduced < minv[j]:
                minv[j], way[j] = reduced, col
            if minv[j] < best:
                best, nxt = minv[j], j
        u[row] += best
        for j in path:
            u[owner[j]] += best
            v[j] -= best
        for j in free:
            minv[j] -= best
        if owner[nxt] < 0:
            return way, nxt
        free.remove(nxt)
        path.append(nxt)
        scanned, col = owner[nxt], nxt


def _augment_lists(owner, row, way, col):
    """Flip the alternating path from ``row`` that ends at free column ``col``."""
    while col >= 0:
        prev = way[col]
        owner[col] = owner[prev] if prev >= 0 else row
        col = prev
