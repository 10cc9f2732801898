"""Other libraries' GPTQ and AWQ packing, transcribed loop for loop (spec 12.4, 12.5).

The peers' own packing and unpacking loops (AutoGPTQ ``qlinear_cuda_old.py``
``pack``/``forward``, AutoAWQ ``WQLinear_GEMM.from_linear`` and ``unpack_awq``)
in NumPy: the independent checks of :mod:`monoquant_np.formats.autogptq` and
:mod:`monoquant_np.formats.autoawq`, kept here so that a second implementation of
those dialects can be checked against the same loops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["autogptq_pack", "autogptq_weight", "AWQ_ORDER_MAP", "autoawq_pack", "autoawq_unpack", "random_layer"]

def autogptq_pack(intweight: np.ndarray, zeros: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AutoGPTQ ``pack`` for bits=4: ``intweight`` (K, N), ``zeros`` (G, N) -> qweight, qzeros."""
    intweight = intweight.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * 4, intweight.shape[1]), dtype=np.uint32)
    i, row = 0, 0
    while row < qweight.shape[0]:
        for j in range(i, i + 8):
            qweight[row] |= intweight[j] << (4 * (j - i))
        i += 8
        row += 1
    zeros = (zeros.astype(np.int64) - 1).astype(np.uint32)  # v1: zeros -= 1
    qzeros = np.zeros((zeros.shape[0], zeros.shape[1] // 32 * 4), dtype=np.uint32)
    i, col = 0, 0
    while col < qzeros.shape[1]:
        for j in range(i, i + 8):
            qzeros[:, col] |= zeros[:, j] << (4 * (j - i))
        i += 8
        col += 1
    return qweight.astype(np.int32), qzeros.astype(np.int32)


def autogptq_weight(qweight, qzeros, scales, g_idx) -> np.ndarray:
    """AutoGPTQ ``forward``'s dequantization, in float32 (it uses float16): (K, N)."""
    wf = np.arange(0, 32, 4, dtype=np.int32)[None, :]
    zeros = (qzeros[:, :, None] >> wf[None]) & 15  # (G, N/8, 8)
    zeros = (zeros + 1).reshape(scales.shape)
    weight = (qweight[:, None, :] >> wf[..., None]) & 15  # (K/8, 8, N)
    weight = weight.reshape(-1, weight.shape[2])
    return scales[g_idx].astype(np.float32) * (weight - zeros[g_idx]).astype(np.float32)


AWQ_ORDER_MAP = [0, 2, 4, 6, 1, 3, 5, 7]


def autoawq_pack(intweight: np.ndarray) -> np.ndarray:
    """AutoAWQ ``WQLinear_GEMM.from_linear`` packing of (rows, N) codes into (rows, N/8) int32."""
    intweight = intweight.astype(np.int32)
    q = np.zeros((intweight.shape[0], intweight.shape[1] // 8), dtype=np.int32)
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            q[:, col] |= intweight[:, col * 8 + AWQ_ORDER_MAP[i]] << (i * 4)
    return q


def autoawq_unpack(q: np.ndarray) -> np.ndarray:
    """AutoAWQ ``unpack_awq`` + ``reverse_awq_order``: (rows, N/8) int32 -> (rows, N) codes."""
    shifts = np.arange(0, 32, 4, dtype=np.int32)
    raw = ((q[:, :, None] >> shifts[None, None, :]) & 15).reshape(q.shape[0], -1)
    reverse = np.arange(raw.shape[1]).reshape(-1, 8)[:, [0, 4, 1, 5, 2, 6, 3, 7]].reshape(-1)
    return raw[:, reverse]


def random_layer(rng: np.random.Generator, k: int, n: int, gs: int, act_order: bool):
    """Random AutoGPTQ v1 layer parts: codes (k, n), zeros (G, n) in 1..15, float16 scales, g_idx."""
    g = -(-k // gs)
    codes = rng.integers(0, 16, (k, n))
    zeros = rng.integers(1, 16, (g, n))  # v1 cannot hold 0
    scales = (rng.random((g, n)) * 0.1 + 0.01).astype(np.float16)
    if act_order:
        perm = rng.permutation(k)
        g_idx = np.empty(k, np.int32)
        g_idx[perm] = np.arange(k) // gs
    else:
        g_idx = (np.arange(k) // gs).astype(np.int32)
    return codes, zeros, scales, g_idx
