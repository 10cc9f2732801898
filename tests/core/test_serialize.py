"""Spec section 8: the versioned .npz format."""

import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedTensor, load, quantize, save
from monoquant_np.testing.zipcraft import DEFLATED, Member, npy_bytes, npy_header, raw_zip, zeros_deflate


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((300, 7)).astype(np.float32)
    perm = rng.permutation(300)
    q = quantize(w, group_size=64)
    return {
        "sym": q,
        "asym.f16": quantize(w, group_size=4, axis=1, symmetric=False, scale_dtype=np.float16),
        "int8": quantize(w[:10], group_size=128),
        "perm": QuantizedTensor(q.data, q.shape, 0, 64, q.scale, perm=perm),
    }


def test_round_trip(tmp_path):
    t = _tensors()
    save(tmp_path / "w.npz", t)
    back = load(tmp_path / "w.npz")
    assert list(back) == list(t)
    for k in t:
        assert back[k].equals(t[k]), k
    # plain numpy can read it, without pickle
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        meta = json.loads(z["__monoquant__"].tobytes())
    assert meta["format"] == "monoquant-np" and meta["version"] == 1
    assert [e["scheme"] for e in meta["tensors"]] == ["int4", "uint4", "int8", "int4"]


@given(st.integers(1, 50), st.integers(1, 9), st.integers(1, 20), st.booleans())
@settings(max_examples=25, deadline=None)
def test_round_trip_property(k, n, g, sym):
    import tempfile
    w = np.random.default_rng(k * n).standard_normal((k, n)).astype(np.float32)
    qt = quantize(w, group_size=g, symmetric=sym)
    with tempfile.TemporaryDirectory() as d:
        save(f"{d}/x.npz", {"w": qt})
        assert load(f"{d}/x.npz")["w"].equals(qt)


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"bad.npz.* is not a readable \.npz"):
        load(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="foreign.npz.*not a monoquant-np one"):
        load(foreign)
    good = tmp_path / "good.npz"
    save(good, _tensors())
    blob = good.read_bytes()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="trunc.npz"):
        load(trunc)
    # a newer version is refused by name
    z = dict(np.load(good, allow_pickle=False))
    meta = json.loads(z["__monoquant__"].tobytes())
    meta["version"] = 99
    z["__monoquant__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "v99.npz", **z)
    with pytest.raises(ValueError, match="format version 99"):
        load(tmp_path / "v99.npz")


def test_no_partial_output(tmp_path):
    with pytest.raises(TypeError, match=r"tensors\['x'\] must be a QuantizedTensor"):
        save(tmp_path / "out.npz", {"x": np.ones(3)})
    with pytest.raises(ValueError, match="does not exist"):
        save(tmp_path / "missing" / "out.npz", _tensors())
    assert list(tmp_path.iterdir()) == []
    # the exact name given is used (no .npz appended)
    save(tmp_path / "weights.bin", _tensors())
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    assert zipfile.is_zipfile(tmp_path / "weights.bin")


def _with_meta(tmp_path, edit, name="m.npz", raw=None):
    """A copy of a good file whose metadata JSON went through ``edit`` (or is the bytes ``raw``)."""
    z = dict(np.load(_saved(tmp_path), allow_pickle=False))
    text = json.dumps(edit(json.loads(z["__monoquant__"].tobytes()))).encode() if raw is None else raw
    z["__monoquant__"] = np.frombuffer(text, np.uint8)
    np.savez(tmp_path / name, **z)
    return tmp_path / name


def _saved(tmp_path):
    good = tmp_path / "good.npz"
    if not good.exists():
        save(good, _tensors())
    return good


def _entry(key, **change):
    def edit(meta):
        meta["tensors"][0][key] = change.get("value")
        return meta
    return edit


@pytest.mark.parametrize("case, expect", [
    ("deep", "metadata nested 200001 deep, more than 32"),
    ("version_true", "format version True, this monoquant-np reads version 1"),
    ("version_float", "format version 1.0, this monoquant-np reads version 1"),
    ("nan", "corrupt metadata (NaN is not a JSON number)"),
    ("not_utf8", "metadata is not UTF-8"),
    ("bool_bits", "inconsistent tensor entry (bits must be an int >= 0, got True)"),
    ("str_axis", "inconsistent tensor entry (axis must be an int >= 0, got '0')"),
    ("float_shape", "shape must be a non-empty list of ints >= 0, got [300.0, 7]"),
    ("int_signed", "signed must be true or false, got 1"),
    ("unknown_part", "arrays must list data, scale and others of"),
    ("no_tensors", "tensors must be a list, got None"),
    ("repeated", "tensor names repeat: ['sym']"),
    ("missing_field", "inconsistent tensor entry ('bits')"),
])
def test_metadata_is_checked_before_any_tensor_is_read(tmp_path, case, expect):
    def repeat(meta):
        meta["tensors"][1]["name"] = "sym"
        return meta

    def drop(meta):
        del meta["tensors"][0]["bits"]
        return meta
    edits = {
        "version_true": lambda m: {**m, "version": True}, "version_float": lambda m: {**m, "version": 1.0},
        "bool_bits": _entry("bits", value=True), "str_axis": _entry("axis", value="0"),
        "float_shape": _entry("shape", value=[300.0, 7]), "int_signed": _entry("signed", value=1),
        "unknown_part": _entry("arrays", value=["data", "scale", "pickle"]),
        "no_tensors": lambda m: {**m, "tensors": None}, "repeated": repeat, "missing_field": drop,
    }
    raws = {"deep": b"[" * 200_001 + b"]" * 200_001,
            "nan": b'{"format": "monoquant-np", "version": 1, "tensors": [], "x": NaN}',
            "not_utf8": b'{"format": "\xff"}'}
    path = _with_meta(tmp_path, edits.get(case, lambda m: m), raw=raws.get(case))
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(info.value).startswith(repr(str(path))) and expect in str(info.value), str(info.value)


def test_metadata_that_is_not_an_npy_array(tmp_path):
    path = tmp_path / "raw.npz"
    raw_zip(path, [Member("__monoquant__", b'{"format": "monoquant-np", "version": 1, "tensors": []}')])
    with pytest.raises(ValueError, match=r"raw.npz' is a .npz file but not a monoquant-np one \(__monoquant__: "
                                         r"a member that is not a .npy array\)"):
        load(path)
    np.savez(path, __monoquant__=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="__monoquant__ must be a 1-D uint8 array .UTF-8 JSON., got float64 .2, 2."):
        load(path)


def _good_members(tmp_path):
    """The members of a saved one-tensor file, as stored zip members."""
    save(tmp_path / "one.npz", {"w": quantize(np.ones((64, 8), np.float32), group_size=32)})
    return [Member(f"{k}.npy", npy_bytes(v)) for k, v in np.load(tmp_path / "one.npz").items()]


def test_unreferenced_members_are_never_decompressed(tmp_path):
    """A 1 GiB zip bomb (and a corrupt member) that the metadata does not name cost nothing."""
    head = npy_header("<f4", (1 << 28,))
    bomb = Member("junk.npy", zeros_deflate(1024, head), DEFLATED, size=len(head) + (1 << 30), crc=0)
    bad = Member("t0.extra.npy", b"\xff" * 9, DEFLATED, size=200)
    raw_zip(tmp_path / "a.npz", [*_good_members(tmp_path), bomb, bad])
    tracemalloc.start()
    try:
        back = load(tmp_path / "a.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(back) == ["w"] and back["w"].shape == (64, 8) and peak < 4 << 20, peak


def test_referenced_zip_bomb_is_refused_by_the_default_budget(tmp_path):
    """1 GiB of zeros as the data of a 64 x 8 tensor: over 16 bytes per element + 1 MiB, refused unread."""
    members = _good_members(tmp_path)
    head = npy_header("|u1", (1 << 30,))
    members = [m for m in members if m.name != "t0.data.npy"]
    members.append(Member("t0.data.npy", zeros_deflate(1024, head), DEFLATED, size=len(head) + (1 << 30), crc=0))
    raw_zip(tmp_path / "a.npz", members)
    with pytest.raises(ValueError, match=r"monoquant-np file '.*a.npz': the arrays read declare \d+ bytes "
                                         r"uncompressed \(largest 't0.data': 1073741952\), above the limit of "
                                         rf"{16 * 64 * 8 + 8 * 64 + (1 << 20)} bytes"):
        load(tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"above the limit of 100 bytes left \(pass load\(max_bytes=...\) to raise"):
        load(_saved(tmp_path), max_bytes=100)
    assert len(load(_saved(tmp_path), max_bytes=10**6)) == 4
