"""Double quantization: 8-bit storage of the group scales (spec section 11).

This module holds the container; the quantizer that fills it is added by the
NF4 / double-quantization work (``double_quantize``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["DoubleQuant"]


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
