"""The ``conformance`` subcommand: every export form through every installed runtime (spec 16.1).

``monoquant_np.cli`` adds it with :func:`add_conformance_command`. The matrix
itself is :mod:`monoquant_np.testing.matrix`, imported when the command runs
(it needs ``hypothesis``, the conformance kit's dependency). A runtime that is
not installed fills its column with ``not installed``; the exit status is 0
whatever the verdicts (they are findings about the runtimes), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .model_io import write_text_atomic

__all__ = ["add_conformance_command"]


def _matrix_module():
    try:
        from ..testing import matrix
    except ImportError as e:  # hypothesis (the test extra) missing
        raise ValueError(f"monoquant-np conformance needs {e.name or e}: pip install 'monoquant-np[test]'") from None
    return matrix


def _command_text(args: argparse.Namespace) -> str:
    parts = ["monoquant-np conformance"]
    parts += [f"--runtime {r}" for r in args.runtime or ()]
    parts += ["--quick"] if args.quick else []
    parts += ["--no-e2e"] if args.no_e2e else []
    parts += [f"--form {f!r}" for f in args.form or ()]
    parts += [f"--json {args.json}"] if args.json else []
    parts += [f"--markdown {args.markdown}"] if args.markdown else []
    return " ".join(parts)


def _cmd_conformance(args: argparse.Namespace) -> int:
    matrix = _matrix_module()
    from ..testing.runtimes import DEFAULT_RUNTIMES, get_runtime

    runtimes = tuple(dict.fromkeys(args.runtime or DEFAULT_RUNTIMES))
    for name in runtimes:
        get_runtime(name)  # a ValueError listing the names
    forms = matrix.select_forms(quick=args.quick, e2e=not args.no_e2e)
    if args.form:
        forms = [f for f in forms if any(s in f.name for s in args.form)]
        if not forms:
            raise ValueError(f"--form {args.form!r} matches no form of the matrix")
    for path in (args.json, args.markdown):
        if path and not Path(path).parent.is_dir():
            raise OSError(f"the folder of {path!r} does not exist")

    def progress(i: int, n: int, name: str) -> None:
        print(f"[{i + 1}/{n}] {name}", file=sys.stderr, flush=True)

    cells, skipped = matrix.run_matrix(forms, runtimes, progress if args.progress else None)
    page = matrix.matrix_markdown(cells, skipped, runtimes, command=_command_text(args))
    if args.markdown:
        write_text_atomic(args.markdown, page)
    if args.json:
        write_text_atomic(args.json, matrix.matrix_json(cells, skipped, runtimes) + "\n")
    if args.markdown or args.json:
        counts = matrix.summary_counts(cells)
        print(f"{len(cells)} cells ({len({c.form for c in cells})} forms x {len(runtimes)} runtimes)")
        for name in runtimes:
            print(f"  {name}: " + ", ".join(f"{v} {n}" for v, n in counts.get(name, {}).items() if n))
    else:
        print(page)
    return 0


def add_conformance_command(sub) -> None:
    """Add ``conformance`` to an argparse subparsers object."""
    c = sub.add_parser(
        "conformance", help="run every export form in every installed ONNX runtime, against the spec",
        description="Export every graph form the project writes (QDQ INT4/UINT4, int8 fallback, MatMulNBits, "
                    "Gather tables, NF4, double-quantized scales, the export targets, the golden vectors, a "
                    "quantized MiniLM), run each in each runtime and classify the outputs against the NumPy "
                    "spec: exact (float32 bound), within the runtime's documented bound, mismatch, unsupported.",
        epilog="example: monoquant-np conformance --markdown docs/conformance.md")
    c.add_argument("--runtime", action="append", metavar="NAME",
                   help="a runtime to run (repeat; default all): onnxruntime, onnxruntime-int8, onnx-reference, "
                        "openvino, openvino-dynquant, tract")
    c.add_argument("--form", action="append", metavar="TEXT", help="only forms whose name contains TEXT (repeat)")
    c.add_argument("--quick", action="store_true", help="the reduced matrix of the quick test suite")
    c.add_argument("--no-e2e", action="store_true", help="without the whole-model (MiniLM) rows")
    c.add_argument("--json", metavar="FILE", help="write the cells as JSON")
    c.add_argument("--markdown", metavar="FILE", help="write the page (versions, table, notes) as Markdown")
    c.add_argument("--progress", action="store_true", help="print each form on stderr as it runs")
    c.set_defaults(func=_cmd_conformance)
