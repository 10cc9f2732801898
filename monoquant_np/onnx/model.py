"""Quantize a float ONNX model's weights to 4 bits (spec chapter 13).

:func:`quantize_model` takes a float32 or float16 model (a ``ModelProto`` or
a path) and returns its INT4 twin; :func:`quantize_model_with_report` also
returns a :class:`~monoquant_np.onnx.report.QuantReport`. The steps:

1. find the weight sites (:func:`~monoquant_np.onnx.graph.find_weight_sites`,
   spec 13.1): constant 2-D float weights of ``MatMul``, ``Gemm`` and
   ``Gather``, in every subgraph, shared weights counted once;
2. if any site is eligible, convert the model to opset 21 with
   ``onnx.version_converter`` (checked with ``onnx.checker``) and set
   ``ir_version = 10`` (spec 13.4);
3. the algorithm's optional calibration pre-pass (see below);
4. quantize each weight in its stored orientation (group axis = K for
   MatMul/Gemm, the embedding axis for Gather), one at a time, freeing the
   float tensor before the next (spec 13.3);
5. rewrite the graph around it (:func:`~monoquant_np.onnx.rewrite.apply_quantized`,
   spec 13.2).

Extension points (spec 13.3), for calibrated algorithms (issue 7) and dialects (issue 6):

* ``algorithm`` is ``"rtn"`` (built in), an :class:`Algorithm`, a plain
  callable ``f(ctx: WeightContext) -> QuantizedTensor``, or another name
  looked up in the registry (:func:`register_algorithm`); names not yet
  registered are resolved by importing ``monoquant_np.onnx.calibrate``
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

import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import check_choice, check_positive_int
from ..quantize import quantize
from ..tensor import QuantizedTensor
from .graph import Consumer, WeightSite, find_weight_sites
from .io import load_model, tensor_array
from .report import LayerRow, QuantReport, relative_error, tensor_error
from .rewrite import apply_quantized

__all__ = [
    "quantize_model",
    "quantize_model_with_report",
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
#: Algorithm names the command line offers, and which of them need calibration inputs.
KNOWN_ALGORITHMS = {"rtn": False, "mse": False, "gptq": True, "awq": True}
#: The module that registers the calibrated algorithms when imported (issue 7).
ALGORITHM_MODULE = "monoquant_np.onnx.calibrate"


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """The numeric options every weight quantizer receives."""

    group_size: int = 128
    scheme: str = "int4"
    scale_dtype: str = "float32"
    double_quant: bool = False

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
        from ..nf4 import quantize_nf4

        return quantize_nf4(ctx.w, block_size=o.group_size, axis=ctx.axis, double_quant=o.double_quant)
    if o.double_quant:
        qt = quantize(ctx.w, group_size=o.group_size, axis=ctx.axis, symmetric=o.symmetric,
                      scale_dtype=o.scale_dtype)
        if qt.bits == 4:
            from ..double_quant import double_quantize

            qt = double_quantize(qt, w=ctx.w)
        return qt
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


def load_feeds(calibration: str | os.PathLike | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Calibration/verification inputs: a ``.npz`` path or a mapping of input name -> array (batch on axis 0)."""
    if isinstance(calibration, Mapping):
        return {str(k): np.asarray(v) for k, v in calibration.items()}
    p = Path(calibration)
    if not p.is_file():
        raise OSError(f"inputs file {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"inputs file {str(p)!r} is not a readable .npz: {e}") from None


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def to_opset21(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` at opset >= 21 (converted, not relabelled) with an IR version onnxruntime loads.

    Below 21 the model goes through ``onnx.version_converter.convert_version``
    and ``onnx.checker.check_model``; either failing raises ``ValueError``.
    Only a *skeleton* is converted: the model without the bytes of its large
    main-graph initializers (each replaced by a 1-byte placeholder of the same
    name, type and dims). The converted nodes, opsets and any new tensors are
    then moved back into ``model``, which is changed in place and returned, so
    conversion never copies the weights (spec 13.4).

    # Note: onnxruntime's ``matmul_nbits_quantizer`` only raises the opset
    # number and warns that the result "may not be a valid model".
    """
    v = _opset(model)
    if v < 21:
        skeleton, big = _skeleton(model)
        try:
            from onnx import version_converter

            converted = version_converter.convert_version(skeleton, 21)
        except Exception as e:
            raise ValueError(f"cannot convert the model from opset {v} to 21: {str(e).splitlines()[0]}") from None
        try:
            onnx.checker.check_model(_as_inputs(converted, big))
        except Exception as e:
            raise ValueError(f"the model converted from opset {v} to 21 fails onnx.checker: "
                             f"{str(e).splitlines()[0]}") from None
        _transplant(converted, model, big)
    if _opset(model) == 21:
        model.ir_version = 10
    else:
        model.ir_version = max(model.ir_version, 10)
    return model


def _skeleton(model: onnx.ModelProto, threshold: int = 1024) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of ``model`` whose main-graph initializers of ``threshold`` bytes or more are placeholders."""
    from .io import tensor_nbytes

    sk = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(sk, field, getattr(model, field))
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    g, src = sk.graph, model.graph
    g.name = src.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(g, field).extend(getattr(src, field))
    big: set[str] = set()
    for t in src.initializer:
        if tensor_nbytes(t) >= threshold:
            ph = g.initializer.add()
            ph.name, ph.data_type = t.name, t.data_type
            ph.dims.extend(t.dims)
            ph.raw_data = b"\0"
            big.add(t.name)
        else:
            g.initializer.append(t)
    return sk, big


def _as_inputs(model: onnx.ModelProto, big: set[str]) -> onnx.ModelProto:
    """``model`` with its placeholder initializers turned into graph inputs of the same type and shape."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    listed = {v.name for v in m.graph.input}
    keep = [t for t in m.graph.initializer if t.name not in big]
    ins = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
           for t in m.graph.initializer if t.name in big and t.name not in listed]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    m.graph.input.extend(ins)
    return m


def _transplant(converted: onnx.ModelProto, model: onnx.ModelProto, big: set[str]) -> None:
    """Move the converted graph structure into ``model``, keeping ``model``'s large initializers."""
    g, cg = model.graph, converted.graph
    for field in ("node", "input", "output", "value_info"):
        del getattr(g, field)[:]
        getattr(g, field).extend(getattr(cg, field))
    for i in reversed(range(len(g.initializer))):  # delete in place: the large tensors are never copied
        if g.initializer[i].name not in big:
            del g.initializer[i]
    g.initializer.extend(t for t in cg.initializer if t.name not in big)
    del model.opset_import[:]
    model.opset_import.extend(converted.opset_import)
    model.ir_version = converted.ir_version


def _ensure_ms_opset(model: onnx.ModelProto) -> None:
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))


def _unique_names(model: onnx.ModelProto) -> set[str]:
    from .io import iter_graphs

    names: set[str] = set()
    for g in iter_graphs(model.graph):
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in g.input)
        for n in g.node:
            names.update(n.output)
    return names


def _fresh(base: str, names: set[str]) -> str:
    cand, k = f"{base}_Q4", 1
    while any(x == cand or x.startswith(cand + "_") for x in names):
        cand, k = f"{base}_Q4_{k}", k + 1
    names.add(cand)
    return cand


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
        raise ValueError("ops must name at least one of MatMul, Gemm, Gather")
    if scheme is None:
        scheme = "int4" if symmetric else "uint4"
    check_choice(scheme, SCHEMES, "scheme")
    if scheme == "int4" and not symmetric:
        raise ValueError("scheme='int4' is symmetric; use scheme='uint4' (or symmetric=True)")
    if exclude:
        import re

        try:
            re.compile(exclude)
        except re.error as e:
            raise ValueError(f"exclude must be a valid regular expression, got {exclude!r}: {e}") from None
    if isinstance(algorithm, str) and KNOWN_ALGORITHMS.get(algorithm) and calibration is None:
        raise ValueError(f"algorithm {algorithm!r} needs calibration inputs (--calibration FEEDS.npz)")
    alg = get_algorithm(algorithm)
    feeds = load_feeds(calibration) if calibration is not None else None
    if alg.needs_calibration and feeds is None:
        raise ValueError(f"algorithm {alg.name!r} needs calibration inputs (--calibration FEEDS.npz)")
    opts = QuantOptions(group_size=group_size, scheme=scheme, scale_dtype=scale_dtype, double_quant=bool(double_quant))

    base_dir = None
    if isinstance(model_or_path, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    elif isinstance(model_or_path, (str, os.PathLike)):
        model = load_model(model_or_path, load_external_data=False)
        base_dir = str(Path(model_or_path).parent)
    else:
        raise TypeError(f"model_or_path must be an onnx.ModelProto or a path, got {type(model_or_path).__name__}")

    report = QuantReport(options={
        "group_size": group_size, "scheme": scheme, "scale_dtype": scale_dtype, "format": format, "ops": list(ops),
        "exclude": exclude, "min_elements": min_elements, "double_quant": bool(double_quant),
        "algorithm": alg.name, "gather_op": gather_op,
    })
    pre = dict(prequantized or {})
    sites, notes = find_weight_sites(model, ops=ops, exclude=exclude, min_elements=min_elements)
    report.notes.extend(notes)
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
        stats = alg.prepare(model, todo, feeds, opts) or {}
    names = _unique_names(model)
    if format == "matmulnbits" or ("Gather" in ops and gather_op == "GatherBlockQuantized"):
        _ensure_ms_opset(model)
    for i, site in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), site.name)
        report.rows.append(_quantize_site(site, alg, opts, stats, pre, names, base_dir, format, gather_op,
                                          accuracy_level))
    if progress is not None:
        progress(len(todo), len(todo), "")
    _drop_unused_ms_opset(model)
    report.seconds = time.perf_counter() - t0
    return model, report


def _use_prequantized(site: WeightSite, qt: Any) -> None:
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"prequantized[{site.name!r}] must be a QuantizedTensor, got {type(qt).__name__}")
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
        qt = alg.quantize_weight(ctx)
        if isinstance(qt, tuple):  # (qt, extra): report extras; extra["w_hat"] = the weight the graph computes
            qt, extra = qt[0], dict(qt[1])
        if not isinstance(qt, QuantizedTensor) or qt.shape != w.shape:
            raise ValueError(f"algorithm {alg.name!r} returned {qt!r} for {site.name!r} of shape {w.shape}")
    w_hat = extra.pop("w_hat", None)
    rel, mx = tensor_error(w, qt) if w_hat is None else relative_error(w, w_hat)
    size = w.size
    del w
    qname = _fresh(site.name, names)
    served = apply_quantized(site, qt, qname, fmt=fmt, gather_op=gather_op, accuracy_level=accuracy_level)
    from ..quantize import bits_per_weight

    bpw = bits_per_weight(qt)
    return LayerRow(
        name=site.name, shape=qt.shape, scheme=qt.scheme, group_size=qt.block_size,
        bytes_before=size * itemsize, bytes_after=int(round(bpw * size / 8)), size=size,
        bits_per_weight=bpw, rel_err=rel, max_abs_err=mx, served_as=served,
        consumers=tuple(c.node.name or c.node.output[0] for c in site.consumers), extra=extra,
    )


def _drop_unused_ms_opset(model: onnx.ModelProto) -> None:
    from .io import iter_graphs

    if any(n.domain == "com.microsoft" for g in iter_graphs(model.graph) for n in g.node):
        return
    for i, o in enumerate(model.opset_import):
        if o.domain == "com.microsoft":
            del model.opset_import[i]
            return
