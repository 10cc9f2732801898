"""Tests of monoquant_np.algorithms (spec 14): MSE scales, GPTQ, AWQ.

Layers: hand-checkable cases, an independent reference of GPTQ's update
(the OBS form of the paper, no Cholesky), fixed-seed output-error claims on a
layer with correlated, unevenly scaled activations, and hypothesis properties.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import dequant_matmul, dequantize, quantize
from monoquant_np.algorithms import (
    MSE_GRID,
    awq,
    awq_from_stats,
    build_tensor,
    gptq,
    gptq_from_hessian,
    mse_scales,
    quantize_mse,
)
from monoquant_np.algorithms.gptq import hessian, inverse_hessian_factor, output_error
from monoquant_np.codes import quantize_codes


def _layer(seed: int = 0, k: int = 256, n: int = 64, m: int = 1024, rank: int = 32):
    """Activations that are correlated (rank-32 mixing + noise) with per-channel scales e^N(0,1)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((m, rank))
    x = (z @ rng.standard_normal((rank, k)) + 0.1 * rng.standard_normal((m, k))) * np.exp(rng.normal(0, 1, k))
    w = rng.standard_normal((k, n)) * 0.05
    return x.astype(np.float32), w.astype(np.float32)


def _out_err(x, w, qt, m=None) -> float:
    xx = x if m is None else x * m
    return float(np.linalg.norm(x @ w - dequant_matmul(xx, qt)))


# ---------------------------------------------------------------- MSE (14.1)
def test_mse_hand_example_negative_scale():
    w = np.array([1.0] * 7 + [-10.5], dtype=np.float32).reshape(8, 1)
    # absmax/7 = 1.5: the seven 1.0 round to 1 * 1.5 (error 0.5 each)
    assert mse_scales(w, group_size=8, grid=(1.0,), negative_scales=False).item() == 1.5
    # -m/8 = 10.5/8 = 1.3125: -10.5 -> code -8 exactly, 1.0 -> code 1 (error 0.3125 each)
    assert mse_scales(w, group_size=8, grid=(1.0,)).item() == 1.3125
    # a positive extreme gets a negative scale: 10.5 -> code -8
    qt = quantize_mse(-w, group_size=8, grid=(1.0,), int8_fallback=False)
    assert qt.scale.item() == -1.3125
    assert qt.codes().ravel().tolist() == [1] * 7 + [-8]  # -1.0 / -1.3125 = 0.76 -> 1
    np.testing.assert_allclose(dequantize(qt).ravel(), [-1.3125] * 7 + [10.5])


def test_mse_clipping_wins_on_an_outlier():
    # 127 values of 1.0 and one 9.0: absmax/7 = 1.286 puts every 1.0 at 1.286 (error 127 * 0.082 = 10.4);
    # a ratio near 7/9 gives s ~ 1: the 1.0 are exact and only 9 -> 7 is clipped (error ~ 4)
    w = np.ones((128, 1), np.float32)
    w[5] = 9.0
    s = mse_scales(w, group_size=128, norm=2, negative_scales=False).item()
    err = lambda sc: float(np.sum((np.clip(np.rint(w / sc), -8, 7) * sc - w) ** 2))  # noqa: E731
    assert err(s) < 4.1 < err(9.0 / 7) / 2
    assert min(MSE_GRID) <= s * 7 / 9.0 < 1.0


def test_mse_all_zero_group_and_partial_group():
    w = np.zeros((5, 3), np.float32)
    w[4, 1] = 2.0
    s = mse_scales(w, group_size=4, axis=0)
    assert s.shape == (2, 3)
    assert s[0].tolist() == [0.0, 0.0, 0.0]
    qt = quantize_mse(w, group_size=4, int8_fallback=False)
    np.testing.assert_array_equal(dequantize(qt), w)  # 2.0 is an exact code


