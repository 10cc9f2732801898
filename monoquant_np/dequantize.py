"""Dequantization and bits per weight (spec sections 6.1 and 6.3).

For every element, with ``j = index // G`` its group along ``qt.axis``::

    w' = (q - z[j]) * s[j]          (z = 0 when symmetric)
    w' = codebook[q] * s[j]         (NF4, spec 10)

in float32: ``q - z`` is exact, ``* s`` one correctly rounded float32
multiplication (float16 scales are widened exactly first).

    >>> from monoquant_np.quantize import quantize
    >>> qt = quantize(np.array([[0.0, -7.0], [3.5, 1.0]], dtype=np.float32), group_size=2)
    >>> dequantize(qt).tolist(), bits_per_weight(qt)
    ([[0.0, -7.0], [3.5, 1.0]], 20.0)

Performance: the codes of a row range are decoded at once (NF4: one lookup
per byte, ``packing.lookup_pairs``) and scaled in place, group by group
through a reshaped view; for contiguous full groups the scaling runs in long
inner loops (``groups.apply_rows``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import check_dtype
from .groups import apply_rows, index_along, split_groups
from .packing import lookup_pairs, packed_size, pair_table, storage_size, unpack_codes, unpack_int4
from .tensor import QuantizedTensor, check_qt

__all__ = ["dequantize", "dequantize_slice", "bits_per_weight", "OUTPUT_DTYPES"]

#: The dtypes :func:`dequantize` returns.
OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))


def _slice_codes(qt: QuantizedTensor, start: int, stop: int) -> np.ndarray:
    """Codes of rows ``start:stop`` along axis 0 as float32, shape ``(stop-start, *shape[1:])``."""
    inner = int(np.prod(qt.shape[1:]))
    lo, hi = start * inner, stop * inner
    if qt.codebook is not None and qt.bits == 4:  # both codes of a byte in one lookup
        b0, b1 = lo // 2, packed_size(hi)
        vals = np.empty(2 * (b1 - b0), np.float32)
        lookup_pairs(pair_table(qt.codebook), qt.data[b0:b1], vals)
        return vals[lo - 2 * b0 : hi - 2 * b0].reshape((stop - start,) + qt.shape[1:])
    if qt.bits == 4:
        b0 = lo // 2
        flat = unpack_int4(qt.data[b0 : packed_size(hi)], hi - 2 * b0, signed=qt.signed)[lo - 2 * b0 :]
    elif qt.bits == 2:
        b0 = lo // 4
        flat = unpack_codes(qt.data[b0 : storage_size(hi, 2)], hi - 4 * b0, 2, qt.signed)[lo - 4 * b0 :]
    else:
        flat = qt.data[lo:hi].view(np.int8) if qt.signed else qt.data[lo:hi]
    rows = flat.reshape((stop - start,) + qt.shape[1:])
    if qt.codebook is not None:
        return np.take(qt.codebook, rows, mode="wrap")  # codes 0..15 index 16 entries: no bounds check needed
    return rows.astype(np.float32)


def _scale_in_place(v: np.ndarray, s: np.ndarray, z: np.ndarray | None) -> None:
    """``v = (v - z) * s`` in place, ``s``/``z`` broadcasting against ``v``."""
    if z is not None:
        v -= z.astype(np.float32)
    v *= s


def _scale_groups(head: np.ndarray, s: np.ndarray, z: np.ndarray | None, axis: int) -> None:
    """:func:`_scale_in_place` on the full groups ``head`` ``(..., n, group, ...)``
    (groups on ``axis + 1``) against ``s``/``z`` ``(..., n, 1, ...)``: through
    :func:`~monoquant_np.groups.apply_rows` (long inner loops) when ``head`` is
    C-contiguous, else by broadcasting. The same operations either way."""
    if not head.flags.c_contiguous:
        _scale_in_place(head, s, z)
        return
    group, inner = head.shape[axis + 1], int(np.prod(head.shape[axis + 2 :]))
    x3 = head.reshape(-1, group, inner)  # (lead * n, group, inner): a view
    if z is not None:
        apply_rows(np.subtract, x3, np.ascontiguousarray(z, dtype=np.float32).reshape(x3.shape[0], 1, -1))
    apply_rows(np.multiply, x3, np.ascontiguousarray(s).reshape(x3.shape[0], 1, -1))


def _dequantize_along(vals: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, group: int) -> None:
    """Scale float codes ``vals`` in place; groups of ``group`` run along ``axis``
    from index 0 and ``scale``/``zp`` hold one entry per group on that axis."""
    head, tail = split_groups(vals, axis, group)
    n = head.shape[axis] if head is not None else 0
    if head is not None:  # (..., n, group, ...) against (..., n, 1, ...)
        sl = index_along(scale.ndim, axis, slice(0, n))
        _scale_groups(
            head, np.expand_dims(scale[sl], axis + 1), None if zp is None else np.expand_dims(zp[sl], axis + 1), axis
        )
    if tail is not None:
        sl = index_along(scale.ndim, axis, slice(n, n + 1))
        _scale_in_place(tail, scale[sl], None if zp is None else zp[sl])


def dequantize_slice(qt: QuantizedTensor, start: int, stop: int) -> np.ndarray:
    """Dequantize the stored rows ``start:stop`` along axis 0, ignoring ``perm`` (float32).

    Works for any ``qt.axis``; memory is proportional to the slice. Used by
    :func:`monoquant_np.matmul.dequant_matmul` to stay chunked.
    """
    vals = _slice_codes(qt, start, stop)  # (rows, *shape[1:])
    scale = np.asarray(qt.scale, dtype=np.float32)  # float16 widened exactly; float32 used as is, not copied
    zp = qt.zero_point
    if qt.axis == 0:
        bs = qt.block_size
        g0 = start // bs
        first = min(stop, (g0 + 1) * bs) - start if start % bs else 0  # rows in a group begun before start
        if first:
            _scale_in_place(vals[:first], scale[g0 : g0 + 1], None if zp is None else zp[g0 : g0 + 1])
            g0 += 1
        rest = vals[first:]
        if rest.shape[0]:
            g1 = g0 + -(-rest.shape[0] // bs)
            _dequantize_along(rest, scale[g0:g1], None if zp is None else zp[g0:g1], 0, bs)
    else:  # axis 0 is not the group axis: scale rows are weight rows
        _dequantize_along(
            vals, scale[start:stop], None if zp is None else zp[start:stop], qt.axis, qt.block_size
        )
    return vals


def dequantize(qt: QuantizedTensor, dtype: Any = np.float32) -> np.ndarray:
    """Rebuild the weight: ``w' = (q - z) * s`` (``codebook[q] * s`` for NF4), spec 6.

    Arithmetic is float32 (float16 scales are widened exactly); the result is
    cast to ``dtype`` (float32 by default; float16 or float64 allowed:
    :data:`OUTPUT_DTYPES`, checked as in spec 15.1).
    Shape: ``qt.shape``. An undone ``perm`` restores the original order.
    """
    check_qt(qt)
    dt = check_dtype(dtype, OUTPUT_DTYPES, "dtype")
    out = dequantize_slice(qt, 0, qt.shape[0]) if qt.size else np.zeros(qt.shape, np.float32)
    if qt.perm is not None:
        out = np.take(out, np.argsort(qt.perm), axis=qt.axis)
    return out.astype(dt, copy=False)


def bits_per_weight(qt: QuantizedTensor) -> float:
    """Storage bits per weight, all metadata included (spec 6.3).

    ``8 * (data bytes + scale bytes + packed zero-point bytes) / size``; with
    double quantization the 8-bit scale codes, their float32 block scales and
    the float32 offset replace the scales. Zero points are counted packed at
    the code width (``storage_size(n_groups, bits)`` bytes). The NF4 codebook is a constant of
    the format and is not counted; neither is ``perm`` (it is not a property
    of the weight's storage in the exported graph, where it is a permutation
    of the activations).
    """
    check_qt(qt)
    if qt.size == 0:
        return 0.0
    nbytes = qt.data.nbytes
    if qt.fp_scales is not None:  # 8-bit block scales (+ NVFP4's float32 tensor scale), spec 18, 19
        nbytes += qt.fp_scales.nbytes()
    else:
        nbytes += qt.double_quant.nbytes() if qt.double_quant is not None else qt.scale.nbytes
    if qt.zero_point is not None:
        nbytes += storage_size(qt.zero_point.size, qt.bits)
    return 8.0 * nbytes / qt.size
