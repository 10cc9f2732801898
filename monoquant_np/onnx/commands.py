"""The ``quantize``, ``verify`` and ``inspect`` subcommands (spec section 13.9).

``monoquant_np.cli`` adds them with :func:`add_model_commands`; every error
of bad input reaches ``cli.main`` as ``ValueError``/``TypeError``/``OSError``
and becomes one line on stderr with exit status 2. ``verify`` exits 1 when an
output's cosine is below ``--min-cosine``. Output files are written to a
temporary name and renamed; the input is never written. ``quantize`` stages the
model, its data file and the ``--report`` together and publishes them only when
all are written (:class:`~monoquant_np.onnx.outputs.Outputs`): a non-zero exit
leaves none of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .calibration.adapters import awq_algorithm, gptq_algorithm
from .feeds import load_feeds
from .inspect import format_inspection, inspect_model
from .mixed.html_report import render_html
from .mixed.report_command import add_report_command
from .model_io import (
    ModelWriter,
    check_output_path,
    copy_atomic,
    external_files,
    load_model,
    same_file,
    write_text_atomic,
)
from .options import (
    ACCURACY_LEVELS,
    ALGORITHMS,
    BITS,
    DEFAULT_ALGORITHM,
    DEFAULT_BITS,
    DEFAULT_FORMAT,
    DEFAULT_GATHER_OP,
    DEFAULT_GROUP_SIZE,
    DEFAULT_MIN_ELEMENTS,
    DEFAULT_OPS,
    DEFAULT_SCALE_DTYPE,
    DEFAULT_SCHEME,
    DEFAULT_TARGET,
    FORMATS,
    GATHER_OPS,
    SCALE_DTYPES,
    SCHEMES,
    TARGETS,
)
from .outputs import Outputs
from .progress import Progress, format_bytes, format_seconds, peak_rss
from .quantizer.pipeline import quantize_model_with_report
from .verify import format_diffs, verify_models

__all__ = ["add_model_commands"]

#: The algorithms ``--sequential`` applies to.
SEQUENTIAL = {"gptq": gptq_algorithm, "awq": awq_algorithm}


def _summary(report, seconds: float) -> str:
    """The one line that ends the progress display: weights, bytes before and after, time, rate, peak memory."""
    t = report.totals()
    rate = f" ({format_bytes(t['bytes_before'] / seconds)}/s)" if seconds > 0 else ""
    peak = peak_rss()
    mem = f", peak memory {format_bytes(peak)}" if peak else ""
    return (f"quantized {t['layers']} weights, {format_bytes(t['bytes_before'])} -> {format_bytes(t['bytes_after'])} "
            f"in {format_seconds(seconds)}{rate}{mem}")


def _check_paths(inp: Path, out: Path, report: str | None) -> None:
    """Refuse outputs that are the input, one of its side files, or each other (spec 13.9)."""
    if not inp.exists():
        raise OSError(f"input {str(inp)!r} does not exist")
    check_output_path(out, (inp,))
    data = out.with_name(out.name + ".data")
    if report:
        for p, what in ((out, "file"), (data, "data file")):
            if same_file(Path(report), p):
                raise ValueError(f"--report {report!r} is the output model's {what}; choose another name")
        check_output_path(Path(report), (inp,), "--report")
    named = [(out, "output"), (data, "data file")] + ([(Path(report), "--report")] if report else [])
    existing = [(p, what) for p, what in named if p.exists()]
    if existing:  # could one of them be one of the input's side files? (cheap: they stay on disk)
        side = external_files(load_model(inp, load_external_data=False), inp.parent)
        for p, what in existing:
            check_output_path(p, tuple(side), what)


def _cmd_quantize(args: argparse.Namespace) -> int:
    inp, out = Path(args.input), Path(args.output)
    _check_paths(inp, out, args.report)
    if args.accuracy_level is not None and args.format != "matmulnbits":
        raise ValueError("--accuracy-level is an attribute of MatMulNBits nodes: it needs --format matmulnbits "
                         "(for QDQ models onnxruntime's session option sets it, see verify --accuracy-level)")
    scheme = args.scheme
    if args.asymmetric:
        if scheme not in (None, "uint4"):
            raise ValueError(f"--asymmetric means --scheme uint4, got --scheme {scheme}")
        scheme = "uint4"
    progress = Progress(lines=args.progress)
    with Outputs(hold=True) as outs:  # model, data file and report: all published, or none
        with ModelWriter(out, external_data=args.external_data, base_dir=inp.parent, inputs=(inp,),
                         outputs=outs) as writer:  # quantized tensors go to the data file as they are made
            model, report = quantize_model_with_report(
                inp, group_size=args.group_size, scheme=scheme or DEFAULT_SCHEME, scale_dtype=args.scale_dtype,
                format=args.format, ops=args.ops, exclude=args.exclude, min_elements=args.min_elements,
                double_quant=args.double_quant, algorithm=_algorithm(args), calibration=args.calibration,
                gather_op=args.gather_op, accuracy_level=args.accuracy_level, target=args.target,
                progress=progress, jobs=args.jobs, spill=writer.spill, bits=args.bits, size_budget=args.size_budget,
                bits_per_weight=args.bits_per_weight, max_error=args.max_error)
            t0 = time.perf_counter()
            side = tuple(external_files(model, inp.parent))
            inputs = writer.inputs = (inp, *side)  # the input and its side files are never written
            data: Path | None = None
            if report.rows or side or args.external_data:
                data = writer.finish(model, progress)
            else:
                outs.unstage(writer.data_path)
                copy_atomic(inp, out, outputs=outs)
            report.timings["save"] = time.perf_counter() - t0
        del model
        report.file_bytes_after = outs.size(out) + (outs.size(data) if data is not None else 0)
        if args.report:
            text = (render_html(report.to_dict()) if str(args.report).lower().endswith((".html", ".htm"))
                    else report.to_json() + "\n")
            write_text_atomic(args.report, text, inputs=inputs, outputs=outs, what="--report")
        outs.commit()
        progress.finish(_summary(report, progress.elapsed()))
        if not report.rows:
            print(f"nothing to quantize in {inp}: wrote it unchanged to {out}")
        print(report.format())
    return 0


def _algorithm(args: argparse.Namespace) -> Any:
    """``--algorithm``'s name, or with ``--sequential`` the sequential ``gptq``/``awq`` (spec 14.4)."""
    if not args.sequential:
        return args.algorithm
    if args.algorithm not in SEQUENTIAL:
        raise ValueError(f"--sequential needs --algorithm gptq or awq, got --algorithm {args.algorithm}")
    return SEQUENTIAL[args.algorithm](sequential=True)


