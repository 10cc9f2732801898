"""quantize_model on small synthetic graphs: every case of spec chapter 13, compared with the NumPy spec.

Each model is run in onnxruntime (accuracy level 1, float32 arithmetic) and
its output compared with the same computation on ``dequantize(quantize(W))``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize, double_quantize, quantize
from monoquant_np.algorithms.extreme import quantize_extreme
from monoquant_np.onnx import Algorithm, WeightContext
from monoquant_np.onnx.model_io import load_model, save_model
from monoquant_np.onnx.quantizer.pipeline import quantize_model, quantize_model_with_report
from monoquant_np.onnx.quantizer.sites import find_weight_sites
from monoquant_np.onnx.runtime import fused_op_types, make_session

RNG = np.random.default_rng(1234)
F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=21, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    m.ir_version = 10 if opset >= 21 else 8
    return m


def _run(model, feeds):
    return make_session(model, 1).run(None, feeds)


def _w(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _spec(w, g=32, axis=0, symmetric=True):
    """The model quantizer's default: int4 with spec 14.0's scales, uint4 with spec 3's."""
    if symmetric:
        return dequantize(quantize_extreme(w, group_size=g, axis=axis))
    return dequantize(quantize(w, group_size=g, axis=axis, symmetric=False))


def _matmul_model(k=64, n=48, opset=21, const=False):
    w = _w(k, n)
    x = helper.make_tensor_value_info("x", F32, ["b", k])
    y = helper.make_tensor_value_info("y", F32, ["b", n])
    if const:
        nodes = [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")),
                 helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
        return _model(nodes, [x], [y], opset=opset), w
    return _model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [x], [y],
                  [numpy_helper.from_array(w, "W")], opset=opset), w


# --------------------------------------------------------------- MatMul
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matmul_equals_spec_and_fuses(fmt, symmetric):
    m, w = _matmul_model()
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, format=fmt, symmetric=symmetric)
    x = _w(5, 64)
    (y,) = _run(q, {"x": x})
    assert _rel(y, x @ _spec(w, symmetric=symmetric)) < 2e-5
    assert fused_op_types(q).get("MatMulNBits") == 1
    assert "DequantizeLinear" not in fused_op_types(q)
    onnx.checker.check_model(q, full_check=True)
    (row,) = rep.rows
    assert row.shape == (64, 48) and row.scheme == ("int4" if symmetric else "uint4")
    assert row.bytes_before == 64 * 48 * 4
    # 4-bit codes (1536 B) + 2x48 float32 scales (384 B) [+ 96 packed zero points (48 B)]
    assert row.bytes_after == 1536 + 384 + (0 if symmetric else 48)
    assert 0 < row.rel_err < 0.2


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
@pytest.mark.parametrize("k,n,g,scheme", [(100, 48, 32, "int4"), (33, 7, 16, "uint4"), (33, 7, 64, "uint8")])
def test_partial_last_group_odd_sizes_and_int8_fallback(fmt, k, n, g, scheme):
    w = _w(k, n)
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_tensor_value_info("x", F32, ["b", k])],
               [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(w, "W")])
    symmetric = scheme.startswith("int")
    q, rep = quantize_model_with_report(m, group_size=g, min_elements=1, format=fmt, symmetric=symmetric)
    assert (rep.rows[0].scheme, rep.rows[0].served_as) == (scheme, "qdq" if fmt == "qdq" else "MatMulNBits")
    x = _w(3, k)
    assert _rel(_run(q, {"x": x})[0], x @ _spec(w, g=g, symmetric=symmetric)) < 2e-5


def test_input_model_not_modified_and_constant_weight():
    m, w = _matmul_model(const=True)
    before = m.SerializeToString()
    q = quantize_model(m, group_size=32, min_elements=1)
    assert m.SerializeToString() == before
    assert not any(n.op_type == "Constant" for n in q.graph.node)
    x = _w(3, 64)
    assert _rel(_run(q, {"x": x})[0], x @ _spec(w)) < 2e-5


