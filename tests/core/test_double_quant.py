"""Double quantization (spec 11): the 8-bit scheme, positivity, code recomputation, bits per weight."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import (
    DoubleQuant,
    bits_per_weight,
    dequantize,
    double_quantize,
    quantize,
    quantize_nf4,
)
from monoquant_np.codes import quantize_codes
from monoquant_np.dequantize import dequantize_slice
from monoquant_np.double_quant import quantize_scales
from monoquant_np.nf4 import nf4_block_codes


# ------------------------------------------------------------ golden vectors
def test_golden_vector_spec_11():
    """spec/11-double-quant.md, example 1."""
    dq = quantize_scales(np.array([1.0, 2.0, 3.0, 6.0], np.float32), block_size=2)
    assert dq.offset == 3.0  # mean
    # d = [-2, -1, 0, 3]; c = [2/127, 3/127]
    assert dq.scale.tolist() == [float(np.float32(2) / np.float32(127)), float(np.float32(3) / np.float32(127))]
    assert dq.codes.dtype == np.int8 and dq.codes.tolist() == [-127, -64, 0, 127]
    c0 = np.float32(2) / np.float32(127)
    assert dq.rebuild().tolist() == [1.0, float(np.float32(-64) * c0 + np.float32(3)), 3.0, 6.0]
    assert dq.block_size == 2 and dq.nbytes() == 4 + 8 + 4


def test_golden_positivity_vector_spec_11():
    """spec/11-double-quant.md, example 2: an all-zero group's scale is raised above zero."""
    dq = quantize_scales(np.array([0.0, 4.0, 4.0, 4.0], np.float32), block_size=4)
    # offset 3, d = [-3, 1, 1, 1], c = 3/127; k = [-127, 42, 42, 42] rebuilds a'[0] = 0 -> raised to -126
    c = np.float32(3) / np.float32(127)
    assert dq.offset == 3.0 and dq.scale.tolist() == [float(c)]
    assert dq.codes.tolist() == [-126, 42, 42, 42]
    assert dq.rebuild()[0] == np.float32(-126) * c + np.float32(3) > 0


def test_all_zero_scales_stay_zero():
    dq = quantize_scales(np.zeros((2, 3), np.float32))
    assert dq.offset == 0.0 and dq.codes.tolist() == [[0, 0, 0]] * 2
    assert np.array_equal(dq.rebuild(), np.zeros((2, 3), np.float32))
    qt = double_quantize(quantize(np.zeros((4, 3), np.float32), group_size=2))
    assert np.array_equal(dequantize(qt), np.zeros((4, 3), np.float32))


