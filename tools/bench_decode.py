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
    parts: dict[str, list[float]] = {"f32": [], "total": [], "products": [], "decoding": []}
    real_decode, real_np = planes._decode, planes.np
    planes._decode, planes.np = _timed(real_decode, dec), proxy  # type: ignore[assignment]
    try:
        dequant_matmul(x, qt)  # warm-up
        for _ in range(args.reps):
            t0 = time.perf_counter()
            x @ w
            t1 = time.perf_counter()
            dec[0] = mm[0] = 0.0
            dequant_matmul(x, qt)
            t2 = time.perf_counter()
            parts["f32"].append(t1 - t0)
            parts["total"].append(t2 - t1)
            parts["products"].append(mm[0])
            parts["decoding"].append(dec[0])
    finally:
        planes._decode, planes.np = real_decode, real_np
    ms = {k: 1e3 * statistics.median(v) for k, v in parts.items()}
    rest = 1e3 * statistics.median(t - p - d for t, p, d in zip(parts["total"], parts["products"],
                                                               parts["decoding"], strict=True))

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
    f32 = ms["f32"]
    table = [
        ["NumPy float32 matmul (the bench's peer)", f"{f32:.1f}", "1.00"],
        ["dequant_matmul, whole call", f"{ms['total']:.1f}", f"{ms['total'] / f32:.2f}"],
        ["  of which the BLAS products", f"{ms['products']:.1f}", f"{ms['products'] / f32:.2f}"],
        ["  of which decoding into the tiles", f"{ms['decoding']:.1f}", f"{ms['decoding'] / f32:.2f}"],
        ["  the rest (accumulation over K, slicing)", f"{rest:.1f}", f"{rest / f32:.2f}"],
        ["the same decoding into one cached chunk", f"{cached:.1f}", f"{cached / f32:.2f}"],
    ]
    print(f"# 4096x4096 int4 g128, batch 256: median ms of {args.reps} calls, each right after the float32 matmul")
    print_table(["what", "ms", "/ float32 matmul"], table, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
