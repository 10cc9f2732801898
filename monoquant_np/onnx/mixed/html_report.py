"""The quantizer's report as one self-contained HTML page (spec 21.5).

:func:`render_html` turns the dictionary of
:meth:`~monoquant_np.onnx.quantizer.report.QuantReport.to_dict` (or the JSON
``--report`` wrote) into a page with no script, no stylesheet link and no
network access: inline SVG and a ``<style>`` block only. It shows

* the totals table (``id="totals"``);
* the per-weight chart (``id="weights-chart"``): one row per quantized weight,
  a bar of its bytes after quantization (``class="bar"``) and a dot at its
  relative error (``class="err"``), both coloured by its format, with a legend;
* the size/error curve of the budget search (``id="curve"``, ``polyline``) with
  the chosen point (``id="chosen"``), when the report has a ``mixed`` record;
* the per-weight table (``id="layers"``).

Every mark carries ``data-name``, ``data-format`` and its numbers as
``data-*`` attributes, so a test can read them from the rendered DOM.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html", "row_format", "PALETTE"]

#: Colours of the formats, in order of first appearance (then repeated).
PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4")

_STYLE = """body{font:14px sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
svg text{font:11px sans-serif}h2{margin-top:28px}"""


def row_format(row: dict[str, Any], mixed: dict[str, Any] | None) -> str:
    """The format label of a report row: the budget's choice when there is one, else ``scheme g<group>``."""
    if mixed and row["name"] in mixed.get("chosen", {}):
        return str(mixed["chosen"][row["name"]])
    g = row.get("group_size")
    return f"{row['scheme']} g{g}" if g else str(row["scheme"])


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _colours(labels: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for lab in labels:
        out.setdefault(lab, PALETTE[len(out) % len(PALETTE)])
    return out


def _weights_chart(rows: list[dict[str, Any]], fmts: list[str], col: dict[str, str]) -> str:
    """The per-weight chart: bytes bars on the left half, relative error dots on the right half."""
    h_row, left, half = 18, 260, 300
    height = 30 + h_row * len(rows) + 24 * ((len(col) + 3) // 4)
    max_b = max((r["bytes_after"] for r in rows), default=1) or 1
    max_e = max((r["rel_err"] for r in rows), default=1.0) or 1.0
    out = [f'<svg id="weights-chart" xmlns="http://www.w3.org/2000/svg" width="{left + 2 * half + 40}" '
           f'height="{height}">',
           f'<text x="{left}" y="12">bytes after (max {max_b:,})</text>',
           f'<text x="{left + half + 20}" y="12">relative weight error (max {max_e:.4g})</text>']
    for i, (r, f) in enumerate(zip(rows, fmts, strict=True)):
        y = 20 + i * h_row
        w = max(1.0, half * r["bytes_after"] / max_b)
        cx = left + half + 20 + half * r["rel_err"] / max_e
        attrs = f'data-name="{_e(r["name"])}" data-format="{_e(f)}" fill="{col[f]}"'
        out += [f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(r["name"][-38:])}</text>',
                f'<rect class="bar" {attrs} data-bytes="{r["bytes_after"]}" x="{left}" y="{y + 2}" '
                f'width="{w:.1f}" height="{h_row - 4}"><title>{_e(r["name"])}: {_e(f)}, '
                f'{r["bytes_after"]:,} bytes</title></rect>',
                f'<circle class="err" {attrs} data-error="{r["rel_err"]:.6g}" cx="{cx:.1f}" cy="{y + h_row / 2}" '
                f'r="5"><title>{_e(r["name"])}: {_e(f)}, error {r["rel_err"]:.4g}</title></circle>']
    y0 = 30 + h_row * len(rows)
    for k, (f, c) in enumerate(col.items()):
        x, y = 10 + (k % 4) * 200, y0 + 24 * (k // 4)
        out += [f'<rect class="legend" data-format="{_e(f)}" x="{x}" y="{y}" width="14" height="14" fill="{c}"/>',
                f'<text x="{x + 20}" y="{y + 11}">{_e(f)}</text>']
    return "\n".join(out + ["</svg>"])


def _curve_chart(mixed: dict[str, Any]) -> str:
    """The size/error curve of the search (predicted error against the weights' bytes), the choice marked."""
    pts = [(float(b), float(e)) for b, e in mixed.get("curve", [])]
    chosen = (float(mixed["predicted_bytes"]), float(mixed["predicted_error"]))
    allp = pts + [chosen]
    x0, x1 = min(p[0] for p in allp), max(p[0] for p in allp)
    y1 = max(p[1] for p in allp) or 1.0
    w, h, m = 640, 320, 50

    def xy(p: tuple[float, float]) -> tuple[float, float]:
        return (m + (w - 2 * m) * (p[0] - x0) / ((x1 - x0) or 1.0), h - m - (h - 2 * m) * p[1] / y1)

    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in map(xy, pts))
    cx, cy = xy(chosen)
    return "\n".join([
        f'<svg id="curve" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
        f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="#444"/>',
        f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="#444"/>',
        f'<text x="{m}" y="{h - m + 16}">{x0 / 1e6:.3f} MB</text>',
        f'<text x="{w - m}" y="{h - m + 16}" text-anchor="end">{x1 / 1e6:.3f} MB</text>',
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">bytes of the quantized weights</text>',
        f'<text x="{m - 4}" y="{m - 6}">predicted error (max {y1:.4g})</text>',
        f'<polyline class="curve" points="{line}" fill="none" stroke="#1f78b4" stroke-width="2"/>',
        f'<circle id="chosen" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="#d62728" data-bytes="{int(chosen[0])}" '
        f'data-error="{chosen[1]:.6g}"><title>chosen: {int(chosen[0]):,} bytes, error {chosen[1]:.4g}</title>'
        '</circle>', "</svg>"])


def _table(tid: str, head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{tid}"><tr>{th}</tr>{body}</table>'


def render_html(report: dict[str, Any], title: str = "monoquant-np quantization report") -> str:
    """The page of the module docstring for a report dictionary (``QuantReport.to_dict()``)."""
    rows = list(report.get("layers", []))
    mixed = report.get("mixed")
    fmts = [row_format(r, mixed) for r in rows]
    col = _colours(fmts)
    t = report.get("totals", {})
    tot = [["weights quantized", t.get("layers", len(rows))], ["weights skipped", t.get("skipped", 0)],
           ["bytes before", f"{t.get('bytes_before', 0):,}"], ["bytes after", f"{t.get('bytes_after', 0):,}"],
           ["bits per weight", f"{t.get('bits_per_weight', 0.0):.3f}"]]
    if t.get("file_bytes_after") is not None:
        tot += [["file bytes before", f"{t.get('file_bytes_before') or 0:,}"],
                ["file bytes after", f"{t['file_bytes_after']:,}"]]
    if mixed:
        tot += [["budget", f"{mixed['budget']['kind']} {mixed['budget']['value']:g}"],
                ["predicted error", f"{mixed['predicted_error']:.6g}"]]
    by_fmt: dict[str, list[int]] = {}
    for r, f in zip(rows, fmts, strict=True):
        acc = by_fmt.setdefault(f, [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + r["size"], acc[2] + r["bytes_after"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
             "<h2>Totals</h2>", _table("totals", ["", "value"], tot),
             _table("formats", ["format", "weights", "elements", "bytes"],
                    [[f, a, f"{b:,}", f"{c:,}"] for f, (a, b, c) in by_fmt.items()]),
             "<h2>Per weight: bytes and error by format</h2>", _weights_chart(rows, fmts, col)]
    if mixed:
        parts += ["<h2>Size/error curve of the budget search</h2>", _curve_chart(mixed)]
    parts += ["<h2>Weights</h2>", _table("layers", ["weight", "format", "shape", "bytes after", "bits/weight",
                                                    "relative error"],
                                         [[r["name"], f, "x".join(map(str, r["shape"])), f"{r['bytes_after']:,}",
                                           f"{r['bits_per_weight']:.3f}", f"{r['rel_err']:.4g}"]
                                          for r, f in zip(rows, fmts, strict=True)])]
    skipped = report.get("skipped", [])
    if skipped:
        parts += ["<h2>Left float</h2>", _table("skipped", ["weight", "reason"],
                                                [[s["name"], s["reason"]] for s in skipped])]
    return "\n".join(parts + ["</body></html>"]) + "\n"
