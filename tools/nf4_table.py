"""Error and storage of INT4 vs NF4 (with and without double quantization) vs MXFP4 and NVFP4 (docs/nf4.md).

Usage::

    python tools/nf4_table.py [--size 1024] [--seed 0] [--no-minilm] [--markdown docs/nf4.md]

Weights:

* ``normal``: a ``size x size`` standard-normal matrix (seed ``--seed``);
* ``student-t``: Student's t with 4 degrees of freedom (heavy tails), same size;
* ``MiniLM``: every 2-D ``MatMul`` weight initializer of the real MiniLM-L3
  ONNX model (``monoquant_np.assets``), 18 matrices, pooled.

Every scheme groups along axis 0 (the K axis of a MatMul weight). For each
scheme the table prints bits per weight (all metadata counted, spec 6.3),
then per data set the mean squared error, the mean absolute error, and the
MSE relative to symmetric INT4 g128 measured in the same run (``x0.62`` =
62 % of INT4 g128's MSE). Pooled MiniLM errors are sums over all matrices
divided by the number of weights.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
from _report import environment, markdown_table, print_environment, print_table, write_page

from monoquant_np import (
    bits_per_weight,
    dequantize,
    double_quantize,
    quantize,
    quantize_mxfp4,
    quantize_nf4,
    quantize_nvfp4,
)
from monoquant_np.tensor import QuantizedTensor

Scheme = Callable[[np.ndarray], QuantizedTensor]


def schemes() -> dict[str, Scheme]:
    base: dict[str, Scheme] = {
        "INT4 g32": lambda w: quantize(w, group_size=32),
        "INT4 g64": lambda w: quantize(w, group_size=64),
        "INT4 g128": lambda w: quantize(w, group_size=128),
        "UINT4 asym g128": lambda w: quantize(w, group_size=128, symmetric=False),
        "NF4 b64": lambda w: quantize_nf4(w, block_size=64),
        "NF4 b128": lambda w: quantize_nf4(w, block_size=128),
    }
    out: dict[str, Scheme] = {}
    for name, fn in base.items():
        out[name] = fn
        out[name + " +DQ"] = lambda w, fn=fn: double_quantize(fn(w), w=w)
    # the floating-point formats (spec 18, 19): their scales are 8 bits already, no +DQ
    out["MXFP4 b32"] = lambda w: quantize_mxfp4(w, axis=0)
    out["NVFP4 b16"] = lambda w: quantize_nvfp4(w, axis=0)
    return out


def minilm_weights() -> list[np.ndarray] | None:
    from monoquant_np.assets import minilm_model_path

    path = minilm_model_path()
    if path is None:
        return None
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            a = numpy_helper.to_array(inits[node.input[1]])
            if a.ndim == 2:
                out.append(a.astype(np.float32))
    return out


def measure(fn: Scheme, mats: list[np.ndarray]) -> tuple[float, float, float]:
    """(bits per weight, MSE, MAE) pooled over ``mats``."""
    se = ae = bits = 0.0
    n = 0
    for w in mats:
        qt = fn(w)
        d = dequantize(qt).astype(np.float64) - w
        se += float(np.sum(d * d))
        ae += float(np.sum(np.abs(d)))
        bits += bits_per_weight(qt) * w.size
        n += w.size
    return bits / n, se / n, ae / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-minilm", action="store_true")
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = p.parse_args(argv)
    env = environment()
    print_environment(env)
    rng = np.random.default_rng(args.seed)
    data: dict[str, list[np.ndarray]] = {
        "normal": [rng.standard_normal((args.size, args.size)).astype(np.float32)],
        "student-t(4)": [rng.standard_t(4, (args.size, args.size)).astype(np.float32)],
    }
    if not args.no_minilm:
        mats = minilm_weights()
        if mats is None:
            print("MiniLM model not installed (see monoquant_np.assets); skipping it", file=sys.stderr)
        else:
            data["MiniLM"] = mats
    t0 = time.perf_counter()
    results = {name: {ds: measure(fn, mats) for ds, mats in data.items()} for name, fn in schemes().items()}
    peer = results["INT4 g128"]
    head = ["scheme", "bits/w"]
    for ds in data:
        head += [f"{ds} MSE", f"{ds} MAE", "vs g128"]
    rows = []
    for name, res in results.items():
        bpw = next(iter(res.values()))[0]
        row = [name, f"{bpw:.3f}"]
        for ds in data:
            _, mse, mae = res[ds]
            row += [f"{mse:.3e}", f"{mae:.5f}", f"x{mse / peer[ds][1]:.2f}"]
        rows.append(row)
    print_table(head, rows, markdown=False)
    sizes = ", ".join(f"{ds}: {sum(m.size for m in mats):,} weights" for ds, mats in data.items())
    print(f"\n{sizes}; seed {args.seed}; {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.markdown:
        intro = (f"Weights: {sizes}; synthetic ones {args.size} x {args.size}, seed {args.seed}. "
                 "Every scheme groups along axis 0 (the K axis of a MatMul weight).")
        write_page(args.markdown, "Error and storage of INT4, NF4 (with and without double quantization), MXFP4 "
                   "and NVFP4",
                   env, [intro, markdown_table(head, rows, "lr" + "rrr" * len(data)), READING])
    return 0


READING = """\
How to read it: `bits/w` counts every stored bit (codes, scales, zero points,
the double-quantized scales' own scales and offsets; spec 6.3). Per data set,
`MSE` and `MAE` are the mean squared and mean absolute error of the dequantized
weights, and `vs g128` the MSE relative to symmetric INT4 g128 measured in the
same run (`x0.62`: 62 % of INT4 g128's MSE). `+DQ` is double quantization (spec
11): the scales stored in 8 bits. MiniLM pools the 18 MatMul weights of the real
MiniLM-L3 model. NF4's MAE on standard-normal weights can be compared with the
values bitsandbytes publishes for its NF4 (0.07280 at block 64, 0.07683 at block
128). `MXFP4 b32` (OCP MX, spec 18: E8M0 power-of-two scale per 32) and
`NVFP4 b16` (spec 19: E4M3 scale per 16 and one float32 per tensor) store
E2M1 floating-point codes; compare each with the INT4 and NF4 rows of equal
bits per weight (4.25: INT4 g128, NF4 b128; 4.5: INT4 g64, NF4 b64)."""


if __name__ == "__main__":
    raise SystemExit(main())
