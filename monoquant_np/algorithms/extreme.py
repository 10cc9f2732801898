"""The model quantizer's default int4 scales: a two-point clip search on ``m / -8`` (spec section 14.0).

Spec 3's symmetric scale ``s = max|w_g| / 7`` maps the group's extreme to
code +-7 and leaves code -8 unused. onnxruntime's blockwise quantizer (MLAS)
takes ``s = m / -8`` instead, ``m`` the signed element of largest magnitude:
the extreme lands exactly on code -8 and every other element is rounded on a
grid 7/8 as coarse (an opposite-signed element near ``-m`` clips to code 7).
The default here tries that scale and a clipped one, ``0.9 m / -8``, and keeps
the one with the smaller squared error. Per group ``g`` (elements ``w_k``,
``k = 0 .. n-1``, a partial last group as is), all in float32, for the ratios
``r_0 = 1, r_1 = 0.9`` (:data:`DEFAULT_RATIOS`; ``0.9`` is float32's nearest)::

    hi  = max(max_k w_k, 0),   lo = min(min_k w_k, 0)
    m   = hi if hi >= -lo else lo                     (positive on a tie)
    s_j = store((r_j * m) / -8)                       (negative when m > 0)
    e_j = sum_k (w_k - clip(rint(w_k / s_j), -8, 7) * s_j) ** 2
    s   = the s_j of smallest e_j, the first on ties; a zero s_j is only chosen as s_0

``store`` rounds to the scale dtype (spec 3.4); ``e_j`` uses the stored scale
as float32. Every operation of ``e_j`` is one correctly rounded float32
operation (no fused multiply-add): the product ``q * s``, the difference, the
square, and the sum, accumulated in increasing ``k`` starting from the term of
``k = 0``. The codes are then spec 4's rounding step
(:func:`monoquant_np.codes.quantize_codes`) with the chosen scale, so the
result is a valid spec tensor whatever was chosen: ``dequantize`` computes
``q * s`` either way. An all-zero group has ``m = 0`` and ``s = 0`` (spec 3.3).

``s_0`` is onnxruntime's scale and ``e_j`` the exact squared error of the
stored tensor, so no group's error exceeds onnxruntime's rule's. The second
point is where the full search of 14.1 most often lands: on normal weights it
removes about 9% of the squared error that ``s_0`` leaves (the full search:
12%), for two candidate passes instead of about a hundred.

    >>> w = np.array([1.0] * 7 + [-10.5], dtype=np.float32).reshape(8, 1)
    >>> extreme_scales(w, group_size=8).item()   # -10.5 -> -8 exactly; 1 -> rint(0.76) = 1
    1.3125
    >>> w = np.array([1.125, 2.25, 3.375, 4.5, 5.625, 6.75, 0.0, -10.0], dtype=np.float32).reshape(8, 1)
    >>> extreme_scales(w, group_size=8).item()   # s_1 = 0.9 * 10 / 8: errors 1.0 (-10 -> -9) < 1.109375 (s_0)
    1.125
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import (
    check_axis,
    check_bool,
    check_finite,
    check_float_array,
    check_positive_int,
    check_real,
    check_reals,
    check_scale_dtype,
)
from ..groups import from_group_blocks, to_group_blocks
from ..numerics import round_half_even, store_scale
from ..quantize import quantize
from ..tensor import QuantizedTensor
from .mse import build_tensor

__all__ = ["DEFAULT_RATIOS", "SEARCH_START", "SEARCH_STEPS", "extreme_scales", "search_scales", "quantize_extreme"]

#: The clipping ratios of the default search, the first one unclipped.
DEFAULT_RATIOS: tuple[float, ...] = (1.0, 0.9)
#: The line search of :func:`search_scales`: the ratios tried first, then the steps tried on each side of the best.
SEARCH_START: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7)
SEARCH_STEPS: tuple[float, ...] = (0.05, 0.02)

#: Elements of the weight handled at once (the candidates' temporaries stay in cache).
_CHUNK_ELEMENTS = 1 << 16
#: The narrowest column slice of a chunk.
_MIN_COLUMNS = 256


def extreme_scales(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    ratios: Any = DEFAULT_RATIOS,
    scale_dtype: Any = np.float32,
) -> np.ndarray:
    """Per-group int4 scales ``r_j * m / -8`` of smallest squared error (the module's formula).

    Shapes: ``w`` float ``S`` (finite) -> ``group_shape(S, axis, group_size)``
    in ``scale_dtype`` (float32 or float16); a scale is negative where the
    group's extreme is positive. ``ratios``: the ``r_j`` in ``(0, 1]``, tried in order.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    r32 = check_reals(ratios, "ratios", low=0.0, high=1.0, low_open=True).astype(np.float32)
    sdt = check_scale_dtype(scale_dtype)
    check_finite(w32, "w")
    wg, gshape = to_group_blocks(w32, axis, group_size)  # (G, group_size, M)
    return from_group_blocks(_chunked(wg, lambda c: _line_search(c, r32, r32[:0], sdt), sdt), axis, gshape)


def search_scales(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    start: Any = SEARCH_START,
    steps: Any = SEARCH_STEPS,
    scale_dtype: Any = np.float32,
    norm: float = 2.4,
) -> np.ndarray:
    """Per-group int4 scales ``r * m / -8`` by a line search on ``r`` (spec 14.1.1, the model quantizer's ``mse``).

    The ratios ``start`` are tried as in :func:`extreme_scales`, with the error
    ``e = sum_k |w_k - q_k * s| ** norm`` (float32 ``power``; 2.4 as
    :func:`~monoquant_np.algorithms.mse.mse_scales`); then for each ``d`` of
    ``steps`` in turn, ``r - d`` and ``r + d`` around each group's best ``r`` so
    far (those in ``(0, 1]``, computed in float32), each kept if its error is
    strictly smaller. Shapes and dtypes as :func:`extreme_scales`.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    r0 = check_reals(start, "start", low=0.0, high=1.0, low_open=True).astype(np.float32)
    d32 = check_reals(steps, "steps", low=0.0, high=1.0, low_open=True).astype(np.float32)
    sdt = check_scale_dtype(scale_dtype)
    p = np.float32(check_real(norm, "norm", low=1.0, high=16.0))
    check_finite(w32, "w")
    wg, gshape = to_group_blocks(w32, axis, group_size)
    return from_group_blocks(_chunked(wg, lambda c: _line_search(c, r0, d32, sdt, p), sdt), axis, gshape)


def _chunked(wg: np.ndarray, per_chunk: Any, sdt: np.dtype) -> np.ndarray:
    """``per_chunk`` on cache-sized chunks ``(g, group_size, c)`` of ``wg`` ``(G, group_size, M)``,
    joined ``(G, M)``."""
    n_g, size, m = wg.shape
    cols = min(m, max(_MIN_COLUMNS, _CHUNK_ELEMENTS // size))  # long inner loops over contiguous columns
    rows = max(1, _CHUNK_ELEMENTS // (size * cols))  # groups per chunk
    out = np.empty((n_g, m), sdt)
    for g0 in range(0, n_g, rows):
        for j in range(0, m, cols):
            out[g0 : g0 + rows, j : j + cols] = per_chunk(wg[g0 : g0 + rows, :, j : j + cols])
    return out


def _signed_extreme(wg: np.ndarray) -> np.ndarray:
    """``m`` per group of ``wg`` ``(G, group_size, M)``: ``hi`` if ``hi >= -lo`` else ``lo`` (both include 0)."""
    hi = np.maximum(wg.max(axis=1), np.float32(0))
    lo = np.minimum(wg.min(axis=1), np.float32(0))
    return np.where(hi >= -lo, hi, lo)


def _line_search(wg: np.ndarray, r0: np.ndarray, d32: np.ndarray, sdt: np.dtype, p: float = 2.0) -> np.ndarray:
    """The scales ``(G, M)`` of one chunk ``(G, group_size, M)``: the ratios ``r0`` in order, then ``r -+ d``
    around each group's best ``r`` for each ``d`` of ``d32`` (:func:`extreme_scales` has no steps)."""
    m = _signed_extreme(wg)
    best_r = np.full(m.shape, r0[0], np.float32)
    best = store_scale((best_r * m) / np.float32(-8), sdt)
    best_err = _error(wg, best, p)

    def consider(r: np.ndarray) -> None:
        nonlocal best, best_err, best_r
        s = store_scale((r * m) / np.float32(-8), sdt)
        err = _error(wg, s, p)
        better = (err < best_err) & (s != 0) & (r > 0) & (r <= 1)
        best, best_err, best_r = np.where(better, s, best), np.where(better, err, best_err), np.where(better, r, best_r)

    for r in r0[1:]:
        consider(np.full(m.shape, r, np.float32))
    for d in d32:
        center = best_r
        consider(center - d)
        consider(center + d)
    return best


def _error(wg: np.ndarray, s: np.ndarray, p: float = 2.0) -> np.ndarray:
    """``sum_k |w_k - clip(rint(w_k / s), -8, 7) * s| ** p`` per group, float32, summed in increasing ``k``.

    ``wg`` ``(G, group_size, M)``; ``s`` ``(G, M)`` stored scales. NumPy reduces
    a non-innermost axis by adding its slices in order, which is the spec's order.
    """
    s32 = s.astype(np.float32)[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = wg / s32  # a zero scale gives NaN errors, which never compare smaller
    round_half_even(q, out=q)
    np.clip(q, -8, 7, out=q)
    q *= s32
    np.subtract(wg, q, out=q)
    if p == 2:
        q *= q
    else:
        np.abs(q, out=q)
        np.power(q, p, out=q)
    return np.add.reduce(q, axis=1)


def quantize_extreme(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    ratios: Any = DEFAULT_RATIOS,
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
    search: bool = False,
) -> QuantizedTensor:
    """:func:`extreme_scales` (or, with ``search``, :func:`search_scales`) then spec 4's rounding step:
    an int4 :class:`QuantizedTensor`.

    Same layout and fallback rule as :func:`monoquant_np.quantize.quantize`:
    ``S[axis] < group_size`` gives the int8 per-channel tensor of spec 7
    (``absmax / 127``, unchanged). Only the int4 scales differ from ``quantize``.

    >>> qt = quantize_extreme(np.array([-10.5] + [1.0] * 7, dtype=np.float32).reshape(8, 1), group_size=8)
    >>> qt.codes().ravel().tolist(), qt.scale.item()
    ([-8, 1, 1, 1, 1, 1, 1, 1], 1.3125)
    """
    w32 = check_float_array(w, "w", nonempty=True)
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    if check_bool(int8_fallback, "int8_fallback") and w32.shape[axis] < group_size:
        return quantize(w32, group_size=group_size, axis=axis, scale_dtype=scale_dtype, int8_fallback=True)
    if check_bool(search, "search"):
        scale = search_scales(w32, group_size=group_size, axis=axis, scale_dtype=scale_dtype)
    else:
        scale = extreme_scales(w32, group_size=group_size, axis=axis, ratios=ratios, scale_dtype=scale_dtype)
    return build_tensor(w32, scale, None, axis=axis, group_size=group_size, bits=4)
