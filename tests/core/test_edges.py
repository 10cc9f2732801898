"""The numeric edges the spec decides, each on its worked example: float32 scale underflow (3.3),
the float16 overflow boundary and -8 from a subnormal scale (3.4), signed zeros and ``perm`` in
dequantization (6.1), the int8 fallback's scale layout (7), a subnormal NF4 absmax (10.2), and GGUF's
float32 intermediates, non-finite reciprocals and signed zeros (12.2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from monoquant_np import QuantizedTensor, dequantize, pack_int4, quantize
from monoquant_np import formats as F
from monoquant_np.nf4 import nf4_block_codes, quantize_nf4
from monoquant_np.testing import reference as R

TINY = np.float32(2.0**-149)  # the smallest float32 subnormal


def bits(a: np.ndarray) -> list[int]:
    a = np.ascontiguousarray(a)
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32).ravel().tolist()


# ------------------------------------------------------------------ 3.3 float32 scale underflow
@pytest.mark.parametrize("symmetric", [True, False])
def test_float32_scale_underflow_gives_zero_codes_and_positive_zeros(symmetric):
    w = np.array([3, -1], np.float32) * TINY  # spec 3.3 example: bits 00000003 80000001
    assert bits(w) == [0x00000003, 0x80000001]
    qt = quantize(w, group_size=2, symmetric=symmetric, int8_fallback=False)
    assert bits(qt.scale) == [0]  # (3/7) 2^-149 and (4/15) 2^-149 round to +0.0
    assert qt.codes().tolist() == [0, 0]
    if not symmetric:
        assert qt.zero_point.tolist() == [0]
    assert bits(dequantize(qt)) == [0, 0]  # +0.0, not -0.0


@pytest.mark.parametrize(("symmetric", "bits_", "last_zero"), [(True, 4, 3), (False, 4, 7), (True, 8, 63),
                                                                 (False, 8, 127)])
def test_float32_underflow_thresholds(symmetric, bits_, last_zero):
    # spec 3.3: the scale is 0 up to last_zero * 2^-149 (max|w| or hi - lo) and 2^-149 one step above it
    for k, scale_bits in ((last_zero, 0), (last_zero + 1, 1)):
        w = np.array([k], np.float32) * TINY
        qt = quantize(w, group_size=1 if bits_ == 4 else 2, symmetric=symmetric, int8_fallback=bits_ == 8)
        assert qt.bits == bits_ and bits(qt.scale) == [scale_bits], (k, qt.scale)


def test_minus_eight_from_a_subnormal_scale():
    w = np.array([-10, 1], np.float32) * TINY  # spec 3.4: s = (10/7) 2^-149 -> 2^-149
    qt = quantize(w, group_size=2, int8_fallback=False)
    assert bits(qt.scale) == [1] and qt.codes().tolist() == [-8, 1]
    assert (dequantize(qt) / TINY).tolist() == [-8.0, 1.0]


# ------------------------------------------------------------------ 3.4 the float16 overflow boundary
@pytest.mark.parametrize(("symmetric", "fallback", "k", "stored", "first_over"), [
    (True, False, 1, 458639.96875, 458640.0),
    (False, False, 1, 982799.9375, 982800.0),
    (True, True, 2, 8321039.5, 8321040.0),
    (False, True, 2, 16707599.0, 16707600.0),
])
def test_float16_overflow_boundary_both_sides(symmetric, fallback, k, stored, first_over):
    # spec 3.4's table: the largest group that is stored (scale 65519.99609375 -> 65504) and the first that is not
    # (a uint4/uint8 group [0, x] has hi - lo = x; the int8 fallback needs a group longer than 1 element)
    w = np.zeros(k, np.float32)
    w[0] = stored
    qt = quantize(w, group_size=3 if fallback else 1, symmetric=symmetric, scale_dtype=np.float16,
                  int8_fallback=fallback)
    assert qt.scale.dtype == np.float16 and qt.scale.tolist() == [65504.0]
    qmax = (2 ** (qt.bits - 1) - 1) if symmetric else 2**qt.bits - 1
    assert np.float32(stored) / np.float32(qmax) == np.float32(65519.99609375)
    w[0] = first_over
    with pytest.raises(ValueError, match="float16"):
        quantize(w, group_size=3 if fallback else 1, symmetric=symmetric, scale_dtype=np.float16,
                 int8_fallback=fallback)


def test_float16_boundary_example():
    qt = quantize(np.array([458639.96875], np.float32), group_size=1, scale_dtype=np.float16)
    assert qt.codes().tolist() == [7] and dequantize(qt).tolist() == [458528.0]  # 7 * 65504


# ------------------------------------------------------------------ 6.1 signed zeros, perm; 7 scale layout
def test_dequantize_undoes_perm_and_slice_does_not():
    codes = np.array([[1], [2], [3], [-4]], np.int8)
    perm = np.array([2, 0, 3, 1])
    qt = QuantizedTensor(pack_int4(codes), (4, 1), 0, 2, np.array([[1.0], [0.5]], np.float32), None, perm=perm)
    stored = np.array([[1.0], [2.0], [1.5], [-2.0]], np.float32)
    from monoquant_np.dequantize import dequantize_slice

    assert dequantize_slice(qt, 0, 4).tolist() == stored.tolist()
    assert dequantize(qt)[perm].tolist() == stored.tolist()
    assert dequantize(qt).ravel().tolist() == [2.0, -2.0, 1.0, 1.5]


def test_int8_fallback_scale_shape_is_the_group_shape():
    w = np.array([[127, -1], [-63.5, 0.5]], np.float32)  # spec 7's example
    qt = quantize(w)
    assert qt.bits == 8 and qt.scale.shape == (1, 2) and qt.data.tobytes().hex() == "7f81c040"
    assert quantize(w, axis=1).scale.shape == (2, 1)


# ------------------------------------------------------------------ 10.2 subnormal NF4 absmax
def test_nf4_subnormal_absmax_example():
    w = np.array([57, 10, -3, 0], np.float32) * TINY
    assert bits(w) == [0x39, 0x0A, 0x80000003, 0]
    qt = quantize_nf4(w, block_size=4)
    assert qt.codes().tolist() == [15, 9, 6, 7] and qt.data.tobytes().hex() == "9f76"
    assert bits(dequantize(qt)) == [0x39, 0x09, 0x80000005, 0]


@pytest.mark.parametrize("e", [0, -60, -100, -120, -125, -126, -127, -128, -129, -140, -143])
def test_nf4_codes_are_invariant_under_power_of_two_scaling(e):
    rng = np.random.default_rng(e + 200)
    w = rng.integers(-64, 65, (16, 3)).astype(np.float32)
    w[5, :] = 0.0  # exact zeros
    w[0, :] = 64.0  # the absmax element
    scaled = (w.astype(np.float64) * 2.0**(e - 6)).astype(np.float32)
    assert np.array_equal(scaled.astype(np.float64) * 2.0 ** (6 - e), w)  # exact: at most 7 significant bits
    ref = quantize_nf4(w, block_size=8).codes()
    got = quantize_nf4(scaled, block_size=8).codes()
    assert np.array_equal(got, ref)
    assert (got[5] == 7).all() and (got[0] == 15).all()
    assert np.array_equal(R.nf4_quantize(scaled, 8)[0], got)  # the textbook reference agrees


def test_nf4_lift_changes_nothing_where_the_reciprocal_is_finite():
    # 2^-128 < a < 2^-126: w * float32(1 / a) equals the lifted product; checked against the unlifted formula
    rng = np.random.default_rng(1)
    a = np.float32(1.5 * 2.0**-127)
    w = (rng.integers(-(2**20), 2**20, 64) * np.float32(2.0**-149)).astype(np.float32)
    w[0] = a
    r = np.float32(1) / a
    assert np.isfinite(r)
    x = w * r
    from monoquant_np.nf4 import nf4_codes

    assert np.array_equal(nf4_block_codes(w, np.array([a]), axis=0, block_size=64), nf4_codes(x))


# ------------------------------------------------------------------ 12.2 GGUF edges
def gguf_block(*head: float) -> np.ndarray:
    w = np.zeros((1, 32), np.float32)
    w[0, : len(head)] = head
    return w


def test_gguf_float32_intermediates_example():
    w = gguf_block(7.0, 6.5625)
    data = F.q4_0_quantize(w)
    assert data.tobytes().hex() == "00bb8080" + "88" * 14  # codes [0, 0, 8, ...]: 6.5625 -> code 0 in float32
    assert F.q4_0_dequantize(data, w.shape)[0, :2].tolist() == [7.0, 7.0]
    inv = np.float32(1) / np.float32(-0.875)
    assert bits(np.array([inv])) == [0xBF924925]
    assert np.float32(6.5625) * inv + np.float32(8.5) == np.float32(0.9999995)
    assert int(np.trunc(6.5625 / -0.875 + 8.5)) == 1  # a float64 port gets code 1


def test_gguf_non_finite_reciprocal_gives_code_zero_without_warnings():
    w = gguf_block(2e-39, -1e-39)
    assert bits(w[0, :2]) == [0x0015C730, 0x800AE398]
    expected = {"q4_0": "0080" + "00" * 16, "q4_1": "00000080" + "00" * 16, "q8_0": "0000" + "00" * 32}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, hexes in expected.items():
            data = getattr(F, f"{name}_quantize")(w)
            assert data.tobytes().hex() == hexes, name
            deq = getattr(F, f"{name}_dequantize")(data, w.shape)
            assert bits(deq) == [0] * 32, name  # +0.0 everywhere


def test_gguf_non_finite_codes_match_gguf_py():
    gguf = pytest.importorskip("gguf")
    from gguf import quants

    w = np.vstack([gguf_block(2e-39, -1e-39), gguf_block(-3e-40, 1e-45, 0.0), gguf_block(2.0**-125, -(2.0**-126)),
                   gguf_block(7.0, 6.5625)])
    for name, qtype in (("q4_0", gguf.GGMLQuantizationType.Q4_0), ("q4_1", gguf.GGMLQuantizationType.Q4_1),
                        ("q8_0", gguf.GGMLQuantizationType.Q8_0)):
        with np.errstate(all="ignore"):
            ref = quants.quantize(w, qtype)
        assert np.array_equal(getattr(F, f"{name}_quantize")(w), ref), name


def test_gguf_q4_0_tiny_m_gives_d_zero_not_an_overflow():
    # spec 12.2: |m| = 4 * 2^-149 gives d = 2^-150 -> 0 (a tie, to even): id = 0, codes 8;
    # |m| = 5 * 2^-149: 1/d = inf, codes 0
    four, five = F.q4_0_quantize(gguf_block(4 * TINY)), F.q4_0_quantize(gguf_block(5 * TINY))
    assert four[0, :2].tolist() == [0x00, 0x80] and (four[0, 2:] == 0x88).all()
    assert five[0, :2].tolist() == [0x00, 0x80] and (five[0, 2:] == 0x00).all()


def test_gguf_zero_code_dequantizes_to_negative_zero_when_d_is_negative():
    data = F.q4_0_quantize(gguf_block(7.0, 6.5625))  # d = -0.875: code 8 gives 0 * -0.875 = -0.0
    assert bits(F.q4_0_dequantize(data, (1, 32))[0, 2:]) == [0x80000000] * 30
    zero = F.q4_0_quantize(np.zeros((1, 32), np.float32))  # d = 0 / -8 = -0.0
    assert zero[0, :2].tolist() == [0x00, 0x80]
    assert bits(F.q4_0_dequantize(zero, (1, 32))) == [0x80000000] * 32


# ------------------------------------------------------------------ 10.2 float16 absmax
def test_nf4_float16_absmax_example():
    qt = quantize_nf4(np.array([0.3, -0.9, 0.6, 0.0], np.float32), block_size=4, scale_dtype=np.float16)
    assert qt.scale.dtype == np.float16 and bits(qt.scale) == [0x3B33]
    assert qt.codes().tolist() == [11, 0, 14, 7]
    deq = dequantize(qt)
    assert deq[1] == np.float32(np.float16(0.9)) * -1 and deq[3] == 0
    assert np.array_equal(deq, (qt.codebook[qt.codes()] * qt.scale.astype(np.float32)).astype(np.float32))


def test_nf4_float16_absmax_overflow_raises_and_underflow_gives_code_7():
    with pytest.raises(ValueError, match="float16"):
        quantize_nf4(np.array([65520.0], np.float32), block_size=1, scale_dtype=np.float16)
    assert quantize_nf4(np.array([65519.99], np.float32), block_size=1, scale_dtype=np.float16).scale.tolist() \
        == [65504.0]
    qt = quantize_nf4(np.array([2.0**-25, -(2.0**-26), 0.0], np.float32), block_size=3, scale_dtype=np.float16)
    assert bits(qt.scale) == [0] and qt.codes().tolist() == [7, 7, 7] and bits(dequantize(qt)) == [0, 0, 0]
    with pytest.raises(ValueError, match="scale_dtype"):
        quantize_nf4(np.ones(4, np.float32), block_size=4, scale_dtype=np.float64)
