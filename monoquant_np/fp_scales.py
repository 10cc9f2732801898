"""``FloatScales``: the 8-bit floating-point block scales of MXFP4 and NVFP4 (spec 18.3, 19.3).

An FP4 tensor stores one 8-bit scale code per block, and NVFP4 also one
float32 per-tensor scale. The float32 scale each block is dequantized with
(``QuantizedTensor.scale``) is rebuilt from them::

    MXFP4 (kind "e8m0"):  S = 2**(c - 127)                          exact
    NVFP4 (kind "e4m3"):  S = float32(e4m3_value(c) * tensor_scale)  one float32 rounding

    >>> FloatScales(np.array([126, 127, 130], np.uint8), "e8m0").rebuild().tolist()
    [0.5, 1.0, 8.0]
    >>> FloatScales(np.array([56, 60], np.uint8), "e4m3", 0.5).rebuild().tolist()
    [0.5, 0.75]

(E4M3 code 56 is 1.0 and 60 is 1.5, times the tensor scale 0.5.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import check_choice, check_real, check_uint8
from .fp8 import E4M3_NAN, E8M0_NAN, e4m3_values, e8m0_values

__all__ = ["FloatScales", "SCALE_KINDS"]

#: Scale kind -> the scheme it makes (spec 18, 19).
SCALE_KINDS = {"e8m0": "mxfp4", "e4m3": "nvfp4"}


@dataclasses.dataclass(frozen=True, eq=False)
class FloatScales:
    """Block scale codes of an FP4 tensor.

    Attributes:
        codes: uint8, one code per block (the tensor's group shape). E8M0:
            ``0..254`` (``0xFF``, NaN, is refused). E4M3FN: ``0..126``
            (non-negative, not NaN).
        kind: ``"e8m0"`` (MXFP4) or ``"e4m3"`` (NVFP4).
        tensor_scale: NVFP4's float32 per-tensor scale (finite, >= 0); 1.0
            for E8M0, which has none.
    """

    codes: np.ndarray
    kind: str
    tensor_scale: float = 1.0

    def __post_init__(self) -> None:
        check_uint8(self.codes, "codes")  # spec 15.4: the fields in order, kind before value
        check_choice(self.kind, tuple(SCALE_KINDS), "kind")
        with np.errstate(over="ignore"):  # 1e39 becomes inf, then fails the exactness test below
            ts = np.float32(check_real(self.tensor_scale, "tensor_scale", low=0.0))
        if float(ts) != float(self.tensor_scale):
            raise ValueError(f"tensor_scale must be a finite float32 value >= 0, got {self.tensor_scale!r}")
        if self.kind == "e8m0":
            if ts != 1:
                raise ValueError(f"an E8M0 scale has no tensor scale (1.0), got {self.tensor_scale!r}")
            if self.codes.size and int(self.codes.max()) == E8M0_NAN:
                raise ValueError("codes must be E8M0 codes 0..254, got 255 (NaN)")
        elif self.codes.size and int(self.codes.max()) >= E4M3_NAN:
            raise ValueError(f"codes must be non-negative finite E4M3 codes 0..126, got {int(self.codes.max())}")
        codes = np.array(self.codes, copy=True)
        codes.flags.writeable = False
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "tensor_scale", float(ts))

    @property
    def scheme(self) -> str:
        """``"mxfp4"`` or ``"nvfp4"``."""
        return SCALE_KINDS[self.kind]

    def rebuild(self) -> np.ndarray:
        """The float32 block scales ``S`` (the module docstring's formulas), shape of ``codes``."""
        if self.kind == "e8m0":
            return e8m0_values(self.codes)
        return np.multiply(e4m3_values(self.codes), np.float32(self.tensor_scale), dtype=np.float32)

    def nbytes(self) -> int:
        """Stored bytes: one per block, plus 4 for NVFP4's float32 tensor scale."""
        return int(self.codes.size) + (4 if self.kind == "e4m3" else 0)

    def equals(self, other: Any) -> bool:
        """True when ``other`` holds the same kind, codes and tensor scale."""
        return (isinstance(other, FloatScales) and other.kind == self.kind
                and other.tensor_scale == self.tensor_scale and other.codes.shape == self.codes.shape
                and np.array_equal(other.codes, self.codes))
