"""Quantize (spec sections 3, 4 and 7); dequantization is :mod:`monoquant_np.dequantize` (spec 6).

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
    >>> from monoquant_np.dequantize import dequantize
    >>> dequantize(qt)[:2].tolist()
    [[0.0, -7.0], [3.5, 1.0]]

Performance (issue 8; every path is bit-identical to the formulas above):
the scales come from group reductions (``max``, ``min``; halving steps
along a contiguous last axis, ``groups.group_reduce``) over a reshaped
view, which also detect NaN/inf; codes are computed slab by slab
(``SLAB_BYTES`` of whole groups, broadcasting the group-wise scale through
a length-1 axis instead of repeating it) and, for groups along axis 0 or
the last axis, packed while the slab is still in cache. ``w / s`` stays a true division:
``w * (1 / s)`` rounds differently for some inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .double_quant import quantize_scales
from .errors import check_axis, check_float_array, check_positive_int
from .groups import _along, split_groups
from .numerics import SCALE_DTYPES, code_range, round_half_even, safe_scale
from .packing import pack_codes, pack_grouped
from .scales import asymmetric_scales, symmetric_scales
from .tensor import QuantizedTensor

__all__ = ["quantize", "quantize_codes"]


def _check_scale_dtype(scale_dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(scale_dtype)
    except TypeError:
        raise TypeError(f"scale_dtype must be float32 or float16, got {scale_dtype!r}") from None
    if dt not in SCALE_DTYPES:
        raise TypeError(f"scale_dtype must be float32 or float16, got {dt}")
    return dt


#: Float32 bytes of one slab of groups processed at once (fits in L2 cache).
SLAB_BYTES = 1 << 20


def _round_groups(
    w: np.ndarray, s: np.ndarray, z: np.ndarray | None, out: np.ndarray, qmin: int, qmax: int
) -> None:
    """``out = clip(rint(w / s) + z, qmin, qmax)``, ``z`` (or 0) where ``s == 0``.

    ``w`` and ``out`` have the same shape; ``s`` and ``z`` broadcast against
    it through a length-1 group axis. This is the spec's one rounding step.
    """
    zero = s == 0  # (..., groups, 1, ...)
    any_zero = bool(zero.any())
    q = np.divide(w, safe_scale(s) if any_zero else s, dtype=np.float32)
    round_half_even(q, out=q)
    if z is not None:
        q += z.astype(np.float32)
    np.clip(q, np.float32(qmin), np.float32(qmax), out=q)
    if any_zero:
        np.copyto(q, np.float32(0) if z is None else z.astype(np.float32), where=zero)
    np.copyto(out, q, casting="unsafe")  # integral values in range: exact


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
    out = np.empty(w.shape, np.int8 if signed else np.uint8)
    w_head, w_tail = split_groups(w, axis, group_size)
    o_head, o_tail = split_groups(out, axis, group_size)
    n_full = w_head.shape[axis] if w_head is not None else 0
    if w_head is not None and o_head is not None:
        # (..., n_full, 1, ...): group-wise values broadcast over the group axis
        s_head = np.expand_dims(scale[_along(scale.ndim, axis, slice(0, n_full))], axis + 1)
        z_head = None
        if zero_point is not None:
            z_head = np.expand_dims(zero_point[_along(zero_point.ndim, axis, slice(0, n_full))], axis + 1)
        per_group = max(1, w_head[_along(w_head.ndim, axis, slice(0, 1))].size)
        step = max(1, (SLAB_BYTES // 4) // per_group)  # groups per slab
        for g0 in range(0, n_full, step):
            sl = _along(w_head.ndim, axis, slice(g0, g0 + step))
            _round_groups(
                w_head[sl], s_head[sl], None if z_head is None else z_head[sl], o_head[sl], qmin, qmax
            )
    if w_tail is not None and o_tail is not None:
        last = _along(scale.ndim, axis, slice(n_full, n_full + 1))
        _round_groups(
            w_tail, scale[last], None if zero_point is None else zero_point[last], o_tail, qmin, qmax
        )
    return out


def _codes_packed(
    w: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, group_size: int, bits: int
) -> np.ndarray:
    """``pack_codes(quantize_codes(w, ...), bits)``, slab by slab when groups run
    along axis 0 or the last axis (:func:`~monoquant_np.packing.pack_grouped`).

    Each slab is about ``SLAB_BYTES`` of float32, so its codes are packed
    while still in cache. Bit-identical to the one-shot form: the codes come
    from :func:`quantize_codes` and the bytes from ``pack_slabs``, on the one
    definition of nibble order.
    """
    def codes_of(ws: np.ndarray, sz: list, ax: int) -> np.ndarray:
        return quantize_codes(ws, sz[0], sz[1], axis=ax, group_size=group_size, bits=bits)

    data = pack_grouped(codes_of, w, [scale, zp], axis, group_size, SLAB_BYTES // 4, bits)
    if data is None:
        return pack_codes(quantize_codes(w, scale, zp, axis=axis, group_size=group_size, bits=bits), bits)
    return data


def quantize(
    w: np.ndarray,
    *,
    group_size: int = 128,
    axis: int = 0,
    symmetric: bool = True,
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
    double_quant: bool = False,
    dq_block_size: int = 256,
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
        double_quant: store the scales in 8 bits (spec 11): the codes are
            then computed from the rebuilt float32 scales, packed once; the
            same tensor as ``double_quantize(quantize(w, ...), block_size=
            dq_block_size, w=w)``. Zero points stay those of the original scales.
        dq_block_size: scales per second-level block (spec 11.1).

    Returns:
        A :class:`QuantizedTensor`.

    Raises:
        TypeError: ``w`` is not a float array, ``scale_dtype`` is not a float,
            ``double_quant`` is not a bool.
        ValueError: non-finite ``w``, bad ``group_size``, ``axis`` or
            ``dq_block_size``, float16 scale overflow.
    """
    w32 = check_float_array(w, "w")
    group_size = check_positive_int(group_size, "group_size")
    axis = check_axis(axis, w32.ndim)
    sdt = _check_scale_dtype(scale_dtype)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if not isinstance(double_quant, (bool, np.bool_)):
        raise TypeError(f"double_quant must be a bool, got {type(double_quant).__name__}")
    dq_block_size = check_positive_int(dq_block_size, "dq_block_size")
    length = w32.shape[axis]
    if w32.size == 0:
        raise ValueError(f"w must have at least one element, got shape {w32.shape}")
    bits = 4
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
        data=_codes_packed(w32, scale, zp, axis, group_size, bits),
        shape=w32.shape,
        axis=axis,
        block_size=group_size,
        scale=scale,
        zero_point=zp,
        signed=bool(symmetric),
        bits=bits,
        double_quant=dq,
    )
