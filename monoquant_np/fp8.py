"""FP8 scale formats: E4M3FN (NVFP4's block scale) and E8M0 (MXFP4's shared scale), spec 17.2-17.3.

**E4M3FN** (OCP 8-bit floating point, "FN": finite, no infinities): bit 7
the sign, bits 6-3 the exponent with bias 7, bits 2-0 the mantissa. Code
``c`` with magnitude bits ``m = c & 0x7F``::

    m = 0..7     : m * 2**-9                     (subnormals; 0 is +-0)
    m = 8..126   : (8 + m % 8) * 2**(m // 8 - 10) (normals, 2**-6 .. 448)
    m = 127      : NaN                           (0x7F and 0xFF)

**E8M0** (OCP MX v1.0, section 5.4, unsigned, exponent only): code ``c``
is ``2**(c - 127)`` for ``c = 0..254`` (``2**-127 .. 2**127``); ``0xFF`` is
NaN. There is no zero and no sign.

    >>> e4m3_codes(np.array([448.0, 1.0, 0.3, 2.0**-10, -3.0], dtype=np.float32)).tolist()
    [126, 56, 42, 0, 196]
    >>> e4m3_values(np.array([126, 56, 42, 1], dtype=np.uint8)).tolist()
    [448.0, 1.0, 0.3125, 0.001953125]
    >>> e8m0_values(np.array([0, 125, 127, 254], dtype=np.uint8)).tolist()
    [5.877471754111438e-39, 0.25, 1.0, 1.7014118346046923e+38]

(``0.3 = 1.2 * 2**-2``: exponent field 5, ``1.2 * 8 = 9.6`` rounds to 10,
code ``5 * 8 + 2 = 42``, value ``1.25 * 2**-2 = 0.3125``. ``2**-10`` is
halfway between 0 and the smallest subnormal ``2**-9``: to even, 0.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["E4M3_MAX", "E4M3_NAN", "E8M0_BIAS", "E8M0_NAN", "e4m3_codes", "e4m3_values",
           "e8m0_codes", "e8m0_values"]

#: The largest finite E4M3FN magnitude (code 0x7E).
E4M3_MAX = 448.0
#: The E4M3FN NaN code (magnitude bits; the sign bit may be set too).
E4M3_NAN = 0x7F
#: E8M0's exponent bias: code ``c`` is ``2**(c - E8M0_BIAS)``.
E8M0_BIAS = 127
#: The E8M0 NaN code.
E8M0_NAN = 0xFF


def _exponent(a: np.ndarray) -> np.ndarray:
    """``floor(log2(a))`` of positive finite float32 ``a``, exactly (from ``frexp``), int32."""
    return np.frexp(a)[1].astype(np.int32) - 1


def e4m3_codes(x: np.ndarray, *, saturate: bool = False) -> np.ndarray:
    """E4M3FN codes of float32 ``x``: round to nearest, ties to even.

    With ``a = |x|`` and ``E = max(floor(log2(a)), -6)`` (``E = -6`` for
    ``a = 0``): ``r = rint(a * 2**(3 - E))`` (an exact scaling; ``r`` in
    ``0..16``), ``magnitude = 8 * (E + 6) + r`` (``r = 16`` carries into the
    next exponent; below ``2**-6`` this is the subnormal count ``r``), code
    ``= 0x80 * signbit(x) + magnitude``. A magnitude above 126 (a rounded
    value above 448: ``|x| >= 464``) and an infinity become NaN ``0x7F`` with
    the input's sign bit, or ``+-448`` (126) when ``saturate``; NaN stays
    NaN with its sign bit. Shape preserved, uint8.

    ``saturate=False`` is ml_dtypes' ``astype(float8_e4m3fn)`` and ONNX
    ``Cast(saturate=0)``; ``saturate=True`` is ONNX ``Cast``'s default.
    """
    x32 = np.asarray(x, dtype=np.float32)
    a = np.abs(x32)
    finite = np.isfinite(a)
    a_f = np.where(finite, a, np.float32(0))
    e = np.maximum(np.where(a_f > 0, _exponent(np.where(a_f > 0, a_f, np.float32(1))), -6), -6)
    r = np.rint(np.ldexp(a_f, 3 - e)).astype(np.int32)  # (..): exact power-of-two scaling
    mag = 8 * (e + 6) + r
    top = 126 if saturate else E4M3_NAN
    mag = np.where(mag > 126, top, mag)
    mag = np.where(finite, mag, np.where(np.isnan(a) | (not saturate), E4M3_NAN, 126))
    return (mag.astype(np.uint8) | (np.signbit(x32).astype(np.uint8) << 7)).astype(np.uint8)


def e4m3_values(codes: np.ndarray) -> np.ndarray:
    """The float32 values of E4M3FN ``codes`` (uint8): the formula of the module docstring.

    ``0x7F`` and ``0xFF`` give NaN; ``0x80`` gives ``-0.0``. Every value is
    exact in float32.
    """
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise TypeError(f"codes must be a uint8 array, got {c.dtype}")
    m = (c & 0x7F).astype(np.int32)
    e = m >> 3
    frac = m & 7
    mant = np.where(e > 0, 8 + frac, frac).astype(np.float32)
    v = np.ldexp(mant, np.maximum(e, 1) - 10)
    v = np.where(m == E4M3_NAN, np.float32(np.nan), v)
    return np.where(c & 0x80, -v, v).astype(np.float32)


def e8m0_codes(x: np.ndarray) -> np.ndarray:
    """E8M0 codes of float32 ``x``: the nearest power of two, ties (``1.5 * 2**e``) up.

    For positive finite ``x = f * 2**e`` (``1 <= f < 2``, exact from
    ``frexp``): ``e' = e + (f >= 1.5)``, clamped below at ``-127`` (so every
    positive value under ``2**-127``, float32 subnormals included, gives
    code 0); code ``= e' + 127``, or NaN ``0xFF`` when ``e' > 127``. Zero,
    negative values, infinities and NaN give ``0xFF``. Shape preserved, uint8.
    This is ml_dtypes' ``astype(float8_e8m0fnu)``.

    # Note: the MX scale of spec 18 is not this rounding: it *floors* the
    # exponent of the block's amax (:func:`monoquant_np.mxfp4.mx_exponents`).
    # ONNX's ``to_float8e8m0`` rounds up by default and maps 0 to code 0.
    """
    x32 = np.asarray(x, dtype=np.float32)
    ok = np.isfinite(x32) & (x32 > 0)
    f, e = np.frexp(np.where(ok, x32, np.float32(1)))  # x = f * 2**e, 0.5 <= f < 1
    e1 = e.astype(np.int32) - 1 + (f >= np.float32(0.75))
    e1 = np.maximum(e1, -E8M0_BIAS)
    code = np.where(ok & (e1 <= E8M0_BIAS), e1 + E8M0_BIAS, E8M0_NAN)
    return code.astype(np.uint8)


def e8m0_values(codes: np.ndarray) -> np.ndarray:
    """The float32 values of E8M0 ``codes`` (uint8): ``2**(c - 127)``, NaN for ``0xFF``.

    Every value is exact in float32 (``2**-127`` is a float32 subnormal).
    """
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise TypeError(f"codes must be a uint8 array, got {c.dtype}")
    v = np.ldexp(np.float32(1), np.minimum(c, 254).astype(np.int32) - E8M0_BIAS).astype(np.float32)
    return np.where(c == E8M0_NAN, np.float32(np.nan), v).astype(np.float32)