def test_mse_float16_scales_are_the_stored_ones():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    qt = quantize_mse(w, group_size=32, scale_dtype=np.float16)
    assert qt.scale.dtype == np.float16
    codes = quantize_codes(w, qt.scale, None, axis=0, group_size=32)
    np.testing.assert_array_equal(qt.codes(), codes)


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_beats_rtn_on_weight_error_and_output(symmetric):
    x, w = _layer(seed=3)
    rtn = quantize(w, group_size=64, symmetric=symmetric)
    mse = quantize_mse(w, group_size=64, symmetric=symmetric)
    assert np.sum((dequantize(mse) - w) ** 2) < np.sum((dequantize(rtn) - w) ** 2)
    if symmetric:  # the claim is for the default (symmetric) scheme
        assert _out_err(x, w, mse) < _out_err(x, w, rtn)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), g=st.sampled_from([4, 16, 32]), symmetric=st.booleans(),
       axis=st.sampled_from([0, 1]))
def test_mse_never_worse_than_rtn_in_its_norm(seed, g, symmetric, axis):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((40, 6)) * rng.exponential(1, (40, 6))).astype(np.float32)
    rtn = quantize(w, group_size=g, axis=axis, symmetric=symmetric, int8_fallback=False)
    mse = quantize_mse(w, group_size=g, axis=axis, symmetric=symmetric, int8_fallback=False, norm=2)
    e_rtn = np.sum((dequantize(rtn).astype(np.float64) - w) ** 2)
    e_mse = np.sum((dequantize(mse).astype(np.float64) - w) ** 2)
    assert e_mse <= e_rtn * (1 + 1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_vectorized_equals_one_group_at_a_time(symmetric):
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((40, 6)) * rng.exponential(1, (40, 6))).astype(np.float32)
    res = mse_scales(w, group_size=16, axis=0, symmetric=symmetric)  # groups rows 0-15, 16-31, 32-39
    s_all, z_all = (res, None) if symmetric else res
    for g, (a, b) in enumerate([(0, 16), (16, 32), (32, 40)]):
        for j in range(6):
            one = mse_scales(w[a:b, j : j + 1], group_size=b - a, symmetric=symmetric)
            s1, z1 = (one, None) if symmetric else one
            assert s_all[g, j] == s1.item(), (g, j)
            if z_all is not None:
                assert z_all[g, j] == z1.item(), (g, j)


def test_mse_errors():
    w = np.ones((8, 2), np.float32)
    with pytest.raises(ValueError, match="grid"):
        mse_scales(w, group_size=8, grid=(1.5,))
    with pytest.raises(ValueError, match="importance"):
        mse_scales(w, group_size=8, importance=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="norm"):
        mse_scales(w, group_size=8, norm=0.5)
    with pytest.raises(TypeError, match="w must"):
        mse_scales(np.ones((8, 2), np.int32), group_size=8)


# ---------------------------------------------------------------- GPTQ (14.2)
def test_gptq_hand_example_error_feedback():
    # rows 1 and 2 correlated (rho = 0.8); one group of 3 rows, s = 0.7 / 7 = 0.1.
    # row 1: 0.25 / 0.1 = 2.5 -> 2 (half to even), error 0.05; row 2 receives
    # + rho * 0.05 = 0.04: 0.44 -> 0.48 -> code 5, where round-to-nearest gives 4.
    w = np.array([[0.7], [0.25], [0.44]], np.float32)
    h = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.8], [0.0, 0.8, 1.0]])
    qt = gptq_from_hessian(w, h, group_size=3, damp=1e-9, int8_fallback=False)
    assert qt.codes().ravel().tolist() == [7, 2, 5]
    assert quantize(w, group_size=3, int8_fallback=False).codes().ravel().tolist() == [7, 2, 4]
    assert qt.scale.item() == np.float32(0.7) / np.float32(7)
    # ||X d||^2 = d^T H d: GPTQ 0.0013 vs RTN 0.0073
    assert output_error(w, dequantize(qt), h) == pytest.approx(0.0013, abs=1e-6)
    assert output_error(w, dequantize(quantize(w, group_size=3, int8_fallback=False)), h) == pytest.approx(
        0.0073, abs=1e-6)


def test_gptq_with_identity_hessian_is_rtn():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((256, 16)).astype(np.float32)
    qt = gptq_from_hessian(w, np.eye(256), group_size=128)
    assert qt.equals(quantize(w, group_size=128))


