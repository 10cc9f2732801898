"""What fusion buys: exported layers in onnxruntime, fused and unfused (spec 9.5).

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

usage: python tools/onnx_fusion_cost.py [--k 2048] [--n 2048] [--reps 15] [--batch 1 32]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from _report import median_ms
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monoquant_np import dequant_matmul, dequantize, quantize  # noqa: E402
from monoquant_np.onnx import fused_op_types, linear_model, make_session, max_relative_error  # noqa: E402


def _float_model(w: np.ndarray):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w.shape[1]])],
        [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _f16_arrangements(k: int, n: int) -> None:
    """float16 scales in a float32 model: where the Cast goes decides fusion and exactness (spec 9.3)."""
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
    for label, (scales, nodes) in arrangements.items():
        g = helper.make_graph(
            nodes + [helper.make_node("MatMul", ["x", "wd"], ["y"])], "f16",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])], [w] + scales)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
        m.ir_version = 10
        err = max_relative_error(make_session(m).run(None, {"x": x})[0], ref)
        print(f"  {label:42s} {str(fused_op_types(m)):45s} rel err {err:.2g}, file {m.ByteSize():,} bytes")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((a.k, a.n)) / np.sqrt(a.k)).astype(np.float32)
    q128, q96, q100 = (quantize(w, group_size=g) for g in (128, 96, 100))
    variants = [  # (label, model, session kwargs, qt for the peer check)
        ("qdq g128 fused, level 1", linear_model(q128), {"accuracy_level": 1}),
        ("qdq g128 fused, level 4", linear_model(q128), {"accuracy_level": 4}),
        ("qdq g128 unfused (optimizations off)", linear_model(q128), {"disable_optimizations": True}),
        ("qdq g96 (cannot fuse)", linear_model(q96), {}),
        ("qdq g100 (cannot fuse)", linear_model(q100), {}),
        ("matmulnbits g96 (blocks of 32), level 1", linear_model(q96, format="matmulnbits"), {}),
        ("float32 MatMul in onnxruntime (peer)", _float_model(dequantize(q128)), {}),
    ]
    _f16_arrangements(a.k, a.n)
    print(f"weight {a.k} x {a.n}, median of {a.reps} calls, onnxruntime with 1 thread\n")
    for label, model, kw in variants[:6]:
        print(f"  {label:42s} optimized graph: {fused_op_types(model, kw.get('accuracy_level', 1))}"
              if not kw.get("disable_optimizations") else f"  {label:42s} graph as written")
    for batch in a.batch:
        x = rng.standard_normal((batch, a.k)).astype(np.float32)
        rows = []
        for label, model, kw in variants:
            sess = make_session(model, intra_op_threads=1, **kw)
            rows.append((label, median_ms(lambda s=sess, x=x: s.run(None, {"x": x}), a.reps)))
        rows.append(("NumPy dequant_matmul, g128 (peer)", median_ms(lambda x=x: dequant_matmul(x, q128), a.reps)))
        base = rows[0][1]
        print(f"\nbatch {batch}:")
        print(f"  {'variant':42s} {'ms':>9s} {'x fused':>8s}")
        for label, ms in rows:
            print(f"  {label:42s} {ms:9.3f} {ms / base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
