"""NF4 (spec 10): the codebook, the tie rule, golden vectors, bitsandbytes' error figures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import (
    NF4_CODEBOOK,
    bits_per_weight,
    dequantize,
    load,
    quantize,
    quantize_nf4,
    save,
)
from monoquant_np.nf4 import NF4_MIDPOINTS, nf4_block_codes, nf4_codes

# The values as printed in bitsandbytes/functional.py get_4bit_type("nf4").
BNB_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def bnb_tree(x: float) -> int:
    """bitsandbytes csrc/kernels.cu dQuantizeNF4, transcribed branch by branch (float32 compares)."""
    f = np.float32
    x = f(x)
    if x > f(0.03979014977812767):
        if x > f(0.3893125355243683):
            if x > f(0.6427869200706482):
                return 15 if x > f(0.8614784181118011) else 14
            return 13 if x > f(0.5016634166240692) else 12
        if x > f(0.2035212516784668):
            return 11 if x > f(0.2920137718319893) else 10
        return 9 if x > f(0.1202552504837513) else 8
    if x > f(-0.33967943489551544):
        if x > f(-0.13791173323988914):
            return 7 if x > f(-0.045525018125772476) else 6
        return 5 if x > f(-0.23460740596055984) else 4
    if x > f(-0.6106329262256622):
        return 3 if x > f(-0.4599952697753906) else 2
    return 1 if x > f(-0.8480964004993439) else 0


# ---------------------------------------------------------------- the tables
def test_codebook_is_bitsandbytes_table():
    assert NF4_CODEBOOK.dtype == np.float32 and NF4_CODEBOOK.shape == (16,)
    assert [float(v) for v in NF4_CODEBOOK] == BNB_NF4  # exact: every literal is a float32
    assert not NF4_CODEBOOK.flags.writeable
    assert NF4_CODEBOOK[7] == 0.0 and NF4_CODEBOOK[0] == -1.0 and NF4_CODEBOOK[15] == 1.0
    assert np.all(np.diff(NF4_CODEBOOK) > 0)


def test_midpoints_are_float32_of_exact_midpoints():
    c = NF4_CODEBOOK.astype(np.float64)
    assert np.array_equal(NF4_MIDPOINTS, ((c[:-1] + c[1:]) / 2).astype(np.float32))


# ------------------------------------------------------- exhaustive: 16 codes
def test_every_code_round_trips_exactly():
    """Each codebook value quantizes to its own code and dequantizes to itself (absmax 1)."""
    assert nf4_codes(NF4_CODEBOOK).tolist() == list(range(16))
    w = NF4_CODEBOOK.reshape(16, 1).copy()  # one block of 16 with absmax 1
    qt = quantize_nf4(w, block_size=16)
    assert qt.scale.tolist() == [[1.0]]
    assert qt.codes().ravel().tolist() == list(range(16))
    assert np.array_equal(dequantize(qt).ravel(), NF4_CODEBOOK)


@pytest.mark.parametrize("i", range(15))
def test_every_midpoint_goes_to_the_lower_code(i):
    m = NF4_MIDPOINTS[i]
    up = np.nextafter(m, np.float32(2))
    down = np.nextafter(m, np.float32(-2))
    assert nf4_codes(np.array([down, m, up], np.float32)).tolist() == [i, i, i + 1]
    assert [bnb_tree(v) for v in (down, m, up)] == [i, i, i + 1]


def test_codes_equal_bitsandbytes_decision_tree():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(-1, 1, 4000).astype(np.float32),
        NF4_MIDPOINTS, NF4_CODEBOOK,
        np.nextafter(NF4_MIDPOINTS, np.float32(2)), np.nextafter(NF4_MIDPOINTS, np.float32(-2)),
        np.array([-1.5, 1.5, -0.0], np.float32),
    ])
    assert nf4_codes(x).tolist() == [bnb_tree(v) for v in x]


def test_codes_equal_searchsorted_and_nan_takes_code_0():
    """The counted comparisons agree with a binary search on every non-NaN value
    (both ends of every midpoint, infinities, signed zeros, subnormals); NaN, for
    which no comparison holds, takes code 0 as in bitsandbytes' tree."""
    rng = np.random.default_rng(7)
    x = np.concatenate([
        rng.standard_normal(20_001).astype(np.float32) / np.float32(2),
        np.nextafter(NF4_MIDPOINTS, np.float32(np.inf)), np.nextafter(NF4_MIDPOINTS, np.float32(-np.inf)),
        NF4_MIDPOINTS, np.array([np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45], np.float32),
    ]).reshape(2, -1)
    got = nf4_codes(x)
    assert got.dtype == np.uint8 and got.shape == x.shape
    assert np.array_equal(got, np.searchsorted(NF4_MIDPOINTS, x, side="left"))
    assert nf4_codes(np.array([np.nan, -np.nan], np.float32)).tolist() == [0, 0]
    assert bnb_tree(np.float32(np.nan)) == 0
    assert nf4_codes(np.float32(0.5)).shape == ()


