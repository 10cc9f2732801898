"""Hypothesis strategies for MXFP4 and NVFP4 (spec chapters 18-19), valid by construction.

Weights are built block by block along the drawn axis, each block of one *kind*:

==============  ==============================================================
kind            values of the block
==============  ==============================================================
``normal``      ``N(0, 1) * 10**u``, ``u`` uniform in ``[-3, 3]``
``zeros``       all ``0.0`` (MXFP4: E8M0 code 0; NVFP4: block scale 1)
``pow2``        ``N(0, 1)`` scaled so the amax is exactly ``2**k``
``midpoints``   E2M1 midpoints ``(0.25, 0.75, ..., 5) * 2**k`` of both signs,
                with one ``+-6 * 2**k``: MXFP4's ``w / S`` lands on every tie
``subnormal``   float32 subnormals ``+-m * 2**-149`` (MXFP4's clamped exponent)
``huge``        ``N(0, 1) * 1e37``, amax up to float32's largest finite
``negzero``     ``-0.0`` and negative values far below the block's step
==============  ==============================================================

The numbers are produced by NumPy from a drawn seed; the structure (scheme,
shape, axis, block size, kinds) is drawn by hypothesis and shrinks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..groups import n_groups

__all__ = ["FP4_KINDS", "FP4_SCHEMES", "Fp4Case", "fp4_block", "fp4_cases"]

#: Block kinds :func:`fp4_cases` draws from (the module docstring's table).
FP4_KINDS = ("normal", "zeros", "pow2", "midpoints", "subnormal", "huge", "negzero")
#: Scheme -> its standard block size.
FP4_SCHEMES = {"mxfp4": 32, "nvfp4": 16}
_MIDPOINTS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)


@dataclasses.dataclass(frozen=True)
class Fp4Case:
    """One FP4 problem: ``quantize_<scheme>(w, axis=axis, block_size=block_size)``."""

    w: np.ndarray
    scheme: str
    axis: int
    block_size: int
    kinds: tuple[str, ...]

    def describe(self) -> str:
        return (f"{self.scheme} shape={self.w.shape} axis={self.axis} block_size={self.block_size} "
                f"kinds={','.join(self.kinds)}")


def fp4_block(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 values of one block of ``kind``, shape ``(block_len, lanes)``."""
    rows, lanes = shape
    k = int(rng.integers(-8, 9))
    if kind == "normal":
        return (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3)).astype(np.float32)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "pow2":
        v = rng.standard_normal(shape)
        v = v / np.maximum(np.abs(v).max(axis=0), 1e-30)  # amax 1 per lane
        return (v * 2.0**k).astype(np.float32)
    if kind == "midpoints":
        v = rng.choice(_MIDPOINTS, shape) * rng.choice(np.array([-1, 1], np.float32), shape)
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = rng.choice([-6.0, 6.0], lanes)
        return (v * np.float32(2.0**k)).astype(np.float32)
    if kind == "subnormal":
        return (rng.integers(-(1 << 20), 1 << 20, shape).astype(np.float32) * np.float32(2.0**-149))
    if kind == "huge":
        return np.clip(rng.standard_normal(shape) * 1e37, -3.4e38, 3.4e38).astype(np.float32)
    if kind == "negzero":
        v = np.full(shape, -0.0, np.float32)
        v[rng.integers(0, rows, lanes), np.arange(lanes)] = np.float32(2.0**k)
        v[rng.random(shape) < 0.3] = np.float32(-(2.0 ** (k - 6)))
        return v
    raise ValueError(f"kind must be one of {FP4_KINDS}, got {kind!r}")


@st.composite
def fp4_cases(
    draw: Any,
    *,
    schemes: Sequence[str] = ("mxfp4", "nvfp4"),
    ndims: Sequence[int] = (1, 2, 3),
    block_sizes: Sequence[int] | None = None,
    kinds: Sequence[str] = FP4_KINDS,
    max_side: int = 48,
) -> Fp4Case:
    """An :class:`Fp4Case`. ``block_sizes=None`` draws the scheme's standard size
    most of the time and any size 1..40 otherwise (partial last blocks)."""
    scheme = draw(st.sampled_from(tuple(schemes)))
    ndim = draw(st.sampled_from(tuple(ndims)))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    if block_sizes is None:
        bs = draw(st.one_of(st.just(FP4_SCHEMES[scheme]), st.integers(1, 40)))
    else:
        bs = draw(st.sampled_from(tuple(block_sizes)))
    length = shape[axis]
    nb = n_groups(length, bs)
    chosen = tuple(draw(st.lists(st.sampled_from(tuple(kinds)), min_size=nb, max_size=nb)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lanes = int(np.prod(shape)) // length
    moved = np.zeros((length, lanes), np.float32)  # (L, lanes): the blocked axis first
    for b in range(nb):
        b0, b1 = b * bs, min((b + 1) * bs, length)
        moved[b0:b1] = fp4_block(chosen[b], rng, (b1 - b0, lanes))
    w = np.moveaxis(moved.reshape((length,) + shape[:axis] + shape[axis + 1:]), 0, axis)
    return Fp4Case(w=np.ascontiguousarray(w), scheme=scheme, axis=axis, block_size=bs, kinds=chosen)
