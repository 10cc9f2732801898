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

Names: ``"rtn"`` (:func:`rtn`, built in) and whatever :func:`register_algorithm`
added. An unknown name first imports :data:`ALGORITHM_MODULE`
(``monoquant_np.onnx.calibration.stages``), which is to register ``mse``, ``gptq`` and
``awq``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...quantize import quantize
from ...tensor import QuantizedTensor
from .sites import Consumer, WeightSite

__all__ = [
    "QuantOptions",
    "WeightContext",
    "Algorithm",
    "rtn",
    "quantize_chunked",
    "register_algorithm",
    "get_algorithm",
    "load_feeds",
    "KNOWN_ALGORITHMS",
    "ALGORITHM_MODULE",
]

#: Algorithm names the command line offers, and which of them need calibration inputs.
KNOWN_ALGORITHMS = {"rtn": False, "mse": False, "gptq": True, "awq": True}
#: The module that registers the calibrated algorithms when imported (issue 7).
ALGORITHM_MODULE = "monoquant_np.onnx.calibration.stages"


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """The numeric options every weight quantizer receives, and where the
    model's side files are: ``base_dir`` is the folder of a model whose tensors
    stay in external data files (None: every tensor is in the ModelProto)."""

    group_size: int = 128
    scheme: str = "int4"
    scale_dtype: str = "float32"
    double_quant: bool = False
    base_dir: str | None = None

    @property
    def symmetric(self) -> bool:
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
    """Round-to-nearest with the spec's scales (absmax/7, or min/max for uint4; NF4 absmax).

    Plain int4/uint4 weights are quantized in chunks of whole groups
    (:func:`quantize_chunked`), which gives the same tensor as one call of
    :func:`monoquant_np.quantize` with a fraction of its temporary memory.
    """
    o = ctx.options
    if o.scheme == "nf4":
        from ...nf4 import quantize_nf4

        return quantize_nf4(ctx.w, block_size=o.group_size, axis=ctx.axis, double_quant=o.double_quant)
    if o.double_quant:  # packed once, from the rebuilt scales; the int8 fallback (spec 7) keeps its own
        return quantize(ctx.w, group_size=o.group_size, axis=ctx.axis, symmetric=o.symmetric,
                        scale_dtype=o.scale_dtype, double_quant=ctx.w.shape[ctx.axis] >= o.group_size)
    return quantize_chunked(ctx.w, group_size=o.group_size, axis=ctx.axis, symmetric=o.symmetric,
                            scale_dtype=o.scale_dtype)


def quantize_chunked(w: np.ndarray, *, group_size: int, axis: int, symmetric: bool, scale_dtype: str,
                     chunk_elements: int = 1 << 19) -> QuantizedTensor:
    """:func:`monoquant_np.quantize` of a 2-D ``w``, computed over row chunks of whole groups.

    Groups never straddle a chunk (chunks along axis 0 are multiples of
    ``group_size`` rows when ``axis == 0``; any rows when ``axis == 1``) and
    every chunk holds an even number of elements, so concatenating the packed
    codes, scales and zero points gives exactly the one-call result.
    Temporary memory is a few chunks instead of a few copies of ``w``.
    """
    rows = w.shape[0]
    inner = int(np.prod(w.shape[1:]))
    def one(part: np.ndarray, fallback: bool = True) -> QuantizedTensor:
        return quantize(part, group_size=group_size, axis=axis, symmetric=symmetric, scale_dtype=scale_dtype,
                        int8_fallback=fallback)

    if w.ndim != 2 or w.shape[axis] < group_size or inner == 0:
        return one(w)  # the int8 fallback or an odd shape: one call
    step = max(1, chunk_elements // inner)
    if axis == 0:
        step = max(group_size, step // group_size * group_size)
    if step >= rows or (step * inner) % 2:
        return one(w)
    parts = [one(w[r : r + step], False) for r in range(0, rows, step)]
    return QuantizedTensor(
        data=np.concatenate([p.data for p in parts]), shape=w.shape, axis=axis, block_size=group_size,
        scale=np.concatenate([p.scale for p in parts], axis=0),
        zero_point=None if symmetric else np.concatenate([p.zero_point for p in parts], axis=0),
        signed=bool(symmetric), bits=4,
    )


_REGISTRY: dict[str, Algorithm] = {"rtn": Algorithm("rtn", rtn)}


def register_algorithm(algorithm: Algorithm) -> None:
    """Make ``algorithm`` available by name to :func:`quantize_model` and ``--algorithm``."""
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"algorithm must be an Algorithm, got {type(algorithm).__name__}")
    _REGISTRY[algorithm.name] = algorithm


def get_algorithm(algorithm: str | Algorithm | Callable) -> Algorithm:
    """Resolve ``algorithm`` (a name, an :class:`Algorithm` or a callable) to an :class:`Algorithm`."""
    if isinstance(algorithm, Algorithm):
        return algorithm
    if callable(algorithm):
        return Algorithm(getattr(algorithm, "__name__", "custom"), algorithm)
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a name or a callable, got {type(algorithm).__name__}")
    if algorithm not in _REGISTRY:
        try:
            importlib.import_module(ALGORITHM_MODULE)
        except ImportError as e:
            raise ValueError(f"algorithm {algorithm!r} is not available: {ALGORITHM_MODULE} cannot be imported ({e})"
                             ) from None
    if algorithm not in _REGISTRY:
        if algorithm in KNOWN_ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r} is not available yet: {ALGORITHM_MODULE} does not register it "
                             f"(available: {', '.join(sorted(_REGISTRY))})")
        raise ValueError(f"algorithm must be one of {', '.join(sorted(set(_REGISTRY) | set(KNOWN_ALGORITHMS)))}, "
                         f"got {algorithm!r}")
    return _REGISTRY[algorithm]


def load_feeds(calibration: str | os.PathLike | Mapping[str, np.ndarray], what: str = "inputs file"
               ) -> dict[str, np.ndarray]:
    """Calibration/verification inputs: a ``.npz`` path or a mapping of input name -> array (batch on axis 0).

    ``what`` names the file in messages ("calibration file", ...).
    """
    if isinstance(calibration, Mapping):
        return {str(k): np.asarray(v) for k, v in calibration.items()}
    import zipfile

    p = Path(calibration)
    if not p.is_file():
        raise OSError(f"{what} {str(p)!r} does not exist")
    if not zipfile.is_zipfile(p):
        raise ValueError(f"{what} {str(p)!r} is not a readable .npz (numpy.savez of arrays named after the "
                         "model inputs)")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{what} {str(p)!r} is not a readable .npz: {e}") from None
