"""GGUF ``Q4_0``, ``Q4_1`` and ``Q8_0`` (spec section 12.2), byte-identical to gguf-py.

Every format cuts each row (the last axis, GGUF's ``ne0``) into blocks of 32
and stores one record per block, little-endian:

==========  ======  ====================================================
format      bytes   record
==========  ======  ====================================================
``Q4_0``    18      ``d`` float16, 16 bytes: byte ``j`` = ``q[j] | q[j+16] << 4``
``Q4_1``    20      ``d`` float16, ``m`` float16, 16 bytes as ``Q4_0``
``Q8_0``    34      ``d`` float16, 32 int8 codes
==========  ======  ====================================================

Quantizers (gguf-py ``gguf/quants.py``, itself matching ggml-quants.c), all
float32 per block ``b``; note that the codes come from the float32 ``d``
while the *stored* ``d`` is rounded to float16:

* ``Q4_0``: ``m`` = the element of largest magnitude (the first on a tie),
  ``d = m / -8``, ``q = min(trunc(b * (1/d) + 8.5), 15)``; ``w' = (q - 8) * d``.
* ``Q4_1``: ``d = (max - min) / 15``, ``q = min(trunc((b - min) * (1/d) + 0.5), 15)``;
  ``w' = q * d + min`` (``min`` stored as float16).
* ``Q8_0``: ``d = max|b| / 127``, ``q = roundf(b * (1/d))`` (ties away from zero);
  ``w' = q * d``.

Every operation is one float32 operation rounded on its own (``d``, ``1/d``,
the product, the sum), as gguf-py and ggml-quants.c compute; ``1/d = 0`` when
``d == 0`` (all three formats). When ``0 < |d| <= 2**-128``, ``1/d`` overflows
to ``+-inf`` and the products are ``+-inf`` or NaN (``0 * inf``): **a
non-finite value gives code 0** (``q = 0``, so ``Q4_0`` stores ``-8`` and
``Q8_0`` stores 0), which is what gguf-py's float-to-uint8 cast gives on x86.
Such a ``d`` rounds to ``+-0.0`` in float16, so the block dequantizes to zeros
whatever its codes; only the sign of those zeros depends on them.

# Note: the float-to-integer cast of a non-finite value is undefined in C and
# platform-dependent in NumPy (x86 gives 0, ARM saturates: 15 for ``+inf``).
# The spec fixes the x86 result, so a block with a tiny ``d`` has the same
# bytes as gguf-py and ggml on x86.

Canonical form (``*_decode``/``*_encode``): a :class:`QuantizedTensor` grouped
along the last axis in blocks of 32 with float16 scales. ``Q4_0`` is int4
with ``scale = d`` (possibly negative) and codes ``q - 8``; ``Q8_0`` is int8
with ``scale = d``; ``Q4_1`` is uint4 with ``scale = d`` and zero point ``z``
only when ``min == -z * d`` exactly for an integer ``z`` in ``0..15`` in every
block; otherwise its affine offset is not a code and decoding raises.

# Note: unlike the spec's quantizer, ``Q4_0``'s scale is the *signed* extreme
# over -8 and rounding is ``trunc(x + 8.5)`` (half up), ``Q4_1`` does not widen
# its range to include 0, and ``Q8_0`` rounds ties away from zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import check_finite, check_float_array, check_shape, check_uint8
from ..numerics import round_half_away
from ..packing import pack_codes
from ..tensor import QuantizedTensor, check_qt, zero_points_of

__all__ = [
    "GGUF_BLOCK",
    "q4_0_quantize",
    "q4_0_dequantize",
    "q4_0_decode",
    "q4_0_encode",
    "q4_1_quantize",
    "q4_1_dequantize",
    "q4_1_decode",
    "q4_1_encode",
    "q8_0_quantize",
    "q8_0_dequantize",
    "q8_0_decode",
    "q8_0_encode",
]

#: Elements per block of every format here (ggml ``QK4_0 = QK4_1 = QK8_0 = 32``).
GGUF_BLOCK = 32
#: Bytes per block record (gguf-py ``GGML_QUANT_SIZES``).
_TYPE_SIZE = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}


# --------------------------------------------------------------- layout helpers
def _blocks(w: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """float32 ``(n_blocks, 32)`` rows of ``w`` and its shape; raise unless ``shape[-1] % 32 == 0`` (spec 15)."""
    w32 = check_float_array(w, "w", nonempty=True)
    if w32.shape[-1] % GGUF_BLOCK:
        raise ValueError(f"w's last dimension must be a multiple of {GGUF_BLOCK} for GGUF, got shape {w32.shape}")
    check_finite(w32, "w")
    return w32.reshape(-1, GGUF_BLOCK), w32.shape  # (n_blocks, 32)


def _records(data: Any, shape: Any, fmt: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """uint8 ``(n_blocks, type_size)`` records of ``data`` holding a ``shape`` weight."""
    check_uint8(data, "data")
    shape = check_shape(shape)
    if shape[-1] % GGUF_BLOCK:
        raise ValueError(f"shape's last dimension must be a multiple of {GGUF_BLOCK}, got {shape}")
    n_blocks = int(np.prod(shape)) // GGUF_BLOCK
    size = _TYPE_SIZE[fmt]
    if data.size != n_blocks * size:
        raise ValueError(
            f"data must hold {n_blocks} {fmt} blocks = {n_blocks * size} bytes for shape {shape}, got {data.size}"
        )
    return np.ascontiguousarray(data).reshape(n_blocks, size), shape  # (n_blocks, type_size)


def _out_shape(shape: tuple[int, ...], fmt: str) -> tuple[int, ...]:
    return shape[:-1] + (shape[-1] // GGUF_BLOCK * _TYPE_SIZE[fmt],)


def _pack_halves(q: np.ndarray) -> np.ndarray:
    """``(n, 32)`` codes 0..15 -> ``(n, 16)`` bytes, ``q[j] | q[j + 16] << 4``."""
    q = q.reshape(-1, 2, GGUF_BLOCK // 2)  # (n, 2, 16)
    return q[:, 0, :] | (q[:, 1, :] << np.uint8(4))


def _unpack_halves(qs: np.ndarray) -> np.ndarray:
    """``(n, 16)`` bytes -> ``(n, 32)`` codes 0..15."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def _f16(records: np.ndarray, start: int) -> np.ndarray:
    """The little-endian float16 at byte ``start`` of each record, as ``(n, 1)`` float16."""
    return np.ascontiguousarray(records[:, start : start + 2]).view("<f2").astype(np.float16)


