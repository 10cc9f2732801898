"""Quantize a float weight group-wise (spec sections 3, 4, 7 and 20); the inverse is :mod:`monoquant_np.dequantize`.

Symmetric, per group ``g`` along ``axis``, with ``(qmin, qmax) = (-2**(b-1),
2**(b-1) - 1)`` for ``bits = b`` (int4: -8, 7; int2: -2, 1; int8: -128, 127)::

    s = max|w_g| / qmax
    q = clip(round_half_even(w / s), qmin, qmax)   (q = 0 where s == 0)
    w' = q * s

Asymmetric, with ``qmax = 2**b - 1`` (uint4: 15; uint2: 3; uint8: 255)::

    lo = min(min(w_g), 0);  hi = max(max(w_g), 0);  s = (hi - lo) / qmax
    z = clip(round_half_even(-lo / s), 0, qmax)
    q = clip(round_half_even(w / s) + z, 0, qmax)  (q = z = 0 where s == 0)
    w' = (q - z) * s

Int8 per-channel fallback (spec 7): when ``w.shape[axis] < group_size`` the
whole axis is one group and the codes are 8 bits wide (``qmax`` 127 or 255).

    >>> w = np.array([[0.0, -7.0], [3.5, 1.0], [0.75, 2.0]], dtype=np.float32)
    >>> qt = quantize(w, group_size=2)
    >>> qt.codes().tolist(), qt.scale.tolist()
    ([[0, -7], [7, 1], [7, 7]], [[0.5, 1.0], [0.1071428582072258, 0.2857142984867096]])
    >>> from monoquant_np.dequantize import dequantize
    >>> dequantize(qt)[:2].tolist()
    [[0.0, -7.0], [3.5, 1.0]]

Why it is fast (every path is bit-identical to the formulas above): the
scales come from group reductions (``max``, ``min``; halving steps along a
contiguous last axis, ``groups.group_reduce``) over a reshaped view, which
also detect NaN/inf; the codes come from :func:`~monoquant_np.codes.packed_codes`,
which rounds and packs slab by slab while each slab is in cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .codes import packed_codes
from .double_quant import quantize_scales
from .errors import check_axis, check_bool, check_choice, check_float_array, check_positive_int, check_scale_dtype
from .scales import asymmetric_scales, symmetric_scales
from .tensor import QuantizedTensor

__all__ = ["quantize", "BITS"]

#: The code widths :func:`quantize` accepts (spec 1, 20).
BITS = (2, 4, 8)


def quantize(
    w: np.ndarray,
    *,
    bits: int = 4,
    group_size: int = 128,
    axis: int = 0,
    symmetric: bool = True,
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
    double_quant: bool = False,
    dq_block_size: int = 256,
) -> QuantizedTensor:
    """Quantize ``w`` group-wise to ``bits``-wide codes (spec 3, 20).

    Args:
        w: float16/float32/float64 array, any shape with at least one
            dimension; converted to float32 first (spec 4.1). Must be finite.
        bits: code width, 2, 4 or 8 (:data:`BITS`): the same scale rules
            and rounding with that width's ``qmin``/``qmax`` (spec 20.1).
        group_size: elements per group along ``axis`` (any positive int; the
            last group may be partial).
        axis: the axis groups run along (``0``: the ``K`` axis of a ``(K, N)``
            MatMul weight, as ONNX ``DequantizeLinear(axis=0)`` expects).
        symmetric: signed codes (int4 ``-8..7`` with ``s = max|w|/7``; int2
            ``-2..1``; int8 ``-128..127``) (True), or unsigned codes (uint4
            ``0..15``; uint2 ``0..3``; uint8 ``0..255``) with a zero point (False).
        scale_dtype: float32 or float16 (spec 3.4).
        int8_fallback: when ``w.shape[axis] < group_size``, quantize to 8 bits
            with one group per channel instead (spec 7), whatever ``bits``.
            False keeps ``bits`` with a single partial group.
        double_quant: store the scales in 8 bits (spec 11): the codes are
            then computed from the rebuilt float32 scales, packed once; the
            same tensor as ``double_quantize(quantize(w, ...), block_size=
            dq_block_size, w=w)``. Zero points stay those of the original scales.
        dq_block_size: scales per second-level block (spec 11.1).

    Returns:
        A :class:`QuantizedTensor`.

    Raises (spec 15, arguments checked in signature order):
        TypeError: ``w`` not a float array-like; ``bits``, ``group_size``, ``axis`` or
            ``dq_block_size`` not an int; a flag not a bool; ``scale_dtype``
            not a dtype-like.
        ValueError: ``w`` 0-d, empty or beyond float32; ``bits`` not 2, 4 or 8; ``group_size`` or
            ``dq_block_size`` < 1; ``axis`` out of range; ``scale_dtype`` not
            float32/float16; then non-finite ``w`` and float16 scale overflow.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    bits = int(check_choice(bits, BITS, "bits"))
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    symmetric = check_bool(symmetric, "symmetric")
    sdt = check_scale_dtype(scale_dtype)
    int8_fallback = check_bool(int8_fallback, "int8_fallback")
    double_quant = check_bool(double_quant, "double_quant")
    dq_block_size = check_positive_int(dq_block_size, "dq_block_size")
    length = w32.shape[axis]
    if int8_fallback and length < group_size:
        bits, group_size = 8, length
    if symmetric:
        scale = symmetric_scales(w32, group_size=group_size, axis=axis, bits=bits, scale_dtype=sdt)
        zp = None
    else:
        scale, zp = asymmetric_scales(w32, group_size=group_size, axis=axis, bits=bits, scale_dtype=sdt)
    # the scale functions raise for NaN/inf in w (spec 4.1): their reductions see them
    dq = None
    if double_quant:  # spec 11.2: the codes follow the rebuilt scales
        dq = quantize_scales(scale, block_size=dq_block_size)
        scale = dq.rebuild()
    return QuantizedTensor(
        data=packed_codes(w32, scale, zp, axis, group_size, bits),
        shape=w32.shape,
        axis=axis,
        block_size=group_size,
        scale=scale,
        zero_point=zp,
        signed=bool(symmetric),
        bits=bits,
        double_quant=dq,
    )
