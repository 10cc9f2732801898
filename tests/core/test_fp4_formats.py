"""Spec 18-19: MXFP4 and NVFP4 quantization, dequantization, matmul and files.

Three layers: hand-checkable vectors (spec 18.5, 19.4), the package pinned bit
for bit to the textbook forms of ``monoquant_np.testing.fp4_reference`` on
hypothesis-drawn weights (every block kind of ``fp4_strategies``), and
properties (dequantize within half a step, matmul = dequantize-then-matmul,
files round-trip).
"""

import numpy as np
import pytest
from hypothesis import given, settings

from monoquant_np import (
    E2M1_VALUES,
    FloatScales,
    QuantizedTensor,
    bits_per_weight,
    dequant_matmul,
    dequantize,
    load,
    quantize_mxfp4,
    quantize_nvfp4,
    save,
)
from monoquant_np.mxfp4 import mx_exponents
from monoquant_np.testing import fp4_reference as ref
from monoquant_np.testing.fp4_strategies import fp4_cases

QUANTIZE = {"mxfp4": quantize_mxfp4, "nvfp4": quantize_nvfp4}
f32 = np.float32


def _col(values: list[float]) -> np.ndarray:
    return np.array(values, f32)


# ---------------------------------------------------------------- MXFP4 (spec 18.5)
def test_mxfp4_worked_example():
    # amax 7: floor(log2 7) = 2, e = 0, S = 1; 7 saturates to 6, -1.25 ties to -1, 0.3 -> 0.5
    qt = quantize_mxfp4(_col([7.0, -1.25, 0.3, 0.0]), block_size=4)
    assert qt.scheme == "mxfp4" and qt.fp_scales.codes.tolist() == [127] and qt.scale.tolist() == [1.0]
    assert qt.codes().tolist() == [7, 10, 1, 0]
    assert dequantize(qt).tolist() == [6.0, -1.0, 0.5, 0.0]


@pytest.mark.parametrize("amax,e", [(6.0, 0), (8.0, 1), (7.99, 0), (4.0, 0), (3.99, -1), (1.0, -2),
                                    (0.0, -127), (2.0**-126, -127), (2.0**-124, -126), (1e-40, -127),
                                    (3.4e38, 125)])
def test_mx_shared_exponents(amax, e):
    assert mx_exponents(_col([amax])).tolist() == [e]


def test_mxfp4_edge_blocks():
    w = np.concatenate([
        np.zeros(4, f32),                          # all zero: code 0 (2**-127), every element code 0
        _col([8.0, 1.0, -3.0, 0.5]),               # power-of-two amax: e = 1, S = 2
        _col([2.0**-126, 2.0**-127, -(2.0**-128), 0]),  # e clamps to -127: w / S = 2, 1, -0.5, 0
        _col([1e-40, -1e-41, 0, 0]),               # subnormal amax: S = 2**-127, w / S < 0.25
        _col([3.4e38, -1e38, 1e37, 0]),            # huge: e = 125, S = 2**125
    ])
    qt = quantize_mxfp4(w, block_size=4)
    assert qt.fp_scales.codes.tolist() == [0, 128, 0, 0, 252]
    assert qt.codes().tolist() == [0, 0, 0, 0, 6, 1, 11, 0, 4, 2, 9, 0, 0, 8, 0, 0, 7, 12, 0, 0]
    back = dequantize(qt)
    assert back[4:12].tolist() == [8.0, 1.0, -3.0, 0.0, 2.0**-126, 2.0**-127, -(2.0**-128), 0.0]
    assert back[16] == f32(6 * 2.0**125) and back[17] == f32(-2 * 2.0**125)


