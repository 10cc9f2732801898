"""The optimized kernels equal the textbook reference implementations of the spec.

The core kernels (slab-wise quantize + pack, uint16 nibble (un)packing,
broadcast dequantize, the nibble-plane ``dequant_matmul``) are restructured for
speed; these tests pin them to :mod:`monoquant_np.testing.reference`, the
textbook form of the spec: codes, scales, zero points and packed bytes bit for
bit, matmul results within float32 rounding. The references use ``np.repeat`` /
whole-group reshapes / strided nibbles, none of the code under test.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monoquant_np.matmul as mm
import monoquant_np.planes as pl
from monoquant_np import QuantizedTensor, dequant_matmul, dequantize, pack_int4, quantize, unpack_int4
from monoquant_np.codes import quantize_codes
from monoquant_np.dequantize import dequantize_slice
from monoquant_np.nf4 import NF4_CODEBOOK
from monoquant_np.packing import pair_table
from monoquant_np.testing import reference
from monoquant_np.testing.reference import codes as ref_codes
from monoquant_np.testing.reference import dequantize as ref_dequantize
from monoquant_np.testing.reference import pack as ref_pack
from monoquant_np.testing.reference import unpack as ref_unpack

f32 = np.float32


def ref_quantize(w, group, axis, symmetric, sdt):
    """The reference quantization with this module's argument order."""
    return reference.quantize(w, group_size=group, axis=axis, symmetric=symmetric, scale_dtype=sdt)


def assert_close(y, x, w):
    bound = 4e-6 * np.sqrt(x.shape[-1]) * (np.abs(x) @ np.abs(w)) + 1e-6
    assert (np.abs(y - x @ w) <= bound).all(), float(np.max(np.abs(y - x @ w) - bound))


# ------------------------------------------------------------ quantize
@st.composite
def weights(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 40), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    group = draw(st.sampled_from([1, 2, 3, 7, 16, 32, 128]))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["normal", "zeros", "ties", "tiny"]))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(f32)
    if kind == "zeros":  # whole zero groups, -0.0 included
        w[..., ::2] = -0.0 if seed % 2 else 0.0
    elif kind == "ties":  # values on rounding ties
        w = (rng.integers(-16, 16, shape) / f32(2)).astype(f32)
    elif kind == "tiny":  # float16 scales underflow to zero or subnormal
        w = w * f32(1e-7)
    return w, group, axis


@given(weights(), st.booleans(), st.sampled_from([np.float32, np.float16]))
@settings(max_examples=150, deadline=None)
def test_quantize_bit_identical_to_reference(case, symmetric, sdt):
    w, group, axis = case
    qt = quantize(w, group_size=group, axis=axis, symmetric=symmetric, scale_dtype=sdt)
    data, s, z, bits, g = ref_quantize(w, group, axis, symmetric, sdt)
    assert (qt.bits, qt.block_size) == (bits, g)
    assert qt.scale.dtype == s.dtype and qt.scale.tobytes() == s.tobytes(), "scales differ (bitwise)"
    if z is None:
        assert qt.zero_point is None
    else:
        np.testing.assert_array_equal(qt.zero_point, z)
    assert qt.data.tobytes() == data.tobytes(), "packed bytes differ"


def test_quantize_large_slabs_bit_identical():
    # several slabs of groups, a partial last group and an odd inner size
    rng = np.random.default_rng(5)
    for shape, group in [((1000, 300), 128), ((4096, 257), 64), ((257, 3, 5), 16)]:
        w = rng.standard_normal(shape).astype(f32)
        for symmetric in (True, False):
            qt = quantize(w, group_size=group, symmetric=symmetric)
            data, s, z, _, _ = ref_quantize(w, group, 0, symmetric, f32)
            assert qt.data.tobytes() == data.tobytes() and qt.scale.tobytes() == s.tobytes()


def test_negative_zero_group_has_positive_zero_scale():
    w = np.full((4, 2), -0.0, f32)
    qt = quantize(w, group_size=4)
    assert qt.scale.tobytes() == np.zeros((1, 2), f32).tobytes()  # +0.0, as max|w| is
    assert not qt.codes().any()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_reported_like_check_finite(bad):
    w = np.ones((256, 4), f32)
    w[130, 3] = bad
    msg = r"w must be finite: 1 non-finite value\(s\), the first .* at index \(130, 3\)"
    for symmetric in (True, False):
        with pytest.raises(ValueError, match=msg):
            quantize(w, symmetric=symmetric)


