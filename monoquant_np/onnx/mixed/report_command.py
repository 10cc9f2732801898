"""``monoquant-np report REPORT.json --html REPORT.html``: the HTML page of a saved report (spec 21.5)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..model_io import check_output_path, write_text_atomic
from .html_report import render_html

__all__ = ["add_report_command"]


def add_report_command(sub) -> None:
    """Add ``report`` to an argparse subparsers object."""
    r = sub.add_parser("report", help="write the HTML page of a quantizer report (spec 21.5)",
                       description="Render the JSON written by `quantize --report` as one self-contained HTML "
                                   "page (inline SVG charts, no network).",
                       epilog="example: monoquant-np report r.json --html r.html")
    r.add_argument("input", metavar="REPORT.json")
    r.add_argument("--html", required=True, metavar="REPORT.html", help="the page to write")
    r.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.html)
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{src} is not a JSON report: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise ValueError(f"{src} is not a quantizer report (no 'layers' list)")
    check_output_path(out, (src,), "--html")
    try:
        text = render_html(data)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{src} is not a quantizer report: missing or bad field {e}") from None
    write_text_atomic(out, text, inputs=(src,), what="--html")
    print(f"wrote {out}")
    return 0
