"""ONNX export of NF4 and double-quantized weights (spec 10.6, 11.4), run in onnxruntime."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from monoquant_np import NF4_CODEBOOK, dequant_matmul, double_quantize, quantize, quantize_nf4
from monoquant_np.dequantize import dequantize_slice
from monoquant_np.onnx.export.constants import IR_VERSION, OPSET
from monoquant_np.onnx.export.double_quant_subgraph import SCALE_REBUILDS
from monoquant_np.onnx.export.initializers import tensor_from_onnx
from monoquant_np.onnx.export.matmulbnb4_node import bnb4_layout
from monoquant_np.onnx.export.models import nf4_linear_model
from monoquant_np.onnx.export.nf4_subgraph import nf4_weight_subgraph
from monoquant_np.onnx.export.qdq import weight_subgraph
from monoquant_np.onnx.runtime import fused_op_types, make_session, max_relative_error


def weight_model(qt, name="w", rebuild="dequantizelinear"):
    """A model with no input whose output is the weight subgraph's float32 tensor."""
    inits, nodes = nf4_weight_subgraph(qt, name, "out", scale_rebuild=rebuild)
    graph = helper.make_graph(nodes, "weight", [], [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                                                     list(qt.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def run_weight(qt, rebuild="dequantizelinear", **kw):
    model = weight_model(qt, rebuild=rebuild)
    onnx.checker.check_model(model, full_check=True)
    return make_session(model, disable_optimizations=True, intra_op_threads=1, **kw).run(None, {})[0]


def run_linear(model, x):
    return make_session(model, intra_op_threads=1).run(None, {"x": x})[0]


# ------------------------------------------------------------ golden / layout
def test_golden_nf4_graph_spec_10():
    """spec/10-nf4.md example 1 through the exported graph: codes [0, 10, 15, 7], absmax 2."""
    qt = quantize_nf4(np.array([[-2.0], [0.5], [2.0], [0.0]], np.float32), block_size=4)
    inits, nodes = nf4_weight_subgraph(qt, "w", "out")
    by_name = {t.name: t for t in inits}
    assert by_name["w"].data_type == TensorProto.UINT4 and by_name["w"].raw_data == bytes([0xA0, 0x7F])
    assert list(by_name["w_codebook"].dims) == [16]
    assert [n.op_type for n in nodes] == ["Cast", "Gather", "Reshape", "Reshape", "Mul", "Reshape"]
    assert all(n.domain in ("", "ai.onnx") for n in nodes)
    assert run_weight(qt).ravel().tolist() == [-2.0, float(np.float32(2) * qt.codebook[10]), 2.0, 0.0]


def test_bnb4_layout_high_nibble_first():
    # W (K=16, N=2): column 0 holds codes 0..15, column 1 codes 15..0; absmax 1 and 2.
    w = np.stack([NF4_CODEBOOK, 2 * NF4_CODEBOOK[::-1]], axis=1).astype(np.float32)
    qt = quantize_nf4(w, block_size=16)
    assert qt.codes()[:, 0].tolist() == list(range(16)) and qt.codes()[:, 1].tolist() == list(range(15, -1, -1))
    b, absmax = bnb4_layout(qt)
    assert b.tolist() == [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                          0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10]
    assert absmax.tolist() == [1.0, 2.0]


def test_bnb4_refuses_what_it_cannot_express():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="block_size in"):
        bnb4_layout(quantize_nf4(w, block_size=48))
    with pytest.raises(ValueError, match="dividing K=96"):
        bnb4_layout(quantize_nf4(w, block_size=64))
    with pytest.raises(ValueError, match="needs an NF4 tensor"):
        bnb4_layout(quantize(w, group_size=32))
    with pytest.raises(ValueError, match="perm"):
        bnb4_layout(dataclasses.replace(quantize_nf4(w, block_size=32), perm=np.arange(96)[::-1]))
    with pytest.raises(ValueError, match="format must be one of"):
        nf4_linear_model(quantize_nf4(w), format="nbits")
    with pytest.raises(ValueError, match="plain int4"):
        nf4_weight_subgraph(quantize(w, group_size=32), "w", "out")
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        nf4_linear_model(quantize_nf4(w), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="bias"):
        nf4_linear_model(quantize_nf4(w), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="input_name must be a non-empty str"):
        nf4_linear_model(quantize_nf4(w), input_name="")


# --------------------------------------------- the graphs equal the spec
@st.composite
def nf4_cases(draw):
    k = draw(st.integers(1, 160))
    n = draw(st.integers(1, 24))
    block = draw(st.sampled_from([1, 3, 16, 32, 48, 64, 100, 128, 256]))
    dq = draw(st.booleans())
    dq_block = draw(st.sampled_from([1, 2, 5, 64, 256]))
    seed = draw(st.integers(0, 2**31))
    rebuild = draw(st.sampled_from(SCALE_REBUILDS))
    return k, n, block, dq, dq_block, seed, rebuild


@settings(max_examples=40, deadline=None)
@given(nf4_cases())
def test_nf4_gather_graph_equals_spec(case):
    k, n, block, dq, dq_block, seed, rebuild = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[rng.random((k, n)) < 0.05] = 0.0
    qt = quantize_nf4(w, block_size=block, double_quant=dq, dq_block_size=dq_block)
    # the weight, bit for bit
    assert np.array_equal(run_weight(qt, rebuild), dequantize_slice(qt, 0, k)), f"weight differs for {case}"
    # the linear layer, within float32 rounding
    x = rng.standard_normal((3, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    model = nf4_linear_model(qt, bias, scale_rebuild=rebuild)
    onnx.checker.check_model(model, full_check=True)
    err = max_relative_error(run_linear(model, x), dequant_matmul(x, qt, bias))
    assert err < 2e-5, f"onnxruntime vs spec: relative error {err:.2e} for {case}"


@st.composite
def linear_cases(draw):
    k = draw(st.integers(1, 160))
    n = draw(st.integers(1, 24))
    group = draw(st.sampled_from([16, 32, 50, 64, 128]))
    symmetric = draw(st.booleans())
    dq_block = draw(st.sampled_from([1, 3, 64, 256]))
    rebuild = draw(st.sampled_from(SCALE_REBUILDS))
    return k, n, group, symmetric, dq_block, draw(st.integers(0, 2**31)), rebuild


@settings(max_examples=30, deadline=None)
@given(linear_cases())
def test_double_quantized_int4_graph_equals_spec(case):
    k, n, group, symmetric, dq_block, seed, rebuild = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    qt = double_quantize(quantize(w, group_size=group, symmetric=symmetric), block_size=dq_block, w=w)
    assert np.array_equal(run_weight(qt, rebuild), dequantize_slice(qt, 0, k)), f"weight differs for {case}"
    x = rng.standard_normal((2, k)).astype(np.float32)
    model = nf4_linear_model(qt, scale_rebuild=rebuild)
    onnx.checker.check_model(model, full_check=True)
    err = max_relative_error(run_linear(model, x), dequant_matmul(x, qt))
    assert err < 2e-5, f"onnxruntime vs spec: relative error {err:.2e} for {case}"


@pytest.mark.parametrize("block", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("dq", [False, True])
def test_matmulbnb4_equals_spec(block, dq):
    rng = np.random.default_rng(block)
    k, n = 2 * block, 24
    w = rng.standard_normal((k, n)).astype(np.float32)
    qt = quantize_nf4(w, block_size=block, double_quant=dq, dq_block_size=8)
    x = rng.standard_normal((5, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    model = nf4_linear_model(qt, bias, format="bnb4")
    onnx.checker.check_model(model, full_check=True)
    err = max_relative_error(run_linear(model, x), dequant_matmul(x, qt, bias))
    assert err < 2e-5, f"MatMulBnb4 vs spec: relative error {err:.2e} (block {block}, dq {dq})"


def test_three_d_weight_along_axis_1_and_float16_scale():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((2, 37, 5)).astype(np.float32)
    for qt in (quantize_nf4(w, block_size=8, axis=1), quantize_nf4(w, block_size=37, axis=1, double_quant=True)):
        assert np.array_equal(run_weight(qt), dequantize_slice(qt, 0, 2))
    qt16 = dataclasses.replace(quantize_nf4(w, block_size=8, axis=1), scale=np.ones((2, 5, 5), np.float16))
    assert np.array_equal(run_weight(qt16), dequantize_slice(qt16, 0, 2))


def test_int8_fallback_double_quantized_graph():
    rng = np.random.default_rng(12)
    w = rng.standard_normal((20, 7)).astype(np.float32)
    for symmetric in (True, False):
        qt = double_quantize(quantize(w, group_size=128, symmetric=symmetric), w=w)
        assert qt.bits == 8
        assert np.array_equal(run_weight(qt), dequantize_slice(qt, 0, 20))


def test_perm_becomes_a_gather_of_x():
    rng = np.random.default_rng(13)
    w = rng.standard_normal((64, 6)).astype(np.float32)
    perm = rng.permutation(64)
    qt = dataclasses.replace(quantize_nf4(w.take(perm, axis=0), block_size=16), perm=perm)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    err = max_relative_error(run_linear(nf4_linear_model(qt), x), dequant_matmul(x, qt))
    assert err < 2e-5


def test_initializers_read_back_with_tensor_from_onnx():
    rng = np.random.default_rng(14)
    w = rng.standard_normal((100, 9)).astype(np.float32)
    for qt in (quantize_nf4(w, block_size=32), quantize_nf4(w, block_size=32, double_quant=True),
               double_quantize(quantize(w, group_size=32, symmetric=False), w=w)):
        inits, _ = nf4_weight_subgraph(qt, "w", "out")
        roles = [t for t in inits if any(p.key == "monoquant.role" for p in t.metadata_props)]
        assert tensor_from_onnx(*roles).equals(qt)


def test_export_weight_subgraph_dispatches_here():
    qt = quantize_nf4(np.random.default_rng(15).standard_normal((64, 4)).astype(np.float32), double_quant=True)
    inits, nodes = weight_subgraph(qt, "w", "out")
    mine = nf4_weight_subgraph(qt, "w", "out")
    assert [n.op_type for n in nodes] == [n.op_type for n in mine[1]]
    assert [t.name for t in inits] == [t.name for t in mine[0]]


def test_onnxruntime_folds_the_plain_nf4_lookup():
    """Documented cost (spec 10.6): every input is constant, so onnxruntime folds the lookup into a
    float32 weight at load time; the double-quantized scale rebuild stays (DequantizeLinear is not
    folded); MatMulBnb4 stays itself."""
    w = np.random.default_rng(16).standard_normal((128, 32)).astype(np.float32)
    assert fused_op_types(nf4_linear_model(quantize_nf4(w))) == {"MatMul": 1}
    ops = fused_op_types(nf4_linear_model(quantize_nf4(w, double_quant=True)))
    assert ops.get("DequantizeLinear") == 1 and "Gather" not in ops
    assert fused_op_types(nf4_linear_model(quantize_nf4(w), format="bnb4")) == {"MatMulBnb4": 1}
    int4dq = double_quantize(quantize(w, group_size=64), w=w)
    assert "MatMulNBits" not in fused_op_types(nf4_linear_model(int4dq))


@pytest.mark.parametrize("symmetric", [True, False])
def test_arithmetic_rebuild_lets_double_quantized_int4_fuse(symmetric):
    """spec 11.4: Cast/Expand/Slice/Mul/Add are constant-folded, so the layer becomes MatMulNBits,
    and its output still equals the spec."""
    rng = np.random.default_rng(17)
    w = rng.standard_normal((256, 48)).astype(np.float32)
    qt = double_quantize(quantize(w, group_size=64, symmetric=symmetric), w=w, block_size=100)
    model = nf4_linear_model(qt, scale_rebuild="arithmetic")
    assert fused_op_types(model) == {"MatMulNBits": 1}
    x = rng.standard_normal((4, 256)).astype(np.float32)
    assert max_relative_error(run_linear(model, x), dequant_matmul(x, qt)) < 2e-5
    with pytest.raises(ValueError, match="scale_rebuild must be one of"):
        nf4_weight_subgraph(qt, "w", "out", scale_rebuild="fold")
