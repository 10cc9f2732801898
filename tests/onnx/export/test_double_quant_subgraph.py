"""Tests of monoquant_np.onnx.export.double_quant_subgraph (spec 11.4); bit-exactness in onnxruntime is
shown by tests/onnx/export/test_nf4_subgraph.py over hypothesis-drawn tensors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from monoquant_np import double_quantize, quantize, quantize_nf4  # noqa: E402
from monoquant_np.dequantize import dequantize_slice  # noqa: E402
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET  # noqa: E402
from monoquant_np.onnx.export.double_quant_subgraph import (  # noqa: E402
    SCALE_REBUILDS,
    double_quant_weight_subgraph,
    rebuilt_scale_subgraph,
)
from monoquant_np.onnx.export.initializers import weight_initializers  # noqa: E402


def _evaluate(inits, nodes, out: str, shape) -> np.ndarray:
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return ReferenceEvaluator(model).run(None, {})[0]


@pytest.mark.parametrize("mode, ops", [
    ("dequantizelinear", ["Reshape", "DequantizeLinear", "Add", "Reshape"]),
    ("arithmetic", ["Reshape", "Cast", "Reshape", "Expand", "Reshape", "Slice", "Mul", "Add", "Reshape"]),
])
def test_rebuilt_scale_equals_rebuild(mode, ops):
    w = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    qt = double_quantize(quantize(w, group_size=16), block_size=5, w=w)  # 4 x 3 scales in blocks of 5
    inits, nodes = rebuilt_scale_subgraph(qt, "w", mode)
    assert [n.op_type for n in nodes] == ops
    got = _evaluate(weight_initializers(qt, "w") + inits, nodes, "w_scale_rebuilt", [4, 3])
    np.testing.assert_array_equal(got, qt.double_quant.rebuild())


def test_one_second_level_block_is_dequantized_per_tensor():
    w = np.random.default_rng(1).standard_normal((64, 2)).astype(np.float32)
    qt = double_quantize(quantize(w, group_size=32), block_size=256, w=w)  # 4 scales, one block
    _, nodes = rebuilt_scale_subgraph(qt, "w", "dequantizelinear")
    dq = next(n for n in nodes if n.op_type == "DequantizeLinear")
    assert list(dq.attribute) == []  # onnxruntime rejects block_size with a one-element scale


def test_weight_subgraph_of_linear_codes():
    w = np.random.default_rng(2).standard_normal((40, 3)).astype(np.float32)
    qt = double_quantize(quantize(w, group_size=16, symmetric=False), block_size=4, w=w)
    for mode in SCALE_REBUILDS:
        inits, nodes = double_quant_weight_subgraph(qt, "w", "out", scale_rebuild=mode)
        assert nodes[-1].op_type == "DequantizeLinear" and list(nodes[-1].input) == [
            "w", "w_scale_rebuilt", "w_zero_point"]
        np.testing.assert_array_equal(_evaluate(inits, nodes, "out", [40, 3]), dequantize_slice(qt, 0, 40))


def test_errors_name_the_argument():
    w = np.random.default_rng(3).standard_normal((32, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="must have double-quantized scales"):
        rebuilt_scale_subgraph(quantize(w, group_size=16), "w", "arithmetic")
    with pytest.raises(ValueError, match="scale_rebuild must be one of"):
        rebuilt_scale_subgraph(double_quantize(quantize(w, group_size=16), w=w), "w", "fold")
    with pytest.raises(ValueError, match="nf4_weight_subgraph"):
        double_quant_weight_subgraph(quantize_nf4(w, double_quant=True), "w", "out", scale_rebuild="arithmetic")
