"""What NF4 and double quantization cost in onnxruntime (spec 10.6, 11.4; docs/nf4-onnxruntime.md).

Usage::

    python tools/bench_nf4.py [--k 2048] [--n 2048] [--batch 1 32] [--runs 30] [--threads 1]
                              [--markdown docs/nf4-onnxruntime.md]

One linear layer ``y = x @ W`` (``W`` standard normal ``(K, N)``) exported in
each form, run on onnxruntime's CPU provider; for each form and batch size it
prints the median latency over ``--runs`` runs and the ratio to the float32
``MatMul`` peer measured in the same run, the file size, the bytes of weights
the session keeps after its graph optimizations (initializers of the graph
onnxruntime writes with ``optimized_model_filepath`` at ``ORT_ENABLE_EXTENDED``),
the operators it runs, and the largest relative difference from the NumPy spec
(``dequant_matmul``).

Forms: float32 MatMul (peer); INT4 g64 QDQ, fused into MatMulNBits (accuracy
level 1); NF4 b64 ``Gather`` graph (default session: constant-folded); the same
with onnxruntime's ``ConstantFolding`` disabled (the weight stays 4-bit in
memory, the lookup runs on every call); NF4 b64 with double quantization; NF4
b64 as ``com.microsoft.MatMulBnb4``; INT4 g64 with double quantization, its
scales rebuilt by ``DequantizeLinear`` (a computed scale: not fused) or by
``scale_rebuild="arithmetic"`` (constant-folded, then fused into MatMulNBits).

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from _report import environment, markdown_table, median_ms, print_environment, write_page
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequant_matmul, double_quantize, quantize, quantize_nf4
from monoquant_np.onnx import linear_model
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET
from monoquant_np.onnx.export.models import nf4_linear_model
from monoquant_np.onnx.runtime import ACCURACY_OPTION, max_relative_error


def float_model(w: np.ndarray) -> onnx.ModelProto:
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def session(model: onnx.ModelProto, threads: int, *, no_folding: bool = False,
            optimized_path: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.add_session_config_entry(ACCURACY_OPTION, "1")
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if optimized_path:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = optimized_path
    disabled = ["ConstantFolding"] if no_folding else None
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=disabled)


def resident(model: onnx.ModelProto, no_folding: bool) -> tuple[int, str]:
    """(initializer bytes, operators) of the graph onnxruntime optimized."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        session(model, 1, no_folding=no_folding, optimized_path=path)
        opt = onnx.load(path)
    nbytes = sum(len(t.raw_data) or numpy_helper.to_array(t).nbytes for t in opt.graph.initializer)
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    return nbytes, ",".join(f"{op}" + (f"x{c}" if c > 1 else "") for op, c in sorted(ops.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = p.parse_args(argv)
    env = environment()
    print_environment(env)
    rng = np.random.default_rng(args.seed)
    w = rng.standard_normal((args.k, args.n)).astype(np.float32)
    int4 = quantize(w, group_size=64)
    nf4 = quantize_nf4(w, block_size=64)
    nf4dq = quantize_nf4(w, block_size=64, double_quant=True)
    int4dq = double_quantize(int4, w=w)
    forms = [  # (label, model, qt for the spec check or None, no_folding)
        ("float32 MatMul (peer)", float_model(w), None, False),
        ("INT4 g64 QDQ -> MatMulNBits", linear_model(int4), int4, False),
        ("NF4 b64 Gather (folded)", nf4_linear_model(nf4), nf4, False),
        ("NF4 b64 Gather, no folding", nf4_linear_model(nf4), nf4, True),
        ("NF4 b64 +DQ Gather", nf4_linear_model(nf4dq), nf4dq, False),
        ("NF4 b64 MatMulBnb4", nf4_linear_model(nf4, format="bnb4"), nf4, False),
        ("INT4 g64 +DQ, DQL rebuild (unfused)", nf4_linear_model(int4dq), int4dq, False),
        ("INT4 g64 +DQ, arithmetic rebuild", nf4_linear_model(int4dq, scale_rebuild="arithmetic"), int4dq, False),
    ]
    intro = f"W {args.k}x{args.n}, {args.threads} thread(s), median latency of {args.runs} runs."
    print(intro)
    head = ["form", "file MB", "resident MB", "ops after optimization", "max rel err"]
    head += [f"ms b{b}" for b in args.batch] + [f"vs float b{b}" for b in args.batch]
    rows = []
    peer: dict[int, float] = {}
    for label, model, qt, no_fold in forms:
        sess = session(model, args.threads, no_folding=no_fold)
        x = rng.standard_normal((max(args.batch), args.k)).astype(np.float32)
        ref = x @ w if qt is None else dequant_matmul(x, qt)
        err = max_relative_error(sess.run(None, {"x": x})[0], ref)
        res_bytes, ops = resident(model, no_fold)
        ms = {}
        for b in args.batch:
            feed = {"x": x[:b]}
            ms[b] = median_ms(lambda s=sess, f=feed: s.run(None, f), args.runs, warmup=3)
        if qt is None:
            peer = ms
        row = [label, f"{model.ByteSize() / 1e6:.2f}", f"{res_bytes / 1e6:.2f}", ops, f"{err:.1e}"]
        row += [f"{ms[b]:.3f}" for b in args.batch] + [f"x{ms[b] / peer[b]:.2f}" for b in args.batch]
        rows.append(row)
        print(" | ".join(row), flush=True)
    table = markdown_table(head, rows, "lrrlr" + "r" * 2 * len(args.batch))
    print(f"\n{table}")
    if args.markdown:
        write_page(args.markdown, "What NF4 and double quantization cost in onnxruntime", env, [intro, table, READING])
    return 0


READING = """\
How to read it: one linear layer `y = x @ W` exported in each form and run on
onnxruntime's CPU provider; `ms bB` is the median latency at batch B and `vs float
bB` its ratio to the float32 `MatMul` measured in the same run. `resident MB` is
what the session keeps after its graph optimizations and `ops after optimization`
the operators it runs: a constant-folded NF4 graph is small on disk but holds and
multiplies a float32 weight; with folding disabled the weight stays 4-bit and the
element-wise `Gather` runs on every call. onnxruntime's `MatMulNBits` takes linear
codes only, so NF4 cannot use it; double-quantized int4 whose scales are rebuilt
by `Cast`/`Mul`/`Add` (`scale_rebuild="arithmetic"`) is folded at load time and
then fuses into `MatMulNBits`. `max rel err` is the largest relative difference
from the NumPy spec (`dequant_matmul`)."""


if __name__ == "__main__":
    raise SystemExit(main())
