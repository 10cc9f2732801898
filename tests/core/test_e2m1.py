"""Spec 17.1: FP4 E2M1 conversions, checked bit for bit against ml_dtypes' ``float4_e2m1fn``.

ml_dtypes is the independent implementation (onnx depends on it, so it is
always installed); the core never imports it.
"""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np.e2m1 import E2M1_TIES_DOWN, E2M1_TIES_UP, E2M1_VALUES, e2m1_codes, e2m1_values

F4 = ml_dtypes.float4_e2m1fn
ALL_F16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # every float16, exactly


def _ml(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(F4).view(np.uint8)


def test_golden_values_and_rounding():
    # spec 17.1's table and worked examples
    assert E2M1_VALUES.tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6]
    assert np.signbit(E2M1_VALUES[8]) and not np.signbit(E2M1_VALUES[0])
    x = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.5, 7.0, 1e30, np.inf, -np.inf, -0.0, -0.2, 0.26],
                 np.float32)
    assert e2m1_codes(x).tolist() == [0, 2, 2, 4, 4, 6, 6, 7, 7, 7, 7, 15, 8, 8, 1]
    assert e2m1_values(np.array([1, 7, 9, 15])).tolist() == [0.5, 6.0, -0.5, -6.0]


def test_every_code_decodes_like_ml_dtypes():
    codes = np.arange(16, dtype=np.uint8)
    ours = e2m1_values(codes)
    theirs = codes.view(F4).astype(np.float32)
    assert ours.view(np.uint32).tolist() == theirs.view(np.uint32).tolist()  # -0.0 included


def test_every_code_round_trips():
    assert e2m1_codes(E2M1_VALUES).tolist() == list(range(16))


def test_every_midpoint_goes_to_the_even_mantissa():
    mids = (E2M1_VALUES[:7] + E2M1_VALUES[1:8]) / 2  # the 7 positive midpoints
    assert sorted(mids.tolist()) == sorted(E2M1_TIES_DOWN.tolist() + E2M1_TIES_UP.tolist())
    got = e2m1_codes(np.concatenate([mids, -mids]))
    assert got.tolist() == [0, 2, 2, 4, 4, 6, 6, 8, 10, 10, 12, 12, 14, 14]  # codes with mantissa bit 0
    assert (got == _ml(np.concatenate([mids, -mids]))).all()
    # one float32 ulp either side of each midpoint leaves the tie
    below, above = np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(7))
    assert (e2m1_codes(below) == np.arange(7)).all() and (e2m1_codes(above) == np.arange(1, 8)).all()


def test_all_float16_inputs_agree_with_ml_dtypes():
    nan = np.isnan(ALL_F16)
    assert int((~nan).sum()) == 63490  # 65536 bit patterns less 2046 NaNs
    ours, theirs = e2m1_codes(ALL_F16), _ml(ALL_F16)
    bad = np.flatnonzero((ours != theirs) & ~nan)
    assert bad.size == 0, f"first differing float16 inputs: {ALL_F16[bad[:5]]}, ours {ours[bad[:5]]}, " \
                          f"ml_dtypes {theirs[bad[:5]]}"


def test_nan_gives_a_zero_of_its_sign_bit():
    nan = np.array([np.nan, -np.nan], np.float32)
    assert e2m1_codes(nan).tolist() == [0, 8]
    assert _ml(nan).tolist() == [8, 0]  # spec 17.1's Note: ml_dtypes 0.7 flips the sign


@settings(max_examples=300)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=64))
def test_float32_inputs_agree_with_ml_dtypes(values):
    x = np.array(values, np.float32)
    assert e2m1_codes(x).tolist() == _ml(x).tolist()


@settings(max_examples=200)
@given(st.lists(st.floats(-8, 8, width=32), min_size=1, max_size=64))
def test_bounded_float32_inputs_agree_with_ml_dtypes(values):
    x = np.array(values, np.float32)
    assert e2m1_codes(x).tolist() == _ml(x).tolist()


def test_bad_codes_are_refused():
    with pytest.raises(ValueError, match="0..15"):
        e2m1_values(np.array([16]))
    with pytest.raises(TypeError, match="integer"):
        e2m1_values(np.array([1.0]))
