"""Outputs of ``quantize`` (spec 13.6, 13.9): all or nothing, fsynced, never a special file, any legal name;
models newer than the versions the quantizer knows are refused; a bare command is one error line.

"Nothing new" is checked by listing the folder before and after: a failed run leaves neither the model,
its data file, the report, nor a ``.mq-*.tmp`` temporary.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import monoquant_np.onnx.commands as commands
from monoquant_np.cli import main
from monoquant_np.onnx import quantize_model
from monoquant_np.onnx.streaming import DataFile


def _write_model(path, opset=17, ir=8):
    w = np.random.default_rng(1).standard_normal((128, 64)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 128])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    path.write_bytes(m.SerializeToString())
    return m


def _one_line(capsys, code, expect=2):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == expect and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


# ------------------------------------------------------------- a failed report leaves no model either
def test_report_that_cannot_be_written_leaves_no_model(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.onnx"
    _write_model(src)

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(commands, "write_text_atomic", full)
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx"), "--external-data",
                                   "--report", str(tmp_path / "r.json")]))
    assert "No space left on device" in line and "r.json" in line
    assert sorted(os.listdir(tmp_path)) == ["f.onnx"]


def test_failed_rename_removes_the_files_already_published(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.onnx"
    _write_model(src)
    real, calls = os.replace, []

    def replace(a, b):
        calls.append(os.path.basename(b))
        if len(calls) == 3:  # q.onnx.data and q.onnx are in place; the report's rename fails
            raise OSError(errno.EIO, "Input/output error")
        real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx"), "--external-data",
                                   "--report", str(tmp_path / "r.json")]))
    assert calls == ["q.onnx.data", "q.onnx", "r.json"] and "Input/output error" in line and "r.json" in line
    assert sorted(os.listdir(tmp_path)) == ["f.onnx"]


def test_every_file_is_fsynced_before_its_rename(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.onnx"
    _write_model(src)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(a), os.path.basename(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert main(["quantize", str(src), str(tmp_path / "q.onnx"), "--external-data",
                 "--report", str(tmp_path / "r.json")]) == 0
    renames = [e for e in events if e[0] == "replace"]
    assert [e[2] for e in renames] == ["q.onnx.data", "q.onnx", "r.json"]
    first_rename = events.index(renames[0])
    synced = {e[1] for e in events[:first_rename] if e[0] == "fsync"}
    assert {e[1] for e in renames} <= synced  # every temporary synced before any rename
    assert ("fsync", tmp_path.name) in events[first_rename:]  # and the folder after
    assert sorted(os.listdir(tmp_path)) == ["f.onnx", "q.onnx", "q.onnx.data", "r.json"]


def test_no_space_message_names_the_file(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.onnx"
    _write_model(src)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DataFile, "externalize", full)
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx"), "--external-data"]))
    assert "No space left on device" in line and repr(str(tmp_path / "q.onnx.data")) in line
    monkeypatch.setattr(os, "fsync", full)
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx")]))
    assert "No space left on device" in line and repr(str(tmp_path / "q.onnx")) in line
    assert sorted(os.listdir(tmp_path)) == ["f.onnx"]


# ------------------------------------------------------------- output names and special files
def test_longest_legal_output_name_works(tmp_path, capsys):
    src = tmp_path / "f.onnx"
    _write_model(src)
    name = "q" * 240 + ".onnx"  # 245 characters: OUT.data is 250, within the 255 a folder allows
    assert main(["quantize", str(src), str(tmp_path / name), "--external-data"]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["f.onnx", name, name + ".data"])
    name = "q" * 250 + ".onnx"  # 255: the model's name is legal, its data file's is not: refused up front
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / name), "--external-data"]))
    assert "long" in line and ".onnx.data" in line
    assert len(os.listdir(tmp_path)) == 3


def _special(tmp_path, kind):
    p = tmp_path / f"{kind}.onnx"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        cwd = os.getcwd()
        os.chdir(tmp_path)  # a relative name: AF_UNIX paths are limited to about 100 bytes
        try:
            s.bind(p.name)
        finally:
            os.chdir(cwd)
            s.close()
    else:
        try:
            os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a null device of our own
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    return p


@pytest.mark.parametrize(("kind", "word"), [("fifo", "a FIFO"), ("socket", "a socket"), ("device", "a device")])
def test_special_file_at_the_output_is_refused_never_replaced(tmp_path, capsys, kind, word):
    src = tmp_path / "f.onnx"
    _write_model(src)
    p = _special(tmp_path, kind)
    mode = os.lstat(p).st_mode
    for args in ([str(p)], [str(tmp_path / "q.onnx"), "--report", str(p)]):
        line = _one_line(capsys, main(["quantize", str(src), *args]))
        assert f"is {word}" in line and "never replaced" in line
        assert os.lstat(p).st_mode == mode and sorted(os.listdir(tmp_path)) == sorted(["f.onnx", p.name])


# ------------------------------------------------------------- opset and IR versions
@pytest.mark.parametrize(("opset", "ir"), [(99, 99), (29, 10), (21, 15)])
def test_newer_opset_or_ir_is_refused_naming_both(tmp_path, capsys, opset, ir):
    src = tmp_path / "f.onnx"
    m = _write_model(src, opset, ir)
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx")]))
    assert f"opset {opset} and IR version {ir}" in line and "opset 28 and IR version 14" in line
    assert sorted(os.listdir(tmp_path)) == ["f.onnx"]
    with pytest.raises(ValueError, match=f"opset {opset} and IR version {ir}"):
        quantize_model(m)


def test_newest_known_opset_gives_a_model_onnxruntime_loads(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    src = tmp_path / "f.onnx"
    _write_model(src, 28, 11)
    try:
        ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    except Exception:
        pytest.skip("the installed onnxruntime does not load opset 28 itself")
    assert main(["quantize", str(src), str(tmp_path / "q.onnx")]) == 0
    s = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    y = s.run(None, {"x": np.ones((1, 128), np.float32)})[0]
    assert y.shape == (1, 64) and np.isfinite(y).all()
    assert onnx.load(str(tmp_path / "q.onnx")).opset_import[0].version == 28


# ------------------------------------------------------------- a bare command
def test_bare_command_is_one_error_line(capsys):
    line = _one_line(capsys, main([]))
    assert line.startswith("monoquant-np: error: a command is required") and "--help" in line
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------- the report may not replace another file of the run
def test_report_may_be_neither_the_data_file_nor_an_input_side_file(tmp_path, capsys):
    src = tmp_path / "f.onnx"
    m = _write_model(src)
    onnx.save(m, str(tmp_path / "e.onnx"), save_as_external_data=True, location="e.data", size_threshold=0)
    data = (tmp_path / "e.data").read_bytes()
    line = _one_line(capsys, main(["quantize", str(src), str(tmp_path / "q.onnx"), "--external-data",
                                   "--report", str(tmp_path / "q.onnx.data")]))
    assert "is the output model's data file" in line
    line = _one_line(capsys, main(["quantize", str(tmp_path / "e.onnx"), str(tmp_path / "q.onnx"),
                                   "--report", str(tmp_path / "e.data")]))
    assert "--report" in line and "is the input file" in line
    assert (tmp_path / "e.data").read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["e.data", "e.onnx", "f.onnx"]
