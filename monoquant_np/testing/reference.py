"""Textbook reference implementations of the spec's formulas (spec chapters 2-7 and 10).

Each function writes one formula of ``spec/`` the obvious way, in plain NumPy,
one full-size temporary per step: group scales by ``ufunc.reduceat``, per-element
scales by ``np.repeat``, nibbles by strided slices, NF4 codes by a binary
search. None of them calls the package's kernels (slab-wise quantize + pack,
uint16 nibble pairs, nibble-plane ``dequant_matmul``, NF4 pair tables), so the
two can be compared: ``tests/core/test_fast_paths.py`` pins every optimized
path to these functions bit for bit, and ``tools/bench.py`` times them as the
"plain NumPy" peer of its rows.

Needs NumPy only (the NF4 midpoints and codebook are the package's constant
tables, not code under test).

    >>> import numpy as np
    >>> pack(np.array([1, -2, 7])).tolist()        # low nibble first, odd count padded with 0
    [225, 7]
    >>> unpack(np.array([0xE1, 0x07], np.uint8), 3, signed=True).tolist()
    [1, -2, 7]
    >>> r = quantize(np.array([[7.0], [0.5], [1.5], [2.5], [-0.5], [-2.5], [3.49], [-7.0]]), group_size=8)
    >>> r.scale.tolist(), unpack(r.data, 8, signed=True).tolist()   # spec 3.1's example
    ([[1.0]], [7, 0, 2, 2, 0, -2, 3, -7])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nf4 import NF4_MIDPOINTS
from ..tensor import QuantizedTensor

f32 = np.float32


class Quantized(NamedTuple):
    """What :func:`quantize` returns: the fields a ``QuantizedTensor`` stores.

    ``data`` uint8 (packed nibbles for 4 bits, one code per byte for 8);
    ``scale`` of ``scale_dtype`` and ``zero_point`` uint8 (``None`` when
    symmetric), both of the group shape; ``bits`` 4 or 8; ``group_size`` the
    effective group (the whole axis for the int8 fallback).
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    bits: int
    group_size: int


def expand_groups(g: np.ndarray, axis: int, group_size: int, length: int) -> np.ndarray:
    """Per-group values repeated to every element of their group (spec 2.1, 2.2).

    ``g`` has ``ceil(length / group_size)`` entries along ``axis``; the result
    has ``length``: element ``i`` takes ``g[i // group_size]``, the partial last
    group included.
    """
    rep = np.repeat(g, group_size, axis=axis)  # ceil(length / group_size) * group_size along axis
    return rep[(slice(None),) * axis + (slice(0, length),)]