def test_mxfp4_every_midpoint():
    mids = _col([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    w = np.concatenate([mids, [6.0], -mids, [0.0]]).astype(f32)  # amax 6: S = 1, w / S on every tie
    qt = quantize_mxfp4(w, block_size=16)
    assert qt.codes().tolist() == [0, 2, 2, 4, 4, 6, 6, 7, 8, 10, 10, 12, 12, 14, 14, 0]


# ---------------------------------------------------------------- NVFP4 (spec 19.4)
def test_nvfp4_worked_example():
    qt = quantize_nvfp4(_col([2688.0, 672.0, -12.0, 3.0, 0.1]), block_size=2)
    assert qt.scheme == "nvfp4" and qt.fp_scales.tensor_scale == 1.0
    assert qt.fp_scales.codes.tolist() == [126, 64, 9] and qt.scale.tolist() == [448.0, 2.0, 9 * 2.0**-9]
    assert qt.codes().tolist() == [7, 3, 15, 3, 7]
    assert dequantize(qt).tolist() == [2688.0, 672.0, -12.0, 3.0, f32(6 * 9 * 2.0**-9)]


def test_nvfp4_zero_blocks_and_tiny_blocks():
    # an all-zero block gets scale code 56 (1.0); a block 2**-20 times the amax clamps to 2**-9 (code 1)
    w = np.concatenate([_col([2688.0, 0, 0, 0]), np.zeros(4, f32), _col([2688 * 2.0**-20, 0, 0, 0])])
    qt = quantize_nvfp4(w, block_size=4)
    assert qt.fp_scales.codes.tolist() == [126, 56, 1]
    # g = 1, S = 2**-9: 2688 * 2**-20 / 2**-9 = 1.3125 rounds to 1.5, code 3
    assert qt.codes()[4:8].tolist() == [0, 0, 0, 0] and qt.codes()[8] == 3
    assert dequantize(qt)[8] == f32(1.5 * 2.0**-9)


def test_nvfp4_all_zero_tensor():
    qt = quantize_nvfp4(np.zeros((4, 3), f32), block_size=2)
    assert qt.fp_scales.tensor_scale == 0.0 and (qt.fp_scales.codes == 56).all()
    assert (qt.scale == 0).all() and (qt.codes() == 0).all() and (dequantize(qt) == 0).all()


# ---------------------------------------------------------------- pinned to the textbook forms
@settings(max_examples=60)
@given(fp4_cases())
def test_equals_the_textbook_form(case):
    qt = QUANTIZE[case.scheme](case.w, axis=case.axis, block_size=case.block_size)
    if case.scheme == "mxfp4":
        codes, sc = ref.mxfp4(case.w, case.axis, case.block_size)
        block_scale = 2.0 ** (sc.astype(np.float64) - 127)
    else:
        codes, sc, g = ref.nvfp4(case.w, case.axis, case.block_size)
        assert qt.fp_scales.tensor_scale == float(g), case.describe()
        block_scale = (ref.E4M3_MAGNITUDES[sc].astype(f32) * g).astype(f32)
    assert np.array_equal(np.moveaxis(qt.fp_scales.codes, case.axis, -1), sc), case.describe()
    assert np.array_equal(qt.codes(), codes), case.describe()
    want = ref.dequantize(codes, block_scale.astype(f32), case.axis, case.block_size)
    got = dequantize(qt)
    assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist(), case.describe()  # -0.0 included


@settings(max_examples=40)
@given(fp4_cases(kinds=("normal", "zeros", "pow2", "midpoints")))
def test_dequantize_is_the_nearest_value_or_saturates(case):
    qt = QUANTIZE[case.scheme](case.w, axis=case.axis, block_size=case.block_size)
    s = np.repeat(qt.scale, case.block_size, axis=case.axis)[tuple(slice(0, n) for n in case.w.shape)]
    err = np.abs(dequantize(qt).astype(np.float64) - case.w)
    # at most half the gap between neighbouring E2M1 values (2 at the top) times S, or the saturation,
    # plus the float32 rounding of the dequantized q * S (half an ulp: 2**-24 of its magnitude)
    bound = np.maximum(s.astype(np.float64), np.abs(case.w) - 6 * s.astype(np.float64))
    bound += 2.0**-23 * np.abs(case.w)
    assert (err <= bound).all(), case.describe()


@settings(max_examples=30)
@given(fp4_cases(ndims=(2,), kinds=("normal", "zeros", "pow2")))
def test_dequant_matmul_equals_dequantize_then_matmul(case):
    qt = QUANTIZE[case.scheme](case.w, axis=case.axis, block_size=case.block_size)
    x = np.random.default_rng(0).standard_normal((3, case.w.shape[0])).astype(f32)
    want = x.astype(np.float64) @ dequantize(qt).astype(np.float64)
    got = dequant_matmul(x, qt)
    tol = 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(dequantize(qt)).astype(np.float64)) + 1e-30
    assert (np.abs(got - want) <= tol).all(), case.describe()


# ---------------------------------------------------------------- container, files, bits
@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_save_load_round_trip(scheme, tmp_path):
    w = np.random.default_rng(1).standard_normal((64, 10)).astype(f32)
    qt = QUANTIZE[scheme](w, axis=0)
    save(tmp_path / "w.npz", {"w": qt})
    back = load(tmp_path / "w.npz")["w"]
    assert back.equals(qt) and back.scheme == scheme
    assert np.array_equal(dequantize(back), dequantize(qt))


def test_bits_per_weight():
    w = np.zeros((64, 8), f32)
    assert bits_per_weight(quantize_mxfp4(w)) == 4.25               # 4 + 8 / 32
    assert bits_per_weight(quantize_nvfp4(w)) == 4.5 + 32 / w.size  # 4 + 8 / 16, plus the float32 tensor scale


def test_invariants_are_checked():
    qt = quantize_mxfp4(np.ones((32, 2), f32))
    fields = dict(data=qt.data, shape=qt.shape, axis=0, block_size=32, scale=qt.scale, signed=False,
                  codebook=E2M1_VALUES)
    with pytest.raises(ValueError, match="fp_scales.rebuild"):
        QuantizedTensor(**fields, fp_scales=FloatScales(np.array([[128, 128]], np.uint8), "e8m0"))
    with pytest.raises(ValueError, match="E2M1_VALUES"):
        QuantizedTensor(**{**fields, "codebook": np.zeros(16, f32)}, fp_scales=qt.fp_scales)
    with pytest.raises(ValueError, match="0..254"):
        FloatScales(np.array([255], np.uint8), "e8m0")
    with pytest.raises(ValueError, match="0..126"):
        FloatScales(np.array([127], np.uint8), "e4m3", 1.0)
    with pytest.raises(ValueError, match="kind"):
        FloatScales(np.array([1], np.uint8), "e5m2")


@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_bad_input(scheme):
    q = QUANTIZE[scheme]
    with pytest.raises(ValueError, match="w"):
        q(_col([1.0, np.nan]))
    with pytest.raises(ValueError, match="block_size"):
        q(_col([1.0]), block_size=0)
    with pytest.raises(TypeError, match="w"):
        q(np.array([1, 2]))
    with pytest.raises(ValueError, match="axis"):
        q(_col([1.0]), axis=1)
