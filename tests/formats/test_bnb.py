"""Tests of monoquant_np.formats.bnb (spec 12.3): bitsandbytes NF4 packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import dequantize, quantize
from monoquant_np.formats import bnb_nf4_pack, bnb_nf4_unpack, transpose
from monoquant_np.nf4 import NF4_CODEBOOK, quantize_nf4


def bnb_layout(codes: np.ndarray) -> np.ndarray:
    """bitsandbytes' byte order, written out element by element: first element in the high nibble."""
    flat = [int(c) for c in codes.reshape(-1)] + [0]
    return np.array([(flat[i] << 4) | flat[i + 1] for i in range(0, codes.size, 2)], np.uint8).reshape(-1, 1)


def test_golden_bytes():
    # x / absmax = [-1, 1, 0, 0.25]: codes 0, 15, 7, 10 -> bytes 0x0F, 0x7A
    qt = quantize_nf4(np.array([-2.0, 2.0, 0.0, 0.5], np.float32), block_size=64)
    packed, absmax = bnb_nf4_pack(qt)
    assert packed.tolist() == [[0x0F], [0x7A]] and absmax.tolist() == [2.0]
    back = bnb_nf4_unpack(packed, absmax, (4,), blocksize=64)
    assert back.equals(qt)
    assert dequantize(back).tolist() == [-2.0, 2.0, 0.0, float(np.float32(NF4_CODEBOOK[10]) * np.float32(2))]


@given(st.integers(0, 255))
def test_every_byte_is_high_nibble_first(byte):
    qt = bnb_nf4_unpack(np.array([[byte]], np.uint8), np.ones(1, np.float32), (2,), blocksize=64)
    assert qt.codes().tolist() == [byte >> 4, byte & 15]


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 6), blocks=st.integers(1, 3), bs=st.sampled_from([32, 64, 128]), seed=st.integers(0, 99))
def test_pack_matches_the_layout_and_round_trips(rows, blocks, bs, seed):
    w = np.random.default_rng(seed).standard_normal((rows, blocks * bs)).astype(np.float32)
    qt = quantize_nf4(w, block_size=bs, axis=1)
    packed, absmax = bnb_nf4_pack(qt)
    assert np.array_equal(packed, bnb_layout(qt.codes()))
    assert absmax.shape == (rows * blocks,) and absmax.dtype == np.float32
    back = bnb_nf4_unpack(packed, absmax, w.shape, blocksize=bs)
    assert back.equals(qt)
    # bitsandbytes' dequantization: NF4[code] * absmax[i // blocksize] over the flattened tensor
    codes = np.stack([packed.ravel() >> 4, packed.ravel() & 15], 1).ravel()[: w.size]
    want = NF4_CODEBOOK[codes] * np.repeat(absmax, bs)[: w.size]
    assert np.array_equal(dequantize(back).ravel(), want)


def test_odd_count_1d():
    w = np.linspace(-1, 1, 7, dtype=np.float32)
    qt = quantize_nf4(w, block_size=64)
    packed, absmax = bnb_nf4_pack(qt)
    assert packed.shape == (4, 1) and packed[-1, 0] & 15 == 7  # padded with bitsandbytes' 0.0: code 7
    assert bnb_nf4_unpack(packed, absmax, (7,), blocksize=64).equals(qt)


def test_matmul_weight_is_transposed_first():
    w = np.random.default_rng(2).standard_normal((128, 6)).astype(np.float32)  # (K, N)
    qt = quantize_nf4(w, block_size=64, axis=0)
    with pytest.raises(ValueError, match="transpose"):
        bnb_nf4_pack(qt)
    packed, absmax = bnb_nf4_pack(transpose(qt))  # (N, K) as torch's Linear.weight
    back = transpose(bnb_nf4_unpack(packed, absmax, (6, 128), blocksize=64))
    assert back.equals(qt)


def test_not_representable():
    with pytest.raises(ValueError, match="straddle rows"):
        bnb_nf4_unpack(np.zeros((48, 1), np.uint8), np.ones(2, np.float32), (3, 32), blocksize=64)
    with pytest.raises(ValueError, match="NF4 codebook"):
        bnb_nf4_pack(quantize(np.ones((2, 64), np.float32), group_size=64, axis=1))
    with pytest.raises(ValueError, match="multiple of block_size"):
        bnb_nf4_pack(quantize_nf4(np.ones((2, 40), np.float32), block_size=32, axis=1))
    with pytest.raises(TypeError, match="absmax must be a float32 array, got float16"):
        bnb_nf4_unpack(np.zeros((1, 1), np.uint8), np.ones(1, np.float16), (2,))