def test_rebuild_is_codes_times_block_scale_plus_offset():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 3.0, size=(7, 90)).astype(np.float32)
    dq = quantize_scales(a, block_size=256)
    k = dq.codes.reshape(-1).astype(np.float32)
    c = dq.scale[np.arange(k.size) // 256]
    assert dq.scale.shape == (3,)  # ceil(630 / 256)
    assert np.array_equal(dq.rebuild().reshape(-1), k * c + np.float32(dq.offset))
    assert dq.codes.min() >= -127


# ------------------------------------------------------------ properties
@st.composite
def scale_arrays(draw):
    n = draw(st.integers(1, 600))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uniform", "lognormal", "with_zeros", "tiny"]))
    if kind == "uniform":
        a = rng.uniform(0.1, 2.0, n)
    elif kind == "lognormal":
        a = rng.lognormal(0.0, 2.0, n)
    elif kind == "with_zeros":
        a = rng.uniform(0.0, 5.0, n) * (rng.random(n) < 0.7)
    else:
        a = rng.uniform(0.0, 1.0, n) ** 8
    return a.astype(np.float32), draw(st.sampled_from([1, 3, 64, 256]))


@settings(max_examples=80, deadline=None)
@given(scale_arrays())
def test_rebuilt_scales_positive_and_close(case):
    a, block = case
    dq = quantize_scales(a, block_size=block)
    r = dq.rebuild()
    assert np.all(r > 0) if a.max() > 0 else np.all(r == 0)
    c_el = dq.scale[np.arange(a.size) // block]
    # |a' - a| <= c / 2 in exact arithmetic (plus rounding); a raised code adds at most one more c
    err = np.abs(r.astype(np.float64) - a)
    tol = 1e-6 * (np.abs(a).max() + np.abs(dq.offset)) + 1e-30
    assert np.all(err <= c_el * 1.0 + tol)
    unraised = (np.float32(dq.offset) + (dq.codes.astype(np.float32) - 1) * c_el) <= 0
    assert np.all(err[~unraised] <= 0.5 * c_el[~unraised] + tol)


# --------------------------------------------- NF4 + double quantization
@pytest.fixture(scope="module")
def normal_1024():
    return np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)


def test_nf4_double_quant_error_nearly_unchanged_and_bits(normal_1024):
    w = normal_1024
    for block, expected in ((64, 0.07280), (128, 0.07683)):
        plain = quantize_nf4(w, block_size=block)
        dq = quantize_nf4(w, block_size=block, double_quant=True)
        mae_plain = float(np.abs(dequantize(plain) - w).mean())
        mae_dq = float(np.abs(dequantize(dq) - w).mean())
        assert abs(mae_dq - expected) < 5e-4
        assert abs(mae_dq - mae_plain) < 1e-4, (block, mae_plain, mae_dq)
    qt = quantize_nf4(w, block_size=64, double_quant=True)
    # 4 bits + 8 bits / 64 + 32 bits / (64 * 256) + one float32 offset
    assert bits_per_weight(qt) == 4 + 8 / 64 + 32 / (64 * 256) + 32 / w.size
    assert abs(bits_per_weight(qt) - 4.127) < 1e-3
    assert qt.double_quant.codes.shape == qt.scale.shape == (16, 1024)
    assert qt.double_quant.scale.shape == (64,)
    # spec 11.1's int4 g128 figure on 1024 x 1024: 8192 scales, 32 second-level blocks
    q4 = double_quantize(quantize(w, group_size=128), w=w)
    assert bits_per_weight(q4) == 4 + 8 / 128 + 32 * 32 / 2**20 + 32 / 2**20
    assert round(bits_per_weight(q4), 4) == 4.0635


@pytest.mark.parametrize("dist", ["normal", "student_t4"])
def test_nf4_double_quant_beats_int4_g128(dist):
    rng = np.random.default_rng(5)
    shape = (512, 512)
    w = (rng.standard_normal(shape) if dist == "normal" else rng.standard_t(4, shape)).astype(np.float32)
    mse_nf4dq = float(np.mean((dequantize(quantize_nf4(w, block_size=64, double_quant=True)) - w) ** 2))
    mse_int4 = float(np.mean((dequantize(quantize(w, group_size=128)) - w) ** 2))
    assert mse_nf4dq < mse_int4, (dist, mse_nf4dq, mse_int4)


def test_nf4_codes_recomputed_from_rebuilt_absmax(normal_1024):
    w = normal_1024[:128, :64]
    qt = quantize_nf4(w, block_size=64, double_quant=True, dq_block_size=16)
    assert np.array_equal(qt.scale, qt.double_quant.rebuild())
    assert np.array_equal(qt.codes(), nf4_block_codes(w, qt.scale, axis=0, block_size=64))
    assert np.array_equal(dequantize(qt), qt.codebook[qt.codes()] * np.repeat(qt.scale, 64, axis=0))


@pytest.mark.parametrize("shape,axis,block,dq_block", [((128, 64), 0, 64, 16), ((70, 6), 0, 32, 256),
                                                      ((9, 130), 1, 64, 3), ((5,), 0, 2, 2)])
def test_nf4_double_quant_is_double_quantize_of_nf4(shape, axis, block, dq_block):
    # quantize_nf4(double_quant=True) packs its codes once, from the rebuilt absmax: the same tensor,
    # byte for byte, as spec 11's definition double_quantize(quantize_nf4(w), w=w)
    w = np.random.default_rng(11).standard_normal(shape).astype(np.float32) * 3
    got = quantize_nf4(w, block_size=block, axis=axis, double_quant=True, dq_block_size=dq_block)
    want = double_quantize(quantize_nf4(w, block_size=block, axis=axis), block_size=dq_block, w=w)
    assert got.equals(want)
    assert np.array_equal(got.data, want.data) and np.array_equal(got.scale, want.scale)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("sdt", [np.float32, np.float16])
@pytest.mark.parametrize("shape,axis,group,dq_block", [((200, 30), 0, 32, 16), ((9, 130), 1, 64, 256),
                                                       ((40, 3), 0, 128, 2), ((6, 5, 4), 1, 3, 5)])
def test_quantize_double_quant_is_double_quantize_of_quantize(symmetric, sdt, shape, axis, group, dq_block):
    # quantize(double_quant=True) packs once, from the rebuilt scales: byte for byte spec 11's two steps
    # (the (40, 3) case is the int8 fallback, K = 40 < 128)
    w = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    got = quantize(w, group_size=group, axis=axis, symmetric=symmetric, scale_dtype=sdt, double_quant=True,
                   dq_block_size=dq_block)
    want = double_quantize(quantize(w, group_size=group, axis=axis, symmetric=symmetric, scale_dtype=sdt),
                           block_size=dq_block, w=w)
    assert got.equals(want) and np.array_equal(got.data, want.data)
    assert got.scale.dtype == np.float32 and got.double_quant is not None


def test_quantize_double_quant_bad_arguments():
    w = np.ones((8, 2), np.float32)
    with pytest.raises(TypeError, match=r"double_quant must be a bool, got 'yes' \(str\)"):
        quantize(w, double_quant="yes")
    with pytest.raises(ValueError, match="dq_block_size must be a positive int"):
        quantize(w, double_quant=True, dq_block_size=0)


# ------------------------------------------------ int4 / uint4 / int8 scales
@pytest.mark.parametrize("symmetric", [True, False])
def test_linear_codes_recomputed_with_quantize_codes(symmetric):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((200, 30)).astype(np.float32)
    qt = quantize(w, group_size=32, symmetric=symmetric)
    dq = double_quantize(qt, block_size=16, w=w)
    assert dq.scale.dtype == np.float32 and np.array_equal(dq.scale, dq.double_quant.rebuild())
    want = quantize_codes(w, dq.scale, qt.zero_point, axis=0, group_size=32)
    assert np.array_equal(dq.codes(), want)
    if not symmetric:
        assert np.array_equal(dq.zero_point, qt.zero_point)  # zero points are kept
    mse = [float(np.mean((dequantize(t) - w) ** 2)) for t in (qt, dq)]
    assert mse[1] < mse[0] * 1.01, mse
    assert bits_per_weight(dq) < bits_per_weight(qt) - 0.18


def test_without_w_codes_come_from_the_reconstruction():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 16)).astype(np.float32)
    qt = quantize(w, group_size=16)
    dq = double_quantize(qt)
    recon = dequantize_slice(qt, 0, 64)
    assert np.array_equal(dq.codes(), quantize_codes(recon, dq.scale, None, axis=0, group_size=16))
    assert np.mean(dq.codes() == qt.codes()) > 0.99


