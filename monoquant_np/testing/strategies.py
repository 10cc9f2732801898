"""Hypothesis strategies for quantization tests, valid by construction (spec section 12.7.1).

Every strategy here draws only inputs the spec accepts: finite weights whose
scales fit the drawn scale dtype, group sizes >= 1, axes inside the shape.
Weights are built group by group, each group of one *kind*:

==============  ==============================================================
kind            values of the group
==============  ==============================================================
``normal``      ``N(0, 1) * 10**u``, ``u`` uniform in ``[-3, 3]``
``zeros``       all ``0.0`` (scale 0, every code the zero point)
``spike``       ``N(0, 1e-3)`` plus one element ``+-100`` per lane
``ties``        ``(k + 0.5) * 2**e`` and one ``+-7 * 2**e``: ``w / s`` lands
                exactly on ``.5`` for the symmetric scale ``s = 2**e``
``f16_limits``  drawn from ``+-65504``, ``+-6.1035e-05`` (smallest normal),
                ``+-5.96e-08`` (smallest subnormal), ``0``
``denormals``   float32 subnormals ``+-k * 2**-149`` and zeros
``constant``    one value repeated (symmetric: every code 7 or -7)
==============  ==============================================================

The numbers are produced by NumPy from a drawn seed (fast for large arrays);
the structure (shape, axis, group size, scheme, kinds) is drawn by hypothesis
and shrinks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..groups import n_groups

__all__ = [
    "KINDS",
    "Case",
    "shapes",
    "axes",
    "group_sizes",
    "schemes",
    "scale_dtypes",
    "weights",
    "cases",
    "matmul_inputs",
]

#: Group kinds :func:`weights` draws from (table in the module docstring).
KINDS = ("normal", "zeros", "spike", "ties", "f16_limits", "denormals", "constant")
#: float16 landmarks: largest finite, smallest normal, smallest subnormal.
F16_LIMITS = np.array([65504.0, 6.103515625e-05, 5.960464477539063e-08, 0.0], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Case:
    """One quantization problem: ``quantize(w, group_size=, axis=, symmetric=, scale_dtype=)``."""

    w: np.ndarray
    group_size: int
    axis: int
    symmetric: bool
    scale_dtype: np.dtype
    kinds: tuple[str, ...]

    @property
    def scheme(self) -> str:
        return "int4" if self.symmetric else "uint4"

    def describe(self) -> str:
        return (
            f"shape={self.w.shape} axis={self.axis} group_size={self.group_size} {self.scheme} "
            f"scale={np.dtype(self.scale_dtype).name} kinds={','.join(self.kinds)}"
        )


def shapes(*, min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 64) -> st.SearchStrategy:
    """Tuples of ``min_dims..max_dims`` sizes in ``min_side..max_side`` (odd sizes included)."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def axes(ndim: int) -> st.SearchStrategy:
    """Axes ``0..ndim-1`` of an ``ndim``-D weight."""
    return st.integers(0, ndim - 1)


def group_sizes(choices: Sequence[int] | None = None) -> st.SearchStrategy:
    """Group sizes: the given ones, or powers of two 16..128 and any size 1..80 (partial groups)."""
    if choices is not None:
        return st.sampled_from(tuple(choices))
    return st.one_of(st.sampled_from((16, 32, 64, 128)), st.integers(1, 80))


def schemes(choices: Sequence[str] = ("int4", "uint4")) -> st.SearchStrategy:
    """``"int4"`` (symmetric) or ``"uint4"`` (asymmetric)."""
    return st.sampled_from(tuple(choices))


def scale_dtypes(choices: Sequence[Any] = (np.float32, np.float16)) -> st.SearchStrategy:
    """Scale storage dtypes."""
    return st.sampled_from(tuple(np.dtype(c) for c in choices))


