"""The conformance matrix: every export form through every runtime, classified against the spec (spec 16.1).

Each cell is one :data:`~monoquant_np.testing.forms.FORMS` row run by one
:data:`~monoquant_np.testing.runtimes.RUNTIMES` adapter, and gets one verdict:

==================  ==========================================================================
verdict             meaning
==================  ==========================================================================
``exact``           every output element within the float32 bound (spec 12.7.2); the detail
                    is the worst ``|diff| / bound``
``within bound``    beyond float32 but within the runtime's documented bound (the detail names
                    it: ``int8 activations``, spec 12.7.3)
``mismatch``        an element beyond every bound: the detail gives the first such element
                    (C order), its value, the spec's, and the largest ``|diff| / max|y|``
``unsupported``     the runtime refused the model; the detail is its message, one line
``not installed``   the runtime is not installed
==================  ==========================================================================

:func:`run_matrix` returns :class:`Cell` objects; :func:`matrix_markdown`
and :func:`matrix_json` render them (the page ``docs/conformance.md`` is
``monoquant-np conformance --markdown docs/conformance.md``).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
from collections.abc import Callable, Sequence

import numpy as np

from .forms import FLOAT32, FORMS, Form, FormCase
from .runtimes import DEFAULT_RUNTIMES, RUNTIMES, Outcome, Runtime, get_runtime, one_line, run_model

__all__ = ["Cell", "VERDICTS", "classify", "run_matrix", "select_forms", "versions", "matrix_markdown",
           "matrix_json", "summary_counts"]

VERDICTS = ("exact", "within bound", "mismatch", "unsupported", "not installed")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One form run by one runtime: ``verdict`` (:data:`VERDICTS`), a one-line ``detail``, and ``worst``
    = the largest ``|diff| / float32 bound`` when the runtime produced outputs."""

    form: str
    group: str
    runtime: str
    verdict: str
    detail: str
    worst: float | None = None


def _ratio(diff: np.ndarray, bound: np.ndarray) -> float:
    """``max(diff / bound)``, with ``0 / 0 = 0`` and ``x / 0 = inf``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(diff == 0, 0.0, diff / bound)
    return float(np.nan_to_num(r, nan=np.inf).max(initial=0.0))


def _first_beyond(got: np.ndarray, want: np.ndarray, diff: np.ndarray, bound: np.ndarray, k: int) -> str:
    """Where the first element beyond ``bound`` is, and how large the worst difference is."""
    bad = ~(diff <= bound)  # NaN counts as beyond
    idx = np.unravel_index(int(np.argmax(bad.reshape(-1))), bad.shape)
    scale = float(np.abs(want).max(initial=0.0)) or 1.0
    where = f"y{k}[{', '.join(map(str, idx))}]" if len(idx) else f"y{k}"
    rel = float(np.nan_to_num(diff, nan=np.inf).max()) / scale
    return (f"{where} = {float(got[idx]):.6g}, spec {float(want[idx]):.6g} (|diff| {float(diff[idx]):.2g}); "
            f"max |diff| / max|y| = {rel:.2g}")


def classify(case: FormCase, outcome: Outcome, runtime: Runtime) -> tuple[str, str, float | None]:
    """``(verdict, detail, worst)`` of ``outcome`` against ``case`` (module table)."""
    if outcome.status == "not installed":
        return "not installed", outcome.message, None
    if not outcome.ok:
        return "unsupported", f"{outcome.status}: {one_line(outcome.message)}", None
    if len(outcome.outputs) != len(case.expected):
        return "mismatch", f"{len(outcome.outputs)} outputs, the spec has {len(case.expected)}", None
    diffs = []
    for k, (got, want) in enumerate(zip(outcome.outputs, case.expected, strict=True)):
        if got.shape != want.shape:
            return "mismatch", f"y{k} has shape {got.shape}, the spec {want.shape}", None
        diffs.append(np.abs(got.astype(np.float64) - want.astype(np.float64)))
    worst = max(_ratio(d, b) for d, b in zip(diffs, case.bounds[FLOAT32], strict=True))
    if worst <= 1.0:
        return "exact", f"{worst:.2g} of the float32 bound", worst
    if runtime.bound is not None and runtime.bound in case.bounds:
        own = max(_ratio(d, b) for d, b in zip(diffs, case.bounds[runtime.bound], strict=True))
        if own <= 1.0:
            return "within bound", f"{runtime.bound}: {own:.2g} of that bound ({worst:.3g}x float32's)", worst
    k = next(i for i, (d, b) in enumerate(zip(diffs, case.bounds[FLOAT32], strict=True)) if not (d <= b).all())
    detail = _first_beyond(outcome.outputs[k], case.expected[k], diffs[k], case.bounds[FLOAT32][k], k)
    return "mismatch", detail, worst


def select_forms(*, quick: bool = False, e2e: bool = True, names: Sequence[str] | None = None) -> list[Form]:
    """The rows: all of :data:`FORMS`, only the ``quick`` ones, without the ``e2e`` ones, or those ``names``."""
    forms = [f for f in FORMS if (f.quick or not quick) and (e2e or not f.e2e)]
    if names is not None:
        unknown = sorted(set(names) - {f.name for f in FORMS})
        if unknown:
            raise ValueError(f"forms must be names of testing.forms.FORMS, got unknown {unknown}")
        forms = [f for f in forms if f.name in set(names)]
    return forms


def run_matrix(forms: Sequence[Form] | None = None, runtimes: Sequence[str] | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> tuple[list[Cell], list[str]]:
    """Run ``forms`` (default all) through ``runtimes`` (default :data:`DEFAULT_RUNTIMES`).

    Returns ``(cells, skipped)``: ``skipped`` names the rows whose case could
    not be built (missing golden vectors or model wheel), with the reason.
    """
    rts = [get_runtime(r) for r in (runtimes if runtimes is not None else DEFAULT_RUNTIMES)]
    forms = list(FORMS if forms is None else forms)
    cells: list[Cell] = []
    skipped: list[str] = []
    for i, form in enumerate(forms):
        if progress is not None:
            progress(i, len(forms), form.name)
        try:
            case = form.build()
        except (FileNotFoundError, ImportError) as e:
            skipped.append(f"{form.name}: {e}")
            continue
        for rt in rts:
            verdict, detail, worst = classify(case, run_model(rt, case.model, case.feeds), rt)
            cells.append(Cell(form.name, form.group, rt.name, verdict, detail, worst))
    return cells, skipped


def versions(runtimes: Sequence[str] | None = None) -> dict[str, str]:
    """Python, NumPy and the package version of every runtime named (``not installed`` when missing)."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in runtimes if runtimes is not None else DEFAULT_RUNTIMES:
        rt = RUNTIMES[name]
        out[rt.package] = rt.version or "not installed"
    try:
        out["monoquant-np"] = importlib.metadata.version("monoquant-np")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


