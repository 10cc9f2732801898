"""The nibble-plane kernels behind :func:`~monoquant_np.matmul.dequant_matmul` (spec section 6.2).

:func:`planes_matmul` computes ``x @ dequantize(qt)[:k]`` for the common case,
4-bit codes grouped along K (axis 0) and an even N, without the float weight
and without re-interleaving nibbles; ``dequant_matmul`` hands it the rows of
whole groups (:func:`fast_rows`) and does the rest with ``dequantize_slice``.
Results equal ``x @ dequantize(qt)`` within float32 rounding; the decoded
tiles are bit-identical to :func:`~monoquant_np.dequantize.dequantize`.

The packed bytes of a ``(K, N)`` weight form a ``(K, N/2)`` array whose low
nibbles are the even columns and whose high nibbles are the odd columns
(spec 5.1). Each half-width "plane" of codes is decoded with one or two
whole-array byte operations, converted to float32 once (exact) and multiplied
on the right of ``x``; the planes are never re-interleaved, only the output's
columns are. int4 codes are decoded as ``16 q`` (``b * 16`` mod 256 for the
low nibble, ``b & 0xF0`` for the high one, read as int8: no sign extension)
against scales divided by 16, which is exact (checked; otherwise ``b * 16 >>
4`` and ``b >> 4`` on int8 sign-extend); uint4 uses ``& 15`` and ``>> 4``,
minus the zero point in int8 (exact). NF4 (a codebook) decodes both planes
at once in column order: one lookup per byte in a 256-entry table of float32
pairs (``packing.pair_table``), half as many lookups as one per code, and
products over the full width (no output interleaving).

* batch ``M <= SMALL_BATCH`` (and ``group >= 4 M``): cache-sized tiles; the
  scales multiply the per-group products, ``y_even += sum_g s[g, 0::2] *
  (x_g @ c_g)``, which costs ``M * N * K / group`` multiplications instead of
  ``N * K``;
* larger batches: per plane, tiles of equally many whole groups of rows (at
  most 5/32 of the float32 weight), decoded in cache-sized chunks (last chunk
  first) and scaled in place, ``w = (q - z) * s`` (bit-identical to
  :func:`~monoquant_np.dequantize.dequantize`); each tile is one multithreaded
  BLAS product accumulated over K. Decoding runs on one thread: after each
  multithreaded product OpenBLAS's idle worker keeps spinning on the other
  cores for a while, so a second decoding thread would compete with it.

Temporary memory stays below 1/4 of the float32 weight, plus buffers of the
output's size (the accumulator over K).
"""

from __future__ import annotations

import numpy as np

from .groups import apply_rows, split_view
from .packing import pair_table
from .tensor import QuantizedTensor

__all__ = ["planes_matmul", "fast_rows"]

#: Largest batch for which scales multiply the per-group products (see module docstring).
SMALL_BATCH = 16
#: Upper bound of one decoded tile for batches up to ``SMALL_BATCH`` (float32 bytes), see :func:`_small_batch`.
SMALL_TILE_BYTES = 4 << 20
#: Batches up to this many rows decode integer codes in tiles of at most ``GEMV_TILE_BYTES`` (half a
#: core's L2), which the products then read from the cache; larger batches, and NF4's slower lookups,
#: gain more from larger tiles (``python tools/bench_tiles.py`` measures each bound).
GEMV_BATCH, GEMV_TILE_BYTES = 2, 1 << 20
#: Upper bound of one decoded tile for larger batches (float32 bytes), see :func:`_large_batch`.
BIG_TILE_BYTES = 32 << 20
#: Float32 bytes decoded at once within such a tile (half a core's L2 cache).
DECODE_BYTES = 1 << 20


