"""Tests of monoquant_np.onnx (spec 9): tensors, subgraphs, MatMulNBits layout, models in onnxruntime."""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from monoquant_np import DoubleQuant, QuantizedLinear, QuantizedTensor, dequant_matmul, quantize  # noqa: E402
from monoquant_np.cli import main  # noqa: E402
from monoquant_np.demo import gelu  # noqa: E402
from monoquant_np.dequantize import dequantize_slice  # noqa: E402
from monoquant_np.onnx import (  # noqa: E402
    fused_op_types,
    int8_activation_reference,
    linear_model,
    make_session,
    matmulnbits_arrays,
    matmulnbits_block_size,
    matmulnbits_node,
    max_relative_error,
    mlp_model,
    run_model,
    tensor_from_onnx,
    tensor_to_onnx,
    weight_subgraph,
)

TOL = 2e-5  # spec 9.6: onnxruntime at accuracy level 1 vs dequant_matmul
GROUPS = [16, 17, 24, 32, 48, 64, 100, 128, 200, 256]
POW2 = [16, 32, 64, 128, 256]


def _w(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _check(model):
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------- golden tensors (spec 9.1)
def test_tensor_to_onnx_golden_bytes():
    w = np.array([[0.5, -1.75], [1.75, 0.25], [-0.25, 1.0], [1.75, -3.5]], np.float32)
    t = tensor_to_onnx(quantize(w, group_size=2), "w")
    assert [x.name for x in t] == ["w", "w_scale"]
    assert t[0].data_type == TensorProto.INT4 and list(t[0].dims) == [4, 2]
    # codes [[2,-7],[7,1],[-1,2],[7,-7]] row-major, low nibble first: 0x92 0x17 0x2F 0x97
    assert list(t[0].raw_data) == [0x92, 0x17, 0x2F, 0x97]
    assert onnx.numpy_helper.to_array(t[1]).tolist() == [[0.25, 0.25], [0.25, 0.5]]
    meta = {p.key: p.value for p in t[0].metadata_props}
    assert meta["monoquant.axis"] == "0" and meta["monoquant.block_size"] == "2"


def test_uint4_zero_point_is_packed_uint4_of_scale_shape():
    w = np.array([[0.0, 1.0, 2.0], [3.0, -1.5, 0.5], [1.0, 1.0, 1.0]], np.float32)
    qt = quantize(w, group_size=2, symmetric=False)  # scale shape (2, 3)
    t = {x.name: x for x in tensor_to_onnx(qt, "w")}
    zp = t["w_zero_point"]
    assert zp.data_type == TensorProto.UINT4 and list(zp.dims) == [2, 3]
    z = qt.zero_point.reshape(-1)
    want = [int(z[i]) | (int(z[i + 1]) << 4 if i + 1 < z.size else 0) for i in range(0, z.size, 2)]
    assert list(zp.raw_data) == want
    assert t["w"].data_type == TensorProto.UINT4


def test_int8_fallback_exports_per_channel():
    qt = quantize(_w(np.random.default_rng(1), (8, 3)), group_size=128)
    assert qt.bits == 8
    t = tensor_to_onnx(qt, "w")
    assert t[0].data_type == TensorProto.INT8 and list(t[1].dims) == [3]
    inits, nodes = weight_subgraph(qt, "w", "w_dq")
    dq = nodes[-1]
    assert dq.op_type == "DequantizeLinear" and {a.name: a.i for a in dq.attribute} == {"axis": 1}


@st.composite
def _any_qt(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    g = draw(st.integers(1, 12))
    w = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(np.float32)
    return quantize(w, group_size=g, axis=axis, symmetric=draw(st.booleans()),
                    scale_dtype=draw(st.sampled_from([np.float32, np.float16])))


@settings(max_examples=40, deadline=None)
@given(_any_qt())
def test_round_trip_any_axis(qt):
    back = tensor_from_onnx(*tensor_to_onnx(qt, "t"))
    assert back.equals(qt), (qt, back)
    np.testing.assert_array_equal(back.codes(), qt.codes())


def test_round_trip_perm_codebook_double_quant():
    rng = np.random.default_rng(2)
    qt = quantize(_w(rng, (40, 3)), group_size=16)
    perm = rng.permutation(40)
    with_perm = QuantizedTensor(qt.data, qt.shape, 0, 16, qt.scale, perm=perm)
    assert tensor_from_onnx(tensor_to_onnx(with_perm, "w")).equals(with_perm)
    codebook = np.linspace(-1, 1, 16, dtype=np.float32)
    codes = rng.integers(0, 16, size=(40, 3)).astype(np.uint8)
    from monoquant_np import pack_int4
    dq = DoubleQuant(codes=np.array([[1, -2, 3], [4, 5, -6], [7, 8, 9]], np.int8),
                     scale=np.array([0.5], np.float32), offset=0.25, block_size=256)
    nf = QuantizedTensor(pack_int4(codes), (40, 3), 0, 16, dq.rebuild(), signed=False, codebook=codebook,
                         double_quant=dq)
    t = tensor_to_onnx(nf, "nf")
    assert [x.name for x in t] == ["nf", "nf_scale_codes", "nf_scale_scale", "nf_scale_offset", "nf_codebook"]
    assert tensor_from_onnx(t).equals(nf)


def test_tensor_from_onnx_errors_and_overrides():
    qt = quantize(_w(np.random.default_rng(3), (10, 2)), group_size=8)
    t = tensor_to_onnx(qt, "w")
    del t[0].metadata_props[:]
    with pytest.raises(ValueError, match="pass axis= and block_size="):
        tensor_from_onnx(t)
    assert tensor_from_onnx(t, axis=0, block_size=8).equals(qt)
    with pytest.raises(ValueError, match="both have role"):
        tensor_from_onnx(t + [t[1]], axis=0, block_size=8)
    with pytest.raises(ValueError, match="must include the scale"):
        tensor_from_onnx(t[:1], axis=0, block_size=8)
    with pytest.raises(TypeError, match="QuantizedTensor"):
        tensor_to_onnx(np.zeros(3), "w")
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        tensor_to_onnx(qt, "")


# --------------------------------------------------------------- weight_subgraph (spec 9.2-9.3)
@settings(max_examples=25, deadline=None)
@given(_any_qt())
def test_weight_subgraph_equals_stored_dequantize(qt):
    inits, nodes = weight_subgraph(qt, "w", "w_out")
    out = helper.make_tensor_value_info("w_out", TensorProto.FLOAT, list(qt.shape))
    g = helper.make_graph(nodes, "g", [], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    _check(m)
    got = make_session(m).run(None, {})[0]
    np.testing.assert_array_equal(got, dequantize_slice(qt, 0, qt.shape[0]))


@pytest.mark.parametrize("double_quant", [False, True])
def test_linear_model_dispatches_nf4(double_quant):
    nf4 = pytest.importorskip("monoquant_np.nf4")
    pytest.importorskip("monoquant_np.onnx.export.nf4_subgraph")
    rng = np.random.default_rng(12)
    qt = nf4.quantize_nf4(_w(rng, (200, 9)), block_size=64, double_quant=double_quant)
    x = _w(rng, (3, 200))
    for fmt in ("qdq", "matmulnbits"):  # MatMulNBits cannot hold a codebook: QDQ-style subgraph either way
        y = run_model(_check(linear_model(qt, format=fmt)), x)[0]
        assert max_relative_error(y, dequant_matmul(x, qt)) < TOL


def test_matmulnbits_block_size_rules():
    w = np.ones((200, 3), np.float32)
    got = {g: matmulnbits_block_size(quantize(w, group_size=g)) for g in (16, 17, 24, 32, 48, 96, 100, 256)}
    assert got == {16: 16, 17: None, 24: None, 32: 32, 48: 16, 96: 32, 100: None, 256: 256}
    assert matmulnbits_block_size(quantize(np.ones((100, 3), np.float32), group_size=128)) == 128  # int8
    assert matmulnbits_block_size(quantize(w, group_size=32, axis=1)) is None


def test_matmulnbits_arrays_golden():
    # K=17, one column: codes 0..15 then 5 in group 0 (16 rows), group 1 holds row 16 only.
    codes = np.array([[c - 8] for c in range(16)] + [[5]], np.int8)
    from monoquant_np import pack_int4
    qt = QuantizedTensor(pack_int4(codes), (17, 1), 0, 16, np.array([[0.5], [2.0]], np.float32))
    b, s, z = matmulnbits_arrays(qt, 16)
    assert b.shape == (1, 2, 8) and z is None
    # unsigned codes 0..15 pair up low nibble first: 0x10, 0x32, ..., 0xFE; row 16: 5+8=13, padded with 8s
    assert b[0, 0].tolist() == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]
    assert b[0, 1].tolist() == [0x8D] + [0x88] * 7
    assert s.tolist() == [[0.5, 2.0]]


@pytest.mark.parametrize("signed", [True, False])
def test_partial_last_block_pads_with_the_zero_point_and_runs(signed):
    """spec 9.4, 12.1: rows past K hold the zero point; onnxruntime runs the bytes and equals the spec."""
    from monoquant_np import dequantize, pack_int4
    # K = 17, N = 2, blocks of 16: row 16 is alone in block 1. Column 0: codes 0..15 then 3 (unsigned view).
    u = np.stack([np.r_[np.arange(16), 3], np.r_[np.arange(15, -1, -1), 12]], axis=1)  # (17, 2)
    scale = np.array([[0.5, 0.25], [2.0, 1.0]], np.float32)
    if signed:
        qt = QuantizedTensor(pack_int4((u - 8).astype(np.int8)), (17, 2), 0, 16, scale)
        pad, zp_bytes = [8, 8], None
    else:
        zp = np.array([[4, 7], [9, 1]], np.uint8)
        qt = QuantizedTensor(pack_int4(u.astype(np.uint8)), (17, 2), 0, 16, scale, zp, signed=False)
        pad, zp_bytes = [9, 1], [[0x94], [0x17]]
    b, s, z = matmulnbits_arrays(qt, 16)
    assert b[0, 0].tolist() == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]
    assert b[1, 0].tolist() == [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01]
    for col in (0, 1):  # row 16's code in the low nibble of byte 0, then padding nibbles = the zero point
        assert b[col, 1].tolist() == [u[16, col] | pad[col] << 4] + [pad[col] * 0x11] * 7
    assert (z is None) if signed else z.tolist() == zp_bytes
    model = _check(linear_model(qt, format="matmulnbits"))
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(stored["fc0_B"], b)
    eye = np.eye(17, dtype=np.float32)  # y = W exactly: every product is by 1 or 0
    assert np.array_equal(run_model(model, eye, accuracy_level=1)[0], dequantize(qt))
    x = _w(np.random.default_rng(17), (3, 17))
    assert max_relative_error(run_model(model, x, accuracy_level=1)[0], dequant_matmul(x, qt)) < TOL


def test_matmulnbits_node_rejects_unrepresentable():
    qt = quantize(_w(np.random.default_rng(4), (100, 3)), group_size=24)
    with pytest.raises(ValueError, match="power of two >= 16"):
        matmulnbits_node(qt, "a", "y", "fc")
    with pytest.raises(ValueError, match="accuracy_level"):
        matmulnbits_node(quantize(_w(np.random.default_rng(4), (64, 3)), group_size=32), "a", "y", "fc",
                         accuracy_level=7)
    g48 = quantize(_w(np.random.default_rng(4), (100, 3)), group_size=48)
    with pytest.raises(ValueError, match="block_size must divide the group size 48"):
        matmulnbits_arrays(g48, 32)  # a block of 32 would straddle groups 0 and 1
    with pytest.raises(ValueError, match="block_size must be a power of two >= 16"):
        matmulnbits_arrays(g48, 0)
    with pytest.raises(ValueError, match="grouped along axis 0"):
        matmulnbits_arrays(quantize(_w(np.random.default_rng(4), (8, 64)), group_size=16, axis=1), 16)
    with pytest.raises(TypeError, match="QuantizedTensor"):
        matmulnbits_arrays(np.zeros((16, 2)), 16)


# --------------------------------------------------------------- onnxruntime equals the spec (spec 9.6)
@st.composite
def _layer_case(draw):
    g = draw(st.sampled_from(GROUPS))
    k = draw(st.integers(16, 300).filter(lambda k: k % g != 0))
    n = 2 * draw(st.integers(0, 16)) + 1  # odd N
    seed = draw(st.integers(0, 2**16))
    return (k, n, g, draw(st.booleans()), draw(st.sampled_from([np.float32, np.float16])),
            draw(st.sampled_from(["qdq", "matmulnbits"])), draw(st.booleans()), seed)


@settings(max_examples=150, deadline=None)
@given(_layer_case())
def test_onnxruntime_equals_spec(case):
    k, n, g, sym, sdt, fmt, with_bias, seed = case
    rng = np.random.default_rng(seed)
    qt = quantize(_w(rng, (k, n)), group_size=g, symmetric=sym, scale_dtype=sdt)
    bias = _w(rng, (n,)) if with_bias else None
    x = _w(rng, (3, k))
    model = _check(linear_model(qt, bias, format=fmt))
    y = run_model(model, x, accuracy_level=1)[0]
    err = max_relative_error(y, dequant_matmul(x, qt, bias))
    assert err < TOL, f"K={k} N={n} g={g} sym={sym} scale={sdt.__name__} {fmt}: relative error {err:.3g}"


@pytest.mark.parametrize("g", POW2)
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("sdt", [np.float32, np.float16])
def test_power_of_two_groups_fuse(g, sym, sdt):
    qt = quantize(_w(np.random.default_rng(g), (2 * g + 8, 5)), group_size=g, symmetric=sym, scale_dtype=sdt)
    ops = fused_op_types(_check(linear_model(qt, np.ones(5, np.float32))))
    assert ops.get("MatMulNBits") == 1 and "DequantizeLinear" not in ops, f"g={g}: optimized graph {ops}"


@pytest.mark.parametrize("g", [17, 24, 100])
def test_other_groups_run_unfused(g):
    rng = np.random.default_rng(g)
    qt = quantize(_w(rng, (3 * g + 1, 5)), group_size=g)
    model = _check(linear_model(qt))
    assert fused_op_types(model).get("DequantizeLinear") == 1
    x = _w(rng, (2, qt.shape[0]))
    assert max_relative_error(run_model(model, x)[0], dequant_matmul(x, qt)) < TOL


@pytest.mark.parametrize("sym", [True, False])
def test_double_quantized_int4_still_fuses(sym):
    # weight_subgraph rebuilds double-quantized int4/uint4 scales arithmetically
    # (constant-foldable), so the layer keeps onnxruntime's MatMulNBits path.
    from monoquant_np import double_quantize

    rng = np.random.default_rng(11)
    w = _w(rng, (512, 9))
    qt = double_quantize(quantize(w, group_size=32, symmetric=sym), block_size=256, w=w)
    model = _check(linear_model(qt))
    assert fused_op_types(model) == {"MatMulNBits": 1}
    x = _w(rng, (3, 512))
    assert max_relative_error(run_model(model, x)[0], dequant_matmul(x, qt)) < TOL


def test_int8_fallback_fuses_too():
    qt = quantize(_w(np.random.default_rng(5), (100, 7)), group_size=128, symmetric=False)
    assert fused_op_types(_check(linear_model(qt))) == {"MatMulNBits": 1}


def test_accuracy_level_4_differs_measurably():
    rng = np.random.default_rng(6)
    qt = quantize(_w(rng, (256, 33)), group_size=32)
    x = _w(rng, (4, 256))
    ref = dequant_matmul(x, qt)
    qdq = linear_model(qt)
    nbits4 = linear_model(qt, format="matmulnbits", accuracy_level=4)
    e1 = max_relative_error(run_model(qdq, x, accuracy_level=1)[0], ref)
    e4 = max_relative_error(run_model(qdq, x, accuracy_level=4)[0], ref)
    n4 = max_relative_error(run_model(nbits4, x)[0], ref)
    assert e1 < TOL and e4 > 1e-3 and n4 > 1e-3, (e1, e4, n4)
    unfused = run_model(qdq, x, disable_optimizations=True)[0]
    assert max_relative_error(unfused, ref) < TOL


@pytest.mark.parametrize("g", [16, 32, 128])
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_accuracy_level_4_is_int8_activations_per_block(g, fmt):
    """spec 9.6: level 4 = activations rounded to int8 per weight block (s_a = max|x|/127), then exact."""
    rng = np.random.default_rng(g)
    qt = quantize(_w(rng, (5 * g + 3, 7)), group_size=g, symmetric=fmt == "qdq")
    bias = _w(rng, (7,))
    x = _w(rng, (3, qt.shape[0]))
    y4 = run_model(linear_model(qt, bias, format=fmt, accuracy_level=4), x, accuracy_level=4)[0]
    assert max_relative_error(y4, int8_activation_reference(x, qt, bias)) < TOL
    assert max_relative_error(y4, dequant_matmul(x, qt, bias)) > 1e-3


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_unsigned_codes_without_zero_point(fmt):
    """uint4 codes with no zero point dequantize as q * s (zero point 0, DequantizeLinear's default, not 8)."""
    from monoquant_np import pack_int4
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 16, size=(40, 3)).astype(np.uint8)
    qt = QuantizedTensor(pack_int4(codes), (40, 3), 0, 16, rng.random((3, 3)).astype(np.float32), signed=False)
    x = _w(rng, (2, 40))
    y = run_model(_check(linear_model(qt, format=fmt)), x)[0]
    assert max_relative_error(y, dequant_matmul(x, qt)) < TOL


