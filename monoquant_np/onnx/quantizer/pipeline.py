"""Quantize a float ONNX model's weights to 4 bits (spec chapter 13).

:func:`quantize_model` takes a float32 or float16 model (a ``ModelProto`` or
a path) and returns its INT4 twin; :func:`quantize_model_with_report` also
returns a :class:`~monoquant_np.onnx.quantizer.report.QuantReport`. The steps:

1. find the weight sites (:func:`~monoquant_np.onnx.quantizer.sites.find_weight_sites`,
   spec 13.1): constant 2-D float weights of ``MatMul``, ``Gemm`` and
   ``Gather``, in every subgraph, shared weights counted once;
2. if any site is eligible, convert the model to opset 21 with
   ``onnx.version_converter`` (checked with ``onnx.checker``) and set
   ``ir_version = 10`` (spec 13.4);
3. the algorithm's optional calibration pre-pass (see below);
4. quantize each weight in its stored orientation (group axis = K for
   MatMul/Gemm, the embedding axis for Gather), one at a time, freeing the
   float tensor before the next (spec 13.3);
5. rewrite the graph around it (:func:`~monoquant_np.onnx.quantizer.rewrite.apply_quantized`,
   spec 13.2).

Extension points (spec 13.3), for calibrated algorithms (issue 7) and dialects (issue 6):

* ``algorithm`` is ``"rtn"`` (built in), an :class:`Algorithm`, a plain
  callable ``f(ctx: WeightContext) -> QuantizedTensor``, or another name
  looked up in the registry (:func:`register_algorithm`); names not yet
  registered are resolved by importing ``monoquant_np.onnx.calibration.stages``
  (:data:`ALGORITHM_MODULE`), which is to call :func:`register_algorithm`
  for ``mse``, ``gptq`` and ``awq``.
* An :class:`Algorithm` may have ``prepare(model, sites, feeds, options) ->
  {weight name: stats}``, run once on the float (opset-21) model before any
  weight is quantized; ``WeightContext.stats`` then carries the weight's
  entry (e.g. ``X^T X`` of its activations). ``prepare`` must not modify
  ``model`` (copy it to add outputs), except to insert nodes its weights need
  (AWQ's ``Mul`` on the activations, issue 7). ``needs_calibration=True`` makes a
  missing ``calibration`` a clear error. ``quantize_weight`` may return
  ``(qt, extra)``: ``extra`` goes to the report row (``extra["w_hat"]``, the
  weight the graph computes, replaces ``dequantize(qt)`` in the weight error).
* ``prequantized={name: QuantizedTensor}`` exports given tensors losslessly
  (GPTQ/AWQ/Q4_0 decoded by ``monoquant_np.formats``) instead of quantizing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import check_choice, check_positive_int
from ...tensor import QuantizedTensor, check_qt
from ..model_io import iter_tensors, load_model, tensor_array, tensor_nbytes
from ..tensors import is_external
from .algorithm import (
    KNOWN_ALGORITHMS,
    Algorithm,
    QuantOptions,
    WeightContext,
    get_algorithm,
    load_feeds,
    quantize_chunked,
    register_algorithm,
)
from .opset import drop_unused_ms_opset, ensure_ms_opset, to_opset21
from .report import LayerRow, QuantReport, relative_error, tensor_error
from .rewrite import apply_quantized, fresh_name, unique_names
from .sites import WeightSite, find_weight_sites

__all__ = [
    "quantize_model",
    "quantize_model_with_report",
    # re-exported from .weights and .opset
    "QuantOptions",
    "WeightContext",
    "Algorithm",
    "register_algorithm",
    "get_algorithm",
    "to_opset21",
    "quantize_chunked",
    "load_feeds",
]

SCHEMES = ("int4", "uint4", "nf4")
FORMATS = ("qdq", "matmulnbits")
OPS = ("MatMul", "Gemm", "Gather")
GATHER_OPS = ("GatherBlockQuantized", "DequantizeLinear")


def quantize_model(model_or_path: onnx.ModelProto | str | os.PathLike, **options: Any) -> onnx.ModelProto:
    """Quantize a model's weights; the options are those of :func:`quantize_model_with_report`."""
    return quantize_model_with_report(model_or_path, **options)[0]


