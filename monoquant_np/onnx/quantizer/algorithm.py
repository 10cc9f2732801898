"""Per-weight quantizers: the options, the context, the algorithm hook (spec section 13.3).

:func:`~monoquant_np.onnx.quantizer.pipeline.quantize_model` quantizes one weight at a time
through an :class:`Algorithm`:

* ``quantize_weight(ctx: WeightContext) -> QuantizedTensor`` gets the float32
  weight in its stored orientation (``(K, N)`` grouped along axis 0 for
  MatMul/Gemm weights; ``(V, D)`` or ``(N, K)`` grouped along axis 1 for tables
  and transposed readers), its readers, the :class:`QuantOptions`, and the
  weight's calibration statistics;
* ``prepare(model, sites, feeds, options) -> {weight name: stats}`` (optional)
  runs once on the float opset-21 model before any weight is quantized; it must
  not modify ``model``;
* ``needs_calibration=True`` makes missing calibration inputs an error.

The built-in round-to-nearest is :func:`rtn`; the table of algorithms by name
is :mod:`monoquant_np.onnx.quantizer.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from ...algorithms.extreme import quantize_extreme
from ...mxfp4 import quantize_mxfp4
from ...nf4 import quantize_nf4
from ...nvfp4 import quantize_nvfp4
from ...quantize import quantize
from ...tensor import QuantizedTensor
from ..options import ALGORITHMS, DEFAULT_GROUP_SIZE, DEFAULT_SCHEME
from .sites import Consumer, WeightSite

__all__ = ["QuantOptions", "WeightContext", "Algorithm", "rtn", "rtn_tensor", "rtn_algorithm"]


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """The numeric options every weight quantizer receives, and where the
    model's side files are: ``base_dir`` is the folder of a model whose tensors
    stay in external data files (None: every tensor is in the ModelProto).
    ``progress`` is the run's :class:`~monoquant_np.onnx.progress.Progress`
    (or None): a calibration pre-pass reports ``progress.stage(i, n)`` there."""

    group_size: int = DEFAULT_GROUP_SIZE
    scheme: str = DEFAULT_SCHEME
    scale_dtype: str = "float32"
    double_quant: bool = False
    bits: int = 4
    base_dir: str | None = None
    progress: Any = dataclasses.field(default=None, compare=False, repr=False)
    #: Per-weight ``(name, scheme, group_size)`` chosen by a size budget (spec 21.4); see :meth:`for_weight`.
    formats: tuple[tuple[str, str, int], ...] = ()

    def for_weight(self, name: str) -> QuantOptions:
        """These options with the scheme and group size :attr:`formats` gives weight ``name`` (if any)."""
        for n, scheme, group_size in self.formats:
            if n == name:
                return dataclasses.replace(self, scheme=scheme, group_size=group_size, formats=())
        return self

    @property
    def symmetric(self) -> bool:
        """False for ``uint4`` (codes with zero points), True for ``int4`` and ``nf4``."""
        return self.scheme != "uint4"


@dataclasses.dataclass(frozen=True)
class WeightContext:
    """What a weight quantizer sees for one weight.

    ``w`` is float32 in the stored orientation (``(K, N)`` for MatMul/Gemm
    weights, ``(V, D)`` for a Gather table), grouped along ``axis``;
    ``consumers`` are the reading nodes (``consumers[i].node.input[0]`` is a
    MatMul's activation); ``stats`` is this weight's entry from
    ``Algorithm.prepare`` (None without calibration).
    """

    name: str
    w: np.ndarray
    axis: int
    consumers: tuple[Consumer, ...]
    options: QuantOptions
    stats: Any = None


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A weight quantizer and its optional calibration pre-pass (see the module docstring)."""

    name: str
    quantize_weight: Callable[[WeightContext], QuantizedTensor]
    needs_calibration: bool = False
    prepare: Callable[[onnx.ModelProto, list[WeightSite], Mapping[str, np.ndarray], QuantOptions],
                      Mapping[str, Any]] | None = None


def rtn(ctx: WeightContext) -> QuantizedTensor:
    """:func:`rtn_tensor` of the context's weight along its group axis."""
    return rtn_tensor(ctx.w, ctx.axis, ctx.options)


def rtn_tensor(w: np.ndarray, axis: int, o: QuantOptions) -> QuantizedTensor:
    """Round-to-nearest: int4 with the default scales of spec 14.0, uint4 with spec 3's min/max, NF4 absmax.

    MXFP4 and NVFP4 take their formats' own scales (spec 18, 19). ``bits`` 2
    or 8 takes :func:`monoquant_np.quantize` at that width (spec 20).

    int4 takes :func:`~monoquant_np.algorithms.extreme.quantize_extreme`'s
    two-point search on ``m / -8``, except with double quantization, whose
    scales must be non-negative (spec 11): then spec 3's ``absmax / 7``. A
    weight whose group axis is shorter than the group gets the int8 fallback
    of spec 7 (:func:`monoquant_np.quantize` with ``int8_fallback=True``).
    """
    if o.bits != 4:  # spec 20: int2/uint2/int8/uint8 with spec 3's scales at the width's qmax
        return quantize(w, bits=o.bits, group_size=o.group_size, axis=axis, symmetric=o.symmetric,
                        scale_dtype=o.scale_dtype, int8_fallback=True,
                        double_quant=o.double_quant and w.shape[axis] >= o.group_size)
    if o.scheme == "nf4":
        return quantize_nf4(w, block_size=o.group_size, axis=axis, double_quant=o.double_quant)
    if o.scheme == "int4" and not o.double_quant:
        return quantize_extreme(w, group_size=o.group_size, axis=axis, scale_dtype=o.scale_dtype)
    if o.scheme in ("mxfp4", "nvfp4"):  # spec 18, 19: E2M1 codes, 8-bit float block scales
        fp4 = quantize_mxfp4 if o.scheme == "mxfp4" else quantize_nvfp4
        return fp4(w, axis=axis, block_size=o.group_size)
    # double-quant: packed once, from the rebuilt scales; the int8 fallback (spec 7) keeps its own scales
    return quantize(w, group_size=o.group_size, axis=axis, symmetric=o.symmetric, scale_dtype=o.scale_dtype,
                    int8_fallback=True, double_quant=o.double_quant and w.shape[axis] >= o.group_size)


def rtn_algorithm() -> Algorithm:
    """``algorithm="rtn"``: :func:`rtn`, no calibration (spec 13.3)."""
    return Algorithm("rtn", rtn, needs_calibration=ALGORITHMS["rtn"])
