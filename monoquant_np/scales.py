"""Group-wise scales and zero points (spec section 3).

All arithmetic is float32 (IEEE 754, correctly rounded division). For a group
``g`` of the weight ``w`` and a code of ``bits`` bits:

* symmetric (signed codes): ``s = max|w_g| / qmax`` with ``qmax = 2**(bits-1) - 1``
  (7 for int4, 127 for int8);
* asymmetric (unsigned codes): ``lo = min(min(w_g), 0)``, ``hi = max(max(w_g), 0)``,
  ``s = (hi - lo) / qmax`` with ``qmax = 2**bits - 1`` (15 for uint4),
  ``z = clip(round_half_even(-lo / s), 0, qmax)``; ``z = 0`` where ``s == 0``.

The scale is then stored in ``scale_dtype`` (float32 or float16, see
:func:`monoquant_np.numerics.store_scale`); ``z`` is computed from the *stored*
scale, so that dequantization with the stored values is the spec.

    >>> w = np.array([[0.0, -7.0], [3.5, 1.0]], dtype=np.float32)
    >>> symmetric_scales(w, group_size=2, axis=0).tolist()
    [[0.5, 1.0]]
    >>> s, z = asymmetric_scales(np.array([-1.0, 2.0], dtype=np.float32), group_size=2, axis=0)
    >>> s.tolist(), z.tolist()
    ([0.20000000298023224], [5])
"""

from __future__ import annotations

import numpy as np

from .errors import check_finite
from .groups import group_reduce
from .numerics import code_range, round_half_even, safe_scale, store_scale

__all__ = ["symmetric_scales", "asymmetric_scales", "group_absmax"]


def symmetric_scales(
    w: np.ndarray,
    *,
    group_size: int,
    axis: int,
    bits: int = 4,
    scale_dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """``s = max|w_g| / qmax`` per group, stored in ``scale_dtype``.

    Shapes: ``w`` float32 ``S`` -> ``group_shape(S, axis, group_size)``.
    An all-zero group has ``s = 0``. Raises ``ValueError`` if ``w`` holds NaN or inf.
    """
    _, qmax = code_range(bits, True)
    s32 = group_absmax(w, axis=axis, group_size=group_size) / np.float32(qmax)
    return store_scale(s32, np.dtype(scale_dtype))


def group_absmax(w: np.ndarray, *, axis: int, group_size: int) -> np.ndarray:
    """``max|w_g|`` per group, float32 ``group_shape(S, axis, group_size)``
    (``+0.0`` for an all-zero group). Raises ``ValueError`` if ``w`` holds NaN or inf.

    >>> group_absmax(np.array([-3.0, 1.0, 0.0, -0.0], np.float32), axis=0, group_size=2).tolist()
    [3.0, 0.0]
    """
    # NaN and inf propagate into the maxima, so the finiteness check costs nothing.
    absmax = group_reduce(np.maximum, w, axis, group_size, absolute=True).astype(np.float32, copy=False)
    if not np.isfinite(absmax).all():
        check_finite(w, "w")
    absmax += np.float32(0)  # -0.0 + 0.0 = +0.0, as |-0.0| is
    return absmax


def asymmetric_scales(
    w: np.ndarray,
    *,
    group_size: int,
    axis: int,
    bits: int = 4,
    scale_dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``(s, z)`` per group for unsigned codes; ``z`` is uint8 in ``0..qmax``.

    Shapes: ``w`` float32 ``S`` -> both ``group_shape(S, axis, group_size)``.
    Raises ``ValueError`` if ``w`` holds NaN or inf or if ``hi - lo``
    overflows float32.
    """
    _, qmax = code_range(bits, False)
    lo = np.minimum(group_reduce(np.minimum, w, axis, group_size), np.float32(0))
    hi = np.maximum(group_reduce(np.maximum, w, axis, group_size), np.float32(0))
    if not (np.isfinite(hi).all() and np.isfinite(lo).all()):
        check_finite(w, "w")
    with np.errstate(over="ignore"):
        span = hi - lo
    if not np.isfinite(span).all():
        raise ValueError(
            "w spans more than float32 can hold in one group (max - min overflows); "
            "asymmetric quantization cannot represent it, use symmetric=True"
        )
    s = store_scale(span / np.float32(qmax), np.dtype(scale_dtype))
    s32 = safe_scale(s)
    z = np.clip(round_half_even(-lo / s32), 0, qmax)
    z[s == 0] = 0
    return s, z.astype(np.uint8)