def _cmd_verify(args: argparse.Namespace) -> int:
    feeds = load_feeds(args.inputs) if args.inputs else None
    diffs = verify_models(args.reference, args.candidate, feeds, samples=args.samples, seq_len=args.seq_len,
                          accuracy_level=args.accuracy_level)
    print(format_diffs(diffs))
    if args.min_cosine is not None:
        low = [d for d in diffs if not d.cosine >= args.min_cosine]  # NaN (a broken candidate) fails too
        if low:
            names = ", ".join(f"{d.name} ({d.cosine:.6f})" for d in low)
            print(f"monoquant-np: verify: cosine below --min-cosine {args.min_cosine}: {names}", file=sys.stderr)
            return 1
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    rows, totals = inspect_model(args.model)
    if args.json:
        print(json.dumps({"tensors": [dataclasses.asdict(r) for r in rows], "totals": totals}, indent=2))
    else:
        print(format_inspection(rows, totals))
    return 0


def _int_at_least(low: int, wanted: str) -> Callable[[str], int]:
    """An argparse ``type``: the int in ``text``, at least ``low`` (``wanted`` names the range in errors)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive int")
_count = _int_at_least(0, "an int >= 0")


def _cosine(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {text!r}") from None
    if not -1.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [-1, 1], got {v}")
    return v


def add_model_commands(sub) -> None:
    """Add ``quantize``, ``verify`` and ``inspect`` to an argparse subparsers object."""
    _add_quantize(sub)
    _add_verify(sub)
    _add_inspect(sub)
    add_report_command(sub)


def _add_quantize(sub) -> None:
    """The ``quantize`` subcommand; its choices and defaults come from :mod:`monoquant_np.onnx.options`."""
    q = sub.add_parser(
        "quantize", help="quantize a float ONNX model's weights to 4 bits",
        description="Quantize the MatMul/Gemm (and, with --ops, Gather) weights of a float32/float16 ONNX model "
                    "to 4 bits and print a per-layer table. The input is never modified; the output is written "
                    "to a temporary name and renamed.",
        epilog="example: monoquant-np quantize model.onnx model-int4.onnx --ops MatMul,Gather --report r.json")
    q.add_argument("input", help="the float32/float16 .onnx model (never modified)")
    q.add_argument("output", help="the .onnx file to write (its folder must exist)")
    q.add_argument("--group-size", type=_positive_int, default=DEFAULT_GROUP_SIZE, metavar="N",
                   help=f"elements per group along K (or the embedding axis) (default {DEFAULT_GROUP_SIZE})")
    q.add_argument("--asymmetric", action="store_true", help="uint4 codes with zero points (= --scheme uint4)")
    q.add_argument("--scheme", choices=SCHEMES, default=None, help=f"code scheme (default {DEFAULT_SCHEME})")
    q.add_argument("--bits", type=int, choices=BITS, default=DEFAULT_BITS,
                   help=f"code width of int/uint schemes (default {DEFAULT_BITS}; 2 writes INT2 at opset 25)")
    q.add_argument("--scale-dtype", choices=SCALE_DTYPES, default=DEFAULT_SCALE_DTYPE,
                   help=f"dtype of the stored group scales (default {DEFAULT_SCALE_DTYPE}: float16 for a float16 "
                        "model, else float32)")
    q.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help="DequantizeLinear->MatMul (standard ONNX, default) or com.microsoft.MatMulNBits")
    ops = ",".join(DEFAULT_OPS)
    q.add_argument("--ops", default=ops, metavar="OPS",
                   help=f"comma list of MatMul, Gemm, Gather (default {ops}; Gather = embedding tables)")
    q.add_argument("--exclude", metavar="REGEX", help="leave weights (or reader nodes) matching REGEX float")
    q.add_argument("--min-elements", type=_count, default=DEFAULT_MIN_ELEMENTS, metavar="N",
                   help=f"leave weights with fewer elements float (default {DEFAULT_MIN_ELEMENTS}; 0 = none)")
    q.add_argument("--double-quant", action="store_true", help="store group scales in 8 bits")
    q.add_argument("--algorithm", choices=tuple(ALGORITHMS), default=DEFAULT_ALGORITHM,
                   help="rtn: round to nearest with absmax scales (default); mse: searched scales; "
                        "gptq, awq: need --calibration")
    q.add_argument("--calibration", metavar="FEEDS.npz",
                   help="calibration inputs (required by gptq/awq; with mse, adds output-error columns to the report): "
                        "arrays named after the model inputs, batch on axis 0 (numpy.savez)")
    q.add_argument("--sequential", action="store_true",
                   help="gptq/awq: calibrate each layer on the outputs of the layers quantized before it "
                        "(slower, usually more accurate)")
    q.add_argument("--gather-op", choices=GATHER_OPS, default=DEFAULT_GATHER_OP,
                   help=f"how Gather tables are read (default {DEFAULT_GATHER_OP})")
    q.add_argument("--accuracy-level", type=int, choices=tuple(ACCURACY_LEVELS), default=None,
                   help="MatMulNBits accuracy_level with --format matmulnbits")
    q.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET,
                   help=f"the runtime the model is for: each weight in a form it runs exactly (default "
                        f"{DEFAULT_TARGET}; portable = every runtime of `monoquant-np conformance`; for OpenVINO "
                        "compile with DYNAMIC_QUANTIZATION_GROUP_SIZE=0 to get float32 activations)")
    q.add_argument("--external-data", action="store_true", help="write weights to OUTPUT.data")
    q.add_argument("--report", metavar="REPORT.json",
                   help="write the per-layer report as JSON (a name ending in .html: the HTML report, spec 21.5)")
    b = q.add_mutually_exclusive_group()
    b.add_argument("--size-budget", metavar="SIZE",
                   help="choose each weight's format (float, int8, int4/uint4/nf4 groups) by its measured "
                        "sensitivity so the model fits SIZE (8MB = 8e6 bytes, 8MiB, 500KB; spec 21)")
    b.add_argument("--bits-per-weight", type=float, metavar="X", help="as --size-budget, X bits per quantized weight")
    b.add_argument("--max-error", type=float, metavar="E",
                   help="the smallest choice whose predicted error (spec 21.2) stays <= E")
    q.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="weights quantized at once, one thread each (default: every core); the output does not "
                        "depend on it")
    q.add_argument("--progress", action="store_true",
                   help="on a terminal progress is always shown; this also writes one line per weight when "
                        "stderr is not a terminal")
    q.set_defaults(func=_cmd_quantize)


def _add_verify(sub) -> None:
    """The ``verify`` subcommand."""
    v = sub.add_parser(
        "verify", help="compare a quantized model with its reference in onnxruntime",
        description="Run both models in onnxruntime on the same inputs and print, per output, the max abs "
                    "error, the relative error and the mean cosine similarity. Exit 1 if a cosine is below "
                    "--min-cosine.")
    v.add_argument("reference")
    v.add_argument("candidate")
    v.add_argument("--inputs", metavar="FEEDS.npz",
                   help="arrays named after the model inputs (numpy.savez); default: generated from the "
                        "declared shapes and types")
    v.add_argument("--samples", type=_positive_int, default=2, metavar="N",
                   help="batch size of generated inputs (default 2)")
    v.add_argument("--seq-len", type=_positive_int, default=16, metavar="N",
                   help="other symbolic dims of generated inputs (default 16)")
    v.add_argument("--min-cosine", type=_cosine, default=None, metavar="X",
                   help="exit 1 if an output's cosine is lower")
    v.add_argument("--accuracy-level", type=int, choices=tuple(ACCURACY_LEVELS), default=1,
                   help="session.qdq_matmulnbits_accuracy_level (1 = float32, the spec; default 1)")
    v.set_defaults(func=_cmd_verify)


def _add_inspect(sub) -> None:
    """The ``inspect`` subcommand."""
    i = sub.add_parser("inspect", help="list what a model stores quantized, and how",
                       description="List every MatMul/Gemm/Gather weight of a model: shape, scheme (or float "
                                   "dtype), group size, bytes, and the operator that reads it; then the totals.")
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_cmd_inspect)
