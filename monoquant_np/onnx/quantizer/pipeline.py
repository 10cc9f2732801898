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

Extension points (spec 13.3):

* ``algorithm`` is a name of :mod:`monoquant_np.onnx.quantizer.registry`
  (``"rtn"``, ``"mse"``, ``"gptq"``, ``"awq"``, or one added with
  :func:`~monoquant_np.onnx.quantizer.registry.register_algorithm`), an
  :class:`~monoquant_np.onnx.quantizer.algorithm.Algorithm`, or a plain
  callable ``f(ctx: WeightContext) -> QuantizedTensor``.
* An ``Algorithm`` may have ``prepare(model, sites, feeds, options) ->
  {weight name: stats}``, run once on the float (opset-21) model before any
  weight is quantized; ``WeightContext.stats`` then carries the weight's
  entry (e.g. ``X^T X`` of its activations). ``prepare`` must not modify
  ``model`` (copy it to add outputs), except to insert nodes its weights need
  (AWQ's ``Mul`` on the activations). ``needs_calibration=True`` makes a
  missing ``calibration`` a clear error. ``quantize_weight`` may return
  ``(qt, extra)``: ``extra`` goes to the report row (``extra["w_hat"]``, the
  weight the graph computes, replaces ``dequantize(qt)`` in the weight error).
* ``prequantized={name: QuantizedTensor}`` exports given tensors losslessly
  (GPTQ/AWQ/Q4_0 decoded by ``monoquant_np.formats``) instead of quantizing.

The work is split in three:
:func:`~monoquant_np.onnx.quantizer.plan.plan_options` checks every option
before the model is read (:mod:`monoquant_np.onnx.quantizer.plan`, with the
working copy of the model); here :func:`_find_sites` finds the weights (once;
again only after an opset conversion, which rebuilds the nodes), and the
weights are quantized one by one (:func:`_quantize_site`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx

from ...dequantize import bits_per_weight
from ...tensor import QuantizedTensor, check_qt
from ..export.constants import INT2_OPSET, OPSET
from ..export.targets import target_opset
from ..feeds import check_feeds
from ..mixed.budget import apply_budget, check_budget
from ..options import (
    DEFAULT_ALGORITHM,
    DEFAULT_BITS,
    DEFAULT_FORMAT,
    DEFAULT_GATHER_OP,
    DEFAULT_GROUP_SIZE,
    DEFAULT_MIN_ELEMENTS,
    DEFAULT_OPS,
    DEFAULT_SCALE_DTYPE,
    DEFAULT_TARGET,
)
from ..progress import Progress
from ..tensors import tensor_array, tensor_nbytes
from .algorithm import Algorithm, WeightContext
from .opset import drop_unused_ms_opset, ensure_ms_opset, opset_of, to_opset21
from .plan import QuantPlan, plan_options, resolve_scale_dtype, working_copy
from .report import LayerRow, QuantReport, relative_error, tensor_error
from .rewrite import apply_quantized, fresh_name, unique_names
from .sites import WeightSite, find_weight_sites

__all__ = ["quantize_model", "quantize_model_with_report"]


def quantize_model(model_or_path: onnx.ModelProto | str | os.PathLike, **options: Any) -> onnx.ModelProto:
    """Quantize a model's weights; the options are those of :func:`quantize_model_with_report`."""
    return quantize_model_with_report(model_or_path, **options)[0]


def quantize_model_with_report(
    model_or_path: onnx.ModelProto | str | os.PathLike,
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
    symmetric: bool = True,
    scale_dtype: str = DEFAULT_SCALE_DTYPE,
    format: str = DEFAULT_FORMAT,  # noqa: A002 - the option's name in the command line and the report
    ops: tuple[str, ...] | str = DEFAULT_OPS,
    exclude: str | None = None,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    scheme: str | None = None,
    double_quant: bool = False,
    algorithm: str | Algorithm | Callable = DEFAULT_ALGORITHM,
    calibration: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    prequantized: Mapping[str, QuantizedTensor] | None = None,
    gather_op: str = DEFAULT_GATHER_OP,
    accuracy_level: int | None = None,
    target: str = DEFAULT_TARGET,
    progress: Progress | None = None,
    jobs: int | None = None,
    spill: Callable[[onnx.TensorProto], None] | None = None,
    bits: int = DEFAULT_BITS,
    size_budget: str | int | None = None,
    bits_per_weight: float | None = None,
    max_error: float | None = None,
) -> tuple[onnx.ModelProto, QuantReport]:
    """Quantize the weights of a float ONNX model to 4 bits (spec 13).

    Args:
        model_or_path: a ``ModelProto`` (not modified) or a path to a model.
        group_size: elements per group along the weight's K (or embedding)
            axis; a weight whose axis is shorter uses the int8 fallback (spec 7).
        symmetric: int4 ``s = max|w|/7`` (True) or uint4 with zero points.
        scale_dtype: ``"float32"``, ``"float16"`` or ``"auto"`` (the default: float16 when every
            quantized weight is float16 and the scheme int4/uint4, so MatMulNBits runs in float16).
        format: ``"qdq"`` (standard ``DequantizeLinear`` -> ``MatMul``, fused by
            onnxruntime) or ``"matmulnbits"`` (``com.microsoft.MatMulNBits``).
        ops: among ``"MatMul"``, ``"Gemm"``, ``"Gather"`` (list or comma string).
        exclude: a regular expression; weights whose name or whose readers'
            node names match (``re.search``) are left float.
        min_elements: weights with fewer elements are left float.
        scheme: ``"int4"``, ``"uint4"`` or ``"nf4"`` (default from ``symmetric``).
        double_quant: store the group scales in 8 bits (spec 11).
        bits: code width of the linear schemes, 2, 4 or 8 (``options.BITS``;
            spec 20): ``scheme`` int4/uint4 become int2/uint2 or int8/uint8
            (algorithm ``rtn``). 2 bits bring the model to opset 25 (``INT2``).
        algorithm: see the module docstring.
        calibration: inputs for the algorithm's pre-pass (``.npz`` path or mapping).
        prequantized: weight name -> ``QuantizedTensor`` exported as given.
        gather_op: ``"GatherBlockQuantized"`` or ``"DequantizeLinear"`` for ``Gather`` tables.
        accuracy_level: ``MatMulNBits``' attribute (``format="matmulnbits"``).
        progress: a :class:`~monoquant_np.onnx.progress.Progress`: the phases
            ``load`` and ``quantize`` (bytes of float weights done of total)
            are reported to it; it also reaches the algorithm's ``prepare`` as
            ``options.progress`` (for ``calibrate stage i/n``).
        jobs: weights quantized at once, on that many threads (None: every
            core this process may use). The output does not depend on it: the
            results are rewritten into the graph in site order (spec 13.3).
        spill: called with every new quantized initializer right after its
            weight is rewritten, in site order; the command line's
            :class:`~monoquant_np.onnx.model_io.ModelWriter` moves its bytes to
            the output's data file there, so the model in memory never holds
            the quantized weights (spec 13.6).
        size_budget, bits_per_weight, max_error: at most one; each weight then
            gets its own format, chosen by measured sensitivity to fit the budget
            (:mod:`monoquant_np.onnx.mixed.budget`, spec 21); the report's
            ``mixed`` and the model's metadata name every weight's format.
        target: the runtime the model is for, ``"onnxruntime"`` (default),
            ``"openvino"``, ``"tract"`` or ``"portable"``: each weight in a form
            that runtime runs exactly (spec 16.4); ``"tract"`` implies
            ``MatMulNBits`` where exact, every target but onnxruntime reads
            ``Gather`` tables as float tables.

    Returns:
        ``(model, report)``. With nothing eligible the model is returned
        unchanged (same opset) and the report says so.

    Raises:
        ValueError: a bad option, a prequantized name that is not an
            eligible weight, an unconvertible model; TypeError for bad types.
    """
    t0 = time.perf_counter()
    plan = plan_options(group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype, format=format,
                        ops=ops, exclude=exclude, min_elements=min_elements, scheme=scheme,
                        double_quant=double_quant, algorithm=algorithm, calibration=calibration,
                        prequantized=prequantized, gather_op=gather_op, accuracy_level=accuracy_level,
                        target=target, jobs=jobs, bits=bits)
    budget = check_budget(size_budget, bits_per_weight, max_error)
    progress = progress if progress is not None else Progress(tty=False)
    progress.phase("load")
    model, base_dir, file_bytes = working_copy(model_or_path)
    plan.opts = dataclasses.replace(plan.opts, base_dir=base_dir, progress=progress)
    report = QuantReport(options=plan.report_options(), file_bytes_before=file_bytes)
    if plan.feeds is not None and plan.alg.prepare is None:
        report.notes.append(f"calibration inputs are not used by algorithm {plan.alg.name!r} "
                            "(mse, gptq and awq use them)")
    sites, notes = _find_sites(model, plan)
    report.notes.extend(notes)
    report.skipped.extend((s.name, s.skip) for s in sites if s.skip is not None)
    todo = [s for s in sites if s.skip is None]
    if not todo:
        report.notes.append("nothing eligible to quantize: the model is returned unchanged")
        report.seconds = time.perf_counter() - t0
        return model, report
    plan.opts = dataclasses.replace(plan.opts, scale_dtype=resolve_scale_dtype(plan.opts, [s.dtype for s in todo]))
    report.options["scale_dtype"] = plan.opts.scale_dtype
    t1 = time.perf_counter()
    if budget is not None:  # spec 21.4: one format per weight, chosen before the conversion (2 bits need 25)
        kept, report.mixed = apply_budget(model, todo, plan, budget)
        report.skipped.extend((s.name, s.skip) for s in todo if s.skip is not None)
        todo = kept
        report.timings["sensitivity"] = time.perf_counter() - t1
    two_bit = plan.opts.bits == 2 or any(qt.bits == 2 for qt in plan.prequantized.values())
    need = INT2_OPSET if two_bit else OPSET  # INT2/UINT2 DequantizeLinear: opset 25 (spec 20.8)
    need = max(need, target_opset(plan.target, plan.opts.scheme))  # FLOAT4E2M1 weights: opset 24 (spec 19.7)
    if opset_of(model) < need:  # the conversion rebuilds the nodes: find the sites again in the new graph
        model = to_opset21(model, need)
        names = {s.name for s in todo}
        todo = [s for s in _find_sites(model, plan)[0] if s.skip is None and s.name in names]
    else:
        model = to_opset21(model, need)  # the IR version only
    stats = _prepare(model, todo, plan)
    report.timings["prepare"] = time.perf_counter() - t1
    _quantize_all(model, todo, plan, stats, report, progress, spill)
    report.seconds = time.perf_counter() - t0
    return model, report


def _find_sites(model: onnx.ModelProto, plan: QuantPlan) -> tuple[list[WeightSite], list[str]]:
    """The weight sites and notes of ``model`` (spec 13.1), the prequantized weights marked eligible."""
    sites, notes = find_weight_sites(model, ops=plan.ops, exclude=plan.exclude, min_elements=plan.min_elements)
    for s in sites:
        if s.name in plan.prequantized:
            _use_prequantized(s, plan.prequantized[s.name])
    missing = sorted(set(plan.prequantized) - {s.name for s in sites if s.skip is None})
    if missing:
        raise ValueError(f"prequantized names are not eligible weights of the model: {', '.join(missing)}")
    return sites, notes


def _prepare(model: onnx.ModelProto, todo: list[WeightSite], plan: QuantPlan) -> Mapping[str, Any]:
    """The algorithm's calibration pre-pass (spec 13.3): ``{weight name: stats}``, empty without one."""
    if plan.alg.prepare is None or plan.feeds is None:
        return {}
    check_feeds(plan.feeds, model, "calibration inputs")
    try:
        return plan.alg.prepare(model, todo, plan.feeds, plan.opts) or {}
    except Exception as e:  # onnxruntime's errors are not ValueError: one clear line instead of a traceback
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        raise ValueError(f"calibration failed in onnxruntime: {str(e).splitlines()[0]}") from None


def _quantize_all(model: onnx.ModelProto, todo: list[WeightSite], plan: QuantPlan, stats: Mapping[str, Any],
                  report: QuantReport, progress: Progress,
                  spill: Callable[[onnx.TensorProto], None] | None) -> None:
    """Quantize every site of ``todo`` (``plan.jobs`` at once) and rewrite them in site order (spec 13.2,
    13.3), one report row each; new quantized initializers go to ``spill`` as they are made."""
    names = unique_names(model)
    # 2 bits: MatMulNBits also stands in for a DequantizeLinear onnxruntime would fuse wrongly (spec 20.8)
    if (plan.format == "matmulnbits" or ("Gather" in plan.ops and plan.gather_op == "GatherBlockQuantized")
            or plan.opts.bits == 2):
        ensure_ms_opset(model)
    progress.phase("quantize", total=sum(tensor_nbytes(s.tensor) for s in todo), items=len(todo))
    t0 = time.perf_counter()
    for site, done in _in_order(todo, lambda s: _compute(s, plan, stats), plan.jobs):
        t1 = time.perf_counter()
        report.rows.append(_rewrite_site(site, done, plan, names, spill))
        done.seconds["rewrite"] = time.perf_counter() - t1
        for k, v in done.seconds.items():
            report.timings[k] = report.timings.get(k, 0.0) + v
        progress.advance(tensor_nbytes(site.tensor), site.name)
    report.timings["quantize_wall"] = time.perf_counter() - t0
    if plan.format == "matmulnbits":
        kept = [r.name for r, s in zip(report.rows, todo, strict=True)
                if "qdq" in r.served_as.split("+") and any(c.role in ("matmul", "gemm") for c in s.consumers)]
        if kept:
            report.notes.append(
                f"{len(kept)} MatMul/Gemm weight(s) stay DequantizeLinear -> MatMul: MatMulNBits takes linear codes "
                f"grouped along K with float32 scales in a float32 model (not nf4, double-quant, float16 models, "
                f"or a Gemm with alpha/beta/transA): {', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}")
    drop_unused_ms_opset(model)


def _in_order(todo: list[WeightSite], work: Callable[[WeightSite], Any], jobs: int
              ) -> Iterator[tuple[WeightSite, Any]]:
    """``(site, work(site))`` in the order of ``todo``, with up to ``jobs`` calls of ``work`` running at once
    on threads (NumPy releases the GIL in large array operations); one at a time when ``jobs == 1``.

    At most ``jobs`` sites are being worked on while the caller handles a result, so memory holds
    ``jobs`` weights' working sets, never more. An error in ``work`` is raised here, in order.
    """
    if jobs == 1 or len(todo) < 2:
        for site in todo:
            yield site, work(site)
        return
    sites = iter(todo)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="quantize") as pool:
        pending = collections.deque((s, pool.submit(work, s)) for s in itertools.islice(sites, jobs))
        try:
            while pending:
                site, future = pending.popleft()
                result = future.result()
                nxt = next(sites, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(work, nxt)))
                yield site, result
        finally:
            for _, future in pending:
                future.cancel()