# ------------------------------------------------------------ golden vectors
def test_golden_vector_spec_10():
    """spec/10-nf4.md, example 1: absmax 2, x = [-1, 0.25, 1, 0]."""
    w = np.array([[-2.0], [0.5], [2.0], [0.0]], np.float32)
    qt = quantize_nf4(w, block_size=4)
    assert qt.codes().ravel().tolist() == [0, 10, 15, 7]
    assert qt.scale.ravel().tolist() == [2.0]
    assert qt.data.tolist() == [0xA0, 0x7F]  # low nibble first: (0, 10) -> 0xA0, (15, 7) -> 0x7F
    assert dequantize(qt).ravel().tolist() == [-2.0, float(np.float32(2) * np.float32(BNB_NF4[10])), 2.0, 0.0]
    assert qt.scheme == "nf4" and not qt.signed and qt.zero_point is None and qt.bits == 4


def test_golden_tie_vector_spec_10():
    """spec/10-nf4.md, example 2: absmax 1, the midpoint between codes 7 and 8 and its neighbour."""
    mid = float(NF4_MIDPOINTS[7])  # 0.03979015 (float32 0x3D22FAFF)
    assert NF4_MIDPOINTS[7:8].view(np.uint32)[0] == 0x3D22FAFF  # the bits the spec prints
    above = float(np.nextafter(np.float32(mid), np.float32(1)))
    w = np.array([1.0, mid, above, -mid], np.float32)
    qt = quantize_nf4(w, block_size=4)
    # mid -> 7 (0.0, the lower code); one ulp above -> 8; -mid lies strictly between 6 | 7 and 7 | 8
    assert qt.codes().tolist() == [15, 7, 8, 7]
    assert dequantize(qt).tolist() == [1.0, 0.0, float(NF4_CODEBOOK[8]), 0.0]


def test_golden_two_columns_spec_10():
    """spec/10-nf4.md, example 3: r = float32(1 / 0.9) for both columns."""
    w = np.array([[0.3, -0.9], [-0.6, 0.6], [0.9, 0.1], [0.0, 0.45]], np.float32)
    qt = quantize_nf4(w, block_size=4)
    assert qt.scale.tolist() == [[float(np.float32(0.9))] * 2]
    assert qt.codes().T.tolist() == [[11, 1, 15, 7], [0, 14, 8, 12]]
    assert dequantize(qt)[0, 0] == np.float32(0.9) * NF4_CODEBOOK[11]


def test_tie_with_absmax_two_is_exact_reciprocal():
    """absmax 2 -> r = 0.5 exactly, so w = 2 * midpoint is a tie too."""
    w = np.array([2.0, 2 * NF4_MIDPOINTS[10], 2 * NF4_MIDPOINTS[3]], np.float32)
    assert quantize_nf4(w, block_size=3).codes().tolist() == [15, 10, 3]