def test_check_finite_in_slabs(monkeypatch):
    # slabs along axis 0 of any layout: each non-finite value is found, wherever it sits (the
    # last row of a slab, the first of the next, a Fortran-ordered or strided array, 0-d), and
    # the boolean temporary is a slab's (an 8 MiB weight peaks under 1/16 of its size)
    import tracemalloc

    import monoquant_np.errors as er

    w = np.ones((2048, 1024), f32)
    tracemalloc.start()
    er.check_finite(w)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= w.nbytes / 16, peak
    monkeypatch.setattr(er, "FINITE_SLAB", 12)  # 3 rows of 4 per slab
    base = np.ones((7, 4), np.float64)
    for r, c in [(2, 3), (3, 0), (6, 3), (0, 0)]:
        for layout in (lambda a: a, np.asfortranarray, lambda a: np.repeat(a, 2, axis=1)[:, ::2]):
            x = base.copy()
            x[r, c] = np.nan
            with pytest.raises(ValueError, match=rf"1 non-finite value\(s\), the first nan at index \({r}, {c}\)"):
                er.check_finite(layout(x))
        er.check_finite(base)
    with pytest.raises(ValueError, match=r"the first inf at index \(\)"):
        er.check_finite(np.float32(np.inf))
    er.check_finite(np.ones((3, 0)))


@given(st.integers(0, 2**16), st.sampled_from([1, 3, 8]), st.booleans())
@settings(max_examples=60, deadline=None)
def test_quantize_codes_with_given_scales(seed, group, symmetric):
    # scales chosen from outside: zeros, tiny (saturating) and float16 scales
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((13, 6)).astype(f32)
    gs = (-(-13 // group), 6)
    s = np.abs(rng.standard_normal(gs)).astype(f32) * rng.choice([0, 1e-3, 1], gs).astype(f32)
    if seed % 2:
        s = s.astype(np.float16)
    z = None if symmetric else rng.integers(0, 16, gs).astype(np.uint8)
    got = quantize_codes(w, s, z, axis=0, group_size=group)
    np.testing.assert_array_equal(got, ref_codes(w, s, z, 0, group, 4))
    assert got.dtype == (np.int8 if symmetric else np.uint8)


# ------------------------------------------------------------ packing
@pytest.mark.parametrize("signed", [True, False])
def test_unpack_every_byte_and_odd_counts(signed):
    b = np.arange(256, dtype=np.uint8)
    for count in (0, 1, 2, 255, 511, 512):
        np.testing.assert_array_equal(unpack_int4(b, count, signed=signed), ref_unpack(b, count, signed))


def test_unpack_crosses_chunks():
    from monoquant_np.packing import _CHUNK

    b = np.random.default_rng(6).integers(0, 256, 2 * _CHUNK + 5, dtype=np.uint8)
    for signed in (True, False):
        np.testing.assert_array_equal(unpack_int4(b, 2 * b.size - 1, signed=signed),
                                      ref_unpack(b, 2 * b.size - 1, signed))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int64])
def test_pack_every_pair_and_dtypes(dtype):
    lo, hi = (-8, 8) if np.dtype(dtype).kind == "i" else (0, 16)
    a, b = np.meshgrid(np.arange(lo, hi), np.arange(lo, hi), indexing="ij")
    codes = np.stack([a.ravel(), b.ravel()], axis=1).astype(dtype)  # every pair
    np.testing.assert_array_equal(pack_int4(codes), ref_pack(codes))
    np.testing.assert_array_equal(pack_int4(codes.ravel()[:-1]), ref_pack(codes.ravel()[:-1]))  # odd
    np.testing.assert_array_equal(pack_int4(codes[::2]), ref_pack(codes[::2]))  # non-contiguous


