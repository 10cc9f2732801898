"""AutoGPTQ's 4-bit checkpoint layout, act-order included (spec section 12.4).

A ``QuantLinear`` with ``in_features = K``, ``out_features = N`` and ``G``
groups stores (AutoGPTQ ``qlinear_cuda_old.py``, ``checkpoint_format="gptq"``):

* ``qweight``: int32 ``(K / 8, N)``; nibble ``j`` (bits ``4j..4j+3``) of
  ``qweight[i, n]`` is the code of row ``8i + j``, column ``n`` (K packed).
* ``qzeros``: int32 ``(G, N / 8)``; nibble ``j`` of ``qzeros[g, c]`` is the zero
  point of group ``g``, column ``8c + j``, **minus one** (v1 format).
* ``scales``: float16 ``(G, N)``.
* ``g_idx``: int32 ``(K,)``, the group of each input row: ``i // group_size``
  without act-order; with act-order (``desc_act``) rows were quantized in a
  permuted order ``perm`` and ``g_idx[perm[j]] = j // group_size``.
* ``W[i, n] = (q[i, n] - z[g_idx[i], n]) * scales[g_idx[i], n]``; ``y = x @ W``.

Canonical form: uint4 codes with zero points, grouped along axis 0 (K).
Act-order becomes ``perm = argsort(g_idx)`` (stable): the stored rows are
``q[perm]``, whose groups are consecutive, and the
:class:`QuantizedTensor` contract ``x @ W == x[..., perm] @ W_stored`` holds.

# Note: v1 cannot store a zero point of 0: it writes ``0 - 1`` and AutoGPTQ's
# packer ORs the 32-bit ``0xFFFFFFFF`` into the word, corrupting the higher
# nibbles; its loader reads a stored 15 back as 16. :func:`gptq_encode` raises
# for a zero point of 0 in v1 and :func:`gptq_decode` for a stored 15; the
# ``"gptq_v2"`` format stores zero points as they are.
# Note: AutoGPTQ dequantizes in float16 (``scales * (q - z)`` rounded to
# float16); the spec's ``dequantize`` multiplies in float32, which is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import check_choice, check_int_array, check_positive_int, check_scales
from ..packing import pack_int4
from ..tensor import QuantizedTensor, check_qt, zero_points_of
from .words import pack_words, unpack_words

__all__ = ["gptq_decode", "gptq_encode", "GPTQ_FORMATS"]

#: ``checkpoint_format`` values: AutoGPTQ v1 (zero points minus one) and v2 (as they are).
GPTQ_FORMATS = ("gptq", "gptq_v2")


def _zero_offset(checkpoint_format: Any) -> int:
    check_choice(checkpoint_format, GPTQ_FORMATS, "checkpoint_format")
    return 1 if checkpoint_format == "gptq" else 0


def _check_scales(scales: Any, shape: tuple[int, int]) -> np.ndarray:
    check_scales(scales)
    if scales.shape != shape:
        raise ValueError(f"scales must have shape {shape}, got {scales.shape}")
    return scales


def _groups_from_g_idx(g_idx: Any, k: int, n_groups: int) -> tuple[int, np.ndarray | None]:
    """``(group_size, perm)`` of a ``g_idx``; ``perm`` is ``None`` when ``g_idx == arange(K) // group_size``.

    Raises ``ValueError`` unless every group but the last has the same number
    of rows and the last no more (the canonical form has equal consecutive groups).
    """
    g = check_int_array(g_idx, "g_idx")
    if g.shape != (k,):
        raise ValueError(f"g_idx must be an integer array of shape ({k},), got {g.dtype} {g.shape}")
    if k and (int(g.min()) < 0 or int(g.max()) >= n_groups):
        raise ValueError(f"g_idx values must lie in 0..{n_groups - 1}, got {int(g.min())}..{int(g.max())}")
    counts = np.bincount(g, minlength=n_groups)
    gs = int(counts[0]) if n_groups else 1
    if gs == 0 or (counts[:-1] != gs).any() or counts[-1] > gs or counts[-1] == 0:
        raise ValueError(
            "g_idx must assign the same number of rows to every group (the last may have fewer), "
            f"got counts {counts.tolist()}"
        )
    if np.array_equal(g, np.arange(k) // gs):
        return gs, None
    return gs, np.argsort(g, kind="stable")


def gptq_decode(
    qweight: np.ndarray,
    qzeros: np.ndarray,
    scales: np.ndarray,
    g_idx: np.ndarray | None = None,
    *,
    group_size: int | None = None,
    checkpoint_format: str = "gptq",
) -> QuantizedTensor:
    """The uint4 :class:`QuantizedTensor` ``(K, N)`` of an AutoGPTQ layer (layout in the module docstring).

    ``group_size`` is needed only without ``g_idx`` (then groups are
    ``i // group_size``). Raises ``ValueError`` for a v1 stored zero point of
    15 (read back as 16, not a 4-bit code) and for unequal groups.
    """
    q = unpack_words(qweight, "qweight")  # (K/8, N, 8): nibble j of word (i, n) is row 8i + j
    if q.ndim != 3:
        raise ValueError(f"qweight must be 2-D (K/8, N), got shape {qweight.shape}")
    k8, n, _ = q.shape
    k = 8 * k8
    codes = q.transpose(0, 2, 1).reshape(k, n)  # (K, N)
    zw = unpack_words(qzeros, "qzeros")  # (G, N/8, 8)
    if zw.ndim != 3 or zw.shape[1] * 8 != n:
        raise ValueError(f"qzeros must have shape (G, {n // 8}), got {qzeros.shape}")
    n_groups = zw.shape[0]
    scale = _check_scales(scales, (n_groups, n))
    if g_idx is not None:
        gi = check_int_array(g_idx, "g_idx")
        if gi.shape != (k,):
            raise ValueError(f"g_idx must be an integer array of shape ({k},), got {gi.dtype} {gi.shape}")
    if group_size is not None:
        group_size = check_positive_int(group_size, "group_size")
    elif g_idx is None:
        raise ValueError("group_size is required when g_idx is not given")
    off = _zero_offset(checkpoint_format)
    z = zw.reshape(n_groups, n).astype(np.int16) + off  # (G, N)
    if (z > 15).any():
        g, c = (int(v) for v in np.argwhere(z > 15)[0])
        raise ValueError(
            f"qzeros stores 15 for group {g}, column {c}: GPTQ v1 reads it as zero point 16, "
            "which a 4-bit code cannot reach; not representable"
        )
    if group_size is not None and g_idx is None:
        gs, perm = group_size, None
        if -(-k // gs) != n_groups:
            raise ValueError(f"group_size {gs} gives {-(-k // gs)} groups for K={k}, but scales have {n_groups}")
    else:
        gs, perm = _groups_from_g_idx(g_idx, k, n_groups)
    stored = codes if perm is None else codes[perm]  # (K, N), groups consecutive
    return QuantizedTensor(
        data=pack_int4(stored), shape=(k, n), axis=0, block_size=gs, scale=scale,
        zero_point=z.astype(np.uint8), signed=False, bits=4, perm=perm,
    )


def gptq_encode(qt: QuantizedTensor, *, checkpoint_format: str = "gptq") -> dict[str, np.ndarray]:
    """AutoGPTQ tensors ``{"qweight", "qzeros", "scales", "g_idx"}`` of a 2-D ``(K, N)`` 4-bit ``qt``.

    ``qt`` is grouped along axis 0 with ``K % 8 == 0`` and ``N % 8 == 0``;
    int4 codes are stored as ``code + 8`` with zero point 8 (exact). ``perm``
    becomes ``g_idx``. Raises ``ValueError`` for a zero point of 0 in v1.

    >>> from monoquant_np import quantize
    >>> t = gptq_encode(quantize(np.ones((8, 8), dtype=np.float32), group_size=8))
    >>> hex(int(t["qweight"].view(np.uint32)[0, 0])), hex(int(t["qzeros"][0, 0])), t["g_idx"].tolist()
    ('0xffffffff', '0x77777777', [0, 0, 0, 0, 0, 0, 0, 0])
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0 or qt.bits != 4 or qt.codebook is not None:
        raise ValueError(f"qt must be a 2-D (K, N) int4/uint4 weight grouped along axis 0, got {qt!r}")
    k, n = qt.shape[0], qt.shape[1]
    if k % 8 or n % 8:
        raise ValueError(f"GPTQ packs 8 codes per int32 along K and N: K and N must be multiples of 8, got {qt.shape}")
    off = _zero_offset(checkpoint_format)
    if qt.signed:
        stored = qt.codes().astype(np.int16) + 8
        zp = np.full(qt.scale.shape, 8, dtype=np.int16)
    else:
        stored = qt.codes().astype(np.int16)
        zp = zero_points_of(qt).astype(np.int16)
    if off and (zp == 0).any():
        g, c = (int(v) for v in np.argwhere(zp == 0)[0])
        raise ValueError(
            f"group {g}, column {c} has zero point 0, which GPTQ v1 (zero point minus one) cannot store; "
            "use checkpoint_format='gptq_v2'"
        )
    groups = np.arange(k) // qt.block_size
    if qt.perm is None:
        codes, g_idx = stored, groups
    else:
        inv = np.argsort(qt.perm)
        codes, g_idx = stored[inv], groups[inv]  # original row order
    qweight = pack_words(codes.reshape(k // 8, 8, n).transpose(0, 2, 1))  # (K/8, N)
    qzeros = pack_words((zp - off).reshape(qt.n_groups, n // 8, 8))  # (G, N/8)
    return {"qweight": qweight, "qzeros": qzeros, "scales": qt.scale.copy(), "g_idx": g_idx.astype(np.int32)}