def test_all_zero_block_is_code_seven_scale_zero():
    w = np.zeros((4, 2), np.float32)
    w[:, 1] = [0.0, -3.0, 1.5, 0.0]
    qt = quantize_nf4(w, block_size=4)
    assert qt.scale.tolist() == [[0.0, 3.0]]
    assert qt.codes()[:, 0].tolist() == [7, 7, 7, 7]
    assert qt.codes()[:, 1].tolist() == [7, 0, 12, 7]  # 1.5 / 3 = 0.5 -> 0.4407 (code 12)
    assert np.array_equal(dequantize(qt)[:, 0], np.zeros(4, np.float32))


def test_partial_last_block_and_axis_1():
    w = np.array([[1.0, -0.5, 0.25, 4.0, -2.0]], np.float32)  # (1, 5), blocks along axis 1 of 2
    qt = quantize_nf4(w, block_size=2, axis=1)
    assert qt.scale.tolist() == [[1.0, 4.0, 2.0]]
    assert qt.codes().tolist() == [[15, 2, 8, 15, 0]]  # 0.25/4 = 0.0625 -> 0.0796 (code 8)


def test_three_d_weight_matches_per_block_definition():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 10, 4)).astype(np.float32)
    qt = quantize_nf4(w, block_size=4, axis=1)
    assert qt.scale.shape == (3, 3, 4)
    deq = dequantize(qt)
    for g, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 10)]):
        blk = w[:, lo:hi, :]
        a = np.abs(blk).max(axis=1, keepdims=True)
        want = NF4_CODEBOOK[nf4_codes(blk * (np.float32(1) / a))] * a
        assert np.array_equal(deq[:, lo:hi, :], want), f"block {g} differs"


@pytest.mark.parametrize("shape, axis, block", [((37, 6), 0, 4), ((6, 37), 1, 5), ((3, 10, 4), 1, 3), ((50,), 0, 7),
                                                ((40, 5), 0, 3), ((7, 3, 5), 0, 1)])  # odd codes per block
def test_block_codes_in_small_slabs_match_the_definition(monkeypatch, shape, axis, block):
    # slabs of one or a few blocks, partial last blocks: the codes are nf4_codes(w * r) with r repeated per block
    import monoquant_np.nf4 as nf4

    monkeypatch.setattr(nf4, "SLAB_ELEMENTS", 16)
    rng = np.random.default_rng(5)
    w = rng.standard_normal(shape).astype(np.float32)
    qt = quantize_nf4(w, block_size=block, axis=axis)
    r = np.where(qt.scale == 0, np.float32(0), np.float32(1) / np.where(qt.scale == 0, 1, qt.scale))
    r_el = np.repeat(r, block, axis=axis).take(np.arange(shape[axis]), axis=axis)
    assert np.array_equal(qt.codes(), nf4_codes((w * r_el).astype(np.float32)))


@pytest.mark.parametrize("axis", [0, 1])
def test_quantize_nf4_temporary_memory(axis):
    # codes are computed and packed in slabs: the peak is the packed output (1/8 of the float32
    # weight) plus slabs of a few MB, not a full-size code array and its packing (0.89x before);
    # double quantization packs once too, from the rebuilt absmax (0.62x when it packed twice).
    # Blocks along the last axis (bitsandbytes' (N, K) layout) take slabs of whole rows (0.89x before)
    import tracemalloc

    w = np.random.default_rng(6).standard_normal((2048, 1024)).astype(np.float32)  # 8 MiB
    for dq in (False, True):
        tracemalloc.start()
        quantize_nf4(w, block_size=64, axis=axis, double_quant=dq)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        bound = 0.55
        assert peak <= bound * w.nbytes, f"double_quant={dq}: peak {peak / w.nbytes:.2f}x the weight"


# ------------------------------------- bitsandbytes' published error figures
@pytest.fixture(scope="module")
def normal_1024():
    return np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)


@pytest.mark.parametrize("block_size, expected", [(64, 0.07280), (128, 0.07683)])
def test_mean_abs_error_matches_bitsandbytes(normal_1024, block_size, expected):
    qt = quantize_nf4(normal_1024, block_size=block_size)
    mae = float(np.abs(dequantize(qt) - normal_1024).mean())
    assert abs(mae - expected) < 5e-4, f"NF4 block {block_size}: mean abs error {mae:.5f}, expected {expected}"