# ----------------------------------------------------------------- Gemm
@pytest.mark.parametrize("trans_b,alpha,beta", [(0, 1.0, 1.0), (1, 1.0, 1.0), (0, 0.5, 2.0), (1, 1.5, 0.25)])
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_gemm(trans_b, alpha, beta, fmt):
    k, n = 64, 40
    w_kn = _w(k, n)
    stored = w_kn.T.copy() if trans_b else w_kn
    c = _w(n)
    m = _model([helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="gemm", transB=trans_b, alpha=alpha,
                                 beta=beta)],
               [helper.make_tensor_value_info("x", F32, ["b", k])], [helper.make_tensor_value_info("y", F32, None)],
               [numpy_helper.from_array(stored, "W"), numpy_helper.from_array(c, "C")])
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, format=fmt)
    x = _w(6, k)
    want = alpha * (x @ _spec(w_kn)) + beta * c  # groups along K whatever the storage
    assert _rel(_run(q, {"x": x})[0], want) < 2e-5
    assert rep.rows[0].shape == (k, n)  # quantized in (K, N) orientation
    if alpha == 1.0 and beta == 1.0:  # a plain Gemm fuses (transB=1 is rewritten to transB=0)
        assert fused_op_types(q).get("MatMulNBits") == 1


# --------------------------------------------------------------- Gather
@pytest.mark.parametrize("gather_op", ["GatherBlockQuantized", "DequantizeLinear"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gather_embedding(gather_op, symmetric):
    v, d = 100, 64
    table = _w(v, d)
    m = _model([helper.make_node("Gather", ["E", "ids"], ["y"], name="emb")],
               [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
               [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(table, "E")])
    q, rep = quantize_model_with_report(m, ops="Gather", group_size=32, min_elements=1, gather_op=gather_op,
                                        symmetric=symmetric)
    ids = RNG.integers(0, v, (3, 7)).astype(np.int64)
    want = _spec(table, axis=1, symmetric=symmetric)[ids]  # grouped along the embedding axis
    np.testing.assert_allclose(_run(q, {"ids": ids})[0], want, rtol=1e-6, atol=1e-6)
    assert rep.rows[0].served_as == ("GatherBlockQuantized" if gather_op == "GatherBlockQuantized" else "qdq")
    ops = {n.op_type for n in q.graph.node}
    assert ("GatherBlockQuantized" in ops) == (gather_op == "GatherBlockQuantized")


def test_gather_not_in_ops_is_left_float():
    m = _model([helper.make_node("Gather", ["E", "ids"], ["y"])],
               [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
               [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(_w(100, 64), "E")])
    q, rep = quantize_model_with_report(m, min_elements=1)  # default ops: MatMul, Gemm
    assert not rep.rows and q.SerializeToString() == m.SerializeToString()
    assert any("nothing eligible" in n for n in rep.notes)
    assert "1 Gather table(s) (25,600 bytes) left float; --ops MatMul,Gemm,Gather quantizes them too" in rep.notes


# ------------------------------------------------------- tied embeddings
@pytest.mark.parametrize("head", ["transpose_matmul", "gemm_transB"])
def test_tied_embedding_quantized_once(head):
    v, d = 96, 64
    table = _w(v, d)
    nodes = [helper.make_node("Gather", ["E", "ids"], ["h"], name="emb")]
    if head == "transpose_matmul":
        nodes += [helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
                  helper.make_node("MatMul", ["h", "Et"], ["logits"], name="head")]
    else:
        nodes += [helper.make_node("Reshape", ["h", "shape"], ["h2"]),
                  helper.make_node("Gemm", ["h2", "E"], ["logits"], name="head", transB=1)]
    m = _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
               [helper.make_tensor_value_info("logits", F32, None)],
               [numpy_helper.from_array(table, "E"), numpy_helper.from_array(np.array([-1, d], np.int64), "shape")])
    q, rep = quantize_model_with_report(m, ops="MatMul,Gemm,Gather", group_size=32, min_elements=1)
    assert len(rep.rows) == 1 and rep.rows[0].shape == (v, d)
    int4 = [t for t in q.graph.initializer if t.data_type == TensorProto.INT4]
    assert len(int4) == 1  # one copy of the codes serves both readers
    ids = np.array([0, 5, 95], np.int64)
    e = _spec(table, axis=1)
    assert _rel(_run(q, {"ids": ids})[0], e[ids] @ e.T) < 2e-5


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_weight_shared_by_two_matmuls(fmt, op):
    w, c = _w(64, 64), _w(64)  # one weight, two layers (ALBERT shares its layers this way); Gemms add a bias
    ins = (lambda a: [a, "W", "C"]) if op == "Gemm" else (lambda a: [a, "W"])
    m = _model([helper.make_node(op, ins("x"), ["a"]), helper.make_node(op, ins("a"), ["y"])],  # unnamed nodes
               [helper.make_tensor_value_info("x", F32, ["b", 64])],
               [helper.make_tensor_value_info("y", F32, ["b", 64])],
               [numpy_helper.from_array(w, "W"), numpy_helper.from_array(c, "C")])
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, format=fmt)
    onnx.checker.check_model(q, full_check=True)  # node names stay unique
    assert len(rep.rows) == 1 and rep.rows[0].consumers == ("a", "y")
    assert len(q.graph.initializer) == 3  # one copy of the codes and of the scales, and C
    x = _w(2, 64)
    w_hat, b = _spec(w), (c if op == "Gemm" else 0)
    assert _rel(_run(q, {"x": x})[0], (x @ w_hat + b) @ w_hat + b) < 2e-5
    # onnxruntime fuses DequantizeLinear -> MatMul only for a weight with one reader; MatMulNBits serves both
    assert fused_op_types(q).get("MatMulNBits", 0) == (2 if fmt == "matmulnbits" else 0)


def test_shared_weight_with_other_reader_is_skipped():
    w = _w(64, 64)
    m = _model([helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("Add", ["a", "W"], ["y"])],
               [helper.make_tensor_value_info("x", F32, [64, 64])], [helper.make_tensor_value_info("y", F32, None)],
               [numpy_helper.from_array(w, "W")])
    _, rep = quantize_model_with_report(m, min_elements=1)
    assert not rep.rows and rep.skipped == [("W", "also read by Add (not quantizable there with ops=MatMul,Gemm)")]


# ------------------------------------------------------------ subgraphs
def _body(name, w_name, inits):
    return helper.make_graph([helper.make_node("MatMul", ["x", w_name], [name + "_y"], name=name + "_mm")], name,
                             [], [helper.make_tensor_value_info(name + "_y", F32, [2, 32])], inits)


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_if_branches_local_and_outer_weights(fmt):
    w_then, w_else = _w(64, 32), _w(64, 32)
    then_g = _body("then", "Wt", [numpy_helper.from_array(w_then, "Wt")])  # weight local to the branch
    else_g = _body("else", "We", [])  # weight from the outer scope
    m = _model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
               [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x", F32, [2, 64])],
               [helper.make_tensor_value_info("y", F32, [2, 32])], [numpy_helper.from_array(w_else, "We")])
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, format=fmt)
    assert sorted(r.name for r in rep.rows) == ["We", "Wt"]
    assert {r.served_as for r in rep.rows} == {"qdq" if fmt == "qdq" else "MatMulNBits"}
    x = _w(2, 64)
    for cond, w in ((True, w_then), (False, w_else)):
        assert _rel(_run(q, {"c": np.array(cond), "x": x})[0], x @ _spec(w)) < 2e-5
    onnx.checker.check_model(q, full_check=True)


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_loop_and_scan_bodies(fmt):
    wl, ws = _w(32, 32), _w(32, 32)
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["h_in", "WL"], ["h_out"], name="loop_mm")],
        "loop", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", F32, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", F32, None)],
        [numpy_helper.from_array(wl, "WL")])
    scan_body = helper.make_graph(
        [helper.make_node("MatMul", ["row", "WS"], ["out_row"], name="scan_mm"),
         helper.make_node("Identity", ["s_in"], ["s_out"])],
        "scan", [helper.make_tensor_value_info("s_in", F32, None), helper.make_tensor_value_info("row", F32, [1, 32])],
        [helper.make_tensor_value_info("s_out", F32, None), helper.make_tensor_value_info("out_row", F32, None)])
    m = _model([helper.make_node("Loop", ["n", "", "x"], ["h"], body=loop_body),
                helper.make_node("Scan", ["s0", "h"], ["s_final", "y"], body=scan_body, num_scan_inputs=1)],
               [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                helper.make_tensor_value_info("x", F32, [3, 1, 32]),
                helper.make_tensor_value_info("s0", F32, [1])],
               [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(ws, "WS")])
    q, rep = quantize_model_with_report(m, group_size=16, min_elements=1, format=fmt)
    assert sorted(r.name for r in rep.rows) == ["WL", "WS"]
    x = _w(3, 1, 32)
    wl_q, ws_q = _spec(wl, g=16), _spec(ws, g=16)
    want = np.stack([r @ ws_q for r in (x @ wl_q @ wl_q)])
    got = _run(q, {"n": np.array(2, np.int64), "x": x, "s0": np.zeros(1, np.float32)})[0]
    assert _rel(got, want) < 2e-5


