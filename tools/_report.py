"""Helpers shared by the scripts in tools/: the run's environment, tables, the docs/ pages,
a median timer and the batch-256 case.

Scripts run as ``python tools/x.py``, so ``tools/`` is on ``sys.path`` and they
import this module as ``_report``. A tool that measures something prints
:func:`environment_lines` first and, given ``--markdown PATH``, writes the same
header, its tables and a paragraph on how to read them to ``PATH`` with
:func:`write_page` (the pages under ``docs/``).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Libraries every page names; a tool adds the peers it measured against.
CORE_LIBRARIES = ("numpy", "onnx", "onnxruntime")


def cpu_model() -> str:
    """The CPU's model name, family and model number (``/proc/cpuinfo`` on Linux, else
    ``platform.processor()``)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    family = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return fields["model name"] + family


def library_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``not installed``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def blas() -> str:
    """NumPy's BLAS, as its build configuration names it (e.g. ``scipy-openblas 0.3.31``)."""
    try:
        import numpy as np

        dep = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[func-returns-value]
        return f"{dep.get('name', '?')} {dep.get('version', '')}".strip()
    except Exception:  # an older NumPy without mode="dicts"
        return "unknown"


def environment(peers: Sequence[str] = ()) -> dict[str, Any]:
    """What a measurement ran on: date (UTC), CPU model, logical cores, load average,
    Python, NumPy's BLAS and the versions of :data:`CORE_LIBRARIES` plus ``peers``."""
    libs = {name: library_version(name) for name in (*CORE_LIBRARIES, *peers)}
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu_model(), cores=os.cpu_count(), load=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        python=platform.python_version(), blas=blas(), libraries=libs,
        command="python " + " ".join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "", *sys.argv[1:]]),
    )


def environment_lines(env: dict[str, Any]) -> list[str]:
    """The header every tool prints and every page starts with: command, date, machine, versions."""
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    load = "" if env["load"] is None else f"; load average {env['load']:.2f} at the start"
    return [
        f"Command: `{env['command']}`",
        f"Date: {env['date']}",
        f"Machine: {env['cpu']}, {env['cores']} logical cores{load}",
        f"Versions: Python {env['python']}, {libs}; NumPy's BLAS {env['blas']}",
    ]


def print_environment(env: dict[str, Any]) -> None:
    """Print :func:`environment_lines` as ``#`` comment lines."""
    for line in environment_lines(env):
        print("# " + line.replace("`", ""), flush=True)


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """``rows`` under ``head`` as a Markdown table; ``align`` holds one ``l``/``r`` per
    column (default: all left)."""
    spec = [("---:" if a == "r" else "---") for a in (align or "l" * len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(spec) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_page(path: str, title: str, env: dict[str, Any], sections: Sequence[str]) -> None:
    """Write a docs/ page: ``# title``, the environment, then ``sections`` (Markdown
    blocks: tables and paragraphs), separated by blank lines. Written to a
    temporary file next to ``path`` and renamed, so a failed run leaves the old page."""
    header = "\n".join(f"{line}  " for line in environment_lines(env)).rstrip()
    text = "\n\n".join([f"# {title}", header, *[s.strip() for s in sections]]) + "\n"
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"wrote {path}", file=sys.stderr)


def median_ms(fn: Callable[[], Any], reps: int, warmup: int = 1,
              before: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls, in ms, after ``warmup`` untimed calls;
    ``before()``, if given, runs untimed right before each timed call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def print_table(head: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> None:
    """Print ``rows`` under ``head`` as a Markdown table or as aligned text."""
    if markdown:
        print(markdown_table(head, rows))
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)))


def batch256_case() -> tuple[Any, Any, Any]:
    """The 4096x4096 case the batch-256 diagnostics share (``bench_interference``,
    ``bench_decode``): ``(w, quantize(w), x)``, ``w`` float32 ``(4096, 4096)``
    and ``x`` float32 ``(256, 4096)``, both standard normal from seed 0; int4,
    group 128."""
    import numpy as np

    from monoquant_np import quantize

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    return w, quantize(w), rng.standard_normal((256, 4096), dtype=np.float32)
