"""Rounding, code ranges and the scale dtype policy (spec sections 1 and 3).

This module is the one place where the spec's numeric conventions live:

* rounding is half to even (``np.rint``), see :func:`round_half_even`;
* the code range of every ``(bits, signed)`` pair, see :func:`code_range`;
* how a float32 scale is stored as float16 (overflow raises, underflow to zero
  is allowed and handled), see :func:`store_scale`;
* the safe reciprocal of an all-zero group's scale, see :func:`safe_scale`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_half_even", "code_range", "store_scale", "safe_scale", "SCALE_DTYPES"]

#: Scale dtypes the spec allows (section 3.4).
SCALE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def round_half_even(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Round to the nearest integer, ties to even (IEEE 754 roundTiesToEven).

    >>> round_half_even(np.array([0.5, 1.5, 2.5, -0.5, -1.5], dtype=np.float32))
    array([ 0.,  2.,  2., -0., -2.], dtype=float32)
    """
    return np.rint(x, out=out)


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer codes ``(qmin, qmax)`` of a ``bits``-wide code (spec 1.1).

    >>> code_range(4, True), code_range(4, False), code_range(8, True)
    ((-8, 7), (0, 15), (-128, 127))
    """
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def store_scale(scale32: np.ndarray, scale_dtype: np.dtype) -> np.ndarray:
    """Round float32 scales to the storage dtype (spec 3.4).

    float32 is returned unchanged. float16 rounds to nearest even; a scale that
    overflows float16 (above 65504 after rounding) raises ``ValueError``,
    naming the largest scale; a scale that underflows to 0 or a subnormal is
    kept, and the quantizer then treats a zero scale as an all-zero group.
    """
    dt = np.dtype(scale_dtype)
    if dt == np.float32:
        return scale32.astype(np.float32, copy=False)
    with np.errstate(over="ignore"):
        stored = scale32.astype(np.float16)
    if not np.isfinite(stored).all():
        raise ValueError(
            "scale_dtype=float16 cannot hold the scales of this weight: the largest scale is "
            f"{float(np.max(scale32)):.6g}, float16's largest finite value is 65504; "
            "use scale_dtype=float32"
        )
    return stored


def safe_scale(scale: np.ndarray) -> np.ndarray:
    """float32 copy of ``scale`` with zeros replaced by 1 (spec 3.3).

    A zero scale means the group is all zero (or underflowed in float16); its
    codes are defined as the zero point, so the divisor can be anything
    non-zero and the caller overwrites those codes.
    """
    s = scale.astype(np.float32, copy=True)
    s[s == 0] = 1.0
    return s


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C ``roundf``), exactly.

    ``sign(x) * (floor(|x|) + floor(2 * (|x| - floor(|x|))))``: every step is
    exact in binary floating point, unlike ``floor(|x| + 0.5)``, which rounds
    ``0.49999997`` up to 1. (Same formula as gguf-py's ``np_roundf``.)
    Infinities and NaN are returned as they are, as ``roundf`` does.

    >>> round_half_away(np.array([0.5, 1.5, 2.5, -2.5, 0.49999997], dtype=np.float32)).tolist()
    [1.0, 2.0, 3.0, -3.0, 0.0]
    """
    a = np.abs(x)
    fl = np.floor(a)
    with np.errstate(invalid="ignore"):
        r = np.sign(x) * (fl + np.floor(2 * (a - fl)))
    return np.where(np.isfinite(x), r, x)