# -------------------------------------------------------------- float16
@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_float16_model(scale_dtype):
    w = _w(64, 48, dtype=np.float16)
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["b", 64])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], [numpy_helper.from_array(w, "W")])
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, scale_dtype=scale_dtype)
    assert rep.rows[0].bytes_before == 64 * 48 * 2
    x = _w(4, 64, dtype=np.float16)
    w_hat = dequantize(quantize_extreme(w, group_size=32, scale_dtype=scale_dtype)).astype(np.float16)
    want = x.astype(np.float32) @ w_hat.astype(np.float32)
    got = _run(q, {"x": x})[0]
    assert got.dtype == np.float16 and _rel(got, want) < 3e-3  # float16 output rounding


# ------------------------------------------------ already quantized / none
def test_already_quantized_model_left_alone():
    qt = quantize(_w(64, 32), group_size=32)
    from monoquant_np.onnx.export.matmulnbits_node import matmulnbits_node
    from monoquant_np.onnx.export.qdq import weight_subgraph

    inits, nodes = weight_subgraph(qt, "Q", "Wdq")
    nb_inits, nb_node = matmulnbits_node(qt, "x", "y2", "NB")
    w8 = RNG.integers(-100, 100, (64, 16)).astype(np.int8)
    nodes += [helper.make_node("MatMul", ["x", "Wdq"], ["y1"]), nb_node,
              helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
              helper.make_node("MatMulInteger", ["xq", "W8", "xz"], ["y3"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F32, ["b", 64])],
               [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "y3" else F32, None)
                for n in ("y1", "y2", "y3")],
               inits + nb_inits + [numpy_helper.from_array(w8, "W8")],
               extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    q, rep = quantize_model_with_report(m, min_elements=1, ops="MatMul,Gemm,Gather")
    assert not rep.rows and q.SerializeToString() == m.SerializeToString()
    assert any("already contains quantized operators" in n and "MatMulNBits" in n for n in rep.notes)


