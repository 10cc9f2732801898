"""Spec section 8.3: the bounded ``.npz`` reader refuses every damaged or oversized member with one ValueError."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from monoquant_np.npz import DEFAULT_MAX_BYTES, npz_names, read_npz
from monoquant_np.testing.zipcraft import (
    DEFLATED,
    STORED,
    Member,
    deflate,
    npy_bytes,
    npy_header,
    raw_zip,
    zeros_deflate,
)

GIB = 1 << 30
X = np.arange(12, dtype=np.float32).reshape(3, 4)


def _bomb_member(name="x.npy", n_mib=1024, **kw):
    """``n_mib`` MiB of float32 zeros deflated into about ``n_mib`` KiB."""
    head = npy_header("<f4", (n_mib << 18,))
    return Member(name, zeros_deflate(n_mib, head), DEFLATED, size=len(head) + (n_mib << 20), crc=0, **kw)


def test_round_trip_stored_deflated_and_fortran(tmp_path):
    f = np.asfortranarray(X.astype(">f8"))
    np.savez(tmp_path / "a.npz", x=X, f=f, b=np.array([True, False]), s=np.array(["ab", "c"]))
    np.savez_compressed(tmp_path / "c.npz", x=X, e=np.zeros((0, 5), np.int8))
    a, c = read_npz(tmp_path / "a.npz"), read_npz(tmp_path / "c.npz")
    assert sorted(a) == ["b", "f", "s", "x"] and sorted(c) == ["e", "x"]
    np.testing.assert_array_equal(a["x"], X)
    np.testing.assert_array_equal(a["f"], f)
    assert a["f"].dtype == np.dtype(">f8") and a["s"].tolist() == ["ab", "c"] and a["b"].tolist() == [True, False]
    np.testing.assert_array_equal(c["x"], X)
    assert c["e"].shape == (0, 5) and a["x"].flags.writeable
    assert list(read_npz(tmp_path / "a.npz", ["x"])) == ["x"]
    assert npz_names(tmp_path / "a.npz") == (["x", "f", "b", "s"], [])


@pytest.mark.parametrize("case, expect", [
    ("corrupt_deflate", "member 'x.npy': corrupt compressed data (Error -3"),
    ("encrypted", "member 'x.npy': the member is encrypted"),
    ("method99", "member 'x.npy': compression method 99 (only stored (0) and deflated (8)"),
    ("huge_header", "member 'x.npy': its .npy header declares float32 (1000000000000,) (4000000000000 bytes), "
                    "above the limit"),
    ("huge_directory", "the arrays read declare 4000000000304 bytes uncompressed (largest 'x': 4000000000128)"),
    ("bad_crc", "member 'x.npy': BadZipFile: Bad CRC-32"),
    ("truncated", "member 'x.npy': truncated: 4 of 48 data bytes"),
    ("size_mismatch", "member 'x.npy': the zip directory declares 200 bytes, the .npy header 128 + 48"),
    ("object", "member 'x.npy': dtype '|O' is not read"),
    ("structured", "member 'x.npy': dtype '|V8' is not read"),
    ("bad_magic", "member 'x.npy': the magic string is not correct"),
    ("bad_header", "member 'x.npy': Cannot parse header"),
    ("version3", "member 'x.npy': .npy format version 3.0 is not read"),
    ("negative_shape", "member 'x.npy'"),
    ("not_zip", "is not a readable .npz (a zip of .npy files)"),
    ("truncated_zip", "is not a readable .npz (a zip of .npy files)"),
])
def test_damaged_members_are_one_value_error(tmp_path, case, expect):
    good = npy_bytes(X)
    head = good[:128]
    members = {
        "corrupt_deflate": [Member("x.npy", b"\xff" * 40, DEFLATED, plain=good)],
        "encrypted": [Member("x.npy", good, flags=1)],
        "method99": [Member("x.npy", good, 99)],
        "huge_header": [Member("x.npy", npy_header("<f4", (10**12,)))],
        "huge_directory": [Member("x.npy", npy_header("<f4", (10**12,)), size=128 + 4 * 10**12)],
        "bad_crc": [Member("x.npy", deflate(good), DEFLATED, plain=good, crc=1234)],
        "truncated": [Member("x.npy", good[:132], plain=good[:132], size=len(good))],
        "size_mismatch": [Member("x.npy", good, size=200)],
        "object": [Member("x.npy", npy_header("|O", (0,)))],
        "structured": [Member("x.npy", npy_header("|V8", (0,)))],
        "bad_magic": [Member("x.npy", b"\x93NUMPX" + good[6:])],
        "bad_header": [Member("x.npy", head[:10] + b"{'descr': <f4, " + head[25:])],
        "version3": [Member("x.npy", b"\x93NUMPY\x03\x00" + good[8:])],
        "negative_shape": [Member("x.npy", npy_header("<f4", (-1, 4)))],
    }
    path = tmp_path / "bad.npz"
    if case == "not_zip":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "truncated_zip":
        np.savez(path, x=X)
        path.write_bytes(path.read_bytes()[:-30])
    else:
        raw_zip(path, [Member("ok.npy", good), *members[case]])
    with pytest.raises(ValueError) as info:
        read_npz(path, what="calibration file")
    msg = str(info.value)
    assert msg.startswith(f"calibration file {str(path)!r}") and "\n" not in msg
    assert expect in msg, msg
    assert np.array_equal(read_npz(path, ["ok"])["ok"], X) if case not in ("not_zip", "truncated_zip") else True


def test_only_the_named_members_are_read(tmp_path):
    raw_zip(tmp_path / "a.npz", [Member("x.npy", npy_bytes(X)), Member("junk.npy", b"\xff" * 40, DEFLATED),
                                 Member("readme.txt", b"hello")])
    assert list(read_npz(tmp_path / "a.npz", ["x"])) == ["x"]
    assert npz_names(tmp_path / "a.npz") == (["x", "junk"], ["readme.txt"])
    with pytest.raises(ValueError, match=r"has no array 'y' \(arrays: \['junk', 'x'\]\)"):
        read_npz(tmp_path / "a.npz", ["y"])


def test_repeated_member_and_long_reason(tmp_path):
    raw_zip(tmp_path / "a.npz", [Member("x.npy", npy_bytes(X)), Member("x.npy", npy_bytes(X + 1))])
    with pytest.raises(ValueError, match="a.npz' holds member 'x.npy' more than once"):
        read_npz(tmp_path / "a.npz")
    for nest, expect in [(b"(" * 9000, "TokenError"), (b"(" * 4000 + b")" * 4000 + b"}", "Cannot parse header")]:
        header = b"{'descr': '<f4', 'fortran_order': False, 'shape': " + nest
        npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
        raw_zip(tmp_path / "b.npz", [Member("x.npy", npy)])
        with pytest.raises(ValueError, match=f"member 'x.npy': {expect}") as info:
            read_npz(tmp_path / "b.npz")
        assert len(str(info.value)) < 500


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not an .npz file"):
        read_npz(tmp_path)
    with pytest.raises(ValueError, match="is not a regular file"):
        read_npz("/dev/null")
    with pytest.raises(OSError, match="does not exist"):
        read_npz(tmp_path / "nope.npz")
    with pytest.raises(TypeError, match="max_bytes must be an int >= 0, got True"):
        read_npz(tmp_path / "nope.npz", max_bytes=True)


def test_zip_bomb_is_refused_from_its_declared_size_before_inflating(tmp_path):
    """1 GiB of zeros in a 1 MB file: refused by a 256 MiB limit with no allocation near its size."""
    path = tmp_path / "bomb.npz"
    raw_zip(path, [_bomb_member()])
    assert path.stat().st_size < 1_200_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"the arrays read declare 1073741952 bytes uncompressed \(largest 'x': "
                                             r"1073741952\), above the limit of 268435456 bytes \(max_bytes\)"):
            read_npz(path, max_bytes=GIB // 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_default_limit_refuses_before_opening_a_member(tmp_path):
    """Declared sizes over the default 512 MiB are refused from the zip directory alone."""
    path = tmp_path / "big.npz"
    size = GIB + (1 << 20)
    raw_zip(path, [Member("a.npy", b"\xff", DEFLATED, size=size), Member("b.npy", b"\xff", DEFLATED, size=size)])
    with pytest.raises(ValueError, match=rf"declare {2 * size} bytes uncompressed \(largest 'a': "
                                         rf"{size}\), above the limit of {DEFAULT_MAX_BYTES} bytes"):
        read_npz(path)


def test_lying_directory_cannot_inflate_past_the_declared_size(tmp_path):
    """The directory declares 1 KiB; the stream holds 64 MiB: reading stops at 1 KiB and the CRC refuses it."""
    head = npy_header("<f4", (256,))
    path = tmp_path / "liar.npz"
    raw_zip(path, [Member("x.npy", zeros_deflate(64, head), DEFLATED, size=len(head) + 1024, crc=0)])
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="member 'x.npy': BadZipFile: Bad CRC-32"):
            read_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_limit_counts_all_members_read(tmp_path):
    np.savez(tmp_path / "a.npz", x=X, y=X)
    assert len(read_npz(tmp_path / "a.npz", max_bytes=96)) == 2
    with pytest.raises(ValueError, match=r"member 'y.npy': its .npy header declares float32 \(3, 4\) \(48 bytes\), "
                                         r"above the limit of 47 bytes left \(max_bytes\)"):
        read_npz(tmp_path / "a.npz", max_bytes=95)


def test_stored_member_uses_declared_stored_bytes(tmp_path):
    good = npy_bytes(X)
    raw_zip(tmp_path / "a.npz", [Member("x.npy", good, STORED)])
    np.testing.assert_array_equal(read_npz(tmp_path / "a.npz")["x"], X)