def _obs_reference(w, h, group_size, damp):
    """GPTQ by the paper's OBS equations, without Cholesky: after rounding row k,
    ``W[j] -= Hinv[j, k] / Hinv[k, k] * (W[k] - Q[k])`` and ``Hinv -= Hinv[:, k] Hinv[k, :] / Hinv[k, k]``."""
    w = w.astype(np.float64).copy()
    k_dim = w.shape[0]
    h = h + damp * np.mean(np.diag(h)) * np.eye(k_dim)
    hinv = np.linalg.inv(h)
    codes = np.zeros(w.shape, np.int64)
    for k in range(k_dim):
        if k % group_size == 0:
            s = np.abs(w[k : k + group_size]).max(axis=0).astype(np.float32) / np.float32(7)
        q = np.clip(np.rint(w[k].astype(np.float32) / np.where(s == 0, 1, s)), -8, 7)
        codes[k] = q
        e = w[k] - q * s
        w[k + 1 :] -= np.outer(hinv[k + 1 :, k] / hinv[k, k], e)
        hinv = hinv - np.outer(hinv[:, k], hinv[k, :]) / hinv[k, k]
    return codes


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_matches_the_obs_reference(act_order):
    x, w = _layer(seed=4, k=64, n=8, m=256, rank=8)
    h = hessian(x)
    qt = gptq_from_hessian(w, h, group_size=16, block_size=32, damp=0.01, act_order=act_order)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(64)
    np.testing.assert_array_equal(qt.perm if act_order else perm, perm)
    ref = _obs_reference(w[perm], h[np.ix_(perm, perm)], 16, 0.01)
    # float32 (here) vs float64 (reference) updates may flip a rare tie; nearly all codes agree
    assert np.mean(qt.codes() == ref) > 0.99


def test_inverse_hessian_factor_is_the_cholesky_of_the_inverse():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((100, 20))
    h = a.T @ a
    u = inverse_hessian_factor(h, 0.01)
    hd = h + 0.01 * np.mean(np.diag(h)) * np.eye(20)
    np.testing.assert_allclose(u, np.triu(u))
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(hd), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_reduces_output_error_by_a_quarter(act_order):
    x, w = _layer(seed=0)
    e_rtn = _out_err(x, w, quantize(w, group_size=64))
    e_gptq = _out_err(x, w, gptq(w, x, group_size=64, act_order=act_order))
    assert e_gptq <= 0.75 * e_rtn, (e_gptq, e_rtn)


def test_gptq_act_order_round_trip():
    x, w = _layer(seed=6, k=128, n=16, m=512)
    qt = gptq(w, x, group_size=32, act_order=True)
    perm = qt.perm
    assert perm is not None and sorted(perm.tolist()) == list(range(128))
    # rows are processed by decreasing H_kk
    d = np.diag(hessian(x))
    assert np.all(np.diff(d[perm]) <= 0)
    w_stored = dequantize(qt.__class__(**{**qt.__dict__, "perm": None}))  # the stored (permuted) rows
    np.testing.assert_allclose(dequantize(qt), w_stored[np.argsort(perm)])
    y = dequant_matmul(x, qt)
    np.testing.assert_allclose(y, x[:, perm] @ w_stored, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, x @ dequantize(qt), rtol=1e-4, atol=1e-4)


def test_gptq_mse_scale_search_and_asymmetric():
    x, w = _layer(seed=7)
    e_rtn = _out_err(x, w, quantize(w, group_size=64, symmetric=False))
    qt = gptq(w, x, group_size=64, symmetric=False, scale_search="mse")
    assert qt.scheme == "uint4"
    assert _out_err(x, w, qt) <= 0.75 * e_rtn


def test_gptq_dead_inputs_int8_fallback_and_inputs_untouched():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((200, 48)).astype(np.float32)
    x[:, 3] = 0.0  # a dead input channel
    w = rng.standard_normal((48, 8)).astype(np.float32)
    h = hessian(x)
    h0 = h.copy()
    qt = gptq_from_hessian(w, h, group_size=128)  # K = 48 < 128: int8 per channel
    assert qt.bits == 8 and qt.block_size == 48
    np.testing.assert_array_equal(h, h0)
    assert np.all(np.isfinite(dequantize(qt)))
    assert abs(dequantize(qt)[3] - w[3]).max() <= np.abs(w).max(axis=0).max() / 127  # kept, not zeroed