def test_partly_quantized_model_keeps_its_quantized_part_and_quantizes_the_rest():
    w8 = RNG.integers(-100, 100, (64, 16)).astype(np.int8)
    w = _w(64, 48)
    m = _model([helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                helper.make_node("MatMulInteger", ["xq", "W8", "xz"], ["yi"]),
                helper.make_node("MatMul", ["x", "W"], ["yf"])],
               [helper.make_tensor_value_info("x", F32, ["b", 64])],
               [helper.make_tensor_value_info("yi", TensorProto.INT32, None),
                helper.make_tensor_value_info("yf", F32, None)],
               [numpy_helper.from_array(w8, "W8"), numpy_helper.from_array(w, "W")], opset=13)
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1)
    assert [r.name for r in rep.rows] == ["W"] and any("MatMulInteger" in n for n in rep.notes)
    x = _w(3, 64)
    yi, yf = _run(q, {"x": x})
    np.testing.assert_array_equal(yi, _run(m, {"x": x})[0])  # the int8 part computes exactly what it did
    assert _rel(yf, x @ _spec(w)) < 2e-5


# ---------------------------------------------------------------- opset
def test_opset_11_semantics_are_converted_not_relabelled():
    # Softmax-11 on (2, 3, 48) with axis=1 normalizes over the 144 flattened values of each sample
    # (opset 13 changed it to one axis), and Unsqueeze-11 has an `axes` attribute (an input since 13):
    # relabelling the opset would change the numbers and break the graph.
    m, w = _matmul_model(opset=11)
    m.ir_version = 6
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", F32, [2, 3, 64]))
    m.graph.node.extend([helper.make_node("Softmax", ["y"], ["p"], axis=1),
                         helper.make_node("Unsqueeze", ["p"], ["u"], axes=[0])])
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("u", F32, [1, 2, 3, 48]))
    q = quantize_model(m, group_size=32, min_elements=1)
    onnx.checker.check_model(q, full_check=True)
    x = _w(2, 3, 64)
    f = (x @ _spec(w)).reshape(2, 144)  # (samples, 3 * 48)
    e = np.exp(f - f.max(1, keepdims=True))
    want = (e / e.sum(1, keepdims=True)).reshape(1, 2, 3, 48)
    assert _rel(_run(q, {"x": x})[0], want) < 2e-5


def test_opset_13_is_converted_and_checked():
    m, w = _matmul_model(opset=13)
    m.graph.node.append(helper.make_node("Softmax", ["y"], ["p"], axis=-1))
    m.graph.output.append(helper.make_tensor_value_info("p", F32, None))
    q = quantize_model(m, group_size=32, min_elements=1)
    assert [o.version for o in q.opset_import if o.domain == ""] == [21] and q.ir_version == 10
    onnx.checker.check_model(q, full_check=True)
    x = _w(3, 64)
    y = x @ _spec(w)
    e = np.exp(y - y.max(-1, keepdims=True))
    assert _rel(_run(q, {"x": x})[1], e / e.sum(-1, keepdims=True)) < 2e-5


