"""Groups along an axis, with a partial last group (spec section 2).

A weight of shape ``S`` is cut along ``axis`` into ``n_groups = ceil(S[axis] /
group_size)`` groups of ``group_size`` consecutive elements; group ``g`` covers
indices ``g * group_size .. min((g + 1) * group_size, S[axis]) - 1``, so the
last group may be shorter. Every other index is its own group coordinate: the
group-wise quantities (scales, zero points) have shape ``S`` with ``S[axis]``
replaced by ``n_groups``. This is exactly ONNX ``DequantizeLinear``'s blocked
layout (opset 21, ``block_size``).

    >>> group_shape((5, 3), axis=0, group_size=2)
    (3, 3)
    >>> w = np.array([[1.0], [-4.0], [2.0]], dtype=np.float32)
    >>> group_reduce(np.maximum, np.abs(w), axis=0, group_size=2).ravel().tolist()
    [4.0, 2.0]
    >>> expand_groups(np.array([[10.0], [20.0]]), axis=0, group_size=2, length=3).ravel().tolist()
    [10.0, 10.0, 20.0]

Performance: full groups are a *view* of shape ``S[:axis] + (n_full,
group_size) + S[axis+1:]`` (:func:`split_groups`); group-wise values broadcast
against it through a length-1 axis, so nothing is repeated element by element.
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_groups", "group_shape", "group_reduce", "expand_groups", "split_groups"]


def n_groups(length: int, group_size: int) -> int:
    """``ceil(length / group_size)``."""
    return -(-length // group_size)


def group_shape(shape: tuple[int, ...], axis: int, group_size: int) -> tuple[int, ...]:
    """The shape of group-wise quantities: ``shape`` with ``shape[axis]`` -> ``n_groups``."""
    out = list(shape)
    out[axis] = n_groups(shape[axis], group_size)
    return tuple(out)


def _along(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    return (slice(None),) * axis + (sl,) + (slice(None),) * (ndim - axis - 1)


def _split_view(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` reshaped by splitting one axis: always possible as a view, and
    required to be one (writes through it must reach ``x``)."""
    try:
        return np.reshape(x, shape, copy=False)
    except TypeError:  # NumPy < 2.1 has no copy=; splitting an axis never copies
        return x.reshape(shape)


def split_groups(x: np.ndarray, axis: int, group_size: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(head, tail)``: the full groups of ``x`` and its partial last group.

    Shapes: ``x`` ``S`` -> ``head`` ``S[:axis] + (n_full, group_size) +
    S[axis+1:]`` (a view of ``x``, writable when ``x`` is), ``tail`` ``S``
    with ``S[axis]`` -> ``S[axis] % group_size`` (a view). Either is ``None``
    when empty.

    >>> head, tail = split_groups(np.arange(5), axis=0, group_size=2)
    >>> head.tolist(), tail.tolist()
    ([[0, 1], [2, 3]], [4])
    """
    length = x.shape[axis]
    n_full = length // group_size
    full = n_full * group_size
    head = tail = None
    if n_full:
        shp = x.shape[:axis] + (n_full, group_size) + x.shape[axis + 1 :]
        head = _split_view(x[_along(x.ndim, axis, slice(0, full))], shp)  # (..., n_full, gs, ...)
    if full != length:
        tail = x[_along(x.ndim, axis, slice(full, length))]  # (..., length - full, ...)
    return head, tail


def group_reduce(ufunc: np.ufunc, x: np.ndarray, axis: int, group_size: int) -> np.ndarray:
    """Reduce ``x`` over each group along ``axis`` with ``ufunc`` (e.g. ``np.maximum``).

    Shapes: ``x`` ``S`` -> result ``group_shape(S, axis, group_size)``.
    Full groups are reduced through a reshaped view; a partial last group separately.
    """
    head, tail = split_groups(x, axis, group_size)
    parts = []
    if head is not None:
        parts.append(ufunc.reduce(head, axis=axis + 1))  # (..., n_full, ...)
    if tail is not None:
        parts.append(ufunc.reduce(tail, axis=axis, keepdims=True))  # (..., 1, ...)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts, axis=axis)


def expand_groups(g: np.ndarray, axis: int, group_size: int, length: int) -> np.ndarray:
    """Broadcast group-wise values back to elements: ``out[..., i, ...] = g[..., i // group_size, ...]``.

    Shapes: ``g`` with ``g.shape[axis] == n_groups(length, group_size)`` ->
    the same with ``length`` along ``axis``.
    """
    rep = np.repeat(g, group_size, axis=axis)
    if rep.shape[axis] != length:
        rep = rep[_along(rep.ndim, axis, slice(0, length))]
    return rep
