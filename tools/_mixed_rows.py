"""The mixed-precision part of tools/accuracy_table.py (``--budget``; spec 21, docs/mixed-precision.md).

On MiniLM-L3 with its embedding table (``--ops MatMul,Gather``), calibrated on
one half of the corpus and evaluated on the other:

* one row per size budget (``quantize_model(size_budget=...)``, rtn and gptq):
  the saved file's MB and the mean embedding cosine;
* the rank agreement (Spearman) of spec 21.2's proxy with the real effect: for
  every weight and the candidates ``int8``, ``int4 g128``, ``int2 g64``, the
  calibration-output error (``1 - mean cosine`` on 64 calibration sentences)
  when only that weight is quantized that way (its dequantized values written
  into the float model, run in onnxruntime);
* an SVG of file size against mean cosine (the budget rows and onnxruntime's),
  and the 8 MB run's HTML report with a Chromium screenshot of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from monoquant_np import dequantize
from monoquant_np.onnx.mixed.candidates import parse_candidate, quantize_candidate
from monoquant_np.onnx.mixed.html_report import render_html
from monoquant_np.onnx.model_io import save_model
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.quantizer.sites import find_weight_sites

BUDGETS = ("10MB", "9MB", "8MB")
PROBE = ("int8", "int4 g128", "int2 g64")


def budget_rows(src: str, tmp: str, cal: dict, embed: Callable, cos: Callable, ref: np.ndarray,
                evaluation: list[str]) -> tuple[list[tuple[str, str, float, float]], dict[str, Any]]:
    """``(algorithm, budget, file MB, mean cosine)`` per budget and algorithm; the 8 MB rtn report dict."""
    rows, rep8 = [], {}
    for alg in ("rtn", "gptq"):
        for b in BUDGETS:
            q, rep = quantize_model_with_report(src, ops="MatMul,Gather", size_budget=b, algorithm=alg,
                                                calibration=cal)
            path = os.path.join(tmp, "b.onnx")
            save_model(q, path, base_dir=os.path.dirname(src))
            rep.file_bytes_after = os.path.getsize(path)
            rows.append((alg, b, os.path.getsize(path) / 1e6, cos(ref, embed(path, evaluation))))
            print(f"  {rows[-1]}", flush=True)
            if alg == "rtn" and b == "8MB":
                rep8 = rep.to_dict()
    return rows, rep8


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman(src: str, report: dict[str, Any], probe_feeds: dict, run: Callable) -> tuple[float, int]:
    """Spearman of the proxy (from the report's table) against the measured output error; and the count."""
    model = onnx.load(src)
    y0 = run(model, probe_feeds)
    sites = {s.name: s for s in find_weight_sites(model, ops=("MatMul", "Gather"))[0] if s.skip is None}
    table = report["mixed"]
    cands = table["candidates"]
    proxy, real = [], []
    for wrow in table["weights"]:
        s = sites[wrow["name"]]
        init = next(t for t in model.graph.initializer if t.name == s.name)
        w = numpy_helper.to_array(init).astype(np.float32)
        for label in PROBE:
            wq = dequantize(quantize_candidate(w, s.axis, parse_candidate(label)))
            init.CopyFrom(numpy_helper.from_array(wq.astype(np.float32), s.name))
            y = run(model, probe_feeds)
            init.CopyFrom(numpy_helper.from_array(w, s.name))
            proxy.append(wrow["error"][cands.index(label)])
            real.append(1.0 - float(np.mean((y * y0).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(y0, axis=1))))
    return _spearman(np.array(proxy), np.array(real)), len(proxy)


def curve_svg(rows: list[tuple[str, str, float, float]], ort: list[tuple[str, float, float]]) -> str:
    """File MB (x) against mean cosine (y): one polyline per algorithm, onnxruntime's points as squares."""
    pts = [(mb, c) for _, _, mb, c in rows] + [(mb, c) for _, mb, c in ort]
    x0, x1 = min(p[0] for p in pts) - 0.3, max(p[0] for p in pts) + 0.3
    y0, y1 = min(p[1] for p in pts) - 0.005, 1.0
    w, h, m = 640, 400, 60

    def xy(mb: float, c: float) -> str:
        return f"{m + (w - 2 * m) * (mb - x0) / (x1 - x0):.1f},{h - m - (h - 2 * m) * (c - y0) / (y1 - y0):.1f}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           'font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="#444"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="#444"/>',
           f'<text x="{w / 2}" y="{h - 20}" text-anchor="middle">file MB (10^6 bytes)</text>',
           f'<text x="12" y="{m - 20}">mean embedding cosine (MiniLM-L3, held-out sentences)</text>']
    for k in range(6):
        mb = x0 + (x1 - x0) * k / 5
        c = y0 + (y1 - y0) * k / 5
        out += [f'<text x="{xy(mb, y0).split(",")[0]}" y="{h - m + 14}" text-anchor="middle">{mb:.1f}</text>',
                f'<text x="{m - 6}" y="{xy(x0, c).split(",")[1]}" text-anchor="end">{c:.3f}</text>']
    for alg, colour in (("rtn", "#1b9e77"), ("gptq", "#d95f02")):
        ps = sorted((mb, c) for a, _, mb, c in rows if a == alg)
        out.append(f'<polyline points="{" ".join(xy(*p) for p in ps)}" fill="none" stroke="{colour}" '
                   'stroke-width="2"/>')
        out += [f'<circle cx="{xy(*p).split(",")[0]}" cy="{xy(*p).split(",")[1]}" r="4" fill="{colour}"/>'
                for p in ps]
        lx, ly = xy(*ps[0]).split(",")
        out.append(f'<text x="{float(lx) + 6}" y="{float(ly) + 14}" fill="{colour}">--size-budget, {alg}</text>')
    for name, mb, c in ort:
        x, y = xy(mb, c).split(",")
        out += [f'<rect x="{float(x) - 4}" y="{float(y) - 4}" width="8" height="8" fill="#7570b3"/>',
                f'<text x="{float(x) + 8}" y="{float(y) + 4}" fill="#7570b3">{name}</text>']
    return "\n".join(out + ["</svg>"]) + "\n"


def write_report_files(report: dict[str, Any], html_path: str, png_path: str | None) -> str:
    """The HTML report (and a Chromium screenshot when Chromium is installed); what was written."""
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(report, title="MiniLM-L3 at --size-budget 8MB (rtn)"))
    if png_path is None:
        return html_path
    from monoquant_np.testing.browser import chromium_path, screenshot

    if chromium_path() is None:
        return f"{html_path} (no Chromium: no screenshot)"
    screenshot(html_path, png_path, size=(1000, 1500))
    return f"{html_path}, {png_path}"


def dump(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
