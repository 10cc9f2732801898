"""How a quantized embedding table is read: ``GatherBlockQuantized`` vs ``DequantizeLinear -> Gather``.

Quantizes MiniLM-L3's ``(30522, 384)`` word-embedding table (int4, group 128,
along the embedding axis) with ``quantize_model(..., ops="Gather", gather_op=...)``
and times onnxruntime on 8 x 64 random token ids, alone (a one-node model) and
inside the whole model (``--ops MatMul,Gather``). Median of ``--runs`` after a
warm-up; ratios are DequantizeLinear / GatherBlockQuantized. Outputs are
compared too (they must be identical).

    python tools/bench_gather_ops.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path
from monoquant_np.onnx.quantizer.pipeline import quantize_model
from monoquant_np.onnx.runtime import make_session

TABLE = "model.0.auto_model.embeddings.word_embeddings.weight"


def _time(sess, feeds, runs):
    sess.run(None, feeds)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        out = sess.run(None, feeds)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    src = minilm_model_path()
    if src is None:
        print(f"MiniLM not installed: {MINILM_INSTALL_HINT}", file=sys.stderr)
        return 2
    full = onnx.load(str(src))
    table = next(t for t in full.graph.initializer if t.name == TABLE)
    g = helper.make_graph([helper.make_node("Gather", [TABLE, "ids"], ["y"])], "emb",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table])
    emb = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    emb.ir_version = 10
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30522, (8, 64)).astype(np.int64)
    feeds_full = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    res = {}
    for op in ("GatherBlockQuantized", "DequantizeLinear"):
        q_emb = quantize_model(emb, ops="Gather", gather_op=op)
        q_full = quantize_model(full, ops="MatMul,Gather", gather_op=op)
        res[op] = (_time(make_session(q_emb), {"ids": ids}, args.runs),
                   _time(make_session(q_full), feeds_full, args.runs))
    (ge, gf), (de, df) = res["GatherBlockQuantized"], res["DequantizeLinear"]
    same = all(np.array_equal(a, b) for a, b in zip(ge[1], de[1], strict=True))
    print("8 x 64 token ids, int4 group 128, onnxruntime CPU, median of", args.runs)
    print("| graph | GatherBlockQuantized ms | DequantizeLinear -> Gather ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| (30522, 384) table alone | {ge[0] * 1e3:.2f} | {de[0] * 1e3:.2f} | {de[0] / ge[0]:.1f} |")
    print(f"| whole MiniLM-L3 | {gf[0] * 1e3:.2f} | {df[0] * 1e3:.2f} | {df[0] / gf[0]:.1f} |")
    print(f"outputs identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
