"""onnxruntime ``MatMulNBits``: its weight layout and its DEFAULT quantizer (spec section 12.1).

Layout (``com.microsoft.MatMulNBits``, ``bits=4``) of a ``(K, N)`` weight
grouped along K in blocks of ``block_size`` (a power of two >= 16):

* ``B``: uint8 ``(N, n_blocks, block_size // 2)``; column ``n``, block ``b``,
  byte ``j`` holds rows ``b * block_size + 2j`` (low nibble) and ``+ 2j + 1``
  (high nibble) as unsigned codes ``0..15``. Rows past ``K`` are code 0.
* ``scales``: ``(N, n_blocks)``, float32 or float16.
* ``zero_points``: uint8 ``(N, ceil(n_blocks / 2))``, two blocks per byte,
  low nibble first, a missing last nibble set to 8; absent means every zero
  point is 8.
* ``w = (code - zero_point) * scale``.

So signed int4 codes ``c`` are stored as ``c + 8`` without zero points, and
uint4 codes as they are with their zero points.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import check_finite, check_positive_int, check_scales, check_uint8
from ..groups import expand_groups, group_reduce
from ..numerics import round_half_away
from ..packing import pack_int4, unpack_int4
from ..tensor import QuantizedTensor, check_qt

__all__ = ["matmulnbits_pack", "matmulnbits_unpack", "ort_default_quantize", "MATMULNBITS_BLOCK_SIZES"]

#: Block sizes onnxruntime's blockwise quantizer is compiled for
#: (``MlasQuantizeBlockwise``'s switch; MatMulNBits itself takes any power of two >= 16).
MATMULNBITS_BLOCK_SIZES = (16, 32, 64, 128, 256)


def _check_block_size(block_size: int) -> int:
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"MatMulNBits needs block_size a power of two >= 16, got {block_size}")
    return block_size


def matmulnbits_pack(qt: QuantizedTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(B, scales, zero_points)`` of ``MatMulNBits`` for a 2-D ``(K, N)`` int4/uint4 weight.

    Args:
        qt: 4-bit linear codes (no codebook, no ``perm``), grouped along axis 0
            with a power-of-two ``block_size >= 16``.

    Returns:
        ``B`` uint8 ``(N, n_blocks, block_size // 2)``; ``scales`` ``(N, n_blocks)``
        in ``qt.scale``'s dtype; ``zero_points`` uint8 ``(N, ceil(n_blocks / 2))``
        for uint4, ``None`` for int4 (stored as ``code + 8``).

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.array([[-7.0], [7.0]] * 8, dtype=np.float32), group_size=16)
    >>> b, s, z = matmulnbits_pack(qt)
    >>> b.shape, b[0, 0, 0], s.tolist(), z
    ((1, 1, 8), np.uint8(241), [[1.0]], None)

    (codes ``-7, 7`` become ``1, 15``: byte ``0xF1`` = 241.)
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0:
        raise ValueError(f"qt must be a 2-D (K, N) weight grouped along axis 0, got shape {qt.shape} axis {qt.axis}")
    if qt.bits != 4 or qt.codebook is not None:
        raise ValueError(f"MatMulNBits stores linear 4-bit codes, got scheme {qt.scheme}")
    if qt.perm is not None:
        raise ValueError(
            "qt has an act-order perm; permute the activations (x[:, perm]) instead, MatMulNBits g_idx is not produced"
        )
    bs = _check_block_size(qt.block_size)
    k, n = qt.shape
    nb = qt.n_groups
    codes = qt.codes().astype(np.int16) + (8 if qt.signed else 0)  # (K, N) in 0..15
    padded = np.zeros((n, nb * bs), dtype=np.uint8)  # (N, n_blocks * block_size)
    padded[:, :k] = codes.T
    b = pack_int4(padded).reshape(n, nb, bs // 2)  # (N, n_blocks, blob)
    scales = np.ascontiguousarray(qt.scale.T)  # (N, n_blocks)
    if qt.zero_point is None:
        return b, scales, None
    zp = np.full((n, nb + nb % 2), 8, dtype=np.uint8)  # (N, even n_blocks)
    zp[:, :nb] = qt.zero_point.T
    return b, scales, pack_int4(zp).reshape(n, (nb + 1) // 2)


def matmulnbits_unpack(
    b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None, *, k: int
) -> QuantizedTensor:
    """The :class:`QuantizedTensor` ``(K, N)`` that ``MatMulNBits(B, scales, zero_points)`` computes with.

    ``block_size = 2 * B.shape[2]``. Without ``zero_points`` the codes are
    signed (``stored - 8``); with them, unsigned with those zero points. Padding
    nibbles (rows ``>= k``) are ignored.
    """
    check_uint8(b, "B", ndim=3)
    n, nb, blob = b.shape
    bs = _check_block_size(2 * blob)
    k = check_positive_int(k, "k")
    if not (nb - 1) * bs < k <= nb * bs:
        raise ValueError(f"k must lie in ({(nb - 1) * bs}, {nb * bs}] for B of shape {b.shape}, got {k}")
    check_scales(scales)
    if scales.size != n * nb:
        raise ValueError(f"scales must hold N * n_blocks = {n * nb} values, got shape {scales.shape}")
    codes = unpack_int4(b, n * nb * bs, signed=False).reshape(n, nb * bs)[:, :k].T  # (K, N)
    scale = np.ascontiguousarray(scales.reshape(n, nb).T)  # (n_blocks, N)
    if zero_points is None:
        signed = (codes.astype(np.int8) - np.int8(8)).astype(np.int8)
        return QuantizedTensor(pack_int4(signed), (k, n), 0, bs, scale, None, signed=True)
    check_uint8(zero_points, "zero_points")
    if zero_points.size != n * ((nb + 1) // 2):
        raise ValueError(
            f"zero_points must hold N * ceil(n_blocks / 2) = {n * ((nb + 1) // 2)} bytes, got {zero_points.shape}"
        )
    zp = unpack_int4(zero_points, n * 2 * ((nb + 1) // 2), signed=False).reshape(n, -1)[:, :nb].T
    return QuantizedTensor(pack_int4(codes), (k, n), 0, bs, scale, np.ascontiguousarray(zp), signed=False)


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
    if not isinstance(w, np.ndarray) or w.dtype not in (np.float32, np.float16):
        raise TypeError(f"w must be a float32 or float16 numpy array, got {getattr(w, 'dtype', type(w).__name__)}")
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D (K, N) weight, got shape {w.shape}")
    if block_size not in MATMULNBITS_BLOCK_SIZES:
        raise ValueError(f"block_size must be one of {MATMULNBITS_BLOCK_SIZES}, got {block_size!r}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
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