def _decode(tile: np.ndarray, h: int | slice, qt: QuantizedTensor, z: np.ndarray | None,
            ub: np.ndarray, f: np.ndarray, s: np.ndarray | None = None, sixteenth: bool = False,
            pairs: np.ndarray | None = None) -> None:
    """Write the float32 codes of nibble plane ``h`` (0: low, 1: high) of the
    byte ``tile`` ``(rows, cols)`` into ``f`` ``(rows, cols)``, through the
    contiguous byte buffer ``ub``; ``z`` (``(groups, 1, cols)`` int8) is
    subtracted exactly, in int8, before the conversion. With ``s``
    (``(groups, 1, cols)`` float32) ``f`` is then multiplied by it in place:
    ``f = (q - z) * s``.

    With ``pairs`` (codebooks only, ``packing.pair_table``; ``h``, ``z`` and
    ``ub`` unused): both nibbles at once, in column order, into ``f``
    ``(rows, 2 cols)``, one lookup per byte of the float32 pair
    ``(codebook[lo], codebook[hi])``; ``s`` is then ``(groups, 1, 2 cols)``.

    ``sixteenth`` (int4 only) writes ``16 q`` instead of ``q``, one byte
    operation and no sign extension: ``b * 16`` mod 256 (low nibble) or
    ``b & 0xF0`` (high nibble) read as int8 is ``16 q``. The caller passes
    ``s / 16``, exact (:func:`_sixteenths`), so ``16 q * (s / 16)`` is the real
    number ``q * s`` rounded once: bit-identical to :func:`dequantize`.
    """
    if pairs is not None:
        np.take(pairs, tile, out=f.view(np.uint64), mode="wrap")  # bytes 0..255 index 256 pairs
    else:
        _plane_codes(tile, h, qt, z, ub, sixteenth)
        np.copyto(f, ub.view(np.int8) if (qt.signed or z is not None) else ub)  # int8/uint8 -> float32: exact
    if s is not None:
        f3 = split_view(f, (s.shape[0], f.shape[0] // s.shape[0], f.shape[1]))  # (groups, group, cols)
        apply_rows(np.multiply, f3, s)  # f3 *= s, one rounding: float16 scales are widened exactly


def _plane_codes(tile: np.ndarray, h: int | slice, qt: QuantizedTensor, z: np.ndarray | None,
                 ub: np.ndarray, sixteenth: bool) -> None:
    """The integer codes of plane ``h`` of ``tile`` into ``ub`` (see :func:`_decode`):
    int8 ``q``, ``16 q`` or ``q - z``, or uint8 ``q``."""
    ib = ub.view(np.int8)
    if qt.signed and sixteenth:
        if h == 0:
            np.multiply(tile, np.uint8(16), out=ub)  # low nibble to the top, mod 256
        else:
            np.bitwise_and(tile, np.uint8(0xF0), out=ub)
    elif qt.signed:  # sign-extend the nibble through an int8 arithmetic shift
        if h == 0:
            np.multiply(tile, np.uint8(16), out=ub)  # low nibble to the top, mod 256
            np.right_shift(ib, np.int8(4), out=ib)
        else:
            np.right_shift(tile.view(np.int8), np.int8(4), out=ib)
    elif h == 0:
        np.bitwise_and(tile, np.uint8(15), out=ub)
    else:
        np.right_shift(tile, np.uint8(4), out=ub)
    if z is not None:  # q - z in -15..15
        ib3 = ib.reshape(z.shape[0], -1, ib.shape[1])  # (groups, group, cols)
        apply_rows(np.subtract, ib3, z)  # ib3 -= z


def _sixteenths(qt: QuantizedTensor, planes_s: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """``(planes_s / 16, True)`` when int4 codes can be decoded as ``16 q``
    (:func:`_decode`): signed, no codebook, and every ``s / 16`` exact (not
    rounded into the subnormals, below ``2**-122``); else ``(planes_s, False)``."""
    if not qt.signed or qt.codebook is not None:
        return planes_s, False
    scaled = [p * np.float32(0.0625) for p in planes_s]
    if all(np.array_equal(q * np.float32(16), p, equal_nan=True) for p, q in zip(planes_s, scaled, strict=True)):
        return scaled, True
    return planes_s, False


#: A view of the output's columns ``(M, N/2, 2)``: ``h`` (0: even columns,
#: 1: odd, ``slice(None)``: both), its scales and its int8 zero points
#: (columns as in the decoded tile: ``N/2``, or ``N`` for both).
_View = tuple[int | slice, np.ndarray, np.ndarray | None]


def planes_matmul(x2: np.ndarray, qt: QuantizedTensor, k: int) -> np.ndarray:
    """``x2[:, :k] @ dequantize(qt)[:k]`` for 4-bit codes grouped along axis 0,
    ``k`` a multiple of the group size, ``N`` even. Returns ``(M, N)`` float32.

    Codes without a codebook are decoded plane by plane (even and odd
    columns apart); codebook codes (NF4) both at once through
    ``packing.pair_table``, in column order, one lookup per byte."""
    group = qt.block_size
    m, n = x2.shape[0], qt.shape[1]
    j = n // 2
    g = k // group
    packed = qt.data[: k * j].reshape(k, j)  # (K, N/2): low nibble = even column
    pairs = None if qt.codebook is None else pair_table(qt.codebook)
    sixteenth = False
    views: list[_View]
    if pairs is not None:
        views = [(slice(None), np.ascontiguousarray(qt.scale[:g], dtype=np.float32), None)]  # (G, N)
    else:
        planes_s, sixteenth = _sixteenths(qt, [np.ascontiguousarray(qt.scale[:g, h::2], dtype=np.float32)
                                               for h in (0, 1)])  # 2 x (G, N/2)
        planes_z: list[np.ndarray | None] = [None, None]
        if qt.zero_point is not None:
            planes_z = [np.ascontiguousarray(qt.zero_point[:g, h::2]).view(np.int8) for h in (0, 1)]
        views = [(h, planes_s[h], planes_z[h]) for h in (0, 1)]
    if m <= SMALL_BATCH and group >= 4 * m:
        out = np.zeros((m, j, 2), np.float32)  # (M, N/2, 2) == (M, N): [..., h] is plane h
        _small_batch(x2, packed, views, qt, sixteenth, pairs, out)
    else:
        out = np.empty((m, j, 2), np.float32)  # every element written once
        _large_batch(x2, packed, views, qt, sixteenth, pairs, out)
    return out.reshape(m, n)


def _small_batch(x2: np.ndarray, packed: np.ndarray, views: list[_View], qt: QuantizedTensor,
                 sixteenth: bool, pairs: np.ndarray | None, out: np.ndarray) -> None:
    """Row tiles of whole groups over the full width (at most 1/16 of the
    float32 weight, and ``SMALL_TILE_BYTES``; ``GEMV_TILE_BYTES`` for integer
    codes at batches up to ``GEMV_BATCH``); per view, ``out[:, :, h] += sum_g s_g *
    (x_g @ c_g)``: one small product per group and ``M * N * K / group``
    scalings, instead of scaling all ``K * N`` codes."""
    k, j = packed.shape
    m, group = x2.shape[0], qt.block_size
    wd = 1 if pairs is None else 2  # decoded floats per byte column
    xg = np.ascontiguousarray(x2[:, :k].reshape(m, k // group, group).transpose(1, 0, 2))  # (G, M, group)
    tile_bytes = GEMV_TILE_BYTES if m <= GEMV_BATCH and pairs is None else SMALL_TILE_BYTES
    budget = min(tile_bytes, max(k * j // 2, 16 * group)) // 4 // wd  # bytes' columns: <= 1/16 of the weight
    if group * j <= budget:
        kc, jc = min(k, max(1, budget // (group * j)) * group), j
    else:
        kc, jc = group, max(1, budget // group)
    ub_buf, f_buf = np.empty(kc * jc, np.uint8), np.empty(kc * jc * wd, np.float32)
    acc = np.empty((m, jc * wd), np.float32)
    for k0 in range(0, k, kc):
        k1 = min(k0 + kc, k)
        g0, g1 = k0 // group, k1 // group
        for j0 in range(0, j, jc):
            j1 = min(j0 + jc, j)
            tile = packed[k0:k1, j0:j1]  # (rows, cols) bytes
            ub = ub_buf[: tile.size].reshape(tile.shape)
            f = f_buf[: tile.size * wd].reshape(k1 - k0, (j1 - j0) * wd)
            f3 = f.reshape(g1 - g0, group, f.shape[1])  # (groups, group, cols)
            for h, s, z in views:
                _decode(tile, h, qt, None if z is None else z[g0:g1, None, j0:j1], ub, f,
                        sixteenth=sixteenth, pairs=pairs)
                prod = np.matmul(xg[g0:g1], f3)  # (groups, M, cols)
                prod *= s[g0:g1, None, j0 * wd : j1 * wd]  # 16 P * (s / 16) == P * s exactly
                a = acc[:, : f.shape[1]]
                np.sum(prod, axis=0, out=a)
                out[:, j0:j1, h] += a.reshape(out[:, j0:j1, h].shape)


def _chunk_rows(group: int, n: int) -> int:
    """Rows decoded at once in :func:`_large_batch`: whole groups whose float32
    codes fit in ``DECODE_BYTES``, else the largest divisor of one group that
    does (so that no chunk straddles two groups)."""
    budget = max(1, DECODE_BYTES // (4 * n))
    if budget >= group:
        return budget // group * group
    return max(d for d in range(1, budget + 1) if group % d == 0)


def _workspace(*parts: tuple[int, type]) -> list[np.ndarray]:
    """Flat buffers ``(count, dtype)`` carved from one allocation, each
    starting on a 64-byte (cache line) boundary.

    One block instead of four: the C allocator then hands the same memory back
    on the next call instead of mapping fresh pages (4096x4096 at batch 256:
    0-100 page faults per call instead of about 3,500; ``tools/bench_interference.py``
    counts them).
    """
    sizes = [-(-count * np.dtype(dt).itemsize // 64) * 64 for count, dt in parts]
    raw = np.empty(sum(sizes) + 64, np.uint8)
    at = -raw.ctypes.data % 64
    views: list[np.ndarray] = []
    for (count, dt), size in zip(parts, sizes, strict=True):
        views.append(raw[at : at + count * np.dtype(dt).itemsize].view(dt))
        at += size
    return views


def _large_batch(x2: np.ndarray, packed: np.ndarray, views: list[_View], qt: QuantizedTensor,
                 sixteenth: bool, pairs: np.ndarray | None, out: np.ndarray) -> None:
    """Batches above ``SMALL_BATCH``: per nibble plane ``h``, ``out[:, :, h] =
    x @ w[:, h::2]``, with ``w[:, h::2]`` decoded and scaled (bit-identical to
    :func:`dequantize`) in tiles of equally many whole groups of rows (with the
    planes' scales and zero points at most 5/32 of the float32 weight, and at
    most ``BIG_TILE_BYTES``; narrower than ``N/2`` only when one group of rows
    does not fit), in cache-sized chunks of ``DECODE_BYTES``, last chunk first:
    the product reads the tile from its first row, which is then still in the
    cache.
    Each tile is one multithreaded BLAS product into a contiguous ``(M, cols)``
    buffer, copied (first tile) or added (the others, over K) into its plane
    of the output, so the planes' columns are interleaved in the output only.
    Decoding one plane costs one or two byte operations per chunk (``16 q``
    for int4, see :func:`_decode`), the int8 -> float32 conversion and the
    scaling. With ``pairs`` (NF4) the one view is both planes in column
    order, and at full width the output itself accumulates over K.
    """
    k, j = packed.shape
    m, group = x2.shape[0], qt.block_size
    wd = 1 if pairs is None else 2  # decoded floats per byte column
    side = sum(s.nbytes + (0 if z is None else z.nbytes) for _, s, z in views)
    if pairs is not None:  # np.take widens a chunk's byte indices to intp: 8 bytes each
        side += DECODE_BYTES // 2
    budget = max(1, min(BIG_TILE_BYTES, k * j * 5 // 4) - side) // 4 // wd  # tile + scales <= 5/32 of the weight
    if j * group <= budget:  # full-width rows, K split into tiles of equally many whole groups
        groups = k // group
        tiles = -(-groups // (budget // (j * group)))
        jc, kc = j, -(-groups // tiles) * group
    else:  # one group of rows is too wide: narrower tiles of one group
        jc, kc = max(1, budget // group), group
    cr = min(_chunk_rows(group, jc * wd * wd), kc)  # rows decoded at once (pairs: 8 index bytes per 2 floats)
    direct = pairs is not None and jc == j  # both planes, full width: the output itself accumulates
    f_buf, acc_buf, prod_buf, ub_buf = _workspace(
        (kc * jc * wd, np.float32), (0 if direct else m * jc * wd, np.float32),
        (m * jc * wd if kc < k else 0, np.float32),  # prod: only when accumulating over K
        (cr * jc, np.uint8))
    for j0 in range(0, j, jc):
        j1 = min(j0 + jc, j)
        w = (j1 - j0) * wd  # decoded columns
        for h, s, z in views:
            dest = out[:, j0:j1, h]  # (M, cols) for a plane, (M, cols, 2) for both
            acc = out.reshape(m, w) if direct else acc_buf[: m * w].reshape(m, w)  # out: contiguous
            prod = prod_buf[: m * w].reshape(m, w) if kc < k else acc
            for k0 in range(0, k, kc):
                k1 = min(k0 + kc, k)
                f = f_buf[: (k1 - k0) * w].reshape(k1 - k0, w)  # (rows, w)
                for c0 in range(k0, k1, cr)[::-1]:  # last chunk first: see the docstring
                    c1 = min(c0 + cr, k1)
                    g0, g1 = c0 // group, max(c0 // group + 1, c1 // group)  # the chunk's groups
                    _decode(packed[c0:c1, j0:j1], h, qt, None if z is None else z[g0:g1, None, j0:j1],
                            ub_buf[: (c1 - c0) * (j1 - j0)].reshape(c1 - c0, j1 - j0), f[c0 - k0 : c1 - k0],
                            s[g0:g1, None, j0 * wd : j1 * wd], sixteenth, pairs)
                if k0 == 0:
                    np.matmul(x2[:, k0:k1], f, out=acc)
                else:
                    np.matmul(x2[:, k0:k1], f, out=prod)
                    if k1 < k or direct:
                        np.add(acc, prod, out=acc)
                    else:  # the last sum goes straight into the output (every other column for a plane)
                        np.add(acc.reshape(dest.shape), prod.reshape(dest.shape), out=dest)
            if kc >= k and not direct:
                dest[...] = acc.reshape(dest.shape)


def fast_rows(qt: QuantizedTensor) -> int:
    """Leading rows of ``qt`` that :func:`planes_matmul` handles (0: none)."""
    k, n = qt.shape
    if qt.bits != 4 or qt.axis != 0 or n % 2 or n == 0:
        return 0
    return (k // qt.block_size) * qt.block_size
