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
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_int4", "unpack_int4", "packed_size"]

# Lookup tables: byte -> its two codes, as one little-endian uint16 whose first
# byte is the low nibble's code and whose second byte is the high nibble's.
_BYTES = np.arange(256, dtype=np.uint16)
_LUT_U = (_BYTES & 0xF) | ((_BYTES >> 4) << 8)  # uint4 codes 0..15
_SIGNED = ((np.arange(16) ^ 8) - 8).astype(np.int8).view(np.uint8).astype(np.uint16)
_LUT_S = _SIGNED[_BYTES & 0xF] | (_SIGNED[_BYTES >> 4] << 8)  # int4 codes -8..7 as bytes
_LUT_U = _LUT_U.astype("<u2")
_LUT_S = _LUT_S.astype("<u2")


def packed_size(count: int) -> int:
    """Number of bytes that hold ``count`` 4-bit codes: ``ceil(count / 2)``."""
    return (count + 1) // 2


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """Pack 4-bit codes, two per byte, low nibble first (spec 5.1).

    Args:
        codes: integer array of any shape, values in ``-8..15`` (int4 codes
            ``-8..7`` or uint4 codes ``0..15``); flattened in C order.

    Returns:
        uint8 array of shape ``(ceil(codes.size / 2),)``:
        ``byte[i] = (c[2i] & 0xF) | ((c[2i+1] & 0xF) << 4)``, ``c[size] = 0``.

    >>> pack_int4(np.array([[1, 2, 3, 4], [5, 6, 7, 8]])).tolist()  # onnx-ir's vector
    [33, 67, 101, 135]
    """
    if not isinstance(codes, np.ndarray):
        raise TypeError(f"codes must be a numpy integer array, got {type(codes).__name__}")
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must have an integer dtype, got {codes.dtype}")
    flat = codes.reshape(-1)
    if flat.size and (int(flat.min()) < -8 or int(flat.max()) > 15):
        raise ValueError(
            f"codes must lie in -8..15 (int4 or uint4), got values in "
            f"{int(flat.min())}..{int(flat.max())}"
        )
    # Two's complement wrap: -2 -> 0xFE, whose low nibble 0xE is the int4 code.
    nib = flat.view(np.uint8) if flat.dtype.itemsize == 1 else flat.astype(np.uint8)
    n = nib.size
    out = np.empty(packed_size(n), dtype=np.uint8)
    half = n // 2
    # low nibble: even elements; high nibble: odd elements
    np.bitwise_and(nib[0 : 2 * half : 2], 0xF, out=out[:half])
    hi = np.left_shift(nib[1 : 2 * half : 2], 4)
    np.bitwise_or(out[:half], hi, out=out[:half])
    if n % 2:
        out[half] = nib[n - 1] & 0xF
    return out


def unpack_int4(packed: np.ndarray, count: int, *, signed: bool = True) -> np.ndarray:
    """Unpack ``count`` 4-bit codes from bytes packed by :func:`pack_int4`.

    Args:
        packed: uint8 array of at least ``ceil(count / 2)`` bytes (any shape,
            flattened in C order).
        count: number of codes to return.
        signed: True for int4 codes (``-8..7``, returned as int8), False for
            uint4 codes (``0..15``, returned as uint8).

    Returns:
        1-D array of shape ``(count,)``: ``c[2i] = byte[i] & 0xF``,
        ``c[2i+1] = byte[i] >> 4``, sign-extended from bit 3 when ``signed``.

    >>> unpack_int4(np.array([0xE1, 0x07], dtype=np.uint8), 3).tolist()
    [1, -2, 7]
    """
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8:
        got = packed.dtype if isinstance(packed, np.ndarray) else type(packed).__name__
        raise TypeError(f"packed must be a numpy uint8 array, got {got}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    flat = packed.reshape(-1)
    nbytes = packed_size(int(count))
    if flat.size < nbytes:
        raise ValueError(
            f"packed holds {flat.size} byte(s) = {2 * flat.size} codes, "
            f"fewer than count={count} needs ({nbytes} bytes)"
        )
    lut = _LUT_S if signed else _LUT_U
    # One gather: each byte becomes a uint16 whose two bytes are the two codes.
    pairs = lut[flat[:nbytes]]  # (nbytes,) uint16
    codes = pairs.view(np.uint8)  # (2 * nbytes,) low nibble first (little-endian)
    codes = codes[: int(count)]
    return codes.view(np.int8) if signed else codes
