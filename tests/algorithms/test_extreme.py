"""The model quantizer's default int4 scales (spec 14.0), against a group-by-group transcription of the formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import dequantize
from monoquant_np.algorithms.extreme import DEFAULT_RATIOS, extreme_scales, quantize_extreme
from monoquant_np.algorithms.mse import build_tensor

RNG = np.random.default_rng(14)


def _textbook(w, group_size, axis, scale_dtype=np.float32, ratios=DEFAULT_RATIOS):
    """Spec 14.0 one group at a time, the error summed by an explicit float32 loop in increasing k."""
    moved = np.moveaxis(w.astype(np.float32), axis, 0)
    out = []
    for g0 in range(0, moved.shape[0], group_size):
        grp = moved[g0 : g0 + group_size].reshape(moved[g0 : g0 + group_size].shape[0], -1)
        row = []
        for col in grp.T:
            hi, lo = max(col.max(), np.float32(0)), min(col.min(), np.float32(0))
            m = hi if hi >= -lo else lo
            best = best_err = None
            for j, r in enumerate(ratios):
                s = ((np.float32(r) * m) / np.float32(-8)).astype(scale_dtype)
                s32 = np.float32(s)
                err = np.float32(0)
                for x in col:
                    q = np.float32(np.clip(np.rint(x / s32), -8, 7)) if s32 != 0 else np.float32(0)
                    d = np.float32(x - np.float32(q * s32))
                    err = np.float32(err + np.float32(d * d))
                if j == 0 or (err < best_err and s32 != 0):
                    best, best_err = s, err
            row.append(best)
        out.append(np.array(row, dtype=scale_dtype).reshape(moved.shape[1:]))
    return np.moveaxis(np.stack(out), 0, axis)


@pytest.mark.parametrize("shape,axis,group_size", [((64, 5), 0, 16), ((50, 3), 0, 16), ((3, 40), 1, 8),
                                                   ((7, 6, 9), 1, 4), ((33, 300), 0, 32)])
@pytest.mark.parametrize("scale_dtype", [np.float32, np.float16])
def test_equals_the_textbook_formula(shape, axis, group_size, scale_dtype):
    w = (RNG.standard_normal(shape) * RNG.choice([1e-3, 1.0, 300.0], size=shape)).astype(np.float32)
    w[tuple(slice(0, 2) for _ in shape)] = 0  # zero runs
    got = extreme_scales(w, group_size=group_size, axis=axis, scale_dtype=scale_dtype)
    want = _textbook(w, group_size, axis, scale_dtype)
    assert got.dtype == np.dtype(scale_dtype)
    np.testing.assert_array_equal(got.view(np.uint32 if scale_dtype == np.float32 else np.uint16),
                                  want.view(np.uint32 if scale_dtype == np.float32 else np.uint16))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 16, 32]), st.sampled_from([np.float32, np.float16]))
def test_no_group_worse_than_onnxruntimes_rule(seed, group_size, scale_dtype):
    """The chosen scale's squared error per group is at most that of ``s = m / -8`` (the first candidate)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(3, (4 * group_size, 6)) * 0.05).astype(np.float32)
    s = extreme_scales(w, group_size=group_size, scale_dtype=scale_dtype)
    ort = extreme_scales(w, group_size=group_size, ratios=(1.0,), scale_dtype=scale_dtype)

    def err(scale):
        d = dequantize(build_tensor(w, scale, None, axis=0, group_size=group_size)) - w
        return (d.astype(np.float64) ** 2).reshape(4, group_size, 6).sum(1)

    assert np.all(err(s) <= err(ort) * (1 + 1e-6))


def test_negative_scales_extremes_on_code_minus_8_and_all_zero_groups():
    w = np.zeros((16, 3), np.float32)
    w[:8, 0] = [8, 1, 2, 3, -4, 5, 6, 7]  # positive extreme -> negative scale -1, code -8
    w[8:, 1] = [-16, 0, 0, 0, 0, 0, 0, 2]
    qt = quantize_extreme(w, group_size=8)
    assert qt.scale[:, 0].tolist() == [-1.0, 0.0] and qt.scale[:, 1].tolist() == [0.0, 2.0]
    assert qt.codes()[0, 0] == -8 and qt.codes()[8, 1] == -8
    np.testing.assert_array_equal(dequantize(qt), w)  # every value on the grid, so exact
    assert np.all(qt.scale[:, 2] == 0) and np.all(dequantize(qt)[:, 2] == 0)


def test_int8_fallback_and_ratio_checks():
    w = RNG.standard_normal((8, 4)).astype(np.float32)
    assert quantize_extreme(w, group_size=16).bits == 8  # spec 7, unchanged
    for bad in [(0.0,), (1.5,), ()]:
        with pytest.raises(ValueError, match="ratios"):
            extreme_scales(w, group_size=4, ratios=bad)
    with pytest.raises(ValueError, match="w"):
        extreme_scales(np.array([[np.nan]], np.float32), group_size=4)


def _textbook_search(col, start, steps, p=2.4):
    """Spec 14.1.1 for one group: the line search on r, errors summed in float32 in increasing k."""
    hi, lo = max(col.max(), np.float32(0)), min(col.min(), np.float32(0))
    m = hi if hi >= -lo else lo

    def scale(r):
        return np.float32((np.float32(r) * m) / np.float32(-8))

    def err(s):
        e = np.float32(0)
        for x in col:
            q = np.float32(np.clip(np.rint(x / s), -8, 7)) if s != 0 else np.float32(0)
            e = np.float32(e + np.float32(np.abs(np.float32(x - np.float32(q * s))) ** np.float32(p)))
        return e

    best_r = np.float32(start[0])
    best_e = err(scale(best_r))
    for r in start[1:]:
        if (e := err(scale(r))) < best_e and scale(r) != 0:
            best_r, best_e = np.float32(r), e
    for d in steps:
        c = best_r
        for r in (np.float32(c - np.float32(d)), np.float32(c + np.float32(d))):
            if 0 < r <= 1 and scale(r) != 0 and (e := err(scale(r))) < best_e:
                best_r, best_e = r, e
    return scale(best_r)


def test_search_equals_the_textbook_line_search():
    from monoquant_np.algorithms.extreme import SEARCH_START, SEARCH_STEPS, search_scales

    w = (RNG.standard_t(4, (48, 5)) * 0.1).astype(np.float32)
    got = search_scales(w, group_size=16)
    want = np.array([[_textbook_search(w[g : g + 16, j], SEARCH_START, SEARCH_STEPS) for j in range(5)]
                     for g in range(0, 48, 16)], np.float32)
    np.testing.assert_array_equal(got, want)
    # never worse than the default two points in the same norm, on every group
    qt, qd = quantize_extreme(w, group_size=16, search=True), quantize_extreme(w, group_size=16)
    e = [np.abs((dequantize(t) - w).astype(np.float64)).reshape(3, 16, 5) ** 2.4 for t in (qt, qd)]
    assert np.all(e[0].sum(1) <= e[1].sum(1) * (1 + 1e-5))
