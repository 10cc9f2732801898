"""Export of 2- and 8-bit weights (spec 20.8): INT2/UINT2 initializers at opset 25, DequantizeLinear and
MatMulNBits(bits=2|8) run in onnxruntime 1.32 equal to the spec within float32 rounding, and which forms
onnxruntime fuses, measured on its optimized graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from onnx import TensorProto, helper

from monoquant_np import dequantize, quantize
from monoquant_np.formats import matmulnbits_pack, matmulnbits_unpack
from monoquant_np.onnx.export.initializers import opset_for, tensor_from_onnx, tensor_to_onnx
from monoquant_np.onnx.export.models import linear_model
from monoquant_np.onnx.export.qdq import weight_subgraph
from monoquant_np.onnx.export.targets import int2_misfused, uses_matmulnbits
from monoquant_np.onnx.runtime import fused_op_types, make_session
from monoquant_np.testing.strategies import cases

f32 = np.float32


def within_float32(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> bool:
    """``|y - x @ w| <= 4e-6 sqrt(K) (|x| @ |w|)``: float32 rounding of a K-long dot product."""
    bound = 4e-6 * np.sqrt(x.shape[1]) * (np.abs(x) @ np.abs(w)) + 1e-30
    return bool((np.abs(y - x.astype(np.float64) @ w.astype(np.float64)) <= bound).all())


def test_int2_initializers_hold_the_spec_bytes_and_round_trip():
    w = np.array([[0.5, -1.0, 0.25, 0.75], [1.0, 0.0, -0.5, 0.25]], f32).T  # (4, 2)
    for sym, wtype, ztype in ((True, TensorProto.INT2, None), (False, TensorProto.UINT2, TensorProto.UINT2)):
        qt = quantize(w, bits=2, group_size=4, symmetric=sym, int8_fallback=False)
        ts = tensor_to_onnx(qt, "w")
        assert ts[0].data_type == wtype and ts[0].raw_data == qt.data.tobytes()
        assert ztype is None or ts[2].data_type == ztype
        assert tensor_from_onnx(ts).equals(qt)
        assert onnx.numpy_helper.to_array(ts[0]).reshape(-1).tolist() == qt.codes().reshape(-1).tolist()
    assert opset_for([qt]) == 25 and opset_for([quantize(w, bits=8, group_size=4)]) == 21


@pytest.mark.parametrize("bits", [2, 8])
def test_matmulnbits_pack_round_trips(bits):
    w = np.random.default_rng(bits).standard_normal((100, 7)).astype(f32)
    for sym in (True, False):
        qt = quantize(w, bits=bits, group_size=32, symmetric=sym, int8_fallback=False)
        b, s, z = matmulnbits_pack(qt)
        assert b.shape == (7, 4, 32 * bits // 8)
        assert z is None or z.shape == (7, -(-4 * bits // 8))
        back = matmulnbits_unpack(b, s, z, k=100, bits=bits)
        assert np.array_equal(dequantize(back), dequantize(qt))


def test_matmulnbits_2bit_bytes_by_hand():
    # column 0 of a (16, 1) int2 weight: codes 1, -1, 0, 0, ... stored as code + 2 = 3, 1, 2, 2, ...
    w = np.zeros((16, 1), f32)
    w[0, 0], w[1, 0] = 1.0, -1.0
    b, s, z = matmulnbits_pack(quantize(w, bits=2, group_size=16))
    assert b.reshape(-1).tolist() == [0b10_10_01_11, 0xAA, 0xAA, 0xAA] and s.tolist() == [[1.0]] and z is None


@settings(max_examples=12)
@given(case=cases(ndims=(2,), axes_=(0,), group_sizes_=(16, 32, 24), schemes_=("int2", "uint2", "int8", "uint8"),
                  scale_dtypes_=(np.float32,), kinds=("normal", "zeros", "spike"), min_side=4, max_side=70))
def test_onnxruntime_equals_the_spec(case):
    qt = quantize(case.w, bits=case.bits, group_size=case.group_size, symmetric=case.symmetric,
                  int8_fallback=False)
    back = dequantize(qt)
    x = np.random.default_rng(7).standard_normal((3, qt.shape[0])).astype(f32)
    for fmt in ("qdq", "matmulnbits"):
        m = linear_model(qt, format=fmt)
        onnx.checker.check_model(m, full_check=True)
        two_bit = any(t.data_type in (TensorProto.INT2, TensorProto.UINT2) for t in m.graph.initializer)
        assert two_bit == (qt.bits == 2 and not uses_matmulnbits(qt, "onnxruntime", fmt))
        assert m.opset_import[0].version == (25 if two_bit else 21)
        for off in (False, True):
            (y,) = make_session(m, 1, disable_optimizations=off).run(None, {"x": x})
            assert within_float32(y, x, back), (case.describe(), fmt, off)


@pytest.mark.parametrize("bits,g,n,fused", [
    (2, 32, 48, True), (2, 24, 48, False), (8, 32, 48, True), (8, 24, 48, False), (4, 32, 48, True)])
def test_which_forms_onnxruntime_fuses(bits, g, n, fused):
    qt = quantize(np.random.default_rng(0).standard_normal((96, n)).astype(f32), bits=bits, group_size=g)
    ops = fused_op_types(linear_model(qt))
    assert ops == ({"MatMulNBits": 1} if fused else {"DequantizeLinear": 1, "MatMul": 1})


def test_onnxruntime_misfuses_int2_when_n_is_not_a_multiple_of_4():
    """The reason for :func:`int2_misfused` (spec 20.8): the fused DequantizeLinear(INT2) -> MatMul is wrong
    for N % 4 != 0 while the same graph unfused is exact; the exporter writes MatMulNBits there instead."""
    w = np.random.default_rng(3).standard_normal((64, 6)).astype(f32)
    qt = quantize(w, bits=2, group_size=32)
    x = np.random.default_rng(4).standard_normal((3, 64)).astype(f32)
    exported = linear_model(qt)
    assert int2_misfused(qt) and [n.op_type for n in exported.graph.node] == ["MatMulNBits"]  # the workaround
    assert within_float32(make_session(exported, 1).run(None, {"x": x})[0], x, dequantize(qt))
    inits, nodes = weight_subgraph(qt, "w", "w_dq")  # DequantizeLinear(INT2) -> MatMul, written by hand
    graph = helper.make_graph(nodes + [helper.make_node("MatMul", ["x", "w_dq"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 6])], inits)
    qdq = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)], ir_version=13)
    assert within_float32(make_session(qdq, 1, disable_optimizations=True).run(None, {"x": x})[0], x, dequantize(qt))
    fused = make_session(qdq, 1).run(None, {"x": x})[0]
    assert not within_float32(fused, x, dequantize(qt))  # onnxruntime 1.32's fusion: fails once it is fixed