def test_int8_fallback_and_float16_scales():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((20, 6)).astype(np.float32)
    q8 = quantize(w, group_size=128)  # K=20 < 128: int8 per channel
    assert q8.bits == 8
    d8 = double_quantize(q8, w=w)
    assert d8.bits == 8 and np.array_equal(d8.codes(), quantize_codes(w, d8.scale, None, axis=0, group_size=20,
                                                                      bits=8))
    q16 = quantize(w, group_size=4, scale_dtype=np.float16)
    d16 = double_quantize(q16, w=w)
    assert d16.scale.dtype == np.float32  # the rebuilt scales are float32
    assert float(np.abs(dequantize(d16) - w).max()) < 0.25


def test_perm_is_applied_to_w():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((32, 4)).astype(np.float32)
    perm = rng.permutation(32)
    stored = quantize(w.take(perm, axis=0), group_size=8)
    qt = dataclasses.replace(stored, perm=perm)
    dq = double_quantize(qt, w=w, block_size=4)
    assert np.array_equal(dq.perm, perm)
    assert np.array_equal(dq.codes(), quantize_codes(w.take(perm, 0), dq.scale, None, axis=0, group_size=8))
    assert float(np.abs(dequantize(dq) - w).max()) < 0.5


# ------------------------------------------------------------- bad input
def test_bad_input():
    w = np.ones((8, 2), np.float32)
    qt = quantize(w, group_size=4)
    with pytest.raises(TypeError, match="qt must be a QuantizedTensor"):
        double_quantize(w)
    with pytest.raises(ValueError, match="already double-quantized"):
        double_quantize(double_quantize(qt))
    with pytest.raises(ValueError, match="w must have qt's shape"):
        double_quantize(qt, w=np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        double_quantize(qt, block_size=0)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        quantize_scales(np.array([1.0, -1.0], np.float32))
    with pytest.raises(TypeError, match="scale must be a float32 or float16 array"):
        quantize_scales(np.array([1, 2]))
    with pytest.raises(ValueError, match="finite"):
        double_quantize(qt, w=np.full((8, 2), np.inf, np.float32))
    assert isinstance(double_quantize(qt).double_quant, DoubleQuant)
