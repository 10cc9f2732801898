"""The candidate formats of one weight and their exact byte cost (spec 21.1).

A :class:`Candidate` is a code scheme and a group size, or the weight kept
float. Its cost is what the quantizer's report counts (spec 13.5)::

    float:      bytes = size * itemsize            (float32: 4, float16: 2)
    quantized:  bytes = round(bits_per_weight(qt) * size / 8)   (codes + scales + zero points)

``int8`` is spec 7's per-channel 8-bit code (one group spanning the whole
group axis); the others are spec 3's group-wise codes with round-to-nearest
scales (:func:`~monoquant_np.onnx.quantizer.algorithm.rtn`).

    >>> [c.label for c in default_candidates("rtn")][:3]
    ['float', 'int8', 'int4 g32']
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...dequantize import bits_per_weight
from ...quantize import quantize
from ...tensor import QuantizedTensor
from ..quantizer.algorithm import QuantOptions, WeightContext, rtn

__all__ = ["Candidate", "default_candidates", "quantize_candidate", "candidate_bytes", "parse_candidate"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """``scheme`` is ``"float"``, ``"int8"`` or a scheme of the quantizer (``int4``, ``uint4``, ``nf4``);
    ``group_size`` 0 for ``float`` and ``int8``."""

    scheme: str
    group_size: int = 0

    @property
    def label(self) -> str:
        """``"int4 g64"``, ``"int8"``, ``"float"``: how reports and model metadata name it."""
        return self.scheme if not self.group_size else f"{self.scheme} g{self.group_size}"


def parse_candidate(label: str) -> Candidate:
    """The candidate named ``label`` (:attr:`Candidate.label`), e.g. ``"int4 g64"``."""
    parts = str(label).split()
    if len(parts) == 1 and parts[0] in ("float", "int8"):
        return Candidate(parts[0])
    if len(parts) == 2 and parts[1][:1] == "g" and parts[1][1:].isdigit() and int(parts[1][1:]) > 0:
        return Candidate(parts[0], int(parts[1][1:]))
    raise ValueError(f"candidate must be 'float', 'int8' or '<scheme> g<group size>', got {label!r}")


def default_candidates(algorithm: str) -> list[Candidate]:
    """The candidates searched for ``algorithm``: float, int8, int4 at groups 32/64/128, uint4 g128, and NF4
    g64 where the algorithm takes it (``rtn``; GPTQ/AWQ/MSE quantize linear codes only)."""
    out = [Candidate("float"), Candidate("int8"), Candidate("int4", 32), Candidate("int4", 64),
           Candidate("int4", 128), Candidate("uint4", 128)]
    if algorithm == "rtn":
        out.append(Candidate("nf4", 64))
    return out


def quantize_candidate(w: np.ndarray, axis: int, cand: Candidate, scale_dtype: str = "float32"
                       ) -> QuantizedTensor | None:
    """``w`` (float32, grouped along ``axis``) in the candidate's format by round-to-nearest; None for float."""
    if cand.scheme == "float":
        return None
    if cand.scheme == "int8":  # spec 7: one group over the whole axis, 8-bit codes
        return quantize(w, group_size=w.shape[axis] + 1, axis=axis, symmetric=True, scale_dtype=scale_dtype,
                        int8_fallback=True)
    opts = QuantOptions(group_size=cand.group_size, scheme=cand.scheme, scale_dtype=scale_dtype)
    return rtn(WeightContext("w", w, axis, (), opts))


def candidate_bytes(qt: QuantizedTensor | None, size: int, itemsize: int) -> int:
    """The candidate's bytes as the report counts them (module docstring)."""
    if qt is None:
        return int(size * itemsize)
    return int(round(bits_per_weight(qt) * size / 8))