# --------------------------------------------------------------- models
def test_perm_axis0_and_axis1_match_spec():
    rng = np.random.default_rng(7)
    base = quantize(_w(rng, (48, 5)), group_size=16)
    x = _w(rng, (2, 48))
    for fmt in ("qdq", "matmulnbits"):
        qt = QuantizedTensor(base.data, base.shape, 0, 16, base.scale, perm=rng.permutation(48))
        y = run_model(_check(linear_model(qt, format=fmt)), x)[0]
        assert max_relative_error(y, dequant_matmul(x, qt)) < TOL
    b1 = quantize(_w(rng, (48, 6)), group_size=4, axis=1)
    qt1 = QuantizedTensor(b1.data, b1.shape, 1, 4, b1.scale, perm=rng.permutation(6))
    bias = _w(rng, (6,))
    y = run_model(_check(linear_model(qt1, bias)), x)[0]
    assert max_relative_error(y, dequant_matmul(x, qt1, bias)) < TOL


@pytest.mark.parametrize("activation", ["gelu", "relu", None])
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_mlp_model_matches_numpy(activation, fmt):
    rng = np.random.default_rng(8)
    layers = [QuantizedLinear.from_float(_w(rng, (64, 48)), _w(rng, (48,)), group_size=32),
              (quantize(_w(rng, (48, 24)), group_size=48, symmetric=False), None),
              QuantizedLinear.from_float(_w(rng, (24, 3)), group_size=32)]  # K < 32: int8 fallback
    act = {"gelu": gelu, "relu": lambda h: np.maximum(h, 0), None: lambda h: h}[activation]
    x = _w(rng, (5, 64))
    h = x
    for i, layer in enumerate(layers):
        qt, b = (layer.qt, layer.bias) if isinstance(layer, QuantizedLinear) else layer
        h = dequant_matmul(h, qt, b)
        h = act(h) if i < 2 else h
    model = _check(mlp_model(layers, activation, format=fmt))
    assert max_relative_error(run_model(model, x)[0], h) < TOL
    if fmt == "matmulnbits":
        assert [n.op_type for n in model.graph.node].count("MatMulNBits") == 3


