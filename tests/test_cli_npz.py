"""Damaged and oversized ``.npz`` files through ``--calibration`` and ``verify --inputs`` (spec 8.3, 13.9).

Each is one line on stderr naming the file and the member, exit 2, nothing
written, the file unchanged.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.cli import main
from monoquant_np.onnx.feeds import MAX_BYTES_ENV
from monoquant_np.testing.zipcraft import DEFLATED, Member, deflate, npy_bytes, npy_header, raw_zip, zeros_deflate

X = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)


def _model(path):
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 32])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _feeds(case, path):
    good = npy_bytes(X)
    head = npy_header("<f4", (1 << 28,))
    member = {
        "corrupt_deflate": Member("x.npy", b"\xff" * 40, DEFLATED, plain=good),
        "encrypted": Member("x.npy", good, flags=1),
        "method99": Member("x.npy", good, 99),
        "huge_header": Member("x.npy", npy_header("<f4", (10**12,))),
        "bad_crc": Member("x.npy", deflate(good), DEFLATED, plain=good, crc=1),
        "bomb": Member("x.npy", zeros_deflate(1024, head), DEFLATED, size=len(head) + (1 << 30), crc=0),
        "object": Member("x.npy", npy_header("|O", (4, 64))),
    }[case]
    raw_zip(path, [member])


EXPECT = {
    "corrupt_deflate": "member 'x.npy': corrupt compressed data",
    "encrypted": "member 'x.npy': the member is encrypted",
    "method99": "member 'x.npy': compression method 99",
    "huge_header": "member 'x.npy': its .npy header declares float32 (1000000000000,)",
    "bad_crc": "member 'x.npy': BadZipFile: Bad CRC-32",
    "bomb": f"declare 1073741952 bytes uncompressed (largest 'x': 1073741952), above the limit of 536870912 bytes "
            f"(set {MAX_BYTES_ENV} to raise it)",
    "object": "member 'x.npy': dtype '|O' is not read",
}


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("command", ["calibration", "verify"])
@pytest.mark.parametrize("case", sorted(EXPECT))
def test_damaged_npz_is_one_line(tmp_path, capsys, monkeypatch, command, case):
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)  # the default 512 MiB: the 1 GiB bomb is over it
    _model(tmp_path / "m.onnx")
    _feeds(case, tmp_path / "f.npz")
    before = {p: _sha(tmp_path / p) for p in os.listdir(tmp_path)}
    args = {"calibration": ["quantize", str(tmp_path / "m.onnx"), str(tmp_path / "out.onnx"), "--algorithm",
                            "gptq", "--calibration", str(tmp_path / "f.npz"), "--min-elements", "0"],
            "verify": ["verify", str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx"), "--inputs",
                       str(tmp_path / "f.npz")]}[command]
    code = main(args)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out.err, out.err
    what = "calibration file" if command == "calibration" else "inputs file"
    assert lines[0].startswith(f"monoquant-np: error: {what} {str(tmp_path / 'f.npz')!r}")
    assert EXPECT[case] in lines[0], lines[0]
    assert {p: _sha(tmp_path / p) for p in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_bad_limit_variable_is_one_line(tmp_path, capsys, monkeypatch, value):
    monkeypatch.setenv(MAX_BYTES_ENV, value)
    _model(tmp_path / "m.onnx")
    np.savez(tmp_path / "f.npz", x=X)
    assert main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx"), "--inputs",
                 str(tmp_path / "f.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"monoquant-np: error: {MAX_BYTES_ENV} must be a number of bytes (an int >= 0), got {value!r}"]


def test_limit_variable_admits_what_fits(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(MAX_BYTES_ENV, str(X.nbytes))
    _model(tmp_path / "m.onnx")
    np.savez_compressed(tmp_path / "f.npz", x=X)
    assert main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx"), "--inputs",
                 str(tmp_path / "f.npz")]) == 0
    assert "1.000000" in capsys.readouterr().out
    monkeypatch.setenv(MAX_BYTES_ENV, str(X.nbytes - 1))
    assert main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx"), "--inputs",
                 str(tmp_path / "f.npz")]) == 2
