"""The small-batch tile sizes of ``dequant_matmul``, measured (the evidence behind ``planes.GEMV_TILE_BYTES``).

Usage::

    python tools/bench_tiles.py [--reps 15] [--markdown]

Batches of up to ``planes.SMALL_BATCH`` rows decode the weight in row tiles of
whole groups. For 1-2 rows of integer codes the tiles are at most
``planes.GEMV_TILE_BYTES`` (1 MiB, half a core's L2: the products then read
them from the cache), otherwise ``planes.SMALL_TILE_BYTES`` (4 MiB). This
script times ``dequant_matmul`` with each tile bound in turn, in alternation
within one process (the bound is a module constant, set between calls), and
prints the median time of each and the ratio to the 4 MiB tiles, per weight
shape, scheme and batch. Ratios below 1 mean the smaller tiles are faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from _report import print_table

import monoquant_np.planes as planes
from monoquant_np import dequant_matmul, quantize
from monoquant_np.nf4 import quantize_nf4

#: Tile bounds compared, in bytes of float32; the last is the reference of the ratios.
SIZES = (1 << 20, 2 << 20, 4 << 20)


def _time_with(bound: int, x: np.ndarray, qt: Any) -> float:
    """Seconds of one ``dequant_matmul(x, qt)`` with every small-batch tile bound set to ``bound``."""
    planes.GEMV_TILE_BYTES = planes.SMALL_TILE_BYTES = bound
    t0 = time.perf_counter()
    dequant_matmul(x, qt)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="timed calls per tile bound and case (median)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    saved = planes.GEMV_TILE_BYTES, planes.SMALL_TILE_BYTES
    rng = np.random.default_rng(0)
    rows = []
    try:
        for shape in ((4096, 4096), (4096, 11008), (11008, 4096)):
            w = rng.standard_normal(shape, dtype=np.float32)
            for scheme, qt in (("int4 g128", quantize(w)), ("int4 g32", quantize(w, group_size=32)),
                               ("nf4 b64", quantize_nf4(w, block_size=64))):
                for m in (1, 2, 4, 16):
                    if qt.block_size < 4 * m:  # the small-batch path needs group >= 4 M
                        continue
                    x = rng.standard_normal((m, shape[0]), dtype=np.float32)
                    times: dict[int, list[float]] = {s: [] for s in SIZES}
                    for r in range(args.reps):  # alternating order: a slow phase hits every size alike
                        for s in SIZES if r % 2 == 0 else SIZES[::-1]:
                            times[s].append(_time_with(s, x, qt))
                    ms = {s: 1e3 * statistics.median(v) for s, v in times.items()}
                    ref = ms[SIZES[-1]]
                    rows.append([f"{shape[0]}x{shape[1]}", scheme, str(m)]
                                + [f"{ms[s]:.2f} ({ms[s] / ref:.2f})" for s in SIZES])
    finally:
        planes.GEMV_TILE_BYTES, planes.SMALL_TILE_BYTES = saved
    print(f"# dequant_matmul, small-batch path: median ms of {args.reps} calls per tile bound "
          f"(ratio to {SIZES[-1] >> 20} MiB tiles); in use: {saved[0] >> 20} MiB for integer codes at batches "
          f"up to {planes.GEMV_BATCH}, {saved[1] >> 20} MiB otherwise")
    print_table(["weight", "scheme", "batch", *(f"{s >> 20} MiB tiles" for s in SIZES)], rows, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