def test_model_argument_errors():
    qt = quantize(_w(np.random.default_rng(9), (32, 4)), group_size=16)
    with pytest.raises(ValueError, match="format must be one of"):
        linear_model(qt, format="gptq")
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp_model([(qt, None)], "tanh")
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        linear_model(qt, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="has K=32 but layers"):
        mlp_model([(qt, None), (qt, None)])
    with pytest.raises(ValueError, match="must differ"):
        linear_model(qt, input_name="x", output_name="x")
    with pytest.raises(ValueError, match="accuracy_level"):
        make_session(linear_model(qt), accuracy_level=9)


def test_model_metadata():
    m = linear_model(quantize(_w(np.random.default_rng(10), (32, 4)), group_size=16))
    assert m.ir_version == 10 and [(o.domain, o.version) for o in m.opset_import] == [("", 21)]
    assert m.graph.input[0].name == "x" and m.graph.output[0].name == "y"
    m2 = linear_model(quantize(_w(np.random.default_rng(10), (32, 4)), group_size=16), format="matmulnbits")
    assert ("com.microsoft", 1) in [(o.domain, o.version) for o in m2.opset_import]


# --------------------------------------------------------------- the demo (spec 9.7)
def test_demo_reports_onnx_and_saves(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "optimized graph: 4 MatMulNBits, 0 DequantizeLinear of 4 layers (all fused)" in out
    line = next(s for s in out.splitlines() if "accuracy level 1" in s)
    assert float(line.split("= ")[1].split()[0]) < 1e-5
    saved = onnx.load(str(tmp_path / "out" / "demo_mlp.onnx"))
    onnx.checker.check_model(saved, full_check=True)


def test_demo_skips_onnx_part_without_onnx(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "monoquant_np.onnx.export_demo", None)
    assert main(["demo"]) == 0
    assert "ONNX part skipped" in capsys.readouterr().out
