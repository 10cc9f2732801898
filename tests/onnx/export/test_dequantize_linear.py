"""Tests of monoquant_np.onnx.export.dequantize_linear (spec 9.2-9.3): the one DequantizeLinear and Cast builders."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from monoquant_np import quantize  # noqa: E402
from monoquant_np.dequantize import dequantize_slice  # noqa: E402
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET  # noqa: E402
from monoquant_np.onnx.export.dequantize_linear import (  # noqa: E402
    cast_node,
    dequantize_attrs,
    dequantize_linear_node,
    float32_scale,
    weight_dequantize_node,
)
from monoquant_np.onnx.export.initializers import weight_initializers  # noqa: E402


def _run(nodes, inits, out: str, shape):
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return ReferenceEvaluator(model).run(None, {})[0]


def test_attrs_of_the_three_layouts():
    assert dequantize_attrs(2, 0, 16, 3) == {"axis": 0, "block_size": 16}  # blocked
    assert dequantize_attrs(3, 2, 4, 2) == {"axis": 2, "block_size": 4}
    assert dequantize_attrs(2, 0, 128, 1, per_axis=True) == {"axis": 1}  # the int8 fallback's (N,) scale
    assert dequantize_attrs(1, 0, 7, 1) == {}  # one group of a 1-D tensor: per tensor
    assert dequantize_attrs(1, 0, 4, 2) == {"axis": 0, "block_size": 4}


def test_golden_node():
    # spec 9.1's example: int4 codes [[2,-7],[7,1],[-1,2],[7,-7]], scales [[0.25, 0.25], [0.25, 0.5]].
    codes = numpy_helper.from_array(np.array([[2, -7], [7, 1], [-1, 2], [7, -7]], np.int8), "q")
    scale = numpy_helper.from_array(np.array([[0.25, 0.25], [0.25, 0.5]], np.float32), "s")
    node = dequantize_linear_node("q", "s", "w", "w_dq", {"block_size": 2, "axis": 0})
    assert node.op_type == "DequantizeLinear" and list(node.input) == ["q", "s"] and node.name == "w_dq"
    assert [(a.name, a.i) for a in node.attribute] == [("axis", 0), ("block_size", 2)]  # sorted, as make_node
    want = [[0.5, -1.75], [1.75, 0.25], [-0.25, 1.0], [1.75, -3.5]]
    assert _run([node], [codes, scale], "w", [4, 2]).tolist() == want


@pytest.mark.parametrize("shape, axis, group, symmetric", [
    ((10, 3), 0, 4, True), ((10, 3), 0, 4, False), ((8, 3), 0, 128, True), ((8, 3), 0, 128, False),
    ((7,), 0, 16, True), ((2, 5, 3), 1, 2, False),
])
def test_weight_node_equals_dequantize(shape, axis, group, symmetric):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    qt = quantize(w, group_size=group, axis=axis, symmetric=symmetric)
    node = weight_dequantize_node(qt, "w", "w_scale", "out")
    assert list(node.input) == ["w", "w_scale"] + (["w_zero_point"] if qt.zero_point is not None else [])
    got = _run([node], weight_initializers(qt, "w"), "out", list(shape))
    np.testing.assert_array_equal(got, dequantize_slice(qt, 0, shape[0]))


def test_float16_scale_is_widened_by_a_cast_of_the_scale():
    qt = quantize(np.random.default_rng(1).standard_normal((32, 3)).astype(np.float32), group_size=16,
                  scale_dtype=np.float16)
    scale, nodes = float32_scale(qt, "w")
    assert scale == "w_scale_f32" and [(n.op_type, n.input[0], n.name) for n in nodes] == [
        ("Cast", "w_scale", "w_scale_cast")]
    got = _run(nodes + [weight_dequantize_node(qt, "w", scale, "out")], weight_initializers(qt, "w"), "out", [32, 3])
    np.testing.assert_array_equal(got, dequantize_slice(qt, 0, 32))
    assert float32_scale(quantize(np.ones((32, 3), np.float32), group_size=16), "w") == ("w_scale", [])


@pytest.mark.parametrize("dtype, to", [("float16", TensorProto.FLOAT16), (np.float32, TensorProto.FLOAT),
                                       ("int32", TensorProto.INT32)])
def test_cast_node(dtype, to):
    node = cast_node("a", "b", dtype, "c")
    assert (node.op_type, list(node.input), list(node.output), node.name) == ("Cast", ["a"], ["b"], "c")
    assert [(a.name, a.i) for a in node.attribute] == [("to", to)]
