"""The trust boundary (spec 13.6): external data is read only from regular files inside the model's folder.

A model whose tensor's ``external_data`` location climbs out with ``..``, is an
absolute path (a system file, procfs), is a symlink leading out of the folder,
is a folder or a FIFO, or whose ``offset + length`` passes the end of its file,
is refused before anything is read or written: one ``ValueError`` naming the
tensor and the location (one stderr line and exit 2 on the command line), the
input folder unchanged, no output.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.cli import main
from monoquant_np.onnx import quantize_model
from monoquant_np.onnx.inspect import inspect_model
from monoquant_np.onnx.model_io import load_model
from monoquant_np.onnx.tensors import tensor_array

SECRET = b"SECRET=hunter2\n" * 200  # 3000 bytes: enough for either tensor, so a read would succeed


def _model_dir(tmp_path):
    """``tmp_path/m/e.onnx`` whose MatMul weight W (128, 64) and Gather table B (300,) live in ``e.data``;
    ``tmp_path/secret.bin`` next to the folder; inside it a sub-folder, a FIFO, symlinks (out, to a folder
    out, and to ``e.data``) and a file hard-linked from outside."""
    d = tmp_path / "m"
    d.mkdir()
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Gather", ["B", "i"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 128]),
         helper.make_tensor_value_info("i", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((128, 64)).astype(np.float32), "W"),
         numpy_helper.from_array(np.ones(300, np.float32), "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.save(m, str(d / "e.onnx"), save_as_external_data=True, location="e.data", size_threshold=0)
    (tmp_path / "secret.bin").write_bytes(SECRET)
    (d / "sub").mkdir()
    os.mkfifo(d / "fifo")
    (d / "out.bin").symlink_to(tmp_path / "secret.bin")
    (d / "up").symlink_to(tmp_path)
    (d / "alias.data").symlink_to("e.data")
    (d / "hard.data").write_bytes((d / "e.data").read_bytes())
    os.link(d / "hard.data", tmp_path / "hard.data")  # the other name is outside the folder
    return d


def _relocate(d, tensor, **entries):
    """Rewrite ``tensor``'s external_data entries of ``d/e.onnx`` (location, offset, length)."""
    m = onnx.load(str(d / "e.onnx"), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == tensor)
    info = {e.key: e.value for e in t.external_data}
    info.update({k: str(v) for k, v in entries.items()})
    del t.external_data[:]
    for k, v in info.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    (d / "e.onnx").write_bytes(m.SerializeToString())


