"""onnxruntime ``MatMulNBits``: its weight layout, its block sizes and its DEFAULT quantizer (spec section 12.1).

Layout (``com.microsoft.MatMulNBits``, ``bits`` 2, 4 or 8) of a ``(K, N)``
weight in blocks of ``block_size`` rows along K, ``nb = ceil(K / block_size)``:

* ``B``: uint8 ``(N, nb, block_size * bits // 8)``; column ``n``, block ``b``,
  unsigned codes ``0 .. 2**bits - 1``. 4 bits: byte ``j`` holds rows
  ``b * block_size + 2j`` (low nibble) and ``+ 2j + 1`` (high nibble); 2 bits:
  byte ``j`` holds rows ``b * block_size + 4j + i`` in bits ``2i .. 2i+1``
  (spec 20.3's order); 8 bits: byte ``j`` holds row ``b * block_size + j``. Rows past ``K`` (the padding of
  the last block) hold that block's zero point, so they dequantize to 0.
* ``scales``: ``(N, nb)``, float32 or float16.
* ``zero_points``: uint8 ``(N, ceil(nb * bits / 8))``, each row on its own;
  4 bits: two blocks per byte, low nibble first, a missing last nibble set to
  8; 2 bits: four blocks per byte, the lowest bits first, missing ones set to
  2. Absent means every zero point is ``2 ** (bits - 1)`` (2, 8 or 128).
* ``w = (code - zero_point) * scale``.

So signed codes ``c`` are stored as ``c + 2 ** (bits - 1)`` without zero
points, and unsigned codes as they are with their zero points (zeros when the
tensor has none).

Block sizes: ``MatMulNBits`` and ``GatherBlockQuantized`` accept a power of
two >= 16 (:func:`is_block_size`). :func:`matmulnbits_block_size` picks the
block that holds a tensor exactly; a group size that is not one still fits
when the blocks nest inside the groups, each group's scale repeated over its
blocks (48 -> 16).

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.arange(96, dtype=np.float32).reshape(48, 2), group_size=48)
    >>> matmulnbits_block_size(qt), matmulnbits_pack(qt)[0].shape
    (16, (2, 3, 8))

The DEFAULT quantizer (``MlasQuantizeBlockwise``, exposed in Python as
``onnxruntime.capi._pybind_state.quantize_matmul_4bits`` and used by
``matmul_nbits_quantizer.py``) is reproduced bit for bit by
:func:`ort_default_quantize`. Per block of a column, in float32:

* symmetric: ``m`` = the block's minimum or maximum, whichever has the larger
  magnitude (the minimum on a tie); ``s = -m / 8``; ``zp = 8``;
* asymmetric: ``lo = min(min, 0)``, ``hi = max(max, 0)``, ``s = (hi - lo) / 15``,
  ``zp = roundf(-lo / s)`` clamped to ``0..15`` (``zp = 0`` when ``s = 0``);
* the scale is stored in the weight's dtype (float16 for a float16 weight), and
  ``code = clamp(roundf(w * (1 / s_stored) + zp), 0, 15)`` with
  ``1 / s`` read as 0 when ``s == 0``; ``roundf`` rounds ties away from zero.

# Note: the spec's own quantizer uses ``s = max|w| / 7`` and rounds half to
# even by dividing; onnxruntime's uses the signed extreme over -8 (so its scale
# is negative when the extreme is positive, and the extreme lands exactly on
# code -8) and multiplies by a reciprocal, rounding half away from zero.
#
# Note: onnxruntime's quantizer writes only the bytes of B that hold rows < K
# (for odd K the high nibble of the last one keeps a stale code) and leaves the
# rest of the caller's buffer as it was (``matmul_nbits_quantizer.py`` passes
# zeros). The spec pads with the zero point, so padding dequantizes to 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import (
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_matrix,
    check_positive_int,
    check_scales,
    check_uint8,
)
from ..groups import expand_groups, group_reduce
from ..numerics import round_half_away
from ..packing import pack_codes, pack_int4, unpack_codes
from ..tensor import QuantizedTensor, check_qt

__all__ = [
    "matmulnbits_pack",
    "matmulnbits_unpack",
    "matmulnbits_block_size",
    "is_block_size",
    "ort_default_quantize",
    "MIN_BLOCK_SIZE",
    "MATMULNBITS_BLOCK_SIZES",
]

#: Block sizes onnxruntime's blockwise quantizer is compiled for
#: (``MlasQuantizeBlockwise``'s switch; MatMulNBits itself takes any power of two >= 16).
MATMULNBITS_BLOCK_SIZES = (16, 32, 64, 128, 256)


#: The smallest block size of onnxruntime's ``MatMulNBits`` and ``GatherBlockQuantized``.
MIN_BLOCK_SIZE = 16


def is_block_size(block_size: int) -> bool:
    """True when ``MatMulNBits`` and ``GatherBlockQuantized`` accept ``block_size``: a power of two >= 16.

    onnxruntime checks it at session creation (``matmul_nbits.cc``: "Only
    power-of-two block sizes >= 16 are supported"; 16 ... 1024 run).

    >>> [b for b in (8, 16, 24, 48, 64, 1024) if is_block_size(b)]
    [16, 64, 1024]

    Any int gives True or False; a non-int (``16.0``, ``True``) is a ``TypeError`` (spec 15.1).
    """
    block_size = check_int(block_size, "block_size")
    return block_size >= MIN_BLOCK_SIZE and block_size & (block_size - 1) == 0


def matmulnbits_block_size(qt: QuantizedTensor) -> int | None:
    """The ``MatMulNBits`` ``block_size`` that holds ``qt`` exactly, or ``None``.

    Rules, in order (spec 9.4): ``qt`` must be a 2-D ``(K, N)`` weight grouped
    along axis 0 with linear 4- or 8-bit codes (no codebook, no double
    quantization); then the group size ``G`` itself if :func:`is_block_size`;
    else the largest power of two dividing ``G``, if it is >= 16; else, when
    one group covers all of K, ``max(16, next_pow2(K))``.

    >>> from monoquant_np import quantize
    >>> w = np.ones((200, 3), np.float32)
    >>> [matmulnbits_block_size(quantize(w, group_size=g)) for g in (32, 48, 100, 24, 256)]
    [32, 16, None, None, 256]
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0 or qt.codebook is not None or qt.double_quant is not None:
        return None
    g, k = qt.block_size, qt.shape[0]
    if is_block_size(g):
        return g
    if g & -g >= MIN_BLOCK_SIZE:  # the largest power of two dividing g
        return g & -g
    if qt.n_groups <= 1:
        return max(MIN_BLOCK_SIZE, 1 << max(k - 1, 0).bit_length())
    return None


def _check_layout(qt: QuantizedTensor, block_size: int | None) -> int:
    """The block size :func:`matmulnbits_pack` uses for ``qt``, or a ``ValueError`` saying why there is none."""
    check_qt(qt)
    check_matrix(qt.shape, "qt", extra="grouped along axis 0")
    if qt.axis != 0:
        raise ValueError(f"qt must be grouped along axis 0 (the K of a (K, N) weight), got axis {qt.axis}")
    if qt.codebook is not None:
        raise ValueError(f"MatMulNBits stores linear codes, got scheme {qt.scheme} with a codebook")
    if qt.perm is not None:
        raise ValueError(
            "qt has an act-order perm; permute the activations (x[:, perm]) instead, MatMulNBits g_idx is not produced"
        )
    bs = matmulnbits_block_size(qt) if block_size is None else check_int(block_size, "block_size")
    if bs is None:
        raise ValueError(f"MatMulNBits needs block_size a power of two >= {MIN_BLOCK_SIZE} dividing the group size "
                         f"(or one group spanning K), got group size {qt.block_size} for K = {qt.shape[0]}")
    if not is_block_size(bs):
        raise ValueError(f"block_size must be a power of two >= {MIN_BLOCK_SIZE}, got {bs!r}")
    if qt.block_size % bs and qt.n_groups > 1:
        raise ValueError(f"block_size must divide the group size {qt.block_size} (blocks nest inside groups), "
                         f"got {bs}")
    return int(bs)


def _pack_rows(rows: np.ndarray, bits: int) -> np.ndarray:
    """uint8 ``(N, nb, block)`` codes -> ``(N, nb, block * bits // 8)`` bytes (spec 5 and 20.3's order)."""
    n, nb, block = rows.shape
    return rows if bits == 8 else pack_codes(rows, bits).reshape(n, nb, block * bits // 8)


def matmulnbits_pack(
    qt: QuantizedTensor, block_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(B, scales, zero_points)`` of ``MatMulNBits`` for a 2-D ``(K, N)`` weight (module docstring layout).

    Args:
        qt: linear 2-, 4- or 8-bit codes (no codebook, no ``perm``), grouped along
            axis 0; double-quantized scales are stored as ``qt.scale``.
        block_size: the ``MatMulNBits`` block, a power of two >= 16 that
            divides ``qt.block_size`` (or any, when one group spans K); the
            default is :func:`matmulnbits_block_size`. Block ``j`` takes the
            scale of group ``j * block_size // qt.block_size``.

    Returns:
        ``B`` uint8 ``(N, nb, block_size * bits // 8)``, ``nb = ceil(K /
        block_size)``, rows past K set to the zero point; ``scales`` ``(N, nb)``
        in ``qt.scale``'s dtype; ``zero_points`` uint8 ``(N, ceil(nb * bits /
        8))`` for unsigned codes, ``None`` for signed codes (stored as
        ``code + 2 ** (bits - 1)``).

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.array([[-7.0], [7.0]] * 8, dtype=np.float32), group_size=16)
    >>> b, s, z = matmulnbits_pack(qt)
    >>> b.shape, b[0, 0, 0], s.tolist(), z
    ((1, 1, 8), np.uint8(241), [[1.0]], None)

    (codes ``-7, 7`` become ``1, 15``: byte ``0xF1`` = 241.)
    """
    bs = _check_layout(qt, block_size)
    k, n = qt.shape
    bits = qt.bits
    nb = -(-k // bs)
    group = np.arange(nb) * bs // qt.block_size  # (nb,) the group of each block
    if qt.signed:
        u = (qt.codes().astype(np.int16) + (1 << (bits - 1))).astype(np.uint8)  # (K, N) in 0..2**bits-1
        zp_blocks = None
        pad = np.full((1, n), 1 << (bits - 1), np.uint8)  # the default zero point
    else:
        u = qt.codes()  # (K, N)
        zp = qt.zero_point if qt.zero_point is not None else np.zeros(qt.scale.shape, np.uint8)
        zp_blocks = zp[group]  # (nb, N)
        pad = zp_blocks[-1:]  # (1, N): the last block's zero points
    full = np.empty((nb * bs, n), np.uint8)
    full[:k] = u
    full[k:] = pad  # padding dequantizes to exactly 0
    b = _pack_rows(np.ascontiguousarray(full.T).reshape(n, nb, bs), bits)  # (N, nb, bs * bits // 8)
    scales = np.ascontiguousarray(qt.scale[group].T)  # (N, nb)
    if zp_blocks is None:
        return b, scales, None
    if bits == 8:
        return b, scales, np.ascontiguousarray(zp_blocks.T)  # (N, nb)
    per = 8 // bits  # zero points per byte
    whole = np.full((n, -(-nb // per) * per), 1 << (bits - 1), np.uint8)  # (N, nb rounded up): rows pack alone
    whole[:, :nb] = zp_blocks.T
    return b, scales, pack_codes(whole, bits).reshape(n, -(-nb // per))


def matmulnbits_unpack(
    b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None, *, k: int, bits: int = 4
) -> QuantizedTensor:
    """The :class:`QuantizedTensor` ``(K, N)`` that ``MatMulNBits(B, scales, zero_points)`` computes with.

    ``block_size = B.shape[2] * 8 // bits``. Without ``zero_points`` the codes
    are signed (``stored - 2 ** (bits - 1)``); with them, unsigned with those
    zero points. Padding rows (``>= k``) are ignored.
    """
    check_uint8(b, "B", ndim=3)
    n, nb, blob = b.shape
    check_scales(scales)
    if scales.size != n * nb:
        raise ValueError(f"scales must hold N * n_blocks = {n * nb} values, got shape {scales.shape}")
    if zero_points is not None:
        check_uint8(zero_points, "zero_points")
    k = check_positive_int(k, "k")
    bits = check_choice(bits, (2, 4, 8), "bits")
    bs = blob * 8 // bits
    if not is_block_size(bs):
        raise ValueError(f"MatMulNBits needs block_size a power of two >= {MIN_BLOCK_SIZE}, got {bs} "
                         f"(B of shape {b.shape} at {bits} bits)")
    if not (nb - 1) * bs < k <= nb * bs:
        raise ValueError(f"k must lie in ({(nb - 1) * bs}, {nb * bs}] for B of shape {b.shape}, got {k}")
    zp_bytes = n * ((nb * bits + 7) // 8)
    if zero_points is not None and zero_points.size != zp_bytes:
        raise ValueError(f"zero_points must hold N * ceil(n_blocks * bits / 8) = {zp_bytes} bytes, "
                         f"got {zero_points.shape}")
    flat = unpack_codes(b, n * nb * bs, bits, False)
    codes = flat.reshape(n, nb * bs)[:, :k].T  # (K, N) unsigned
    scale = np.ascontiguousarray(scales.reshape(n, nb).T)  # (n_blocks, N)
    if zero_points is None:
        signed = (codes.astype(np.int16) - (1 << (bits - 1))).astype(np.int8)
        return QuantizedTensor(_codes_data(signed, bits), (k, n), 0, bs, scale, None, signed=True, bits=bits)
    per_row = unpack_codes(zero_points, zp_bytes * 8 // bits, bits, False)
    zp = per_row.reshape(n, -1)[:, :nb].T  # (n_blocks, N)
    return QuantizedTensor(_codes_data(codes, bits), (k, n), 0, bs, scale, np.ascontiguousarray(zp),
                           signed=False, bits=bits)


def _codes_data(codes: np.ndarray, bits: int) -> np.ndarray:
    """``QuantizedTensor.data`` of int8/uint8 ``codes``: :func:`~monoquant_np.packing.pack_codes` at ``bits``."""
    return pack_codes(codes, bits)


def ort_default_quantize(w: Any, *, block_size: int, symmetric: bool = True) -> QuantizedTensor:
    """onnxruntime's DEFAULT 4-bit weight-only quantizer, bit for bit (formulas in the module docstring).

    Args:
        w: float32 or float16 ``(K, N)`` MatMul weight, finite; a float16
            weight gets float16 scales (onnxruntime's float16 kernel).
        block_size: one of 16, 32, 64, 128, 256; K need not be a multiple.
        symmetric: int4 codes (``code - 8`` of onnxruntime's) with signed scales,
            or uint4 codes with zero points.

    Returns:
        A 2-D :class:`QuantizedTensor` grouped along axis 0;
        ``matmulnbits_pack`` of it equals the kernel's ``(B, scales, zero_points)``.

    >>> qt = ort_default_quantize(np.array([[4.0], [-1.0]] * 8, dtype=np.float32), block_size=16)
    >>> qt.scale.tolist(), qt.codes()[:2, 0].tolist()
    ([[-0.5]], [-8, 2])
    """
    check_scales(w, "w")  # float32 or float16 ndarray: the kernel's two input types
    check_matrix(w.shape, "w")
    if w.size == 0:
        raise ValueError(f"w must have at least one element, got shape {w.shape}")
    block_size = check_choice(block_size, MATMULNBITS_BLOCK_SIZES, "block_size")
    symmetric = check_bool(symmetric, "symmetric")
    sdt = w.dtype
    w32 = w.astype(np.float32)
    check_finite(w32, "w")
    k = w32.shape[0]
    lo = group_reduce(np.minimum, w32, 0, block_size)  # (n_blocks, N)
    hi = group_reduce(np.maximum, w32, 0, block_size)
    f0, f1 = np.float32(0), np.float32(1)
    if symmetric:
        m = np.where(np.abs(hi) > np.abs(lo), hi, lo)
        # An all-zero block keeps the sign of its first zero (the C loop's
        # strict comparisons never replace it): -(+0)/8 = -0, -(-0)/8 = +0.
        m = np.where((lo == 0) & (hi == 0), w32[::block_size], m)
        scale = (-m / np.float32(8)).astype(sdt)
        zp = np.full(scale.shape, 8, dtype=np.float32)
    else:
        lo, hi = np.minimum(lo, f0), np.maximum(hi, f0)
        s32 = (hi - lo) / np.float32(15) + f0  # + 0: an all-zero block has s = +0
        with np.errstate(divide="ignore", invalid="ignore"):
            zfp = np.where(s32 != 0, f0 - lo / s32, lo)
        zp = np.clip(round_half_away(zfp), 0, 15).astype(np.float32)
        scale = s32.astype(sdt)
    s_stored = scale.astype(np.float32)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        recip = np.where(s_stored != 0, f1 / s_stored, f0).astype(np.float32)
        t = w32 * expand_groups(recip, 0, block_size, k)  # (K, N) float32
        t += expand_groups(zp, 0, block_size, k)
    # Note: a subnormal scale's reciprocal overflows to inf; w * inf clamps to
    # 0 or 15 and 0 * inf = NaN becomes code 0 (x86-64 onnxruntime: a NaN
    # float -> int conversion yields 0x80000000, whose low byte is 0).
    with np.errstate(invalid="ignore"):
        q = np.clip(round_half_away(t), 0, 15)
    q = np.where(np.isnan(q), 0, q).astype(np.uint8)
    if symmetric:
        codes = (q.astype(np.int8) - np.int8(8)).astype(np.int8)
        return QuantizedTensor(pack_int4(codes), w.shape, 0, block_size, scale, None, signed=True)
    return QuantizedTensor(pack_int4(q), w.shape, 0, block_size, scale, zp.astype(np.uint8), signed=False)