def test_gptq_errors():
    w = np.ones((8, 2), np.float32)
    with pytest.raises(ValueError, match="h must have shape"):
        gptq_from_hessian(w, np.eye(4))
    with pytest.raises(ValueError, match="damp"):
        gptq_from_hessian(w, np.eye(8), damp=0.0)
    with pytest.raises(ValueError, match="x must have last dimension"):
        gptq(w, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="scale_search"):
        gptq_from_hessian(w, np.eye(8), scale_search="minmax")


# spec 14.2: H += damp * mean(diag H) * I, damp x10, x100, x1000 if Cholesky fails.
# H = [[1, b], [b, 1]] has eigenvalues 1 - b and 1 + b and mean(diag H) = 1, so
# H + lambda I is positive definite iff lambda > b - 1: with damp = 0.01 the first
# of lambda = 0.01, 0.1, 1, 10 above b - 1 is the one used.
@pytest.mark.parametrize("b, lam", [(1.005, 0.01), (1.05, 0.1), (1.5, 1.0), (5.0, 10.0)])
def test_inverse_hessian_factor_damping_retries(b, lam):
    h = np.array([[1.0, b], [b, 1.0]])
    u = inverse_hessian_factor(h, 0.01)
    # U^T U = (H + lambda I)^-1 identifies lambda: U^T U (H + lambda I) = I
    np.testing.assert_allclose(u.T @ u @ (h + lam * np.eye(2)), np.eye(2), atol=1e-9)
    np.testing.assert_array_equal(h, [[1.0, b], [b, 1.0]])  # the caller's H is not modified


def test_inverse_hessian_factor_succeeds_at_the_x1000_retry_by_hand():
    # H = [[1, 5], [5, 1]]: lambda = 0.01, 0.1, 1 leave it indefinite (1 + lambda < 5);
    # lambda = 10 gives H' = [[11, 5], [5, 11]] (det 96). J H' J = H' = L L^T with
    # L = [[sqrt 11, 0], [5 / sqrt 11, sqrt(96 / 11)]]; U = J L^-1 J:
    # U_00 = 1 / L_11 = sqrt(11 / 96), U_11 = 1 / L_00 = 1 / sqrt 11, U_01 = -5 / sqrt(11 * 96).
    u = inverse_hessian_factor(np.array([[1.0, 5.0], [5.0, 1.0]]), 0.01)
    want = [[np.sqrt(11 / 96), -5 / np.sqrt(1056)], [0.0, 1 / np.sqrt(11)]]
    np.testing.assert_allclose(u, want, rtol=1e-12, atol=1e-15)


def test_gptq_uses_the_retried_damping_in_its_update():
    # rows 0 and 1 coupled by H_01 = 5 (rows 2, 3 independent; mean(diag H) = 1):
    # only lambda = 10 (damp 0.01 x 1000) factorizes. s = 0.7 / 7 = 0.1; row 0:
    # 0.25 -> 2.5 -> 2 (half to even), error 0.05; row 1 receives
    # -U_01 / U_00 * 0.05 = H'_01 / H'_11 * 0.05 = 5 / 11 * 0.05 = 0.0227:
    # 0.44 -> 0.4627 -> code 5 (round-to-nearest: 4; lambda = 100 would give 0.4425 -> 4).
    h = np.eye(4)
    h[0, 1] = h[1, 0] = 5.0
    w = np.array([[0.25], [0.44], [0.7], [0.0]], np.float32)
    qt = gptq_from_hessian(w, h, group_size=4, damp=0.01, int8_fallback=False)
    assert qt.codes().ravel().tolist() == [2, 5, 7, 0]
    assert quantize(w, group_size=4, int8_fallback=False).codes().ravel().tolist() == [2, 4, 7, 0]