def test_checker_complaint_of_the_input_is_not_blamed_on_the_conversion():
    m, w = _matmul_model(opset=17)  # a contrib op whose output has no shape: onnx.checker rejects it, ORT runs it
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    m.ir_version = 8
    m.graph.node.append(helper.make_node("FastGelu", ["y"], ["z"], domain="com.microsoft"))
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", F32, None))
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    q = quantize_model(m, group_size=32, min_elements=1)
    x = _w(2, 64)
    w_hat = _spec(w)
    np.testing.assert_allclose(_run(q, {"x": x})[0], _run(_with_weight(m, w_hat), {"x": x})[0], rtol=2e-5, atol=2e-5)


def _with_weight(m, w):
    c = onnx.ModelProto()
    c.CopyFrom(m)
    c.graph.initializer[0].CopyFrom(numpy_helper.from_array(w.astype(np.float32), "W"))
    return c


# ------------------------------------------------------- external data
def test_external_data_save_and_streamed_input(tmp_path):
    m, w = _matmul_model(k=128, n=64)
    m.graph.node.append(helper.make_node("Add", ["y", "B"], ["z"]))
    m.graph.initializer.append(numpy_helper.from_array(_w(64), "B"))
    m.graph.output[0].name = "z"
    src = tmp_path / "in.onnx"
    save_model(m, src, external_data=True, size_threshold=16)  # the float input with a side file
    assert (tmp_path / "in.onnx.data").stat().st_size >= 128 * 64 * 4
    q = quantize_model(src, group_size=32, min_elements=1)  # tensors are streamed from in.onnx.data
    out = tmp_path / "out.onnx"
    data = save_model(q, out, external_data=True, size_threshold=16, base_dir=tmp_path, inputs=(src,))
    assert data == tmp_path / "out.onnx.data" and data.exists()
    assert sorted(os.listdir(tmp_path)) == ["in.onnx", "in.onnx.data", "out.onnx", "out.onnx.data"]
    stored = {t.name: t for t in load_model(out, load_external_data=False).graph.initializer}
    assert stored["W_Q4"].data_location == TensorProto.EXTERNAL and not stored["W_Q4"].raw_data
    assert stored["B"].data_location == TensorProto.EXTERNAL  # copied across from in.onnx.data
    x = _w(2, 128)
    b = numpy_helper.to_array(m.graph.initializer[1])
    assert _rel(_run(str(out), {"x": x})[0], x @ _spec(w) + b) < 2e-5


def test_modelproto_with_unloaded_external_data_is_a_clear_error(tmp_path):
    m, _ = _matmul_model(k=128, n=64)
    src = tmp_path / "in.onnx"
    save_model(m, src, external_data=True, size_threshold=16)
    bare = load_model(src, load_external_data=False)
    with pytest.raises(ValueError, match="tensor 'W' stays in an external data file that is not loaded: pass the"):
        quantize_model(bare, group_size=32)
    assert quantize_model(src, group_size=32) is not None  # the path works: side files are read from its folder


def test_external_input_is_streamed_one_weight_at_a_time(tmp_path):
    """Peak traced (NumPy/Python) memory does not grow with the number of weights (spec 13.6)."""
    import tracemalloc

    def peak_for(n, k=512):
        nodes, inits, prev = [], [], "x"
        for i in range(n):
            inits.append(numpy_helper.from_array(_w(k, k), f"W{i}"))
            nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"]))
            prev = f"h{i}"
        m = _model(nodes, [helper.make_tensor_value_info("x", F32, ["b", k])],
                   [helper.make_tensor_value_info(prev, F32, None)], inits)
        src = tmp_path / f"m{n}.onnx"
        save_model(m, src, external_data=True)
        del m, inits
        tracemalloc.start()
        q = quantize_model(src, min_elements=1, jobs=1)  # one weight at a time (jobs=2 may hold two)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len([t for t in q.graph.initializer if t.data_type == TensorProto.INT4]) == n
        return peak

    one_weight = 512 * 512 * 4  # 1 MiB of float32
    small, large = peak_for(2), peak_for(10)
    assert large < small + one_weight, (small, large)  # 8 more weights (8 MiB) did not add up in memory


def test_save_refuses_input_and_missing_folder(tmp_path):
    m, _ = _matmul_model()
    p = tmp_path / "m.onnx"
    save_model(m, p)
    with pytest.raises(ValueError, match="is the input file"):
        save_model(m, p, inputs=(p,))
    with pytest.raises(OSError, match="does not exist"):
        save_model(m, tmp_path / "nope" / "m.onnx")
    assert os.listdir(tmp_path) == ["m.onnx"]


