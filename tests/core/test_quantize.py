"""Spec sections 3, 4, 6, 7: quantize / dequantize."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monoquant_np import QuantizedTensor, bits_per_weight, dequantize, quantize
from monoquant_np.codes import quantize_codes

f32 = np.float32


# ---------------------------------------------------------------- golden vectors
def test_symmetric_ties_round_half_to_even():
    # spec 3.1 example: max|w| = 7 so s = 1 and w / s = w exactly.
    w = np.array([7, 0.5, 1.5, 2.5, -0.5, -2.5, 3.49, -7], dtype=f32)
    qt = quantize(w, group_size=8)
    assert qt.scale.tolist() == [1.0]
    assert qt.codes().tolist() == [7, 0, 2, 2, 0, -2, 3, -7]
    assert dequantize(qt).tolist() == [7, 0, 2, 2, 0, -2, 3, -7]
    assert qt.data.tolist() == [0x07, 0x22, 0xE0, 0x93]  # low nibble first


def test_partial_last_group_and_all_zero_group():
    # spec 2.2: 5 elements, group 2 -> groups [0:2], [2:4], [4:5]
    w = np.array([7, -1, 0, 0, 3.5], dtype=f32)
    with np.errstate(all="raise"):  # no division warnings for the all-zero group
        qt = quantize(w, group_size=2)
        back = dequantize(qt)
    assert qt.scale.tolist() == [1.0, 0.0, 0.5]
    assert qt.codes().tolist() == [7, -1, 0, 0, 7]
    assert back.tolist() == [7, -1, 0, 0, 3.5]


def test_asymmetric_golden_with_saturation():
    # spec 3.2 example: lo = -3.5, hi = 11.5, s = 15/15 = 1, z = rint(3.5) = 4;
    # 11.5 -> rint(11.5) + 4 = 16 saturates to 15; -3.5 -> rint(-3.5) + 4 = 0.
    w = np.array([-3.5, 11.5, 0, 1.5], dtype=f32)
    qt = quantize(w, group_size=4, symmetric=False)
    assert qt.scale.tolist() == [1.0] and qt.zero_point.tolist() == [4]
    assert qt.codes().tolist() == [0, 15, 4, 6]
    assert dequantize(qt).tolist() == [-4, 11, 0, 2]
    assert qt.scheme == "uint4" and qt.signed is False


def test_asymmetric_zero_is_exact_and_positive_group():
    # all-positive group: lo = min(min(w), 0) = 0 so z = 0 and 0.0 stays exact
    w = np.array([0.0, 1.5, 3.0, 15.0], dtype=f32)
    qt = quantize(w, group_size=4, symmetric=False)
    assert qt.zero_point.tolist() == [0] and qt.scale.tolist() == [1.0]
    assert dequantize(qt).tolist() == [0, 2, 3, 15]


def test_symmetric_saturation_with_given_scale():
    # spec 3.3: codes saturate to -8..7 when a chosen scale is smaller than max|w|/7
    q = quantize_codes(np.array([10, -10, 7.4], f32), np.array([1.0], f32), None, axis=0, group_size=3)
    assert q.tolist() == [7, -8, 7]


def test_axis_1_groups_and_scale_shape():
    w = np.arange(12, dtype=f32).reshape(2, 6) - 5  # rows [-5..0], [1..6]
    qt = quantize(w, group_size=4, axis=1)
    assert qt.scale.shape == (2, 2)  # ceil(6 / 4) = 2 groups per row
    np.testing.assert_array_equal(qt.scale, np.array([[5, 1], [4, 6]], f32) / f32(7))
    assert quantize(w, group_size=4, axis=-1).equals(qt)


def test_float16_scales_policy():
    # overflow: max|w| / 7 > 65504 cannot be stored
    with pytest.raises(ValueError, match="float16 cannot hold the scales.*142857"):
        quantize(np.array([1e6, 1.0], f32), group_size=2, scale_dtype=np.float16)
    # underflow to zero: the group dequantizes to exact zeros, codes 0
    qt = quantize(np.array([1e-9, -1e-9], f32), group_size=2, scale_dtype=np.float16)
    assert qt.scale.tolist() == [0.0] and qt.codes().tolist() == [0, 0]
    # subnormal scale: 7e-7 / 7 = 1e-7 rounds to 2 * 2**-24; codes use the stored scale
    qt = quantize(np.array([7e-7], f32), group_size=1, scale_dtype=np.float16, int8_fallback=False)
    assert qt.scale.dtype == np.float16 and float(qt.scale[0]) == 2 * 2.0**-24
    assert qt.codes().tolist() == [6]  # rint(7e-7 / 1.1920929e-7) = rint(5.87)
    # ordinary case: codes computed from the float16-rounded scale
    w = np.array([0.3, -0.7, 0.1], f32)
    qt = quantize(w, group_size=3, scale_dtype=np.float16)
    s = np.float32(np.float16(f32(0.7) / f32(7)))
    assert qt.codes().tolist() == np.clip(np.rint(w / s), -8, 7).astype(int).tolist()


def test_float16_policy_edges_spec_3_4():
    # overflow edge: max|w| / 7 >= 65520 rounds to inf in float16; 458639 / 7 = 65519.86 rounds to 65504
    with pytest.raises(ValueError, match="float16 cannot hold the scales"):
        quantize(np.array([458640.0, 0.0], f32), group_size=2, scale_dtype=np.float16)
    qt = quantize(np.array([458639.0, 0.0], f32), group_size=2, scale_dtype=np.float16)
    assert float(qt.scale[0]) == 65504.0 and qt.codes().tolist() == [7, 0]
    # underflow edge: s = 7 * 2**-25 / 7 = 2**-25 is a tie between 0 and 2**-24, rounded to the even 0
    qt = quantize(np.array([7 * 2.0**-25, 0.0], f32), group_size=2, scale_dtype=np.float16)
    assert qt.scale.tolist() == [0.0] and qt.codes().tolist() == [0, 0] and dequantize(qt).tolist() == [0.0, 0.0]


def test_asymmetric_span_overflow_raises_spec_3_2():
    with pytest.raises(ValueError, match="max - min overflows"):
        quantize(np.array([-3e38, 3e38], f32), group_size=2, symmetric=False)
    qt = quantize(np.array([-3e38, 3e38], f32), group_size=2)  # symmetric: max|w| / 7 is fine
    assert qt.codes().tolist() == [-7, 7]


def test_where_minus_eight_comes_from_spec_1_2():
    # a subnormal float16 scale stored below max|w| / 7: the negative maximum saturates at -8
    # (-1e-6 / 1.1920929e-7 = -8.39), a positive one at 7; uint4 saturates at 0 (and 15)
    qt = quantize(np.array([-1e-6, 1e-8], f32), group_size=2, scale_dtype=np.float16)
    assert float(qt.scale[0]) == 2 * 2.0**-24 and qt.codes().tolist() == [-8, 0]
    qt = quantize(np.array([1e-6, 1e-8], f32), group_size=2, scale_dtype=np.float16)
    assert qt.codes().tolist() == [7, 0]
    qt = quantize(np.array([-1e-6, 3e-6], f32), group_size=2, scale_dtype=np.float16, symmetric=False)
    assert qt.codes().tolist() == [0, 15]
    # double quantization: the rebuilt scale 0.0999999 is below the second group's 0.1185929
    from monoquant_np import double_quantize

    w = np.array([0.7, 0, 0, 0, -0.83015, 0, 0, 0, 70, 0, 0, 0, 70, 0, 0, 0], f32).reshape(16, 1)
    q = quantize(w, group_size=4)
    assert q.codes().min() == -7
    d = double_quantize(q, w=w)
    assert d.scale[1, 0] < q.scale[1, 0] and d.codes()[4, 0] == -8


def test_int8_fallback_for_short_axis():
    w = np.array([[127.0, -1.0], [-63.5, 0.5]], f32)  # K = 2 < 128
    qt = quantize(w)
    assert (qt.bits, qt.block_size, qt.scheme) == (8, 2, "int8")
    assert qt.scale.tolist() == [[1.0, float(f32(1) / f32(127))]]
    assert qt.codes().tolist() == [[127, -127], [-64, 64]]  # -63.5 -> -64 (even)
    assert qt.data.tolist() == [127, 129, 192, 64]  # two's complement bytes
    assert quantize(w, int8_fallback=False).bits == 4
    qa = quantize(w, symmetric=False)
    assert qa.scheme == "uint8" and qa.zero_point.dtype == np.uint8


def test_bits_per_weight():
    w = np.random.default_rng(0).standard_normal((256, 64)).astype(f32)
    assert bits_per_weight(quantize(w)) == 4 + 32 / 128
    assert bits_per_weight(quantize(w, scale_dtype=np.float16)) == 4 + 16 / 128
    assert bits_per_weight(quantize(w, symmetric=False)) == 4 + 36 / 128
    assert bits_per_weight(quantize(w[:64])) == 8 + 32 / 64


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("w,exc,msg", [
    (np.array([1.0, np.nan, np.inf], f32), ValueError,
     r"w must be finite: 2 non-finite value\(s\), the first nan at index \(1,\)"),
    (np.array([1, 2], np.int32), TypeError, "w must be a float16, float32 or float64 array, got int32"),
    ([1, 2], TypeError, "got int64 \\(from list\\); write 1.0 rather than 1"),
    ("abc", TypeError, "w must be a float16, float32 or float64 array, got <U3"),
    (np.float32(1.0), ValueError, "w must have at least 1 dimension"),
    (np.zeros((0, 5), f32), ValueError, r"w must have at least one element, got shape \(0, 5\)"),
])
def test_bad_weights(w, exc, msg):
    with pytest.raises(exc, match=msg):
        quantize(w)


def test_bad_options():
    w = np.ones((4, 4), f32)
    with pytest.raises(ValueError, match="group_size must be a positive int, got 0"):
        quantize(w, group_size=0)
    with pytest.raises(TypeError, match=r"group_size must be an int, got 2.5 \(float\)"):
        quantize(w, group_size=2.5)
    with pytest.raises(ValueError, match=r"axis must be an int in \[-2, 1\] for a 2-D weight, got 2"):
        quantize(w, axis=2)
    with pytest.raises(ValueError, match="scale_dtype must be float32 or float16, got float64"):
        quantize(w, scale_dtype=np.float64)
    with pytest.raises(TypeError, match="qt must be a QuantizedTensor"):
        dequantize(w)


def test_quantized_tensor_is_immutable_and_validated():
    qt = quantize(np.ones((4, 4), f32), group_size=2)
    with pytest.raises(ValueError):
        qt.data[0] = 1
    with pytest.raises(AttributeError):
        qt.axis = 1
    with pytest.raises(ValueError, match=r"scale must have shape \(2, 4\), got \(1, 4\)"):
        QuantizedTensor(qt.data, (4, 4), 0, 2, np.ones((1, 4), f32))
    with pytest.raises(ValueError, match="data must hold 8 bytes"):
        QuantizedTensor(qt.data[:3], (4, 4), 0, 2, qt.scale)


# ---------------------------------------------------------------- properties
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40)


@st.composite
def weights(draw):
    shape = draw(shapes)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    w = draw(hnp.arrays(dtype, shape, elements=st.floats(-1e3, 1e3, width=16 if dtype == np.float16 else 32)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    group = draw(st.integers(1, 48))
    return w, axis, group


@given(weights(), st.sampled_from([np.float32, np.float16]))
@settings(max_examples=150, deadline=None)
def test_symmetric_error_bound(case, sdt):
    w, axis, group = case
    qt = quantize(w, group_size=group, axis=axis, scale_dtype=sdt, int8_fallback=False)
    w32 = w.astype(f32)
    s = np.repeat(qt.scale.astype(f32), group, axis=qt.axis).take(np.arange(w.shape[qt.axis]), axis=qt.axis)
    err = np.abs(w32 - dequantize(qt))
    if sdt == np.float32:  # |w - w'| <= s/2 (float32 arithmetic slack)
        assert (err <= s * (0.5 + 1e-5) + 1e-30).all()
    else:  # a float16 scale may round below max|w|/7; codes then saturate at 7
        assert (err <= s * 0.5 + np.abs(w32) * 2e-3 + 1e-6).all()
    assert qt.scale.shape[qt.axis] == -(-w.shape[qt.axis] // group)
    assert (qt.codes() >= -8).all() and (qt.codes() <= 7).all()


@given(weights())
@settings(max_examples=100, deadline=None)
def test_asymmetric_error_bound_and_exact_zero(case):
    w, axis, group = case
    qt = quantize(w, group_size=group, axis=axis, symmetric=False, int8_fallback=False)
    w32 = w.astype(f32)
    s = np.repeat(qt.scale, group, axis=qt.axis).take(np.arange(w.shape[qt.axis]), axis=qt.axis)
    back = dequantize(qt)
    assert (np.abs(w32 - back) <= s * (1 + 1e-5) + 1e-30).all()
    assert (back[w32 == 0] == 0).all()  # zero is exactly representable


@given(weights())
@settings(max_examples=80, deadline=None)
def test_float32_scales_give_minus_eight_only_when_subnormal(case):
    # spec 1.2: with its own normal float32 scales the symmetric quantizer maps max|w_g| to +-7
    w, axis, group = case
    qt = quantize(w, group_size=group, axis=axis, int8_fallback=False)
    s = np.repeat(qt.scale, group, axis=qt.axis).take(np.arange(w.shape[qt.axis]), axis=qt.axis)  # per element
    normal = s >= np.finfo(f32).tiny
    assert qt.codes()[normal].min(initial=0) >= -7


def test_subnormal_float32_scales_give_minus_eight_spec_1_2():
    # max|w_g| = k * 2^-149: s = k/7 * 2^-149 rounds to a multiple of 2^-149 (k <= 3: to 0, an all-zero
    # group); 12 k give -8, the largest 45
    k = np.arange(1, 1 << 17)
    w = (-k * 2.0**-149).astype(f32).reshape(-1, 1)  # (k, 1): one group per row
    qt = quantize(w, group_size=1, axis=1, int8_fallback=False)
    assert k[qt.codes()[:, 0] == -8].tolist() == [8, 9, 10, 15, 16, 17, 23, 24, 30, 31, 38, 45]
    assert float(qt.scale[22, 0]) == 3 * 2.0**-149 and qt.codes()[22, 0] == -8  # spec 1.2's example, k = 23


@given(weights())
@settings(max_examples=60, deadline=None)
def test_dequantize_matches_formula(case):
    w, axis, group = case
    for sym in (True, False):
        qt = quantize(w, group_size=group, axis=axis, symmetric=sym)
        ax, n = qt.axis, w.shape[qt.axis]

        def expand(a, ax=ax, n=n, bs=qt.block_size):
            return np.repeat(a, bs, axis=ax).take(np.arange(n), axis=ax)
        z = 0 if sym else expand(qt.zero_point).astype(f32)
        ref = (qt.codes().astype(f32) - z) * expand(qt.scale).astype(f32)
        np.testing.assert_array_equal(dequantize(qt), ref)
        assert dequantize(qt, np.float16).dtype == np.float16


@given(hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(-10, 10, width=32)),
       st.integers(1, 64))
@settings(max_examples=60, deadline=None)
def test_quantize_is_idempotent_on_its_output(w, group):
    qt = quantize(w, group_size=group, int8_fallback=False)
    back = dequantize(qt)
    assume(np.isfinite(back).all())
    qt2 = quantize(back, group_size=group, int8_fallback=False)
    np.testing.assert_allclose(dequantize(qt2), back, rtol=0, atol=float(qt.scale.max()) * 1e-5 + 1e-30)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
                  elements=st.floats(-5, 5, width=32)),
       st.data(), st.sampled_from([np.nan, np.inf, -np.inf]))
@settings(max_examples=80, deadline=None)
def test_errors_on_bad_input_property(w, data, bad):
    idx = tuple(data.draw(st.integers(0, d - 1)) for d in w.shape)
    w = w.copy()
    w[idx] = bad
    with pytest.raises(ValueError, match=rf"first {bad} at index \({', '.join(map(str, idx))},?\)"):
        quantize(w)
    g = data.draw(st.integers(-5, 0))
    with pytest.raises(ValueError, match=f"group_size must be a positive int, got {g}"):
        quantize(np.zeros(w.shape, np.float32), group_size=g)
    ax = data.draw(st.one_of(st.integers(w.ndim, w.ndim + 3), st.integers(-w.ndim - 3, -w.ndim - 1)))
    with pytest.raises(ValueError, match=f"axis must be an int in .*got {ax}"):
        quantize(np.zeros(w.shape, np.float32), axis=ax)


def test_double_quant_scale_must_be_the_rebuilt_one():
    import dataclasses

    from monoquant_np import double_quantize

    w = np.random.default_rng(1).standard_normal((512, 3)).astype(f32)
    qt = double_quantize(quantize(w, group_size=32), w=w)
    assert np.array_equal(qt.scale, qt.double_quant.rebuild())
    with pytest.raises(ValueError, match=r"scale must equal double_quant.rebuild\(\)"):
        dataclasses.replace(qt, scale=qt.scale * f32(2))


@pytest.mark.parametrize("shape, group", [((37, 5), 4), ((50, 3), 7), ((9, 3, 5), 2), ((6, 4), 8)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_packing_in_small_slabs_is_bit_identical(monkeypatch, shape, group, symmetric):
    # slabs of one or two groups, odd code counts per group, a partial last group, the int8
    # fallback ((6, 4) with group 8): the bytes equal packing all codes at once
    from monoquant_np import codes as codes_module
    from monoquant_np.packing import pack_codes

    monkeypatch.setattr(codes_module, "SLAB_BYTES", 64)
    w = np.random.default_rng(sum(shape) + group).standard_normal(shape).astype(f32)
    qt = quantize(w, group_size=group, symmetric=symmetric)
    codes = quantize_codes(w, qt.scale, qt.zero_point, axis=0, group_size=qt.block_size, bits=qt.bits)
    assert np.array_equal(qt.data, pack_codes(codes, qt.bits))