def reduce_groups(ufunc: np.ufunc, w: np.ndarray, axis: int, group_size: int) -> np.ndarray:
    """``ufunc`` reduced over each group of ``group_size`` elements along ``axis`` (spec 2.1, 2.2).

    The whole groups are reshaped to ``(..., n_full, group_size, ...)`` and reduced
    over their last axis; the partial last group, if any, is reduced on its own
    and appended. Result: ``ceil(S[axis] / group_size)`` entries along ``axis``.
    """
    length = w.shape[axis]
    full = length // group_size * group_size
    head, tail = np.split(w, [full], axis=axis)
    groups = head.reshape(w.shape[:axis] + (full // group_size, group_size) + w.shape[axis + 1:])
    parts = [ufunc.reduce(groups, axis=axis + 1)]  # (..., n_full, ...)
    if full < length:
        parts.append(ufunc.reduce(tail, axis=axis, keepdims=True))  # (..., 1, ...)
    return np.concatenate(parts, axis=axis)


def codes(w: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, group_size: int,
          bits: int = 4) -> np.ndarray:
    """The codes of ``w`` for given group scales (spec 3.1, 3.2, 3.3, 4.2).

    ``q = clip(rint(w / s) + z, qmin, qmax)`` in float32, with ``z = 0`` and
    ``[qmin, qmax] = [-2^(bits-1), 2^(bits-1) - 1]`` when ``zero_point`` is None
    (int8 codes), else ``[0, 2^bits - 1]`` (uint8 codes). Where the stored scale
    is 0, ``q = z`` (0 when symmetric), with no division.
    """
    signed = zero_point is None
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    length = w.shape[axis]
    s32 = scale.astype(f32)
    q = np.asarray(w, dtype=f32) / expand_groups(np.where(s32 == 0, f32(1), s32), axis, group_size, length)
    np.rint(q, out=q)
    if zero_point is not None:
        q += expand_groups(zero_point.astype(f32), axis, group_size, length)
    np.clip(q, qmin, qmax, out=q)
    zero = expand_groups(s32 == 0, axis, group_size, length)
    q[zero] = 0 if zero_point is None else expand_groups(zero_point, axis, group_size, length)[zero]
    return q.astype(np.int8 if signed else np.uint8)


def pack(c: np.ndarray) -> np.ndarray:
    """4-bit codes packed two per byte, in C order (spec 5.1).

    ``byte[i] = (c[2i] & 0xF) | (c[2i + 1] & 0xF) << 4``; an odd count is padded
    with a 0 nibble. Any integer dtype (two's complement for negative codes).
    """
    flat = c.reshape(-1).astype(np.uint8) & 0xF  # the integer cast keeps the low bits
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return flat[0::2] | (flat[1::2] << 4)


def unpack(packed: np.ndarray, count: int, signed: bool) -> np.ndarray:
    """The first ``count`` codes of packed bytes (spec 5.1): the inverse of :func:`pack`.

    Code ``2i`` is ``byte[i] & 0xF``, code ``2i + 1`` is ``byte[i] >> 4``;
    signed codes are sign-extended (``(c ^ 8) - 8``, int8), unsigned stay uint8.
    """
    b = np.asarray(packed, dtype=np.uint8)
    c = np.stack([b & 0xF, b >> 4], axis=1).reshape(-1)[:count]  # (2 * bytes,)[:count]
    return (c ^ 8).view(np.int8) - np.int8(8) if signed else c


def pack2(c: np.ndarray) -> np.ndarray:
    """2-bit codes packed four per byte, in C order (spec 20.3): ``byte[i] = sum_j (c[4i+j] & 3) << 2j``,
    the count padded with 0 codes to a multiple of 4."""
    flat = c.reshape(-1).astype(np.uint8) & 3
    flat = np.append(flat, np.zeros(-flat.size % 4, np.uint8)).reshape(-1, 4)  # (bytes, 4)
    return flat[:, 0] | (flat[:, 1] << 2) | (flat[:, 2] << 4) | (flat[:, 3] << 6)


def unpack2(packed: np.ndarray, count: int, signed: bool) -> np.ndarray:
    """The first ``count`` 2-bit codes (spec 20.3): ``(byte[i] >> 2j) & 3``, sign-extended
    (``(c ^ 2) - 2``, int8) when ``signed``. The inverse of :func:`pack2`."""
    b = np.asarray(packed, dtype=np.uint8)
    c = np.stack([(b >> (2 * j)) & 3 for j in range(4)], axis=1).reshape(-1)[:count]
    return (c ^ 2).view(np.int8) - np.int8(2) if signed else c


def quantize(w: np.ndarray, group_size: int = 128, axis: int = 0, symmetric: bool = True,
             scale_dtype: type = np.float32, bits: int = 4) -> Quantized:
    """Group-wise quantization and packing of ``w`` (spec 3, 4, 5 and 7).

    Float32 throughout. Symmetric: ``s = max|w_g| / qmax``; asymmetric:
    ``lo = min(min w_g, 0)``, ``hi = max(max w_g, 0)``, ``s = (hi - lo) / qmax``,
    ``z = clip(rint(-lo / s), 0, qmax)`` (0 where the stored ``s`` is 0), with
    ``qmax`` 7 / 15 for 4 bits (1 / 3 for 2, 127 / 255 for 8). ``s`` is rounded to ``scale_dtype`` before the
    codes (:func:`codes`) are computed from it. An axis shorter than one group
    takes the int8 fallback (spec 7): 8 bits, one group over the whole axis,
    ``qmax`` 127 / 255, one code per byte.
    """
    w32 = np.asarray(w, dtype=f32)  # no copy when already float32
    group = group_size
    if 0 < w32.shape[axis] < group:
        bits, group = 8, w32.shape[axis]
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        s = (reduce_groups(np.maximum, np.abs(w32), axis, group) / f32(qmax)).astype(scale_dtype)
        z = None
    else:
        qmax = (1 << bits) - 1
        lo = np.minimum(reduce_groups(np.minimum, w32, axis, group), f32(0))
        hi = np.maximum(reduce_groups(np.maximum, w32, axis, group), f32(0))
        s = ((hi - lo) / f32(qmax)).astype(scale_dtype)
        s32 = s.astype(f32)
        z = np.clip(np.rint(-lo / np.where(s32 == 0, f32(1), s32)), 0, qmax)
        z[s32 == 0] = 0
        z = z.astype(np.uint8)
    q = codes(w32, s, z, axis, group, bits)
    data = pack(q) if bits == 4 else pack2(q) if bits == 2 else q.reshape(-1).view(np.uint8)
    return Quantized(data, s, z, bits, group)


def dequantize(qt: QuantizedTensor) -> np.ndarray:
    """``w' = (v - z) * s`` in float32 (spec 6.1), ``v`` the code or ``codebook[code]``.

    Codes are read from ``qt.data`` directly (:func:`unpack` for 4 bits,
    :func:`unpack2` for 2, one byte per code for 8); ``z`` and ``s`` are repeated to every element of their
    group. Shape ``qt.shape``.
    """
    if qt.bits == 4:
        c = unpack(qt.data, qt.size, qt.signed).reshape(qt.shape)
    elif qt.bits == 2:
        c = unpack2(qt.data, qt.size, qt.signed).reshape(qt.shape)
    else:
        c = np.asarray(qt.data).reshape(-1).view(np.int8 if qt.signed else np.uint8)[: qt.size].reshape(qt.shape)
    v = qt.codebook[c] if qt.codebook is not None else c.astype(f32)  # a new float32 array
    length = qt.shape[qt.axis]
    if qt.zero_point is not None:
        v -= expand_groups(qt.zero_point.astype(f32), qt.axis, qt.block_size, length)
    v *= expand_groups(qt.scale.astype(f32), qt.axis, qt.block_size, length)
    return v


def dequant_matmul(x: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """``x @ dequantize(qt)``, dequantize-then-matmul (spec 6.2): float32 ``(M, N)``
    for ``x`` ``(M, K)`` and a ``(K, N)`` weight; the whole float weight is a temporary."""
    return x @ dequantize(qt)


def nf4_quantize(w: np.ndarray, block_size: int = 64, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NF4 rounding (spec 10.2): ``(codes, absmax)``, codes uint8 unpacked, shape of ``w``.

    ``a = max|w_b|`` per block (float32), ``p = 2**24`` where ``a`` is
    subnormal (else 1), ``r = float32(1 / (a * p))`` (0 where ``a == 0``),
    ``x = float32((w * p) * r)``, ``q = searchsorted(NF4_MIDPOINTS, x,
    side="left")``: a binary search per element, equal to the spec's
    ``#{i : m[i] < x}`` for every finite ``x``.
    """
    w32 = np.asarray(w, dtype=f32)  # no copy when already float32
    absmax = reduce_groups(np.maximum, np.abs(w32), axis, block_size)  # group shape
    p = np.where(absmax < np.finfo(f32).tiny, f32(2.0**24), f32(1)).astype(f32)  # lifts subnormal blocks exactly
    r = np.where(absmax == 0, f32(0), f32(1) / np.where(absmax == 0, f32(1), absmax * p)).astype(f32)
    length = w32.shape[axis]
    x = (w32 * expand_groups(p, axis, block_size, length)) * expand_groups(r, axis, block_size, length)  # float32
    return np.searchsorted(NF4_MIDPOINTS, x, side="left").astype(np.uint8), absmax
