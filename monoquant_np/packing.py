"""Nibble packing: the one definition of nibble order (spec section 5).

Codes are flattened row-major (C order). Element ``2i`` goes to the low nibble
of byte ``i`` and element ``2i + 1`` to its high nibble; an odd count is padded
with a zero high nibble. This is ONNX's convention for ``INT4``/``UINT4``
tensors (onnx.helper.pack_float32_to_4bit).

    >>> pack_int4(np.array([1, -2, 7], dtype=np.int8))
    array([225,   7], dtype=uint8)

(``-2`` is ``0b1110`` = ``0xE``, so the first byte is ``0xE1`` = 225.)

# Note: bitsandbytes puts the first element in the *high* nibble, and GGUF
# Q4_0 pairs element ``j`` with ``j + 16`` of its 32-block; those dialects are
# in ``monoquant_np.formats`` and are built on the functions here.

2-bit codes (spec 20.3) go four per byte, element ``4i + j`` in bits
``2j .. 2j+1`` (element ``4i`` lowest), as ONNX packs ``INT2``/``UINT2``;
8-bit codes take one byte each. :func:`pack_codes`, :func:`unpack_codes` and
:func:`storage_size` dispatch on the width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import check_bool, check_int, check_int_array, check_uint8

__all__ = ["pack_int4", "unpack_int4", "pack_int2", "unpack_int2", "pack_codes", "unpack_codes",
           "storage_size", "packed_size", "pack_crumbs_into", "pack_bytes_into", "pack_slabs",
           "slab_rows", "pack_grouped", "pair_table", "lookup_pairs"]

#: Packed bytes handled per step by the unpacking loop (the step's output stays in L2).
_CHUNK = 1 << 18


def packed_size(count: int) -> int:
    """Number of bytes that hold ``count`` 4-bit codes: ``ceil(count / 2)``."""
    return (count + 1) // 2


def storage_size(count: int, bits: int) -> int:
    """Bytes that hold ``count`` codes of ``bits`` (2, 4 or 8) bits: ``ceil(count * bits / 8)``.

    >>> storage_size(5, 2), storage_size(5, 4), storage_size(5, 8)
    (2, 3, 5)
    """
    per = 8 // bits
    return (count + per - 1) // per


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """The storage bytes of a tensor's codes (``QuantizedTensor.data``, spec 5, 7 and 20).

    2 bits: :func:`pack_int2`. 4 bits: :func:`pack_int4`. 8 bits: one byte
    per code in C order, int8 codes as their two's complement byte. Returns
    a new uint8 array.
    """
    if bits == 4:
        return pack_int4(codes)
    if bits == 2:
        return pack_int2(codes)
    return np.ascontiguousarray(codes).reshape(-1).view(np.uint8).copy()


def unpack_codes(data: np.ndarray, count: int, bits: int, signed: bool) -> np.ndarray:
    """The first ``count`` codes of ``bits``-wide storage ``data`` (the inverse of :func:`pack_codes`):
    1-D int8 when ``signed``, else uint8.

    >>> unpack_codes(np.array([0xE1, 0x07], np.uint8), 3, 4, True).tolist()
    [1, -2, 7]
    >>> unpack_codes(np.array([0x2D], np.uint8), 4, 2, True).tolist()
    [1, -1, -2, 0]
    """
    if bits == 4:
        return unpack_int4(data, count, signed=signed)
    if bits == 2:
        return unpack_int2(data, count, signed=signed)
    flat = data.reshape(-1)[:count]
    return flat.view(np.int8) if signed else flat


def pack_int2(codes: np.ndarray) -> np.ndarray:
    """Pack 2-bit codes, four per byte, element ``4i`` in the lowest bits (spec 20.3).

    Args:
        codes: integer array of any shape (or a list of ints), values in
            ``-2..3`` (int2 codes ``-2..1`` or uint2 codes ``0..3``);
            flattened in C order.

    Returns:
        uint8 array of shape ``(ceil(codes.size / 4),)``:
        ``byte[i] = sum_j (c[4i+j] & 3) << 2j``, missing codes 0.

    >>> pack_int2(np.array([1, -1, -2, 0, 3])).tolist()  # 0b00_10_11_01 = 0x2D, then 0x03
    [45, 3]
    """
    flat = check_int_array(codes, "codes").reshape(-1)
    if flat.size and (int(flat.min()) < -2 or int(flat.max()) > 3):
        raise ValueError(
            f"codes must lie in -2..3 (int2 or uint2), got values in {int(flat.min())}..{int(flat.max())}"
        )
    crumbs = flat.view(np.uint8) if flat.dtype.itemsize == 1 else flat.astype(np.uint8)
    out = np.empty(storage_size(crumbs.size, 2), dtype=np.uint8)
    pack_crumbs_into(crumbs, out)
    return out


def pack_crumbs_into(crumbs: np.ndarray, out: np.ndarray) -> None:
    """Pack the low two bits of the bytes ``crumbs`` (1-D uint8) into ``out``:
    ``out[i] = sum_j (crumbs[4i+j] & 3) << 2j`` for the ``ceil(crumbs.size / 4)``
    bytes of ``out`` (missing codes 0). :func:`pack_int2` without its checks."""
    n = crumbs.size
    full = n // 4
    if full:
        # each little-endian uint32 holds four codes in bytes 0..3; gather bits 0-1 of each byte
        q = np.ascontiguousarray(crumbs[: 4 * full]).view("<u4") & np.uint32(0x03030303)  # (full,)
        q |= q >> np.uint32(6)  # bits 0-3: codes 0, 1; bits 16-19: codes 2, 3
        q |= q >> np.uint32(12)  # bits 0-7: codes 0..3
        np.copyto(out[:full], q, casting="unsafe")  # keeps the low byte: codes 0..3
    rest = crumbs[4 * full :]
    if rest.size:
        out[full] = sum((int(c) & 3) << (2 * j) for j, c in enumerate(rest))


def unpack_int2(packed: np.ndarray, count: int, *, signed: bool = True) -> np.ndarray:
    """Unpack ``count`` 2-bit codes from bytes packed by :func:`pack_int2`.

    Returns a 1-D array of shape ``(count,)``: ``c[4i+j] = (byte[i] >> 2j) & 3``,
    sign-extended from bit 1 (int8 ``-2..1``) when ``signed``, else uint8 ``0..3``.
    Errors as :func:`unpack_int4`.

    >>> unpack_int2(np.array([0x2D, 0x03], np.uint8), 5, signed=False).tolist()
    [1, 3, 2, 0, 3]
    """
    check_uint8(packed, "packed")
    count = check_int(count, "count", minimum=0)
    signed = check_bool(signed, "signed")
    flat = packed.reshape(-1)
    nbytes = storage_size(int(count), 2)
    if flat.size < nbytes:
        raise ValueError(
            f"packed holds {flat.size} byte(s) = {4 * flat.size} codes, "
            f"fewer than count={count} needs ({nbytes} bytes)"
        )
    src = flat[:nbytes]
    codes = np.empty((nbytes, 4), dtype=np.uint8)  # (nbytes, 4)
    for j in range(4):
        np.right_shift(src, np.uint8(2 * j), out=codes[:, j])
    codes &= np.uint8(3)
    out = codes.reshape(-1)[: int(count)]
    if signed:  # (c ^ 2) - 2 sign-extends bit 1
        out ^= np.uint8(2)
        signed_out = out.view(np.int8)
        signed_out -= np.int8(2)
        return signed_out
    return out


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """Pack 4-bit codes, two per byte, low nibble first (spec 5.1).

    Args:
        codes: integer array of any shape (or anything ``np.asarray`` makes
            an integer array of: a list of ints), values in ``-8..15`` (int4
            codes ``-8..7`` or uint4 codes ``0..15``); flattened in C order.

    Returns:
        uint8 array of shape ``(ceil(codes.size / 2),)``:
        ``byte[i] = (c[2i] & 0xF) | ((c[2i+1] & 0xF) << 4)``, ``c[size] = 0``.

    >>> pack_int4(np.array([[1, 2, 3, 4], [5, 6, 7, 8]])).tolist()  # onnx-ir's vector
    [33, 67, 101, 135]
    """
    flat = check_int_array(codes, "codes").reshape(-1)
    if flat.size and (int(flat.min()) < -8 or int(flat.max()) > 15):
        raise ValueError(
            f"codes must lie in -8..15 (int4 or uint4), got values in "
            f"{int(flat.min())}..{int(flat.max())}"
        )
    # Two's complement wrap: -2 -> 0xFE, whose low nibble 0xE is the int4 code.
    nib = flat.view(np.uint8) if flat.dtype.itemsize == 1 else flat.astype(np.uint8)
    out = np.empty(packed_size(nib.size), dtype=np.uint8)
    pack_bytes_into(nib, out)
    return out


def pack_bytes_into(nib: np.ndarray, out: np.ndarray) -> None:
    """Pack the low nibbles of the bytes ``nib`` (1-D uint8) into ``out``.

    ``out[i] = (nib[2i] & 0xF) | ((nib[2i+1] & 0xF) << 4)`` for the
    ``ceil(nib.size / 2)`` bytes of ``out`` (1-D uint8, contiguous); the high
    nibble of the last byte is 0 when ``nib.size`` is odd. This is
    :func:`pack_int4` without its checks; the quantizer packs slab by slab
    through it.
    """
    n = nib.size
    half = n // 2
    if half:
        # Each little-endian uint16 holds a pair: bits 0-3 the even code's
        # nibble, bits 8-11 the odd one's; move the latter to bits 4-7.
        pairs = np.ascontiguousarray(nib[: 2 * half]).view("<u2")  # (half,)
        hi = np.right_shift(pairs, np.uint16(4))
        np.bitwise_and(hi, np.uint16(0xF0), out=hi)
        lo = np.bitwise_and(pairs, np.uint16(0x0F))
        np.bitwise_or(lo, hi, out=lo)
        np.copyto(out[:half], lo, casting="unsafe")  # values < 256: exact
    if n % 2:
        out[half] = nib[n - 1] & 0xF


def slab_rows(group: int, inner: int, elements: int, bits: int = 4) -> int:
    """Rows per slab for :func:`pack_slabs` of a ``(rows, inner)`` code array
    grouped along its rows: whole groups of ``group`` rows, about ``elements``
    codes (at least one group) and a count of codes that fills whole bytes
    (even for 4 bits, a multiple of 4 for 2 bits), so that every slab but
    the last starts on a byte boundary.

    >>> slab_rows(3, 5, 40), slab_rows(4, 5, 40), slab_rows(3, 5, 40, bits=2)
    (6, 8, 12)
    """
    groups = max(1, elements // max(1, group * inner))
    if bits == 4 and (groups * group * inner) % 2:
        groups += 1
    while bits == 2 and (groups * group * inner) % 4:
        groups += 1
    return groups * group


def pack_slabs(codes_of: Callable[[int, int], np.ndarray], rows: int, inner: int, step: int,
               bits: int = 4) -> np.ndarray:
    """The storage bytes of a ``(rows, inner)`` code array made slab by slab.

    ``codes_of(r0, r1)`` returns the codes of rows ``r0:r1`` (``(r1 - r0,
    inner)``, any 1-byte integer dtype); slabs are ``step`` rows, so each
    slab's codes are packed (:func:`pack_bytes_into`) while still in cache
    and no full-size code array exists. Returns the bytes
    ``pack_codes(codes, bits)`` of the whole array, bit-identical.

    Raises:
        ValueError: slabs whose element count (``step * inner``) does not
            fill whole bytes (odd at 4 bits, not a multiple of 4 at 2 bits).
    """
    per = 8 // bits
    if (step * inner) % per and step < rows:
        raise ValueError(f"step * inner must be a multiple of {per} for {bits}-bit slabs, "
                         f"got step={step}, inner={inner}")
    data = np.empty(storage_size(rows * inner, bits), np.uint8)
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        flat = codes_of(r0, r1).reshape(-1).view(np.uint8)
        if bits == 4:
            pack_bytes_into(flat, data[r0 * inner // 2 : packed_size(r1 * inner)])
        elif bits == 2:
            pack_crumbs_into(flat, data[r0 * inner // 4 : storage_size(r1 * inner, 2)])
        else:
            data[r0 * inner : r1 * inner] = flat
    return data


def pack_grouped(codes_of: Callable[[np.ndarray, list, int], np.ndarray], w: np.ndarray,
                 per_group: list, axis: int, group_size: int, elements: int, bits: int = 4) -> np.ndarray | None:
    """The storage bytes of the codes of ``w`` grouped along ``axis``, made by
    :func:`pack_slabs`, or ``None`` where slabs do not apply (``w`` 1-D or
    empty, or groups along a middle axis).

    ``codes_of(w_slab, per_group_slabs, slab_axis)`` returns the codes of a
    2-D slab of ``w``; ``per_group`` holds the group-wise arrays (scales,
    zero points, or ``None``), shaped ``group_shape(w.shape, axis, group_size)``.
    Groups along axis 0: ``w`` as ``(K, inner)``, slabs of whole groups of
    rows (``slab_axis`` 0). Groups along the last axis: ``w`` as ``(rows,
    L)``, slabs of whole rows (``slab_axis`` 1), contiguous, instead of one
    strided column of groups at a time. About ``elements`` codes per slab.
    """
    if w.ndim < 2 or w.size == 0 or axis not in (0, w.ndim - 1):
        return None
    if axis == 0:
        rows = w.shape[0]
        inner = w.size // rows
        w2 = w.reshape(rows, inner)  # (K, inner)
        p2 = [None if a is None else a.reshape(a.shape[0], inner) for a in per_group]  # (G, inner)

        def slab(r0: int, r1: int) -> np.ndarray:
            return codes_of(w2[r0:r1], [None if a is None else a[r0 // group_size : -(-r1 // group_size)]
                                        for a in p2], 0)

        return pack_slabs(slab, rows, inner, slab_rows(group_size, inner, elements, bits), bits)
    inner = w.shape[-1]
    rows = w.size // inner
    w2 = w.reshape(rows, inner)  # (rows, L): groups along L
    p2 = [None if a is None else a.reshape(rows, a.shape[-1]) for a in per_group]  # (rows, G)

    def row_slab(r0: int, r1: int) -> np.ndarray:
        return codes_of(w2[r0:r1], [None if a is None else a[r0:r1] for a in p2], 1)

    return pack_slabs(row_slab, rows, inner, slab_rows(1, inner, elements, bits), bits)


def unpack_int4(packed: np.ndarray, count: int, *, signed: bool = True) -> np.ndarray:
    """Unpack ``count`` 4-bit codes from bytes packed by :func:`pack_int4`.

    Args:
        packed: uint8 ndarray of at least ``ceil(count / 2)`` bytes (any
            shape, flattened in C order); another dtype or a list is a
            ``TypeError`` (spec 15.2).
        count: number of codes to return.
        signed: True for int4 codes (``-8..7``, returned as int8), False for
            uint4 codes (``0..15``, returned as uint8).

    Returns:
        1-D array of shape ``(count,)``: ``c[2i] = byte[i] & 0xF``,
        ``c[2i+1] = byte[i] >> 4``, sign-extended from bit 3 when ``signed``.

    >>> unpack_int4(np.array([0xE1, 0x07], dtype=np.uint8), 3).tolist()
    [1, -2, 7]
    """
    check_uint8(packed, "packed")
    count = check_int(count, "count", minimum=0)
    signed = check_bool(signed, "signed")
    flat = packed.reshape(-1)
    nbytes = packed_size(int(count))
    if flat.size < nbytes:
        raise ValueError(
            f"packed holds {flat.size} byte(s) = {2 * flat.size} codes, "
            f"fewer than count={count} needs ({nbytes} bytes)"
        )
    src = flat[:nbytes]
    codes = np.empty(2 * nbytes, dtype=np.uint8)
    pairs = codes.view("<u2")  # (nbytes,): byte 2i = low nibble, byte 2i+1 = high nibble
    flipped = np.empty(min(_CHUNK, nbytes), dtype=np.uint8) if signed else None
    for i in range(0, nbytes, _CHUNK):
        j = min(i + _CHUNK, nbytes)
        b, p = src[i:j], pairs[i:j]
        if flipped is not None:  # n ^ 8 for both nibbles: -8..7 -> 0..15, offset by 8
            b = np.bitwise_xor(b, np.uint8(0x88), out=flipped[: j - i])
        np.multiply(b, np.uint16(16), out=p)  # 0x00HL -> 0x0HL0
        np.bitwise_or(p, b, out=p)  # 0x0H(H|L)L
        np.bitwise_and(p, np.uint16(0x0F0F), out=p)  # 0x0H0L
        if flipped is not None:  # (n ^ 8) - 8 is the sign-extended nibble
            c = codes[2 * i : 2 * j].view(np.int8)
            np.subtract(c, np.int8(8), out=c)
    codes = codes[: int(count)]
    return codes.view(np.int8) if signed else codes


def pair_table(values: np.ndarray) -> np.ndarray:
    """``(256,)`` uint64: entry ``b`` holds the float32 pair ``(values[b & 15],
    values[b >> 4])`` in memory order, the two decoded codes of byte ``b``
    (low nibble first, spec 5.1). ``values``: 16 float32 (a codebook).

    >>> pair_table(np.arange(16, dtype=np.float32))[0x21:0x22].view(np.float32).tolist()
    [1.0, 2.0]
    """
    v = np.asarray(values)
    if v.shape != (16,) or v.dtype.kind != "f":
        raise ValueError(f"values must be 16 floats (a 4-bit codebook), got shape {v.shape} dtype {v.dtype}")
    b = np.arange(256)
    pair = np.stack([v[b & 15], v[b >> 4]], axis=1).astype(np.float32)  # (256, 2)
    return pair.view(np.uint64).reshape(256)


def lookup_pairs(table: np.ndarray, packed: np.ndarray, out: np.ndarray) -> None:
    """``out[2i], out[2i+1] = values[lo], values[hi]`` of byte ``packed[i]``:
    one lookup per byte in ``table`` (:func:`pair_table`), in chunks of
    ``_CHUNK`` bytes (``np.take`` widens its indices to 8 bytes each).

    Shapes: ``packed`` 1-D uint8 ``(n,)``; ``out`` 1-D contiguous float32 ``(2n,)``.

    >>> out = np.empty(4, np.float32)
    >>> lookup_pairs(pair_table(np.arange(16, dtype=np.float32) / 2), np.array([0x21, 0xF0], np.uint8), out)
    >>> out.tolist()
    [0.5, 1.0, 0.0, 7.5]
    """
    if not isinstance(table, np.ndarray) or table.dtype != np.uint64 or table.shape != (256,):
        raise ValueError(f"table must be pair_table(values): uint64 (256,), got {_describe(table)}")
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8 or packed.ndim != 1:
        raise ValueError(f"packed must be a 1-D uint8 array, got {_describe(packed)}")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (2 * packed.size,)
            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a contiguous float32 array of shape ({2 * packed.size},) "
                         f"(two per byte), got {_describe(out)}")
    pairs = out.view(np.uint64)  # (n,)
    for i in range(0, packed.size, _CHUNK):
        np.take(table, packed[i : i + _CHUNK], out=pairs[i : i + _CHUNK], mode="wrap")  # 0..255: in range


def _describe(a: object) -> str:
    """``dtype (shape)`` of an array, else its type name: for error messages."""
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__

