"""The checked inputs of one ``quantize_model`` call (spec 13.3 and 13.6).

:func:`plan_options` checks every option of
:func:`~monoquant_np.onnx.quantizer.pipeline.quantize_model_with_report`
against the option table :mod:`monoquant_np.onnx.options` before the model is
read, resolves the algorithm (:mod:`monoquant_np.onnx.quantizer.registry`) and
reads the calibration feeds, into a :class:`QuantPlan`; :func:`resolve_scheme`
derives the code scheme from ``scheme`` and ``symmetric``; :func:`working_copy`
is the model the pipeline rewrites: a copy of a ``ModelProto``, or the model at
a path with its external tensors left in their side files (spec 13.6).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import check_bool, check_choice, check_positive_int, check_scale_dtype
from ...mxfp4 import MX_BLOCK_SIZE
from ...nvfp4 import NV_BLOCK_SIZE
from ...tensor import QuantizedTensor
from ..export.targets import target_options
from ..feeds import load_feeds
from ..model_io import load_model
from ..options import (
    BITS,
    DEFAULT_BITS,
    DEFAULT_GROUP_SIZE,
    DEFAULT_TARGET,
    FORMATS,
    GATHER_OPS,
    OPS,
    SCALE_DTYPES,
    SCHEMES,
    check_accuracy_level,
)
from ..tensors import check_tensors, is_external, iter_tensors, tensor_nbytes
from .algorithm import Algorithm, QuantOptions
from .opset import check_versions
from .registry import get_algorithm

__all__ = ["QuantPlan", "plan_options", "resolve_scheme", "working_copy", "FP4_BLOCK_SIZES", "usable_cores"]

#: The FP4 schemes and their formats' block sizes, used when ``group_size`` is the default (spec 18, 19).
FP4_BLOCK_SIZES = {"mxfp4": MX_BLOCK_SIZE, "nvfp4": NV_BLOCK_SIZE}


@dataclasses.dataclass
class QuantPlan:
    """The checked options of one
    :func:`~monoquant_np.onnx.quantizer.pipeline.quantize_model_with_report` call."""

    opts: QuantOptions
    format: str
    ops: tuple[str, ...]
    exclude: str | None
    min_elements: int
    gather_op: str
    accuracy_level: int | None
    alg: Algorithm
    feeds: dict[str, np.ndarray] | None
    prequantized: dict[str, QuantizedTensor]
    target: str = DEFAULT_TARGET
    jobs: int = 1

    def report_options(self) -> dict[str, Any]:
        """The options as the report's ``options`` record them."""
        o = self.opts
        return {"group_size": o.group_size, "scheme": o.scheme, "scale_dtype": o.scale_dtype, "format": self.format,
                "ops": list(self.ops), "exclude": self.exclude, "min_elements": self.min_elements,
                "double_quant": o.double_quant, "algorithm": self.alg.name, "gather_op": self.gather_op,
                "target": self.target, "bits": o.bits}


def plan_options(*, group_size, symmetric, scale_dtype, format, ops, exclude, min_elements, scheme,  # noqa: A002
                 double_quant, algorithm, calibration, prequantized, gather_op, accuracy_level,
                 target=DEFAULT_TARGET, jobs=None, bits=DEFAULT_BITS) -> QuantPlan:
    """Check every option against :mod:`monoquant_np.onnx.options`, resolve the algorithm, read the feeds.

    The keywords are those of :func:`~monoquant_np.onnx.quantizer.pipeline.quantize_model_with_report`;
    a bad one is a ``ValueError`` or ``TypeError`` naming it, raised before any model is read.
    ``target`` sets the format and gather op the plan keeps
    (:func:`~monoquant_np.onnx.export.targets.target_options`, spec 16.4).
    """
    group_size = check_positive_int(group_size, "group_size")
    jobs = usable_cores() if jobs is None else check_positive_int(jobs, "jobs")
    min_elements = check_positive_int(min_elements, "min_elements") if min_elements else 0
    check_choice(format, FORMATS, "format")
    check_choice(gather_op, GATHER_OPS, "gather_op")
    symmetric = check_bool(symmetric, "symmetric")
    scale_dtype = _scale_dtype_name(scale_dtype)
    format, gather_op = target_options(target, format, gather_op)  # noqa: A001
    if accuracy_level is not None:
        accuracy_level = check_accuracy_level(accuracy_level)
    if isinstance(ops, str):
        ops = tuple(x.strip() for x in ops.split(",") if x.strip())
    ops = tuple(ops)
    for op in ops:
        check_choice(op, OPS, "ops entry")
    if not ops:
        raise ValueError(f"ops must name at least one of {', '.join(OPS)}, got {ops!r}")
    scheme = resolve_scheme(scheme, symmetric, scale_dtype)
    if scheme in FP4_BLOCK_SIZES:  # spec 18, 19: the format's own block size unless another one is asked for
        group_size = FP4_BLOCK_SIZES[scheme] if group_size == DEFAULT_GROUP_SIZE else group_size
        if double_quant:
            raise ValueError(f"scheme={scheme!r} stores 8-bit float block scales already; double_quant is for "
                             "int4/uint4/nf4")
    if exclude:
        try:
            re.compile(exclude)
        except re.error as e:
            raise ValueError(f"exclude must be a valid regular expression, got {exclude!r}: {e}") from None
    alg = get_algorithm(algorithm)
    bits = _check_bits(bits, scheme, alg.name)
    if alg.needs_calibration and calibration is None:
        raise ValueError(f"algorithm {alg.name!r} needs calibration inputs (--calibration FEEDS.npz)")
    feeds = load_feeds(calibration, what="calibration file", finite=True) if calibration is not None else None
    opts = QuantOptions(group_size=group_size, scheme=scheme, scale_dtype=scale_dtype, double_quant=bool(double_quant),
                        bits=bits)
    return QuantPlan(opts, format, ops, exclude, min_elements, gather_op, accuracy_level, alg, feeds,
                     dict(prequantized or {}), target, jobs)


