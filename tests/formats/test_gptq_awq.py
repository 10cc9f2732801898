"""Tests of monoquant_np.formats.autogptq and .autoawq (spec 12.4, 12.5).

The dialects are checked against the peers' own packing loops, transcribed in
:mod:`monoquant_np.testing.peers`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedTensor, dequant_matmul, dequantize, pack_int4, quantize
from monoquant_np.formats import awq_decode, awq_encode, gptq_decode, gptq_encode
from monoquant_np.testing.peers import autoawq_pack, autoawq_unpack, autogptq_pack, autogptq_weight, random_layer


# ------------------------------------------------------------------ GPTQ
def test_gptq_golden_words():
    # column 0 has codes 0..7 down K -> 0x76543210; zero point 8 stored as 7 -> 0x77777777.
    qt = QuantizedTensor(pack_int4(np.tile(np.arange(8, dtype=np.uint8)[:, None], (1, 8))), (8, 8), 0, 8,
                         np.ones((1, 8), np.float16), np.full((1, 8), 8, np.uint8), signed=False)
    t = gptq_encode(qt)
    assert hex(int(t["qweight"].view(np.uint32)[0, 0])) == "0x76543210"
    assert hex(int(t["qzeros"].view(np.uint32)[0, 0])) == "0x77777777"
    assert dequantize(gptq_decode(**t))[:, 0].tolist() == [-8, -7, -6, -5, -4, -3, -2, -1]


def test_gptq_act_order_golden_perm():
    # spec 12.4: g_idx alternating 1, 0 -> perm = stable argsort = odd rows, then even rows
    codes = np.arange(64).reshape(8, 8) % 16
    g_idx = np.array([1, 0, 1, 0, 1, 0, 1, 0], np.int32)
    qweight, qzeros = autogptq_pack(np.pad(codes, ((0, 24), (0, 24))), np.ones((8, 32), np.int64))
    qt = gptq_decode(qweight[:1, :8], qzeros[:2, :1], np.ones((2, 8), np.float16), g_idx)
    assert qt.perm.tolist() == [1, 3, 5, 7, 0, 2, 4, 6] and qt.block_size == 4
    assert np.array_equal(qt.codes(), codes[qt.perm])
    assert np.array_equal(dequantize(qt), (codes - 1).astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(k32=st.integers(1, 4), n32=st.integers(1, 2), gs=st.sampled_from([8, 16, 32, 24]), act=st.booleans(),
       seed=st.integers(0, 999))
def test_gptq_matches_autogptq_both_ways(k32, n32, gs, act, seed):
    # AutoGPTQ sizes its buffers as K // 32 * 4 and N // 32 * 4: it needs multiples of 32
    rng = np.random.default_rng(seed)
    k, n = 32 * k32, 32 * n32
    codes, zeros, scales, g_idx = random_layer(rng, k, n, gs, act)
    qweight, qzeros = autogptq_pack(codes, zeros)
    qt = gptq_decode(qweight, qzeros, scales, g_idx)
    assert (qt.perm is not None) == (act and not np.array_equal(g_idx, np.arange(k) // gs))
    want = autogptq_weight(qweight, qzeros, scales, g_idx)
    assert np.array_equal(dequantize(qt), want)
    x = rng.standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(dequant_matmul(x, qt), x @ want, rtol=1e-5, atol=1e-5)
    t = gptq_encode(qt)
    assert np.array_equal(t["qweight"], qweight) and np.array_equal(t["qzeros"], qzeros)
    assert np.array_equal(t["scales"], scales) and np.array_equal(t["g_idx"], g_idx)


def test_gptq_from_the_spec_quantizer():
    w = np.random.default_rng(4).standard_normal((64, 16)).astype(np.float32)
    qt = quantize(w, group_size=32, symmetric=False, scale_dtype=np.float16)
    t = gptq_encode(qt, checkpoint_format="gptq_v2")  # v2: zero points as they are (0 allowed)
    back = gptq_decode(**t, checkpoint_format="gptq_v2")
    assert back.equals(qt)
    signed = quantize(w, group_size=32)  # int4 -> code + 8 with zero point 8: exact
    assert np.array_equal(dequantize(gptq_decode(**gptq_encode(signed))), dequantize(signed))


def test_gptq_v1_zero_point_limits():
    qt = QuantizedTensor(pack_int4(np.zeros((8, 8), np.uint8)), (8, 8), 0, 8, np.ones((1, 8), np.float32),
                         np.zeros((1, 8), np.uint8), signed=False)
    with pytest.raises(ValueError, match="zero point 0.*gptq_v2"):
        gptq_encode(qt)
    q = np.zeros((1, 8), np.int32)
    with pytest.raises(ValueError, match="zero point 16"):
        gptq_decode(q, np.full((1, 1), -1, np.int32), np.ones((1, 8), np.float16), np.zeros(8, np.int32))


def test_gptq_unequal_groups_raise():
    q = np.zeros((2, 8), np.int32)
    with pytest.raises(ValueError, match="same number of rows"):
        gptq_decode(q, np.zeros((2, 1), np.int32), np.ones((2, 8), np.float16),
                    np.array([0] * 6 + [1] * 10, np.int32))
    with pytest.raises(ValueError, match="group_size is required"):
        gptq_decode(q, np.zeros((2, 1), np.int32), np.ones((2, 8), np.float16))
    with pytest.raises(TypeError, match="qweight must be an int32 array, got int64"):
        gptq_decode(q.astype(np.int64), np.zeros((2, 1), np.int32), np.ones((2, 8), np.float16))
    with pytest.raises(TypeError, match="qzeros must be an int32 array, got float32"):
        gptq_decode(q, np.zeros((2, 1), np.float32), np.ones((2, 8), np.float16))


# ------------------------------------------------------------------ AWQ
def test_awq_golden_order():
    # columns 0..7 hold codes 0..7: nibble i holds column ORDER[i], so the word reads 0x75316420
    codes = np.arange(8, dtype=np.uint8)[None, :].repeat(8, 0)
    qt = QuantizedTensor(pack_int4(codes), (8, 8), 0, 8, np.ones((1, 8), np.float16), np.zeros((1, 8), np.uint8),
                         signed=False)
    t = awq_encode(qt)
    assert hex(int(t["qweight"].view(np.uint32)[0, 0])) == "0x75316420"
    assert awq_decode(**t).equals(qt)


@settings(max_examples=25, deadline=None)
@given(k=st.sampled_from([32, 64, 96]), n8=st.integers(1, 4), gs=st.sampled_from([16, 32]), seed=st.integers(0, 999))
def test_awq_matches_autoawq_both_ways(k, n8, gs, seed):
    rng = np.random.default_rng(seed)
    n = 8 * n8
    codes = rng.integers(0, 16, (k, n))
    zeros = rng.integers(0, 16, (k // gs, n))
    scales = (rng.random((k // gs, n)) * 0.1).astype(np.float16)
    qweight, qzeros = autoawq_pack(codes), autoawq_pack(zeros)
    qt = awq_decode(qweight, qzeros, scales)
    assert np.array_equal(qt.codes(), autoawq_unpack(qweight)) and np.array_equal(qt.zero_point, zeros)
    want = (codes - np.repeat(zeros, gs, 0)).astype(np.float32) * np.repeat(scales, gs, 0).astype(np.float32)
    assert np.array_equal(dequantize(qt), want)
    t = awq_encode(qt)
    assert np.array_equal(t["qweight"], qweight) and np.array_equal(t["qzeros"], qzeros)


def test_awq_errors():
    qt = quantize(np.ones((24, 8), np.float32), group_size=16)
    with pytest.raises(ValueError, match="K % group_size"):
        awq_encode(qt)
    with pytest.raises(ValueError, match="multiple of the number of groups"):
        awq_decode(np.zeros((10, 1), np.int32), np.zeros((3, 1), np.int32), np.ones((3, 8), np.float16))
    with pytest.raises(TypeError, match="qzeros must be an int32 array"):
        awq_decode(np.zeros((16, 1), np.int32), np.zeros((1, 1), np.int64), np.ones((1, 8), np.float16))
