"""The quantize / verify / inspect commands: results, and the bad-input contract.

Bad input: one line on stderr, a non-zero exit, no traceback, the input
file's bytes unchanged, and no output (nor temporary) file left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import dequantize
from monoquant_np.algorithms.extreme import quantize_extreme
from monoquant_np.cli import main
from monoquant_np.onnx.runtime import make_session

RNG = np.random.default_rng(7)


def _write_model(path, k=128, n=64, opset=17):
    w = RNG.standard_normal((k, n)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", n])], [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return w


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _one_error_line(capsys, code):
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    return lines[0]


# --------------------------------------------------------------- quantize
def test_quantize_writes_model_table_and_report(tmp_path, capsys):
    src, dst, rep = tmp_path / "f.onnx", tmp_path / "q.onnx", tmp_path / "r.json"
    w = _write_model(src)
    digest = _sha(src)
    assert main(["quantize", str(src), str(dst), "--group-size", "64", "--report", str(rep), "--progress"]) == 0
    out = capsys.readouterr()
    head, rule, row, total, file_line = out.out.strip().splitlines()
    assert head.split() == ["name", "shape", "scheme", "group", "bytes", "before", "bytes", "after", "rel", "err", "as"]
    assert row.split()[:6] == ["W", "128x64", "int4", "64", "32,768", "4,608"]  # codes 4096 + scales 2*64*4
    assert total == "total: 1 weights, 32,768 -> 4,608 bytes (4.500 bits/weight)"  # 8 * 4608 / 8192
    assert file_line.startswith(f"file: {src.stat().st_size:,} -> {dst.stat().st_size:,} bytes (")
    assert "quantized 1 weights" in out.err  # --progress, to stderr
    assert _sha(src) == digest
    d = json.loads(rep.read_text())
    assert d["layers"][0]["shape"] == [128, 64] and d["totals"]["file_bytes_after"] == dst.stat().st_size
    x = RNG.standard_normal((3, 128)).astype(np.float32)
    got = make_session(str(dst)).run(None, {"x": x})[0]
    want = np.maximum(x @ dequantize(quantize_extreme(w, group_size=64)), 0)  # the default scales (spec 14.0)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert sorted(os.listdir(tmp_path)) == ["f.onnx", "q.onnx", "r.json"]


def test_quantize_external_data(tmp_path, capsys):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _write_model(src, k=256, n=128)
    assert main(["quantize", str(src), str(dst), "--external-data"]) == 0
    assert (tmp_path / "q.onnx.data").stat().st_size >= 256 * 128 // 2
    m = onnx.load(str(dst), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer)
    make_session(str(dst)).run(None, {"x": np.ones((1, 256), np.float32)})


def test_nothing_eligible_writes_input_unchanged(tmp_path, capsys):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _write_model(src, k=16, n=16)  # 256 elements < --min-elements 4096
    assert main(["quantize", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "nothing to quantize" in out and "256 elements < min_elements 4096" in out
    n = src.stat().st_size
    assert out.strip().splitlines()[-1] == f"file: {n:,} -> {n:,} bytes (unchanged)"
    assert _sha(dst) == _sha(src)


# ------------------------------------------------------------- bad input
def _bad_files(tmp_path):
    good = tmp_path / "good.onnx"
    _write_model(good)
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    data = good.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.onnx").symlink_to(good)
    m = onnx.load(str(good))
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[3, 4] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "W"))
    onnx.save(m, str(tmp_path / "nan.onnx"))
    np.savez(tmp_path / "names.npz", foo=np.ones((2, 128), np.float32))
    np.savez(tmp_path / "shape.npz", x=np.ones((2, 17), np.float32))
    return good


@pytest.mark.parametrize("case,expect", [
    ("missing", "does not exist"),
    ("text", "not a readable ONNX model"),
    ("trunc", "not a readable ONNX model"),
    ("empty", "is empty"),
    ("same", "is the input file"),
    ("nofolder", "does not exist"),
    ("group0", "expected a positive int"),
    ("badops", "ops entry must be one of"),
    ("badformat", "invalid choice"),
    ("gptq", "needs calibration inputs"),
    ("badregex", "valid regular expression"),
    ("asym_int4", "--asymmetric means --scheme uint4"),
    ("same_dotted", "is the input file"),
    ("same_symlink", "is the input file"),
    ("report_is_output", "is the output model's file"),
    ("report_is_input", "is the input file"),
    ("nan_weight", "weight 'W' (128, 64): w must be finite"),
    ("accuracy_qdq", "--accuracy-level is an attribute of MatMulNBits nodes"),
    ("calib_missing", "calibration file"),
    ("calib_not_npz", "is not a readable .npz"),
    ("calib_names", "calibration inputs lack the model input(s) ['x']"),
    ("calib_shape", "input 'x' has shape (2, 17), the model takes (b, 128)"),
])
def test_quantize_bad_input(tmp_path, capsys, case, expect):
    good = _bad_files(tmp_path)
    out = str(tmp_path / "out.onnx")
    args = {
        "missing": [str(tmp_path / "nope.onnx"), out],
        "text": [str(tmp_path / "text.onnx"), out],
        "trunc": [str(tmp_path / "trunc.onnx"), out],
        "empty": [str(tmp_path / "empty.onnx"), out],
        "same": [str(good), str(good)],
        "nofolder": [str(good), str(tmp_path / "no" / "out.onnx")],
        "group0": [str(good), out, "--group-size", "0"],
        "badops": [str(good), out, "--ops", "MatMul,Conv"],
        "badformat": [str(good), out, "--format", "gguf"],
        "gptq": [str(good), out, "--algorithm", "gptq"],
        "badregex": [str(good), out, "--exclude", "("],
        "asym_int4": [str(good), out, "--asymmetric", "--scheme", "int4"],
        "same_dotted": [str(good), str(tmp_path / "sub" / ".." / "good.onnx")],
        "same_symlink": [str(good), str(tmp_path / "link.onnx")],
        "report_is_output": [str(good), out, "--report", str(tmp_path / "sub" / ".." / "out.onnx")],
        "report_is_input": [str(good), out, "--report", str(good)],
        "nan_weight": [str(tmp_path / "nan.onnx"), out],
        "accuracy_qdq": [str(good), out, "--accuracy-level", "4"],
        "calib_missing": [str(good), out, "--algorithm", "gptq", "--calibration", str(tmp_path / "nope.npz")],
        "calib_not_npz": [str(good), out, "--algorithm", "gptq", "--calibration", str(tmp_path / "text.onnx")],
        "calib_names": [str(good), out, "--algorithm", "gptq", "--calibration", str(tmp_path / "names.npz")],
        "calib_shape": [str(good), out, "--algorithm", "gptq", "--calibration", str(tmp_path / "shape.npz")],
    }[case]
    files = [p for p in os.listdir(tmp_path) if p != "sub"]
    before = {p: _sha(tmp_path / p) for p in files}
    line = _one_error_line(capsys, main(["quantize", *args]))
    assert expect in line
    assert {p: _sha(tmp_path / p) for p in os.listdir(tmp_path) if p != "sub"} == before  # untouched, nothing new
    assert not os.listdir(tmp_path / "sub")


def test_failed_write_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    good = _bad_files(tmp_path)
    from monoquant_np.onnx.streaming import DataFile

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(DataFile, "externalize", boom)
    before = sorted(os.listdir(tmp_path))
    line = _one_error_line(capsys, main(["quantize", str(good), str(tmp_path / "out.onnx"), "--external-data"]))
    assert "disk full" in line
    assert sorted(os.listdir(tmp_path)) == before


def test_output_side_file_may_not_replace_the_inputs(tmp_path, capsys):
    src = tmp_path / "a.onnx"
    _write_model(src)
    m = onnx.load(str(src))
    onnx.save(m, str(src), save_as_external_data=True, location="b.onnx.data", size_threshold=0)
    data = _sha(tmp_path / "b.onnx.data")
    # b.onnx --external-data would write b.onnx.data: the input's side file
    line = _one_error_line(capsys, main(["quantize", str(src), str(tmp_path / "b.onnx"), "--external-data"]))
    assert "is the input file" in line and "b.onnx.data" in line
    assert _sha(tmp_path / "b.onnx.data") == data and sorted(os.listdir(tmp_path)) == ["a.onnx", "b.onnx.data"]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_external_data_is_one_error_line_and_no_output(tmp_path, capsys, damage):
    w = RNG.standard_normal((256, 128)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Gather", ["B", "i"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 256]),
         helper.make_tensor_value_info("i", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ones(300, np.float32), "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.save(m, str(tmp_path / "e.onnx"), save_as_external_data=True, location="e.data", size_threshold=0)
    data = tmp_path / "e.data"
    if damage == "missing":
        data.unlink()
    else:  # W (read for quantizing) is whole; B, copied across as it is, lost its last bytes
        os.truncate(data, data.stat().st_size - 1100)
    before = {p: _sha(tmp_path / p) for p in os.listdir(tmp_path)}
    line = _one_error_line(capsys, main(["quantize", str(tmp_path / "e.onnx"), str(tmp_path / "o.onnx")]))
    assert ("does not exist" if damage == "missing" else "'B' in") in line and "e.data" in line
    assert {p: _sha(tmp_path / p) for p in os.listdir(tmp_path)} == before


def test_output_mode_follows_umask_and_stale_side_file_not_counted(tmp_path, capsys):
    src, dst, rep = tmp_path / "f.onnx", tmp_path / "q.onnx", tmp_path / "r.json"
    _write_model(src)
    (tmp_path / "q.onnx.data").write_bytes(b"\0" * 100_000)  # left over from an earlier --external-data run
    old = os.umask(0o022)
    try:
        assert main(["quantize", str(src), str(dst), "--report", str(rep)]) == 0
    finally:
        os.umask(old)
    assert (dst.stat().st_mode & 0o777, rep.stat().st_mode & 0o777) == (0o644, 0o644)  # not mkstemp's 0600
    assert json.loads(rep.read_text())["totals"]["file_bytes_after"] == dst.stat().st_size


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    good = _bad_files(tmp_path)
    r = subprocess.run([sys.executable, "-m", "monoquant_np", "quantize", str(tmp_path / "trunc.onnx"),
                        str(tmp_path / "o.onnx")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "monoquant_np", "quantize", str(good), str(good)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is the input file" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------- verify
def test_verify_generated_and_given_inputs(tmp_path, capsys):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _write_model(src)
    assert main(["quantize", str(src), str(dst)]) == 0
    capsys.readouterr()
    assert main(["verify", str(src), str(dst), "--min-cosine", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "z" in out and "cosine" in out
    assert main(["verify", str(src), str(dst), "--min-cosine", "0.999999"]) == 1
    assert "below --min-cosine" in capsys.readouterr().err
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.ones((2, 128), np.float32))
    assert main(["verify", str(src), str(src), "--inputs", str(feeds), "--min-cosine", "1.0"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("z")][0]
    assert row.split()[2:] == ["0", "0", "1.000000"]  # identical models: zero error, cosine 1


def test_verify_nan_output_fails_min_cosine(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    for name, op in (("ref.onnx", "Abs"), ("cand.onnx", "Sqrt")):  # sqrt of a negative input: NaN
        m = helper.make_model(helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 21)])
        m.ir_version = 10
        onnx.save(m, str(tmp_path / name))
    np.savez(tmp_path / "f.npz", x=-np.ones((2, 3), np.float32))
    code = main(["verify", str(tmp_path / "ref.onnx"), str(tmp_path / "cand.onnx"), "--inputs",
                 str(tmp_path / "f.npz"), "--min-cosine", "0.5"])
    assert code == 1 and "y (nan)" in capsys.readouterr().err


@pytest.mark.parametrize("args,expect", [
    (["missing.onnx", "good.onnx"], "does not exist"),
    (["good.onnx", "text.onnx"], "not a readable ONNX model"),
    (["good.onnx", "good.onnx", "--min-cosine", "2"], "expected a number in [-1, 1]"),
    (["good.onnx", "good.onnx", "--inputs", "text.onnx"], "not a readable .npz"),
    (["good.onnx", "good.onnx", "--inputs", "names.npz"], "lack the model input(s) ['x']"),
    (["good.onnx", "good.onnx", "--inputs", "shape.npz"], "input 'x' has shape (2, 17), the model takes (b, 128)"),
])
def test_verify_bad_input(tmp_path, capsys, monkeypatch, args, expect):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert expect in _one_error_line(capsys, main(["verify", *args]))


# ---------------------------------------------------------------- inspect
def test_inspect_float_and_quantized(tmp_path, capsys):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _write_model(src)
    assert main(["inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "quantized: 0 weights" in out
    assert main(["quantize", str(src), str(dst), "--format", "matmulnbits", "--group-size", "32"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(dst), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (t,) = d["tensors"]
    assert (t["scheme"], t["group_size"], t["stored_as"], t["shape"]) == ("int4", 32, "MatMulNBits", [128, 64])
    assert t["nbytes"] == 128 * 64 // 2 + 4 * 64 * 4  # codes + (N, 4 blocks) float32 scales
    assert d["totals"]["opset"] == 21 and d["totals"]["ir_version"] == 10
    assert "not a readable ONNX model" in _one_error_line(capsys, main(["inspect", str(_bad_files(tmp_path).parent
                                                                                      / "text.onnx")]))


@pytest.mark.parametrize("symmetric", [True, False])
def test_inspect_onnxruntime_quantizer_output(tmp_path, capsys, symmetric):
    pytest.importorskip("onnx_ir", reason="onnxruntime's matmul_nbits_quantizer imports onnx-ir")
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    w, table = RNG.standard_normal((128, 64)).astype(np.float32), RNG.standard_normal((100, 64)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gather", ["E", "i"], ["h"]), helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 128]),
         helper.make_tensor_value_info("i", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["n", 64])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(table, "E")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=symmetric, accuracy_level=None,
                                       op_types_to_quantize=("MatMul", "Gather"))
    logging.disable(logging.WARNING)
    try:
        q = MatMulNBitsQuantizer(m, algo_config=cfg)
        q.process()
    finally:
        logging.disable(logging.NOTSET)
    onnx.save(q.model.model, str(tmp_path / "ort.onnx"))
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "ort.onnx"), "--json"]) == 0
    rows = {t["stored_as"]: t for t in json.loads(capsys.readouterr().out)["tensors"]}
    zp = 0 if symmetric else 1
    # MatMulNBits (64, 4 blocks, 16 bytes) codes + (64, 4) float32 scales [+ (64, 2) uint8 zero points]
    m_row = rows["MatMulNBits"]
    assert (m_row["shape"], m_row["group_size"], m_row["nbytes"]) == ([128, 64], 32, 4096 + 1024 + zp * 128)
    # GatherBlockQuantized (100, 64) int4 codes + (100, 2) float32 scales [+ (100, 2) uint4 zero points]
    g_row = rows["GatherBlockQuantized"]
    assert (g_row["shape"], g_row["group_size"], g_row["nbytes"]) == ([100, 64], 32, 3200 + 800 + zp * 100)
    assert {m_row["scheme"], g_row["scheme"]} == {"int4" if symmetric else "uint4"}


def test_a_multi_line_error_prints_as_one_line(tmp_path, capsys):
    """A message with line breaks (here an argparse-free ValueError raised by a command) is one stderr line."""
    from monoquant_np import cli

    bad = tmp_path / "graph.onnx"
    bad.write_bytes(b"\n\nnot a protobuf\n\n")
    assert cli.main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("monoquant-np: error:")
    assert cli.one_line("a\n  b\r\n\nc") == "a b c"
