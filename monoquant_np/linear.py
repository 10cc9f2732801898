"""``QuantizedLinear``: a linear layer that dequantizes in its forward pass (spec 6.2, 7).

    >>> rng = np.random.default_rng(0)
    >>> layer = QuantizedLinear.from_float(rng.standard_normal((256, 8)).astype(np.float32))
    >>> layer.qt.scheme, layer(np.ones((3, 256), np.float32)).shape
    ('int4', (3, 8))
    >>> QuantizedLinear.from_float(np.ones((64, 8), np.float32)).qt.scheme  # K < group_size
    'int8'
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import check_float_array, check_matrix
from .matmul import dequant_matmul
from .quantize import quantize
from .tensor import QuantizedTensor, check_qt

__all__ = ["QuantizedLinear"]


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedLinear:
    """``y = x @ dequantize(qt) + bias`` with weight ``(K, N)`` grouped along K (axis 0).

    Attributes:
        qt: the quantized weight, shape ``(K, N)``.
        bias: float32 ``(N,)`` or ``None``.
    """

    qt: QuantizedTensor
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Spec 15.3: ``qt`` a 2-D QuantizedTensor; ``bias`` None or a float array-like ``(N,)``, kept as float32."""
        check_qt(self.qt)
        check_matrix(self.qt.shape, "qt")
        if self.bias is not None:
            b32 = check_float_array(self.bias, "bias")
            if b32.shape != (self.qt.shape[1],):
                raise ValueError(f"bias must have shape ({self.qt.shape[1]},), got {b32.shape}")
            object.__setattr__(self, "bias", b32)

    @classmethod
    def from_float(
        cls,
        w: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        group_size: int = 128,
        symmetric: bool = True,
        scale_dtype: Any = np.float32,
    ) -> QuantizedLinear:
        """Quantize a float ``(K, N)`` weight; ``K < group_size`` takes the int8 fallback."""
        w32 = check_float_array(w, "w", nonempty=True)
        check_matrix(w32.shape, "w")
        b32 = None
        if bias is not None:
            b32 = check_float_array(bias, "bias")
            if b32.shape != (w32.shape[1],):
                raise ValueError(f"bias must have shape ({w32.shape[1]},), got {b32.shape}")
        qt = quantize(w32, group_size=group_size, axis=0, symmetric=symmetric, scale_dtype=scale_dtype)
        return cls(qt, b32)

    @property
    def in_features(self) -> int:
        return self.qt.shape[0]

    @property
    def out_features(self) -> int:
        return self.qt.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 ``(..., N)`` for ``x`` ``(..., K)``."""
        return dequant_matmul(x, self.qt, self.bias)