# ------------------------------------------------------------ dequantize
@given(weights(), st.sampled_from([True, False, "nf4"]), st.data())
@settings(max_examples=80, deadline=None)
def test_dequantize_and_slices_bit_identical(case, symmetric, data):
    # NF4 looks both codes of a byte up at once: slices that start or end mid-byte included
    from monoquant_np.nf4 import quantize_nf4

    w, group, axis = case
    if symmetric == "nf4":
        qt = quantize_nf4(w, block_size=group, axis=axis)
    else:
        qt = quantize(w, group_size=group, axis=axis, symmetric=symmetric)
    want = ref_dequantize(qt)
    assert dequantize(qt).tobytes() == want.tobytes()
    start = data.draw(st.integers(0, qt.shape[0] - 1))
    stop = data.draw(st.integers(start + 1, qt.shape[0]))
    assert dequantize_slice(qt, start, stop).tobytes() == want[start:stop].tobytes()


def test_nf4_dequantize_bit_identical():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 16, (40, 6)).astype(np.uint8)
    s = rng.random((3, 6)).astype(f32)
    qt = QuantizedTensor(pack_int4(codes), (40, 6), 0, 16, s, signed=False, codebook=NF4_CODEBOOK.copy())
    assert dequantize(qt).tobytes() == ref_dequantize(qt).tobytes()


# ------------------------------------------------------------ dequant_matmul
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("h", [0, 1])
def test_decode_planes_every_byte(signed, h):
    tile = np.arange(256, dtype=np.uint8).reshape(16, 16)
    codes = ref_unpack(tile.reshape(-1), 512, signed).reshape(16, 16, 2)[:, :, h]
    z = None if signed else np.arange(16, dtype=np.int8).reshape(1, 1, 16) % 16
    qt = quantize(np.ones((16, 2), f32), group_size=16, symmetric=signed)
    f = np.empty((16, 16), f32)
    pl._decode(tile, h, qt, z, np.empty((16, 16), np.uint8), f)
    want = codes.astype(f32) - (0 if z is None else z.reshape(1, 16).astype(f32))
    np.testing.assert_array_equal(f, want)


@pytest.mark.parametrize("scheme", ["int4", "int4/16", "uint4"])
@pytest.mark.parametrize("h", [0, 1])
def test_decode_scaled_every_byte(scheme, h):
    # all 256 bytes, one plane, scaled (int4/16: as 16 q times s / 16): equals the reference bit for bit
    tile = np.arange(256, dtype=np.uint8).reshape(16, 16)  # (rows, cols): one group of 16 rows
    signed = scheme.startswith("int4")
    codes = ref_unpack(tile.reshape(-1), 512, signed).reshape(16, 32)  # (rows, 2 * cols)
    z = np.arange(32, dtype=np.uint8).reshape(1, 32) % 16 if scheme == "uint4" else None
    s = (np.arange(32, dtype=f32).reshape(1, 32) + 1) / f32(3)
    qt = QuantizedTensor(pack_int4(codes), (16, 32), 0, 16, s, zero_point=z, signed=signed)
    planes_s, sixteenth = pl._sixteenths(qt, [np.ascontiguousarray(s[:, p::2]) for p in (0, 1)])
    assert sixteenth == signed
    if scheme == "int4":  # the sign-extending decoder, as used when s / 16 would not be exact
        planes_s, sixteenth = [np.ascontiguousarray(s[:, p::2]) for p in (0, 1)], False
    f = np.empty((16, 16), f32)
    zh = None if z is None else np.ascontiguousarray(z[:, h::2]).view(np.int8)[:, None, :]
    pl._decode(tile, h, qt, zh, np.empty((16, 16), np.uint8), f, planes_s[h][:, None, :], sixteenth)
    assert f.tobytes() == np.ascontiguousarray(ref_dequantize(qt)[:, h::2]).tobytes()


def test_decode_pairs_every_byte():
    # NF4: all 256 bytes, both nibbles at once through the table of float32 pairs, scaled: the
    # columns in order, bit for bit the reference dequantization
    tile = np.arange(256, dtype=np.uint8).reshape(16, 16)  # (rows, cols): one group of 16 rows
    codes = ref_unpack(tile.reshape(-1), 512, False).reshape(16, 32)  # (rows, 2 * cols)
    s = (np.arange(32, dtype=f32).reshape(1, 32) + 1) / f32(3)
    qt = QuantizedTensor(pack_int4(codes), (16, 32), 0, 16, s, signed=False, codebook=NF4_CODEBOOK.copy())
    pairs = pair_table(qt.codebook)
    assert pairs.dtype == np.uint64 and pairs.shape == (256,)
    f = np.empty((16, 32), f32)
    pl._decode(tile, slice(None), qt, None, np.empty((16, 16), np.uint8), f, s[:, None, :], pairs=pairs)
    assert f.tobytes() == ref_dequantize(qt).tobytes()
    pl._decode(tile, slice(None), qt, None, np.empty((16, 16), np.uint8), f, None, pairs=pairs)  # unscaled
    assert f.tobytes() == NF4_CODEBOOK[codes].tobytes()


