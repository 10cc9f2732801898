"""AutoAWQ's ``WQLinear_GEMM`` 4-bit layout (spec section 12.5).

A layer with ``in_features = K``, ``out_features = N`` and groups of
``group_size`` rows stores (AutoAWQ ``awq/modules/linear/gemm.py``):

* ``qweight``: int32 ``(K, N / 8)``: packed along **N**; nibble ``i`` (bits
  ``4i..4i+3``) of ``qweight[k, c]`` is the code of column ``8c + AWQ_ORDER[i]``
  with ``AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)``;
* ``qzeros``: int32 ``(K / group_size, N / 8)``, zero points packed the same
  way, stored as they are;
* ``scales``: float16 ``(K / group_size, N)``;
* ``W[k, n] = (q[k, n] - z[k // group_size, n]) * scales[k // group_size, n]``.

Canonical form: uint4 codes with zero points, grouped along axis 0 (K).
AWQ has no act-order, so ``perm`` is never set; its per-channel input scaling
is already folded into the previous layer by AutoAWQ and is not part of the
layer's storage.

# Note: AutoAWQ requires ``K % group_size == 0``; the canonical form also
# allows a partial last group, which :func:`awq_encode` therefore rejects.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_scales
from ..packing import pack_int4
from ..tensor import QuantizedTensor, check_qt, zero_points_of
from .words import pack_words, unpack_words

__all__ = ["awq_decode", "awq_encode", "AWQ_ORDER"]

#: Column of nibble ``i`` within its 8-column word (AutoAWQ ``pack``'s ``order_map``).
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
#: Nibble holding column ``j``: the inverse permutation (AutoAWQ's ``AWQ_REVERSE_ORDER``).
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


def _unpack_n(words: np.ndarray, name: str) -> np.ndarray:
    """int32 ``(R, N/8)`` -> uint8 ``(R, N)`` codes in natural column order."""
    nib = unpack_words(words, name)  # (R, N/8, 8), nibble order
    if nib.ndim != 3:
        raise ValueError(f"{name} must be 2-D (rows, N / 8), got shape {words.shape}")
    return nib[:, :, list(AWQ_REVERSE_ORDER)].reshape(nib.shape[0], -1)  # (R, N)


def _pack_n(codes: np.ndarray) -> np.ndarray:
    """uint ``(R, N)`` codes -> int32 ``(R, N/8)`` words."""
    r, n = codes.shape
    return pack_words(codes.reshape(r, n // 8, 8)[:, :, list(AWQ_ORDER)])  # (R, N/8)


def awq_decode(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray) -> QuantizedTensor:
    """The uint4 :class:`QuantizedTensor` ``(K, N)`` of a ``WQLinear_GEMM`` layer.

    ``group_size = K / G`` with ``G = scales.shape[0]`` (must divide K).

    >>> from monoquant_np.formats.words import pack_words
    >>> w = pack_words(np.array([[[0, 2, 4, 6, 1, 3, 5, 7]]]))  # nibbles in AWQ order
    >>> qt = awq_decode(w, w, np.ones((1, 8), dtype=np.float16))
    >>> qt.codes().tolist()
    [[0, 1, 2, 3, 4, 5, 6, 7]]
    """
    codes = _unpack_n(qweight, "qweight")  # (K, N)
    k, n = codes.shape
    zp = _unpack_n(qzeros, "qzeros")  # (G, N)
    g = zp.shape[0]
    if zp.shape[1] != n:
        raise ValueError(f"qzeros must have shape (G, {n // 8}) to match qweight, got {qzeros.shape}")
    check_scales(scales)
    if scales.shape != (g, n):
        raise ValueError(f"qzeros/scales must describe ({g}, {n}) groups, got {qzeros.shape} and {scales.shape}")
    if g == 0 or k % g:
        raise ValueError(f"K={k} must be a multiple of the number of groups, got {g}")
    return QuantizedTensor(
        data=pack_int4(codes), shape=(k, n), axis=0, block_size=k // g, scale=scales,
        zero_point=np.ascontiguousarray(zp), signed=False, bits=4,
    )


def awq_encode(qt: QuantizedTensor) -> dict[str, np.ndarray]:
    """``{"qweight", "qzeros", "scales"}`` of a 2-D ``(K, N)`` 4-bit ``qt`` grouped along axis 0.

    Needs ``N % 8 == 0``, ``K % block_size == 0`` and no ``perm``; int4 codes
    are stored as ``code + 8`` with zero point 8 (exact).
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0 or qt.bits != 4 or qt.codebook is not None:
        raise ValueError(f"qt must be a 2-D (K, N) int4/uint4 weight grouped along axis 0, got {qt!r}")
    k, n = qt.shape
    if n % 8 or k % qt.block_size:
        raise ValueError(
            f"AWQ needs N % 8 == 0 and K % group_size == 0, got shape {qt.shape}, group_size {qt.block_size}"
        )
    if qt.perm is not None:
        raise ValueError("AWQ has no act-order: qt.perm must be None")
    if qt.signed:
        codes = (qt.codes().astype(np.int16) + 8).astype(np.uint8)
        zp = np.full(qt.scale.shape, 8, dtype=np.uint8)
    else:
        codes, zp = qt.codes(), zero_points_of(qt)
    return {"qweight": _pack_n(codes), "qzeros": _pack_n(zp), "scales": qt.scale.copy()}
