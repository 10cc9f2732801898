"""NormalFloat-4 (NF4): a 16-entry codebook at the normal quantiles (spec section 10).

NF4 (QLoRA, Dettmers et al. 2023, https://arxiv.org/abs/2305.14314) spaces its
16 levels at quantiles of the standard normal distribution, normalized to
``[-1, 1]`` with an exact zero, so it loses less than evenly spaced int4 on
roughly normal weights. Per block ``b`` of ``block_size`` elements along
``axis``::

    a = max|w_b|                                  (float32 "absmax", the block scale)
    p = 2**24 where a < 2**-126 (subnormal), else 1          (exact scaling)
    r = 1 / (a * p)   (float32; r = 0 where a == 0)
    x = (w * p) * r   (float32; w * p and a * p are exact)
    q = #{ i : NF4_MIDPOINTS[i] < x }             (15 comparisons, counted)
    w' = NF4_CODEBOOK[q] * a                      (float32)

``x`` is ``w`` times the float32 reciprocal, as bitsandbytes' kernels compute
it (not ``w / a``, which can differ by one ulp). For a normal ``a``, ``p = 1``
and this is bitsandbytes' ``w * (1 / a)``; for a subnormal ``a`` the block is
first scaled by ``2**24`` into the normal range, which leaves ``x`` unchanged
wherever ``1 / a`` is finite and keeps it finite where ``1 / a`` overflows
(``a <= 2**-128``): an exact zero stays code 7 and the absmax element code 0
or 15, so NF4 codes do not change when a block is scaled by a power of two.
``q`` is the index of the codebook entry nearest to ``x``; a value exactly on
a midpoint goes to the *lower* code, as bitsandbytes' ``dQuantizeNF4`` does
(its decision tree tests ``x > midpoint``). The codes are unsigned 4-bit
indices ``0..15``, packed like uint4 (spec 5); code 7 is the exact zero.

    >>> qt = quantize_nf4(np.array([[-2.0], [0.5], [2.0], [0.0]], dtype=np.float32), block_size=4)
    >>> qt.codes().ravel().tolist(), qt.scale.ravel().tolist()
    ([0, 10, 15, 7], [2.0])
    >>> from monoquant_np.dequantize import dequantize
    >>> dequantize(qt).ravel().tolist()
    [-2.0, 0.4922246038913727, 2.0, 0.0]

(``a = 2``, ``r = 0.5``, ``x = [-1, 0.25, 1, 0]``; ``0.25`` lies between the
midpoints ``0.2035`` and ``0.2920``, so it takes code 10, ``0.24611230``, and
dequantizes to ``2 * 0.24611230 = 0.49222460``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .double_quant import quantize_scales
from .errors import check_axis, check_bool, check_float_array, check_positive_int, check_scale_dtype
from .groups import expand_groups, index_along
from .numerics import store_scale
from .packing import pack_grouped, pack_int4
from .scales import group_absmax
from .tensor import QuantizedTensor

__all__ = ["NF4_CODEBOOK", "NF4_MIDPOINTS", "quantize_nf4", "nf4_codes", "nf4_block_codes", "nf4_packed_codes"]


def _table(values: list[float]) -> np.ndarray:
    a = np.array(values, dtype=np.float32)
    a.flags.writeable = False
    return a


#: The 16 NF4 values, index = code. Provenance: bitsandbytes
#: ``bitsandbytes/functional.py`` ``get_4bit_type("nf4")`` and the lookup table
#: of ``csrc/kernels.cu`` ``dDequantizeNF4`` (QLoRA, appendix E). Every value
#: is exactly representable in float32 (the literals are float32 values printed
#: with 16 digits), so this table is bit-exact with bitsandbytes.
NF4_CODEBOOK = _table([
    -1.0,                   # 0
    -0.6961928009986877,    # 1
    -0.5250730514526367,    # 2
    -0.39491748809814453,   # 3
    -0.28444138169288635,   # 4
    -0.18477343022823334,   # 5
    -0.09105003625154495,   # 6
    0.0,                    # 7
    0.07958029955625534,    # 8
    0.16093020141124725,    # 9
    0.24611230194568634,    # 10
    0.33791524171829224,    # 11
    0.44070982933044434,    # 12
    0.5626170039176941,     # 13
    0.7229568362236023,     # 14
    1.0,                    # 15
])

#: The 15 decision thresholds between consecutive codes, float32. Provenance:
#: the literals of bitsandbytes ``csrc/kernels.cu`` ``dQuantizeNF4`` (its
#: binary decision tree, flattened in ascending order). Each equals
#: ``float32((NF4_CODEBOOK[i] + NF4_CODEBOOK[i + 1]) / 2)`` computed in float64
#: (checked by the tests), i.e. the midpoints.
NF4_MIDPOINTS = _table([
    -0.8480964004993439,    # 0 | 1
    -0.6106329262256622,    # 1 | 2
    -0.4599952697753906,    # 2 | 3
    -0.33967943489551544,   # 3 | 4
    -0.23460740596055984,   # 4 | 5
    -0.13791173323988914,   # 5 | 6
    -0.045525018125772476,  # 6 | 7
    0.03979014977812767,    # 7 | 8
    0.1202552504837513,     # 8 | 9
    0.2035212516784668,     # 9 | 10
    0.2920137718319893,     # 10 | 11
    0.3893125355243683,     # 11 | 12
    0.5016634166240692,     # 12 | 13
    0.6427869200706482,     # 13 | 14
    0.8614784181118011,     # 14 | 15
])


#: float32's smallest normal, 2**-126: an absmax below it is subnormal.
_NORMAL_MIN = np.float32(2.0**-126)
#: The exact factor that lifts a subnormal block into the normal range (2**-149 * 2**24 = 2**-125).
_SUBNORMAL_LIFT = np.float32(2.0**24)


def nf4_codes(x: np.ndarray) -> np.ndarray:
    """The NF4 code of normalized float32 values: nearest entry, ties to the lower code.

    ``q = #{i : NF4_MIDPOINTS[i] < x}``, compared in float32 and counted
    literally, one comparison per midpoint; values beyond ``[-1, 1]`` take
    code 0 or 15, and NaN (no comparison true) code 0, as in bitsandbytes'
    decision tree. Shape preserved, uint8 result.

    >>> nf4_codes(np.array([-1.0, 0.0, 0.03979015, 0.0397902, 1.5], dtype=np.float32)).tolist()
    [0, 7, 7, 8, 15]

    # Note: ``np.searchsorted(NF4_MIDPOINTS, x, side="left")`` gives the same
    # codes for every non-NaN ``x`` (it sorts NaN last: code 15) but takes
    # some 15x as long here: a binary search per element, and an int64 result.
    """
    x32 = np.asarray(x, dtype=np.float32)
    q = np.zeros(x32.shape, np.uint8)
    above = np.empty(x32.shape, np.bool_)
    for m in NF4_MIDPOINTS:
        np.greater(x32, m, out=above)
        np.add(q, above.view(np.uint8), out=q)  # True is byte 1
    return q


#: Elements coded at once by :func:`nf4_block_codes` (whole blocks; their float32,
#: bool and uint8 temporaries take 6 bytes each, 1.5 MB in all: they stay in L2).
SLAB_ELEMENTS = 1 << 18


def nf4_block_codes(w: np.ndarray, absmax: np.ndarray, *, axis: int, block_size: int) -> np.ndarray:
    """NF4 codes of float32 ``w`` for given block scales (the NF4 rounding step).

    Shapes: ``w`` ``S``; ``absmax`` float32/float16 ``group_shape(S, axis,
    block_size)``, non-negative. Returns uint8 codes of shape ``S``:
    ``nf4_codes((w * p) * r)`` with ``p = 2**24`` where ``absmax`` is a
    float32 subnormal (``0 < absmax < 2**-126``, else ``p = 1``),
    ``r = float32(1 / (absmax * p))``, ``r = 0`` where ``absmax == 0`` (so an
    all-zero block gets code 7, the exact zero). ``w * p`` and ``absmax * p``
    are exact, so a subnormal block gets the codes of the same block scaled
    into the normal range: ``x`` never overflows, an exact zero keeps code 7.
    Computed in slabs of whole blocks along ``axis`` (about ``SLAB_ELEMENTS``
    elements each), so the temporaries stay a few MB whatever the size of ``w``.

    # Note: bitsandbytes' CUDA kernel computes ``1 / 0 = inf`` and
    # ``0 * inf = NaN`` for an all-zero block, which its decision tree sends
    # to code 0 (``-1.0 * 0`` still dequantizes to zero), and likewise
    # ``1 / a = inf`` for ``a <= 2**-128`` (an exact zero then dequantizes to
    # ``-a``); its CPU path clamps ``a`` to ``1e-38`` before the reciprocal.
    # The spec stores code 7 for zeros in both cases.
    """
    a = np.asarray(absmax, dtype=np.float32)
    p = np.where((a > 0) & (a < _NORMAL_MIN), _SUBNORMAL_LIFT, np.float32(1)).astype(np.float32)  # exact lift
    r = np.zeros_like(a)
    np.divide(np.float32(1), a * p, out=r, where=a != 0)
    lift = bool((p != 1).any())
    out = np.empty(w.shape, np.uint8)
    length = w.shape[axis]
    across = w.size // length if length else 0  # elements per position along axis
    step = max(1, SLAB_ELEMENTS // max(1, across * block_size)) * block_size  # positions per slab: whole blocks
    for p0 in range(0, length, step):
        p1 = min(p0 + step, length)
        sl = index_along(w.ndim, axis, slice(p0, p1))
        gsl = index_along(r.ndim, axis, slice(p0 // block_size, -(-p1 // block_size)))
        ws = w[sl] if not lift else np.multiply(w[sl], expand_groups(p[gsl], axis, block_size, p1 - p0))
        out[sl] = nf4_codes(np.multiply(ws, expand_groups(r[gsl], axis, block_size, p1 - p0), dtype=np.float32))
    return out


def nf4_packed_codes(w: np.ndarray, absmax: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """``pack_int4(nf4_block_codes(w, absmax, ...))``: uint8 ``(ceil(w.size / 2),)``.

    Along axis 0 or the last axis of a 2-D or larger ``w`` it is made slab by
    slab (``packing.pack_grouped``), with no full-size code array.
    """
    def codes_of(ws: np.ndarray, a: list, ax: int) -> np.ndarray:
        return nf4_block_codes(ws, a[0], axis=ax, block_size=block_size)

    data = pack_grouped(codes_of, w, [absmax], axis, block_size, SLAB_ELEMENTS)
    return pack_int4(nf4_block_codes(w, absmax, axis=axis, block_size=block_size)) if data is None else data


def quantize_nf4(
    w: np.ndarray,
    *,
    block_size: int = 64,
    axis: int = 0,
    double_quant: bool = False,
    dq_block_size: int = 256,
    scale_dtype: Any = np.float32,
) -> QuantizedTensor:
    """Quantize ``w`` to NF4 with one absmax per block (spec 10).

    Args:
        w: float16/float32/float64 array, at least 1-D, finite; converted to
            float32 first.
        block_size: elements per block along ``axis`` (any positive int; the
            last block may be partial). bitsandbytes uses 64.
        axis: the axis blocks run along (0: the K axis of a ``(K, N)`` MatMul
            weight).
        double_quant: store the absmax values in 8 bits (spec 11, see
            :func:`monoquant_np.requantize.double_quantize`); the codes are
            then computed from the rebuilt absmax.
        dq_block_size: absmax values per second-level block (256 as in
            bitsandbytes).
        scale_dtype: float32 (bitsandbytes' absmax, the default) or float16:
            the absmax is stored rounded to nearest even, as a linear scale is
            (spec 3.4: overflow raises, a zero stored absmax makes the block
            code 7), and the codes are computed from the stored value.

    Returns:
        A :class:`QuantizedTensor` with ``codebook=NF4_CODEBOOK``,
        ``signed=False``, ``bits=4``, ``zero_point=None`` and ``scale`` = the
        absmax of shape ``group_shape(w.shape, axis, block_size)`` in
        ``scale_dtype`` (float32 rebuilt values with double quantization).

    # Note: bitsandbytes blocks the *flattened* tensor (consecutive elements in
    # C order); here blocks run along ``axis`` like every other scheme of the
    # spec, which is bitsandbytes' layout for a ``(N, K)`` weight blocked along
    # K when ``K % block_size == 0``. There is no int8 fallback for short axes:
    # a single partial block is used.

    Raises (spec 15, arguments checked in signature order):
        TypeError: ``w`` not a float array-like; ``block_size``, ``axis`` or
            ``dq_block_size`` not an int; ``double_quant`` not a bool;
            ``scale_dtype`` not a dtype.
        ValueError: ``w`` 0-d, empty or beyond float32; a size < 1;
            ``axis`` out of range; ``scale_dtype`` not float32/float16; then
            non-finite ``w``, float16 absmax overflow.
    """
    w32 = check_float_array(w, "w", nonempty=True)
    block_size = check_positive_int(block_size, "block_size")
    axis = check_axis(axis, w32.ndim)
    double_quant = check_bool(double_quant, "double_quant")
    dq_block_size = check_positive_int(dq_block_size, "dq_block_size")
    sdt = check_scale_dtype(scale_dtype)
    absmax = store_scale(group_absmax(w32, axis=axis, group_size=block_size), sdt)  # raises on NaN/inf
    # with double quantization the codes come from the rebuilt absmax (spec 11.2), packed once:
    # the same tensor as double_quantize(quantize_nf4(w), w=w), without packing twice
    dq = quantize_scales(absmax, block_size=dq_block_size) if double_quant else None
    scale = absmax if dq is None else dq.rebuild()
    return QuantizedTensor(
        data=nf4_packed_codes(w32, scale, axis, block_size),
        shape=w32.shape,
        axis=axis,
        block_size=block_size,
        scale=scale,
        zero_point=None,
        signed=False,
        bits=4,
        codebook=NF4_CODEBOOK,
        double_quant=dq,
    )
