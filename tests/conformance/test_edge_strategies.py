"""Properties of the edge-drawing strategies (spec 12.7.1): float32 scale underflow (3.3), the float16
overflow boundary (3.4), subnormal NF4 absmax (10.2) and tiny GGUF ``d`` (12.2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings

from monoquant_np import dequantize, quantize
from monoquant_np import formats as F
from monoquant_np.nf4 import quantize_nf4
from monoquant_np.testing import GGUF_KINDS, KINDS, cases, gguf_rows, nf4_weights
from monoquant_np.testing import reference as R
from monoquant_np.testing.strategies import F16_BOUNDARY, _gguf_block, _group_values


def test_edge_kinds_do_what_they_say():
    rng = np.random.default_rng(3)
    assert {"f32_underflow", "f16_boundary"} <= set(KINDS) and {"tiny", "edge"} <= set(GGUF_KINDS)
    under = _group_values("f32_underflow", rng, (16, 5))
    assert (np.abs(under) <= 3 * np.float32(2.0**-149)).all() and (np.abs(under).max(axis=0) > 0).all()
    boundary = _group_values("f16_boundary", rng, (16, 5))
    assert (np.abs(boundary).max(axis=0) == F16_BOUNDARY).all()
    tiny = _gguf_block("tiny", rng)
    assert 0 < np.abs(tiny).max() <= 2.0**-125
    edge = _gguf_block("edge", rng)
    assert np.abs(edge).max() in (2.0**-125, 2.0**-124)


@settings(max_examples=40, deadline=None)
@given(case=cases(kinds=("f32_underflow",)))
def test_float32_underflow_groups_store_zero_scales(case):
    qt = quantize(case.w, group_size=case.group_size, axis=case.axis, symmetric=case.symmetric,
                  scale_dtype=case.scale_dtype)
    assert (qt.scale == 0).all() and (qt.codes() == 0).all()  # s = 0, q = z = 0 (spec 3.3)
    if qt.zero_point is not None:
        assert (qt.zero_point == 0).all()
    assert (dequantize(qt).view(np.uint32) == 0).all()  # +0.0 everywhere


@settings(max_examples=40, deadline=None)
@given(case=cases(kinds=("f16_boundary",), scale_dtypes_=(np.float16,)))
def test_float16_boundary_is_stored_and_one_ulp_more_raises(case):
    kw = dict(group_size=case.group_size, axis=case.axis, symmetric=case.symmetric, scale_dtype=np.float16)
    qt = quantize(case.w, **kw)  # never raises: 458639.96875 / 7 -> 65504
    assert np.isfinite(qt.scale).all() and float(qt.scale.max()) <= 65504.0
    if qt.bits == 4 and qt.symmetric:
        assert float(qt.scale.max()) == 65504.0
        over = np.where(np.abs(case.w) == F16_BOUNDARY, np.sign(case.w) * np.float32(458640.0), case.w)
        with pytest.raises(ValueError, match="float16"):
            quantize(over.astype(np.float32), **kw)


@settings(max_examples=40, deadline=None)
@given(drawn=nf4_weights())
def test_nf4_zeros_stay_zero_and_the_absmax_comes_back(drawn):
    w, block, axis = drawn
    qt = quantize_nf4(w, block_size=block, axis=axis)
    codes, deq = qt.codes(), dequantize(qt)
    assert (codes[w == 0] == 7).all() and (deq[w == 0].view(np.uint32) == 0).all()
    a = np.repeat(qt.scale, block, axis=axis)[tuple(slice(0, n) for n in w.shape)]  # the block's absmax per element
    at_max = (np.abs(w) == a) & (a > 0)
    assert np.isin(codes[at_max], (0, 15)).all() and np.array_equal(deq[at_max], w[at_max])
    assert np.array_equal(R.nf4_quantize(w, block, axis)[0], codes)  # the textbook reference agrees
    lifted = quantize_nf4(w * np.float32(2.0**20), block_size=block, axis=axis)  # exact: a power of two
    assert np.array_equal(lifted.codes(), codes)


@settings(max_examples=40, deadline=None)
@given(w=gguf_rows())
def test_gguf_tiny_d_is_defined_and_matches_gguf_py(w):
    gguf = pytest.importorskip("gguf")
    from gguf import quants

    blocks = w.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / np.float32(8)  # |d| of Q4_0 (float32)
    tiny = (d > 0) & (d <= 2.0**-128)  # 1/d overflows (|m| = 4 * 2^-149 or less gives d = 0 instead)
    for name in ("q4_0", "q4_1", "q8_0"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = getattr(F, f"{name}_quantize")(w)
            deq = getattr(F, f"{name}_dequantize")(data, w.shape)
        assert np.isfinite(deq).all()
        with np.errstate(all="ignore"):
            ref = quants.quantize(w, getattr(gguf.GGMLQuantizationType, name.upper()))
        assert np.array_equal(data, ref), name  # gguf-py on x86: non-finite values give code 0
        if name == "q4_0":
            rec = data.reshape(-1, 18)
            assert (rec[tiny, 2:] == 0).all()  # every code 0 (spec 12.2)
            assert (deq.reshape(-1, 32)[tiny] == 0).all()  # and d stored as +-0.0


@settings(max_examples=30, deadline=None)
@given(drawn=nf4_weights())
def test_nf4_float16_absmax_codes_follow_the_stored_absmax(drawn):
    w, block, axis = drawn
    qt = quantize_nf4(w, block_size=block, axis=axis, scale_dtype=np.float16)
    a32 = quantize_nf4(w, block_size=block, axis=axis).scale
    assert np.array_equal(qt.scale, a32.astype(np.float16))  # stored rounded to nearest even (spec 3.4)
    codes, deq = qt.codes(), dequantize(qt)
    assert (codes[w == 0] == 7).all() and (deq[w == 0].view(np.uint32) == 0).all()
    a16 = np.repeat(qt.scale.astype(np.float32), block, axis=axis)[tuple(slice(0, n) for n in w.shape)]
    a = np.repeat(a32, block, axis=axis)[tuple(slice(0, n) for n in w.shape)]
    at_max = (np.abs(w) == a) & (a16 > 0)
    assert np.array_equal(np.abs(deq[at_max]), a16[at_max])  # the absmax element comes back as +-a16
    assert (codes[a16 == 0] == 7).all()  # a block whose float16 absmax underflows is all code 7
