"""Export targets (spec 16.4): each target's output runs in its runtime and equals the spec within float32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize, quantize
from monoquant_np.cli import main
from monoquant_np.matmul import dequant_matmul
from monoquant_np.nf4 import quantize_nf4
from monoquant_np.onnx import linear_model, mlp_model
from monoquant_np.onnx.export.targets import target_options, uses_matmulnbits, weight_form
from monoquant_np.onnx.options import TARGETS
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.requantize import double_quantize
from monoquant_np.testing import float32_bound
from monoquant_np.testing.runtimes import RUNTIMES, run_model

RNG = np.random.default_rng(11)
W = RNG.standard_normal((53, 40)).astype(np.float32)
#: runtime -> the targets whose output it must run exactly
RUN_BY = {"onnxruntime": ("onnxruntime", "portable"), "onnx-reference": ("portable",),
          "openvino": ("openvino", "portable"), "tract": ("tract", "portable")}
LAYERS = {
    "int4 g16 partial": quantize(W, group_size=16),
    "uint4 g24 partial f16": quantize(W, group_size=24, symmetric=False, scale_dtype=np.float16),
    "int4 g32 whole": quantize(W[:32], group_size=32),
    "uint4 g16 axis1 partial": quantize(W[:, :37], group_size=16, axis=1, symmetric=False),
    "int8 fallback": quantize(W[:8], group_size=16),
    "nf4 g16 partial": quantize_nf4(W, block_size=16),
    "int4 double quant": double_quantize(quantize(W, group_size=16), block_size=2),
}


def _need(runtime):
    rt = RUNTIMES[runtime]
    if not rt.installed:
        pytest.skip(f"{rt.package} is not installed (pip install '.[runtimes]')")


def _check(runtime, model, x, want, w):
    out = run_model(runtime, model, {"x": x})
    assert out.ok, out.summary()
    diff = np.abs(out.outputs[0].astype(np.float64) - want)
    assert (diff <= float32_bound(x, w)).all(), f"{runtime}: max |diff| {diff.max():.3g}"


@pytest.mark.parametrize("runtime", RUN_BY)
@pytest.mark.parametrize("layer", LAYERS)
def test_each_target_runs_exactly_in_its_runtime(runtime, layer):
    _need(runtime)
    qt = LAYERS[layer]
    x = RNG.standard_normal((3, qt.shape[0])).astype(np.float32)
    for target in RUN_BY[runtime]:
        _check(runtime, linear_model(qt, target=target), x, dequant_matmul(x, qt).astype(np.float64), dequantize(qt))


def test_partial_last_block_runs_in_openvino_only_with_its_target():
    _need("openvino")
    qt = LAYERS["int4 g16 partial"]  # 53 = 16 * 3 + 5
    x = RNG.standard_normal((2, 53)).astype(np.float32)
    plain = run_model("openvino", linear_model(qt), {"x": x})
    assert plain.status == "load error" and "cannot be divided by block_size (16)" in plain.message
    model = linear_model(qt, target="openvino")
    assert [t.dims for t in model.graph.initializer if t.name == "fc0_w"] == [[64, 40]]  # padded to whole blocks
    assert {t.data_type for t in model.graph.initializer if t.name == "fc0_w"} == {TensorProto.INT4}
    _check("openvino", model, x, dequant_matmul(x, qt).astype(np.float64), dequantize(qt))


def test_weight_forms_and_matmulnbits_choice():
    forms = {name: [weight_form(qt, t) for t in TARGETS] for name, qt in LAYERS.items()}
    assert forms["int4 g32 whole"] == ["dequantizelinear", "dequantizelinear", "arithmetic-nibbles",
                                        "arithmetic-bytes"]
    assert forms["int4 g16 partial"] == ["dequantizelinear", "arithmetic-int4", "arithmetic-nibbles",
                                           "arithmetic-bytes"]
    assert forms["uint4 g16 axis1 partial"][1] == "arithmetic-int4"
    assert forms["int8 fallback"] == ["dequantizelinear"] * 4
    assert forms["nf4 g16 partial"][:2] == ["dequantizelinear"] * 2
    assert forms["int4 double quant"][1:] == ["arithmetic-int4", "arithmetic-nibbles", "arithmetic-bytes"]
    assert weight_form(double_quantize(LAYERS["int8 fallback"], block_size=2), "portable") == "arithmetic-bytes"
    g32 = LAYERS["int4 g32 whole"]
    assert [uses_matmulnbits(g32, t, "qdq") for t in TARGETS] == [False, False, False, False]  # tract: f16 scales
    g32h = quantize(W[:32], group_size=32, scale_dtype=np.float16)
    assert [uses_matmulnbits(g32h, t, "matmulnbits") for t in TARGETS] == [True, True, True, False]
    assert uses_matmulnbits(LAYERS["int4 g16 partial"], "tract", "qdq")
    assert not uses_matmulnbits(LAYERS["nf4 g16 partial"], "tract", "qdq")


def test_target_options():
    assert target_options("onnxruntime", "qdq", "GatherBlockQuantized") == ("qdq", "GatherBlockQuantized")
    assert target_options("tract", "qdq", "GatherBlockQuantized") == ("matmulnbits", "DequantizeLinear")
    assert target_options("openvino", "matmulnbits", "GatherBlockQuantized") == ("matmulnbits", "DequantizeLinear")
    with pytest.raises(ValueError, match="target='portable' writes standard ONNX operators only"):
        target_options("portable", "matmulnbits", "DequantizeLinear")
    with pytest.raises(ValueError, match="target must be one of 'onnxruntime', 'openvino', 'tract', 'portable'"):
        linear_model(LAYERS["int4 g16 partial"], target="tensorrt")


def test_default_target_is_todays_export():
    qt = LAYERS["uint4 g24 partial f16"]
    assert linear_model(qt).SerializeToString() == linear_model(qt, target="onnxruntime").SerializeToString()


def test_portable_mlp_is_standard_onnx_without_4bit_tensors():
    layers = [(quantize(W[:, :24], group_size=16), None), (quantize_nf4(RNG.standard_normal((24, 5)).astype(
        np.float32), block_size=16), np.ones(5, np.float32))]
    model = mlp_model(layers, "relu", target="portable")
    onnx.checker.check_model(model, full_check=True)
    assert {n.domain for n in model.graph.node} == {""}
    assert not {TensorProto.INT4, TensorProto.UINT4} & {t.data_type for t in model.graph.initializer}


def _float_model(path):
    """x (batch, 40) -> MatMul(W 40x48) -> y; ids (batch, 3) -> Gather(table 30x32) -> e."""
    w = RNG.standard_normal((40, 48)).astype(np.float32)
    table = RNG.standard_normal((30, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Gather", ["table", "ids"], ["e"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 40]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 48]),
         helper.make_tensor_value_info("e", TensorProto.FLOAT, ["b", 3, 32])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.parametrize("target", ["openvino", "tract", "portable"])
def test_quantize_model_and_cli_targets(tmp_path, capsys, target):
    runtime = "onnx-reference" if target == "portable" else target
    _need(runtime)
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _float_model(src)
    qts = {}

    def record(ctx):  # the spec's RTN, kept to compute the expected outputs
        qts[ctx.name] = quantize(ctx.w, group_size=16, axis=ctx.axis, symmetric=False)
        return qts[ctx.name]

    model, report = quantize_model_with_report(src, group_size=16, symmetric=False, ops="MatMul,Gather",
                                               min_elements=0, algorithm=record, target=target)
    assert report.options["target"] == target
    served = {"openvino": ["arithmetic-int4"] * 2, "tract": ["MatMulNBits", "arithmetic-nibbles"],
              "portable": ["arithmetic-bytes"] * 2}[target]  # K = 40: a partial block; the table: axis 1
    assert [r.served_as for r in report.rows] == served
    x = RNG.standard_normal((2, 40)).astype(np.float32)
    ids = np.array([[0, 29, 3], [7, 7, 1]], np.int64)
    got = run_model(runtime, model, {"x": x, "ids": ids})
    assert got.ok, got.summary()
    w = dequantize(qts["W"])
    assert (np.abs(got.outputs[0] - dequant_matmul(x, qts["W"])) <= float32_bound(x, w)).all()
    assert np.array_equal(got.outputs[1], dequantize(qts["table"])[ids])
    assert main(["quantize", str(src), str(out), "--group-size", "16", "--ops", "MatMul,Gather",
                 "--min-elements", "0", "--asymmetric", "--target", target]) == 0
    capsys.readouterr()
    assert run_model(runtime, out, {"x": x, "ids": ids}).ok


def test_cli_target_conflict_is_one_line(tmp_path, capsys):
    src = tmp_path / "f.onnx"
    _float_model(src)
    code = main(["quantize", str(src), str(tmp_path / "q.onnx"), "--target", "portable", "--format", "matmulnbits"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "target='portable' writes standard ONNX operators only" in err
