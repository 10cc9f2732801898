"""Tests of monoquant_np.formats.gguf (spec 12.2): byte-identical with gguf-py both ways."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedTensor, dequantize, pack_int4, quantize
from monoquant_np.formats import (
    q4_0_decode,
    q4_0_dequantize,
    q4_0_encode,
    q4_0_quantize,
    q4_1_decode,
    q4_1_dequantize,
    q4_1_encode,
    q4_1_quantize,
    q8_0_decode,
    q8_0_dequantize,
    q8_0_encode,
    q8_0_quantize,
    transpose,
)
from monoquant_np.testing import weights

gq = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType as T  # noqa: E402

FORMATS = {
    "Q4_0": (q4_0_quantize, q4_0_dequantize, q4_0_decode),
    "Q4_1": (q4_1_quantize, q4_1_dequantize, None),
    "Q8_0": (q8_0_quantize, q8_0_dequantize, q8_0_decode),
}
# every adversarial kind; all keep d finite in float16 (up to 65504 / 8 for Q4_0)
KINDS = ("normal", "zeros", "spike", "ties", "f16_limits", "denormals", "constant")


def first_diff(a: np.ndarray, b: np.ndarray, record: int) -> str:
    """Which block and byte differ, as gguf-py's own tests report."""
    i = int(np.flatnonzero(a.reshape(-1) != b.reshape(-1))[0])
    return f"block {i // record}, byte {i % record}: expected 0x{a.reshape(-1)[i]:02x}, got 0x{b.reshape(-1)[i]:02x}"


def gguf_rows(rows: int, blocks: int):
    return st.builds(lambda r, c: (r, 32 * c), st.integers(1, rows), st.integers(1, blocks)).flatmap(
        lambda shape: weights(shape, axis=1, group_size=32, kinds=KINDS))


# ------------------------------------------------------------------ hand-checkable vectors
def test_q4_0_golden_block():
    # m = -8 (largest magnitude), d = -8 / -8 = 1; q = trunc(w / d + 8.5): -8 -> 0, 1 -> 9.
    w = np.array([[-8.0] + [1.0] * 31], np.float32)
    b = q4_0_quantize(w)
    assert b[0, :2].tolist() == [0x00, 0x3C]  # float16 1.0, little-endian
    assert b[0, 2:].tolist() == [0x90] + [0x99] * 15  # q[j] | q[j + 16] << 4
    qt = q4_0_decode(b, w.shape)
    assert qt.scale.dtype == np.float16 and qt.scale.tolist() == [[1.0]]
    assert qt.codes()[0, :2].tolist() == [-8, 1]
    assert dequantize(qt).tolist() == w.tolist()


def test_q4_0_all_zero_block_both_ways():
    w = np.zeros((2, 64), np.float32)
    w[1, 32:] = np.linspace(-1, 1, 32, dtype=np.float32)
    ref = gq.quantize(w, T.Q4_0)
    mine = q4_0_quantize(w)
    assert np.array_equal(mine, ref)
    # d = 0 / -8 = -0.0 (float16 0x8000), every q = trunc(0 + 8.5) = 8
    assert mine[0, :18].tolist() == [0x00, 0x80] + [0x88] * 16
    assert np.array_equal(q4_0_dequantize(ref, w.shape), gq.dequantize(ref, T.Q4_0))
    assert (dequantize(q4_0_decode(ref, w.shape))[0] == 0).all()
    assert np.array_equal(q4_0_encode(q4_0_decode(ref, w.shape)), ref)


def test_q4_0_first_extreme_wins_a_tie():
    # |1| == |-1|: argmax takes the first, so d = 1 / -8 (negative) here and -1 / -8 in the mirror.
    w = np.zeros((1, 32), np.float32)
    w[0, :2] = [1.0, -1.0]
    assert q4_0_decode(q4_0_quantize(w), w.shape).scale.tolist() == [[-0.125]]
    assert q4_0_decode(q4_0_quantize(-w), w.shape).scale.tolist() == [[0.125]]


def test_q8_0_golden_block():
    # d = 127 / 127 = 1; 0.5 rounds away from zero to 1 (np_roundf), -2.5 to -3.
    w = np.zeros((1, 32), np.float32)
    w[0, :3] = [127.0, 0.5, -2.5]
    b = q8_0_quantize(w)
    assert b[0, :2].view(np.float16).tolist() == [1.0]
    assert b[0, 2:5].view(np.int8).tolist() == [127, 1, -3]
    assert np.array_equal(b, gq.quantize(w, T.Q8_0))