def _canonical(
    codes: np.ndarray, shape: tuple[int, ...], scale: np.ndarray, zp: np.ndarray | None, bits: int
) -> QuantizedTensor:
    gshape = shape[:-1] + (shape[-1] // GGUF_BLOCK,)
    data = pack_codes(codes, bits)
    return QuantizedTensor(
        data=data, shape=shape, axis=len(shape) - 1, block_size=GGUF_BLOCK,
        scale=scale.reshape(gshape), zero_point=None if zp is None else zp.reshape(gshape),
        signed=zp is None, bits=bits,
    )


def _check_canonical(qt: QuantizedTensor, scheme: str) -> np.ndarray:
    """float16 scales ``(n_blocks, 1)`` of a QuantizedTensor that the GGUF format stores exactly."""
    check_qt(qt)
    ax = len(qt.shape) - 1
    if qt.scheme != scheme or qt.axis != ax or qt.block_size != GGUF_BLOCK or qt.perm is not None:
        raise ValueError(
            f"qt must be {scheme} grouped along the last axis in blocks of {GGUF_BLOCK} without perm, "
            f"got {qt.scheme} axis {qt.axis} block_size {qt.block_size}"
        )
    if qt.shape[-1] % GGUF_BLOCK:
        raise ValueError(f"qt's last dimension must be a multiple of {GGUF_BLOCK}, got shape {qt.shape}")
    with np.errstate(over="ignore"):
        s16 = qt.scale.astype(np.float16)
    if not np.array_equal(s16.astype(np.float32), qt.scale.astype(np.float32)):
        raise ValueError(
            "qt's scales are not exactly representable in float16, which GGUF stores; use scale_dtype=float16"
        )
    return s16.reshape(-1, 1)


def _reciprocal(d: np.ndarray) -> np.ndarray:
    """float32 ``1 / d``, 0 where ``d == 0`` (gguf-py's ``id``); ``+-inf`` where ``0 < |d| <= 2**-128``."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d)


def _finite_codes(v: np.ndarray, dtype: Any) -> np.ndarray:
    """Integral float32 ``v`` as ``dtype``; non-finite entries (``+-inf``, NaN) become 0 (the x86 cast)."""
    return np.where(np.isfinite(v), v, np.float32(0)).astype(dtype)


# ------------------------------------------------------------------------ Q4_0
def _q4_0_codes(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gguf-py's Q4_0 quantizer on ``(n, 32)`` float32: codes 0..15 ``(n, 32)`` and float32 ``d`` ``(n, 1)``."""
    imax = np.abs(blocks).argmax(axis=-1, keepdims=True)  # first index of the largest |b|
    m = np.take_along_axis(blocks, imax, axis=-1)  # (n, 1)
    d = m / np.float32(-8)
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN when 1/d overflows
        v = np.trunc(blocks * _reciprocal(d) + np.float32(8.5), dtype=np.float32)
    return _finite_codes(v, np.uint8).clip(0, 15), d


def q4_0_quantize(w: Any) -> np.ndarray:
    """GGUF ``Q4_0`` bytes of ``w`` (shape ``(..., cols)``, ``cols % 32 == 0``): uint8 ``(..., cols // 32 * 18)``.

    >>> b = q4_0_quantize(np.array([[-8.0] + [1.0] * 31], dtype=np.float32))
    >>> b.shape, b[0, :2].view(np.float16).tolist(), hex(b[0, 2])
    ((1, 18), [1.0], '0x90')
    """
    blocks, shape = _blocks(w)
    q, d = _q4_0_codes(blocks)
    rec = np.concatenate([d.astype(np.float16).view(np.uint8), _pack_halves(q)], axis=1)  # (n, 18)
    return rec.reshape(_out_shape(shape, "Q4_0"))


def q4_0_decode(data: np.ndarray, shape: Any) -> QuantizedTensor:
    """The int4 :class:`QuantizedTensor` (float16 scale ``d``, codes ``q - 8``) stored in ``Q4_0`` ``data``."""
    rec, shape = _records(data, shape, "Q4_0")
    codes = (_unpack_halves(rec[:, 2:]).astype(np.int8) - np.int8(8)).astype(np.int8)
    return _canonical(codes, shape, _f16(rec, 0), None, 4)


def q4_0_encode(qt: QuantizedTensor) -> np.ndarray:
    """``Q4_0`` bytes of an int4 ``qt`` grouped along the last axis in blocks of 32 (float16-exact scales)."""
    d = _check_canonical(qt, "int4")
    q = (qt.codes().reshape(-1, GGUF_BLOCK).astype(np.int16) + 8).astype(np.uint8)  # (n, 32)
    rec = np.concatenate([d.view(np.uint8), _pack_halves(q)], axis=1)
    return rec.reshape(_out_shape(qt.shape, "Q4_0"))


def q4_0_dequantize(data: np.ndarray, shape: Any) -> np.ndarray:
    """float32 weight of ``shape`` from ``Q4_0`` bytes: ``(q - 8) * d``."""
    rec, shape = _records(data, shape, "Q4_0")
    q = _unpack_halves(rec[:, 2:]).astype(np.int8) - np.int8(8)
    return (_f16(rec, 0).astype(np.float32) * q.astype(np.float32)).reshape(shape)


# ------------------------------------------------------------------------ Q4_1
def q4_1_quantize(w: Any) -> np.ndarray:
    """GGUF ``Q4_1`` bytes of ``w``: uint8 ``(..., cols // 32 * 20)``."""
    blocks, shape = _blocks(w)
    hi = blocks.max(axis=-1, keepdims=True)
    lo = blocks.min(axis=-1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN when 1/d overflows
        v = np.trunc((blocks - lo) * _reciprocal(d) + np.float32(0.5), dtype=np.float32)
    q = _finite_codes(v, np.uint8).clip(0, 15)
    parts = [d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8), _pack_halves(q)]
    return np.concatenate(parts, axis=1).reshape(_out_shape(shape, "Q4_1"))


def q4_1_dequantize(data: np.ndarray, shape: Any) -> np.ndarray:
    """float32 weight from ``Q4_1`` bytes: ``q * d + m``."""
    rec, shape = _records(data, shape, "Q4_1")
    d, m = _f16(rec, 0).astype(np.float32), _f16(rec, 2).astype(np.float32)
    return (d * _unpack_halves(rec[:, 4:]).astype(np.float32) + m).reshape(shape)


def q4_1_decode(data: np.ndarray, shape: Any) -> QuantizedTensor:
    """The uint4 :class:`QuantizedTensor` of ``Q4_1`` bytes, when every block's ``m == -z * d``.

    Raises ``ValueError`` naming the first block whose offset ``m`` is not
    ``-z * d`` for an integer ``z`` in ``0..15`` (the usual case for ``Q4_1``
    written by its own quantizer: ``m`` is the block's minimum).
    """
    rec, shape = _records(data, shape, "Q4_1")
    d, m = _f16(rec, 0).astype(np.float32), _f16(rec, 2).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(d != 0, np.rint(-m / d), 0)
    ok = (z >= 0) & (z <= 15) & (-z * d == m)
    if not ok.all():
        i = int(np.argwhere(~ok.ravel())[0, 0])
        raise ValueError(
            f"Q4_1 block {i} has d={d.ravel()[i]!r}, m={m.ravel()[i]!r}: its offset m is not -z*d for an "
            "integer zero point z in 0..15, so it is not representable as a uint4 QuantizedTensor"
        )
    q = _unpack_halves(rec[:, 4:])
    return _canonical(q, shape, _f16(rec, 0), z.astype(np.uint8), 4)


def q4_1_encode(qt: QuantizedTensor) -> np.ndarray:
    """``Q4_1`` bytes of a uint4 ``qt`` (blocks of 32 along the last axis): ``d = s``, ``m = -z * s``.

    Raises ``ValueError`` if some ``-z * s`` is not exactly a float16.
    """
    d = _check_canonical(qt, "uint4")
    z = zero_points_of(qt).reshape(-1, 1).astype(np.float32)
    m32 = -z * d.astype(np.float32)
    with np.errstate(over="ignore"):
        m = m32.astype(np.float16)
    if not np.array_equal(m.astype(np.float32), m32):
        raise ValueError("some block's offset -z*s is not exactly a float16, so Q4_1 cannot store qt exactly")
    q = qt.codes().reshape(-1, GGUF_BLOCK)
    parts = [d.view(np.uint8), m.view(np.uint8), _pack_halves(q)]
    return np.concatenate(parts, axis=1).reshape(_out_shape(qt.shape, "Q4_1"))


# ------------------------------------------------------------------------ Q8_0
def q8_0_quantize(w: Any) -> np.ndarray:
    """GGUF ``Q8_0`` bytes of ``w``: uint8 ``(..., cols // 32 * 34)``."""
    blocks, shape = _blocks(w)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN when 1/d overflows
        q = _finite_codes(round_half_away(blocks * _reciprocal(d)), np.int8)
    rec = np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)
    return rec.reshape(_out_shape(shape, "Q8_0"))


def q8_0_dequantize(data: np.ndarray, shape: Any) -> np.ndarray:
    """float32 weight from ``Q8_0`` bytes: ``q * d``."""
    rec, shape = _records(data, shape, "Q8_0")
    return (rec[:, 2:].view(np.int8).astype(np.float32) * _f16(rec, 0).astype(np.float32)).reshape(shape)


def q8_0_decode(data: np.ndarray, shape: Any) -> QuantizedTensor:
    """The int8 :class:`QuantizedTensor` (float16 scale, blocks of 32 along the last axis) of ``Q8_0`` bytes."""
    rec, shape = _records(data, shape, "Q8_0")
    return _canonical(np.ascontiguousarray(rec[:, 2:]).view(np.int8), shape, _f16(rec, 0), None, 8)


def q8_0_encode(qt: QuantizedTensor) -> np.ndarray:
    """``Q8_0`` bytes of an int8 ``qt`` grouped along the last axis in blocks of 32."""
    d = _check_canonical(qt, "int8")
    q = np.ascontiguousarray(qt.codes()).reshape(-1, GGUF_BLOCK).view(np.uint8)
    return np.concatenate([d.view(np.uint8), q], axis=1).reshape(_out_shape(qt.shape, "Q8_0"))
