"""Calibration through onnxruntime and the mse/gptq/awq algorithms of quantize_model (spec 14.4).

A toy model (x -> MatMul W1 -> Relu -> Gemm W2 (transB=1) -> y) checks the
captured statistics against NumPy, masking, sequential stages, and that the
quantized graphs onnxruntime runs equal the NumPy spec. The real MiniLM-L3
model (skipped when its wheels are absent) checks the accuracy floors.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize, quantize
from monoquant_np.algorithms import gptq_from_hessian
from monoquant_np.algorithms.extreme import quantize_extreme
from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path, minilm_tokenizer_path
from monoquant_np.formats import transpose
from monoquant_np.onnx.calibration.adapters import awq_algorithm, gptq_algorithm
from monoquant_np.onnx.calibration.capture import collect_stats
from monoquant_np.onnx.calibration.stages import CalibrationTarget, layer_stages
from monoquant_np.onnx.feeds import load_feeds
from monoquant_np.onnx.quantizer.pipeline import quantize_model, quantize_model_with_report
from monoquant_np.onnx.quantizer.sites import find_weight_sites
from monoquant_np.onnx.runtime import make_session

K, H, N = 64, 96, 64  # every weight >= min_elements 4096


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((K, H)) * 0.1).astype(np.float32)
    w2t = (rng.standard_normal((N, H)) * 0.1).astype(np.float32)  # Gemm B with transB=1: (N, H)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["r2"], name="flat"),
        helper.make_node("Gemm", ["r2", "w2"], ["y"], name="gemm", transB=1),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2t, "w2"),
             numpy_helper.from_array(np.array([-1, H], np.int64), "shape")]
    g = helper.make_graph(nodes, "toy", [x, mask], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m, w1, w2t


def _feeds(seed: int = 1, b: int = 32, t: int = 8):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((8, K))
    x = (rng.standard_normal((b, t, 8)) @ mix + 0.1 * rng.standard_normal((b, t, K))) * np.exp(rng.normal(0, 1, K))
    mask = np.ones((b, t), np.int64)
    mask[:, t - 2 :] = 0  # two padding positions per sample
    return {"x": x.astype(np.float32), "attention_mask": mask}


def _run(model, feeds):
    return make_session(model, 1).run(["y"], feeds)[0]


def test_weight_sites_and_stages():
    m, _, _ = _toy()
    sites, _ = find_weight_sites(m)
    assert [(s.name, s.consumers[0].node.input[0], s.transpose) for s in sites] == [("w1", "x", False),
                                                                                  ("w2", "r2", True)]
    t = [CalibrationTarget("w1", "x"), CalibrationTarget("w2", "r2", transpose_weight=True)]
    assert [[x.weight for x in s] for s in layer_stages(m, t)] == [["w1"], ["w2"]]


def test_stats_hand_example():
    # spec 14.4: rows [[1, 2], [3, -4]]; with attention_mask [1, 0] only the first row counts
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 2])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x, mask], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    f = {"x": np.array([[[1, 2], [3, -4]]], np.float32), "attention_mask": np.array([[1, 1]], np.int64)}
    st = collect_stats(m, f, ["x"])["x"]
    assert st.xtx.tolist() == [[10, -10], [-10, 20]]
    assert st.abs_sum.tolist() == [4, 6] and st.rows == 2 and st.mean_abs.tolist() == [2, 3]
    st = collect_stats(m, {**f, "attention_mask": np.array([[1, 0]], np.int64)}, ["x"])["x"]
    assert st.xtx.tolist() == [[1, 2], [2, 4]] and st.rows == 1


def test_collect_stats_equals_numpy_and_masks_padding():
    m, w1, _ = _toy()
    before = m.SerializeToString()
    f = _feeds()
    st = collect_stats(m, f, ["x", "r2"], batch_size=7)
    assert m.SerializeToString() == before  # the user's model is untouched
    keep = f["attention_mask"] != 0
    rows = f["x"][keep].astype(np.float64)  # (B * 6, K): padding dropped
    assert st["x"].rows == rows.shape[0]
    ref = rows.T @ rows  # float32 products per batch, float64 sums: float32-level agreement
    np.testing.assert_allclose(st["x"].xtx, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_allclose(st["x"].mean_abs, np.abs(rows).mean(0), rtol=1e-5)
    # "r2" is (B*T, H): its leading shape is not the mask's, so every row counts
    r = np.maximum(f["x"].reshape(-1, K) @ w1, 0).astype(np.float64)
    assert st["r2"].rows == r.shape[0]
    np.testing.assert_allclose(st["r2"].xtx, r.T @ r, rtol=1e-4, atol=1e-3)
    st2 = collect_stats(m, f, ["x"], mask_input=None)
    assert st2["x"].rows == f["x"].shape[0] * f["x"].shape[1]


@pytest.mark.parametrize("fmt, scheme", [("qdq", "int4"), ("matmulnbits", "int4"), ("matmulnbits", "uint4")])
def test_gptq_model_matches_numpy_and_beats_rtn(fmt, scheme):
    m, w1, w2t = _toy()
    f = _feeds()
    sym = scheme == "int4"
    q = quantize_model(m, algorithm=gptq_algorithm(act_order=True), calibration=f, group_size=32, format=fmt,
                       scheme=scheme)
    assert sum(n.op_type == "Gather" for n in q.graph.node) == 2  # act-order: x[..., perm] per layer
    if fmt == "matmulnbits":
        assert sum(n.op_type == "MatMulNBits" for n in q.graph.node) == 2
    # the NumPy spec of the same model: GPTQ from the same statistics
    h1 = collect_stats(m, f, ["x"])["x"].xtx
    qt1 = gptq_from_hessian(w1, h1, group_size=32, act_order=True, scale_search="mse", symmetric=sym)
    assert qt1.scheme == scheme
    x = f["x"]
    ref = np.maximum(x.reshape(-1, K) @ dequantize(qt1), 0)
    y = _run(q, f)
    # the second layer was calibrated on the float model's activations (not sequential)
    h2 = collect_stats(m, f, ["r2"])["r2"].xtx
    qt2 = gptq_from_hessian(np.ascontiguousarray(w2t.T), h2, group_size=32, act_order=True, scale_search="mse",
                            symmetric=sym)
    np.testing.assert_allclose(y, ref @ dequantize(qt2), rtol=1e-4, atol=1e-4)
    y_float = _run(m, f)
    y_rtn = _run(quantize_model(m, group_size=32, scheme=scheme), f)
    assert np.linalg.norm(y - y_float) < 0.75 * np.linalg.norm(y_rtn - y_float)


def test_awq_model_inserts_mul_and_matches_numpy():
    m, w1, _ = _toy()
    f = _feeds()
    q, rep = quantize_model_with_report(m, algorithm=awq_algorithm(scale_search="absmax"), calibration=f,
                                        group_size=32)
    muls = [n for n in q.graph.node if n.op_type == "Mul"]
    assert muls and muls[0].input[0] == "x"
    m1 = numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == muls[0].input[1]))
    row = next(r for r in rep.rows if r.name == "w1")
    assert row.extra["out_rel_err"] <= row.extra["out_rel_err_rtn"]
    # the first layer as NumPy computes it: (x * m) @ deq(Q(W1 / m))
    qt1 = quantize((w1 / m1[:, None]).astype(np.float32), group_size=32)
    h = np.maximum((f["x"] * m1).reshape(-1, K) @ dequantize(qt1), 0)
    cap = make_session(_with_output(q, "r2"), 1).run(["r2"], f)[0]
    np.testing.assert_allclose(cap, h, rtol=1e-4, atol=1e-4)
    y_float, y_rtn = _run(m, f), _run(quantize_model(m, group_size=32), f)
    assert np.linalg.norm(_run(q, f) - y_float) < np.linalg.norm(y_rtn - y_float)


def test_awq_folds_into_a_layernorm_read_only_by_the_matmul():
    m, w1, _ = _toy()
    g = m.graph
    rng = np.random.default_rng(3)
    gamma, beta = rng.uniform(0.5, 2.0, K).astype(np.float32), rng.normal(0, 0.1, K).astype(np.float32)
    g.initializer.extend([numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")])
    g.node.insert(0, helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln", axis=-1))
    g.node[1].input[0] = "ln"  # mm1 reads the LayerNorm
    f = _feeds()
    q = quantize_model(m, algorithm=awq_algorithm(scale_search="absmax"), calibration=f, group_size=32)
    assert not [n for n in q.graph.node if n.op_type == "Mul" and "ln" in n.input]  # folded, no Mul on ln
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    m1 = inits["gamma"] / gamma
    assert not np.allclose(m1, 1.0)
    np.testing.assert_allclose(inits["beta"], beta * m1, rtol=1e-5, atol=1e-7)
    y_float, y_rtn = _run(m, f), _run(quantize_model(m, group_size=32), f)
    assert np.linalg.norm(_run(q, f) - y_float) < np.linalg.norm(y_rtn - y_float)


def test_awq_shares_one_multiplier_between_matmuls_reading_the_same_input():
    m, w1, _ = _toy()
    w3 = (np.random.default_rng(4).standard_normal((K, H)) * 0.1).astype(np.float32)
    m.graph.initializer.append(numpy_helper.from_array(w3, "w3"))
    m.graph.node.insert(1, helper.make_node("MatMul", ["x", "w3"], ["h3"], name="mm3"))
    m.graph.output.append(helper.make_tensor_value_info("h3", TensorProto.FLOAT, None))
    f = _feeds()
    q = quantize_model(m, algorithm=awq_algorithm(scale_search="absmax"), calibration=f, group_size=32)
    muls = [n for n in q.graph.node if n.op_type == "Mul" and n.input[0] == "x"]
    assert len(muls) == 1  # query/key-like siblings share one m (searched on [W1 W3])
    m1 = numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == muls[0].input[1]))
    qt3 = quantize((w3 / m1[:, None]).astype(np.float32), group_size=32)
    h3 = make_session(q, 1).run(["h3"], f)[0]
    np.testing.assert_allclose(h3, (f["x"] * m1) @ dequantize(qt3), rtol=1e-4, atol=1e-4)


def _toy_transposed():
    """The toy model with ``MatMul(x, Transpose(w1t))``: the stored weight is ``(H, K)``."""
    m, w1, w2t = _toy()
    for t in m.graph.initializer:
        if t.name == "w1":
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w1.T), "w1"))
    m.graph.node.insert(0, helper.make_node("Transpose", ["w1"], ["w1T"], name="tr", perm=[1, 0]))
    m.graph.node[1].input[1] = "w1T"
    return m, w1, w2t


def test_transpose_matmul_is_calibrated_on_the_matmul_activation():
    # the weight's consumer is the Transpose; the activation is input A of the MatMul reading its output
    m, w1, _ = _toy_transposed()
    f = _feeds()
    h1 = collect_stats(m, f, ["x"])["x"].xtx
    q = quantize_model(m, algorithm=gptq_algorithm(act_order=False), calibration=f, group_size=32)
    qt1 = gptq_from_hessian(w1, h1, group_size=32, scale_search="mse")
    cap = make_session(_with_output(q, "r2"), 1).run(["r2"], f)[0]
    np.testing.assert_allclose(cap, np.maximum(f["x"].reshape(-1, K) @ dequantize(qt1), 0), rtol=1e-4, atol=1e-4)
    # AWQ: the Mul lands on x in front of that MatMul, so the graph computes (x * m) @ deq(Q(W / m))
    q = quantize_model(m, algorithm=awq_algorithm(scale_search="absmax"), calibration=f, group_size=32)
    mul = next(n for n in q.graph.node if n.op_type == "Mul" and n.input[0] == "x")
    mm = next(n for n in q.graph.node if n.op_type == "MatMul")
    assert mm.input[0] == mul.output[0]
    y_float, y_rtn = _run(m, f), _run(quantize_model(m, group_size=32), f)
    assert np.linalg.norm(_run(q, f) - y_float) < np.linalg.norm(y_rtn - y_float)


@pytest.mark.parametrize("algorithm", ["gptq", "awq"])
def test_the_users_model_and_file_are_untouched(tmp_path, algorithm):
    import hashlib

    m, _, _ = _toy_transposed()
    before = m.SerializeToString()
    path = tmp_path / "toy.onnx"
    onnx.save(m, str(path))
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, **_feeds())
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, feeds)}
    q1 = quantize_model(m, algorithm=algorithm, calibration=str(feeds), group_size=32)
    q2 = quantize_model(str(path), algorithm=algorithm, calibration=str(feeds), group_size=32)
    assert m.SerializeToString() == before  # no capture outputs, no Mul, no opset change on the caller's object
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, feeds)} == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.npz", "toy.onnx"]
    assert q1.SerializeToString() == q2.SerializeToString()


def test_mse_with_calibration_reports_output_errors_and_changes_nothing():
    m, w1, w2t = _toy_transposed()  # w1: Transpose -> MatMul, w2: Gemm transB=1
    f = _feeds()
    q, rep = quantize_model_with_report(m, algorithm="mse", calibration=f, group_size=32)
    q0, rep0 = quantize_model_with_report(m, algorithm="mse", group_size=32)
    assert q.SerializeToString() == q0.SerializeToString()
    assert all("out_rel_err" not in r.extra for r in rep0.rows)
    st = collect_stats(m, f, ["x", "r2"])
    for name, w, act in (("w1", w1, "x"), ("w2", np.ascontiguousarray(w2t.T), "r2")):  # (K, N)
        h = st[act].xtx
        row = next(r for r in rep.rows if r.name == name)
        for key, qt in (("out_rel_err", quantize_extreme(w, group_size=32, search=True)),
                        ("out_rel_err_rtn", quantize_extreme(w, group_size=32))):
            d = (w - dequantize(qt)).astype(np.float64)
            ref = np.sqrt(np.sum((h @ d) * d) / np.sum((h @ w.astype(np.float64)) * w))
            assert row.extra[key] == pytest.approx(ref, rel=1e-4), (name, key)
        assert row.extra["out_rel_err"] < row.extra["out_rel_err_rtn"]


@pytest.mark.parametrize("algorithm", ["gptq", "awq", "mse"])
def test_cli_calibration_report_columns(tmp_path, capsys, algorithm):
    from monoquant_np.cli import main

    m, _, _ = _toy_transposed()
    src, out, feeds = tmp_path / "toy.onnx", tmp_path / "q.onnx", tmp_path / "feeds.npz"
    onnx.save(m, str(src))
    np.savez(feeds, **_feeds())
    assert main(["quantize", str(src), str(out), "--algorithm", algorithm, "--group-size", "32",
                 "--calibration", str(feeds)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "out" in header and lines[0].count("out err") == 2  # "out err" and "rtn out err"
    _, rep = quantize_model_with_report(m, algorithm=algorithm, calibration=_feeds(), group_size=32)
    for r in rep.rows:
        cells = next(line for line in lines if line.split()[:1] == [r.name]).split()
        # ... rel err, out err, rtn out err, as
        assert cells[-3:-1] == [f"{r.extra['out_rel_err']:.4f}", f"{r.extra['out_rel_err_rtn']:.4f}"]
        assert r.extra["out_rel_err"] < r.extra["out_rel_err_rtn"]
    np.testing.assert_array_equal(_run(onnx.load(str(out)), _feeds()),
                                  _run(quantize_model(m, algorithm=algorithm, calibration=_feeds(), group_size=32),
                                       _feeds()))


def _with_output(model, name):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return m


def test_sequential_calibration_sees_the_quantized_first_layer():
    m, w1, _ = _toy()
    f = _feeds()
    seen = {}
    from monoquant_np.onnx.calibration import stages as calibrate

    real = calibrate.add_rows

    def spy(stats, name, *a, **k):
        real(stats, name, *a, **k)
        seen[name] = stats[name]

    calibrate.add_rows = spy
    try:
        quantize_model(m, algorithm=gptq_algorithm(act_order=False, scale_search="absmax", sequential=True),
                       calibration=f, group_size=32)
    finally:
        calibrate.add_rows = real
    h1 = collect_stats(m, f, ["x"])["x"].xtx
    w1_hat = dequantize(gptq_from_hessian(w1, h1, group_size=32))
    r = np.maximum(f["x"].reshape(-1, K) @ w1_hat, 0).astype(np.float64)
    np.testing.assert_allclose(seen["r2"].xtx, r.T @ r, rtol=1e-4, atol=1e-3)


def _toy_with_layernorm():
    m, _, _ = _toy()
    rng = np.random.default_rng(3)
    gamma, beta = rng.uniform(0.5, 2.0, K).astype(np.float32), rng.normal(0, 0.1, K).astype(np.float32)
    m.graph.initializer.extend([numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")])
    m.graph.node.insert(0, helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln", axis=-1))
    m.graph.node[1].input[0] = "ln"  # mm1 reads the LayerNorm (awq folds its multiplier into gamma and beta)
    return m


@pytest.mark.parametrize("algorithm", ["mse", "gptq", "awq"])
def test_external_data_model_calibrates_like_the_in_memory_one(tmp_path, algorithm):
    # every tensor (weights, LayerNorm gamma/beta, the Reshape shape) in a side file: onnxruntime reads
    # them from the model's folder during calibration, and the twin equals the in-memory model's
    m = _toy_with_layernorm()
    src = tmp_path / "toy.onnx"
    onnx.save(m, str(src), save_as_external_data=True, all_tensors_to_one_file=True, location="toy.data",
              size_threshold=0)
    before = (src.read_bytes(), (tmp_path / "toy.data").read_bytes())
    f = _feeds()
    from_file = quantize_model(str(src), algorithm=algorithm, calibration=f, group_size=32)
    in_memory = quantize_model(onnx.load(str(src)), algorithm=algorithm, calibration=f, group_size=32)
    assert (src.read_bytes(), (tmp_path / "toy.data").read_bytes()) == before  # the input is untouched
    from monoquant_np.onnx.model_io import save_model

    out = tmp_path / "q.onnx"
    save_model(from_file, out, base_dir=str(tmp_path))  # streams the tensors still in toy.data
    np.testing.assert_array_equal(_run(onnx.load(str(out)), f), _run(in_memory, f))
    if algorithm == "awq":
        assert not [n for n in in_memory.graph.node if n.op_type == "Mul" and "ln" in n.input]  # folded


def test_errors_and_helpers(tmp_path):
    m, w1, _ = _toy()
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(m, algorithm="gptq")
    p = tmp_path / "feeds.npz"
    np.savez(p, x=np.zeros((2, 3, K), np.float32), bogus=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown"):
        load_feeds(p, m, batched=True, strict=True)
    with pytest.raises(OSError, match="does not exist"):
        load_feeds(tmp_path / "missing.npz", m)
    qt = gptq_from_hessian(w1, np.eye(K), group_size=32, act_order=True)
    back = transpose(transpose(qt))
    assert back.equals(qt)
    np.testing.assert_array_equal(dequantize(transpose(qt)), dequantize(qt).T)
    with pytest.raises(ValueError, match="at least one sample"):
        quantize_model(m, algorithm="gptq", calibration={k: v[:0] for k, v in _feeds().items()})
    with pytest.raises(ValueError, match="supports scheme"):
        quantize_model(m, algorithm="mse", scheme="nf4")
    with pytest.raises(ValueError, match="double_quant"):
        quantize_model(m, algorithm="gptq", calibration=_feeds(), double_quant=True)


# ------------------------------------------------------------- MiniLM-L3
def _minilm():
    path, tok = minilm_model_path(), minilm_tokenizer_path()
    if path is None or tok is None:
        pytest.skip(f"MiniLM assets absent: {MINILM_INSTALL_HINT}")
    return str(path)


def _embed(model, feeds):
    sess = make_session(model, 1)
    n = feeds["input_ids"].shape[0]
    return np.concatenate([sess.run(["461"], {k: v[i : i + 64] for k, v in feeds.items()})[0]
                           for i in range(0, n, 64)])


def _cos(a, b):
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _openblas_threads(n: int | None) -> int | None:
    """Set NumPy's bundled OpenBLAS to ``n`` threads (None: leave it); the previous count, None if not found.

    What ``OPENBLAS_NUM_THREADS=1`` does, after NumPy is loaded (as threadpoolctl
    does it). GPTQ makes thousands of small BLAS calls between Python steps; on a
    busy 2-core machine two spinning BLAS threads made the MiniLM tests 2-4x slower.
    """
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas*.so*"))
    for path in libs:
        lib = ctypes.CDLL(path)  # the already-loaded library: same handle as NumPy's
        get = getattr(lib, "scipy_openblas_get_num_threads64_", None)
        put = getattr(lib, "scipy_openblas_set_num_threads64_", None)
        if get is not None and put is not None:
            before = int(get())
            if n is not None:
                put(ctypes.c_int(n))
            return before
    return None


@pytest.fixture(scope="module")
def minilm():
    """The model path, evaluation and calibration feeds (different sentences) and the float embeddings.

    128 evaluation sentences (``stdlib_sentences()[:128]``) and 128 calibration
    sentences (``[256:384]``) keep the three MiniLM tests at a few seconds each;
    tools/accuracy_table.py measures on 256 + 256. BLAS runs on one thread
    while they run (:func:`_openblas_threads`).
    """
    src = _minilm()
    before = _openblas_threads(1)
    try:
        yield _minilm_data(src)
    finally:
        if before is not None:
            _openblas_threads(before)


def _minilm_data(src):
    from monoquant_np.onnx.calibration.corpus import minilm_feeds, stdlib_sentences

    s = stdlib_sentences(384)
    assert not set(s[:128]) & set(s[256:384])
    ev, cal = minilm_feeds(s[:128]), minilm_feeds(s[256:384])
    return src, ev, cal, _embed(src, ev)


@pytest.mark.e2e
def test_minilm_mse_floor(minilm):
    src, ev, _, ref = minilm
    assert _openblas_threads(None) in (1, None)  # the fixture's setting holds (None: no bundled OpenBLAS)
    mse = _cos(ref, _embed(quantize_model(src, algorithm="mse"), ev))  # no calibration
    assert mse >= 0.980, mse  # round-to-nearest: 0.970


@pytest.mark.e2e
def test_minilm_gptq_floor_and_report(minilm):
    src, ev, cal, ref = minilm
    q, rep = quantize_model_with_report(src, algorithm="gptq", calibration=cal)
    gptq = _cos(ref, _embed(q, ev))
    assert gptq >= 0.985, gptq
    rows = [r for r in rep.rows if "out_rel_err" in r.extra]
    assert len(rows) == 18
    assert all(r.extra["out_rel_err"] < r.extra["out_rel_err_rtn"] for r in rows)


@pytest.mark.e2e
def test_minilm_matmul_gather_gptq_under_10mb(minilm, tmp_path):
    from monoquant_np.onnx.model_io import save_model

    src, ev, cal, ref = minilm
    q = quantize_model(src, algorithm="gptq", calibration=cal, ops=("MatMul", "Gather"))
    path = tmp_path / "q.onnx"
    save_model(q, str(path))
    size = path.stat().st_size
    assert size <= 10_000_000, size  # float: 69 MB
    cos = _cos(ref, _embed(str(path), ev))
    assert cos >= 0.98, cos  # round-to-nearest: 0.959, onnxruntime's quantizer: 0.936