def test_sixteenths_only_when_exact():
    qt = quantize(np.ones((16, 4), f32), group_size=16)
    odd = np.nextafter(f32(2.0**-126), f32(1))  # the smallest normal plus one ulp: odd / 16 is rounded
    tiny = [np.array([[odd, 1.0]], f32), np.array([[1.0, 2.0]], f32)]
    same, ok = pl._sixteenths(qt, tiny)
    assert not ok and same is tiny
    fine = [np.array([[2.0**-120, 3.0]], f32), np.array([[0.0, np.inf]], f32)]
    scaled, ok = pl._sixteenths(qt, fine)
    assert ok and scaled[0].tolist() == [[2.0**-124, 0.1875]] and scaled[1].tolist() == [[0.0, np.inf]]


def test_large_batch_with_subnormal_scales_is_exact():
    # scales so small that s / 16 is rounded: the sign-extending decoder keeps the tile bit-identical
    rng = np.random.default_rng(12)
    qt = quantize(rng.standard_normal((32, 8)).astype(f32) * f32(2.0**-123), group_size=16)
    assert not pl._sixteenths(qt, [qt.scale[:, 0::2], qt.scale[:, 1::2]])[1]
    y = dequant_matmul(np.eye(32, dtype=f32), qt)  # batch 32 > SMALL_BATCH
    assert y.tobytes() == ref_dequantize(qt).tobytes()


@pytest.mark.parametrize("group, n, budget, want", [(128, 4096, 1 << 20, 64), (128, 512, 1 << 20, 512),
                                                    (96, 4096, 1 << 20, 48), (100, 1 << 20, 1 << 20, 1)])
def test_chunk_rows(monkeypatch, group, n, budget, want):
    monkeypatch.setattr(pl, "DECODE_BYTES", budget)
    assert pl._chunk_rows(group, n) == want