def _use_prequantized(site: WeightSite, qt: Any) -> None:
    check_qt(qt, f"prequantized[{site.name!r}]")
    if site.skip is not None and site.skip.startswith(("also read", "dtype")):
        raise ValueError(f"prequantized weight {site.name!r} cannot be quantized: {site.skip}")
    if qt.shape != site.shape:
        raise ValueError(f"prequantized[{site.name!r}] has shape {qt.shape}, the model's weight {site.shape}")
    site.skip, site.transpose, site.axis = None, False, qt.axis


@dataclasses.dataclass
class _Quantized:
    """One weight's quantization, computed off the main thread: the tensor, the report's numbers, the seconds
    spent reading, quantizing and measuring the error."""

    qt: QuantizedTensor
    extra: dict[str, Any]
    rel: float
    mx: float
    size: int
    itemsize: int
    seconds: dict[str, float]


def _compute(site: WeightSite, plan: QuantPlan, stats: Mapping[str, Any]) -> _Quantized:
    """Read one weight, quantize it and measure its error; the float copy is dropped on return (spec 13.3)."""
    t0 = time.perf_counter()
    w_store = tensor_array(site.tensor, plan.opts.base_dir)
    itemsize = w_store.dtype.itemsize
    w = np.asarray(w_store, dtype=np.float32)
    del w_store
    if site.transpose:
        w = np.ascontiguousarray(w.T)  # (K, N) from Gemm's (N, K)
    t1 = time.perf_counter()
    extra: dict[str, Any] = {}
    if site.name in plan.prequantized:
        qt = plan.prequantized[site.name]
    else:
        qt, extra = _run_algorithm(plan.alg, WeightContext(site.name, w, site.axis, tuple(site.consumers),
                                                           plan.opts.for_weight(site.name),
                                                           stats.get(site.name)))
    t2 = time.perf_counter()
    w_hat = extra.pop("w_hat", None)
    rel, mx = tensor_error(w, qt) if w_hat is None else relative_error(w, w_hat)
    seconds = {"read": t1 - t0, "algorithm": t2 - t1, "error": time.perf_counter() - t2}
    return _Quantized(qt, extra, rel, mx, w.size, itemsize, seconds)


