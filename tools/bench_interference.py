"""How the previous call's threads and the allocator slow the next call (the method behind ``tools/bench.py``).

Usage::

    python tools/bench_interference.py [--reps 9] [--markdown]

On a 4096x4096 weight at batch 256, times NumPy's float32 matmul and
``dequant_matmul`` (int4, group 128) right after each of:

* an onnxruntime session run (the ``qdq`` graph of the same weight): its pool
  thread keeps spinning for some 20-50 ms after the run;
* a NumPy float32 matmul: OpenBLAS's idle worker keeps spinning for
  ``2**28`` cycles (about 0.12 s at 2 GHz), but the next call uses that worker anyway;
* a pause of ``PAUSE`` seconds (every helper thread asleep).

``tools/bench.py`` times its candidates round-robin; in a rotation that mixed
onnxruntime sessions with NumPy candidates, the candidate after the last session
would always be the same one, and this script shows by how much it would be
slowed. So the bench times its NumPy candidates (ours, plain NumPy, the float32
matmul) in one rotation and ours against the sessions in another.

It also counts the minor page faults per ``dequant_matmul`` call
(``getrusage``): fresh scratch memory costs one fault per 4 KiB page.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from _report import batch256_case, median_ms, print_table

from monoquant_np import dequant_matmul

#: Seconds of the pause: longer than OpenBLAS's idle spin (2**28 cycles, about 0.12 s at 2 GHz).
PAUSE = 0.15


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=9, help="timed pairs per cell (median)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    w, qt, x = batch256_case()
    prevs: dict[str, Callable[[], Any]] = {
        f"a pause of {PAUSE} s": lambda: time.sleep(PAUSE),
        "a NumPy float32 matmul": lambda: x @ w,
    }
    try:
        import onnxruntime as ort

        from monoquant_np.onnx.export.models import linear_model

        sess = ort.InferenceSession(linear_model(qt, format="qdq").SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        prevs["an onnxruntime session run"] = lambda: sess.run(None, {name: x})
    except ImportError as e:
        print(f"# onnxruntime rows skipped: {e}")
    fns = {"NumPy float32 matmul": lambda: x @ w, "dequant_matmul": lambda: dequant_matmul(x, qt)}
    ms = {(p, f): median_ms(fn, args.reps, before=prev) for p, prev in prevs.items() for f, fn in fns.items()}
    base = next(iter(prevs))
    rows = []
    for p in prevs:
        cells = [f"{ms[p, f]:.1f} ({ms[p, f] / ms[base, f]:.2f}x)" for f in fns]
        rows.append([p, *cells, f"{ms[p, 'dequant_matmul'] / ms[p, 'NumPy float32 matmul']:.3f}"])
    print(f"# 4096x4096, batch 256: median ms of {args.reps} calls right after ... (x: vs after the pause)")
    print_table(["right after", *fns, "dequant_matmul / float32"], rows, args.markdown)
    faults = []
    for _ in range(args.reps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        dequant_matmul(x, qt)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(f"# minor page faults per dequant_matmul call: median {statistics.median(faults):.0f} "
          f"(min {min(faults)}, max {max(faults)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
