"""Double quantization: 8-bit storage of the group scales (spec section 11.1).

QLoRA stores the per-block scales themselves in 8 bits ("double
quantization"), saving about 0.37 bits per weight at block 64. For the ``n``
scales ``a`` of a tensor, flattened in C order (float32; float16 widened)::

    offset = float32(mean(a))                  (the mean taken in float64)
    d      = a - offset                        (float32)
    c_j    = max|d_j| / 127                    (float32, one per block j of
                                                block_size consecutive d; last partial)
    k      = clip(round_half_even(d / c_j), -128, 127)    (int8; k = 0 where c_j == 0)
    a'     = k * c_j + offset                  (float32: the rebuilt scales)

``c`` and ``k`` are exactly spec 3's symmetric quantization with 8 bits
(``symmetric_scales`` and ``quantize_codes``, ``bits=8``) applied to ``d`` as a
1-D array grouped by ``block_size``; since ``|d| <= 127 c`` the code -128 never
occurs. One adjustment keeps every rebuilt scale positive: where ``a' <= 0``
(and ``offset > 0``) ``k`` is raised by 1 until ``a' > 0``, so a block
never gets a zero or negative scale (this happens only for blocks whose scale
is far below the mean, an all-zero block for instance).

The weight's codes are then recomputed with the rebuilt scales ``a'``
(spec 11.2, :func:`monoquant_np.requantize.double_quantize`), so the stored
codes are the best ones for the scales that dequantization uses.
:func:`monoquant_np.dequantize.dequantize` needs nothing new: ``qt.scale``
*is* ``a'``.

    >>> a = np.array([1.0, 2.0, 3.0, 6.0], dtype=np.float32)
    >>> dq = quantize_scales(a, block_size=2)
    >>> dq.offset, dq.scale.tolist(), dq.codes.tolist()
    (3.0, [0.015748031437397003, 0.023622047156095505], [-127, -64, 0, 127])
    >>> dq.rebuild().tolist()
    [1.0, 1.9921259880065918, 3.0, 6.0]

# Note: bitsandbytes (``compress_statistics=True``) quantizes ``d`` with its
# *dynamic* 8-bit map (``create_dynamic_map(signed=True)``, 256 non-uniform
# values, nearest entry of ``d / max|d_j|``) and keeps the 4-bit codes it
# computed with the exact absmax. Here the 8-bit codes are linear
# (``k * c_j``), which ONNX ``DequantizeLinear`` rebuilds with a standard
# operator, and the codes are recomputed from the rebuilt scales. The
# storage is the same: 8 bits per scale, one float32 per block of 256, one
# float32 offset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .codes import quantize_codes
from .errors import check_finite, check_int, check_positive_int, check_real, check_scales
from .scales import symmetric_scales

__all__ = ["DoubleQuant", "quantize_scales"]

#: The largest finite float32: the bound of ``offset``.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True, eq=False)
class DoubleQuant:
    """The second-level quantization of a scale tensor.

    Attributes:
        codes: int8 codes with the first-level scale's shape.
        scale: float32 ``(ceil(n_scales / block_size),)``, one per block of
            ``block_size`` scales taken in C order.
        offset: float32 scalar subtracted before quantizing (the mean).
        block_size: scales per second-level block (256 by default).

    Rebuild: ``scale_flat[i] = codes_flat[i] * scale[i // block_size] + offset``.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: float
    block_size: int = 256

    def __post_init__(self) -> None:
        """Spec 15.3: ``codes`` int8 and ``scale`` float32 ndarrays, ``offset`` a real number, ``block_size`` an int."""
        if not isinstance(self.codes, np.ndarray) or self.codes.dtype != np.int8:
            got = getattr(self.codes, "dtype", type(self.codes).__name__)
            raise TypeError(f"codes must be a numpy int8 array, got {got}")
        check_scales(self.scale, "scale", (np.float32,))
        check_real(self.offset, "offset", low=-FLOAT32_MAX, high=FLOAT32_MAX)
        block_size = check_int(self.block_size, "block_size", minimum=1)
        n_blocks = -(-self.codes.size // block_size)
        if self.scale.shape != (n_blocks,):
            raise ValueError(
                f"scale must have shape ({n_blocks},) = ceil(codes.size / block_size), got {self.scale.shape}"
            )

    def rebuild(self) -> np.ndarray:
        """float32 scales with ``codes``' shape, by the formula above."""
        flat = self.codes.reshape(-1).astype(np.float32)
        per = np.repeat(self.scale.astype(np.float32), self.block_size)[: flat.size]
        return (flat * per + np.float32(self.offset)).reshape(self.codes.shape)

    def nbytes(self) -> int:
        """Storage bytes: the codes, the block scales and the float32 offset."""
        return int(self.codes.nbytes + self.scale.nbytes + 4)

    def equals(self, other: Any) -> bool:
        return (
            isinstance(other, DoubleQuant)
            and self.codes.dtype == other.codes.dtype
            and np.array_equal(self.codes, other.codes)
            and np.array_equal(self.scale, other.scale)
            and np.float32(self.offset) == np.float32(other.offset)
            and self.block_size == other.block_size
        )


def quantize_scales(scale: np.ndarray, *, block_size: int = 256) -> DoubleQuant:
    """The 8-bit storage of non-negative scales (the formulas of the module docstring).

    Args:
        scale: float32 or float16 array of any shape, finite and ``>= 0``.
        block_size: scales per second-level block, taken in C order.

    Returns:
        :class:`DoubleQuant` with int8 ``codes`` of ``scale``'s shape, float32
        ``scale`` of shape ``(ceil(n / block_size),)`` and the float32
        ``offset``; its ``rebuild()`` is ``> 0`` everywhere unless every scale
        is 0 (then it is 0 everywhere).
    """
    check_scales(scale, "scale")
    block_size = check_positive_int(block_size, "block_size")
    a = scale.astype(np.float32).reshape(-1)  # (n,)
    check_finite(a, "scale")
    if a.size and float(a.min()) < 0:
        raise ValueError(f"scale must be >= 0 for double quantization, got minimum {float(a.min())}")
    if a.size == 0:
        return DoubleQuant(np.zeros(scale.shape, np.int8), np.zeros(0, np.float32), 0.0, block_size)
    offset = np.float32(np.mean(a, dtype=np.float64))
    d = a - offset  # (n,)
    c = symmetric_scales(d, group_size=block_size, axis=0, bits=8)  # (n_blocks,)
    k = quantize_codes(d, c, None, axis=0, group_size=block_size, bits=8).astype(np.int16)  # (n,)
    c_el = np.repeat(c, block_size)[: a.size]  # (n,)
    if offset > 0:
        for _ in range(256):  # a' is increasing in k and k = 127 gives a' >= offset > 0
            bad = k.astype(np.float32) * c_el + offset <= 0
            if not bad.any():
                break
            k[bad] += 1
    return DoubleQuant(
        codes=k.astype(np.int8).reshape(scale.shape),
        scale=c,
        offset=float(offset),
        block_size=block_size,
    )