def _snapshot(root):
    """Every path under ``root`` with the sha256 of each regular file (FIFOs and folders by kind)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
            else:
                out[p] = "link" if os.path.islink(p) else "other"
    return out


CASES = {  # name: (tensor, entries, words the error line must hold)
    "relative_escape": ("B", {"location": "../secret.bin"}, "climbs out"),
    "deep_escape_to_procfs": ("B", {"location": "../" * 40 + "proc/self/environ"}, "climbs out"),
    "absolute": ("B", {"location": "SECRET_ABS"}, "absolute path"),
    "procfs": ("W", {"location": "/proc/self/environ", "offset": 0}, "absolute path"),
    "weight_escape": ("W", {"location": "../secret.bin", "offset": 0}, "climbs out"),
    "symlink_out": ("B", {"location": "out.bin", "offset": 0}, "outside the model's folder"),
    "folder_symlink_out": ("B", {"location": "up/secret.bin", "offset": 0}, "outside the model's folder"),
    "symlink_inside": ("B", {"location": "alias.data"}, "symbolic link"),
    "hard_link": ("B", {"location": "hard.data"}, "hard links"),
    "folder": ("B", {"location": "sub"}, "not a regular file"),
    "fifo": ("B", {"location": "fifo"}, "not a regular file"),
    "past_end": ("B", {"offset": 33000, "length": 1200}, "past the end"),
    "length_mismatch": ("B", {"length": 1196}, "need 1200 bytes"),
    "bad_offset": ("B", {"offset": "-64"}, "not an integer"),
    "empty_location": ("B", {"location": ""}, "is empty"),
}


def _case(tmp_path, name):
    d = _model_dir(tmp_path)
    tensor, entries, words = CASES[name]
    entries = {k: (str(tmp_path / "secret.bin") if v == "SECRET_ABS" else v) for k, v in entries.items()}
    _relocate(d, tensor, **entries)
    return d, tensor, entries.get("location", "e.data"), words


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_refuses_external_data_outside_the_folder(tmp_path, capsys, name):
    d, tensor, location, words = _case(tmp_path, name)
    before = _snapshot(tmp_path)
    code = main(["quantize", str(d / "e.onnx"), str(d / "q.onnx"), "--ops", "MatMul,Gather", "--min-elements", "0",
                 "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"tensor {tensor!r}" in lines[0] and words in lines[0], lines[0]
    if location:
        assert repr(location)[1:-1][:60] in lines[0]
    assert "hunter2" not in err
    assert _snapshot(tmp_path) == before  # nothing read into an output, nothing written


@pytest.mark.parametrize("name", ["relative_escape", "absolute", "symlink_out", "procfs", "past_end", "fifo"])
def test_python_api_refuses_external_data_outside_the_folder(tmp_path, name):
    d, tensor, _, words = _case(tmp_path, name)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=words) as e:
        quantize_model(d / "e.onnx", min_elements=0, ops="MatMul,Gather")
    assert f"tensor {tensor!r}" in str(e.value)
    for call in (lambda: load_model(d / "e.onnx"), lambda: inspect_model(d / "e.onnx")):
        with pytest.raises(ValueError, match=words):
            call()
    m = onnx.load(str(d / "e.onnx"), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == tensor)
    with pytest.raises(ValueError, match=words):  # a reader given the model proto and its folder
        tensor_array(t, d)
    assert _snapshot(tmp_path) == before


def test_verify_refuses_external_data_outside_the_folder(tmp_path, capsys):
    d, _, _, _ = _case(tmp_path, "relative_escape")
    code = main(["verify", str(d / "e.onnx"), str(d / "e.onnx")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "climbs out" in lines[0] and "'B'" in lines[0]


@pytest.mark.parametrize("location", ["e.data", "./e.data", "inner/e.data"])
def test_locations_inside_the_folder_are_read(tmp_path, capsys, location):
    d = tmp_path / "m"
    _model_dir(tmp_path)
    w = numpy_helper.to_array(onnx.load(str(d / "e.onnx")).graph.initializer[0])
    if location.startswith("inner/"):
        (d / "inner").mkdir()
        os.replace(d / "e.data", d / "inner" / "e.data")
    _relocate(d, "W", location=location)
    _relocate(d, "B", location=location)
    assert main(["quantize", str(d / "e.onnx"), str(d / "q.onnx")]) == 0
    assert np.array_equal(numpy_helper.to_array(load_model(d / "e.onnx").graph.initializer[0]), w)
    assert np.array_equal(tensor_array(load_model(d / "e.onnx", load_external_data=False).graph.initializer[0], d), w)


def _inline_model(tmp_path, dims, raw_len=None):
    """``tmp_path/bad.onnx``: a MatMul whose weight W is stored with ``dims`` (and ``raw_len`` bytes)."""
    w = np.ones((16, 16), np.float32)
    t = numpy_helper.from_array(w, "W")
    del t.dims[:]
    t.dims.extend(dims)
    if raw_len is not None:
        t.raw_data = bytes(raw_len)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    (tmp_path / "bad.onnx").write_bytes(m.SerializeToString())
    return m


@pytest.mark.parametrize(("dims", "raw_len", "words"), [
    ((-1, 16), 0, "dims (-1, 16): a dimension is negative"),
    ((16, -16), 1024, "dims (16, -16): a dimension is negative"),
    ((16, 16), 100, "holds 100 bytes of raw data, its dims (16, 16) and type need 1024"),
    ((1 << 40, 1 << 40), 1024, "holds 1024 bytes of raw data"),
])
def test_invalid_dims_are_one_line_and_nothing_written(tmp_path, capsys, dims, raw_len, words):
    m = _inline_model(tmp_path, dims, raw_len)
    before = _snapshot(tmp_path)
    for cmd in (["quantize", str(tmp_path / "bad.onnx"), str(tmp_path / "q.onnx"), "--min-elements", "0"],
                ["inspect", str(tmp_path / "bad.onnx")]):
        code = main(cmd)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0] and "'W'" in lines[0], lines
    assert _snapshot(tmp_path) == before
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        quantize_model(m, min_elements=0)


def _external(t, location):
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "4")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


@pytest.mark.parametrize("where", ["attribute", "subgraph", "function"])
def test_every_tensor_of_the_model_is_checked(tmp_path, capsys, where):
    """A ConstantOfShape value, a Constant inside an If branch, a Constant inside a model function."""
    (tmp_path / "secret.bin").write_bytes(SECRET)
    d = tmp_path / "m"
    d.mkdir()
    bad = _external(numpy_helper.from_array(np.ones(1, np.float32), "bad"), "../secret.bin")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "z"], ["o"])]
    inits = [numpy_helper.from_array(np.ones((128, 64), np.float32), "W"),
             numpy_helper.from_array(np.array([64], np.int64), "shape")]
    functions = []
    if where == "attribute":
        nodes.append(helper.make_node("ConstantOfShape", ["shape"], ["z"], value=bad))
    elif where == "subgraph":
        out = helper.make_tensor_value_info("k", TensorProto.FLOAT, [1])
        branch = helper.make_graph([helper.make_node("Constant", [], ["k"], value=bad)], "b", [], [out])
        nodes.append(helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch))
        inits.append(numpy_helper.from_array(np.array(True), "c"))
    else:
        body = [helper.make_node("Constant", [], ["k"], value=bad)]
        functions.append(helper.make_function("local", "F", [], ["k"], body, [helper.make_opsetid("", 17)]))
        nodes.append(helper.make_node("F", [], ["z"], domain="local"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 128])],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=functions)
    m.ir_version = 8
    (d / "h.onnx").write_bytes(m.SerializeToString())
    code = main(["quantize", str(d / "h.onnx"), str(d / "q.onnx")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "tensor 'bad'" in lines[0] and "climbs out" in lines[0], lines
    assert sorted(os.listdir(d)) == ["h.onnx"]