def _rewrite_site(site: WeightSite, done: _Quantized, plan: QuantPlan, names: set[str],
                  spill: Callable[[onnx.TensorProto], None] | None) -> LayerRow:
    """Rewrite the graph around one quantized weight (spec 13.2), its new initializers handed to ``spill``
    before they join the graph, and describe it in a report row."""
    qt, size = done.qt, done.size
    qname = fresh_name(site.name, names)
    served = apply_quantized(site, qt, qname, fmt=plan.format, gather_op=plan.gather_op,
                             accuracy_level=plan.accuracy_level, target=plan.target, spill=spill)
    bpw = bits_per_weight(qt)
    return LayerRow(
        name=site.name, shape=qt.shape, scheme=qt.scheme, group_size=qt.block_size,
        bytes_before=size * done.itemsize, bytes_after=int(round(bpw * size / 8)), size=size,
        bits_per_weight=bpw, rel_err=done.rel, max_abs_err=done.mx, served_as=served,
        consumers=tuple(c.node.name or c.node.output[0] for c in site.consumers), extra=done.extra,
    )


def _run_algorithm(alg: Algorithm, ctx: WeightContext) -> tuple[QuantizedTensor, dict[str, Any]]:
    """``alg.quantize_weight(ctx)`` as ``(qt, extra)``, its result checked and its errors naming the weight."""
    try:
        qt = alg.quantize_weight(ctx)
    except (ValueError, TypeError) as e:  # e.g. "w must be finite": say which weight
        raise type(e)(f"weight {ctx.name!r} {tuple(ctx.w.shape)}: {e}") from None
    extra: dict[str, Any] = {}
    if isinstance(qt, tuple):  # (qt, extra): report extras; extra["w_hat"] = the weight the graph computes
        qt, extra = qt[0], dict(qt[1])
    if not isinstance(qt, QuantizedTensor) or qt.shape != ctx.w.shape:
        raise ValueError(f"algorithm {alg.name!r} returned {qt!r} for {ctx.name!r} of shape {ctx.w.shape}")
    return qt, extra
