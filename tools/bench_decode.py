"""Where the time of ``dequant_matmul`` at batch 256 goes: products, decoding, the rest.

Usage::

    python tools/bench_decode.py [--reps 11] [--markdown]

On a 4096x4096 int4 weight (group 128) at batch 256, every ``dequant_matmul``
call runs right after NumPy's float32 matmul on the float weight, as in
``tools/bench.py``. Wrappers sum, within each call, the time spent in the
nibble-plane decoder (``planes._decode``: the byte operation, the int8 ->
float32 conversion, the scaling) and in the BLAS products (``np.matmul`` as
``planes`` calls it); the rest is the accumulation over K, slicing and Python.

For comparison, the last row runs the same decoder over the same 16M codes
into one chunk of ``planes.DECODE_BYTES`` that is reused, so it stays in the
cache: the difference to the decoding row is what writing each tile out to
memory (for the product to read back) costs.

The second pair of columns runs each call, alternating with the first, with
the scaling as NumPy broadcasts it, ``groups.ROW_ELEMENTS = 0`` (one inner-loop
call per row of N/2 scales instead of :func:`monoquant_np.groups.apply_rows`'s
rows of up to 16384): the difference is what the long inner loops save.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import batch256_case, median_ms, print_table

import monoquant_np.groups as groups
import monoquant_np.planes as planes
from monoquant_np import dequant_matmul


def _timed(fn: Callable[..., Any], acc: list[float]) -> Callable[..., Any]:
    """``fn`` that adds its wall time (s) to ``acc[0]``."""
    def run(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[0] += time.perf_counter() - t0
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=11, help="timed calls (median)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    w, qt, x = batch256_case()

    dec, mm = [0.0], [0.0]
    proxy = types.ModuleType("numpy_timed")
    proxy.__dict__.update(np.__dict__)
    proxy.matmul = _timed(np.matmul, mm)
    # two decoders, alternating call by call: as shipped, and with groups.apply_rows reduced to NumPy's
    # plain broadcast (ROW_ELEMENTS = 0: one inner-loop call per row of N/2 scales)
    variants = {"shipped": groups.ROW_ELEMENTS, "plain": 0}
    parts = {v: {"f32": [], "total": [], "products": [], "decoding": []} for v in variants}
    real_decode, real_np, real_rows = planes._decode, planes.np, groups.ROW_ELEMENTS
    planes._decode, planes.np = _timed(real_decode, dec), proxy  # type: ignore[assignment]
    try:
        dequant_matmul(x, qt)  # warm-up
        for _ in range(args.reps):
            for v, row_elements in variants.items():
                groups.ROW_ELEMENTS = row_elements
                t0 = time.perf_counter()
                x @ w
                t1 = time.perf_counter()
                dec[0] = mm[0] = 0.0
                dequant_matmul(x, qt)
                t2 = time.perf_counter()
                parts[v]["f32"].append(t1 - t0)
                parts[v]["total"].append(t2 - t1)
                parts[v]["products"].append(mm[0])
                parts[v]["decoding"].append(dec[0])
    finally:
        planes._decode, planes.np, groups.ROW_ELEMENTS = real_decode, real_np, real_rows
    ms = {v: {k: 1e3 * statistics.median(t) for k, t in p.items()} for v, p in parts.items()}
    rest = {v: 1e3 * statistics.median(t - q - d for t, q, d in zip(p["total"], p["products"], p["decoding"],
                                                                    strict=True))
            for v, p in parts.items()}

    # the same decoder, the same codes and scales, one cache-resident chunk
    k, j = 4096, 2048
    packed = qt.data.reshape(k, j)  # (K, N/2): low nibble = even column
    planes_s, sixteenth = planes._sixteenths(qt, [np.ascontiguousarray(qt.scale[:, h::2]) for h in (0, 1)])
    rows = planes._chunk_rows(qt.block_size, j)  # 128: one group of rows per chunk
    f, ub = np.empty((rows, j), np.float32), np.empty((rows, j), np.uint8)

    def in_cache() -> None:
        for h in (0, 1):
            for c0 in range(0, k, rows):
                g = c0 // qt.block_size
                planes._decode(packed[c0:c0 + rows], h, qt, None, ub, f,
                               planes_s[h][g:g + 1, None, :], sixteenth)

    cached = median_ms(in_cache, args.reps, before=lambda: x @ w)
    f32 = ms["shipped"]["f32"]

    def row(what: str, key: str) -> list[str]:
        a, b = (rest[v] if key == "rest" else ms[v][key] for v in variants)
        return [what, f"{a:.1f}", f"{a / f32:.2f}", f"{b:.1f}", f"{b / ms['plain']['f32']:.2f}"]

    table = [
        ["NumPy float32 matmul (the bench's peer)", f"{f32:.1f}", "1.00", f"{ms['plain']['f32']:.1f}", "1.00"],
        row("dequant_matmul, whole call", "total"),
        row("  of which the BLAS products", "products"),
        row("  of which decoding into the tiles", "decoding"),
        row("  the rest (accumulation over K, slicing)", "rest"),
        ["the same decoding into one cached chunk", f"{cached:.1f}", f"{cached / f32:.2f}", "", ""],
    ]
    print(f"# 4096x4096 int4 g128, batch 256: median ms of {args.reps} calls of each decoder, alternating, "
          "each right after the float32 matmul")
    print_table(["what", "ms", "/ float32 matmul", "ms, plain broadcast", "/ float32 matmul"], table, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
