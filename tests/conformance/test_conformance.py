"""Tests of the conformance kit (spec 12.7): the reference and onnxruntime run through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from monoquant_np import dequantize, pack_int4, quantize
from monoquant_np.numerics import round_half_away
from monoquant_np.testing import (
    KINDS,
    ORT_DEFAULT,
    SPEC,
    Backend,
    cases,
    check_backend,
    conformance_tests,
    float32_bound,
    int8_activation_bound,
)

# The one-line entry point a backend's own suite uses: pytest collects this class.
TestSpecConformance = conformance_tests(SPEC, max_examples=15)


# ------------------------------------------------------------------ strategies
@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_cases_are_valid_by_construction(case):
    assert case.w.dtype == np.float32 and np.isfinite(case.w).all()
    assert len(case.kinds) == max(-(-case.w.shape[case.axis] // case.group_size), 1)
    qt = quantize(case.w, group_size=case.group_size, axis=case.axis, symmetric=case.symmetric,
                  scale_dtype=case.scale_dtype)  # never raises
    assert np.isfinite(dequantize(qt)).all()


def test_adversarial_kinds_do_what_they_say():
    from monoquant_np.testing.strategies import _group_values

    rng = np.random.default_rng(0)
    assert (_group_values("zeros", rng, (8, 3)) == 0).all()
    ties = _group_values("ties", rng, (16, 4))
    s = np.abs(ties).max(axis=0) / 7  # the spec's symmetric scale: a power of two
    frac = (ties / s) % 1
    assert np.isin(frac, [0.0, 0.5]).all() and (frac == 0.5).any()
    den = _group_values("denormals", rng, (32, 2))
    nz = den[den != 0]
    assert (np.abs(nz) < np.finfo(np.float32).tiny).all()
    spike = _group_values("spike", rng, (16, 5))
    assert (np.abs(spike).max(axis=0) == 100).all()
    assert set(KINDS) >= {"zeros", "spike", "ties", "f16_limits", "denormals"}


# ------------------------------------------------------------------ the two matmul bounds (12.7.2, 12.7.3)
def test_float32_bound_hand_vector():
    # spec 12.7.2: bound = 2e-5 * (|x| @ |W|). |x| = [[1, 2], [0, 0.5]], |W| = [[3, 4], [0.5, 1]]:
    # |x| @ |W| = [[1*3 + 2*0.5, 1*4 + 2*1], [0.5*0.5, 0.5*1]] = [[4, 6], [0.25, 0.5]]
    x = np.array([[1, -2], [0, 0.5]], np.float32)
    w = np.array([[3, -4], [0.5, 1]], np.float32)
    bound = float32_bound(x, w)
    assert bound.shape == (2, 2) and bound.dtype == np.float64
    np.testing.assert_allclose(bound, [[8e-5, 1.2e-4], [5e-6, 1e-5]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(float32_bound(x, w, tol=1e-3), [[4e-3, 6e-3], [2.5e-4, 5e-4]], rtol=1e-12, atol=0)
    # the tolerance applies to |x| @ |W|, not |x @ W| (here x @ W = [[2, -6], [0.25, 0.5]])
    assert bound[0, 0] > 2e-5 * abs((x @ w)[0, 0])


def test_int8_activation_bound_hand_vector():
    # spec 12.7.3: 1.001 * max|x_row| / 254 * sum_k |W[k, n]| + float32_bound: half an int8 step per activation.
    # Row 0: max|x| = 127 -> half step 0.5; row 1: max|x| = 63.5 -> 0.25 (per row, not the global 127).
    # sum_k |W[k, n]| = [1 + 2 + 1, 0 + 3 + 0.5] = [4, 3.5]. Every number here is exact in binary.
    x = np.array([[-127, 0, 63.5], [0, 63.5, -31.75]], np.float32)
    w = np.array([[1, 0], [2, -3], [-1, 0.5]], np.float32)
    half_step_term = np.array([[0.5 * 4, 0.5 * 3.5], [0.25 * 4, 0.25 * 3.5]])  # [[2, 1.75], [1, 0.875]]
    # float32 rounding, 2e-5 * (|x| @ |W|):
    # |x| @ |W| = [[127 + 63.5, 0.5 * 63.5], [2 * 63.5 + 31.75, 3 * 63.5 + 0.5 * 31.75]]
    rounding = 2e-5 * np.array([[190.5, 31.75], [158.75, 206.375]])
    np.testing.assert_allclose(float32_bound(x, w), rounding, rtol=1e-12)
    bound = int8_activation_bound(x, w)
    assert bound.shape == (2, 2)
    np.testing.assert_allclose(bound, half_step_term * 1.001 + rounding, rtol=1e-12)


# ------------------------------------------------------------------ the reference and broken backends
def test_spec_conforms_to_itself():
    report = check_backend(SPEC, max_examples=20)
    assert report.ok, str(report)
    assert report.examples == {f: 20 for f in ("quantize", "pack", "dequantize", "dequant_matmul")}


def high_nibble_first(codes):
    flat = np.asarray(codes).reshape(-1).view(np.uint8) & 0xF
    flat = np.concatenate([flat, np.zeros(flat.size % 2, np.uint8)])
    return (flat[0::2] << 4) | flat[1::2]


def test_mismatches_name_byte_nibble_and_bits():
    report = check_backend(Backend("bnb-order", pack=high_nibble_first), max_examples=10)
    assert not report.ok and report.counts["pack"] > 0
    m = report.mismatches[0]
    assert m.function == "pack" and m.where.startswith("byte ") and "nibble = element" in m.where
    assert m.bits.startswith("xor 0b") and "shape=" in m.case
    assert "MISMATCH" in str(report)


def test_quantize_mismatch_names_the_group():
    def half_away(w, *, group_size, axis, symmetric, scale_dtype):
        qt = quantize(w, group_size=group_size, axis=axis, symmetric=True, scale_dtype=scale_dtype)
        if qt.bits == 8:  # the int8 fallback is not what this backend gets wrong
            return qt
        w32 = np.moveaxis(w, axis, 0)
        s = np.repeat(np.moveaxis(qt.scale.astype(np.float32), axis, 0), group_size, 0)[: w32.shape[0]]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(s == 0, 0, np.clip(round_half_away(w32 / s), -8, 7))
        return np.moveaxis(q, 0, axis).astype(np.int8), qt.scale, None

    # only "ties" groups: round half away from zero differs from half to even
    report = check_backend(Backend("half-away", quantize=half_away, schemes=("int4",), kinds=("ties",)),
                           max_examples=10)
    assert report.counts["quantize"] > 0
    m = next(m for m in report.mismatches if m.where.startswith("element"))
    assert "group (" in m.where and "nibble" in m.where and m.bits.startswith("xor")


def test_dequantize_mismatch_reports_float_bits():
    def sloppy(qt):
        return np.nextafter(dequantize(qt), np.float32(np.inf))

    report = check_backend(Backend("ulp", dequantize=sloppy), max_examples=5)
    assert report.counts["dequantize"] == 5
    assert "group (" in report.mismatches[0].where


def test_a_raising_backend_is_reported():
    def boom(x, qt):
        raise RuntimeError("not implemented for this shape")

    report = check_backend(Backend("boom", dequant_matmul=boom), max_examples=3)
    assert report.counts["dequant_matmul"] == 3 and "RuntimeError" in report.mismatches[0].got


def test_bad_arguments():
    with pytest.raises(TypeError, match="Backend"):
        check_backend(SPEC.pack)
    with pytest.raises(ValueError, match="functions must be among"):
        check_backend(SPEC, functions=("matmul",))


# ------------------------------------------------------------------ onnxruntime through the kit
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("monoquant_np.onnx")
from monoquant_np.testing import onnxruntime_backend, onnxruntime_kernel_backend  # noqa: E402


# The figures of spec 12.7.3's table (python tools/conformance_report.py, 25 examples
# per function, 60 for the kernel), to the precision the spec prints them.
@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_onnxruntime_accuracy_level_1_has_no_mismatch(fmt):
    report = check_backend(onnxruntime_backend(1, format=fmt), max_examples=25)
    assert report.ok, str(report)
    assert report.examples == {"dequant_matmul": 25}
    worst = report.worst["dequant_matmul"]
    assert round(worst, 3) == 0.008, f"spec 12.7.3: worst |diff| 0.008 of the float32 bound, got {worst:.4g}"


def test_onnxruntime_accuracy_level_4_differs_within_the_int8_bound():
    strict = check_backend(onnxruntime_backend(4), max_examples=25)
    assert not strict.ok  # int8 activations: visible differences
    assert (strict.counts, strict.examples) == ({"dequant_matmul": 20}, {"dequant_matmul": 25}), \
        f"spec 12.7.3: 20 of 25 examples differ, got {strict.counts} of {strict.examples}"
    worst = strict.worst["dequant_matmul"]
    assert round(worst, -1) == 6980, f"spec 12.7.3: up to 6980x the float32 bound, got {worst:.5g}"
    bounded = check_backend(onnxruntime_backend(4, bound=int8_activation_bound), max_examples=25)
    assert bounded.ok, str(bounded)
    assert bounded.examples == {"dequant_matmul": 25}
    worst = bounded.worst["dequant_matmul"]
    assert round(worst, 2) == 0.97, f"spec 12.7.3: worst 0.97 of the int8 bound, got {worst:.4g}"


def test_onnxruntime_quantizer_is_the_default_dialect():
    report = check_backend(onnxruntime_kernel_backend(), reference=ORT_DEFAULT, max_examples=60)
    assert report.ok, str(report)
    assert report.examples == {"quantize": 60} and report.counts == {"quantize": 0}  # byte-identical


def test_onnxruntime_quantizer_is_not_the_spec_quantizer():
    # different scale rule (signed max / -8 vs max|w| / 7): the kit shows where
    kernel = dataclasses.replace(onnxruntime_kernel_backend(), kinds=("normal",), scale_dtypes=(np.float32,))
    report = check_backend(kernel, max_examples=5)
    assert report.counts["quantize"] == 5 and any("scale of group" in m.where for m in report.mismatches)


def test_pack_int4_is_onnx_order():
    assert pack_int4(np.array([1, 2, 3, 4, 5, 6, 7, 8])).tolist() == [0x21, 0x43, 0x65, 0x87]
