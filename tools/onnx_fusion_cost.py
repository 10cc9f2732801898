"""What fusion buys: exported layers in onnxruntime, fused and unfused (spec 9.3, 9.5; docs/fusion-cost.md).

Usage::

    python tools/onnx_fusion_cost.py [--k 2048] [--n 2048] [--reps 15] [--batch 1 32]
                                     [--markdown docs/fusion-cost.md]

One (K, N) weight, exported several ways, timed side by side in one run
(median of REPS calls after a warm-up, one onnxruntime thread), with the ratio
to the fused QDQ layer at accuracy level 1:

* QDQ, group 128, fused into MatMulNBits (accuracy level 1 and 4);
* QDQ, group 128, optimizations off (DequantizeLinear + MatMul as written);
* QDQ, group 96 and 100 (not powers of two: onnxruntime cannot fuse them);
* format="matmulnbits", group 96 (exported as MatMulNBits with blocks of 32);
* the float32 MatMul on the dequantized weight, in onnxruntime (a peer);
* the NumPy spec's dequant_matmul (a peer).

First it shows where the Cast of float16 scales must go (spec 9.3): which
arrangement onnxruntime fuses, how far each is from the spec, and file size.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, both tables and how to read them to a page.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from _report import environment, markdown_table, median_ms, print_environment, write_page
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import QuantizedTensor, dequant_matmul, dequantize, quantize
from monoquant_np.onnx import fused_op_types, linear_model, make_session, max_relative_error
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET


def _model(nodes: list[Any], k: int, n: int, initializers: list[Any], name: str) -> Any:
    """A float32 model ``x (batch, k) -> y (batch, n)`` of ``nodes`` and ``initializers``."""
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])], initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    return m


def _float_model(w: np.ndarray) -> Any:
    k, n = w.shape
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], k, n, [numpy_helper.from_array(w, "w")], "float")


def _ops(counts: dict[str, int]) -> str:
    """``{"Cast": 1, "MatMul": 2}`` -> ``Cast, MatMul x2``."""
    return ", ".join(op + (f" x{c}" if c > 1 else "") for op, c in counts.items())


def f16_arrangements(k: int, n: int) -> list[list[str]]:
    """float16 scales in a float32 model: where the Cast goes decides fusion and exactness (spec 9.3).

    Prints one line per arrangement and returns the rows ``[arrangement,
    optimized graph, max rel. error vs spec, file bytes]``.
    """
    rng = np.random.default_rng(1)
    qt = quantize(rng.standard_normal((k, n)).astype(np.float32), group_size=128, scale_dtype=np.float16)
    x = rng.standard_normal((4, k)).astype(np.float32)
    ref = dequant_matmul(x, qt)
    w = helper.make_tensor("w", TensorProto.INT4, list(qt.shape), qt.data.tobytes(), raw=True)
    s16 = numpy_helper.from_array(qt.scale, "s16")
    s32 = numpy_helper.from_array(qt.scale.astype(np.float32), "s")
    arrangements = {
        "Cast(scale) -> DQ -> MatMul (exported)": ([s16], [
            helper.make_node("Cast", ["s16"], ["s"], to=TensorProto.FLOAT),
            helper.make_node("DequantizeLinear", ["w", "s"], ["wd"], axis=0, block_size=128)]),
        "DQ(float16) -> Cast(weight) -> MatMul": ([s16], [
            helper.make_node("DequantizeLinear", ["w", "s16"], ["wd16"], axis=0, block_size=128),
            helper.make_node("Cast", ["wd16"], ["wd"], to=TensorProto.FLOAT)]),
        "scale stored widened to float32": ([s32], [
            helper.make_node("DequantizeLinear", ["w", "s"], ["wd"], axis=0, block_size=128)]),
    }
    print("float16 scales, three arrangements (group 128, accuracy level 1):")
    rows = []
    for label, (scales, nodes) in arrangements.items():
        m = _model(nodes + [helper.make_node("MatMul", ["x", "wd"], ["y"])], k, n, [w] + scales, "f16")
        err = max_relative_error(make_session(m).run(None, {"x": x})[0], ref)
        ops = fused_op_types(m)
        print(f"  {label:42s} {str(ops):45s} rel err {err:.2g}, file {m.ByteSize():,} bytes")
        rows.append([label, _ops(ops), f"{err:.2g}", f"{m.ByteSize():,}"])
    print()
    return rows


def variants(w: np.ndarray) -> tuple[list[tuple[str, Any, dict[str, Any]]], QuantizedTensor]:
    """The onnxruntime variants ``(label, model, make_session kwargs)`` and the group-128 tensor."""
    q128, q96, q100 = (quantize(w, group_size=g) for g in (128, 96, 100))
    return [
        ("qdq g128 fused, level 1", linear_model(q128), {"accuracy_level": 1}),
        ("qdq g128 fused, level 4", linear_model(q128), {"accuracy_level": 4}),
        ("qdq g128 unfused (optimizations off)", linear_model(q128), {"disable_optimizations": True}),
        ("qdq g96 (cannot fuse)", linear_model(q96), {}),
        ("qdq g100 (cannot fuse)", linear_model(q100), {}),
        ("matmulnbits g96 (blocks of 32), level 1", linear_model(q96, format="matmulnbits"), {}),
        ("float32 MatMul in onnxruntime (peer)", _float_model(dequantize(q128)), {}),
    ], q128


def time_batch(cases: Sequence[tuple[str, Any, dict[str, Any]]], q128: QuantizedTensor,
               x: np.ndarray, reps: int) -> list[tuple[str, float]]:
    """``(label, median ms)`` of every case and of the NumPy peer on input ``x``, printed
    with the ratio to the first case."""
    rows = []
    for label, model, kw in cases:
        sess = make_session(model, intra_op_threads=1, **kw)
        rows.append((label, median_ms(functools.partial(sess.run, None, {"x": x}), reps)))
    rows.append(("NumPy dequant_matmul, g128 (peer)", median_ms(lambda: dequant_matmul(x, q128), reps)))
    base = rows[0][1]
    print(f"\nbatch {x.shape[0]}:")
    print(f"  {'variant':42s} {'ms':>9s} {'x fused':>8s}")
    for label, ms in rows:
        print(f"  {label:42s} {ms:9.3f} {ms / base:8.2f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, tables) to PATH")
    a = p.parse_args(argv)
    env = environment()
    print_environment(env)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((a.k, a.n)) / np.sqrt(a.k)).astype(np.float32)
    cases, q128 = variants(w)
    f16_rows = f16_arrangements(a.k, a.n)
    intro = f"weight {a.k} x {a.n}, median of {a.reps} calls, onnxruntime with 1 thread"
    print(intro + "\n")
    graphs = {"float32 MatMul in onnxruntime (peer)": "MatMul", "NumPy dequant_matmul, g128 (peer)": "(NumPy)"}
    for label, model, kw in cases[:6]:
        if kw.get("disable_optimizations"):
            graphs[label] = "as written"
            print(f"  {label:42s} graph as written")
            continue
        counts = fused_op_types(model, kw.get("accuracy_level", 1))
        graphs[label] = _ops(counts)
        print(f"  {label:42s} optimized graph: {counts}")
    timed = [time_batch(cases, q128, rng.standard_normal((b, a.k)).astype(np.float32), a.reps) for b in a.batch]
    if a.markdown:
        head = ["variant", "graph run"] + [h for b in a.batch for h in (f"ms b{b}", f"x fused b{b}")]
        rows = [[label, graphs[label]]
                + [c for t in timed for c in (f"{t[i][1]:.3f}", f"{t[i][1] / t[0][1]:.2f}")]
                for i, (label, _) in enumerate(timed[0])]
        f16_head = ["arrangement", "optimized graph", "max rel. error vs spec", "file bytes"]
        write_page(a.markdown, "What fusion buys in onnxruntime", env, [
            F16_INTRO.format(k=a.k, n=a.n), markdown_table(f16_head, f16_rows, "llrr"),
            f"## Fused and unfused\n\n{intro[0].upper() + intro[1:]}; `x fused bB` is the ratio "
            "to the fused QDQ layer at accuracy level 1 at batch B, measured in the same run.",
            markdown_table(head, rows, "ll" + "rr" * len(a.batch)), READING])
    return 0


F16_INTRO = """\
## float16 scales in a float32 model (spec 9.3)