# -------------------------------------------------- options and hooks
def test_exclude_and_min_elements():
    w1, w2 = _w(64, 64), _w(64, 16)
    m = _model([helper.make_node("MatMul", ["x", "W1"], ["a"], name="keep_me"),
                helper.make_node("MatMul", ["a", "W2"], ["y"], name="small")],
               [helper.make_tensor_value_info("x", F32, ["b", 64])], [helper.make_tensor_value_info("y", F32, None)],
               [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    _, rep = quantize_model_with_report(m, min_elements=2000)
    assert [r.name for r in rep.rows] == ["W1"] and rep.skipped == [("W2", "1024 elements < min_elements 2000")]
    _, rep = quantize_model_with_report(m, min_elements=1, exclude="^keep")
    assert [r.name for r in rep.rows] == ["W2"] and rep.skipped[0][0] == "W1"


def test_prequantized_exported_losslessly_with_perm():
    m, w = _matmul_model()
    qt = quantize(w[::-1].copy(), group_size=32)  # codes of w.take(perm, 0) with perm reversed
    from dataclasses import replace

    qt = replace(qt, perm=np.arange(64)[::-1].copy())
    q = quantize_model(m, prequantized={"W": qt}, min_elements=1)
    x = _w(3, 64)
    assert _rel(_run(q, {"x": x})[0], x @ dequantize(qt)) < 2e-5
    with pytest.raises(ValueError, match="not eligible weights"):
        quantize_model(m, prequantized={"nope": qt})


def test_algorithm_hook_and_calibration_prepass():
    m, w = _matmul_model()
    seen = {}

    def prepare(model, sites, feeds, opts):
        seen["act"] = sites[0].consumers[0].node.input[0]
        return {"W": float(np.abs(feeds["x"]).mean())}

    def half_scale(ctx: WeightContext):
        seen["stats"], seen["axis"] = ctx.stats, ctx.axis
        return quantize(ctx.w * 0.5, group_size=ctx.options.group_size, axis=ctx.axis)

    alg = Algorithm("half", half_scale, needs_calibration=True, prepare=prepare)
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(m, algorithm=alg)
    q = quantize_model(m, algorithm=alg, calibration={"x": np.ones((2, 64), np.float32)}, group_size=32,
                       min_elements=1)
    assert seen == {"act": "x", "stats": 1.0, "axis": 0}
    x = _w(2, 64)
    assert _rel(_run(q, {"x": x})[0], x @ dequantize(quantize(w * 0.5, group_size=32))) < 2e-5


def test_calibration_inputs_are_checked_against_the_model():
    m, _ = _matmul_model()
    alg = Algorithm("probe", lambda ctx: quantize(ctx.w, group_size=32), needs_calibration=True,
                    prepare=lambda model, sites, feeds, opts: {})
    for feeds, msg in (({"foo": np.ones((2, 64), np.float32)}, r"lack the model input\(s\) \['x'\]"),
                       ({"x": np.ones((2, 17), np.float32)}, r"'x' has shape \(2, 17\), the model takes \(b, 64\)"),
                       ({"x": np.ones((2, 64), np.int64)}, "input 'x' is int64, the model takes float32")):
        with pytest.raises(ValueError, match=msg):
            quantize_model(m, algorithm=alg, calibration=feeds, min_elements=1)


@pytest.mark.parametrize("kw,msg", [
    ({"group_size": 0}, "group_size must be a positive int"),
    ({"format": "gguf"}, "format must be one of"),
    ({"ops": "MatMul,Conv"}, "ops entry must be one of"),
    ({"scheme": "int3"}, "scheme must be one of"),
    ({"exclude": "("}, "exclude must be a valid regular expression"),
    ({"algorithm": "gptq"}, "needs calibration inputs"),
    ({"algorithm": "nonsense"}, "algorithm must be one of"),
    ({"scheme": "int4", "symmetric": False}, "scheme='int4' is symmetric"),
    ({"scheme": "nf4", "scale_dtype": "float16"}, "scheme='nf4' stores float32 absmax scales"),
])
def test_bad_options(kw, msg):
    m, _ = _matmul_model()
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        quantize_model(m, **kw)


def test_nf4_and_double_quant_schemes():
    pytest.importorskip("monoquant_np.nf4")
    from monoquant_np.nf4 import quantize_nf4

    m, w = _matmul_model()
    x = _w(3, 64)
    q, rep = quantize_model_with_report(m, scheme="nf4", group_size=32, min_elements=1)
    assert rep.rows[0].scheme == "nf4"
    assert _rel(_run(q, {"x": x})[0], x @ dequantize(quantize_nf4(w, block_size=32))) < 2e-5
    q, rep = quantize_model_with_report(m, double_quant=True, group_size=32, min_elements=1)
    assert rep.rows[0].bits_per_weight < 4.0 + 32 / 32 + 1e-9  # 8-bit scales: 4 + 8/32 + block overhead
    want = double_quantize(quantize(w, group_size=32), w=w)  # spec 11.2's definition
    assert _rel(_run(q, {"x": x})[0], x @ dequantize(want)) < 2e-5
    from monoquant_np.onnx.inspect import inspect_model

    (info,), _ = inspect_model(q)  # inspect counts the 8-bit scale codes and their own scales too
    assert (info.scheme, info.group_size, info.nbytes) == ("int4 dq8", 32, rep.rows[0].bytes_after)


def test_report_json_and_find_sites_notes():
    m, _ = _matmul_model()
    _, rep = quantize_model_with_report(m, group_size=32, min_elements=1)
    d = json.loads(rep.to_json())
    assert d["layers"][0]["name"] == "W" and d["layers"][0]["shape"] == [64, 48]
    assert d["totals"]["bits_per_weight"] == pytest.approx(8 * (1536 + 384) / (64 * 48))
    sites, notes = find_weight_sites(m, ops=("MatMul",), min_elements=1)
    assert [(s.name, s.axis, s.skip) for s in sites] == [("W", 0, None)] and notes == []


def test_gemm_trans_a_and_matrix_bias():
    k, n, m_ = 64, 32, 5
    w, c = _w(k, n), _w(m_, n)
    m = _model([helper.make_node("Gemm", ["xt", "W", "C"], ["y"], transA=1)],
               [helper.make_tensor_value_info("xt", F32, [k, m_])], [helper.make_tensor_value_info("y", F32, None)],
               [numpy_helper.from_array(w, "W"), numpy_helper.from_array(c, "C")])
    for fmt in ("qdq", "matmulnbits"):
        q = quantize_model(m, group_size=32, min_elements=1, format=fmt)
        x = _w(m_, k)
        assert _rel(_run(q, {"xt": x.T.copy()})[0], x @ _spec(w) + c) < 2e-5


def test_float16_gather_and_matmulnbits_fallback():
    table, w = _w(100, 64, dtype=np.float16), _w(64, 32, dtype=np.float16)
    m = _model([helper.make_node("Gather", ["E", "ids"], ["h"]), helper.make_node("MatMul", ["h", "W"], ["y"])],
               [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
               [numpy_helper.from_array(table, "E"), numpy_helper.from_array(w, "W")])
    q, rep = quantize_model_with_report(m, ops="MatMul,Gather", format="matmulnbits", group_size=32, min_elements=1,
                                        scale_dtype="float32")
    assert [r.served_as for r in rep.rows] == ["GatherBlockQuantized", "qdq"]  # float32 scales: not in float16
    assert [n.split(":")[0] for n in rep.notes] == ["1 MatMul/Gemm weight(s) stay DequantizeLinear -> MatMul"]
    ids = np.array([3, 99, 0], np.int64)
    e = _spec(table, axis=1).astype(np.float16).astype(np.float32)
    want = e[ids] @ _spec(w).astype(np.float16).astype(np.float32)
    got = _run(q, {"ids": ids})[0]
    assert got.dtype == np.float16 and _rel(got, want) < 3e-3


def test_make_inputs_ranges_and_cosine():
    from monoquant_np.onnx.verify import cosine_per_sample, make_inputs

    i64 = TensorProto.INT64
    m = _model([helper.make_node("Gather", ["E", "input_ids"], ["h"])],
               [helper.make_tensor_value_info(n, i64, ["batch", "seq"])
                for n in ("input_ids", "attention_mask", "token_type_ids")]
               + [helper.make_tensor_value_info("x", F32, ["batch", 3])],
               [helper.make_tensor_value_info("h", F32, None)], [numpy_helper.from_array(_w(50, 8), "E")])
    f = make_inputs(m, samples=3, seq_len=40)
    assert f["input_ids"].shape == (3, 40) and 0 <= f["input_ids"].min() and f["input_ids"].max() < 50
    assert f["input_ids"].max() > 1  # drawn from the whole vocabulary, not {0, 1}
    assert (f["attention_mask"] == 1).all() and (f["token_type_ids"] == 0).all()
    assert f["x"].shape == (3, 3) and f["x"].dtype == np.float32
    # hand-checkable: [1, 0] . [1, 1] / sqrt(2) = 0.7071; identical rows: 1; one zero vector: 0
    assert cosine_per_sample(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])) == pytest.approx(0.5 ** 0.5)
    a, b = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[2.0, 4.0], [1.0, 0.0]])
    assert cosine_per_sample(a, b) == pytest.approx(0.5)
    x = np.array([[0.1, -0.5, 0.4]])  # x.x / (|x| |x|) rounds to 1 - 2**-53 in float64
    assert cosine_per_sample(x, x) == 1.0  # exactly: identical models must pass --min-cosine 1