def test_q4_1_golden_block():
    # min 0, max 15: d = 1, m = 0; q = trunc(w - 0 + 0.5).
    w = np.arange(32, dtype=np.float32).reshape(1, 32) % 16
    b = q4_1_quantize(w)
    assert np.array_equal(b, gq.quantize(w, T.Q4_1))
    qt = q4_1_decode(b, w.shape)  # m = 0 = -0 * d: representable
    assert qt.scheme == "uint4" and qt.zero_point.tolist() == [[0]]
    assert dequantize(qt).tolist() == w.tolist()


# ------------------------------------------------------------------ gguf-py, both ways
@settings(max_examples=60, deadline=None)
@given(w=gguf_rows(12, 4), fmt=st.sampled_from(sorted(FORMATS)))
def test_byte_identical_with_gguf_py(w, fmt):
    qfn, dqfn, dec = FORMATS[fmt]
    qtype = getattr(T, fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = gq.quantize(w, qtype)
        mine = qfn(w)
        record = ref.shape[-1] // (w.shape[-1] // 32)
        assert mine.shape == ref.shape and np.array_equal(mine, ref), first_diff(ref, mine, record)
        # decode gguf-py's bytes: the same float32 values, bit for bit
        want = gq.dequantize(ref, qtype)
        got = dqfn(ref, w.shape)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        if dec is not None:
            qt = dec(ref, w.shape)
            assert np.array_equal(dequantize(qt).view(np.uint32), want.view(np.uint32))
            enc = q4_0_encode if fmt == "Q4_0" else q8_0_encode
            assert np.array_equal(enc(qt), ref)


@settings(max_examples=30, deadline=None)
@given(w=gguf_rows(8, 3))
def test_spec_int4_with_float16_scales_is_q4_0(w):
    # Any int4 QuantizedTensor grouped by 32 along the rows with float16 scales is a Q4_0 tensor.
    qt = quantize(w, group_size=32, axis=1, scale_dtype=np.float16, int8_fallback=False)
    b = q4_0_encode(qt)
    assert np.array_equal(gq.dequantize(b, T.Q4_0), dequantize(qt))
    assert q4_0_decode(b, w.shape).equals(qt)


def test_q4_1_from_uint4_round_trip_and_gguf_reads_it():
    # A uint4 tensor whose offsets -z * s are float16-exact (power-of-two scales) is a Q4_1 tensor.
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (3, 64)).astype(np.uint8)
    scale = (2.0 ** rng.integers(-6, 3, (3, 2))).astype(np.float16)
    zp = rng.integers(0, 16, (3, 2)).astype(np.uint8)
    qt = QuantizedTensor(pack_int4(codes), (3, 64), 1, 32, scale, zp, signed=False)
    b = q4_1_encode(qt)
    assert np.array_equal(gq.dequantize(b, T.Q4_1), dequantize(qt))
    assert q4_1_decode(b, qt.shape).equals(qt)


def test_q4_1_min_offset_is_not_representable():
    w = np.linspace(0.3, 1.7, 32, dtype=np.float32).reshape(1, 32)  # min 0.3 is no multiple of d
    b = q4_1_quantize(w)
    np.testing.assert_allclose(q4_1_dequantize(b, w.shape), w, atol=0.06)
    with pytest.raises(ValueError, match="not representable as a uint4"):
        q4_1_decode(b, w.shape)


def test_q4_0_of_a_linear_weight_becomes_a_matmul_b():
    # GGUF blocks a (N, K) Linear weight along K; ONNX MatMul wants (K, N) grouped along axis 0.
    rng = np.random.default_rng(1)
    wl = rng.standard_normal((5, 64)).astype(np.float32)
    qt = transpose(q4_0_decode(q4_0_quantize(wl), wl.shape))
    assert qt.shape == (64, 5) and qt.axis == 0 and qt.block_size == 32
    assert np.array_equal(dequantize(qt), q4_0_dequantize(q4_0_quantize(wl), wl.shape).T)


# ------------------------------------------------------------------ errors
def test_errors():
    with pytest.raises(ValueError, match="multiple of 32"):
        q4_0_quantize(np.ones((2, 40), np.float32))
    with pytest.raises(ValueError, match="must hold 2 Q4_0 blocks = 36 bytes"):
        q4_0_dequantize(np.zeros(35, np.uint8), (1, 64))
    with pytest.raises(TypeError, match="data must be a numpy uint8"):
        q4_0_decode(np.zeros(18, np.int8), (1, 32))
    with pytest.raises(ValueError, match="float16"):
        q4_0_encode(quantize(np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 32) / 3, group_size=32, axis=1))
    with pytest.raises(ValueError, match="int4 grouped along the last axis"):
        q4_0_encode(quantize(np.ones((32, 2), np.float32), group_size=32))
