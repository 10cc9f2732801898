"""Tests of monoquant_np.formats.matmulnbits (spec 12.1): layout and onnxruntime's DEFAULT quantizer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import QuantizedTensor, dequantize, pack_int4, quantize, unpack_int4
from monoquant_np.formats import matmulnbits_pack, matmulnbits_unpack, ort_default_quantize
from monoquant_np.formats.matmulnbits import MATMULNBITS_BLOCK_SIZES, is_block_size
from monoquant_np.testing import KINDS, cases

ort_pybind = pytest.importorskip("onnxruntime.capi._pybind_state")


def kernel(w: np.ndarray, block_size: int, symmetric: bool):
    """onnxruntime's own quantizer, called as matmul_nbits_quantizer.py calls it."""
    k, n = w.shape
    nb = -(-k // block_size)
    b = np.zeros((n, nb, block_size // 2), np.uint8)
    zp = np.zeros((n, (nb + 1) // 2), np.uint8)
    scales = np.zeros((n, nb), w.dtype)
    ort_pybind.quantize_matmul_4bits(b, w, scales, zp, block_size, n, k, symmetric)
    return b, scales, zp


def rows(b: np.ndarray) -> np.ndarray:
    """The unsigned codes of ``B`` ``(N, nb, block_size // 2)`` as ``(N, nb * block_size)``, row by row along K."""
    n, nb, blob = b.shape
    return unpack_int4(b, n * nb * blob * 2, signed=False).reshape(n, nb * blob * 2)


def assert_same_as_kernel(w: np.ndarray, block_size: int, symmetric: bool) -> None:
    """Our layout of onnxruntime's quantizer equals the kernel's output on every byte the kernel defines.

    The kernel writes the codes of rows < K only (for odd K the high nibble after
    row K - 1 keeps a stale code) and leaves the padding rows of the caller's buffer
    as they were; ``matmulnbits_pack`` sets them to the zero point (spec 12.1).
    """
    b, scales, zp = kernel(w, block_size, symmetric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qt = ort_default_quantize(w, block_size=block_size, symmetric=symmetric)
    b2, s2, z2 = matmulnbits_pack(qt)
    k = w.shape[0]
    diff = np.argwhere(rows(b)[:, :k] != rows(b2)[:, :k])
    assert diff.size == 0, f"B differs at (n, row) {diff[:3].tolist()}"
    last_zp = np.full(w.shape[1], 8) if symmetric else qt.zero_point[-1]  # (N,) the last block's zero points
    assert (rows(b2)[:, k:] == last_zp[:, None]).all(), "padding rows must hold the zero point"
    assert s2.dtype == scales.dtype
    sdiff = np.argwhere(scales.view(np.uint16 if scales.dtype == np.float16 else np.uint32)
                        != s2.view(np.uint16 if s2.dtype == np.float16 else np.uint32))
    assert sdiff.size == 0, f"scales differ at (n, block) {sdiff[:3].tolist()}: {scales[tuple(sdiff[0])]} vs"
    if symmetric:
        assert z2 is None
    else:
        assert np.array_equal(zp, z2), f"zero points differ at {np.argwhere(zp != z2)[:3].tolist()}"


# ------------------------------------------------------------------ hand-checkable vectors
def test_golden_symmetric_signed_max_over_minus_8():
    # block of 16 rows [4, -1, 4, -1, ...]: the extreme is +4, s = 4 / -8 = -0.5,
    # codes 4 / -0.5 = -8 and -1 / -0.5 = 2; stored +8: 0 and 10, byte 0xA0.
    w = np.array([[4.0], [-1.0]] * 8, np.float32)
    qt = ort_default_quantize(w, block_size=16)
    assert qt.scale.tolist() == [[-0.5]]
    assert qt.codes()[:2, 0].tolist() == [-8, 2]
    b, s, z = matmulnbits_pack(qt)
    assert b.tolist() == [[[0xA0] * 8]] and s.tolist() == [[-0.5]] and z is None
    assert dequantize(qt)[:2, 0].tolist() == [4.0, -1.0]


def test_golden_tie_takes_the_minimum_and_rounds_half_away():
    # |max| == |min| = 1: the minimum is taken, s = -(-1) / 8 = 0.125. 0.0625 / 0.125 = 0.5 -> roundf 1.
    w = np.zeros((16, 1), np.float32)
    w[:3, 0] = [1.0, -1.0, 0.0625]
    qt = ort_default_quantize(w, block_size=16)
    assert qt.scale.tolist() == [[0.125]]
    assert qt.codes()[:3, 0].tolist() == [7, -8, 1]  # 8 clamps to 7: w=1 is not exact
    assert_same_as_kernel(w, 16, True)


def test_golden_asymmetric():
    # lo = -1, hi = 2: s = 3 / 15 = 0.2, zp = roundf(1 / 0.2) = 5; 2 / 0.2 + 5 = 15.
    w = np.zeros((16, 1), np.float32)
    w[:2, 0] = [-1.0, 2.0]
    qt = ort_default_quantize(w, block_size=16, symmetric=False)
    assert qt.scale.tolist() == [[np.float32(0.2)]] and qt.zero_point.tolist() == [[5]]
    assert qt.codes()[:3, 0].tolist() == [0, 15, 5]
    b, s, z = matmulnbits_pack(qt)
    assert b[0, 0, :2].tolist() == [0xF0, 0x55] and z.tolist() == [[0x85]]  # missing zp nibble = 8
    assert_same_as_kernel(w, 16, False)


def test_all_zero_block_and_signed_zero_scales():
    w = np.zeros((32, 3), np.float32)
    w[:, 1] = -0.0
    for sym in (True, False):
        assert_same_as_kernel(w, 16, sym)
    qt = ort_default_quantize(w, block_size=16)
    assert np.signbit(qt.scale[:, 0]).all() and not np.signbit(qt.scale[:, 1]).any()  # -(+0)/8, -(-0)/8
    assert (dequantize(qt) == 0).all()


# ------------------------------------------------------------------ byte-identical with the kernel
@settings(max_examples=60, deadline=None)
# the weight itself is cast to float16 below, which cannot hold the f16_boundary kind's 458639.97
@given(case=cases(ndims=(2,), axes_=(0,), group_sizes_=MATMULNBITS_BLOCK_SIZES, max_side=300,
                  kinds=tuple(k for k in KINDS if k != "f16_boundary")))
def test_byte_identical_with_quantize_matmul_4bits(case):
    w = case.w.astype(case.scale_dtype)  # float16 scales come from the float16 kernel
    assert_same_as_kernel(w, case.group_size, case.symmetric)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("symmetric", [True, False])
def test_byte_identical_random_sizes(dtype, symmetric):
    rng = np.random.default_rng(7)
    for _ in range(25):
        k, n = int(rng.integers(1, 400)), int(rng.integers(1, 12))
        bs = int(rng.choice(MATMULNBITS_BLOCK_SIZES))
        w = (rng.standard_normal((k, n)) * 10 ** rng.uniform(-2, 2)).astype(dtype)
        if rng.random() < 0.5:
            w = (np.round(w * 4) / 4).astype(dtype)  # ties
        assert_same_as_kernel(w, bs, symmetric)


# ------------------------------------------------------------------ layout round trips
@settings(max_examples=40, deadline=None)
@given(case=cases(ndims=(2,), axes_=(0,), group_sizes_=(16, 32, 64, 128)))
def test_pack_unpack_round_trip(case):
    qt = quantize(case.w, group_size=case.group_size, symmetric=case.symmetric, scale_dtype=case.scale_dtype,
                  int8_fallback=False)
    back = matmulnbits_unpack(*matmulnbits_pack(qt), k=qt.shape[0])
    assert back.equals(qt)


def test_the_exporter_writes_this_layout():
    # monoquant_np.onnx builds its MatMulNBits node from these bytes, scales widened to float32.
    onnx_mnb = pytest.importorskip("monoquant_np.onnx.export.matmulnbits_node")
    rng = np.random.default_rng(3)
    for sym in (True, False):
        qt = quantize(rng.standard_normal((75, 6)).astype(np.float32), group_size=32, symmetric=sym)
        b, s, z = onnx_mnb.matmulnbits_arrays(qt, 32)
        assert matmulnbits_unpack(b, s, z, k=75).equals(qt)
        b2, s2, z2 = matmulnbits_pack(qt)
        assert np.array_equal(b2, b)  # every block, the partial last one included
        assert np.array_equal(s2.astype(np.float32), s)
        assert (z is None and z2 is None) if sym else np.array_equal(z2, z)


# ------------------------------------------------------------------ the padding of a partial last block
def test_golden_partial_last_block_signed_pads_with_8():
    # spec 9.4: K = 17, blocks of 16, int4 codes -8..7 (rows 0-15) and 5 (row 16).
    codes = np.array([[c - 8] for c in range(16)] + [[5]], np.int8)
    qt = QuantizedTensor(pack_int4(codes), (17, 1), 0, 16, np.array([[0.5], [2.0]], np.float32))
    b, s, z = matmulnbits_pack(qt)
    assert b.shape == (1, 2, 8) and z is None
    assert b[0, 0].tolist() == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]  # 0..15, low nibble first
    assert b[0, 1].tolist() == [0x8D] + [0x88] * 7  # 5 + 8 = 0xD, then padding code 8 (= the zero point)
    assert s.tolist() == [[0.5, 2.0]]


def test_golden_partial_last_block_unsigned_pads_with_its_zero_point():
    # K = 17, uint4 codes 0..15 (block 0, zero point 4) and 3 (block 1, zero point 9): padding code 9.
    codes = np.array([[c] for c in range(16)] + [[3]], np.uint8)
    qt = QuantizedTensor(pack_int4(codes), (17, 1), 0, 16, np.array([[0.5], [2.0]], np.float32),
                         np.array([[4], [9]], np.uint8), signed=False)
    b, s, z = matmulnbits_pack(qt)
    assert b[0, 1].tolist() == [0x93] + [0x99] * 7
    assert z.tolist() == [[0x94]]  # block 0 in the low nibble
    assert (dequantize(matmulnbits_unpack(b, s, z, k=32))[17:] == 0).all()  # padding dequantizes to 0


@pytest.mark.parametrize("symmetric", [True, False])
def test_int8_layout_one_code_per_byte(symmetric):
    # the int8 per-channel fallback: K = 20 < group 128, one block of 32, padding = the zero point.
    w = np.random.default_rng(5).standard_normal((20, 3)).astype(np.float32)
    qt = quantize(w, group_size=128, symmetric=symmetric)
    assert qt.bits == 8
    b, s, z = matmulnbits_pack(qt)
    assert b.shape == (3, 1, 32)
    u = (qt.codes().astype(np.int16) + (128 if symmetric else 0)).T  # (N, K)
    assert np.array_equal(b[:, 0, :20], u)
    pad = np.full(3, 128) if symmetric else qt.zero_point[0]
    assert (b[:, 0, 20:] == pad[:, None]).all()
    assert (z is None) if symmetric else z.tolist() == qt.zero_point.T.tolist()
    back = matmulnbits_unpack(b, s, z, k=20, bits=8)
    assert np.array_equal(dequantize(back), dequantize(qt))


def test_blocks_nest_inside_groups():
    # group 48 is not a power of two: blocks of 16, each group's scale repeated over its 3 blocks.
    qt = quantize(np.random.default_rng(6).standard_normal((100, 2)).astype(np.float32), group_size=48)
    b, s, z = matmulnbits_pack(qt)
    assert b.shape == (2, 7, 8)
    assert np.array_equal(s, np.repeat(qt.scale.T, 3, axis=1)[:, :7])
    assert np.array_equal(dequantize(matmulnbits_unpack(b, s, z, k=100)), dequantize(qt))
    with pytest.raises(ValueError, match="block_size must divide the group size 48"):
        matmulnbits_pack(qt, 32)


def test_block_sizes_exhaustive():
    assert [n for n in range(4097) if is_block_size(n)] == [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument():
    qt = quantize(np.ones((48, 4), np.float32), group_size=24)
    with pytest.raises(ValueError, match="power of two"):
        matmulnbits_pack(qt)
    with pytest.raises(ValueError, match="axis 0"):
        matmulnbits_pack(quantize(np.ones((4, 48), np.float32), group_size=16, axis=1))
    with pytest.raises(TypeError, match="w must be a float32 or float16"):
        ort_default_quantize(np.ones((16, 2), np.int32), block_size=16)
    with pytest.raises(ValueError, match="block_size must be one of"):
        ort_default_quantize(np.ones((16, 2), np.float32), block_size=48)
    with pytest.raises(ValueError, match="k must lie in"):
        matmulnbits_unpack(np.zeros((2, 1, 8), np.uint8), np.ones((2, 1), np.float32), k=17)
    with pytest.raises(TypeError, match="B must be a numpy uint8"):
        matmulnbits_unpack(np.zeros((2, 1, 8), np.int8), np.ones((2, 1), np.float32), k=16)


@given(st.integers(0, 255))
def test_every_byte_unpacks_to_its_two_codes(byte):
    b = np.full((1, 1, 8), byte, np.uint8)
    qt = matmulnbits_unpack(b, np.ones((1, 1), np.float32), k=16)
    assert qt.codes()[:2, 0].tolist() == [(byte & 15) - 8, (byte >> 4) - 8]