def summary_counts(cells: Sequence[Cell]) -> dict[str, dict[str, int]]:
    """runtime -> verdict -> number of cells."""
    out: dict[str, dict[str, int]] = {}
    for c in cells:
        out.setdefault(c.runtime, dict.fromkeys(VERDICTS, 0))[c.verdict] += 1
    return out


def matrix_json(cells: Sequence[Cell], skipped: Sequence[str], runtimes: Sequence[str]) -> str:
    """The matrix as JSON: versions, runtimes (with their options), cells, skipped rows."""
    rts = [{"name": n, "package": RUNTIMES[n].package, "description": RUNTIMES[n].description,
            "bound": RUNTIMES[n].bound, "config": dict(RUNTIMES[n].config)} for n in runtimes]
    return json.dumps({"versions": versions(runtimes), "runtimes": rts,
                       "cells": [dataclasses.asdict(c) for c in cells], "skipped": list(skipped)}, indent=1)


_SHORT = {"exact": "exact", "within bound": "bound", "mismatch": "MISMATCH", "unsupported": "unsupported",
          "not installed": "not installed"}


def _cell_text(c: Cell, notes: dict[str, list[str]]) -> str:
    """The cell's text; a mismatch or refusal points to a note (one per distinct message, naming its runtimes)."""
    if c.verdict == "exact":
        return "exact"
    if c.verdict == "within bound":
        return f"within {c.detail.split(':')[0]} bound"
    runtimes = notes.setdefault(c.detail, [])
    if c.runtime not in runtimes:
        runtimes.append(c.runtime)
    return f"{_SHORT[c.verdict]} [{list(notes).index(c.detail) + 1}]"


def matrix_markdown(cells: Sequence[Cell], skipped: Sequence[str], runtimes: Sequence[str],
                    command: str = "monoquant-np conformance") -> str:
    """The page: command, date, machine, versions, counts per runtime, the table by group, the notes."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    vers = ", ".join(f"{k} {v}" for k, v in versions(runtimes).items())
    lines = ["# ONNX runtimes against the spec: the conformance matrix", "",
             f"Command: `{command}`  ", f"Date: {date}  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} logical cores, {platform.system()}  ",
             f"Versions: {vers}", "", "Runtimes (columns):", ""]
    lines += [f"* `{n}`: {RUNTIMES[n].description}" for n in runtimes]
    counts = summary_counts(cells)
    lines += ["", f"{len(cells)} cells, {len({c.form for c in cells})} forms x {len(runtimes)} runtimes:", "",
              "| runtime | " + " | ".join(VERDICTS) + " |", "| --- |" + " --- |" * len(VERDICTS)]
    lines += [f"| {n} | " + " | ".join(str(counts.get(n, {}).get(v, 0)) for v in VERDICTS) + " |" for n in runtimes]
    notes: dict[str, list[str]] = {}
    group = None
    for form in dict.fromkeys(c.form for c in cells):
        row = {c.runtime: c for c in cells if c.form == form}
        first = next(iter(row.values()))
        if first.group != group:
            group = first.group
            lines += ["", f"### {group}", "", "| form | " + " | ".join(runtimes) + " |",
                      "| --- |" + " --- |" * len(runtimes)]
        lines.append(f"| {form} | " + " | ".join(_cell_text(row[n], notes) for n in runtimes) + " |")
    lines += ["", "### Notes", ""] + [f"{i}. {', '.join(rts)}: {k}" for i, (k, rts) in enumerate(notes.items(), 1)]
    if skipped:
        lines += ["", "Rows not run: " + "; ".join(skipped)]
    return "\n".join(lines + ["", READING, ""])


READING = """\
How to read it: each row is one graph form the project writes, each column one runtime, and
each cell compares every output element with the NumPy spec's: `exact` is within the float32
rounding bound of spec 12.7.2 (`2e-5 * (|x| @ |W|)` for a layer, 0 for a table lookup or a
`DequantizeLinear` node test, the golden model's tolerance times `max|y|` for a golden model or
a whole model); `within ... bound` is beyond float32 but within the runtime's documented bound
(int8 activations: `max|x_row| / 254 * sum_k |W[k, n]|`, spec 12.7.3); `MISMATCH [n]` and
`unsupported [n]` point to a note with the first differing element or the runtime's own message.
Spec chapter 16 draws the conclusions and the export targets (`--target`) that avoid each
unsupported form."""