def test_bits_per_weight_nf4(normal_1024):
    assert bits_per_weight(quantize_nf4(normal_1024, block_size=64)) == 4.5
    assert bits_per_weight(quantize_nf4(normal_1024, block_size=128)) == 4.25


def test_nf4_beats_int4_on_normal_weights(normal_1024):
    w = normal_1024[:256]
    mse_nf4 = float(np.mean((dequantize(quantize_nf4(w, block_size=64)) - w) ** 2))
    mse_int4 = float(np.mean((dequantize(quantize(w, group_size=64)) - w) ** 2))
    assert mse_nf4 < 0.8 * mse_int4, (mse_nf4, mse_int4)


# ------------------------------------------------------------ properties
@st.composite
def weights(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    block = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31))
    scale = draw(st.sampled_from([1e-3, 1.0, 300.0]))
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * scale).astype(np.float32)
    w[rng.random(shape) < 0.1] = 0.0
    return w, axis, block


@settings(max_examples=60, deadline=None)
@given(weights())
def test_error_bound_and_idempotence(case):
    """|w - w'| <= (largest half gap) * absmax per block; quantizing w' again gives the same tensor."""
    w, axis, block = case
    qt = quantize_nf4(w, block_size=block, axis=axis)
    deq = dequantize(qt)
    a_el = np.repeat(qt.scale, block, axis=axis).take(np.arange(w.shape[axis]), axis=axis)
    half_gap = float(np.max(np.diff(NF4_CODEBOOK)) / 2)  # (1 - 0.72296) / 2
    assert np.all(np.abs(deq - w) <= half_gap * a_el * (1 + 1e-6) + 1e-30)
    again = quantize_nf4(deq, block_size=block, axis=axis)
    assert again.equals(qt)


@settings(max_examples=30, deadline=None)
@given(weights())
def test_codes_are_nearest_entry(case):
    """Every code is a nearest codebook entry of x = w * (1 / absmax) (ties: the lower one)."""
    w, axis, block = case
    qt = quantize_nf4(w, block_size=block, axis=axis)
    a = np.repeat(qt.scale, block, axis=axis).take(np.arange(w.shape[axis]), axis=axis)
    r = np.where(a > 0, np.float32(1) / np.where(a > 0, a, 1), 0).astype(np.float32)
    x = (w * r).astype(np.float64)
    dist = np.abs(x[..., None] - NF4_CODEBOOK.astype(np.float64))
    chosen = np.take_along_axis(dist, qt.codes()[..., None].astype(np.int64), axis=-1)[..., 0]
    assert np.all(chosen <= dist.min(axis=-1) + 1e-7)


def test_block_codes_accept_external_scales():
    w = np.array([0.5, -0.5, 3.0], np.float32)
    codes = nf4_block_codes(w, np.array([1.0], np.float32), axis=0, block_size=3)
    assert codes.tolist() == [12, 2, 15]  # 0.5 -> 0.4407, -0.5 -> -0.5251, 3.0 clamps to code 15


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    qt = quantize_nf4(rng.standard_normal((70, 6)).astype(np.float32), block_size=32, double_quant=True)
    save(tmp_path / "w.npz", {"w": qt})
    assert load(tmp_path / "w.npz")["w"].equals(qt)


# ------------------------------------------------------------- bad input
def test_bad_input_messages():
    w = np.ones((4, 4), np.float32)
    with pytest.raises(TypeError, match="w must"):
        quantize_nf4(np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="finite"):
        quantize_nf4(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        quantize_nf4(w, block_size=0)
    with pytest.raises(ValueError, match="dq_block_size"):
        quantize_nf4(w, double_quant=True, dq_block_size=-1)
    with pytest.raises(ValueError, match="axis"):
        quantize_nf4(w, axis=2)
    with pytest.raises(ValueError, match="at least one element"):
        quantize_nf4(np.zeros((0, 3), np.float32))
    with pytest.raises(TypeError, match="double_quant must be a bool"):
        quantize_nf4(w, double_quant="yes")
