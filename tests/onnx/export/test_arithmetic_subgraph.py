"""The Cast/Mul weight form on whole blocks (spec 16.4): bit for bit ``dequantize``, any scheme, axis, padding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from monoquant_np import dequantize, quantize
from monoquant_np.nf4 import quantize_nf4
from monoquant_np.onnx.export.arithmetic_subgraph import (
    CODE_STORAGES,
    arithmetic_weight_subgraph,
    padded_codes,
    padded_shape,
)
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET
from monoquant_np.onnx.runtime import make_session
from monoquant_np.requantize import double_quantize

RNG = np.random.default_rng(7)
W = RNG.standard_normal((37, 21)).astype(np.float32)


def _weight_model(qt, codes):
    inits, nodes = arithmetic_weight_subgraph(qt, "w", "w_out", codes=codes)
    out = helper.make_tensor_value_info("w_out", TensorProto.FLOAT, list(qt.shape))
    model = helper.make_model(helper.make_graph(nodes, "g", [], [out], inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


QTS = {
    "int4 partial axis0": quantize(W, group_size=16),
    "uint4 partial axis0 f16": quantize(W, group_size=16, symmetric=False, scale_dtype=np.float16),
    "int4 g24 partial axis1": quantize(W, group_size=8, axis=1),
    "uint4 whole axis1": quantize(W[:, :16], group_size=8, axis=1, symmetric=False),
    "int8 fallback": quantize(W[:8], group_size=16),
    "uint8 fallback": quantize(W[:8], group_size=16, symmetric=False),
    "nf4 partial": quantize_nf4(W, block_size=16),
    "nf4 double quant": quantize_nf4(W, block_size=8, double_quant=True, dq_block_size=4),
    "int4 double quant": double_quantize(quantize(W, group_size=16), block_size=3),
}


@pytest.mark.parametrize("codes", CODE_STORAGES)
@pytest.mark.parametrize("name", QTS)
def test_bit_exact_in_onnxruntime_and_the_reference(name, codes):
    from onnx.reference import ReferenceEvaluator

    qt = QTS[name]
    model = _weight_model(qt, codes)
    want = dequantize(qt)
    for got in (make_session(model).run(None, {})[0], ReferenceEvaluator(model).run(None, {})[0]):
        assert got.dtype == np.float32 and got.shape == qt.shape
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit, signed zeros included
    ops = {n.op_type for n in model.graph.node}
    assert {n.domain for n in model.graph.node} == {""} and "DequantizeLinear" not in ops
    assert any(n.name == "w_unpad" for n in model.graph.node) == (padded_shape(qt) != qt.shape)
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    small = {TensorProto.INT4, TensorProto.UINT4}
    assert (kinds["w"] in small) == (codes == "int4" and qt.bits == 4)
    assert ("BitShift" in ops) == (codes == "nibbles" and qt.bits == 4)
    stored = next(t for t in model.graph.initializer if t.name == "w")
    if codes == "nibbles" and qt.bits == 4:  # two codes per byte: the 4-bit size
        assert stored.data_type == TensorProto.UINT8 and len(stored.raw_data) == -(-np.prod(padded_shape(qt)) // 2)


def test_padding_holds_each_blocks_zero_code():
    qt = quantize(np.array([[0.5, 1.0], [4.0, -2.0], [3.0, 9.0]], np.float32), group_size=2, symmetric=False)
    p = padded_codes(qt)  # (4, 2): row 3 added
    assert p.shape == (4, 2) and p.dtype == np.uint8
    assert np.array_equal(p[:3], qt.codes()) and np.array_equal(p[3], qt.zero_point[1])
    nf = quantize_nf4(np.arange(1.0, 6.0, dtype=np.float32), block_size=4)
    assert padded_codes(nf).tolist()[5:] == [7, 7, 7]  # NF4 code 7 is 0.0
    assert padded_shape(nf) == (8,)
    full = quantize(W[:32], group_size=16)
    assert np.array_equal(padded_codes(full), full.codes())


def test_padded_elements_dequantize_to_zero():
    """Spec 16.4: the padding never changes a dequantized value, and itself dequantizes to 0."""
    qt = quantize(W, group_size=16, symmetric=False)
    inits, nodes = arithmetic_weight_subgraph(qt, "w", "w_out")
    nodes = [n for n in nodes if n.op_type != "Slice"]
    nodes[-1].output[0] = "w_out"
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("w_out", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    got = make_session(model).run(None, {})[0]  # (48, 21)
    assert got.shape == (48, 21)
    assert np.array_equal(got[:37], dequantize(qt)) and not got[37:].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="codes must be one of"):
        arithmetic_weight_subgraph(QTS["int4 partial axis0"], "w", "y", codes="int2")
    with pytest.raises(TypeError):
        arithmetic_weight_subgraph(W, "w", "y")
