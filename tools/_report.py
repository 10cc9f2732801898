"""Helpers shared by the scripts in tools/: a median timer and a table printer.

Scripts run as ``python tools/x.py``, so ``tools/`` is on ``sys.path`` and they
import this module as ``_report``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


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
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)))
