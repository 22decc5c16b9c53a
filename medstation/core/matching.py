"""Optimal one-to-one matching (the Hungarian algorithm), for linking lesions across timepoints.

``assign(cost)`` solves the rectangular assignment problem exactly (Jonker-Volgenant
style shortest augmenting paths, O(n^2 m)); ``match(cost, max_cost)`` keeps only the
pairs cheaper than ``max_cost`` (a lesion too far from every other is new or gone).
Pure numpy: SciPy is not a dependency of this project.
"""

from __future__ import annotations

import numpy as np


def assign(cost) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of minimal total cost, one per row of the smaller side."""
    c = np.asarray(cost, dtype=float)
    if c.ndim != 2:
        raise ValueError("cost must be a 2D array")
    if c.size == 0:
        return []
    if not np.all(np.isfinite(c)):
        big = np.nanmax(np.where(np.isfinite(c), np.abs(c), 0)) * (c.shape[0] + c.shape[1]) + 1.0
        c = np.where(np.isfinite(c), c, big)
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape  # n <= m
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)  # p[j]: row (1-based) matched to column j; 0 = free
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = c[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(b, a) for a, b in pairs]
    return sorted(pairs)


def match(cost, max_cost: float) -> list[tuple[int, int]]:
    """The optimal pairs whose cost is below ``max_cost``."""
    c = np.asarray(cost, dtype=float)
    return [(i, j) for i, j in assign(c) if c[i, j] < max_cost]
