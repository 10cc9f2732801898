"""The ``monoquant-np`` command line (spec sections 9.7 and 13.9).

Every subcommand turns the package's ``ValueError``/``TypeError``/``OSError``
into one line on stderr and exit status 2; a traceback is never printed for
bad input. A bare ``monoquant-np`` (no command) is such an error too.

Signals: :func:`main` first installs handlers for SIGINT, SIGTERM and SIGHUP
(before the parser is built and onnx imported). Each removes the temporary
and not yet final output files (:mod:`monoquant_np.onnx.outputs`), prints one
line and exits ``128 + signal number`` (130, 143, 129); the previous handlers
are restored when :func:`main` returns. A signal the process inherited as
ignored (``nohup``'s SIGHUP, SIGINT of a background job) stays ignored.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from . import __version__

__all__ = ["main", "build_parser", "CLIError", "one_line"]


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


#: The signals :func:`main` handles, and the word its one line uses for each.
_SIGNALS = {"SIGINT": "interrupted", "SIGTERM": "terminated", "SIGHUP": "hung up"}


def _on_signal(signum: int, frame: object) -> None:
    """Remove the pending output files, print one line, exit ``128 + signum`` (no unwinding, no traceback)."""
    outputs = sys.modules.get("monoquant_np.onnx.outputs")  # not imported yet: no file was written
    if outputs is not None:
        outputs.remove_pending()
    name = signal.Signals(signum).name
    os.write(2, f"monoquant-np: {_SIGNALS.get(name, 'stopped')} ({name}); no output written\n".encode())
    os._exit(128 + signum)


def _install_signal_handlers() -> dict[int, object]:
    """Install :func:`_on_signal` (main thread only) for each signal not ignored; the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, object] = {}
    for name in _SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # nohup, a background job: stay deaf
            previous[sig] = signal.signal(sig, _on_signal)
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status (0, 1, 2 or 130);
    a signal exits the process with 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP)."""
    previous = _install_signal_handlers()
    try:
        return _run(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _run(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command, every error as one stderr line."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            raise CLIError(f"{parser.prog}: error: a command is required: demo, quantize, verify or inspect "
                           f"(see {parser.prog} --help)")
        return int(args.func(args))
    except CLIError as e:
        print(one_line(str(e)), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:
        print(one_line(f"monoquant-np: error: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a SIGINT when the handler could not be installed (not the main thread)
        print("monoquant-np: interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    """``message`` with its lines stripped and joined by one space (blank lines dropped): a runtime's
    multi-line error (onnx's checker, a protobuf decoder) still prints as one stderr line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
