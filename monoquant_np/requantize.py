"""Double-quantizing a tensor: the codes follow the rebuilt scales (spec section 11.2).

:func:`double_quantize` stores a quantized tensor's scales in 8 bits
(:func:`~monoquant_np.double_quant.quantize_scales`, spec 11.1) and recomputes
its codes with the rebuilt scales ``a'``: the rounding step of its scheme
(``quantize_codes`` for int4/uint4/int8, ``nf4_block_codes`` for NF4), so the
stored codes are the best ones for the scales that dequantization uses.

    >>> from monoquant_np.quantize import quantize
    >>> w = np.array([[1.0, -2.0], [3.0, 4.0]], dtype=np.float32)
    >>> dq = double_quantize(quantize(w, group_size=2, int8_fallback=False), w=w)
    >>> dq.double_quant is not None, dq.scale.dtype
    (True, dtype('float32'))
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .codes import packed_codes
from .dequantize import dequantize_slice
from .double_quant import quantize_scales
from .errors import check_finite, check_float_array, check_positive_int
from .nf4 import nf4_packed_codes
from .tensor import QuantizedTensor, check_qt

__all__ = ["double_quantize"]


def double_quantize(
    qt: QuantizedTensor, *, block_size: int = 256, w: np.ndarray | None = None
) -> QuantizedTensor:
    """Double-quantize ``qt``'s scales and recompute its codes from the rebuilt scales (spec 11).

    Args:
        qt: a :class:`QuantizedTensor` without double quantization: NF4
            (absmax scales), int4/uint4, or the int8 fallback. Scales must be
            ``>= 0`` (as every quantizer of the spec makes them).
        block_size: scales per second-level block (256 as in bitsandbytes).
        w: the float weight ``qt`` was quantized from (``qt.shape``, in its
            original order: ``qt.perm`` is applied here). The codes are
            recomputed from it with the rebuilt scales. When ``None``, the
            codes are recomputed from ``qt``'s own reconstruction (the weight
            it stores, ``dequantize_slice``), which keeps almost every code.

    Returns:
        A new :class:`QuantizedTensor`: ``scale`` = the rebuilt float32
        scales ``a'``, ``double_quant`` = their 8-bit storage, codes
        ``quantize_codes(w, a', zero_point)`` (linear schemes; zero points are
        kept) or ``nf4_block_codes(w, a')`` (NF4). Everything else unchanged.

    Raises (spec 15, in this order):
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: ``qt`` is already double-quantized (a value of the right
            type: its scales are no longer plain).
        TypeError / ValueError: ``block_size`` not an int / < 1.
        TypeError / ValueError: ``w`` not a float array-like / 0-d, beyond
            float32, of another shape than ``qt``, non-finite.
        ValueError: negative scales (found last, from the data).
    """
    check_qt(qt)
    if qt.double_quant is not None:
        raise ValueError("qt is already double-quantized; double_quantize takes a tensor with plain scales")
    block_size = check_positive_int(block_size, "block_size")
    if w is not None:
        w32 = check_float_array(w, "w")
        if w32.shape != qt.shape:
            raise ValueError(f"w must have qt's shape {qt.shape}, got {w32.shape}")
        check_finite(w32, "w")
        if qt.perm is not None:
            w32 = np.take(w32, qt.perm, axis=qt.axis)  # stored order
    else:
        w32 = dequantize_slice(qt, 0, qt.shape[0]) if qt.size else np.zeros(qt.shape, np.float32)
    dq = quantize_scales(qt.scale, block_size=block_size)  # raises for negative scales
    rebuilt = dq.rebuild()
    # the packed bytes of nf4_block_codes(w, a') or quantize_codes(w, s', z), made slab by slab
    if qt.codebook is not None:
        data = nf4_packed_codes(w32, rebuilt, qt.axis, qt.block_size)
    else:
        data = packed_codes(w32, rebuilt, qt.zero_point, qt.axis, qt.block_size, qt.bits)
    return dataclasses.replace(qt, data=data, scale=rebuilt, double_quant=dq)
