"""Fuzzing the command line's promise with damaged models and ``.npz`` files (spec 8.3, 13.9, 15).

Each draw damages a small valid file: bit flips, overwritten or inserted
bytes, truncation (biased towards the zip and ``.npy`` headers and the
protobuf's start); for models, a field changed through the protobuf API
(element types, dims, raw data, op types, opsets, IR version, node inputs,
external data locations, attributes); for feeds, a well-formed ``.npz`` with
a drawn dtype, shape, value (out-of-range token ids included) and name. The CLI then runs in-process on it and, on every
draw, must keep its promise:

* exit 0 with nothing on stderr, or a non-zero exit with exactly one line on
  stderr and no traceback (a warning counts as a line; onnxruntime's own log
  lines on file descriptor 2 too);
* the damaged input's bytes unchanged;
* no partial output: after a failure the folder holds exactly what it held
  before; after a success each output loads whole.

Draws per run: 60 damaged models (quantize, inspect or verify), 60 damaged
calibration / verify-input ``.npz`` files, and 60 damaged monoquant-np files
through ``monoquant_np.load`` (which must return or raise ``ValueError`` /
``OSError``): 180 in all, each on a fresh copy in its own folder.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from monoquant_np import load, quantize, save
from monoquant_np.cli import main

DRAWS = 60
FUZZ = settings(max_examples=DRAWS, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
RNG = np.random.default_rng(11)
TABLE = RNG.standard_normal((50, 32)).astype(np.float32)
WEIGHT = RNG.standard_normal((32, 32)).astype(np.float32)
IDS = RNG.integers(0, 50, size=(4, 6)).astype(np.int64)


def _model() -> onnx.ModelProto:
    """input_ids (b, s) -> Gather(E (50, 32)) -> MatMul(W (32, 32)) -> Add(bias) -> y."""
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["e"], name="emb"),
             helper.make_node("MatMul", ["e", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "B"], ["y"], name="add")]
    inits = [numpy_helper.from_array(TABLE, "E"), numpy_helper.from_array(WEIGHT, "W"),
             numpy_helper.from_array(np.ones(32, np.float32), "B")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 32])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in folder.iterdir() if p.is_file()}


@st.composite
def _byte_damage(draw, n: int) -> tuple[str, int, bytes, tuple[int, ...]]:
    """``(kind, position, bytes, more positions)`` of one damage to ``n`` bytes, positions biased to both ends."""
    pos = draw(st.one_of(st.integers(0, min(n - 1, 80)), st.integers(max(0, n - 160), n - 1), st.integers(0, n - 1)))
    kind = draw(st.sampled_from(["flip", "overwrite", "insert", "truncate"]))
    chunk = draw(st.sampled_from([b"\x00", b"\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x7f", b"\x01\x02"]))
    more = tuple(draw(st.lists(st.integers(0, 8 * n - 1), max_size=3))) if kind == "flip" else ()
    return kind, pos, chunk, more


def _damaged(blob: bytes, damage: tuple[str, int, bytes, tuple[int, ...]]) -> bytes:
    """``blob`` with ``damage`` (from :func:`_byte_damage`) applied."""
    kind, pos, chunk, more = damage
    if kind == "flip":
        out = bytearray(blob)
        for bit in (8 * pos + chunk[0] % 8, *more):
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind == "overwrite":
        return blob[:pos] + chunk + blob[pos + len(chunk):]
    if kind == "insert":
        return blob[:pos] + chunk + blob[pos:]
    return blob[:pos]


def _field_damage(m: onnx.ModelProto, which: str, value) -> None:
    """Change one field of ``m`` through the protobuf API."""
    g = m.graph
    if which == "init_type":
        g.initializer[value[0] % 3].data_type = min(value[1], 2**31 - 1)  # an int32 field
    elif which == "init_dim":
        t = g.initializer[value[0] % 3]
        t.dims[value[0] % len(t.dims)] = value[1]
    elif which == "raw_data":
        t = g.initializer[value[0] % 3]
        t.raw_data = t.raw_data[: value[1] % (len(t.raw_data) + 1)]
    elif which == "input_type":
        g.input[0].type.tensor_type.elem_type = min(value[1], 2**31 - 1)
    elif which == "input_dim":
        g.input[0].type.tensor_type.shape.dim[value[0] % 2].dim_value = value[1]
    elif which == "op_type":
        g.node[value[0] % 3].op_type = ["MatMul", "Gemm", "Gather", "Nope", ""][value[1] % 5]
    elif which == "node_input":
        g.node[value[0] % 3].input[value[1] % 2] = ["missing", "", "y", "input_ids"][value[1] % 4]
    elif which == "opset":
        m.opset_import[0].version = value[1]
    elif which == "ir_version":
        m.ir_version = value[1]
    elif which == "external":
        t = g.initializer[value[0] % 3]
        t.data_location = TensorProto.EXTERNAL
        loc = ["../outside.bin", "/etc/hostname", "nope.bin", "/proc/self/environ", "", "sub/../w.bin"][value[1] % 6]
        t.external_data.add(key="location", value=loc)
        t.ClearField("raw_data")
    elif which == "attribute":
        g.node[value[0] % 3].attribute.append(helper.make_attribute(["axis", "transB", "batch_dims"][value[1] % 3],
                                                                     value[1]))


_FIELDS = st.tuples(
    st.sampled_from(["init_type", "init_dim", "raw_data", "input_type", "input_dim", "op_type", "node_input",
                     "opset", "ir_version", "external", "attribute"]),
    st.tuples(st.integers(0, 5), st.sampled_from([-1, 0, 1, 2, 3, 7, 8, 10, 16, 21, 23, 28, 99, 2**31 - 1, 10**12])))


def _run_cli(argv: list[str], capfd) -> tuple[int, list[str]]:
    """Exit status and stderr lines (warnings included) of the CLI run in-process; a traceback fails the test."""
    capfd.readouterr()  # only what the CLI writes counts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 (any escape is a traceback for the user)
            pytest.fail(f"{argv}: {type(e).__name__} escaped the CLI: {e}")
    err = capfd.readouterr().err.strip().splitlines()
    return code, err + [f"warning: {w.message}" for w in caught]


def _check_promise(argv: list[str], folder: Path, damaged: Path, before: dict[str, str], capfd) -> int:
    code, err = _run_cli(argv, capfd)
    assert "Traceback" not in "\n".join(err)
    if code == 0:
        assert err == [], (argv, err)
    else:
        assert len(err) == 1, (argv, err)
    assert _sha(damaged) == before[damaged.name]
    after = _tree(folder)
    new = set(after) - set(before)
    if code != 0:
        assert after == before, (argv, err, new)
    else:
        assert {k: after[k] for k in before} == before  # nothing that existed was rewritten
        for name in new:
            if name.endswith(".onnx"):
                onnx.load(str(folder / name))  # whole, with its side file
    return code


@FUZZ
@given(data=st.data())
def test_damaged_models_keep_the_promise(capfd, data):
    m = _model()
    if data.draw(st.booleans(), "field damage"):
        _field_damage(m, *data.draw(_FIELDS, "field"))
        blob = m.SerializeToString()
    else:
        blob = m.SerializeToString()
        blob = _damaged(blob, data.draw(_byte_damage(len(blob)), "byte damage"))
    command = data.draw(st.sampled_from(["quantize", "quantize_nbits", "quantize_ext", "inspect", "verify"]))
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "m.onnx").write_bytes(blob)
        (folder / "outside.bin").write_bytes(b"\x00" * 64)
        src, out = str(folder / "m.onnx"), str(folder / "out.onnx")
        argv = {"quantize": ["quantize", src, out, "--min-elements", "0", "--ops", "MatMul,Gather"],
                "quantize_nbits": ["quantize", src, out, "--min-elements", "0", "--format", "matmulnbits"],
                "quantize_ext": ["quantize", src, out, "--min-elements", "0", "--external-data"],
                "inspect": ["inspect", src], "verify": ["verify", src, src]}[command]
        _check_promise(argv, folder, folder / "m.onnx", _tree(folder), capfd)


def _feeds_blob(compressed: bool) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.npz"
        (np.savez_compressed if compressed else np.savez)(p, input_ids=IDS)
        return p.read_bytes()


FEEDS = {False: _feeds_blob(False), True: _feeds_blob(True)}


_CONTENT = st.tuples(
    st.sampled_from(["int64", "int32", "uint8", "float32", "float16", "bool", "<U2", "complex64"]),
    st.sampled_from([(4, 6), (0, 6), (4, 0), (6,), (), (1, 3000), (2, 3, 4)]),
    st.sampled_from([0, 49, 50, -1, -51, 2**62, 7]),
    st.sampled_from(["input_ids", "other", "input_ids.npy"]))


def _content_blob(content: tuple[str, tuple[int, ...], int, str]) -> bytes:
    """A well-formed ``.npz`` whose one array has a drawn dtype, shape, value and name."""
    dtype, shape, value, name = content
    with np.errstate(all="ignore"):  # 2**62 overflows float16 to inf, which is part of the draw
        arr = np.full(shape, value).astype(dtype) if dtype != "<U2" else np.full(shape, "ab")
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "f.npz", **{name: arr})
        return (Path(d) / "f.npz").read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_feeds_keep_the_promise(capfd, data):
    if data.draw(st.booleans(), "content damage"):
        blob = _content_blob(data.draw(_CONTENT, "content"))
    else:
        blob = FEEDS[data.draw(st.booleans(), "compressed")]
        blob = _damaged(blob, data.draw(_byte_damage(len(blob)), "byte damage"))
    command = data.draw(st.sampled_from(["gptq", "awq", "mse", "verify"]))
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        onnx.save(_model(), str(folder / "m.onnx"))
        (folder / "f.npz").write_bytes(blob)
        src, feeds = str(folder / "m.onnx"), str(folder / "f.npz")
        argv = (["verify", src, src, "--inputs", feeds] if command == "verify" else
                ["quantize", src, str(folder / "out.onnx"), "--algorithm", command, "--calibration", feeds,
                 "--min-elements", "0"])
        _check_promise(argv, folder, folder / "f.npz", _tree(folder), capfd)


def _monoquant_blob() -> bytes:
    w = RNG.standard_normal((64, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        save(Path(d) / "w.npz", {"a": quantize(w, group_size=32), "b": quantize(w, group_size=16, symmetric=False)})
        return (Path(d) / "w.npz").read_bytes()


MONOQUANT = _monoquant_blob()


@FUZZ
@given(damage=_byte_damage(len(MONOQUANT)))
def test_damaged_monoquant_files_load_or_raise_value_error(damage):
    blob = _damaged(MONOQUANT, damage)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.npz"
        p.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                back = load(p)
            except ValueError as e:
                assert "\n" not in str(e) and str(p) in str(e), str(e)
            else:
                assert set(back) <= {"a", "b"}
        assert p.read_bytes() == blob
