"""NVFP4: E2M1 elements in blocks of 16 with an E4M3 block scale and a float32 tensor scale (spec 19).

The two-level scale as NVIDIA's reference recipe computes it (TensorRT Model
Optimizer, ``NVFP4QTensor.get_weights_scaling_factor_2``,
``get_weights_scaling_factor``, ``quantize``), every step in float32::

    A   = max|w|                                   the tensor's amax
    g   = float32(A / 2688)                        tensor scale (2688 = 6 * 448)
    d   = float32(6 * g)
    s_b = float32(a_b / d)                         a_b = max|w_b|; s_b = 0 where a_b == 0
    s_b = 1 where s_b == 0                         (an all-zero block)
    s_b = clip(s_b, 2**-9, 448)                    E4M3's smallest subnormal and largest value
    c_b = e4m3_codes(s_b)                          round to nearest even: the stored block code, 1..126
    S_b = float32(e4m3_value(c_b) * g)             the block's float32 scale
    q   = e2m1_codes(float32(w / S_b))             q = 0 where S_b == 0 (only if g == 0)
    w'  = float32(E2M1_VALUES[q] * S_b)

    >>> w = np.array([2688.0, 672.0, -12.0, 3.0, 0.1], dtype=np.float32)
    >>> qt = quantize_nvfp4(w, block_size=2)
    >>> qt.fp_scales.tensor_scale, qt.fp_scales.codes.tolist(), qt.scale.tolist()
    (1.0, [126, 64, 9], [448.0, 2.0, 0.017578125])
    >>> qt.codes().tolist()
    [7, 3, 15, 3, 7]

(``A = 2688``, so ``g = 1`` and ``d = 6``. Block 0: ``s = 2688 / 6 = 448``,
E4M3 code 126, ``S = 448``; ``2688 / 448 = 6`` is code 7, ``672 / 448 =
1.5`` code 3. Block 1: ``s = 12 / 6 = 2``, code 64; ``-12 / 2 = -6`` is
code 15, ``3 / 2 = 1.5`` code 3. Block 2, partial: ``s = 0.1 / 6 =
0.016667 = 8.53 * 2**-9`` rounds to the E4M3 subnormal ``9 * 2**-9 =
0.017578125``, code 9; ``0.1 / S = 5.69`` rounds to 6, code 7.)
"""

from __future__ import annotations

import numpy as np

from .e2m1 import E2M1_MAX, E2M1_VALUES
from .errors import check_axis, check_float_array, check_positive_int
from .fp4_blocks import fp4_packed_codes
from .fp8 import E4M3_MAX, e4m3_codes
from .fp_scales import FloatScales
from .scales import group_absmax
from .tensor import QuantizedTensor

__all__ = ["NV_BLOCK_SIZE", "nvfp4_tensor_scale", "nvfp4_scales", "quantize_nvfp4"]

#: NVFP4's block size.
NV_BLOCK_SIZE = 16


def nvfp4_tensor_scale(amax: float) -> np.float32:
    """``g = float32(A / 2688)`` for a tensor amax ``A`` (2688 = 6 * 448, exact in float32)."""
    return np.float32(np.float32(amax) / np.float32(E2M1_MAX * E4M3_MAX))


def nvfp4_scales(block_amax: np.ndarray, g: np.float32) -> FloatScales:
    """The E4M3 block scale codes for float32 block amaxes and tensor scale ``g``.

    ``s = float32(a / float32(6 * g))`` (0 where ``a == 0``), ``s = 1`` where
    ``s == 0``, ``s = clip(s, 2**-9, 448)``, ``c = e4m3_codes(s)`` (codes
    1..126). Returns ``FloatScales(c, "e4m3", g)``. Without the clip, ``s``
    would round to E4M3 zero for a block ``2**10 * 448`` times smaller than
    the tensor's amax, and exceed 448 when ``g`` underflowed (a tensor amax
    below about ``2**-114``).
    """
    a = np.asarray(block_amax, dtype=np.float32)
    d = np.float32(np.float32(E2M1_MAX) * np.float32(g))
    s = np.zeros_like(a)
    with np.errstate(divide="ignore", over="ignore"):
        np.divide(a, d, out=s, where=a != 0)
    s[s == 0] = np.float32(1)
    np.clip(s, np.float32(2.0**-9), np.float32(E4M3_MAX), out=s)
    return FloatScales(e4m3_codes(s), "e4m3", float(np.float32(g)))


def quantize_nvfp4(w: np.ndarray, *, axis: int = 0, block_size: int = NV_BLOCK_SIZE) -> QuantizedTensor:
    """Quantize ``w`` to NVFP4 (spec 19): E2M1 codes, E4M3 block scales, a float32 tensor scale.

    Args:
        w: float16/float32/float64 array, at least 1-D, finite; converted to
            float32 first (spec 4.1).
        axis: the axis blocks run along (0: the K axis of a ``(K, N)`` MatMul
            weight).
        block_size: elements per block (16 for NVFP4). The last block may be
            partial (its amax is over the elements present, as zero padding).

    Returns:
        A :class:`QuantizedTensor` with ``codebook=E2M1_VALUES``,
        ``signed=False``, ``bits=4``, ``fp_scales`` of kind ``"e4m3"`` (block
        codes and the tensor scale ``g``) and ``scale`` the float32 ``S_b``;
        ``scheme`` is ``"nvfp4"``.

    Raises (spec 15, arguments checked in signature order):
        TypeError: ``w`` not a float array-like; ``axis`` or ``block_size`` not an int.
        ValueError: ``w`` 0-d, empty or beyond float32; ``axis`` out of range;
            ``block_size`` < 1; then non-finite ``w``.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    axis = check_axis(axis, w32.ndim)
    block_size = check_positive_int(block_size, "block_size")
    amax = group_absmax(w32, axis=axis, group_size=block_size)  # (..., n_blocks, ...); raises on NaN/inf
    fp = nvfp4_scales(amax, nvfp4_tensor_scale(float(amax.max())))
    scale = fp.rebuild()
    return QuantizedTensor(
        data=fp4_packed_codes(w32, scale, axis, block_size),
        shape=w32.shape, axis=axis, block_size=block_size, scale=scale,
        zero_point=None, signed=False, bits=4, codebook=E2M1_VALUES, fp_scales=fp,
    )