def test_damping_retries_exhausted_raise_a_value_error():
    # H = [[1, 50], [50, 1]] needs lambda > 49; the last retry is damp x 1000 = 10
    h = np.array([[1.0, 50.0], [50.0, 1.0]])
    msg = r"h is not positive definite even with damp=10; check the calibration activations"
    with pytest.raises(ValueError, match=msg):
        inverse_hessian_factor(h, 0.01)
    with pytest.raises(ValueError, match=msg):  # through the public entry point too
        gptq_from_hessian(np.ones((2, 3), np.float32), h, group_size=2, int8_fallback=False)
    # the bound is exactly x1000: b = 10.5 still factorizes (1 + 10 > 10.5), b = 11.5 does not
    inverse_hessian_factor(np.array([[1.0, 10.5], [10.5, 1.0]]), 0.01)
    with pytest.raises(ValueError, match=msg):
        inverse_hessian_factor(np.array([[1.0, 11.5], [11.5, 1.0]]), 0.01)


def test_gptq_act_order_puts_dead_inputs_last_and_rounds_them_to_nearest():
    # spec 14.2: perm = argsort(-diag H), stable, on the diagonal as given; dead = {H_kk <= 0}
    # come last; their weights are kept and rounded to nearest, no update in or out.
    rng = np.random.default_rng(11)
    col_scale = np.array([0, 2, 0.05, 0, 3, 0, 0, 0.5], np.float32)  # inputs 0, 3, 5, 6 dead
    x = rng.standard_normal((64, 8)).astype(np.float32) * col_scale
    w = rng.standard_normal((8, 5)).astype(np.float32)
    d = np.diag(hessian(x))  # ~ 64 * col_scale**2: [0, 204, 0.14, 0, 473, 0, 0, 16.7]
    assert (d[[0, 3, 5, 6]] == 0).all() and 0 < d[2] < 1 < d[7] < d[1] < d[4]
    qt = gptq(w, x, group_size=4, act_order=True)
    assert qt.bits == 4 and qt.perm.tolist() == [4, 1, 7, 2, 0, 3, 5, 6]
    # (the reference sets dead H_kk = 1 before sorting: [4, 1, 7, 0, 3, 5, 6, 2])
    dead = [0, 3, 5, 6]
    rtn = quantize(w[dead], group_size=4)  # the last group holds exactly the dead rows
    np.testing.assert_array_equal(qt.codes()[4:], rtn.codes())
    np.testing.assert_array_equal(qt.scale[1:], rtn.scale)
    np.testing.assert_array_equal(dequantize(qt)[dead], dequantize(rtn))  # kept, not zeroed
    assert np.abs(dequantize(qt)[dead]).min(axis=0).max() > 0
    # no update flows out of dead inputs: the live rows do not depend on their weights
    w2 = w.copy()
    w2[dead] *= -3.0
    q2 = gptq(w2, x, group_size=4, act_order=True)
    np.testing.assert_array_equal(q2.codes()[:4], qt.codes()[:4])
    np.testing.assert_array_equal(q2.scale[:1], qt.scale[:1])


def test_gptq_dead_diagonal_is_set_to_one_before_damping():
    # spec 14.2: H_kk := 1 for dead k, then H += damp * mean(diag H) * I. Row 2 is dead
    # (H_22 = 0): mean(diag H) = (1 + 1 + 1) / 3 = 1, so with damp = 1, lambda = 1 and
    # row 1 receives H'_01 / H'_11 * e_0 = 0.8 / 2 * 0.05 = 0.02 from row 0 (0.25 -> 2, s = 0.1):
    # 0.428 -> 0.448 -> code 4. Were H_22 left at 0, lambda = 2/3 and the update
    # 0.8 / (5/3) * 0.05 = 0.024 would give 0.452 -> 5 (what an H_22 of 1e-300, not dead, gives).
    w = np.array([[0.25], [0.428], [0.7]], np.float32)
    h = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert gptq_from_hessian(w, h, group_size=3, damp=1.0, int8_fallback=False).codes().ravel().tolist() == [2, 4, 7]
    h[2, 2] = 1e-300
    assert gptq_from_hessian(w, h, group_size=3, damp=1.0, int8_fallback=False).codes().ravel().tolist() == [2, 5, 7]


