"""2- and 8-bit group-wise codes (spec 20): hand-checkable vectors, every byte, hypothesis properties.

The fast paths (slab-wise quantize + pack, 2-bit unpacking, chunked dequantize
and matmul) are pinned to :mod:`monoquant_np.testing.reference`, the textbook
form of the spec, bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given, settings

from monoquant_np import bits_per_weight, dequant_matmul, dequantize, load, quantize, save
from monoquant_np.packing import pack_codes, pack_int2, storage_size, unpack_codes, unpack_int2
from monoquant_np.testing import reference
from monoquant_np.testing.strategies import cases

f32 = np.float32
ALL_SCHEMES = ("int2", "uint2", "int4", "uint4", "int8", "uint8")


# ------------------------------------------------------------ spec 20.4's worked examples
@pytest.mark.parametrize("w,bits,symmetric,scale,zp,codes,data,back", [
    ([0.5, -1.0, 0.25, 0.75], 2, True, 1.0, None, [0, -1, 0, 1], [0x4C], [0.0, -1.0, 0.0, 1.0]),
    ([-1.0, 0.5, 2.0, 0.0], 2, False, 1.0, 1, [0, 1, 3, 1], [0x74], [-1.0, 0.0, 2.0, 0.0]),
    ([-254.0, 1.0, 3.0, 127.0], 8, True, 2.0, None, [-127, 0, 2, 64], [0x81, 0x00, 0x02, 0x40],
     [-254.0, 0.0, 4.0, 128.0]),
    ([0.0, 255.0, 127.5, 1.5], 8, False, 1.0, 0, [0, 255, 128, 2], [0x00, 0xFF, 0x80, 0x02],
     [0.0, 255.0, 128.0, 2.0]),
])
def test_worked_examples(w, bits, symmetric, scale, zp, codes, data, back):
    qt = quantize(np.array(w, f32), bits=bits, group_size=4, symmetric=symmetric)
    assert qt.bits == bits and qt.scheme == f"{'int' if symmetric else 'uint'}{bits}"
    assert qt.scale.tolist() == [scale]
    assert (qt.zero_point is None and zp is None) or qt.zero_point.tolist() == [zp]
    assert qt.codes().tolist() == codes
    assert qt.data.tolist() == data
    assert dequantize(qt).tolist() == back


def test_packing_examples():
    assert pack_int2(np.array([1, 3, 2, 0, 3], np.uint8)).tolist() == [0x2D, 0x03]
    assert pack_int2(np.array([1, -1, -2, 0], np.int8)).tolist() == [0x2D]
    assert unpack_int2(np.array([0x2D, 0x03], np.uint8), 5, signed=True).tolist() == [1, -1, -2, 0, -1]
    assert [storage_size(n, 2) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_every_byte_round_trips():
    every = np.arange(256, dtype=np.uint8)
    for signed in (True, False):
        codes = unpack_int2(every, 1024, signed=signed)  # (1024,)
        want = (every[:, None] >> np.array([0, 2, 4, 6])) & 3  # (256, 4): element 4i lowest
        if signed:
            want = np.where(want >= 2, want.astype(np.int16) - 4, want)
        assert codes.tolist() == want.reshape(-1).tolist()
        assert pack_int2(codes).tolist() == every.tolist()
        assert reference.pack2(codes).tolist() == every.tolist()


def test_pack_int2_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match=r"codes must lie in -2..3 \(int2 or uint2\), got values in -3..1"):
        pack_int2(np.array([-3, 1]))
    with pytest.raises(ValueError, match="got values in 0..4"):
        pack_int2(np.array([0, 4]))


def test_bits_8_group_wise_is_the_int8_fallback_when_one_group_spans_the_axis():
    w = np.random.default_rng(0).standard_normal((24, 5)).astype(f32)
    fallback = quantize(w, group_size=128)  # spec 7: the axis is shorter than a group
    for qt in (quantize(w, bits=8, group_size=24), quantize(w, bits=8, group_size=24, int8_fallback=False)):
        assert qt.equals(fallback)
    assert quantize(w, bits=2, group_size=128).bits == 8  # the fallback applies to every width
    assert quantize(w, bits=2, group_size=128, int8_fallback=False).bits == 2


def test_bits_per_weight_counts_packed_zero_points():
    w = np.ones((128, 4), f32)
    assert bits_per_weight(quantize(w, bits=2, group_size=32)) == 2 + 32 / 32
    assert bits_per_weight(quantize(w, bits=2, group_size=32, symmetric=False)) == 2 + 32 / 32 + 2 / 32
    assert bits_per_weight(quantize(w, bits=8, group_size=32, symmetric=False)) == 8 + 32 / 32 + 8 / 32


# ------------------------------------------------------------ properties against the textbook reference
@settings(max_examples=60)
@given(cases(schemes_=ALL_SCHEMES))
def test_quantize_equals_the_reference(case):
    kw = dict(group_size=case.group_size, axis=case.axis, symmetric=case.symmetric, scale_dtype=case.scale_dtype)
    try:
        qt = quantize(case.w, bits=case.bits, **kw)
    except ValueError as e:  # spec 3.4: a scale float16 cannot hold; the reference's float16 scale is inf there
        assert "float16" in str(e), e
        with np.errstate(over="ignore"):
            assert not np.isfinite(reference.quantize(case.w, bits=case.bits, **kw).scale).all(), case.describe()
        return
    ref = reference.quantize(case.w, bits=case.bits, **kw)
    assert qt.bits == ref.bits and qt.block_size == ref.group_size, case.describe()
    assert np.array_equal(qt.data, ref.data), case.describe()
    assert qt.scale.dtype == ref.scale.dtype and np.array_equal(qt.scale, ref.scale), case.describe()
    assert (qt.zero_point is None) == (ref.zero_point is None)
    if ref.zero_point is not None:
        assert np.array_equal(qt.zero_point, ref.zero_point), case.describe()
    assert np.array_equal(dequantize(qt), reference.dequantize(qt)), case.describe()
    assert np.array_equal(unpack_codes(pack_codes(qt.codes(), qt.bits), qt.size, qt.bits, qt.signed).reshape(
        qt.shape), qt.codes())


@settings(max_examples=30)
@given(case=cases(ndims=(2,), schemes_=("int2", "uint2", "int8", "uint8"), kinds=("normal", "zeros", "spike")))
def test_error_bound_and_matmul(case):
    qt = quantize(case.w, bits=case.bits, group_size=case.group_size, axis=case.axis, symmetric=case.symmetric)
    back = dequantize(qt)
    # |w - w'| <= s / 2 inside the code range (spec 20.1); symmetric codes never clip
    s = reference.expand_groups(qt.scale.astype(f32), qt.axis, qt.block_size, qt.shape[qt.axis])
    if case.symmetric:
        assert (np.abs(case.w - back) <= s / 2 * (1 + 1e-6) + 1e-30).all(), case.describe()
    x = np.random.default_rng(case.w.shape[0]).standard_normal((3, case.w.shape[0])).astype(f32)
    want = x @ back
    bound = 4e-6 * np.sqrt(x.shape[1]) * (np.abs(x) @ np.abs(back)) + 1e-30
    assert (np.abs(dequant_matmul(x, qt) - want) <= bound).all(), case.describe()


@pytest.mark.parametrize("scheme", ["int2", "uint2", "int8", "uint8"])
def test_save_load_round_trip(tmp_path, scheme):
    w = np.random.default_rng(1).standard_normal((67, 9)).astype(f32)
    qt = quantize(w, bits=int(scheme[-1]), group_size=16, symmetric=scheme.startswith("int"), scale_dtype=np.float16)
    save(tmp_path / "t.npz", {"w": qt})
    got = load(tmp_path / "t.npz")["w"]
    assert got.equals(qt) and got.bits == qt.bits


def test_conformance_kit_checks_2_and_8_bit_backends():
    """A backend declaring int2/uint2/int8/uint8 gets ``bits`` from the kit; the textbook reference passes,
    a backend that rounds half away from zero is caught (spec 12.7, 20)."""
    from monoquant_np import QuantizedTensor
    from monoquant_np.testing.conformance import Backend, check_backend

    def textbook(w, *, group_size, axis, symmetric, scale_dtype, bits=4):
        r = reference.quantize(w, group_size=group_size, axis=axis, symmetric=symmetric, scale_dtype=scale_dtype,
                               bits=bits)
        return QuantizedTensor(r.data, w.shape, axis, r.group_size, r.scale, r.zero_point, signed=r.zero_point is None,
                               bits=r.bits)

    def away(w, *, bits=4, **kw):
        qt = textbook(w, bits=bits, **kw)
        if qt.signed:  # ties away from zero instead of to even
            s = reference.expand_groups(qt.scale.astype(f32), qt.axis, qt.block_size, qt.shape[qt.axis])
            q = np.clip(np.trunc(w / np.where(s == 0, 1, s) + np.copysign(0.5, w)), *(-(1 << (qt.bits - 1)),
                                                                                   (1 << (qt.bits - 1)) - 1))
            qt = QuantizedTensor(pack_codes(q.astype(np.int8), qt.bits), qt.shape, qt.axis, qt.block_size, qt.scale,
                                 bits=qt.bits)
        return qt

    schemes = ("int2", "uint2", "int8", "uint8")
    good = check_backend(Backend("textbook", quantize=textbook, schemes=schemes), max_examples=15)
    assert good.ok and good.examples["quantize"] == 15, str(good)
    bad = check_backend(Backend("away", quantize=away, schemes=schemes, kinds=("ties",)), max_examples=15)
    assert not bad.ok and bad.counts["quantize"] > 0