def _check_bits(bits: Any, scheme: str, algorithm: str) -> int:
    """``bits`` of :data:`~monoquant_np.onnx.options.BITS`; 2 and 8 only with the linear schemes and
    ``rtn`` (spec 20.8)."""
    bits = int(check_choice(bits, BITS, "bits"))
    if bits != DEFAULT_BITS and scheme not in ("int4", "uint4"):
        raise ValueError(f"bits={bits} applies to the linear schemes (int/uint codes), got scheme={scheme!r}")
    if bits != DEFAULT_BITS and algorithm != "rtn":
        raise ValueError(f"bits={bits} is quantized with algorithm 'rtn' only, got algorithm={algorithm!r}")
    return bits


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_scheme(scheme: str | None, symmetric: bool, scale_dtype: str) -> str:
    """The code scheme: ``scheme``, or from ``symmetric`` when None; checked against the other options."""
    if scheme is None:
        scheme = "int4" if symmetric else "uint4"
    check_choice(scheme, SCHEMES, "scheme")
    if scheme == "int4" and not symmetric:
        raise ValueError("scheme='int4' is symmetric; use scheme='uint4' (or symmetric=True)")
    if scheme == "nf4" and scale_dtype not in ("float32", "auto"):
        raise ValueError(f"scheme='nf4' stores float32 absmax scales (spec 10), got scale_dtype={scale_dtype!r}")
    if scheme in FP4_BLOCK_SIZES and scale_dtype not in ("float32", "auto"):
        raise ValueError(f"scheme={scheme!r} stores its own 8-bit float scales (spec 18, 19), "
                         f"got scale_dtype={scale_dtype!r}")
    return scheme


def working_copy(model_or_path: onnx.ModelProto | str | os.PathLike
                 ) -> tuple[onnx.ModelProto, str | None, int | None]:
    """``(model, base_dir, file_bytes)``: a copy of a ``ModelProto``, or the model at a path with its tensors
    left in their side files (``base_dir`` their folder, ``file_bytes`` the model's bytes on disk)."""
    if isinstance(model_or_path, onnx.ModelProto):
        external = next((t.name for t in iter_tensors(model_or_path) if is_external(t)), None)
        if external is not None:
            raise ValueError(f"model_or_path is a ModelProto whose tensor {external!r} stays in an external data "
                             "file that is not loaded: pass the model's path (its side files are read from its "
                             "folder) or load it with onnx.load(path), external data included")
        check_tensors(model_or_path, None)  # no negative dimension, raw data of the right size (spec 13.6)
        check_versions(model_or_path)
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
        return model, None, None
    if isinstance(model_or_path, (str, os.PathLike)):
        model = load_model(model_or_path, load_external_data=False)
        check_versions(model)
        file_bytes = os.path.getsize(model_or_path) + sum(
            tensor_nbytes(t) for t in iter_tensors(model) if t.external_data)  # the side files' share
        return model, str(Path(model_or_path).parent), file_bytes
    raise TypeError(f"model_or_path must be an onnx.ModelProto or a path, got {type(model_or_path).__name__}")


def resolve_scale_dtype(opts: QuantOptions, dtypes: list[str | None]) -> str:
    """``opts.scale_dtype``, with ``"auto"`` resolved for weights of the float ``dtypes`` (spec 13.3):
    ``"float16"`` when the scheme is int4/uint4 and every weight is float16, else ``"float32"``."""
    if opts.scale_dtype != "auto":
        return opts.scale_dtype
    if opts.scheme in ("int4", "uint4") and dtypes and all(d == "float16" for d in dtypes):
        return "float16"
    return "float32"


def _scale_dtype_name(scale_dtype: Any) -> str:
    """``scale_dtype`` as a name of :data:`~monoquant_np.onnx.options.SCALE_DTYPES`: ``"auto"``, or a
    dtype-like the core accepts (spec 15.1: ``np.float16`` and ``"float16"`` alike)."""
    if isinstance(scale_dtype, str) and scale_dtype == "auto":
        return scale_dtype
    try:
        return check_scale_dtype(scale_dtype).name
    except ValueError:
        raise ValueError(f"scale_dtype must be one of {', '.join(SCALE_DTYPES)}, got {scale_dtype!r}") from None
