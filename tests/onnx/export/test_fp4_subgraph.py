"""Spec 19.7: the FP4 exports, both forms, against the ONNX reference evaluator and onnxruntime.

The standard form (``DequantizeLinear`` of ``FLOAT4E2M1`` with ``FLOAT8E8M0`` or
``FLOAT8E4M3FN`` + float scales) must give ``dequantize(qt)`` bit for bit in the
ONNX reference evaluator; the lookup form (``UINT4`` codes, ``Gather`` of the 16
E2M1 values) must do the same in onnxruntime's CPU provider, optimized or not.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from monoquant_np import E2M1_VALUES, dequantize, quantize_mxfp4, quantize_nf4, quantize_nvfp4
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET
from monoquant_np.onnx.export.fp4_subgraph import fp4_initializers, fp4_linear_model, fp4_weight_model
from monoquant_np.onnx.export.qdq import weight_subgraph
from monoquant_np.testing.fp4_strategies import fp4_cases

QUANTIZE = {"mxfp4": quantize_mxfp4, "nvfp4": quantize_nvfp4}


def _bits(a: np.ndarray) -> list[int]:
    return np.ascontiguousarray(a, np.float32).view(np.uint32).ravel().tolist()


def _lookup_weight_model(qt) -> onnx.ModelProto:
    inits, nodes = weight_subgraph(qt, "w", "W")
    out = helper.make_tensor_value_info("W", TensorProto.FLOAT, list(qt.shape))
    model = helper.make_model(helper.make_graph(nodes, "lookup", [], [out], inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


@settings(max_examples=30)
@given(fp4_cases(max_side=40))
def test_reference_evaluator_runs_the_standard_form_bit_for_bit(case):
    qt = QUANTIZE[case.scheme](case.w, axis=case.axis, block_size=case.block_size)
    model = fp4_weight_model(qt)
    onnx.checker.check_model(model, full_check=True)
    got = ReferenceEvaluator(model).run(None, {})[0]
    assert got.dtype == np.float32 and _bits(got) == _bits(dequantize(qt)), case.describe()


@settings(max_examples=20)
@given(fp4_cases(max_side=40))
def test_onnxruntime_runs_the_lookup_form_bit_for_bit(case):
    qt = QUANTIZE[case.scheme](case.w, axis=case.axis, block_size=case.block_size)
    data = _lookup_weight_model(qt).SerializeToString()
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        got = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {})[0]
        assert _bits(got) == _bits(dequantize(qt)), case.describe()


@pytest.mark.parametrize("scheme,scale_type", [("mxfp4", TensorProto.FLOAT8E8M0), ("nvfp4", TensorProto.FLOAT8E4M3FN)])
def test_initializers_are_the_stored_bytes(scheme, scale_type):
    w = np.random.default_rng(3).standard_normal((48, 6)).astype(np.float32)
    qt = QUANTIZE[scheme](w)
    inits = {t.name: t for t in fp4_initializers(qt, "w")}
    assert inits["w"].data_type == TensorProto.FLOAT4E2M1 and inits["w"].raw_data == qt.data.tobytes()
    assert inits["w_scale"].data_type == scale_type and inits["w_scale"].raw_data == qt.fp_scales.codes.tobytes()
    # onnx's own FLOAT4E2M1 reader (ml_dtypes float4_e2m1fn) unpacks the same values: nibble order included
    values = numpy_helper.to_array(inits["w"]).astype(np.float32)
    assert _bits(values) == _bits(E2M1_VALUES[qt.codes()])
    if scheme == "nvfp4":
        assert numpy_helper.to_array(inits["w_tensor_scale"]).item() == qt.fp_scales.tensor_scale
    else:
        assert "w_tensor_scale" not in inits


def test_linear_model_in_the_reference_evaluator():
    rng = np.random.default_rng(4)
    qt = quantize_nvfp4(rng.standard_normal((64, 12)).astype(np.float32))
    x = rng.standard_normal((3, 64)).astype(np.float32)
    y = ReferenceEvaluator(fp4_linear_model(qt)).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ dequantize(qt), rtol=1e-5, atol=1e-5)


def test_onnxruntime_has_no_float4_dequantizelinear_yet():
    # onnxruntime 1.32's CPU provider: the reason the lookup form exists (spec 19.7)
    qt = quantize_mxfp4(np.ones((32, 4), np.float32))
    with pytest.raises(Exception, match="DequantizeLinear"):
        ort.InferenceSession(fp4_weight_model(qt).SerializeToString(), providers=["CPUExecutionProvider"])


def test_non_fp4_tensors_are_refused():
    with pytest.raises(ValueError, match="MXFP4 or NVFP4"):
        fp4_weight_model(quantize_nf4(np.ones((64, 2), np.float32)))


def _float_matmul_model(w: np.ndarray) -> onnx.ModelProto:
    k, n = w.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "float",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_target_openvino_writes_the_standard_form(scheme):
    # spec 19.7: target="openvino" (which runs FLOAT4E2M1 exactly) gets the standard form at opset 24
    from monoquant_np.onnx.export.models import linear_model
    from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report

    w = np.random.default_rng(5).standard_normal((64, 8)).astype(np.float32)
    qt = QUANTIZE[scheme](w)
    model = linear_model(qt, target="openvino")
    assert model.opset_import[0].version == 24 and model.ir_version == 12
    assert any(t.data_type == TensorProto.FLOAT4E2M1 for t in model.graph.initializer)
    x = np.random.default_rng(6).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"x": x})[0], x @ dequantize(qt),
                               rtol=1e-5, atol=1e-6)
    quantized, report = quantize_model_with_report(_float_matmul_model(w), scheme=scheme, target="openvino",
                                                   min_elements=1)
    assert quantized.opset_import[0].version == 24 and {r.scheme for r in report.rows} == {scheme}
    onnx.checker.check_model(quantized, full_check=True)
    np.testing.assert_allclose(ReferenceEvaluator(quantized).run(None, {"x": x})[0], x @ dequantize(qt),
                               rtol=1e-5, atol=1e-6)
    # a partial last block keeps the lookup form, at opset 21
    partial = linear_model(QUANTIZE[scheme](w[:40]), target="openvino")
    assert partial.opset_import[0].version == 21
    assert not any(t.data_type == TensorProto.FLOAT4E2M1 for t in partial.graph.initializer)
