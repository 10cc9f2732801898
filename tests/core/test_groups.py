"""Group reductions (spec 2 and 3): ``group_reduce`` and ``group_absmax`` equal the
textbook per-group reduction on every axis, layout and group size, including the
halving path for groups along the contiguous last axis; ``apply_rows`` equals the
broadcast it rearranges, bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monoquant_np.groups as groups
from monoquant_np.groups import apply_rows, group_reduce
from monoquant_np.scales import group_absmax


def _textbook(ufunc, x, axis, g):
    """One ``ufunc.reduce`` per group, group by group."""
    length = x.shape[axis]
    parts = [ufunc.reduce(np.take(x, np.arange(i, min(i + g, length)), axis=axis), axis=axis, keepdims=True)
             for i in range(0, length, g)]
    return np.concatenate(parts, axis=axis)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), g=st.integers(1, 12), seed=st.integers(0, 99),
       layout=st.sampled_from(["C", "F", "strided"]), small_blocks=st.booleans())
def test_group_reduce_equals_the_textbook(shape, g, seed, layout, small_blocks):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]  # last axis not contiguous: the generic path
    saved = groups.PAIRWISE_ELEMENTS
    groups.PAIRWISE_ELEMENTS = 8 if small_blocks else saved  # blocks of 8 elements: many blocks, one group wide
    try:
        _check_all_axes(x, g)
    finally:
        groups.PAIRWISE_ELEMENTS = saved


def _check_all_axes(x, g):
    for axis in range(x.ndim):
        for ufunc in (np.maximum, np.minimum):
            assert np.array_equal(group_reduce(ufunc, x, axis, g), _textbook(ufunc, x, axis, g)), (axis, ufunc)
        want = _textbook(np.maximum, np.abs(x), axis, g)
        assert np.array_equal(group_reduce(np.maximum, x, axis, g, absolute=True), want)
        got = group_absmax(x, axis=axis, group_size=g)
        assert got.dtype == np.float32 and np.array_equal(got, want) and not np.signbit(got).any()


@pytest.mark.parametrize("g", [2, 3, 7, 64, 128])
def test_halving_path_on_a_real_size(g):
    x = np.random.default_rng(1).standard_normal((64, 1000)).astype(np.float32)  # 1000 % g: a partial group
    for ufunc in (np.maximum, np.minimum):
        assert np.array_equal(group_reduce(ufunc, x, 1, g), _textbook(ufunc, x, 1, g))
    assert np.array_equal(group_absmax(x, axis=1, group_size=g), _textbook(np.maximum, np.abs(x), 1, g))


def test_nan_and_inf_propagate_and_absmax_raises():
    x = np.array([[1.0, np.nan, 3.0, 4.0, -5.0, 2.0]], np.float32)
    assert np.isnan(group_reduce(np.maximum, x, 1, 2)).tolist() == [[True, False, False]]
    assert np.isnan(group_reduce(np.minimum, x, 1, 3)).tolist() == [[True, False]]
    with pytest.raises(ValueError, match="finite"):
        group_absmax(x, axis=1, group_size=2)
    with pytest.raises(ValueError, match="finite"):
        group_absmax(np.array([[1.0, -np.inf]], np.float32), axis=1, group_size=2)


def test_signed_zeros_give_a_positive_absmax():
    x = np.array([[-0.0, 0.0, -0.0, -0.0]], np.float32)
    got = group_absmax(x, axis=1, group_size=2)
    assert got.tolist() == [[0.0, 0.0]] and not np.signbit(got).any()


def test_absolute_takes_maximum_only():
    with pytest.raises(ValueError, match="absolute=True takes ufunc np.maximum"):
        group_reduce(np.minimum, np.ones((2, 2), np.float32), 1, 2, absolute=True)


@settings(max_examples=60, deadline=None)
@given(groups_=st.integers(1, 3), rows=st.sampled_from([1, 3, 8, 16, 24, 64, 128, 256]), cols=st.integers(1, 40),
       ufunc=st.sampled_from([np.multiply, np.subtract]), dtype=st.sampled_from([np.float32, np.int8]),
       layout=st.sampled_from(["C", "strided"]), seed=st.integers(0, 99), row_elements=st.sampled_from([16, 1 << 14]))
def test_apply_rows_equals_the_broadcast(groups_, rows, cols, ufunc, dtype, layout, seed, row_elements):
    rng = np.random.default_rng(seed)
    base = rng.integers(-60, 60, (groups_, rows, 2 * cols if layout == "strided" else cols)).astype(dtype)
    x3 = base[:, :, ::2] if layout == "strided" else base  # (groups, rows, cols)
    others = base[:, :, 1::2].copy()  # (groups, rows, cols): not part of x3 when strided
    g3 = rng.integers(-2, 3, (groups_, 1, cols)).astype(dtype)
    want = ufunc(x3, g3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "ROW_ELEMENTS", row_elements)  # 16: r > 1 even for short rows
        got = apply_rows(ufunc, x3, g3)
    assert got is x3 and got.dtype == want.dtype and np.array_equal(got, want), (ufunc, x3.shape, layout)
    if layout == "strided":
        assert np.array_equal(base[:, :, 1::2], others)  # the columns between x3's stay as they were


def test_apply_rows_bad_shapes():
    with pytest.raises(ValueError, match=r"g3 must have shape \(2, 1, 3\).*got \(2, 2, 3\)"):
        apply_rows(np.multiply, np.ones((2, 4, 3), np.float32), np.ones((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"x3 must be 3-D \(groups, rows, cols\), got shape \(4, 3\)"):
        apply_rows(np.multiply, np.ones((4, 3), np.float32), np.ones((1, 3), np.float32))


def test_apply_rows_repeats_the_values_where_it_can():
    x3 = np.arange(2 * 128 * 2048, dtype=np.float32).reshape(2, 128, 2048)  # (groups, rows, cols)
    g3 = np.array([0.5, -2.0], np.float32)[:, None, None] * np.arange(2048, dtype=np.float32)  # (2, 1, 2048)
    want = x3 * g3
    assert np.array_equal(apply_rows(np.multiply, x3, g3), want)
