"""Argument checks shared by every module (spec section 4, "Input policy").

Every public function validates its arguments here, so that bad input always
produces the same kind of message: a ``TypeError`` for a wrong type or dtype, a
``ValueError`` for a wrong value or shape, naming the argument, what was
expected and what came. Nothing in the package validates user input with
``assert``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .numerics import SCALE_DTYPES

__all__ = [
    "check_positive_int",
    "check_axis",
    "check_float_array",
    "check_finite",
    "check_choice",
    "check_name",
    "check_matrix",
    "check_uint8",
    "check_scales",
    "check_scale_dtype",
]

#: Input dtypes a weight may have. float64 is accepted and rounded to float32.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise.

    >>> check_positive_int(128, "group_size")
    128
    >>> check_positive_int(0, "group_size")
    Traceback (most recent call last):
    ...
    ValueError: group_size must be a positive int, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Normalize ``axis`` for an array of ``ndim`` dimensions (negative counts from the end).

    >>> check_axis(-1, 2)
    1
    >>> check_axis(2, 2)
    Traceback (most recent call last):
    ...
    ValueError: axis must be an int in [-2, 1] for a 2-D weight, got 2
    """
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(
            f"{name} must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D weight, "
            f"got {axis!r} ({type(axis).__name__})"
        )
    if not -ndim <= int(axis) < ndim:
        raise ValueError(
            f"{name} must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D weight, got {axis}"
        )
    return int(axis) % ndim


def check_float_array(w: Any, name: str = "w", *, min_ndim: int = 1) -> np.ndarray:
    """Return ``w`` as a float32 ndarray, raising for non-float input (spec 4.1).

    float16 converts exactly; float64 rounds to nearest float32 (the spec's
    arithmetic is float32 throughout). Integer, bool, complex and object arrays
    raise ``TypeError``; lists of Python floats are accepted.
    """
    if isinstance(w, (np.ndarray, np.generic)):
        arr = np.asarray(w)
    elif isinstance(w, (list, tuple)):
        arr = np.asarray(w)
        if arr.dtype.kind == "i" or arr.dtype.kind == "u":
            raise TypeError(
                f"{name} must be a floating-point array (float16, float32 or float64), "
                f"got a list of ints; write 1.0 rather than 1"
            )
    else:
        raise TypeError(
            f"{name} must be a numpy array of float16, float32 or float64, "
            f"got {type(w).__name__}"
        )
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float16, float32 or float64, got {arr.dtype}"
        )
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    return np.asarray(arr, dtype=np.float32)


#: Elements checked at once by :func:`check_finite` (its boolean temporary: 256 KiB).
FINITE_SLAB = 1 << 18


def check_finite(w: np.ndarray, name: str = "w") -> None:
    """Raise ``ValueError`` if ``w`` holds NaN or +-inf, saying how many and where the first is.

    >>> check_finite(np.array([1.0, np.nan, np.inf], dtype=np.float32))
    Traceback (most recent call last):
    ...
    ValueError: w must be finite: 2 non-finite value(s), the first nan at index (1,)
    """
    # The common case is all-finite: checked in slabs along axis 0 (views, any layout), so the
    # boolean temporary is a slab's, not one byte per element of w.
    if w.size == 0:
        return
    if w.ndim == 0:
        if np.isfinite(w):
            return
    else:
        step = max(1, FINITE_SLAB // max(1, w.size // w.shape[0]))  # rows per slab
        if all(np.isfinite(w[i : i + step]).all() for i in range(0, w.shape[0], step)):
            return
    bad = ~np.isfinite(w)
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{name} must be finite: {count} non-finite value(s), the first {w[first]} at index {first}"
    )


def check_choice(value: Any, choices: tuple[Any, ...], name: str) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_name(value: Any, name: str) -> str:
    """Return ``value`` if it is a non-empty ``str`` (a graph or tensor name), else raise ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value


def check_matrix(shape: tuple[int, ...], name: str, layout: str = "(K, N) weight", *, extra: str = "") -> None:
    """Raise unless ``shape`` is 2-D: the one message for "a matrix was expected".

    ``layout`` names the two axes (``"(K, N) weight"``, ``"(K/8, N)"``);
    ``extra`` appends what else is required (``"grouped along axis 0"``).

    >>> check_matrix((4, 8), "w")
    >>> check_matrix((4,), "qt", extra="grouped along axis 0")
    Traceback (most recent call last):
    ...
    ValueError: qt must be a 2-D (K, N) weight grouped along axis 0, got shape (4,)
    """
    if len(shape) != 2:
        what = f"a 2-D {layout}" + (f" {extra}" if extra else "")
        raise ValueError(f"{name} must be {what}, got shape {tuple(shape)}")


def check_uint8(a: object, name: str, ndim: int | None = None) -> np.ndarray:
    """Return ``a`` if it is a uint8 ndarray (of ``ndim`` dimensions), else raise."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a numpy uint8 array, got {got}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def check_scales(a: object, name: str = "scales") -> np.ndarray:
    """Return ``a`` if it is a float32 or float16 ndarray, else raise ``TypeError``."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float16):
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a float32 or float16 array, got {got}")
    return a


def check_scale_dtype(scale_dtype: Any, name: str = "scale_dtype") -> np.dtype:
    """``scale_dtype`` as a NumPy dtype if it is float32 or float16 (spec 3.4), else ``TypeError``.

    >>> check_scale_dtype("float16")
    dtype('float16')
    >>> check_scale_dtype(np.float64)
    Traceback (most recent call last):
    ...
    TypeError: scale_dtype must be float32 or float16, got float64
    """
    try:
        dt = np.dtype(scale_dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float16, got {scale_dtype!r}") from None
    if dt not in SCALE_DTYPES:
        raise TypeError(f"{name} must be float32 or float16, got {dt}")
    return dt
