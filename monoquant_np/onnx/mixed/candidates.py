"""The candidate formats of one weight and their exact byte cost (spec 21.1).

A :class:`Candidate` is a code scheme and a group size, or the weight kept
float. Its cost is what the quantizer's report counts (spec 13.5)::

    float:      bytes = size * itemsize            (float32: 4, float16: 2)
    quantized:  bytes = round(bits_per_weight(qt) * size / 8)   (codes + scales + zero points)

``int8`` is spec 7's per-channel 8-bit code (one group spanning the whole
group axis); the others are spec 3's group-wise codes with round-to-nearest
scales (:func:`~monoquant_np.onnx.quantizer.algorithm.rtn`); ``int2`` and
``uint2`` are spec 20's 2-bit codes (the quantizer's ``int4``/``uint4`` at
``bits=2``).

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

__all__ = ["Candidate", "default_candidates", "quantize_candidate", "candidate_bytes", "parse_candidate",
           "candidate_options", "TWO_BIT"]


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


#: The 2-bit candidate schemes and the quantizer scheme they are at ``bits=2`` (spec 20).
TWO_BIT = {"int2": "int4", "uint2": "uint4"}


def default_candidates(algorithm: str) -> list[Candidate]:
    """The candidates searched for ``algorithm``: float, int8, int4 at groups 32/64/128, uint4 g128, int2 at
    groups 32/64/128, uint2 g64, and NF4 g64 where the algorithm takes it (``rtn``; GPTQ/AWQ/MSE quantize
    linear codes only). The 2-bit ones are round-to-nearest whatever the algorithm (spec 21.4)."""
    out = [Candidate("float"), Candidate("int8"), Candidate("int4", 32), Candidate("int4", 64),
           Candidate("int4", 128), Candidate("uint4", 128), Candidate("int2", 32), Candidate("int2", 64),
           Candidate("int2", 128), Candidate("uint2", 64)]
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
    return rtn(WeightContext("w", w, axis, (), candidate_options(cand, scale_dtype)))


def candidate_options(cand: Candidate, scale_dtype: str = "float32") -> QuantOptions:
    """The quantizer options of a group-wise candidate (``int2 g64`` -> scheme ``int4``, ``bits=2``)."""
    scheme, bits = (TWO_BIT[cand.scheme], 2) if cand.scheme in TWO_BIT else (cand.scheme, 4)
    return QuantOptions(group_size=cand.group_size, scheme=scheme, scale_dtype=scale_dtype, bits=bits)


def candidate_bytes(qt: QuantizedTensor | None, size: int, itemsize: int) -> int:
    """The candidate's bytes as the report counts them (module docstring)."""
    if qt is None:
        return int(size * itemsize)
    return int(round(bits_per_weight(qt) * size / 8))
