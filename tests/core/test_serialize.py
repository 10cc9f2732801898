"""Spec section 8: the versioned .npz format."""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedTensor, load, quantize, save


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
    with pytest.raises(ValueError, match="bad.npz.*not a readable monoquant-np"):
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
