"""One format per weight under a size budget: exact knapsack over a byte grid (spec 21.3).

Input: a table of ``n`` weights by ``m`` candidates, ``cost[i, j]`` in bytes
and ``err[i, j]`` the predicted error (``inf`` marks a candidate that does not
apply). The predicted error of a choice is the sum of its rows' errors.

The grid: ``unit = ceil(cap / grid)`` bytes, where ``cap`` is the budget (or,
for the curve and ``max_error``, the bytes of the costliest choice); each cost
is rounded *up* to whole units, ``c[i, j] = ceil(cost[i, j] / unit)``, so a
choice that fits in grid units fits in bytes. Dynamic programming over the
weights in table order::

    E_0[g] = 0                                   for g = 0..G
    E_i[g] = min_j E_{i-1}[g - c[i, j]] + err[i, j]   (over j with c[i, j] <= g)

``E_n[G]`` is the least predicted error within the budget. Ties: the
smallest ``j`` reaching the minimum (``numpy.argmin``), so the candidate
order (cheapest first) decides and the result is deterministic.
``max_error``: the smallest ``g`` with ``E_n[g] <= max_error``.

    >>> cost = np.array([[0, 10], [0, 10]]); err = np.array([[5.0, 1.0], [3.0, 2.0]])
    >>> allocate(cost, err, budget=10, grid=10).choice
    [1, 0]
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

__all__ = ["Allocation", "allocate", "size_curve", "parse_size", "DEFAULT_GRID"]

#: Grid steps of the byte axis (spec 21.3).
DEFAULT_GRID = 4096

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str | int | float, name: str = "size_budget") -> int:
    """Bytes of ``"8MB"`` (10**6), ``"8MiB"`` (2**20), ``"500KB"``, ``"1.5GB"`` or a plain number.

    >>> parse_size("8MB"), parse_size("1KiB"), parse_size(1000)
    (8000000, 1024, 1000)
    """
    if isinstance(text, bool):
        raise TypeError(f"{name} must be a size such as '8MB' or a number of bytes, got {text!r}")
    if isinstance(text, (int, float, np.integer, np.floating)):
        v = float(text)
    elif isinstance(text, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
        if m is None or m.group(2).upper() not in _UNITS:
            raise ValueError(f"{name} must be a size such as '8MB', '8MiB' or '500KB', got {text!r}")
        v = float(m.group(1)) * _UNITS[m.group(2).upper()]
    else:
        raise TypeError(f"{name} must be a size such as '8MB' or a number of bytes, got {type(text).__name__}")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive size, got {text!r}")
    return int(v)


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The chosen candidate index per weight, its bytes (exact, not gridded) and predicted error."""

    choice: list[int]
    bytes: int
    error: float


def _check(cost: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cost = np.asarray(cost, dtype=np.int64)
    err = np.asarray(err, dtype=np.float64)
    if cost.ndim != 2 or cost.shape != err.shape or cost.shape[1] == 0:
        raise ValueError(f"cost and err must be (n, m) tables of one shape, got {cost.shape} and {err.shape}")
    if (cost < 0).any() or np.isnan(err).any() or (err < 0).any():
        raise ValueError("cost must be >= 0 and err >= 0 (inf for a candidate that does not apply)")
    return cost, err


def _table(cost: np.ndarray, err: np.ndarray, cap: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """``(E_n, pick)``: the DP of the module docstring; ``pick[i, g]`` the candidate of row ``i`` at ``g``."""
    unit = max(1, -(-cap // grid))
    c = -(-cost // unit)  # (n, m) ceil
    g_max = cap // unit
    n, m = cost.shape
    e = np.zeros(g_max + 1)
    pick = np.zeros((n, g_max + 1), dtype=np.int32)
    for i in range(n):
        cand = np.full((m, g_max + 1), np.inf)
        for j in range(m):
            if c[i, j] <= g_max and np.isfinite(err[i, j]):
                cand[j, c[i, j]:] = e[: g_max + 1 - c[i, j]] + err[i, j]
        pick[i] = np.argmin(cand, axis=0)
        e = cand[pick[i], np.arange(g_max + 1)]
    return e, pick


def _trace(cost: np.ndarray, pick: np.ndarray, g: int, unit: int) -> list[int]:
    choice = [0] * pick.shape[0]
    for i in range(pick.shape[0] - 1, -1, -1):
        j = int(pick[i, g])
        choice[i] = j
        g -= int(-(-cost[i, j] // unit))
    return choice


def _result(cost: np.ndarray, err: np.ndarray, choice: list[int]) -> Allocation:
    rows = np.arange(len(choice))
    return Allocation(choice, int(cost[rows, choice].sum()), float(err[rows, choice].sum()))


def allocate(cost: np.ndarray, err: np.ndarray, *, budget: int | None = None, max_error: float | None = None,
             grid: int = DEFAULT_GRID) -> Allocation:
    """The least predicted error within ``budget`` bytes, or the fewest bytes whose error is <= ``max_error``.

    Exactly one of ``budget`` / ``max_error``. ``ValueError`` when nothing fits.
    """
    cost, err = _check(cost, err)
    if (budget is None) == (max_error is None):
        raise ValueError("give exactly one of budget and max_error")
    if budget is not None:
        cap = int(budget)
    else:
        cap = int(np.where(np.isfinite(err), cost, 0).max(axis=1).sum())
    unit = max(1, -(-cap // grid))
    e, pick = _table(cost, err, cap, grid)
    if budget is not None:
        if not np.isfinite(e[-1]):
            cheapest = int(np.where(np.isfinite(err), cost, np.iinfo(np.int64).max).min(axis=1).sum())
            raise ValueError(f"size budget of {budget:,} bytes for the quantized weights is below the smallest "
                             f"choice ({cheapest:,} bytes)")
        return _result(cost, err, _trace(cost, pick, len(e) - 1, unit))
    ok = np.flatnonzero(e <= float(max_error))  # type: ignore[arg-type]
    if not ok.size:
        raise ValueError(f"max_error {max_error!r} is below the smallest predicted error {float(e[-1]):.6g}")
    return _result(cost, err, _trace(cost, pick, int(ok[0]), unit))


def size_curve(cost: np.ndarray, err: np.ndarray, *, grid: int = DEFAULT_GRID, points: int = 64
               ) -> list[tuple[int, float]]:
    """``(bytes, least predicted error)`` of the allocation at ``points`` budgets from the cheapest to the
    costliest choice: the size/error curve of the search (its steps where the error drops)."""
    cost, err = _check(cost, err)
    cap = int(np.where(np.isfinite(err), cost, 0).max(axis=1).sum())
    unit = max(1, -(-cap // grid))
    e, pick = _table(cost, err, cap, grid)
    out: list[tuple[int, float]] = []
    finite = np.flatnonzero(np.isfinite(e))
    for g in np.unique(np.linspace(finite[0], len(e) - 1, points).round().astype(int)):
        a = _result(cost, err, _trace(cost, pick, int(g), unit))
        if not out or a.error < out[-1][1]:
            out.append((a.bytes, a.error))
    return out
