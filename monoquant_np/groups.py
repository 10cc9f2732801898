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
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_groups", "group_shape", "group_reduce", "expand_groups"]


def n_groups(length: int, group_size: int) -> int:
    """``ceil(length / group_size)``."""
    return -(-length // group_size)


def group_shape(shape: tuple[int, ...], axis: int, group_size: int) -> tuple[int, ...]:
    """The shape of group-wise quantities: ``shape`` with ``shape[axis]`` -> ``n_groups``."""
    out = list(shape)
    out[axis] = n_groups(shape[axis], group_size)
    return tuple(out)


def group_reduce(ufunc: np.ufunc, x: np.ndarray, axis: int, group_size: int) -> np.ndarray:
    """Reduce ``x`` over each group along ``axis`` with ``ufunc`` (e.g. ``np.maximum``).

    Shapes: ``x`` ``S`` -> result ``group_shape(S, axis, group_size)``.
    Full groups are reduced through a reshape; a partial last group separately.
    """
    length = x.shape[axis]
    full = (length // group_size) * group_size
    parts = []
    if full:
        head = np.take(x, np.arange(full), axis=axis) if full != length else x
        shp = x.shape[:axis] + (full // group_size, group_size) + x.shape[axis + 1 :]
        parts.append(ufunc.reduce(head.reshape(shp), axis=axis + 1))  # (..., n_full, ...)
    if full != length:
        tail = np.take(x, np.arange(full, length), axis=axis)
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
        rep = np.take(rep, np.arange(length), axis=axis)
    return rep
