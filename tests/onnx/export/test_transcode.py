"""Lossless transcoding (spec 12.6): a layer decoded from GPTQ, AWQ or Q4_0 exported to ONNX
through ``quantize_model(..., prequantized=...)`` computes with the source format's own weights.

With ``x`` the identity matrix, ``y = x @ W`` *is* ``W`` (every product is by 1 or 0, every sum
adds zeros), so onnxruntime's output must equal the source format's dequantized weight bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
model_mod = pytest.importorskip("monoquant_np.onnx.quantizer.pipeline")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from monoquant_np import dequant_matmul, dequantize  # noqa: E402
from monoquant_np.formats import (  # noqa: E402
    awq_decode,
    gptq_decode,
    q4_0_decode,
    q4_0_dequantize,
    q4_0_quantize,
    transpose,
)
from monoquant_np.onnx import make_session  # noqa: E402

K, N = 128, 64


def float_model(k: int = K, n: int = N) -> onnx.ModelProto:
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)  # replaced by the decoded layer
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def run_exported(qt, fmt: str, x: np.ndarray) -> np.ndarray:
    model = model_mod.quantize_model(float_model(), prequantized={"W": qt}, format=fmt, min_elements=1)
    onnx.checker.check_model(model, full_check=True)
    sess = make_session(model, 1)
    return sess.run(None, {"x": x})[0]


def gptq_layer(rng, act_order: bool):
    from monoquant_np.testing.peers import autogptq_pack, autogptq_weight, random_layer

    codes, zeros, scales, g_idx = random_layer(rng, K, N, 32, act_order)
    qweight, qzeros = autogptq_pack(codes, zeros)
    return gptq_decode(qweight, qzeros, scales, g_idx), autogptq_weight(qweight, qzeros, scales, g_idx)


def awq_layer(rng):
    from monoquant_np.testing.peers import autoawq_pack

    codes = rng.integers(0, 16, (K, N))
    zeros = rng.integers(0, 16, (K // 32, N))
    scales = (rng.random((K // 32, N)) * 0.1).astype(np.float16)
    want = (codes - np.repeat(zeros, 32, 0)).astype(np.float32) * np.repeat(scales, 32, 0).astype(np.float32)
    return awq_decode(autoawq_pack(codes), autoawq_pack(zeros), scales), want


def q4_0_layer(rng):
    linear_weight = rng.standard_normal((N, K)).astype(np.float32)  # torch's (out, in), blocked along in
    data = q4_0_quantize(linear_weight)
    return transpose(q4_0_decode(data, (N, K))), q4_0_dequantize(data, (N, K)).T  # MatMul B (K, N)


SOURCES = {
    "gptq": lambda rng: gptq_layer(rng, False),
    "gptq-act-order": lambda rng: gptq_layer(rng, True),
    "awq": awq_layer,
    "q4_0": q4_0_layer,
}


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_exported_layer_reproduces_the_source_weights_exactly(source, fmt):
    rng = np.random.default_rng(11)
    qt, want = SOURCES[source](rng)
    assert np.array_equal(dequantize(qt), want)  # the decoder is exact
    y = run_exported(qt, fmt, np.eye(K, dtype=np.float32))
    assert np.array_equal(y, want), f"max |diff| {np.abs(y - want).max()}"
    x = rng.standard_normal((5, K)).astype(np.float32)
    y = run_exported(qt, fmt, x)
    np.testing.assert_allclose(y, x @ want, rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(y, dequant_matmul(x, qt), rtol=2e-5, atol=1e-4)
