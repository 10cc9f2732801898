"""FP4 E2M1: the 4-bit floating-point element of MXFP4 and NVFP4 (spec section 17.1).

A code is ``s eeg m`` (bit 3 the sign, bits 2-1 the exponent with bias 1,
bit 0 the mantissa), no infinities, no NaN. Its 16 values, index = code::

    code  0..7  :  0  0.5  1  1.5  2  3  4  6
    code  8..15 : -0 -0.5 -1 -1.5 -2 -3 -4 -6

Conversion from float32 (:func:`e2m1_codes`) rounds to the nearest value,
ties to the value with an even mantissa bit (IEEE 754 roundTiesToEven), and
saturates: a finite magnitude above 6, and an infinity, become ``+-6``. The
sign of the code is the sign bit of the input, so ``-0.0`` and negative
values that round to zero take code 8, ``-0``.

    >>> e2m1_codes(np.array([0.25, 0.75, 1.25, 2.5, 3.5, 5.0, 7.0, -0.1], dtype=np.float32)).tolist()
    [0, 2, 2, 4, 6, 6, 7, 8]
    >>> e2m1_values(np.array([2, 6, 7, 15], dtype=np.uint8)).tolist()
    [1.0, 4.0, 6.0, -6.0]

(``0.25`` is halfway between 0 and 0.5 and goes to 0, whose mantissa bit is
0; ``0.75`` goes to 1.0, not 0.5; ``5`` goes to 4, not 6; ``7`` saturates.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["E2M1_VALUES", "E2M1_MAX", "E2M1_TIES_DOWN", "E2M1_TIES_UP", "e2m1_codes", "e2m1_values"]


def _table(values: list[float]) -> np.ndarray:
    a = np.array(values, dtype=np.float32)
    a.flags.writeable = False
    return a


#: The 16 E2M1 values, index = code (OCP Microscaling Formats v1.0, table 5;
#: the same table as ONNX ``FLOAT4E2M1`` and ml_dtypes ``float4_e2m1fn``).
#: Code 8 is ``-0.0``.
E2M1_VALUES = _table([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                      -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])

#: The largest E2M1 magnitude.
E2M1_MAX = 6.0

#: Midpoints between consecutive magnitudes whose tie goes *down* (the lower
#: value has the even mantissa bit): 0|0.5, 1|1.5, 2|3, 4|6.
E2M1_TIES_DOWN = _table([0.25, 1.25, 2.5, 5.0])
#: Midpoints whose tie goes *up*: 0.5|1, 1.5|2, 3|4.
E2M1_TIES_UP = _table([0.75, 1.75, 3.5])


def e2m1_codes(x: np.ndarray) -> np.ndarray:
    """E2M1 codes of float32 ``x``: round to nearest even, saturate at ``+-6``.

    ``magnitude = #{t in E2M1_TIES_DOWN : |x| > t} + #{t in E2M1_TIES_UP : |x| >= t}``
    (0..7, the index of the nearest of ``0, 0.5, ..., 6``; a midpoint goes to
    the even mantissa), ``code = 8 * signbit(x) + magnitude``. Every magnitude
    above 5, infinity included, gives 7 (``6``): saturation. NaN (no
    comparison true) gives a zero of its sign bit. Shape preserved, uint8.

    # Note: ml_dtypes 0.7 casts NaN to the zero of the *opposite* sign
    # (``nan`` -> code 8, ``-nan`` -> code 0); every other float16 and
    # float32 input converts to the same code (tests/core/test_e2m1.py).
    # The quantizers of spec 18 and 19 reject NaN, so it never reaches here
    # from them.
    """
    x32 = np.asarray(x, dtype=np.float32)
    a = np.abs(x32)
    q = np.signbit(x32).astype(np.uint8) << 3
    hit = np.empty(a.shape, np.bool_)
    for t in E2M1_TIES_DOWN:
        np.greater(a, t, out=hit)
        np.add(q, hit.view(np.uint8), out=q)  # True is byte 1
    for t in E2M1_TIES_UP:
        np.greater_equal(a, t, out=hit)
        np.add(q, hit.view(np.uint8), out=q)
    return q


def e2m1_values(codes: np.ndarray) -> np.ndarray:
    """The float32 values of E2M1 ``codes`` (integers ``0..15``): ``E2M1_VALUES[codes]``.

    Raises ``ValueError`` for a code outside ``0..15``.
    """
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        raise TypeError(f"codes must be an integer array, got {c.dtype}")
    if c.size and (int(c.min()) < 0 or int(c.max()) > 15):
        raise ValueError(f"codes must be E2M1 codes 0..15, got values in [{int(c.min())}, {int(c.max())}]")
    return E2M1_VALUES[c]
