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
``f32_underflow`` ``+-k * 2**-149``, ``k`` in ``0..3``, at least one non-zero per
                lane: the float32 scale rounds to 0 (spec 3.3)
``f16_boundary`` ``N(0, 1000)`` and one ``+-458639.96875`` per lane: the largest
                int4 group a float16 scale holds (65504, spec 3.4)
==============  ==============================================================

Two more strategies draw the inputs of other quantizers at their edges:
:func:`nf4_weights` (blocks whose absmax is a float32 subnormal, with exact
zeros, spec 10.2) and :func:`gguf_rows` (GGUF blocks of 32 whose ``d`` is
tiny, so that ``1/d`` overflows, or zero, spec 12.2).

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
    "SCHEME_BITS",
    "scale_dtypes",
    "weights",
    "cases",
    "matmul_inputs",
    "nf4_weights",
    "gguf_rows",
    "GGUF_KINDS",
]

#: Linear schemes :func:`cases` can draw and their code width (spec 1, 20): ``int*`` symmetric, ``uint*`` not.
SCHEME_BITS = {"int4": 4, "uint4": 4, "int2": 2, "uint2": 2, "int8": 8, "uint8": 8}
#: Group kinds :func:`weights` draws from (table in the module docstring).
KINDS = ("normal", "zeros", "spike", "ties", "f16_limits", "denormals", "constant", "f32_underflow", "f16_boundary")
#: The largest max|w_g| whose int4 scale float16 holds (spec 3.4): 458639.96875 / 7 -> 65519.996 -> 65504.
F16_BOUNDARY = np.float32(458639.96875)
#: float16 landmarks: largest finite, smallest normal, smallest subnormal.
F16_LIMITS = np.array([65504.0, 6.103515625e-05, 5.960464477539063e-08, 0.0], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Case:
    """One quantization problem: ``quantize(w, bits=, group_size=, axis=, symmetric=, scale_dtype=)``."""

    w: np.ndarray
    group_size: int
    axis: int
    symmetric: bool
    scale_dtype: np.dtype
    kinds: tuple[str, ...]
    bits: int = 4

    @property
    def scheme(self) -> str:
        return f"{'int' if self.symmetric else 'uint'}{self.bits}"

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
    """``"int4"`` (symmetric) or ``"uint4"`` (asymmetric), or others of :data:`SCHEME_BITS`."""
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
    if kind == "f32_underflow":
        v = (rng.integers(-3, 4, shape) * np.float64(2.0**-149)).astype(np.float32)
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = rng.choice([-3, -2, -1, 1, 2, 3], lanes) * np.float32(
            2.0**-149)
        return v
    if kind == "f16_boundary":
        v = (rng.standard_normal(shape) * 1000).astype(np.float32)
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = rng.choice([-1, 1], lanes) * F16_BOUNDARY
        return v
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

    The keyword arguments restrict what is drawn (a backend's capabilities);
    ``schemes_`` may name any scheme of :data:`SCHEME_BITS` (2- and 8-bit
    codes: spec 20). ``f16_limits`` groups are drawn only when the scale
    dtype can hold their scales (always: ``65504 / qmax`` and ``2 * 65504 / qmax``
    fit float16 for every width). ``f16_boundary`` groups (the int4 limit)
    are left out of 2-bit cases with float16 scales, whose ``qmax`` of 1 or 3
    would overflow.
    """
    ndim = draw(st.sampled_from(tuple(ndims)))
    shape = draw(shapes(min_dims=ndim, max_dims=ndim, min_side=min_side, max_side=max_side))
    axis = draw(st.sampled_from(tuple(a for a in (axes_ if axes_ is not None else range(ndim)) if a < ndim)))
    gs = draw(group_sizes(group_sizes_))
    scheme = draw(schemes(schemes_))
    sdt = draw(scale_dtypes(scale_dtypes_))
    if SCHEME_BITS[scheme] == 2 and sdt == np.float16:
        kinds = tuple(k for k in kinds if k != "f16_boundary") or ("normal",)
    w, chosen = _weights_with_kinds(draw, shape, axis, gs, tuple(kinds))
    return Case(w=w, group_size=gs, axis=axis, symmetric=scheme.startswith("int"), scale_dtype=sdt, kinds=chosen,
                bits=SCHEME_BITS[scheme])


@st.composite
def matmul_inputs(draw: Any, k: int, *, max_rows: int = 4) -> np.ndarray:
    """float32 activations ``(M, k)`` for a dequantizing matmul, ``M`` in ``1..max_rows``."""
    m = draw(st.integers(1, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal((m, k)).astype(np.float32)


#: Row kinds of :func:`gguf_rows`: ``tiny`` blocks have ``0 < |d| <= 2**-128`` (``1/d`` overflows),
#: ``edge`` blocks an extreme of exactly ``+-2**-125`` or ``+-2**-124`` (either side of the overflow).
GGUF_KINDS = ("normal", "zeros", "tiny", "edge", "denormals", "ties")


@st.composite
def nf4_weights(draw: Any, *, max_side: int = 48) -> tuple[np.ndarray, int, int]:
    """``(w, block_size, axis)`` for ``quantize_nf4``: a 2-D float32 weight whose blocks are ``normal``,
    ``zeros``, ``denormals`` (a float32 subnormal absmax, with exact zeros), ``f32_underflow`` or
    ``spike`` (spec 10.2)."""
    shape = draw(shapes(min_dims=2, max_dims=2, max_side=max_side))
    axis = draw(axes(2))
    block = draw(st.one_of(st.sampled_from((16, 32, 64)), st.integers(1, 40)))
    w, _ = _weights_with_kinds(draw, shape, axis, block, ("denormals", "normal", "zeros", "f32_underflow", "spike"))
    return w, block, axis


@st.composite
def gguf_rows(draw: Any, *, max_rows: int = 6, max_blocks: int = 3) -> np.ndarray:
    """float32 ``(rows, 32 * blocks)`` for the GGUF quantizers, each row's blocks of one of :data:`GGUF_KINDS`."""
    rows = draw(st.integers(1, max_rows))
    nb = draw(st.integers(1, max_blocks))
    chosen = draw(st.lists(st.sampled_from(GGUF_KINDS), min_size=rows * nb, max_size=rows * nb))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = [_gguf_block(k, rng) for k in chosen]
    return np.stack(blocks).reshape(rows, nb * 32)


def _gguf_block(kind: str, rng: np.random.Generator) -> np.ndarray:
    """32 float32 values of one GGUF block of ``kind``."""
    if kind in ("normal", "zeros", "denormals", "ties"):
        return _group_values(kind, rng, (32, 1)).ravel()
    v = np.zeros(32, np.float32)
    if kind == "tiny":  # |m| <= 2^-125: Q4_0's d = m / -8 has |d| <= 2^-128 and 1/d overflows
        v[:] = (rng.integers(-(2**20), 2**20, 32) * np.float64(2.0**-149)).astype(np.float32)
        v[rng.integers(0, 32, 3)] = 0.0
        return v
    if kind == "edge":  # the extreme is exactly +-2^-125 (1/d overflows) or +-2^-124 (1/d = -+2^127, finite)
        v[:] = np.clip(rng.standard_normal(32) * 2.0**-128, -(2.0**-126), 2.0**-126).astype(np.float32)
        v[int(rng.integers(0, 32))] = rng.choice([-1.0, 1.0]) * rng.choice([2.0**-125, 2.0**-124])
        return v
    raise ValueError(f"kind must be one of {GGUF_KINDS}, got {kind!r}")
