"""Argument checks shared by every module (spec section 15, "The error contract"; 4.1 the float policy).

Every public function validates its arguments here, one helper per concept
(an integer size, an axis, a flag, a dtype, a float array, stored bytes, a
shape), so that bad input always produces the same kind of message: a
``TypeError`` for a wrong type or dtype, a ``ValueError`` for a wrong value or
shape, naming the argument, what was expected and what came. Nothing in the
package validates user input with ``assert``.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from .numerics import SCALE_DTYPES

__all__ = [
    "is_int",
    "check_int",
    "check_positive_int",
    "check_axis",
    "check_bool",
    "check_real",
    "check_reals",
    "check_float_array",
    "check_int_array",
    "check_finite",
    "check_choice",
    "check_name",
    "check_matrix",
    "check_uint8",
    "check_scales",
    "check_dtype",
    "check_scale_dtype",
    "check_shape",
    "check_path",
]

#: Input dtypes a weight may have. float64 is accepted and rounded to float32.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _got(value: Any) -> str:
    """``value!r (type)`` for a message, the repr cut to 60 characters."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer that is not a ``bool`` (spec 15.1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int``: ``TypeError`` unless an integer (not ``bool``), ``ValueError`` below ``minimum``.

    The one check of sizes and counts (spec 15.1): ``True``, ``1.5``, ``128.0``,
    ``"128"`` and ``None`` are type errors, as in Python's ``range``.

    >>> check_int(128, "group_size", minimum=1)
    128
    >>> check_int(128.0, "group_size", minimum=1)
    Traceback (most recent call last):
    ...
    TypeError: group_size must be an int, got 128.0 (float)
    >>> check_int(0, "group_size", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: group_size must be a positive int, got 0
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {_got(value)}")
    if minimum is not None and int(value) < minimum:
        what = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {int(value)}")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """:func:`check_int` with ``minimum=1``: group and block sizes.

    >>> check_positive_int(0, "group_size")
    Traceback (most recent call last):
    ...
    ValueError: group_size must be a positive int, got 0
    """
    return check_int(value, name, minimum=1)


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Normalize ``axis`` for an array of ``ndim`` dimensions (negative counts from the end).

    ``TypeError`` unless an integer (not ``bool``); ``ValueError`` outside ``[-ndim, ndim)``.

    >>> check_axis(-1, 2)
    1
    >>> check_axis(2, 2)
    Traceback (most recent call last):
    ...
    ValueError: axis must be an int in [-2, 1] for a 2-D weight, got 2
    """
    if not is_int(axis):
        raise TypeError(f"{name} must be an int, got {_got(axis)}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(
            f"{name} must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D weight, got {axis}"
        )
    return int(axis) % ndim


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` as a ``bool`` if it is a ``bool`` or ``numpy.bool_``, else ``TypeError`` (spec 15.1).

    >>> check_bool(1, "symmetric")
    Traceback (most recent call last):
    ...
    TypeError: symmetric must be a bool, got 1 (int)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_got(value)}")
    return bool(value)


def check_real(value: Any, name: str, *, low: float, high: float = float("inf"), low_open: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number in ``[low, high]`` (``(low, high]`` if ``low_open``).

    ``TypeError`` unless a Python or NumPy real number (``bool`` and ``str``
    are not); ``ValueError`` for NaN, +-inf or a value outside the interval.

    >>> check_real(0.0, "damp", low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: damp must be a finite number in (0, inf), got 0.0
    """
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {_got(value)}")
    v = float(value)
    if not np.isfinite(v) or not (low < v if low_open else low <= v) or not v <= high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high == float('inf') else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def check_reals(values: Any, name: str, *, low: float, high: float, low_open: bool = False) -> np.ndarray:
    """float64 ``(n,)`` of a non-empty sequence of real numbers in ``[low, high]`` (``(low, high]`` if ``low_open``).

    ``TypeError`` unless ``np.asarray(values)`` is an integer or float array
    (a str, ``None``, bools); ``ValueError`` if it is empty, has more than
    one dimension, or holds a value outside the interval (or NaN).
    """
    a = _as_array(values, name)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a sequence of real numbers, got {_got(values)}")
    a = a.astype(np.float64)
    ok = (a > low if low_open else a >= low) & (a <= high)
    if a.ndim != 1 or a.size == 0 or not ok.all():
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers in {interval}, got {_got(values)}")
    return a


def _as_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)``; ``TypeError`` if NumPy cannot make an array of it (a ragged list)."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array, got {_got(value)} that numpy cannot convert ({e})") from None


def check_float_array(
    w: Any, name: str = "w", *, min_ndim: int = 1, nonempty: bool = False, dtype: Any = np.float32
) -> np.ndarray:
    """``np.asarray(w)`` as a ``dtype`` (float32) ndarray, raising for non-float input (spec 4.1, 15.2).

    Anything ``np.asarray`` makes a float16, float32 or float64 array of is
    accepted (ndarrays, NumPy scalars, nested lists of Python floats); any
    other dtype (integer, bool, complex, str, object: ``None``, a ragged
    list) raises ``TypeError``. Then ``ValueError`` for fewer than
    ``min_ndim`` dimensions, for no element when ``nonempty``, and for a
    float64 value that rounds to +-inf in float32 (``|x| >= 2**128 - 2**103``).
    float16 converts exactly; float64 rounds to nearest float32.

    >>> check_float_array([[1, 2]])
    Traceback (most recent call last):
    ...
    TypeError: w must be a float16, float32 or float64 array, got int64 (from list); write 1.0 rather than 1
    """
    arr = _as_array(w, name)
    if arr.dtype not in FLOAT_DTYPES:
        hint = "; write 1.0 rather than 1" if arr.dtype.kind in "iu" and isinstance(w, (list, tuple)) else ""
        raise TypeError(
            f"{name} must be a float16, float32 or float64 array, got {arr.dtype} (from {type(w).__name__}){hint}"
        )
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{name} must have at least one element, got shape {arr.shape}")
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=dtype)
    if arr.dtype == np.float64 and out.dtype == np.float32 and not np.isfinite(out).all():
        bad = np.isinf(out) & np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} must fit in float32: {int(bad.sum())} float64 value(s) round to +-inf, "
                f"the first {float(arr[first])!r} at index {first} (float32's largest finite value is 3.4028235e+38)"
            )
    return out


def check_int_array(a: Any, name: str) -> np.ndarray:
    """``np.asarray(a)`` if it is an integer array (any integer dtype, not bool), else ``TypeError`` (spec 15.2)."""
    arr = _as_array(a, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {arr.dtype} (from {type(a).__name__})")
    return arr


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
    """Return ``value`` if it is one of ``choices``.

    When every choice is a ``str`` (or every one an int), a value of another
    type raises ``TypeError`` (``bits=4.0``, ``scale_search=None``); a value
    of the right type that is not a choice raises ``ValueError`` (spec 15.1).

    >>> check_choice("mse", ("absmax", "mse"), "scale_search")
    'mse'
    >>> check_choice(8.0, (4, 8), "bits")
    Traceback (most recent call last):
    ...
    TypeError: bits must be one of 4, 8 (an int), got 8.0 (float)
    """
    listed = ", ".join(map(repr, choices))
    if choices and all(isinstance(c, str) for c in choices) and not isinstance(value, str):
        raise TypeError(f"{name} must be one of {listed} (a str), got {_got(value)}")
    if choices and all(is_int(c) for c in choices) and not is_int(value):
        raise TypeError(f"{name} must be one of {listed} (an int), got {_got(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
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
    """Return ``a`` if it is a uint8 ndarray (of ``ndim`` dimensions), else raise (spec 15.2).

    Stored bytes must be a ``numpy.ndarray`` of dtype uint8 exactly: a list,
    a ``bytes`` object or an int64 array of byte values is a ``TypeError``
    (an integer array is more likely codes that were never packed).
    """
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a numpy uint8 array, got {got}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def check_scales(a: object, name: str = "scales", dtypes: tuple[Any, ...] = SCALE_DTYPES) -> np.ndarray:
    """Return ``a`` if it is an ndarray of one of ``dtypes`` (float32 or float16), else ``TypeError``."""
    allowed = tuple(np.dtype(d) for d in dtypes)
    if not isinstance(a, np.ndarray) or a.dtype not in allowed:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a {' or '.join(d.name for d in allowed)} array, got {got}")
    return a


def check_dtype(value: Any, allowed: tuple[Any, ...], name: str) -> np.dtype:
    """``value`` as a NumPy dtype if it names one of ``allowed`` (spec 15.1).

    A dtype argument is a ``str``, a ``numpy.dtype`` or a type (``np.float16``,
    ``float``); anything else, ``None`` included (``np.dtype(None)`` would
    silently mean float64), raises ``TypeError``. A dtype-like that names
    another dtype (``float``, ``"int8"``, ``object``) or a ``str`` NumPy does
    not read (``"float17"``) raises ``ValueError``: a value of the right kind.

    >>> check_dtype("half", (np.float16, np.float32), "scale_dtype")
    dtype('float16')
    >>> check_dtype(None, (np.float16, np.float32), "scale_dtype")
    Traceback (most recent call last):
    ...
    TypeError: scale_dtype must be a dtype (str, numpy.dtype or type) naming float16 or float32, got None (NoneType)
    """
    ok = tuple(np.dtype(d) for d in allowed)
    names = " or ".join(d.name for d in ok)
    if not isinstance(value, (str, np.dtype, type)):
        raise TypeError(f"{name} must be a dtype (str, numpy.dtype or type) naming {names}, got {_got(value)}")
    try:
        dt = np.dtype(value)
    except TypeError:
        raise ValueError(f"{name} must be {names}, got {value!r}, which numpy does not read as a dtype") from None
    if dt not in ok:
        raise ValueError(f"{name} must be {names}, got {dt}")
    return dt


def check_scale_dtype(scale_dtype: Any, name: str = "scale_dtype") -> np.dtype:
    """``scale_dtype`` as a NumPy dtype if it is float32 or float16 (spec 3.4): :func:`check_dtype`.

    >>> check_scale_dtype("float16")
    dtype('float16')
    >>> check_scale_dtype(np.float64)
    Traceback (most recent call last):
    ...
    ValueError: scale_dtype must be float32 or float16, got float64
    """
    return check_dtype(scale_dtype, SCALE_DTYPES, name)


def check_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of ints if it is a tuple or list of non-negative integers with at least one.

    ``TypeError`` unless a tuple or list of integers (not ``bool``);
    ``ValueError`` for no dimension or a negative size (spec 15.1).

    >>> check_shape([2, 32])
    (2, 32)
    >>> check_shape((2, 32.0))
    Traceback (most recent call last):
    ...
    TypeError: shape must be a tuple of ints, got (2, 32.0) (tuple)
    """
    if not isinstance(shape, (tuple, list)) or not all(is_int(d) for d in shape):
        raise TypeError(f"{name} must be a tuple of ints, got {_got(shape)}")
    dims = tuple(int(d) for d in shape)
    if not dims or min(dims) < 0:
        raise ValueError(f"{name} must have at least one dimension, every size >= 0, got {dims}")
    return dims


def check_path(path: Any, name: str = "path") -> str:
    """``os.fspath(path)`` if ``path`` is a ``str`` or ``os.PathLike`` of ``str``, else ``TypeError``."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"{name} must be a str or os.PathLike, got {_got(path)}")
    return os.fspath(path)
