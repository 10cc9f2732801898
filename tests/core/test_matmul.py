"""Spec section 6.2: the dequantizing matmul and QuantizedLinear."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedLinear, QuantizedTensor, dequant_matmul, dequantize, quantize

f32 = np.float32


def _close(y, x, w):
    # float32 rounding of a K-term sum: |err| <= ~K * eps * (|x| @ |w|)
    bound = 4e-6 * np.sqrt(x.shape[-1]) * (np.abs(x) @ np.abs(w)) + 1e-6
    assert (np.abs(y - x @ w) <= bound).all(), float(np.max(np.abs(y - x @ w) - bound))


def test_golden_tiny():
    w = np.array([[7.0, -14.0], [3.5, 7.0]], f32)  # one group per column: s = [1, 2]
    qt = quantize(w, group_size=2, int8_fallback=False)
    x = np.array([[1.0, 2.0]], f32)
    np.testing.assert_array_equal(dequant_matmul(x, qt), [[7 + 2 * 4, -14 + 2 * 8]])  # 3.5 -> 4 (even)
    np.testing.assert_array_equal(dequant_matmul(x, qt, np.array([1, -1], f32)), [[16, 1]])


@st.composite
def cases(draw):
    k = draw(st.integers(1, 300))
    n = draw(st.integers(1, 70))
    axis = draw(st.sampled_from([0, 1]))
    group = draw(st.integers(1, 160))
    sym = draw(st.booleans())
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    seed = draw(st.integers(0, 2**16))
    return k, n, axis, group, sym, lead, seed


@given(cases())
@settings(max_examples=120, deadline=None)
def test_dequant_matmul_equals_x_at_dequantize(case):
    k, n, axis, group, sym, lead, seed = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(f32)
    qt = quantize(w, group_size=group, axis=axis, symmetric=sym)
    x = rng.standard_normal(lead + (k,)).astype(f32)
    b = rng.standard_normal(n).astype(f32)
    y = dequant_matmul(x, qt, b)
    assert y.shape == lead + (n,) and y.dtype == np.float32
    _close(y - b, x, dequantize(qt))


def test_chunking_crosses_groups_and_odd_n():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4096, 33)).astype(f32)  # several chunks; odd N splits bytes
    for axis, sym in [(0, True), (0, False), (1, True), (1, False)]:
        qt = quantize(w, group_size=96, axis=axis, symmetric=sym)
        x = rng.standard_normal((5, 4096)).astype(f32)
        _close(dequant_matmul(x, qt), x, dequantize(qt))


def test_perm_is_undone():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 8)).astype(f32)
    perm = rng.permutation(64)
    qp = quantize(w[perm], group_size=16)
    qt = QuantizedTensor(qp.data, qp.shape, 0, 16, qp.scale, perm=perm)
    np.testing.assert_array_equal(dequantize(qt)[perm], dequantize(qp))
    x = rng.standard_normal((3, 64)).astype(f32)
    _close(dequant_matmul(x, qt), x, dequantize(qt))


def test_temporary_memory_is_bounded():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2048, 2048)).astype(f32)  # 16 MiB as float32
    qt = quantize(w)
    x = rng.standard_normal((4, 2048)).astype(f32)
    tracemalloc.start()
    dequant_matmul(x, qt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= w.nbytes / 4, f"peak {peak} bytes > 1/4 of the float weight ({w.nbytes})"


def test_quantized_linear():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((256, 16)).astype(f32)
    b = rng.standard_normal(16).astype(f32)
    layer = QuantizedLinear.from_float(w, b, group_size=64)
    assert (layer.in_features, layer.out_features, layer.qt.scheme) == (256, 16, "int4")
    x = rng.standard_normal((2, 7, 256)).astype(f32)
    _close(layer(x) - b, x, dequantize(layer.qt))
    small = QuantizedLinear.from_float(w[:32], b)  # K = 32 < 128: int8 per channel
    assert small.qt.scheme == "int8" and small.qt.scale.shape == (1, 16)
    ref = x[..., :32] @ w[:32] + b
    assert np.linalg.norm(small(x[..., :32]) - ref) / np.linalg.norm(ref) < 0.01  # 8-bit error


def test_bad_input():
    qt = quantize(np.ones((8, 4), f32), group_size=4)
    with pytest.raises(ValueError, match=r"x must have last dimension K=8 to match qt \(8, 4\), got shape \(2, 7\)"):
        dequant_matmul(np.ones((2, 7), f32), qt)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(5,\)"):
        dequant_matmul(np.ones((2, 8), f32), qt, np.ones(5, f32))
    with pytest.raises(ValueError, match="qt must be a 2-D"):
        dequant_matmul(np.ones((2, 8), f32), quantize(np.ones((8, 4, 2), f32)))
    with pytest.raises(TypeError, match="x must be a float16, float32 or float64 array, got int64"):
        dequant_matmul(np.ones((2, 8), np.int64), qt)
    with pytest.raises(ValueError, match="w must be a 2-D"):
        QuantizedLinear.from_float(np.ones(8, f32))
