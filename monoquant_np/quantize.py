"""Quantize and dequantize (spec sections 3, 4, 6 and 7).

Symmetric int4 (the default), per group ``g`` along ``axis``::

    s = max|w_g| / 7
    q = clip(round_half_even(w / s), -8, 7)        (q = 0 where s == 0)
    w' = q * s

Asymmetric uint4::

    lo = min(min(w_g), 0);  hi = max(max(w_g), 0);  s = (hi - lo) / 15
    z = clip(round_half_even(-lo / s), 0, 15)
    q = clip(round_half_even(w / s) + z, 0, 15)    (q = z = 0 where s == 0)
    w' = (q - z) * s

Int8 per-channel fallback (spec 7): when ``w.shape[axis] < group_size`` the
whole axis is one group and the codes are 8 bits wide (``qmax`` 127 or 255).

    >>> w = np.array([[0.0, -7.0], [3.5, 1.0], [0.75, 2.0]], dtype=np.float32)
    >>> qt = quantize(w, group_size=2)
    >>> qt.codes().tolist(), qt.scale.tolist()
    ([[0, -7], [7, 1], [7, 7]], [[0.5, 1.0], [0.1071428582072258, 0.2857142984867096]])
    >>> dequantize(qt)[:2].tolist()
    [[0.0, -7.0], [3.5, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import check_axis, check_finite, check_float_array, check_positive_int
from .groups import expand_groups
from .numerics import SCALE_DTYPES, code_range, round_half_even, safe_scale
from .packing import pack_int4, packed_size, unpack_int4
from .scales import asymmetric_scales, symmetric_scales
from .tensor import QuantizedTensor

__all__ = ["quantize", "dequantize", "dequantize_slice", "quantize_codes", "bits_per_weight"]


def _check_scale_dtype(scale_dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(scale_dtype)
    except TypeError:
        raise TypeError(f"scale_dtype must be float32 or float16, got {scale_dtype!r}") from None
    if dt not in SCALE_DTYPES:
        raise TypeError(f"scale_dtype must be float32 or float16, got {dt}")
    return dt


def quantize_codes(
    w: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int,
    group_size: int,
    bits: int = 4,
) -> np.ndarray:
    """The codes of float32 ``w`` for given scales: ``clip(rint(w / s) + z, qmin, qmax)``.

    Shapes: ``w`` ``S``; ``scale``/``zero_point`` ``group_shape(S, axis, group_size)``.
    Returns int8 codes (symmetric) or uint8 codes (asymmetric) of shape ``S``.
    Where ``s == 0`` the code is ``z`` (or 0). This is the one implementation
    of the rounding step; algorithms that choose their own scales call it.
    """
    signed = zero_point is None
    qmin, qmax = code_range(bits, signed)
    length = w.shape[axis]
    s_el = expand_groups(safe_scale(scale), axis, group_size, length)
    q = np.divide(w, s_el, dtype=np.float32)
    round_half_even(q, out=q)
    if zero_point is not None:
        q += expand_groups(zero_point.astype(np.float32), axis, group_size, length)
    np.clip(q, qmin, qmax, out=q)
    zero = expand_groups(scale == 0, axis, group_size, length)
    if zero.any():
        q[zero] = 0 if zero_point is None else expand_groups(zero_point, axis, group_size, length)[zero]
    return q.astype(np.int8 if signed else np.uint8)


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    if bits == 4:
        return pack_int4(codes)
    return np.ascontiguousarray(codes).reshape(-1).view(np.uint8).copy()


def quantize(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    symmetric: bool = True,
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
) -> QuantizedTensor:
    """Quantize ``w`` group-wise to 4 bits (spec 3).

    Args:
        w: float16/float32/float64 array, any shape with at least one
            dimension; converted to float32 first (spec 4.1). Must be finite.
        group_size: elements per group along ``axis`` (any positive int; the
            last group may be partial).
        axis: the axis groups run along (``0``: the ``K`` axis of a ``(K, N)``
            MatMul weight, as ONNX ``DequantizeLinear(axis=0)`` expects).
        symmetric: int4 codes ``-8..7`` with ``s = max|w|/7`` (True), or uint4
            codes ``0..15`` with a zero point (False).
        scale_dtype: float32 or float16 (spec 3.4).
        int8_fallback: when ``w.shape[axis] < group_size``, quantize to 8 bits
            with one group per channel instead (spec 7). False keeps 4 bits
            with a single partial group.

    Returns:
        A :class:`QuantizedTensor`.

    Raises:
        TypeError: ``w`` is not a float array, ``scale_dtype`` is not a float.
        ValueError: non-finite ``w``, bad ``group_size`` or ``axis``, float16
            scale overflow.
    """
    w32 = check_float_array(w, "w")
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    sdt = _check_scale_dtype(scale_dtype)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    check_finite(w32, "w")
    length = w32.shape[axis]
    bits = 4
    if int8_fallback and 0 < length < group_size:
        bits, group_size = 8, length
    if symmetric:
        scale = symmetric_scales(w32, group_size=group_size, axis=axis, bits=bits, scale_dtype=sdt)
        zp = None
    else:
        scale, zp = asymmetric_scales(w32, group_size=group_size, axis=axis, bits=bits, scale_dtype=sdt)
    codes = quantize_codes(w32, scale, zp, axis=axis, group_size=group_size, bits=bits)
    return QuantizedTensor(
        data=_pack(codes, bits),
        shape=w32.shape,
        axis=axis,
        block_size=group_size,
        scale=scale,
        zero_point=zp,
        signed=bool(symmetric),
        bits=bits,
    )


def _slice_codes(qt: QuantizedTensor, start: int, stop: int) -> np.ndarray:
    """Codes of rows ``start:stop`` along axis 0 as float32, shape ``(stop-start, *shape[1:])``."""
    inner = int(np.prod(qt.shape[1:]))
    lo, hi = start * inner, stop * inner
    if qt.bits == 4:
        b0 = lo // 2
        flat = unpack_int4(qt.data[b0 : packed_size(hi)], hi - 2 * b0, signed=qt.signed)[lo - 2 * b0 :]
    else:
        flat = qt.data[lo:hi].view(np.int8) if qt.signed else qt.data[lo:hi]
    rows = flat.reshape((stop - start,) + qt.shape[1:])
    if qt.codebook is not None:
        return qt.codebook[rows]
    return rows.astype(np.float32)


def dequantize_slice(qt: QuantizedTensor, start: int, stop: int) -> np.ndarray:
    """Dequantize the stored rows ``start:stop`` along axis 0, ignoring ``perm`` (float32).

    Works for any ``qt.axis``; memory is proportional to the slice. Used by
    :func:`monoquant_np.matmul.dequant_matmul` to stay chunked.
    """
    vals = _slice_codes(qt, start, stop)  # (rows, *shape[1:])
    scale = qt.scale.astype(np.float32)
    zp = qt.zero_point
    if qt.axis == 0:
        g0, g1 = start // qt.block_size, (stop - 1) // qt.block_size + 1
        scale = scale[g0:g1]
        zp = zp[g0:g1] if zp is not None else None
        off = start - g0 * qt.block_size
        s_el = expand_groups(scale, 0, qt.block_size, off + stop - start)[off:]
        z_el = expand_groups(zp, 0, qt.block_size, off + stop - start)[off:] if zp is not None else None
    else:  # axis 0 is not the group axis: scale rows are weight rows
        n = qt.shape[qt.axis]
        s_el = expand_groups(scale[start:stop], qt.axis, qt.block_size, n)
        z_el = expand_groups(zp[start:stop], qt.axis, qt.block_size, n) if zp is not None else None
    if z_el is not None:
        vals -= z_el.astype(np.float32)
    vals *= s_el
    return vals


def dequantize(qt: QuantizedTensor, dtype: Any = np.float32) -> np.ndarray:
    """Rebuild the weight: ``w' = (q - z) * s`` (``codebook[q] * s`` for NF4), spec 6.

    Arithmetic is float32 (float16 scales are widened exactly); the result is
    cast to ``dtype`` (float32 by default; float16 or float64 allowed).
    Shape: ``qt.shape``. An undone ``perm`` restores the original order.
    """
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"qt must be a QuantizedTensor, got {type(qt).__name__}")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a float dtype, got {dt}")
    out = dequantize_slice(qt, 0, qt.shape[0]) if qt.size else np.zeros(qt.shape, np.float32)
    if qt.perm is not None:
        out = np.take(out, np.argsort(qt.perm), axis=qt.axis)
    return out.astype(dt, copy=False)


def bits_per_weight(qt: QuantizedTensor) -> float:
    """Storage bits per weight, all metadata included (spec 6.3).

    ``8 * (data bytes + scale bytes + packed zero-point bytes) / size``; with
    double quantization the 8-bit scale codes, their float32 block scales and
    the float32 offset replace the scales. The NF4 codebook is a constant of
    the format and is not counted; neither is ``perm`` (it is not a property
    of the weight's storage in the exported graph, where it is a permutation
    of the activations).
    """
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"qt must be a QuantizedTensor, got {type(qt).__name__}")
    if qt.size == 0:
        return 0.0
    nbytes = qt.data.nbytes
    nbytes += qt.double_quant.nbytes() if qt.double_quant is not None else qt.scale.nbytes
    if qt.zero_point is not None:
        nbytes += packed_size(qt.zero_point.size) if qt.bits == 4 else qt.zero_point.size
    return 8.0 * nbytes / qt.size
