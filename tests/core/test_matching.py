"""The Hungarian algorithm against brute force."""

from __future__ import annotations

import itertools

import numpy as np

from medstation.core.matching import assign, match


def brute(c):
    n, m = c.shape
    best = None
    if n <= m:
        for cols in itertools.permutations(range(m), n):
            total = sum(c[i, j] for i, j in enumerate(cols))
            best = total if best is None or total < best else best
    else:
        for rows in itertools.permutations(range(n), m):
            total = sum(c[i, j] for j, i in enumerate(rows))
            best = total if best is None or total < best else best
    return best


def test_optimal_on_random_square_and_rectangular_matrices():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 3), (5, 5), (2, 5), (5, 2), (4, 6), (6, 3)]:
        for _ in range(20):
            c = rng.uniform(0, 10, shape)
            pairs = assign(c)
            assert len(pairs) == min(shape)
            assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
            assert abs(sum(c[i, j] for i, j in pairs) - brute(c)) < 1e-9


def test_greedy_is_not_optimal_but_this_is():
    c = np.array([[1.0, 2.0], [1.5, 10.0]])  # greedy takes (0, 0) then pays 10
    assert assign(c) == [(0, 1), (1, 0)]


def test_a_threshold_leaves_far_lesions_unmatched_and_infinite_costs_are_forbidden():
    c = np.array([[1.0, 50.0], [50.0, 40.0]])
    assert match(c, 20.0) == [(0, 0)]
    assert assign(np.array([[np.inf, 1.0], [2.0, np.inf]])) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 3))) == []
