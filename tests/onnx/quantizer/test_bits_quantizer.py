"""``quantize_model(..., bits=2|8)`` and ``quantize --bits`` (spec 20.8): the opset-25 conversion for INT2, the
spec's values in onnxruntime, the report and ``inspect`` naming the width, and the option's errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize, quantize
from monoquant_np.cli import main
from monoquant_np.onnx.model_io import save_model
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.runtime import make_session
from monoquant_np.packing import storage_size

f32 = np.float32


def _model(k: int, n: int, opset: int, seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray]:
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(f32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", n])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m, w


@pytest.mark.parametrize("bits,opset", [(2, 25), (8, 21)])
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("n", [48, 18])
def test_quantize_model_bits(bits, opset, fmt, symmetric, n):
    m, w = _model(96, n, 17)
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, format=fmt, symmetric=symmetric, bits=bits)
    onnx.checker.check_model(q, full_check=True)
    (row,) = rep.rows
    assert row.scheme == f"{'int' if symmetric else 'uint'}{bits}" and rep.options["bits"] == bits
    # 2-bit qdq with N % 4 != 0 is written as MatMulNBits: onnxruntime would fuse it wrongly (spec 20.8)
    mnb = fmt == "matmulnbits" or (bits == 2 and n % 4 != 0)
    assert row.served_as == ("MatMulNBits" if mnb else "qdq")
    assert {o.domain: o.version for o in q.opset_import}[""] == opset
    x = np.random.default_rng(1).standard_normal((3, 96)).astype(f32)
    ref = x @ dequantize(quantize(w, bits=bits, group_size=32, symmetric=symmetric))
    (y,) = make_session(q, 1).run(None, {"x": x})
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    if not mnb:  # codes at the width, 3 float32 scales per column, zero points packed at the width
        assert row.bytes_after == 96 * n * bits // 8 + 3 * n * 4 + (0 if symmetric else storage_size(3 * n, bits))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"bits": 3}, ValueError, "bits must be one of 2, 4, 8"),
    ({"bits": 4.0}, TypeError, "bits must be one of 2, 4, 8 \\(an int\\)"),
    ({"bits": 2, "scheme": "nf4"}, ValueError, "bits=2 applies to the linear schemes"),
    ({"bits": 8, "algorithm": "mse"}, ValueError, "bits=8 is quantized with algorithm 'rtn' only"),
])
def test_bad_bits(kwargs, exc, match):
    m, _ = _model(64, 8, 21)
    with pytest.raises(exc, match=match):
        quantize_model_with_report(m, min_elements=1, **kwargs)


def test_cli_bits_and_inspect(tmp_path, capsys):
    m, _ = _model(128, 16, 21)
    src, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    save_model(m, src)
    assert main(["quantize", str(src), str(out), "--bits", "2", "--min-elements", "1", "--group-size", "64"]) == 0
    q = onnx.load(out)
    assert {o.domain: o.version for o in q.opset_import}[""] == 25
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "int2" in listing and "DequantizeLinear" in listing
    assert main(["quantize", str(src), str(tmp_path / "r.onnx"), "--bits", "3"]) != 0
    assert "invalid choice: 3" in capsys.readouterr().err
