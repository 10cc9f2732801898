"""MXFP4: E2M1 elements in blocks of 32 sharing one E8M0 power-of-two scale (spec section 18).

OCP Microscaling Formats (MX) v1.0, section 6.3. Per block ``b`` of
``block_size`` elements along ``axis``::

    a   = max|w_b|                                       float32
    e   = floor(log2(a)) - 2                             (2 = emax of E2M1: 6 = 1.5 * 2**2)
    e   = clip(e, -127, 127)                             (a == 0: e = -127)
    c_b = e + 127                                        the stored E8M0 code
    S_b = 2**e                                           float32, exact
    q   = e2m1_codes(w / S_b)                            round to nearest even, saturate at +-6
    w'  = E2M1_VALUES[q] * S_b                           float32, exact

    >>> qt = quantize_mxfp4(np.array([7.0, -1.25, 0.3, 0.0], dtype=np.float32), block_size=4)
    >>> qt.fp_scales.codes.tolist(), qt.codes().tolist()
    ([127], [7, 10, 1, 0])
    >>> from monoquant_np.dequantize import dequantize
    >>> dequantize(qt).tolist()
    [6.0, -1.0, 0.5, 0.0]

(``a = 7``, ``floor(log2 7) = 2``, ``e = 0``, ``S = 1``: ``7`` saturates to
6, ``-1.25`` is a tie that goes to -1, ``0.3`` rounds to 0.5.)
"""

from __future__ import annotations

import numpy as np

from .e2m1 import E2M1_VALUES
from .errors import check_axis, check_float_array, check_positive_int
from .fp4_blocks import fp4_packed_codes
from .fp8 import E8M0_BIAS
from .fp_scales import FloatScales
from .scales import group_absmax
from .tensor import QuantizedTensor

__all__ = ["MX_BLOCK_SIZE", "E2M1_EMAX", "mx_exponents", "quantize_mxfp4"]

#: OCP MX v1.0's block size for every MX format.
MX_BLOCK_SIZE = 32
#: ``emax_elem`` of E2M1: the exponent of its largest power of two (4 = 2**2).
E2M1_EMAX = 2


def mx_exponents(amax: np.ndarray) -> np.ndarray:
    """The shared exponents ``e = clip(floor(log2(amax)) - 2, -127, 127)`` of block amaxes.

    ``amax``: float32, finite, >= 0. ``floor(log2)`` is read exactly from the
    float32's exponent (``frexp``), float32 subnormals included; ``amax == 0``
    gives -127 (any value below ``2**-125`` does). Returns int32, same shape.

    >>> mx_exponents(np.array([6.0, 8.0, 7.99, 0.0, 1e-40], np.float32)).tolist()
    [0, 1, 0, -127, -127]

    # Note: microxcaling computes ``floor(torch.log2(amax))`` in float32,
    # which rounds up to the next integer for an amax within about
    # ``2**-24 * e`` below a power of two ``2**e`` with ``e >= 17``; the spec
    # reads the exponent bits, as torchao's ``to_mx`` does (spec 18.6).
    """
    a = np.asarray(amax, dtype=np.float32)
    pos = a > 0
    e = np.frexp(np.where(pos, a, np.float32(1)))[1].astype(np.int32) - 1 - E2M1_EMAX
    return np.clip(np.where(pos, e, -E8M0_BIAS), -E8M0_BIAS, E8M0_BIAS).astype(np.int32)


def quantize_mxfp4(w: np.ndarray, *, axis: int = 0, block_size: int = MX_BLOCK_SIZE) -> QuantizedTensor:
    """Quantize ``w`` to MXFP4 (spec 18): E2M1 codes, one E8M0 scale per block.

    Args:
        w: float16/float32/float64 array, at least 1-D, finite; converted to
            float32 first (spec 4.1).
        axis: the axis blocks run along (0: the K axis of a ``(K, N)`` MatMul
            weight, as ONNX ``DequantizeLinear(axis=0, block_size=32)``).
        block_size: elements per block (32 in OCP MX v1.0; other sizes give
            an MX-like format that is not OCP MXFP4). The last block may be
            partial: its amax is over the elements present (as zero padding).

    Returns:
        A :class:`QuantizedTensor` with ``codebook=E2M1_VALUES``,
        ``signed=False``, ``bits=4``, ``fp_scales`` of kind ``"e8m0"`` (the
        codes ``e + 127``) and ``scale`` the float32 ``2**e``; ``scheme`` is
        ``"mxfp4"``.

    Raises (spec 15, arguments checked in signature order):
        TypeError: ``w`` not a float array-like; ``axis`` or ``block_size`` not an int.
        ValueError: ``w`` 0-d, empty or beyond float32; ``axis`` out of range;
            ``block_size`` < 1; then non-finite ``w``.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    axis = check_axis(axis, w32.ndim)
    block_size = check_positive_int(block_size, "block_size")
    amax = group_absmax(w32, axis=axis, group_size=block_size)  # raises on NaN/inf
    fp = FloatScales((mx_exponents(amax) + E8M0_BIAS).astype(np.uint8), "e8m0")
    scale = fp.rebuild()  # (..., n_blocks, ...) float32 2**e
    return QuantizedTensor(
        data=fp4_packed_codes(w32, scale, axis, block_size),
        shape=w32.shape, axis=axis, block_size=block_size, scale=scale,
        zero_point=None, signed=False, bits=4, codebook=E2M1_VALUES, fp_scales=fp,
    )
