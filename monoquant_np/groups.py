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

__all__ = [
    "n_groups",
    "group_shape",
    "index_along",
    "split_view",
    "split_groups",
    "group_reduce",
    "expand_groups",
    "apply_rows",
    "to_group_blocks",
    "from_group_blocks",
]


def n_groups(length: int, group_size: int) -> int:
    """``ceil(length / group_size)``."""
    return -(-length // group_size)


def group_shape(shape: tuple[int, ...], axis: int, group_size: int) -> tuple[int, ...]:
    """The shape of group-wise quantities: ``shape`` with ``shape[axis]`` -> ``n_groups``."""
    out = list(shape)
    out[axis] = n_groups(shape[axis], group_size)
    return tuple(out)


def index_along(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    """The index tuple that applies ``sl`` along ``axis`` of an ``ndim``-D array.

    >>> index_along(3, 1, slice(0, 2))
    (slice(None, None, None), slice(0, 2, None), slice(None, None, None))
    """
    return (slice(None),) * axis + (sl,) + (slice(None),) * (ndim - axis - 1)


def split_view(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
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
        head = split_view(x[index_along(x.ndim, axis, slice(0, full))], shp)  # (..., n_full, gs, ...)
    if full != length:
        tail = x[index_along(x.ndim, axis, slice(full, length))]  # (..., length - full, ...)
    return head, tail


def group_reduce(ufunc: np.ufunc, x: np.ndarray, axis: int, group_size: int, *, absolute: bool = False) -> np.ndarray:
    """Reduce ``x`` over each group along ``axis`` with ``ufunc`` (e.g. ``np.maximum``);
    with ``absolute`` (``np.maximum`` only), ``max |x_g|``.

    Shapes: ``x`` ``S`` -> result ``group_shape(S, axis, group_size)``.
    Full groups are reduced through a reshaped view; a partial last group separately.
    ``max |x_g|`` is ``max(max x_g, -min x_g)`` (two reductions, no ``|x|``
    temporary). ``np.maximum``/``np.minimum`` over groups along the contiguous
    last axis take :func:`_pairwise_last` instead: the same values (both are
    exact and order-free, NaN propagates either way; only the sign of a zero
    result among ``+0.0`` and ``-0.0`` depends on the order, in either path).
    """
    if absolute and ufunc is not np.maximum:
        raise ValueError(f"group_reduce: absolute=True takes ufunc np.maximum, got {ufunc!r}")
    head, tail = split_groups(x, axis, group_size)
    parts = []
    if head is not None:
        if ufunc in (np.maximum, np.minimum) and axis == x.ndim - 1 and group_size > 1 \
                and head.strides[-1] == head.itemsize:
            parts.append(_pairwise_last(ufunc, head, absolute))  # (..., n_full)
        else:
            parts.append(_reduce(ufunc, head, axis + 1, absolute, False))  # (..., n_full, ...)
    if tail is not None:
        parts.append(_reduce(ufunc, tail, axis, absolute, True))  # (..., 1, ...)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts, axis=axis)


def _reduce(ufunc: np.ufunc, x: np.ndarray, axis: int, absolute: bool, keepdims: bool) -> np.ndarray:
    if absolute:
        hi = np.maximum.reduce(x, axis=axis, keepdims=True)
        lo = np.minimum.reduce(x, axis=axis, keepdims=True)
        r = np.maximum(hi, np.negative(lo, out=lo), out=hi)
    else:
        r = ufunc.reduce(x, axis=axis, keepdims=True)
    return r if keepdims else np.squeeze(r, axis=axis)


#: Elements of ``x`` reduced at once by :func:`_pairwise_last` (1 MiB of float32).
PAIRWISE_ELEMENTS = 1 << 18


def _pairwise_last(ufunc: np.ufunc, head: np.ndarray, absolute: bool = False) -> np.ndarray:
    """``ufunc.reduce(head, axis=-1)`` (of ``|head|`` with ``absolute``) for
    ``head`` ``(..., n_full, group)`` whose last axis is contiguous, by
    halving: ``m = ufunc(m[..., 0::2], m[..., 1::2])`` (an odd width folds its
    last column into the first) until one column is left.

    NumPy's reduction over a short contiguous axis makes one inner-loop call
    per group; each halving step here is one call over a whole block of about
    ``PAIRWISE_ELEMENTS``, since ``m[..., 0::2]`` of contiguous rows of even
    width is one strided run, so the number of calls no longer grows with the
    number of groups. With ``absolute`` the
    block's ``|x|`` is taken first, one contiguous pass into a block-sized
    buffer, instead of reducing twice.
    """
    lead, (nf, g) = head.shape[:-2], head.shape[-2:]
    h3 = head.reshape(-1, nf, g)  # (rows, n_full, group): a view for C-ordered leading axes, else a copy
    out = np.empty(h3.shape[:2], head.dtype)  # (rows, n_full)
    rows_per = max(1, PAIRWISE_ELEMENTS // (nf * g))
    groups_per = nf if rows_per > 1 else max(1, PAIRWISE_ELEMENTS // g)
    buf = np.empty(min(rows_per, h3.shape[0]) * min(groups_per, nf) * g if absolute else 0, head.dtype)
    for r0 in range(0, h3.shape[0], rows_per):
        for q0 in range(0, nf, groups_per):
            m = h3[r0 : r0 + rows_per, q0 : q0 + groups_per]  # (rows, groups, group)
            if absolute:
                m = np.abs(m, out=buf[: m.size].reshape(m.shape))
            while m.shape[-1] > 1:
                w = m.shape[-1]
                half = ufunc(m[..., 0 : w - 1 : 2], m[..., 1:w:2])  # (rows, groups, w // 2)
                if w % 2:
                    ufunc(half[..., :1], m[..., w - 1 :], out=half[..., :1])
                m = half
            out[r0 : r0 + rows_per, q0 : q0 + groups_per] = m[..., 0]
    return out.reshape(lead + (nf,))


def expand_groups(g: np.ndarray, axis: int, group_size: int, length: int) -> np.ndarray:
    """Broadcast group-wise values back to elements: ``out[..., i, ...] = g[..., i // group_size, ...]``.

    Shapes: ``g`` with ``g.shape[axis] == n_groups(length, group_size)`` ->
    the same with ``length`` along ``axis``.
    """
    rep = np.repeat(g, group_size, axis=axis)
    if rep.shape[axis] != length:
        rep = rep[index_along(rep.ndim, axis, slice(0, length))]
    return rep


#: Elements per inner-loop call that :func:`apply_rows` aims for.
ROW_ELEMENTS = 1 << 14


def apply_rows(ufunc: np.ufunc, x3: np.ndarray, g3: np.ndarray) -> np.ndarray:
    """``ufunc(x3, g3, out=x3)``: a group-wise value applied to every row of its
    group, in place, with long inner loops. Returns ``x3``.

    Shapes: ``x3`` ``(groups, rows, cols)``, ``g3`` ``(groups, 1, cols)``, the
    same dtype. Element for element the same operation as the broadcast (so
    the same bits); only the loop is arranged differently.

    NumPy broadcasts ``g3`` by calling its inner loop once per row of ``cols``
    elements, and a call's fixed cost is comparable to the work on a row of a
    few thousand float32. Here, when ``x3`` is C-contiguous,
    ``x3`` is viewed as ``(groups, rows / r, r * cols)`` against ``g3``
    repeated ``r`` times along its last axis (unless ``cols == 1``: NumPy's
    loop then runs over the rows already), ``r`` the largest power of two
    that divides ``rows``, with ``r <= rows / 8`` (the copy of ``g3`` stays
    within 1/8 of ``x3``) and ``r * cols <= ROW_ELEMENTS``: ``r`` times fewer
    inner-loop calls (``tools/bench_decode.py`` times both forms).

    Raises:
        ValueError: ``x3`` not 3-D, or ``g3`` not ``(groups, 1, cols)``.

    >>> x3 = np.arange(32, dtype=np.float32).reshape(1, 16, 2)
    >>> apply_rows(np.multiply, x3, np.array([[[1, -1]]], np.float32))[0, :2].tolist()
    [[0.0, -1.0], [2.0, -3.0]]
    """
    if x3.ndim != 3:
        raise ValueError(f"x3 must be 3-D (groups, rows, cols), got shape {x3.shape}")
    groups, rows, cols = x3.shape
    if g3.ndim != 3 or g3.shape[1] != 1 or g3.shape[::2] not in ((groups, cols), (1, cols), (groups, 1), (1, 1)):
        raise ValueError(f"g3 must have shape ({groups}, 1, {cols}) (or broadcast to it), got {g3.shape}")
    r = 1
    while rows % (2 * r) == 0 and 2 * r * 8 <= rows and 2 * r * cols <= ROW_ELEMENTS:
        r *= 2
    if r == 1 or cols == 1 or not x3.flags.c_contiguous:  # cols == 1: NumPy's inner loop runs over rows
        return ufunc(x3, g3, out=x3)
    rep = np.empty((groups, r, cols), g3.dtype)
    np.copyto(rep, g3)  # (groups, r, cols): g3 repeated r times
    xv = split_view(x3, (groups, rows // r, r * cols))  # (groups, rows / r, r cols), a view
    ufunc(xv, rep.reshape(groups, 1, r * cols), out=xv)
    return x3


def to_group_blocks(w: np.ndarray, axis: int, group_size: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``w`` with its groups along ``axis`` as a ``(G, group_size, M)`` copy, zero-padded; and the group shape.

    ``M`` is the product of the other axes. The padding of a partial last group
    with zeros is exact for the scale searches that use this layout: a zero
    raises neither ``max|w|`` nor the range ``[min(min, 0), max(max, 0)]`` and
    quantizes to 0 with no error.
    """
    length = w.shape[axis]
    g = n_groups(length, group_size)
    moved = np.moveaxis(w, axis, 0).reshape(length, -1)  # (L, M)
    pad = g * group_size - length
    if pad:
        moved = np.concatenate([moved, np.zeros((pad, moved.shape[1]), w.dtype)])
    gshape = list(w.shape)
    gshape[axis] = g
    return moved.reshape(g, group_size, -1), tuple(gshape)


def from_group_blocks(a: np.ndarray, axis: int, gshape: tuple[int, ...]) -> np.ndarray:
    """Group-wise values ``(G, M)`` of the :func:`to_group_blocks` layout back in the group shape ``gshape``."""
    moved = (gshape[axis],) + gshape[:axis] + gshape[axis + 1 :]
    return np.moveaxis(a.reshape(moved), 0, axis)