def _group_values(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 values of one group of ``kind``, shape ``(group_len, lanes)``."""
    rows, lanes = shape
    if kind == "normal":
        return (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3)).astype(np.float32)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "spike":
        v = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = rng.choice([-100.0, 100.0], lanes)
        return v
    if kind == "ties":
        s = np.float32(2.0 ** int(rng.integers(-4, 5)))
        v = (rng.integers(-7, 7, shape) + np.float32(0.5)) * s  # exactly k + 0.5 steps
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = rng.choice([-7.0, 7.0], lanes) * s
        return v.astype(np.float32)
    if kind == "f16_limits":
        return (rng.choice(F16_LIMITS, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)
    if kind == "denormals":
        tiny = np.float32(2.0**-149)
        return (rng.integers(-1000, 1000, shape) * rng.integers(0, 2, shape)).astype(np.float32) * tiny
    if kind == "constant":
        return np.full(shape, np.float32(rng.standard_normal()), np.float32)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


@st.composite
def weights(
    draw: Any,
    shape: tuple[int, ...],
    *,
    axis: int = 0,
    group_size: int = 32,
    kinds: Sequence[str] = KINDS,
) -> np.ndarray:
    """A float32 weight of ``shape`` whose groups along ``axis`` are each of one drawn kind.

    Returns the array; its ``kinds`` (one per group) are drawn first and shrink
    towards ``kinds[0]``.
    """
    return _weights_with_kinds(draw, shape, axis, group_size, tuple(kinds))[0]


def _weights_with_kinds(
    draw: Any, shape: tuple[int, ...], axis: int, group_size: int, kinds: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    length = shape[axis]
    ng = max(n_groups(length, group_size), 1)
    chosen = tuple(draw(st.lists(st.sampled_from(kinds), min_size=ng, max_size=ng)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lanes = int(np.prod(shape)) // length if length else 0
    moved = np.zeros((length, lanes), np.float32)  # (L, lanes): the grouped axis first
    for g in range(n_groups(length, group_size)):
        g0, g1 = g * group_size, min((g + 1) * group_size, length)
        moved[g0:g1] = _group_values(chosen[g], rng, (g1 - g0, lanes))
    other = shape[:axis] + shape[axis + 1 :]
    w = np.moveaxis(moved.reshape((length,) + other), 0, axis)  # shape
    return np.ascontiguousarray(w), chosen


@st.composite
def cases(
    draw: Any,
    *,
    ndims: Sequence[int] = (1, 2, 3),
    axes_: Sequence[int] | None = None,
    group_sizes_: Sequence[int] | None = None,
    schemes_: Sequence[str] = ("int4", "uint4"),
    scale_dtypes_: Sequence[Any] = (np.float32, np.float16),
    kinds: Sequence[str] = KINDS,
    max_side: int = 64,
    min_side: int = 1,
) -> Case:
    """A :class:`Case`: shape, axis, group size, scheme, scale dtype and a weight built for them.

    The keyword arguments restrict what is drawn (a backend's capabilities).
    ``f16_limits`` groups are drawn only when the scale dtype can hold their
    scales (always: ``65504 / 7`` and ``2 * 65504 / 15`` fit float16).
    """
    ndim = draw(st.sampled_from(tuple(ndims)))
    shape = draw(shapes(min_dims=ndim, max_dims=ndim, min_side=min_side, max_side=max_side))
    axis = draw(st.sampled_from(tuple(a for a in (axes_ if axes_ is not None else range(ndim)) if a < ndim)))
    gs = draw(group_sizes(group_sizes_))
    scheme = draw(schemes(schemes_))
    sdt = draw(scale_dtypes(scale_dtypes_))
    w, chosen = _weights_with_kinds(draw, shape, axis, gs, tuple(kinds))
    return Case(w=w, group_size=gs, axis=axis, symmetric=scheme == "int4", scale_dtype=sdt, kinds=chosen)


@st.composite
def matmul_inputs(draw: Any, k: int, *, max_rows: int = 4) -> np.ndarray:
    """float32 activations ``(M, k)`` for a dequantizing matmul, ``M`` in ``1..max_rows``."""
    m = draw(st.integers(1, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal((m, k)).astype(np.float32)
