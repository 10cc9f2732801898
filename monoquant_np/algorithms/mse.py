"""MSE-optimal group scales by a clipping-ratio search (spec section 14.1).

Round-to-nearest with ``s = max|w_g| / 7`` spends the code range on the
group's single largest element and uses the code -8 only where a scale is
subnormal (spec 1.2). Shrinking the range
clips that element but rounds every other element more finely; the best
trade-off is found by search. For each group ``g`` (``m_g`` its element of
largest magnitude, the first one on ties) and each ratio ``r`` of a grid::

    symmetric:   s = r * max|w_g| / qmax              (qmax = 7)
                 s = r * (-m_g) / 2**(bits-1)         (= -m_g / 8: the extreme lands on code -8;
                                                      negative when m_g > 0; ``negative_scales``)
    asymmetric:  lo = r * min(min(w_g), 0),  hi = r * max(max(w_g), 0)
                 s = (hi - lo) / qmax,  z = clip(rint(-lo / s), 0, qmax)   (qmax = 15)
    err(s)     = sum_i c_i * |w_i - (q_i - z) * s| ** p,    q = clip(rint(w / s) + z, qmin, qmax)

and keeps the candidate with the smallest ``err`` (the first one on ties, so
``r = 1`` with ``max|w| / 7``, plain round-to-nearest, wins when nothing is
better). ``p`` is ``norm`` (2.4 by default, the exponent of GPTQ's reference
``Quantizer(norm=2.4)``; 2 is the plain squared error). ``c_i`` is an optional
importance of the element's position along ``axis`` (for example
``mean(x_k**2)`` of the input channel ``k``; 1 by default). Each candidate is
rounded to the scale dtype before its error is measured, so the chosen scale
is exactly the stored one.

The search is calibration-free and vectorized over all groups at once (one
pass over the weight per candidate). The final codes are computed by
:func:`monoquant_np.codes.quantize_codes`, the spec's one rounding step.

# Note: with ``negative_scales`` (the default for symmetric codes) a scale can
# be negative, exactly like onnxruntime's MLAS blockwise quantizer
# (``scale = w_extreme / -8``) and GGUF Q4_0 (``d = max / -8``): the 16th
# code then serves the positive extreme. ``DequantizeLinear`` and
# ``MatMulNBits`` compute ``q * s`` either way; chapter 11's double
# quantization needs non-negative scales (pass ``negative_scales=False``).

    >>> w = np.array([1.0] * 7 + [-10.5], dtype=np.float32).reshape(8, 1)
    >>> mse_scales(w, group_size=8, grid=(1.0,), negative_scales=False).item()  # 10.5/7: err 7 * 0.5**p
    1.5
    >>> mse_scales(w, group_size=8, grid=(1.0,)).item()  # 10.5/8: -10.5 -> -8 exactly, 1 -> 1 (err 7 * 0.3125**p)
    1.3125
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codes import quantize_codes
from ..errors import (
    check_axis,
    check_bool,
    check_choice,
    check_finite,
    check_float_array,
    check_positive_int,
    check_real,
    check_reals,
    check_scale_dtype,
    check_scales,
    check_uint8,
)
from ..groups import from_group_blocks, group_shape, to_group_blocks
from ..numerics import code_range, round_half_even, safe_scale, store_scale
from ..packing import pack_codes
from ..tensor import QuantizedTensor

__all__ = ["MSE_GRID", "mse_scales", "quantize_mse", "build_tensor"]

#: Clipping ratios searched by default: 1.00, 0.99, ..., 0.50 and 7/8.
#: Provenance: GPTQ's ``Quantizer.find_params(mse=True)`` searches
#: ``p = 1 - i / 100`` (github.com/IST-DASLab/gptq, quant.py); 7/8 is added
#: because ``s = max|w| / 8`` represents a negative extreme exactly with code -8.
MSE_GRID: tuple[float, ...] = tuple(sorted({round(1.0 - i / 100, 2) for i in range(51)} | {0.875},
                                           reverse=True))


#: Elements of the weight searched at once (a cache-sized chunk of columns).
_CHUNK_ELEMENTS = 1 << 18


def _group_err(wg, s, z, c, qmin, qmax, p):
    """``sum c |w - w'|**p`` per group for scales ``s`` ``(G, M)`` (zero points ``z`` or None)."""
    s32 = safe_scale(s)[:, None, :]  # (G, 1, M)
    q = round_half_even(wg / s32)
    if z is not None:
        q += z[:, None, :]
    np.clip(q, qmin, qmax, out=q)
    if z is not None:
        q -= z[:, None, :]
    q *= s32
    q -= wg
    np.abs(q, out=q)
    if p == 2.0:
        q *= q
    else:
        np.power(q, np.float32(p), out=q)
    if c is not None:
        q *= c
    err = q.sum(axis=1)  # (G, M)
    zero = s == 0  # the group dequantizes to 0 (spec 3.3)
    if zero.any():
        w2 = np.abs(wg) ** np.float32(p) if c is None else np.abs(wg) ** np.float32(p) * c
        err[zero] = w2.sum(axis=1)[zero]
    return err