def quantize_model_with_report(
    model_or_path: onnx.ModelProto | str | os.PathLike,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    scale_dtype: str = "float32",
    format: str = "qdq",  # noqa: A002 - the issue's name for it
    ops: tuple[str, ...] | str = ("MatMul", "Gemm"),
    exclude: str | None = None,
    min_elements: int = 4096,
    scheme: str | None = None,
    double_quant: bool = False,
    algorithm: str | Algorithm | Callable = "rtn",
    calibration: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    prequantized: Mapping[str, QuantizedTensor] | None = None,
    gather_op: str = "GatherBlockQuantized",
    accuracy_level: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[onnx.ModelProto, QuantReport]:
    """Quantize the weights of a float ONNX model to 4 bits (spec 13).

    Args:
        model_or_path: a ``ModelProto`` (not modified) or a path to a model.
        group_size: elements per group along the weight's K (or embedding)
            axis; a weight whose axis is shorter uses the int8 fallback (spec 7).
        symmetric: int4 ``s = max|w|/7`` (True) or uint4 with zero points.
        scale_dtype: ``"float32"`` or ``"float16"``.
        format: ``"qdq"`` (standard ``DequantizeLinear`` -> ``MatMul``, fused by
            onnxruntime) or ``"matmulnbits"`` (``com.microsoft.MatMulNBits``).
        ops: among ``"MatMul"``, ``"Gemm"``, ``"Gather"`` (list or comma string).
        exclude: a regular expression; weights whose name or whose readers'
            node names match (``re.search``) are left float.
        min_elements: weights with fewer elements are left float.
        scheme: ``"int4"``, ``"uint4"`` or ``"nf4"`` (default from ``symmetric``).
        double_quant: store the group scales in 8 bits (spec 11).
        algorithm: see the module docstring.
        calibration: inputs for the algorithm's pre-pass (``.npz`` path or mapping).
        prequantized: weight name -> ``QuantizedTensor`` exported as given.
        gather_op: ``"GatherBlockQuantized"`` or ``"DequantizeLinear"`` for ``Gather`` tables.
        accuracy_level: ``MatMulNBits``' attribute (``format="matmulnbits"``).
        progress: called as ``progress(i, n, name)`` before each weight.

    Returns:
        ``(model, report)``. With nothing eligible the model is returned
        unchanged (same opset) and the report says so.

    Raises:
        ValueError: a bad option, a prequantized name that is not an
            eligible weight, an unconvertible model; TypeError for bad types.
    """
    t0 = time.perf_counter()
    group_size = check_positive_int(group_size, "group_size")
    min_elements = check_positive_int(min_elements, "min_elements") if min_elements else 0
    check_choice(format, FORMATS, "format")
    check_choice(gather_op, GATHER_OPS, "gather_op")
    check_choice(scale_dtype, ("float32", "float16"), "scale_dtype")
    if isinstance(ops, str):
        ops = tuple(x.strip() for x in ops.split(",") if x.strip())
    ops = tuple(ops)
    for op in ops:
        check_choice(op, OPS, "ops entry")
    if not ops:
        raise ValueError(f"ops must name at least one of MatMul, Gemm, Gather, got {ops!r}")
    if scheme is None:
        scheme = "int4" if symmetric else "uint4"
    check_choice(scheme, SCHEMES, "scheme")
    if scheme == "int4" and not symmetric:
        raise ValueError("scheme='int4' is symmetric; use scheme='uint4' (or symmetric=True)")
    if scheme == "nf4" and scale_dtype != "float32":
        raise ValueError(f"scheme='nf4' stores float32 absmax scales (spec 10), got scale_dtype={scale_dtype!r}")
    if exclude:
        import re

        try:
            re.compile(exclude)
        except re.error as e:
            raise ValueError(f"exclude must be a valid regular expression, got {exclude!r}: {e}") from None
    if isinstance(algorithm, str) and KNOWN_ALGORITHMS.get(algorithm) and calibration is None:
        raise ValueError(f"algorithm {algorithm!r} needs calibration inputs (--calibration FEEDS.npz)")
    alg = get_algorithm(algorithm)
    feeds = load_feeds(calibration, "calibration file") if calibration is not None else None
    if alg.needs_calibration and feeds is None:
        raise ValueError(f"algorithm {alg.name!r} needs calibration inputs (--calibration FEEDS.npz)")
    base_dir = None
    file_bytes = None
    if isinstance(model_or_path, onnx.ModelProto):
        external = next((t.name for t in iter_tensors(model_or_path) if is_external(t)), None)
        if external is not None:
            raise ValueError(f"model_or_path is a ModelProto whose tensor {external!r} stays in an external data "
                             "file that is not loaded: pass the model's path (its side files are read from its "
                             "folder) or load it with onnx.load(path), external data included")
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    elif isinstance(model_or_path, (str, os.PathLike)):
        model = load_model(model_or_path, load_external_data=False)
        base_dir = str(Path(model_or_path).parent)
        file_bytes = os.path.getsize(model_or_path) + sum(
            tensor_nbytes(t) for t in iter_tensors(model) if t.external_data)  # the side files' share
    else:
        raise TypeError(f"model_or_path must be an onnx.ModelProto or a path, got {type(model_or_path).__name__}")
    opts = QuantOptions(group_size=group_size, scheme=scheme, scale_dtype=scale_dtype, double_quant=bool(double_quant),
                        base_dir=base_dir)

    report = QuantReport(options={
        "group_size": group_size, "scheme": scheme, "scale_dtype": scale_dtype, "format": format, "ops": list(ops),
        "exclude": exclude, "min_elements": min_elements, "double_quant": bool(double_quant),
        "algorithm": alg.name, "gather_op": gather_op,
    }, file_bytes_before=file_bytes)
    if feeds is not None and alg.prepare is None:
        report.notes.append(f"calibration inputs are not used by algorithm {alg.name!r} (mse, gptq and awq use them)")
    pre = dict(prequantized or {})
    sites, notes = find_weight_sites(model, ops=ops, exclude=exclude, min_elements=min_elements)
    report.notes.extend(notes)
    if "Gather" not in ops:  # the largest tensor of a language model is often its embedding table
        tables = [t for t in find_weight_sites(model, ops=("Gather",), exclude=exclude, min_elements=min_elements)[0]
                  if t.skip is None]
        if tables:
            nbytes = sum(t.size * (2 if t.dtype == "float16" else 4) for t in tables)
            report.notes.append(f"{len(tables)} Gather table(s) ({nbytes:,} bytes) left float; "
                                f"--ops {','.join(ops)},Gather quantizes them too")
    for s in sites:
        if s.name in pre:
            _use_prequantized(s, pre[s.name])
    missing = sorted(set(pre) - {s.name for s in sites if s.skip is None})
    if missing:
        raise ValueError(f"prequantized names are not eligible weights of the model: {', '.join(missing)}")
    todo = [s for s in sites if s.skip is None]
    report.skipped.extend((s.name, s.skip) for s in sites if s.skip is not None)
    if not todo:
        report.notes.append("nothing eligible to quantize: the model is returned unchanged")
        report.seconds = time.perf_counter() - t0
        return model, report

    model = to_opset21(model)
    sites, _ = find_weight_sites(model, ops=ops, exclude=exclude, min_elements=min_elements)
    for s in sites:
        if s.name in pre:
            _use_prequantized(s, pre[s.name])
    todo = [s for s in sites if s.skip is None]
    stats: Mapping[str, Any] = {}
    if alg.prepare is not None and feeds is not None:
        from ..verify import check_inputs

        check_inputs(model, feeds, "calibration inputs")
        try:
            stats = alg.prepare(model, todo, feeds, opts) or {}
        except Exception as e:  # onnxruntime's errors are not ValueError: one clear line instead of a traceback
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            raise ValueError(f"calibration failed in onnxruntime: {str(e).splitlines()[0]}") from None
    names = unique_names(model)
    if format == "matmulnbits" or ("Gather" in ops and gather_op == "GatherBlockQuantized"):
        ensure_ms_opset(model)
    for i, site in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), site.name)
        report.rows.append(_quantize_site(site, alg, opts, stats, pre, names, base_dir, format, gather_op,
                                          accuracy_level))
    if progress is not None:
        progress(len(todo), len(todo), "")
    if format == "matmulnbits":
        kept = [r.name for r, s in zip(report.rows, todo, strict=True)
                if "qdq" in r.served_as.split("+") and any(c.role in ("matmul", "gemm") for c in s.consumers)]
        if kept:
            report.notes.append(
                f"{len(kept)} MatMul/Gemm weight(s) stay DequantizeLinear -> MatMul: MatMulNBits takes linear codes "
                f"grouped along K with float32 scales in a float32 model (not nf4, double-quant, float16 models, "
                f"or a Gemm with alpha/beta/transA): {', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}")
    drop_unused_ms_opset(model)
    report.seconds = time.perf_counter() - t0
    return model, report


