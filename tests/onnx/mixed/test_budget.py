"""Spec 21.2 and 21.4: the sensitivity table and the model quantizer under a size budget."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize
from monoquant_np.cli import main
from monoquant_np.onnx.mixed.budget import check_budget
from monoquant_np.onnx.mixed.candidates import Candidate, default_candidates, parse_candidate, quantize_candidate
from monoquant_np.onnx.mixed.metadata import read_formats
from monoquant_np.onnx.mixed.sensitivity import proxy_error
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.runtime import make_session

K, H, N = 64, 256, 64


def _toy():
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((K, H)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((H, N)) * 0.1).astype(np.float32)
    w2[:8] *= 20  # a few large rows: weight 2 is the sensitive one
    w3 = (rng.standard_normal((N, N)) * 0.1).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["z"], name="mm2"),
             helper.make_node("MatMul", ["z", "w3"], ["y"], name="mm3")]
    inits = [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))]
    m = helper.make_model(helper.make_graph(nodes, "toy", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m, {"w1": w1, "w2": w2, "w3": w3}


def _feeds(b=64):
    rng = np.random.default_rng(1)
    return {"x": (rng.standard_normal((b, K)) * np.exp(rng.normal(0, 1, K))).astype(np.float32)}


def test_proxy_error_hand_values():
    w = np.array([[1.0, 0.0], [0.0, 2.0]])
    w_hat = np.array([[0.5, 0.0], [0.0, 2.0]])
    assert proxy_error(w, w_hat, None, 0) == pytest.approx(0.25 / 5)
    h = np.diag([4.0, 1.0])  # tr(D^T H D) = 4 * 0.25; tr(W^T H W) = 4 + 4
    assert proxy_error(w, w_hat, h, 0) == pytest.approx(1.0 / 8)
    assert proxy_error(w.T, w_hat.T, h, 1) == pytest.approx(1.0 / 8)


def test_candidates_cost_and_labels():
    w = np.random.default_rng(2).standard_normal((128, 32)).astype(np.float32)
    assert quantize_candidate(w, 0, Candidate("float")) is None
    q8 = quantize_candidate(w, 0, Candidate("int8"))
    assert q8.scheme == "int8" and q8.block_size == 128
    q4 = quantize_candidate(w, 0, Candidate("int4", 32))
    assert q4.scheme == "int4" and q4.block_size == 32
    assert [parse_candidate(c.label) for c in default_candidates("gptq")] == default_candidates("gptq")
    assert "nf4 g64" not in [c.label for c in default_candidates("gptq")]
    with pytest.raises(ValueError, match="candidate"):
        parse_candidate("int4 64")


@pytest.mark.parametrize(("kw", "exc", "msg"), [
    ({"size_budget": "8MB", "max_error": 1.0}, ValueError, "one of"),
    ({"bits_per_weight": 0}, ValueError, "bits_per_weight"),
    ({"bits_per_weight": "4"}, TypeError, "bits_per_weight"),
    ({"max_error": float("nan")}, ValueError, "max_error"),
    ({"size_budget": "lots"}, ValueError, "size_budget"),
])
def test_budget_options_are_checked(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        check_budget(**kw)


def _row_label(r):
    return "int8" if r.scheme == "int8" else f"{r.scheme} g{r.group_size}"


@pytest.mark.parametrize("algorithm", ["rtn", "gptq"])
def test_bits_per_weight_budget_is_met_and_stated(algorithm):
    model, ws = _toy()
    feeds = _feeds()
    q, rep = quantize_model_with_report(model, bits_per_weight=5.0, algorithm=algorithm, calibration=feeds)
    chosen = rep.mixed["chosen"]
    assert read_formats(q) == chosen
    total = sum(w.size for w in ws.values())
    float_rows = {n for n, label in chosen.items() if label == "float"}
    assert {n for n, _ in rep.skipped} == float_rows
    used = sum(r.bytes_after for r in rep.rows) + 4 * sum(ws[n].size for n in float_rows)
    assert used <= 5.0 * total / 8
    assert rep.mixed["predicted_bytes"] == used  # the table's bytes are the report's bytes
    for r in rep.rows:  # every quantized weight is in its chosen format, also under GPTQ
        assert _row_label(r) == chosen[r.name]
    assert len(set(chosen.values())) > 1  # a budget between formats mixes them
    y = make_session(q, 1).run(None, feeds)[0]
    y_ref = make_session(model, 1).run(None, feeds)[0]
    if algorithm == "rtn":  # the graph computes with the chosen candidates' weights, better than int4 g32 (5 bits)
        uniform = quantize_model_with_report(model, group_size=32)[0]
        y_uni = make_session(uniform, 1).run(None, feeds)[0]
        assert np.linalg.norm(y - y_ref) < np.linalg.norm(y_uni - y_ref)
        w_hat = {n: ws[n] if label == "float" else dequantize(quantize_candidate(ws[n], 0, parse_candidate(label)))
                 for n, label in chosen.items()}
        x = feeds["x"].astype(np.float64)
        y_np = (np.maximum(x @ w_hat["w1"], 0) @ w_hat["w2"]) @ w_hat["w3"]
        np.testing.assert_allclose(y, y_np, rtol=1e-4, atol=1e-3 * np.abs(y_np).max())


def test_a_larger_budget_never_predicts_more_error():
    model, _ = _toy()
    feeds = _feeds()
    errs = [quantize_model_with_report(model, bits_per_weight=b, calibration=feeds)[1].mixed["predicted_error"]
            for b in (4.5, 6.0, 9.0)]
    assert errs[0] >= errs[1] >= errs[2]


def test_rtn_weights_equal_their_candidate():
    model, ws = _toy()
    q, rep = quantize_model_with_report(model, bits_per_weight=6.0)
    sess_w = {r.name: r for r in rep.rows}
    for name, label in rep.mixed["chosen"].items():
        if label == "float":
            continue
        qt = quantize_candidate(ws[name], 0, parse_candidate(label))
        assert sess_w[name].rel_err == pytest.approx(
            float(np.linalg.norm(ws[name] - dequantize(qt)) / np.linalg.norm(ws[name])), rel=1e-5)


def test_max_error_gives_the_smallest_model_below_it():
    model, _ = _toy()
    _, loose = quantize_model_with_report(model, max_error=1.0)
    _, tight = quantize_model_with_report(model, max_error=1e-4)
    assert loose.mixed["predicted_error"] <= 1.0 and tight.mixed["predicted_error"] <= 1e-4
    assert loose.mixed["predicted_bytes"] < tight.mixed["predicted_bytes"]


def test_cli_size_budget_inspect_and_html(tmp_path, capsys):
    model, _ = _toy()
    src, dst, rep = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "r.json"
    onnx.save(model, src)
    float_bytes = src.stat().st_size
    budget = int(float_bytes * 0.3)
    assert main(["quantize", str(src), str(dst), "--size-budget", str(budget), "--report", str(rep)]) == 0
    assert dst.stat().st_size <= budget
    data = json.loads(rep.read_text())
    assert set(data["mixed"]["chosen"]) == {"w1", "w2", "w3"}
    capsys.readouterr()
    assert main(["inspect", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "formats chosen by the budget" in out
    for n, label in data["mixed"]["chosen"].items():
        assert f"  {n}: {label}" in out
    html = tmp_path / "r.html"
    assert main(["report", str(rep), "--html", str(html)]) == 0
    direct = tmp_path / "direct.html"  # --report NAME.html writes the page itself
    args = ["quantize", str(src), str(tmp_path / "y.onnx"), "--bits-per-weight", "5", "--report", str(direct)]
    assert main(args) == 0
    assert direct.read_text().startswith("<!DOCTYPE html>") and "weights-chart" in direct.read_text()
    assert html.read_text().count('class="bar"') == len(data["layers"])
    assert main(["quantize", str(src), str(tmp_path / "x.onnx"), "--size-budget", "1KB"]) == 2
    assert "size_budget" in capsys.readouterr().err
    assert main(["quantize", str(src), str(tmp_path / "x.onnx"), "--size-budget", "8MB", "--max-error", "1"]) == 2
    assert main(["report", str(src), "--html", str(html)]) == 2
    assert "not a JSON report" in capsys.readouterr().err


@pytest.mark.parametrize(("bpw", "label", "opset"), [(2.6, "uint2 g64", 25), (8.2, "int8", 21)])
def test_exported_as_given_formats_on_a_transposed_gemm(bpw, label, opset):
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((64, 256)) * 0.1).astype(np.float32)  # Gemm B (N, K), transB=1
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g", [x], [y],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    q, rep = quantize_model_with_report(m, bits_per_weight=bpw)
    assert rep.mixed["chosen"] == {"w": label}
    assert next(o.version for o in q.opset_import if o.domain == "") == opset  # 2 bits: INT2 needs opset 25
    feeds = {"x": rng.standard_normal((4, 256)).astype(np.float32)}
    w_hat = dequantize(quantize_candidate(w, 1, parse_candidate(label)))  # grouped along K of the stored (N, K)
    np.testing.assert_allclose(make_session(q, 1).run(None, feeds)[0], feeds["x"] @ w_hat.T, rtol=1e-4, atol=1e-4)
