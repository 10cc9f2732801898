"""Tests of the conformance kit (spec 12.7): the reference and onnxruntime run through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from monoquant_np import dequantize, pack_int4, quantize
from monoquant_np.formats._common import round_half_away
from monoquant_np.testing import (
    KINDS,
    ORT_DEFAULT,
    SPEC,
    Backend,
    cases,
    check_backend,
    conformance_tests,
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


@pytest.mark.parametrize("fmt", ["qdq", "matmulnbits"])
def test_onnxruntime_accuracy_level_1_has_no_mismatch(fmt):
    report = check_backend(onnxruntime_backend(1, format=fmt), max_examples=25)
    assert report.ok, str(report)
    assert report.worst["dequant_matmul"] <= 1


def test_onnxruntime_accuracy_level_4_differs_within_the_int8_bound():
    strict = check_backend(onnxruntime_backend(4), max_examples=25)
    assert not strict.ok and strict.worst["dequant_matmul"] > 1  # int8 activations: visible differences
    bounded = check_backend(onnxruntime_backend(4, bound=int8_activation_bound), max_examples=25)
    assert bounded.ok, str(bounded)
    assert bounded.worst["dequant_matmul"] <= 1


def test_onnxruntime_quantizer_is_the_default_dialect():
    report = check_backend(onnxruntime_kernel_backend(), reference=ORT_DEFAULT, max_examples=60)
    assert report.ok, str(report)


def test_onnxruntime_quantizer_is_not_the_spec_quantizer():
    # different scale rule (signed max / -8 vs max|w| / 7): the kit shows where
    kernel = dataclasses.replace(onnxruntime_kernel_backend(), kinds=("normal",), scale_dtypes=(np.float32,))
    report = check_backend(kernel, max_examples=5)
    assert report.counts["quantize"] == 5 and any("scale of group" in m.where for m in report.mismatches)


def test_pack_int4_is_onnx_order():
    assert pack_int4(np.array([1, 2, 3, 4, 5, 6, 7, 8])).tolist() == [0x21, 0x43, 0x65, 0x87]