def mse_scales(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    symmetric: bool = True,
    grid: Any = MSE_GRID,
    bits: int = 4,
    scale_dtype: Any = np.float32,
    importance: np.ndarray | None = None,
    norm: float = 2.4,
    negative_scales: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-group scales (and zero points) that minimize the squared error (spec 14.1).

    Args:
        w: float array ``S`` (converted to float32, must be finite).
        group_size, axis: the groups, as in :func:`monoquant_np.quantize.quantize`.
        symmetric: int codes ``-8..7`` without zero point (True) or uint codes with one.
        grid: clipping ratios in ``(0, 1]`` to try (:data:`MSE_GRID` by default).
        bits: 4 (or 8, for the int8 fallback).
        scale_dtype: float32 or float16; every candidate is rounded to it.
        importance: optional non-negative float ``(S[axis],)`` weighting the
            squared error of each position along ``axis``.
        norm: the exponent ``p`` of the error, ``>= 1`` (2.4 by default).
        negative_scales: symmetric only: also try ``r * (-m_g) / 8``, which is
            negative when the extreme is positive (see the module's Note).

    Returns:
        ``scale`` of shape ``group_shape(S, axis, group_size)`` in ``scale_dtype``
        (symmetric), or ``(scale, zero_point)`` with uint8 zero points.
    """
    a = _check_args(w, group_size, axis, symmetric, grid, bits, scale_dtype, importance, norm, negative_scales)
    return _scales(**a)


def _check_args(w, group_size, axis, symmetric, grid, bits, scale_dtype, importance, norm, negative_scales):
    """Spec 15: the arguments of :func:`mse_scales`, checked in signature order, then the data."""
    w32 = check_float_array(w, "w", nonempty=True)
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    symmetric = check_bool(symmetric, "symmetric")
    ratios = check_reals(grid, "grid", low=0.0, high=1.0, low_open=True).astype(np.float32)
    bits = check_choice(bits, (4, 8), "bits")
    sdt = check_scale_dtype(scale_dtype)
    imp = None
    if importance is not None:
        imp = check_float_array(importance, "importance")
        if imp.shape != (w32.shape[axis],):
            raise ValueError(f"importance must have shape ({w32.shape[axis]},), got {imp.shape}")
    p = check_real(norm, "norm", low=1.0, high=16.0)
    negative_scales = check_bool(negative_scales, "negative_scales")
    return dict(w32=w32, group_size=group_size, axis=axis, symmetric=symmetric, ratios=ratios, bits=bits,
                sdt=sdt, imp=imp, p=p, negative_scales=negative_scales)


def _scales(w32, group_size, axis, symmetric, ratios, bits, sdt, imp, p, negative_scales):
    """:func:`mse_scales` on checked arguments; the data are checked first (NaN/inf, negative importance)."""
    check_finite(w32, "w")
    if imp is not None and (not np.all(np.isfinite(imp)) or np.any(imp < 0)):
        raise ValueError("importance must be finite and non-negative")
    qmin, qmax = code_range(bits, symmetric)
    wg, gshape = to_group_blocks(w32, axis, group_size)  # (G, group_size, M)
    c = None if imp is None else to_group_blocks(imp.reshape(-1, 1), 0, group_size)[0]  # (G, group_size, 1)
    # Chunks of columns keep one candidate's work in cache (the search is memory-bound).
    step = max(1, _CHUNK_ELEMENTS // max(wg.shape[0] * wg.shape[1], 1))
    parts = [_search(wg[:, :, j : j + step], c, ratios, symmetric, negative_scales, sdt, qmin, qmax, p)
             for j in range(0, wg.shape[2], step)] or [_search(wg, c, ratios, symmetric, False, sdt, qmin, qmax, p)]
    best_s = np.concatenate([s for s, _ in parts], axis=1)  # (G, M)
    if symmetric:
        return from_group_blocks(best_s, axis, gshape)
    best_z = np.concatenate([z for _, z in parts], axis=1)
    return from_group_blocks(best_s, axis, gshape), from_group_blocks(best_z.astype(np.uint8), axis, gshape)


def _search(wg, c, ratios, symmetric, negative_scales, sdt, qmin, qmax, p):
    """The best candidate per group of ``wg`` ``(G, group_size, M)``: ``(scale, zero point or None)``, ``(G, M)``."""
    if symmetric:
        amax = np.abs(wg).max(axis=1)  # (G, M)
        ext = np.take_along_axis(wg, np.abs(wg).argmax(axis=1)[:, None, :], axis=1)[:, 0, :]  # (G, M) m_g
        cands = [amax * r / np.float32(qmax) for r in ratios]
        if negative_scales:
            cands += [-ext * r / np.float32(-qmin) for r in ratios]
        cands = [(store_scale(s, sdt), None) for s in cands]
    else:
        lo = np.minimum(wg.min(axis=1), np.float32(0))  # (G, M)
        hi = np.maximum(wg.max(axis=1), np.float32(0))
        cands = []
        for r in ratios:
            s = store_scale((hi * r - lo * r) / np.float32(qmax), sdt)
            z = np.clip(round_half_even(-(lo * r) / safe_scale(s)), 0, qmax)
            z[s == 0] = 0
            cands.append((s, z))
    best_s = best_z = best_err = None
    for s, z in cands:
        err = _group_err(wg, s.astype(np.float32), z, c, qmin, qmax, p)
        if best_err is None:
            best_s, best_z, best_err = s, z, err
            continue
        better = err < best_err
        best_s = np.where(better, s, best_s)
        best_err = np.where(better, err, best_err)
        if z is not None:
            best_z = np.where(better, z, best_z)
    return best_s, best_z


def build_tensor(
    w32: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int,
    group_size: int,
    bits: int = 4,
    perm: np.ndarray | None = None,
) -> QuantizedTensor:
    """A :class:`QuantizedTensor` of float32 ``w32`` for given scales, codes by ``quantize_codes``.

    With ``perm``, ``w32`` must already be the permuted weight ``w.take(perm, axis)``.
    Spec 15: ``w32`` a float array-like (at least 1-D), ``scale`` a float32/float16
    ndarray of shape ``group_shape(w32.shape, axis, group_size)``, ``zero_point``
    ``None`` or a uint8 ndarray, ``bits`` 4 or 8; ``perm`` is checked by
    :class:`QuantizedTensor`.
    """
    w32 = check_float_array(w32, "w32")
    check_scales(scale, "scale")
    if zero_point is not None:
        check_uint8(zero_point, "zero_point")
    axis = check_axis(axis, w32.ndim)
    group_size = check_positive_int(group_size, "group_size")
    bits = check_choice(bits, (4, 8), "bits")
    gshape = group_shape(w32.shape, axis, group_size)
    if scale.shape != gshape or (zero_point is not None and zero_point.shape != gshape):
        raise ValueError(f"scale and zero_point must have the group shape {gshape}, got {scale.shape}"
                         + ("" if zero_point is None else f" and {zero_point.shape}"))
    codes = quantize_codes(w32, scale, zero_point, axis=axis, group_size=group_size, bits=bits)
    data = pack_codes(codes, bits)
    return QuantizedTensor(
        data=data, shape=w32.shape, axis=axis, block_size=group_size, scale=scale,
        zero_point=zero_point, signed=zero_point is None, bits=bits, perm=perm,
    )


def quantize_mse(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    symmetric: bool = True,
    grid: Any = MSE_GRID,
    scale_dtype: Any = np.float32,
    importance: np.ndarray | None = None,
    norm: float = 2.4,
    negative_scales: bool = True,
    int8_fallback: bool = True,
) -> QuantizedTensor:
    """:func:`mse_scales` then the spec's rounding step: a :class:`QuantizedTensor`.

    Same layout and fallback rule as :func:`monoquant_np.quantize.quantize`
    (``S[axis] < group_size`` -> int8 per channel); only the scales differ.

    >>> w = np.array([1.0] * 7 + [10.5], dtype=np.float32).reshape(8, 1)
    >>> qt = quantize_mse(w, group_size=8, grid=(1.0,), int8_fallback=False)
    >>> qt.codes().ravel().tolist(), qt.scale.item()  # s = 10.5 / -8: 10.5 -> -8, 1 -> rint(-0.76) = -1
    ([-1, -1, -1, -1, -1, -1, -1, -8], -1.3125)
    """
    a = _check_args(w, group_size, axis, symmetric, grid, 4, scale_dtype, importance, norm, negative_scales)
    if check_bool(int8_fallback, "int8_fallback") and a["w32"].shape[a["axis"]] < a["group_size"]:
        a.update(bits=8, group_size=a["w32"].shape[a["axis"]])
    res = _scales(**a)
    scale, zp = res if isinstance(res, tuple) else (res, None)
    return build_tensor(a["w32"], scale, zp, axis=a["axis"], group_size=a["group_size"], bits=a["bits"])
