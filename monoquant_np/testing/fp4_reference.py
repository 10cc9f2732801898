"""Textbook reference implementations of MXFP4 and NVFP4 (spec chapters 17-19).

Written the obvious way, in plain NumPy, from the spec's words rather than
its formulas' implementation: blocks by zero padding and a reshape, the
shared exponent by ``floor(log2(amax))`` in float64, E2M1 rounding as the
nearest of the eight magnitudes by distance (ties to the even mantissa, i.e.
the even index), E4M3 rounding as the nearest of its 127 finite magnitudes.
None of it calls the package's kernels (``e2m1_codes``' comparison counts,
``frexp`` exponents, slab-wise quantize + pack, pair-table decoding), so
``tests/core/test_fp4_formats.py`` pins the package to these functions bit
for bit and ``tools/bench_fp4.py`` times them as the "plain NumPy" peer.

    >>> codes, e = mxfp4(np.array([[7.0], [-1.25], [0.3], [0.0]], np.float32), axis=0, block_size=4)
    >>> codes.ravel().tolist(), e.ravel().tolist()
    ([7, 10, 1, 0], [127])
"""

from __future__ import annotations

import numpy as np

__all__ = ["E2M1_MAGNITUDES", "e2m1_round", "e4m3_round", "blocks", "mxfp4", "nvfp4", "dequantize"]

f32 = np.float32

#: The eight E2M1 magnitudes; index = the code's low three bits.
E2M1_MAGNITUDES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float64)
#: The 127 finite non-negative E4M3FN values; index = code.
E4M3_MAGNITUDES = np.array([m * 2.0**-9 for m in range(8)]
                           + [(8 + m % 8) * 2.0 ** (m // 8 - 10) for m in range(8, 127)], np.float64)


def _nearest(a: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of ascending ``table`` for each ``a`` (float64);
    on a tie the even index, which is the even mantissa for both E2M1 and E4M3."""
    d = np.abs(a[..., None] - table)  # (..., len(table)): exact in float64
    best = d.min(axis=-1, keepdims=True)
    tied = d == best
    first = tied.argmax(axis=-1)
    second = len(table) - 1 - tied[..., ::-1].argmax(axis=-1)
    return np.where(first % 2 == 0, first, second)


def e2m1_round(x: np.ndarray) -> np.ndarray:
    """E2M1 codes of finite float32 ``x``: nearest magnitude (saturating at 6), sign bit on top."""
    a = np.minimum(np.abs(x.astype(np.float64)), 6.0)
    return (_nearest(a, E2M1_MAGNITUDES) + 8 * np.signbit(x)).astype(np.uint8)


def e4m3_round(s: np.ndarray) -> np.ndarray:
    """E4M3FN codes of float32 ``s`` in ``[0, 448]``: the nearest finite magnitude."""
    return _nearest(s.astype(np.float64), E4M3_MAGNITUDES).astype(np.uint8)


def blocks(w: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """``w`` with ``axis`` moved last, zero padded to whole blocks: ``(..., n_blocks, block_size)``."""
    v = np.moveaxis(w.astype(f32), axis, -1)
    pad = -v.shape[-1] % block_size
    v = np.concatenate([v, np.zeros(v.shape[:-1] + (pad,), f32)], axis=-1)
    return v.reshape(v.shape[:-1] + (-1, block_size))


def _unblock(c: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    moved = list(np.moveaxis(np.empty(shape, np.uint8), axis, -1).shape)
    flat = c.reshape(c.shape[:-2] + (-1,))[..., : moved[-1]]
    return np.moveaxis(flat, -1, axis)


def mxfp4(w: np.ndarray, axis: int = 0, block_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, scale_codes)``: E2M1 codes of shape ``w.shape`` and E8M0 codes, one per
    block, with the block axis last ``(..., n_blocks)``."""
    b = blocks(w, axis, block_size)  # (..., n, bs)
    amax = np.abs(b).max(axis=-1).astype(np.float64)
    with np.errstate(divide="ignore"):
        e = np.where(amax > 0, np.floor(np.log2(amax)) - 2, -127)
    e = np.clip(e, -127, 127)
    x = b.astype(np.float64) / 2.0 ** e[..., None]
    return _unblock(e2m1_round(x), w.shape, axis), (e + 127).astype(np.uint8)


def nvfp4(w: np.ndarray, axis: int = 0, block_size: int = 16) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """``(codes, scale_codes, g)`` of NVFP4 as spec 19 states it (float32 steps, scale codes
    with the block axis last)."""
    b = blocks(w, axis, block_size)  # (..., n, bs)
    amax = np.abs(b).max(axis=-1)
    g = f32(f32(np.abs(w).max()) / f32(2688))
    d = f32(f32(6) * g)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(amax == 0, f32(1), (amax / d).astype(f32))
    s = np.where(s == 0, f32(1), s)
    c = e4m3_round(np.clip(s, f32(2.0**-9), f32(448)))
    S = (E4M3_MAGNITUDES[c].astype(f32) * g).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(S[..., None] == 0, f32(0), (b / S[..., None]).astype(f32))
    return _unblock(e2m1_round(x), w.shape, axis), c, g


def dequantize(codes: np.ndarray, block_scale: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """``E2M1[q] * S`` with float32 block scales ``S`` given block axis last."""
    vals = np.where(codes & 8, -1.0, 1.0) * E2M1_MAGNITUDES[codes & 7]
    moved = np.moveaxis(vals, axis, -1)
    per = np.repeat(block_scale, block_size, axis=-1)[..., : moved.shape[-1]]
    return np.moveaxis((moved.astype(f32) * per.astype(f32)).astype(f32), -1, axis)
