"""Spec 17.2-17.3: E4M3FN and E8M0 conversions, bit for bit against ml_dtypes.

Every code decodes, every float16 input encodes, and a hypothesis sweep of
float32 inputs encodes, exactly as ml_dtypes' ``float8_e4m3fn`` and
``float8_e8m0fnu`` casts do.
"""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np.fp8 import E4M3_MAX, e4m3_codes, e4m3_values, e8m0_codes, e8m0_values

E4 = ml_dtypes.float8_e4m3fn
E8 = ml_dtypes.float8_e8m0fnu
ALL_F16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
CODES = np.arange(256, dtype=np.uint8)


def _bits(v: np.ndarray) -> list[int]:
    """float32 bit patterns, every NaN as one pattern."""
    b = v.astype(np.float32).view(np.uint32).copy()
    b[np.isnan(v)] = 0x7FC00000
    return b.tolist()


def test_golden_e4m3():
    # spec 17.2's worked examples
    x = np.array([448.0, 464.0, 465.0, 1.0, 0.3, 2.0**-10, 1.5 * 2.0**-9, -3.0, -0.0, np.inf, np.nan], np.float32)
    assert e4m3_codes(x).tolist() == [126, 126, 127, 56, 42, 0, 2, 196, 128, 127, 127]
    assert e4m3_codes(x, saturate=True).tolist() == [126, 126, 126, 56, 42, 0, 2, 196, 128, 126, 127]
    assert e4m3_values(np.array([1, 8, 42, 56, 126, 128, 254], np.uint8)).tolist() == \
        [2.0**-9, 2.0**-6, 0.3125, 1.0, 448.0, -0.0, -448.0]


def test_golden_e8m0():
    x = np.array([1.0, 1.4999999, 1.5, 3.0, 0.75, 2.0**-127, 2.0**-149, 2.0**127, 1.5 * 2.0**127, 0.0, -1.0],
                 np.float32)
    assert e8m0_codes(x).tolist() == [127, 127, 128, 129, 127, 0, 0, 254, 255, 255, 255]
    assert e8m0_values(np.array([0, 125, 127, 254], np.uint8)).tolist() == [2.0**-127, 0.25, 1.0, 2.0**127]
    assert np.isnan(e8m0_values(np.array([255], np.uint8))).all()


@pytest.mark.parametrize("values,dtype", [(e4m3_values, E4), (e8m0_values, E8)])
def test_every_code_decodes_like_ml_dtypes(values, dtype):
    assert _bits(values(CODES)) == _bits(CODES.view(dtype).astype(np.float32))


def test_e4m3_codes_round_trip():
    finite = CODES[(CODES & 0x7F) != 0x7F]
    assert (e4m3_codes(e4m3_values(finite)) == finite).all()
    assert (e8m0_codes(e8m0_values(CODES[:255])) == CODES[:255]).all()
    assert e4m3_values(np.array([126], np.uint8))[0] == E4M3_MAX


@pytest.mark.parametrize("name", ["e4m3", "e4m3_saturate", "e8m0"])
def test_all_float16_inputs_agree_with_ml_dtypes(name):
    if name == "e4m3":
        ours, theirs = e4m3_codes(ALL_F16), ALL_F16.astype(E4).view(np.uint8)
    elif name == "e4m3_saturate":  # ONNX Cast(saturate=1): clamp to +-448, then ml_dtypes' cast
        clipped = np.clip(ALL_F16, -E4M3_MAX, E4M3_MAX)  # infinities too; NaN stays NaN
        ours, theirs = e4m3_codes(ALL_F16, saturate=True), clipped.astype(np.float32).astype(E4).view(np.uint8)
    else:
        ours, theirs = e8m0_codes(ALL_F16), ALL_F16.astype(E8).view(np.uint8)
    bad = np.flatnonzero(ours != theirs)
    assert bad.size == 0, f"{name}: inputs {ALL_F16[bad[:5]]}: ours {ours[bad[:5]]}, ml_dtypes {theirs[bad[:5]]}"


@settings(max_examples=300)
@given(st.lists(st.floats(width=32), min_size=1, max_size=64))
def test_float32_inputs_agree_with_ml_dtypes(values):
    x = np.array(values, np.float32)
    assert e4m3_codes(x).tolist() == x.astype(E4).view(np.uint8).tolist()
    assert e8m0_codes(x).tolist() == x.astype(E8).view(np.uint8).tolist()


@settings(max_examples=200)
@given(st.lists(st.floats(-500, 500, width=32), min_size=1, max_size=64))
def test_bounded_float32_inputs_agree_with_ml_dtypes(values):
    x = np.array(values, np.float32)
    assert e4m3_codes(x).tolist() == x.astype(E4).view(np.uint8).tolist()


@settings(max_examples=100)
@given(st.integers(0, (1 << 32) - 1))
def test_float32_bit_patterns_agree_with_ml_dtypes(seed):
    x = np.random.default_rng(seed).integers(0, 1 << 32, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32)
    assert (e4m3_codes(x) == x.astype(E4).view(np.uint8)).all()
    assert (e8m0_codes(x) == x.astype(E8).view(np.uint8)).all()


def test_decoders_refuse_other_dtypes():
    with pytest.raises(TypeError, match="uint8"):
        e4m3_values(np.array([1], np.int64))
    with pytest.raises(TypeError, match="uint8"):
        e8m0_values(np.array([1.0]))