def test_gptq_act_order_sorts_the_given_diagonal_negative_entries_last():
    # a given diagonal H: no coupling, so GPTQ is round-to-nearest in the order of perm.
    # diag = [0, 0.25, -1, 9, 0, 4, 0, 0.5]: stable argsort(-diag) = [3, 5, 7, 1, 0, 4, 6, 2]
    # (the zeros in input order, then -1); dead = {0, 2, 4, 6} form the last group.
    h = np.diag([0.0, 0.25, -1.0, 9.0, 0.0, 4.0, 0.0, 0.5])
    w = np.random.default_rng(12).standard_normal((8, 3)).astype(np.float32)
    qt = gptq_from_hessian(w, h, group_size=4, act_order=True)
    assert qt.perm.tolist() == [3, 5, 7, 1, 0, 4, 6, 2]
    assert qt.equals(dataclasses.replace(quantize(w[qt.perm], group_size=4), perm=qt.perm))
    np.testing.assert_array_equal(h, np.diag([0.0, 0.25, -1.0, 9.0, 0.0, 4.0, 0.0, 0.5]))


# ---------------------------------------------------------------- AWQ (14.3)
def test_awq_beats_rtn_and_reports_it():
    x, w = _layer(seed=9)
    res = awq(w, x, group_size=64)
    e_rtn = _out_err(x, w, quantize(w, group_size=64))
    assert res.alpha > 0
    assert _out_err(x, w, res.qt, res.act_scale) < e_rtn
    assert res.error < res.rtn_error
    # the stored weight is round-to-nearest of diag(1 / m) W: within half a step of it
    w_s = w / res.act_scale[:, None]
    step = np.repeat(res.qt.scale, 64, axis=0)
    assert np.all(np.abs(dequantize(res.qt) - w_s) <= step / 2 * (1 + 1e-5))


def test_awq_hand_example():
    # spec 14.3: a = [16, 1], H = diag(16, 1); alpha = 1/2 gives s = [4, 1] / 2, m = [0.5, 2]
    w = np.array([[0.25], [0.7]], np.float32)
    res = awq_from_stats(w, np.array([16.0, 1.0]), np.diag([16.0, 1.0]), group_size=2, grid=(0, 0.5),
                         int8_fallback=False)
    assert res.alpha == 0.5
    assert res.act_scale.tolist() == [0.5, 2.0]
    assert res.qt.codes().ravel().tolist() == [7, 5]  # W / m = [0.5, 0.35], s = 0.5 / 7
    assert res.qt.scale.item() == np.float32(0.5) / np.float32(7)
    assert res.rtn_error == pytest.approx(16 * 0.05**2, rel=1e-5)  # 0.25 -> 2 * 0.1
    assert res.error == pytest.approx((0.7 - 2 * 5 * 0.5 / 7) ** 2, rel=1e-4)  # 0.000204


def test_awq_uniform_activations_is_rtn():
    rng = np.random.default_rng(10)
    w = rng.standard_normal((128, 8)).astype(np.float32)
    res = awq_from_stats(w, np.full(128, 0.5), np.eye(128), group_size=64)
    np.testing.assert_array_equal(res.act_scale, np.ones(128, np.float32))  # s = 0.5**a / 0.5**a = 1
    assert res.qt.equals(quantize(w, group_size=64))
    assert res.error == res.rtn_error


def test_awq_errors():
    w = np.ones((8, 2), np.float32)
    with pytest.raises(ValueError, match="mean_abs"):
        awq_from_stats(w, np.ones(3), np.eye(8))
    with pytest.raises(ValueError, match="grid"):
        awq_from_stats(w, np.ones(8), np.eye(8), grid=(2.0,))


def test_build_tensor_round_trip():
    w = np.array([[0.0, -7.0], [3.5, 1.0]], np.float32)
    s = np.array([[0.5, 1.0]], np.float32)
    qt = build_tensor(w, s, None, axis=0, group_size=2)
    assert qt.codes().tolist() == [[0, -7], [7, 1]]


def test_algorithms_import_numpy_only():
    import subprocess
    import sys

    code = ("import sys, monoquant_np.algorithms; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'hypothesis')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
