"""The dequantizing matmul (spec section 6.2).

``dequant_matmul(x, qt, bias) = x @ dequantize(qt) + bias`` for a 2-D weight
``(K, N)`` (ONNX ``MatMul`` input B), computed in float32 over tiles of the
weight so that the whole float weight never exists at once:

    y = sum over tiles t of  x[..., K_t] @ dequantize(qt)[K_t, N_t]   (+ bias)

Results equal ``x @ dequantize(qt) + bias`` within float32 rounding (the
summation order over ``K`` differs), which is what the spec promises.

    >>> from monoquant_np.quantize import quantize
    >>> qt = quantize(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32), group_size=2)
    >>> dequant_matmul(np.array([[1.0, 1.0]], dtype=np.float32), qt).tolist()
    [[1.0, 2.0]]

The common case (4-bit codes grouped along K, even N) runs the nibble-plane
kernels of :mod:`monoquant_np.planes` on the rows of whole groups. Every other
case (groups along N, 8-bit codes, odd N, the partial last group) dequantizes
row chunks with :func:`dequantize_slice` (:func:`chunk_rows` rows at a time)
and multiplies them. Temporary memory stays below 1/4 of the float32 weight in
all cases, plus buffers of the output's size (the accumulator over K).
"""

from __future__ import annotations

import numpy as np

from .dequantize import dequantize_slice
from .errors import check_float_array, check_matrix
from .planes import fast_rows, planes_matmul
from .tensor import QuantizedTensor, check_qt

__all__ = ["dequant_matmul", "chunk_rows"]

#: Upper bound of one dequantized chunk (float32), in bytes.
CHUNK_BYTES = 4 << 20


def chunk_rows(qt: QuantizedTensor) -> int:
    """Rows of the weight dequantized at once: at most 1/16 of the float32
    weight and at most ``CHUNK_BYTES``, rounded down to whole groups along K."""
    k, n = qt.shape
    budget = min(CHUNK_BYTES, max(k * n * 4 // 16, 4 * n))
    rows = max(1, budget // (4 * max(n, 1)))
    if qt.axis == 0 and rows >= qt.block_size:
        rows -= rows % qt.block_size
    return min(rows, max(k, 1))


def dequant_matmul(x: np.ndarray, qt: QuantizedTensor, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ dequantize(qt) + bias`` without materializing the float weight.

    Args:
        x: float array ``(..., K)`` (float16/32/64; computed in float32).
        qt: 2-D :class:`QuantizedTensor` of shape ``(K, N)``, grouped along
            axis 0 or 1 (any scheme: int4, uint4, int8 fallback, NF4).
        bias: optional float array ``(N,)``.

    Returns:
        float32 ``(..., N)``.
    """
    x32 = check_float_array(x, "x")
    check_qt(qt)
    check_matrix(qt.shape, "qt")
    k, n = qt.shape
    if x32.shape[-1] != k:
        raise ValueError(f"x must have last dimension K={k} to match qt {qt.shape}, got shape {x32.shape}")
    b32 = None
    if bias is not None:
        b32 = check_float_array(bias, "bias")
        if b32.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {b32.shape}")
    lead = x32.shape[:-1]
    x2 = x32.reshape(-1, k)  # (M, K)
    if qt.perm is not None and qt.axis == 0:
        x2 = x2[:, qt.perm]  # stored rows are w[perm]
    fast = fast_rows(qt) if x2.shape[0] else 0
    if fast:
        out = planes_matmul(x2, qt, fast)  # (M, N)
    else:
        out = np.zeros((x2.shape[0], n), dtype=np.float32)  # (M, N)
    step = chunk_rows(qt)
    for k0 in range(fast, k, step):
        k1 = min(k0 + step, k)
        wc = dequantize_slice(qt, k0, k1)  # (k1 - k0, N)
        out += x2[:, k0:k1] @ wc
    if qt.perm is not None and qt.axis == 1:
        out = out[:, np.argsort(qt.perm)]
    if b32 is not None:
        out += b32
    return out.reshape(lead + (n,))
