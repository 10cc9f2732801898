"""Spec section 5: nibble packing (golden vectors, exhaustive, properties)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monoquant_np import pack_int4, unpack_int4


def test_golden_odd_count():
    # spec 5.2: [1, -2, 7] -> 0xE1 0x07 (-2 is 0b1110; the odd tail is padded with 0)
    assert pack_int4(np.array([1, -2, 7], dtype=np.int8)).tolist() == [0xE1, 0x07]
    assert unpack_int4(np.array([0xE1, 0x07], np.uint8), 3).tolist() == [1, -2, 7]


def test_golden_onnx_ir_vector():
    # onnx-ir's vector: [[1,2,3,4],[5,6,7,8]] -> [0x21,0x43,0x65,0x87], row-major
    packed = pack_int4(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint8))
    assert packed.tolist() == [0x21, 0x43, 0x65, 0x87]
    assert unpack_int4(packed, 8, signed=False).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_all_256_bytes_unpack_exhaustively():
    b = np.arange(256, dtype=np.uint8)
    u = unpack_int4(b, 512, signed=False).reshape(256, 2)
    assert (u[:, 0] == (b & 0xF)).all() and (u[:, 1] == (b >> 4)).all()
    s = unpack_int4(b, 512, signed=True).reshape(256, 2)
    expect_lo = np.where((b & 0xF) >= 8, (b & 0xF).astype(int) - 16, b & 0xF)
    expect_hi = np.where((b >> 4) >= 8, (b >> 4).astype(int) - 16, b >> 4)
    assert (s[:, 0] == expect_lo).all() and (s[:, 1] == expect_hi).all()
    assert s.dtype == np.int8 and u.dtype == np.uint8
    # and every byte packs back to itself
    assert (pack_int4(s) == b).all() and (pack_int4(u) == b).all()


@pytest.mark.parametrize("signed,codes", [(True, range(-8, 8)), (False, range(16))])
def test_all_16_codes_in_both_nibbles(signed, codes):
    c = np.array(list(codes), dtype=np.int8 if signed else np.uint8)
    for other in c:
        pairs = np.stack([c, np.full_like(c, other)], axis=1).reshape(-1)
        assert (unpack_int4(pack_int4(pairs), pairs.size, signed=signed) == pairs).all()


@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                  elements=st.integers(-8, 7)))
@settings(max_examples=150, deadline=None)
def test_round_trip_signed(codes):
    packed = pack_int4(codes)
    assert packed.shape == ((codes.size + 1) // 2,)
    assert (unpack_int4(packed, codes.size) == codes.reshape(-1)).all()


@given(hnp.arrays(np.int64, st.integers(0, 41), elements=st.integers(0, 15)))
@settings(max_examples=100, deadline=None)
def test_round_trip_unsigned_any_int_dtype(codes):
    packed = pack_int4(codes)
    out = unpack_int4(packed, codes.size, signed=False)
    assert (out == codes).all()
    if codes.size % 2:  # spec 5.1: the pad nibble is zero
        assert packed[-1] >> 4 == 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"codes must lie in -8\.\.15.*-9\.\.3"):
        pack_int4(np.array([-9, 3]))
    with pytest.raises(TypeError, match="codes must be an integer array, got float32"):
        pack_int4(np.array([1.0], np.float32))
    with pytest.raises(TypeError, match="packed must be a numpy uint8 array, got int8"):
        unpack_int4(np.array([1], np.int8), 2)
    with pytest.raises(ValueError, match="fewer than count=5"):
        unpack_int4(np.array([1, 2], np.uint8), 5)
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        unpack_int4(np.array([1], np.uint8), -1)


def test_pack_codes_storage_bytes():
    from monoquant_np.packing import pack_codes

    assert pack_codes(np.array([1, -2, 7], np.int8), 4).tolist() == [0xE1, 0x07]
    assert pack_codes(np.array([[127, -127], [-64, 64]], np.int8), 8).tolist() == [0x7F, 0x81, 0xC0, 0x40]


@pytest.mark.parametrize("rows, inner, step, bits", [(7, 6, 2, 4), (9, 5, 2, 4), (9, 5, 4, 4), (5, 3, 10, 4),
                                                     (1, 7, 1, 4), (8, 3, 3, 8), (0, 4, 2, 4)])
def test_pack_slabs_equals_packing_the_whole_array(rows, inner, step, bits):
    from monoquant_np.packing import pack_codes, pack_slabs

    rng = np.random.default_rng(rows * 100 + inner * 10 + step)
    lo, hi = (-8, 8) if bits == 4 else (-128, 128)
    codes = rng.integers(lo, hi, (rows, inner)).astype(np.int8)
    asked = []

    def codes_of(r0, r1):
        asked.append((r0, r1))
        return codes[r0:r1]

    got = pack_slabs(codes_of, rows, inner, step, bits)
    assert got.dtype == np.uint8 and np.array_equal(got, pack_codes(codes, bits))
    assert asked == [(r, min(r + step, rows)) for r in range(0, rows, step)]  # each row once, in order


def test_pack_slabs_refuses_slabs_off_a_byte_boundary():
    from monoquant_np.packing import pack_slabs

    with pytest.raises(ValueError, match=r"step \* inner must be a multiple of 2 .* step=3, inner=5"):
        pack_slabs(lambda r0, r1: np.zeros((r1 - r0, 5), np.int8), 9, 5, 3)
    with pytest.raises(ValueError, match=r"step \* inner must be a multiple of 4 for 2-bit .* step=2, inner=5"):
        pack_slabs(lambda r0, r1: np.zeros((r1 - r0, 5), np.int8), 9, 5, 2, bits=2)


def test_pair_table_and_lookup_pairs_check_their_arguments():
    from monoquant_np.packing import lookup_pairs, pair_table

    book = np.linspace(-1, 1, 16).astype(np.float32)
    t = pair_table(book)
    packed = np.arange(256, dtype=np.uint8)
    out = np.empty(512, np.float32)
    lookup_pairs(t, packed, out)
    assert np.array_equal(out[0::2], book[packed & 15]) and np.array_equal(out[1::2], book[packed >> 4])
    with pytest.raises(ValueError, match=r"values must be 16 floats .* got shape \(15,\)"):
        pair_table(book[:15])
    with pytest.raises(ValueError, match=r"table must be pair_table\(values\).*float32 \(16,\)"):
        lookup_pairs(book, packed, out)
    with pytest.raises(ValueError, match=r"packed must be a 1-D uint8 array, got int64"):
        lookup_pairs(t, packed.astype(np.int64), out)
    with pytest.raises(ValueError, match=r"out must be a contiguous float32 array of shape \(512,\).*float32 \(510,\)"):
        lookup_pairs(t, packed, out[:510])
    with pytest.raises(ValueError, match=r"out must be .* got float64 \(512,\)"):
        lookup_pairs(t, packed, np.empty(512))