def _use_prequantized(site: WeightSite, qt: Any) -> None:
    check_qt(qt, f"prequantized[{site.name!r}]")
    if site.skip is not None and site.skip.startswith(("also read", "dtype")):
        raise ValueError(f"prequantized weight {site.name!r} cannot be quantized: {site.skip}")
    if qt.shape != site.shape:
        raise ValueError(f"prequantized[{site.name!r}] has shape {qt.shape}, the model's weight {site.shape}")
    site.skip, site.transpose, site.axis = None, False, qt.axis


def _quantize_site(site, alg, opts, stats, pre, names, base_dir, fmt, gather_op, accuracy_level) -> LayerRow:
    w_store = tensor_array(site.tensor, base_dir)
    itemsize = w_store.dtype.itemsize
    w = np.asarray(w_store, dtype=np.float32)
    del w_store
    if site.transpose:
        w = np.ascontiguousarray(w.T)  # (K, N) from Gemm's (N, K)
    extra: dict[str, Any] = {}
    if site.name in pre:
        qt = pre[site.name]
    else:
        ctx = WeightContext(site.name, w, site.axis, tuple(site.consumers), opts, stats.get(site.name))
        try:
            qt = alg.quantize_weight(ctx)
        except (ValueError, TypeError) as e:  # e.g. "w must be finite": say which weight
            raise type(e)(f"weight {site.name!r} {tuple(w.shape)}: {e}") from None
        if isinstance(qt, tuple):  # (qt, extra): report extras; extra["w_hat"] = the weight the graph computes
            qt, extra = qt[0], dict(qt[1])
        if not isinstance(qt, QuantizedTensor) or qt.shape != w.shape:
            raise ValueError(f"algorithm {alg.name!r} returned {qt!r} for {site.name!r} of shape {w.shape}")
    w_hat = extra.pop("w_hat", None)
    rel, mx = tensor_error(w, qt) if w_hat is None else relative_error(w, w_hat)
    size = w.size
    del w
    qname = fresh_name(site.name, names)
    served = apply_quantized(site, qt, qname, fmt=fmt, gather_op=gather_op, accuracy_level=accuracy_level)
    from ...dequantize import bits_per_weight

    bpw = bits_per_weight(qt)
    return LayerRow(
        name=site.name, shape=qt.shape, scheme=qt.scheme, group_size=qt.block_size,
        bytes_before=size * itemsize, bytes_after=int(round(bpw * size / 8)), size=size,
        bits_per_weight=bpw, rel_err=rel, max_abs_err=mx, served_as=served,
        consumers=tuple(c.node.name or c.node.output[0] for c in site.consumers), extra=extra,
    )
