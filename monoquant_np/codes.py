"""The rounding step: codes of a float weight for given scales (spec sections 4.2 and 7).

Per group ``g`` along ``axis``, with scale ``s`` and zero point ``z`` (0 for
the symmetric schemes)::

    q = clip(round_half_even(w / s) + z, qmin, qmax)     (q = z where s == 0)

``(qmin, qmax)`` is :func:`~monoquant_np.numerics.code_range` of the bit width
and signedness. This is the one implementation of the rounding step: the
quantizers (:func:`~monoquant_np.quantize.quantize`, double quantization,
MSE scales, GPTQ) call it with the scales they chose.

    >>> w = np.array([[0.25, -1.0], [0.75, 3.5]], dtype=np.float32)
    >>> s = np.array([[0.5, 0.5]], dtype=np.float32)
    >>> quantize_codes(w, s, None, axis=0, group_size=2).tolist()
    [[0, -2], [2, 7]]

``w / s`` stays a true division: ``w * (1 / s)`` rounds differently for some
inputs. Codes are computed slab by slab (``SLAB_BYTES`` of whole groups, the
group-wise values broadcast through a length-1 axis instead of repeated) and,
in :func:`packed_codes`, packed while the slab is still in cache.
"""

from __future__ import annotations

import numpy as np

from .groups import index_along, split_groups
from .numerics import code_range, round_half_even, safe_scale
from .packing import pack_codes, pack_grouped

__all__ = ["quantize_codes", "packed_codes", "SLAB_BYTES"]


#: Float32 bytes of one slab of groups processed at once (fits in L2 cache).
SLAB_BYTES = 1 << 20


def _round_groups(
    w: np.ndarray, s: np.ndarray, z: np.ndarray | None, out: np.ndarray, qmin: int, qmax: int
) -> None:
    """``out = clip(rint(w / s) + z, qmin, qmax)``, ``z`` (or 0) where ``s == 0``.

    ``w`` and ``out`` have the same shape; ``s`` and ``z`` broadcast against
    it through a length-1 group axis. This is the spec's one rounding step.
    """
    zero = s == 0  # (..., groups, 1, ...)
    any_zero = bool(zero.any())
    q = np.divide(w, safe_scale(s) if any_zero else s, dtype=np.float32)
    round_half_even(q, out=q)
    if z is not None:
        q += z.astype(np.float32)
    np.clip(q, np.float32(qmin), np.float32(qmax), out=q)
    if any_zero:
        np.copyto(q, np.float32(0) if z is None else z.astype(np.float32), where=zero)
    np.copyto(out, q, casting="unsafe")  # integral values in range: exact


def quantize_codes(
    w: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int,
    group_size: int,
    bits: int = 4,
) -> np.ndarray:
    """The codes of float32 ``w`` for given scales: ``clip(rint(w / s) + z, qmin, qmax)``.

    Shapes: ``w`` ``S``; ``scale``/``zero_point`` ``group_shape(S, axis, group_size)``.
    Returns int8 codes (symmetric) or uint8 codes (asymmetric) of shape ``S``.
    Where ``s == 0`` the code is ``z`` (or 0). This is the one implementation
    of the rounding step; algorithms that choose their own scales call it.
    """
    signed = zero_point is None
    qmin, qmax = code_range(bits, signed)
    out = np.empty(w.shape, np.int8 if signed else np.uint8)
    w_head, w_tail = split_groups(w, axis, group_size)
    o_head, o_tail = split_groups(out, axis, group_size)
    n_full = w_head.shape[axis] if w_head is not None else 0
    if w_head is not None and o_head is not None:
        # (..., n_full, 1, ...): group-wise values broadcast over the group axis
        s_head = np.expand_dims(scale[index_along(scale.ndim, axis, slice(0, n_full))], axis + 1)
        z_head = None
        if zero_point is not None:
            z_head = np.expand_dims(zero_point[index_along(zero_point.ndim, axis, slice(0, n_full))], axis + 1)
        per_group = max(1, w_head[index_along(w_head.ndim, axis, slice(0, 1))].size)
        step = max(1, (SLAB_BYTES // 4) // per_group)  # groups per slab
        for g0 in range(0, n_full, step):
            sl = index_along(w_head.ndim, axis, slice(g0, g0 + step))
            _round_groups(
                w_head[sl], s_head[sl], None if z_head is None else z_head[sl], o_head[sl], qmin, qmax
            )
    if w_tail is not None and o_tail is not None:
        last = index_along(scale.ndim, axis, slice(n_full, n_full + 1))
        _round_groups(
            w_tail, scale[last], None if zero_point is None else zero_point[last], o_tail, qmin, qmax
        )
    return out


def packed_codes(
    w: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, group_size: int, bits: int
) -> np.ndarray:
    """``pack_codes(quantize_codes(w, scale, zp, ...), bits)``: uint8 bytes, slab by slab when groups run
    along axis 0 or the last axis (:func:`~monoquant_np.packing.pack_grouped`).

    Each slab is about ``SLAB_BYTES`` of float32, so its codes are packed
    while still in cache. Bit-identical to the one-shot form: the codes come
    from :func:`quantize_codes` and the bytes from ``pack_slabs``, on the one
    definition of nibble order.
    """
    def codes_of(ws: np.ndarray, sz: list, ax: int) -> np.ndarray:
        return quantize_codes(ws, sz[0], sz[1], axis=ax, group_size=group_size, bits=bits)

    data = pack_grouped(codes_of, w, [scale, zp], axis, group_size, SLAB_BYTES // 4, bits)
    if data is None:
        return pack_codes(quantize_codes(w, scale, zp, axis=axis, group_size=group_size, bits=bits), bits)
    return data
