"""Spec 21.3: the budget allocation is the exact knapsack optimum on the byte grid, deterministic on ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from monoquant_np.onnx.mixed.allocation import allocate, parse_size, size_curve


def _brute(cost, err, budget):
    best = None
    for ch in itertools.product(*[range(cost.shape[1])] * cost.shape[0]):
        rows = np.arange(len(ch))
        b, e = cost[rows, ch].sum(), err[rows, ch].sum()
        if b <= budget and (best is None or e < best[1]):
            best = (b, e)
    return best


def test_hand_example():
    # two weights, candidates (0 bytes, 10 bytes); 10 bytes buy one upgrade: weight 0 gains 4, weight 1 gains 1
    cost = np.array([[0, 10], [0, 10]])
    err = np.array([[5.0, 1.0], [3.0, 2.0]])
    a = allocate(cost, err, budget=10, grid=10)
    assert a.choice == [1, 0] and a.bytes == 10 and a.error == 4.0
    assert allocate(cost, err, budget=20, grid=10).choice == [1, 1]
    assert allocate(cost, err, budget=9, grid=10).choice == [0, 0]


def test_ties_take_the_first_candidate():
    cost = np.array([[4, 4, 8]])
    err = np.array([[1.0, 1.0, 1.0]])
    assert allocate(cost, err, budget=8, grid=8).choice == [0]


@pytest.mark.parametrize("seed", range(12))
def test_equals_brute_force_when_the_grid_is_exact(seed):
    rng = np.random.default_rng(seed)
    cost = rng.integers(1, 30, size=(4, 3))
    err = rng.random((4, 3))
    budget = int(rng.integers(cost.min(1).sum(), cost.max(1).sum() + 1))
    a = allocate(cost, err, budget=budget, grid=budget)  # unit = 1 byte: exact
    b, e = _brute(cost, err, budget)
    assert a.bytes <= budget and a.error == pytest.approx(e)


@pytest.mark.parametrize("seed", range(6))
def test_coarse_grid_never_exceeds_the_budget(seed):
    rng = np.random.default_rng(100 + seed)
    cost = rng.integers(1000, 30000, size=(6, 4))
    err = rng.random((6, 4))
    budget = int(cost.min(1).sum() * 1.5)
    a = allocate(cost, err, budget=budget, grid=64)
    assert a.bytes <= budget
    assert a.error >= _brute(cost, err, budget)[1] - 1e-12


def test_max_error_is_the_dual():
    cost = np.array([[0, 10], [0, 10]])
    err = np.array([[5.0, 1.0], [3.0, 2.0]])
    assert allocate(cost, err, max_error=4.0, grid=20).choice == [1, 0]  # 10 bytes, error 4
    assert allocate(cost, err, max_error=8.0, grid=20).bytes == 0
    with pytest.raises(ValueError, match="max_error"):
        allocate(cost, err, max_error=2.0, grid=20)


def test_infeasible_budget_and_bad_tables():
    with pytest.raises(ValueError, match="below the smallest"):
        allocate(np.array([[5, 9]]), np.array([[1.0, 0.0]]), budget=4)
    with pytest.raises(ValueError, match="exactly one"):
        allocate(np.array([[5]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="shape"):
        allocate(np.array([[5, 1]]), np.array([[1.0]]), budget=4)
    a = allocate(np.array([[1, 2]]), np.array([[np.inf, 0.5]]), budget=2, grid=2)  # inf: not applicable
    assert a.choice == [1]


def test_curve_is_decreasing_and_ends_at_the_best():
    rng = np.random.default_rng(7)
    cost = rng.integers(1, 50, size=(5, 3))
    err = rng.random((5, 3))
    pts = size_curve(cost, err, grid=1000)
    assert all(b0 <= b1 and e0 > e1 for (b0, e0), (b1, e1) in zip(pts, pts[1:], strict=False))
    assert pts[-1][1] == pytest.approx(err.min(1).sum())


@pytest.mark.parametrize(("text", "n"), [("8MB", 8_000_000), ("8MiB", 8 << 20), ("1.5 kb", 1500), ("1e3", 1000),
                                         (4096, 4096), ("2GB", 2_000_000_000)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize(("bad", "exc"), [("8XB", ValueError), ("-1MB", ValueError), ("", ValueError),
                                          (0, ValueError), (True, TypeError), (None, TypeError)])
def test_parse_size_rejects(bad, exc):
    with pytest.raises(exc, match="size_budget"):
        parse_size(bad)