def test_old_ir_initializer_listed_as_input_opset9():
    m, w = _matmul_model(opset=9)
    m.ir_version = 3
    m.graph.input.append(helper.make_tensor_value_info("W", F32, [64, 48]))  # IR < 4: initializers are inputs
    q = quantize_model(m, group_size=32, min_elements=1)
    assert [i.name for i in q.graph.input] == ["x"] and q.ir_version == 10
    onnx.checker.check_model(q, full_check=True)
    x = _w(2, 64)
    assert _rel(_run(q, {"x": x})[0], x @ _spec(w)) < 2e-5


def test_model_over_protobuf_limit_gets_external_data(tmp_path, monkeypatch):
    import monoquant_np.onnx.model_io as io

    m, w = _matmul_model()
    monkeypatch.setattr(io, "PROTOBUF_LIMIT", 1000)  # stand-in for 2 GiB
    data = save_model(m, tmp_path / "big.onnx")
    assert data == tmp_path / "big.onnx.data" and data.stat().st_size >= w.nbytes
    x = _w(2, 64)
    np.testing.assert_allclose(_run(str(tmp_path / "big.onnx"), {"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)


def test_rtn_with_calibration_says_the_data_is_unused():
    m, w = _matmul_model()
    feeds = {"x": _w(4, 64)}
    q, rep = quantize_model_with_report(m, group_size=32, min_elements=1, calibration=feeds)
    assert any("calibration inputs are not used by algorithm 'rtn'" in n for n in rep.notes)
    plain, _ = quantize_model_with_report(m, group_size=32, min_elements=1)
    assert q.SerializeToString() == plain.SerializeToString()  # the same model either way


def test_float16_model_runs_matmulnbits_in_float16():
    """scale_dtype "auto" (the default): a float16 model gets float16 scales and a float16 MatMulNBits."""
    table, w = _w(100, 64, dtype=np.float16), _w(64, 32, dtype=np.float16)
    m = _model([helper.make_node("Gather", ["E", "ids"], ["h"]), helper.make_node("MatMul", ["h", "W"], ["y"])],
               [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
               [numpy_helper.from_array(table, "E"), numpy_helper.from_array(w, "W")])
    q, rep = quantize_model_with_report(m, ops="MatMul,Gather", format="matmulnbits", group_size=32, min_elements=1)
    assert [r.served_as for r in rep.rows] == ["GatherBlockQuantized", "MatMulNBits"] and not rep.notes
    assert rep.options["scale_dtype"] == "float16"
    nb = next(n for n in q.graph.node if n.op_type == "MatMulNBits")
    scales = next(t for t in q.graph.initializer if t.name == nb.input[2])
    assert scales.data_type == TensorProto.FLOAT16
    ids = np.array([3, 99, 0], np.int64)
    e = dequantize(quantize_extreme(table, group_size=32, axis=1, scale_dtype="float16")).astype(np.float16)
    want = e[ids].astype(np.float32) @ dequantize(quantize_extreme(w, group_size=32, scale_dtype="float16"))
    got = _run(q, {"ids": ids})[0]
    assert got.dtype == np.float16 and _rel(got, want) < 1e-3  # float16 rounding of the output
    q32, rep32 = quantize_model_with_report(m, ops="MatMul", format="matmulnbits", group_size=32, min_elements=1,
                                            scheme="nf4")
    assert rep32.options["scale_dtype"] == "float32"  # nf4 keeps float32 absmax


def test_symmetric_and_scale_dtype_follow_the_error_contract():
    """Spec 15.1: ``symmetric`` is a flag (1 is a type error), ``scale_dtype`` any dtype-like the core takes."""
    m, w = _matmul_model()
    with pytest.raises(TypeError, match="symmetric"):
        quantize_model(m, symmetric=1)
    with pytest.raises(ValueError, match="scale_dtype must be one of auto, float32, float16"):
        quantize_model(m, scale_dtype="float64")
    with pytest.raises(TypeError, match="scale_dtype"):
        quantize_model(m, scale_dtype=None)
    _, rep = quantize_model_with_report(m, scale_dtype=np.float16, group_size=32, min_elements=1)
    assert rep.options["scale_dtype"] == "float16"
