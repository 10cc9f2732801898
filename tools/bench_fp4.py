"""MXFP4 and NVFP4 kernels against the int4 paths and plain NumPy (docs/fp4-performance.md).

Usage::

    python tools/bench_fp4.py [--size 2048] [--reps 5] [--markdown docs/fp4-performance.md]

On a ``size x size`` standard-normal float32 weight (groups along axis 0),
medians of ``--reps`` timed calls after one warm-up, every candidate of a row
measured in the same run:

* ``quantize``: ``quantize_mxfp4`` / ``quantize_nvfp4`` against ``quantize``
  int4 at the same block size (32 / 16), and against the textbook NumPy form
  of :mod:`monoquant_np.testing.fp4_reference` (whose codes must equal ours:
  checked);
* ``dequantize``: ``dequantize`` of the FP4 tensor against int4 at the same
  block size and against the textbook ``E2M1[q] * S`` (values checked equal);
* ``dequant_matmul`` at batch 1 and 32 against int4 at the same block size and
  against plain NumPy dequantize-then-matmul.

A ratio ``x0.80`` means the FP4 path takes 80 % of the peer's time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import environment, markdown_table, median_ms, print_environment, print_table, write_page

from monoquant_np import dequant_matmul, dequantize, quantize, quantize_mxfp4, quantize_nvfp4
from monoquant_np.testing import fp4_reference as ref

FORMATS: dict[str, tuple[Callable[..., Any], int]] = {"MXFP4": (quantize_mxfp4, 32), "NVFP4": (quantize_nvfp4, 16)}


def plain_quantize(name: str, w: np.ndarray) -> np.ndarray:
    return ref.mxfp4(w, 0, 32)[0] if name == "MXFP4" else ref.nvfp4(w, 0, 16)[0]


def plain_dequantize(qt: Any) -> np.ndarray:
    return ref.dequantize(qt.codes(), np.moveaxis(qt.scale, 0, -1), 0, qt.block_size)


def rows_for(name: str, w: np.ndarray, reps: int) -> list[list[str]]:
    fp4, bs = FORMATS[name]
    qt, i4 = fp4(w), quantize(w, group_size=bs)
    if not np.array_equal(qt.codes(), plain_quantize(name, w)):
        raise SystemExit(f"{name}: codes differ from the textbook form")
    if not np.array_equal(dequantize(qt), plain_dequantize(qt)):
        raise SystemExit(f"{name}: dequantized values differ from the textbook form")
    rows = []

    def row(case: str, ours: float, peers: dict[str, float]) -> None:
        cells = [f"{name} {case}", f"{ours:.1f}"]
        for t in peers.values():
            cells += [f"{t:.1f}", f"x{ours / t:.2f}"]
        rows.append(cells)
        print(" | ".join(cells), file=sys.stderr)

    row("quantize", median_ms(lambda: fp4(w), reps),
        {"int4": median_ms(lambda: quantize(w, group_size=bs), reps),
         "plain": median_ms(lambda: plain_quantize(name, w), max(1, reps // 2))})
    row("dequantize", median_ms(lambda: dequantize(qt), reps),
        {"int4": median_ms(lambda: dequantize(i4), reps), "plain": median_ms(lambda: plain_dequantize(qt), reps)})
    for batch in (1, 32):
        x = np.random.default_rng(batch).standard_normal((batch, w.shape[0])).astype(np.float32)
        row(f"dequant_matmul batch {batch}", median_ms(lambda x=x: dequant_matmul(x, qt), reps),
            {"int4": median_ms(lambda x=x: dequant_matmul(x, i4), reps),
             "plain": median_ms(lambda x=x: x @ plain_dequantize(qt), reps)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = p.parse_args(argv)
    env = environment()
    print_environment(env)
    w = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(np.float32)
    head = ["case", "ms", "int4 same block ms", "vs int4", "plain NumPy ms", "vs plain"]
    rows = [r for name in FORMATS for r in rows_for(name, w, args.reps)]
    print_table(head, rows, markdown=False)
    if args.markdown:
        intro = (f"A {args.size} x {args.size} standard-normal float32 weight, blocks along axis 0; medians of "
                 f"{args.reps} calls after one warm-up. Peers: symmetric int4 `quantize` at the same block size "
                 "(32 for MXFP4, 16 for NVFP4), and the textbook NumPy forms of `monoquant_np.testing.fp4_reference` "
                 "(codes and values checked identical before timing).")
        write_page(args.markdown, "MXFP4 and NVFP4 kernels against int4 and plain NumPy", env,
                   [intro, markdown_table(head, rows, "lrrrrr"), READING])
    return 0


READING = """\
How to read it: `vs int4` is the FP4 path's time over int4's at the same block
size (below x1.00: faster), `vs plain` over the textbook NumPy form. FP4
quantization adds the E8M0 exponent or the two-level E4M3 scale and seven
comparisons per element (spec 17.1) where int4 rounds once; dequantization and
`dequant_matmul` run the codebook kernels NF4 uses (a 256-entry pair table per
byte, spec 6), where int4 converts integer codes."""


if __name__ == "__main__":
    raise SystemExit(main())
