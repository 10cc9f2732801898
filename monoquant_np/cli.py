"""The ``monoquant-np`` command line (spec sections 9.7 and 13.9).

Every subcommand turns the package's ``ValueError``/``TypeError``/``OSError``
into one line on stderr and exit status 2; a traceback is never printed for
bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main", "build_parser", "CLIError"]


class CLIError(Exception):
    """An error to report on one line of stderr with a non-zero exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import format_table, run_demo_numpy

    rows, totals = run_demo_numpy(group_size=args.group_size, symmetric=not args.asymmetric)
    print("monoquant-np demo: a 4-layer float MLP quantized by the NumPy spec\n")
    for r in rows:
        r["shape_s"] = "x".join(map(str, r["shape"]))
    print(format_table(rows, [
        ("layer", "layer", ""), ("shape_s", "shape (K x N)", ""), ("scheme", "scheme", ""),
        ("block_size", "group", ""), ("bytes_float", "bytes fp32", ","), ("bytes_quant", "bytes quant", ","),
        ("bits_per_weight", "bits/weight", ".3f"), ("max_abs_err", "max |w-w'|", ".4f"),
        ("rel_err", "rel err", ".4f"),
    ]))
    print(
        f"\ntotal: {totals['bytes_float']:,} -> {totals['bytes_quant']:,} bytes "
        f"({totals['bytes_float'] / totals['bytes_quant']:.2f}x smaller, "
        f"{totals['bits_per_weight']:.3f} bits/weight)"
    )
    print(
        f"model output (batch {totals['model'].inputs.shape[0]}) vs float: "
        f"max abs err {totals['output_max_abs_err']:.4g}, rel err {totals['output_rel_err']:.4g}"
    )
    try:  # the ONNX part (spec 9.7) needs onnx and onnxruntime
        from .onnx.export_demo import demo_onnx
    except ImportError as e:
        print(f"\nONNX part skipped: {e.name or e} is not installed")
    else:
        demo_onnx(args, totals)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``demo``, ``quantize``, ``verify``, ``inspect`` and ``conformance``; its errors raise
    :class:`CLIError`."""
    p = _Parser(prog="monoquant-np", description="INT4 weight quantization: a NumPy spec and an ONNX exporter.")
    p.add_argument("--version", action="version", version=f"monoquant-np {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    d = sub.add_parser("demo", help="quantize a built-in example model and report the error")
    d.add_argument("--group-size", type=int, default=128, help="group size (default 128)")
    d.add_argument("--asymmetric", action="store_true", help="uint4 with zero points")
    d.add_argument("--output", metavar="DIR", help="also save the exported ONNX model in DIR (demo_mlp.onnx)")
    d.set_defaults(func=_cmd_demo)
    from .onnx.commands import add_model_commands  # quantize, verify, inspect (spec 13.9)

    add_model_commands(sub)
    from .onnx.conformance_command import add_conformance_command  # every form in every runtime (spec 16.1)

    add_conformance_command(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status (0, 1, 2 or 130)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args))
    except CLIError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:
        print(f"monoquant-np: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("monoquant-np: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
