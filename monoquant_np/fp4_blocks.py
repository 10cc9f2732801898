"""The FP4 rounding step: E2M1 codes of a weight for given block scales (spec 18.2, 19.2).

Per block ``b`` along ``axis`` with float32 scale ``S_b``::

    q = e2m1_codes(float32(w / S_b))          (q = 0 where S_b == 0)

``w / S_b`` is a true float32 division, as NVIDIA's recipe computes it; for
MXFP4's power-of-two ``S_b`` it is exact wherever the code can depend on it.
This is the one implementation of the step for both formats; codes are made
slab by slab of whole blocks and, in :func:`fp4_packed_codes`, packed while
the slab is in cache.

    >>> w = np.array([[0.75, -5.0], [3.0, 0.1]], dtype=np.float32)
    >>> fp4_block_codes(w, np.array([[0.5, 1.0]], np.float32), axis=0, block_size=2).tolist()
    [[3, 14], [7, 0]]

(``0.75 / 0.5 = 1.5``: code 3; ``3.0 / 0.5 = 6``: code 7; ``-5`` is a tie
between -4 and -6 and goes to -4, code 14; ``0.1`` rounds to 0.)
"""

from __future__ import annotations

import numpy as np

from .e2m1 import e2m1_codes
from .groups import expand_groups, index_along
from .packing import pack_grouped, pack_int4

__all__ = ["fp4_block_codes", "fp4_packed_codes", "SLAB_ELEMENTS"]

#: Elements coded at once (whole blocks; float32, bool and uint8 temporaries stay in L2).
SLAB_ELEMENTS = 1 << 18


def _codes(w: np.ndarray, s: np.ndarray, any_zero: bool) -> np.ndarray:
    """``e2m1_codes(w / s)``, code 0 where ``s == 0``; ``s`` broadcasts against ``w``. ``any_zero``:
    whether some block scale of the tensor is 0 (else the per-element check is skipped)."""
    if any_zero:
        zero = s == 0
        x = np.divide(w, np.where(zero, np.float32(1), s), dtype=np.float32)
        x[np.broadcast_to(zero, x.shape)] = 0
        return e2m1_codes(x)
    return e2m1_codes(np.divide(w, s, dtype=np.float32))


def fp4_block_codes(w: np.ndarray, scale: np.ndarray, *, axis: int, block_size: int) -> np.ndarray:
    """E2M1 codes of float32 ``w`` for float32 block scales ``scale``.

    Shapes: ``w`` ``S``; ``scale`` ``group_shape(S, axis, block_size)``.
    Returns uint8 codes ``0..15`` of shape ``S``: ``e2m1_codes(w / S_b)``,
    0 where ``S_b == 0``. Computed in slabs of whole blocks along ``axis``.
    """
    out = np.empty(w.shape, np.uint8)
    any_zero = bool((scale == 0).any())  # only NVFP4's all-zero tensor has zero scales
    length = w.shape[axis]
    across = w.size // length if length else 0  # elements per position along axis
    step = max(1, SLAB_ELEMENTS // max(1, across * block_size)) * block_size  # positions per slab: whole blocks
    for p0 in range(0, length, step):
        p1 = min(p0 + step, length)
        s_slab = scale[index_along(scale.ndim, axis, slice(p0 // block_size, -(-p1 // block_size)))]
        sl = index_along(w.ndim, axis, slice(p0, p1))
        out[sl] = _codes(w[sl], expand_groups(s_slab, axis, block_size, p1 - p0), any_zero)
    return out


def fp4_packed_codes(w: np.ndarray, scale: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """``pack_int4(fp4_block_codes(w, scale, ...))``: uint8 ``(ceil(w.size / 2),)``, element
    ``2i`` in the low nibble (spec 5, ONNX ``FLOAT4E2M1``'s packing); slab by slab along
    axis 0 or the last axis of a 2-D or larger ``w``."""
    def codes_of(ws: np.ndarray, s: list, ax: int) -> np.ndarray:
        return fp4_block_codes(ws, s[0], axis=ax, block_size=block_size)

    data = pack_grouped(codes_of, w, [scale], axis, block_size, SLAB_ELEMENTS)
    return pack_int4(fp4_block_codes(w, scale, axis=axis, block_size=block_size)) if data is None else data
