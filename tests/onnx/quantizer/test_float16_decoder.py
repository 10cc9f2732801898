"""A float16 decoder end to end (spec 13.3 scale_dtype "auto", 9.4): float16 scales, MatMulNBits in float16."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from monoquant_np import dequantize
from monoquant_np.onnx import Algorithm
from monoquant_np.onnx.model_io import save_model
from monoquant_np.onnx.quantizer.algorithm import rtn_tensor
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.runtime import make_session


def test_float16_decoder_runs_matmulnbits_in_float16_equal_to_the_spec(gen_llm, tmp_path):
    path = gen_llm.generate(tmp_path / "f16.onnx", gen_llm.config("tiny", layers=2, dtype="float16"))
    qts = {}

    def recorded(ctx):  # the default rtn, kept for the twin below
        qts[ctx.name] = rtn_tensor(ctx.w, ctx.axis, ctx.options)
        return qts[ctx.name]

    q, rep = quantize_model_with_report(str(path), format="matmulnbits", group_size=32,
                                        algorithm=Algorithm("rtn", recorded))
    assert rep.options["scale_dtype"] == "float16" and not any("DequantizeLinear" in n for n in rep.notes)
    assert {r.served_as for r in rep.rows} == {"MatMulNBits"}
    assert all(qt.scale.dtype == np.float16 for qt in qts.values())
    nbits = [n for n in q.graph.node if n.op_type == "MatMulNBits"]
    inits = {t.name: t for t in q.graph.initializer}
    assert len(nbits) == len(rep.rows) and all(inits[n.input[2]].data_type == TensorProto.FLOAT16 for n in nbits)

    twin = onnx.load(str(path))  # the float16 model with every quantized weight replaced by the spec's dequantize
    for t in twin.graph.initializer:
        if t.name in qts:
            w = dequantize(qts[t.name])
            w = w if tuple(t.dims) == w.shape else w.T
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w).astype(np.float16), t.name))
    ids = np.random.default_rng(3).integers(0, 256, (2, 12)).astype(np.int64)
    save_model(q, tmp_path / "q.onnx", base_dir=tmp_path)  # the float tensors come from f16.onnx.data
    got = make_session(str(tmp_path / "q.onnx"), 1).run(None, {"input_ids": ids})[0]
    want = make_session(twin, 1).run(None, {"input_ids": ids})[0]
    assert got.dtype == np.float16 and got.shape == want.shape
    rel = np.abs(got.astype(np.float32) - want.astype(np.float32)).max() / np.abs(want.astype(np.float32)).max()
    assert rel < 5e-3, rel  # float16 rounding of weights and activations on both sides