@pytest.fixture
def tiny_tiles(monkeypatch):
    # many tiles in both paths, so tile edges, partial tiles and chunks within a group are exercised
    monkeypatch.setattr(mm, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(pl, "SMALL_TILE_BYTES", 4096)
    monkeypatch.setattr(pl, "GEMV_TILE_BYTES", 2048)
    monkeypatch.setattr(pl, "BIG_TILE_BYTES", 8192)
    monkeypatch.setattr(pl, "DECODE_BYTES", 1024)


@given(st.integers(1, 6), st.integers(1, 40), st.sampled_from([1, 3, 17, 40]),
       st.sampled_from([16, 32, 64]), st.sampled_from(["int4", "uint4", "nf4"]), st.integers(0, 2**16))
@settings(max_examples=100, deadline=None)
def test_dequant_matmul_paths_match_reference(kg, half_n, m, group, scheme, seed):
    rng = np.random.default_rng(seed)
    k = kg * group + seed % 3  # a partial last group now and then (handled by the chunked path)
    n = 2 * half_n - seed % 2  # odd N now and then (chunked path)
    w = rng.standard_normal((k, n)).astype(f32)
    if scheme == "nf4":
        codes = rng.integers(0, 16, (k, n)).astype(np.uint8)
        s = rng.random((-(-k // group), n)).astype(f32)
        qt = QuantizedTensor(pack_int4(codes), (k, n), 0, group, s, signed=False, codebook=NF4_CODEBOOK.copy())
    else:
        qt = quantize(w, group_size=group, symmetric=scheme == "int4", int8_fallback=False)
    x = rng.standard_normal((m, k)).astype(f32)
    assert_close(dequant_matmul(x, qt), x, ref_dequantize(qt))


@pytest.mark.parametrize("m", [1, 5, 16, 17, 64])
@pytest.mark.parametrize("symmetric", [True, False])
def test_dequant_matmul_many_tiles(tiny_tiles, m, symmetric):
    rng = np.random.default_rng(8)
    w = rng.standard_normal((512 + 5, 96)).astype(f32)
    qt = quantize(w, group_size=32, symmetric=symmetric)
    x = rng.standard_normal((m, w.shape[0])).astype(f32)
    assert_close(dequant_matmul(x, qt), x, ref_dequantize(qt))


def test_large_batch_tile_is_dequantize_bit_for_bit():
    # with an identity x the large-batch path returns its scaled tile itself
    rng = np.random.default_rng(9)
    for symmetric in (True, False):
        for sdt in (np.float32, np.float16):
            qt = quantize(rng.standard_normal((64, 10)).astype(f32), group_size=16, symmetric=symmetric,
                          scale_dtype=sdt)
            y = dequant_matmul(np.eye(64, dtype=f32), qt)  # batch 64 > SMALL_BATCH
            assert y.tobytes() == ref_dequantize(qt).tobytes()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("symmetric", [True, False])
def test_quantize_temporary_memory(axis, symmetric):
    # codes are made and packed in slabs of about 1 MiB (whole groups of rows along axis 0, whole
    # rows along the last axis): the peak is the packed output (1/8 of the float32 weight), the
    # scales and a few slabs; along axis 1 it was 0.89x before the row slabs
    import tracemalloc

    w = np.random.default_rng(12).standard_normal((2048, 1024)).astype(f32)  # 8 MiB
    tracemalloc.start()
    qt = quantize(w, group_size=64, axis=axis, symmetric=symmetric)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 0.4 * w.nbytes, f"peak {peak / w.nbytes:.2f}x the weight"
    data, s, z, _, _ = ref_quantize(w, 64, axis, symmetric, f32)
    assert qt.data.tobytes() == data.tobytes() and qt.scale.tobytes() == s.tobytes()


@pytest.mark.parametrize("symmetric, sdt, group", [(True, np.float32, 128), (False, np.float16, 128),
                                                   (True, np.float32, 16), (False, np.float32, 16),
                                                   ("nf4", np.float32, 64), ("nf4", np.float32, 16)])
def test_large_batch_temporary_memory(symmetric, sdt, group):
    # the large-batch path (tiles, decode scratch, the planes' scales, K accumulator):
    # <= 1/4 of the float weight plus the output, small groups (scales of 1/16 of the weight) included
    import tracemalloc

    from monoquant_np.nf4 import quantize_nf4

    rng = np.random.default_rng(11)
    w = rng.standard_normal((1024, 2048)).astype(f32)  # 8 MiB as float32
    if symmetric == "nf4":  # both nibbles decoded at once: tiles of twice the floats per byte
        qt = quantize_nf4(w, block_size=group)
    else:
        qt = quantize(w, group_size=group, scale_dtype=sdt, symmetric=symmetric)
    x = rng.standard_normal((32, 1024)).astype(f32)  # batch 32 > SMALL_BATCH
    tracemalloc.start()
    y = dequant_matmul(x, qt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= w.nbytes / 4 + y.nbytes, f"peak {peak} bytes > 1/4 of the float weight ({w.nbytes}) + output"
    assert_close(y, x, ref_dequantize(qt))


def test_non_contiguous_and_float64_inputs():
    rng = np.random.default_rng(10)
    base = rng.standard_normal((300, 520))
    for w in (base.T, base[::2, ::3].astype(f32), base.astype(np.float16)):
        for symmetric in (True, False):
            qt = quantize(w, group_size=64, symmetric=symmetric)
            data, s, z, _, _ = ref_quantize(np.ascontiguousarray(w), 64, 0, symmetric, f32)
            assert qt.data.tobytes() == data.tobytes() and qt.scale.tobytes() == s.tobytes()
        x = rng.standard_normal((3, w.shape[0])).astype(f32)
        assert_close(dequant_matmul(x[:, :], qt), x, ref_dequantize(qt))


@given(weights())
@settings(max_examples=60, deadline=None)
def test_quantize_nf4_equals_reference_rounding(case):
    # the counted comparisons and packed slabs of quantize_nf4 against the reference's binary search
    from monoquant_np.nf4 import quantize_nf4

    w, group, axis = case
    qt = quantize_nf4(w, block_size=group, axis=axis)
    codes, absmax = reference.nf4_quantize(w, group, axis)
    assert qt.scale.tobytes() == absmax.tobytes()
    assert qt.data.tobytes() == ref_pack(codes).tobytes()
