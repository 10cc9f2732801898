"""Helpers shared by the scripts in tools/: a median timer, a table printer, the batch-256 case.

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