Weight {k} x {n}, group 128, float16 scales, accuracy level 1; the error is
`max|y_ort - y_spec| / max|y_spec|` against `dequant_matmul` on a batch of 4."""

READING = """\
How to read it: the first table holds no timings. The exported arrangement
casts the *scale*, an initializer, which onnxruntime constant-folds before its
QDQ fusion, so it fuses into `MatMulNBits` and stays within float32 rounding of
the spec, like a scale stored as float32 (2 more bytes per group in the file).
Casting the dequantized *weight* computes `(q - z) * s` in float16, so its error
is float16 rounding, and it runs unfused. In the second table, `graph run` is
the optimized graph onnxruntime runs (`as written` with optimizations off:
`DequantizeLinear` then `MatMul`). An unfused layer dequantizes the whole weight
into a float32 tensor on every run (`4 K N` bytes, 8x the 4-bit weight) before
an ordinary `MatMul`, so its ratio to the fused kernel is largest at batch 1,
where moving the weight is the cost, and narrows as the batch grows. Accuracy
level 4 quantizes the activations to int8 (spec 9.6). `format="matmulnbits"`
fuses group 96 as blocks of 32, which QDQ cannot. The timings come from one run
on a possibly shared machine: compare the ratios within this page, not absolute
times across pages."""


if __name__ == "__main__":
    sys.exit(main())
