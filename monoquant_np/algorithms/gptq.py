"""GPTQ: quantization with error feedback through the inverse Hessian (spec section 14.2).

Reference: E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh, "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers",
arXiv:2210.17323 (2022), Algorithm 1; github.com/IST-DASLab/gptq (gptq.py).

For a ``(K, N)`` MatMul weight ``W`` (ONNX ``MatMul`` input B: ``y = x @ W``)
and calibration activations ``X`` ``(M, K)``, GPTQ minimizes ``||X W - X W'||^2``
one input row ``k`` of ``W`` at a time (the paper's "columns" are the rows here,
because the paper stores ``W`` as ``(N, K)``)::

    H    = X^T X                                   (float64, K x K)
    perm = argsort(-diag(H)) (stable)  if act_order else identity   (the diagonal as given)
    dead = {k : H_kk <= 0};  H_kk = 1 for k in dead  (no update flows in or out)
    W = W[perm],  H = H[perm][:, perm]
    H   += damp * mean(diag(H)) * I
    U    = upper Cholesky factor of H^-1:  H^-1 = U^T U
    for each row k = 0 .. K-1 (in blocks of B rows):
        if k % group_size == 0: the scales of rows k .. k+group_size-1 are chosen
            from the *current* (already error-corrected) rows: absmax (spec 3) or MSE (14.1)
        q_k  = quantize_codes(W_k, s_g)                 (the spec's one rounding step)
        e_k  = (W_k - (q_k - z_g) * s_g) / U_kk          (N,)
        W_j -= U_kj * e_k     for every later row j > k
    (inside a block the update is applied row by row; the rows after the block
    receive ``W[b1:] -= U[b0:b1, b1:]^T @ E`` once per block, which is the same sum.)

The stored tensor holds the codes of the rows as they were when rounded,
``W`` taken through ``perm`` (``QuantizedTensor.perm``): ``x @ W ~= x[:, perm] @ W_stored``,
and groups are contiguous in permuted order.

# Note: the reference implementation chooses a group's scales from
# ``W[:, i:i+groupsize]`` before the updates made inside the current block; here
# blocks are whole groups, so the scales always see the up-to-date rows.
# Note: the reference sorts for act-order after setting the dead ``H_kk`` to 1;
# here the diagonal as given is sorted, so dead inputs come last.
# Note: the reference zeroes the weights of dead inputs (``W[:, dead] = 0``);
# here they are kept and rounded to nearest, so the model's behaviour on inputs
# the calibration never exercised is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codes import quantize_codes
from ..errors import (
    check_bool,
    check_choice,
    check_finite,
    check_float_array,
    check_matrix,
    check_positive_int,
    check_real,
    check_scale_dtype,
)
from ..scales import asymmetric_scales, symmetric_scales
from ..tensor import QuantizedTensor
from .mse import build_tensor, mse_scales

__all__ = ["gptq", "gptq_from_hessian", "hessian", "check_hessian", "output_error", "inverse_hessian_factor"]

#: Dampening multipliers tried in turn when ``H + damp * mean(diag H) * I`` is not
#: numerically positive definite (float64 Cholesky fails).
_DAMP_RETRIES = (1.0, 10.0, 100.0, 1000.0)


def hessian(x: np.ndarray) -> np.ndarray:
    """``H = X^T X`` in float64 for activations ``x`` ``(..., K)`` (rows flattened to ``(M, K)``)."""
    x32 = check_float_array(x, "x", min_ndim=2)
    check_finite(x32, "x")
    x2 = x32.reshape(-1, x32.shape[-1]).astype(np.float64)  # (M, K)
    return x2.T @ x2


def output_error(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray) -> float:
    """``||X W - X W'||_F^2 = sum((H D) * D)`` with ``D = W - W'`` (both ``(K, N)``), from ``H = X^T X``."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)  # (K, N)
    return float(np.sum((np.asarray(h, np.float64) @ d) * d))


def check_hessian(h: Any, k: int) -> np.ndarray:
    """float64 copy of ``h`` (the caller's H is never modified): a float array-like of shape ``(k, k)`` (spec 15).

    Finiteness is data, checked later by the caller.
    """
    h64 = check_float_array(h, "h", min_ndim=2, dtype=np.float64)
    if h64.shape != (k, k):
        raise ValueError(f"h must have shape ({k}, {k}) to match w's K={k}, got {h64.shape}")
    return np.array(h64, dtype=np.float64)


def _check_options(group_size, symmetric, damp, act_order, block_size, scale_search, scale_dtype, int8_fallback):
    """The options of :func:`gptq_from_hessian` and :func:`gptq`, checked in signature order (spec 15)."""
    return dict(
        group_size=check_positive_int(group_size, "group_size"),
        symmetric=check_bool(symmetric, "symmetric"),
        damp=check_real(damp, "damp", low=0.0, low_open=True),
        act_order=check_bool(act_order, "act_order"),
        block_size=check_positive_int(block_size, "block_size"),
        scale_search=check_choice(scale_search, ("absmax", "mse"), "scale_search"),
        scale_dtype=check_scale_dtype(scale_dtype),
        int8_fallback=check_bool(int8_fallback, "int8_fallback"),
    )


def inverse_hessian_factor(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper ``U`` with ``U^T U = (H + lambda I)^-1``, ``lambda = damp * mean(diag H)`` (float64 ``(K, K)``).

    One Cholesky factorization, of the reversed matrix: with ``J`` the
    reversal permutation and ``J H J = L L^T``, ``H^-1 = (J L^-T J)(J L^-1 J)``
    and ``U = J L^-1 J`` is upper triangular with a positive diagonal, i.e.
    the Cholesky factor of ``H^-1`` that the reference computes with two more
    factorizations. ``H`` must already have its dead diagonal entries set to
    1. If the factorization fails, ``damp`` is multiplied by 10, 100, 1000.
    """
    mean_diag = float(np.mean(np.diag(h))) if h.size else 1.0
    idx = np.arange(h.shape[0])
    for mult in _DAMP_RETRIES:
        hd = h.copy()
        hd[idx, idx] += damp * mult * mean_diag
        try:
            low = np.linalg.cholesky(hd[::-1, ::-1])  # J H J = L L^T
        except np.linalg.LinAlgError:
            continue
        return np.ascontiguousarray(np.linalg.inv(low)[::-1, ::-1])  # U = J L^-1 J
    raise ValueError(
        f"h is not positive definite even with damp={damp * _DAMP_RETRIES[-1]:g}; "
        "check the calibration activations (NaN, constant or too few samples)"
    )


def _group_scales(rows: np.ndarray, symmetric: bool, bits: int, sdt: np.dtype, scale_search: str):
    """Scales (and zero points) ``(1, N)`` of one group of rows ``(g, N)``."""
    g = rows.shape[0]
    if scale_search == "mse":
        res = mse_scales(rows, group_size=g, axis=0, symmetric=symmetric, bits=bits, scale_dtype=sdt)
        return (res, None) if symmetric else res
    if symmetric:
        return symmetric_scales(rows, group_size=g, axis=0, bits=bits, scale_dtype=sdt), None
    return asymmetric_scales(rows, group_size=g, axis=0, bits=bits, scale_dtype=sdt)


def gptq_from_hessian(
    w: np.ndarray,
    h: np.ndarray,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    damp: float = 0.01,
    act_order: bool = False,
    block_size: int = 128,
    scale_search: str = "absmax",
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
) -> QuantizedTensor:
    """GPTQ on a ``(K, N)`` weight given ``H = X^T X`` ``(K, K)`` (spec 14.2).

    Args:
        w: float ``(K, N)`` weight (``y = x @ w``), finite.
        h: float ``(K, K)`` symmetric ``X^T X`` (any positive multiple works:
            the updates only use ratios of ``H^-1`` entries); not modified.
        group_size: rows per group along K (axis 0). ``K < group_size`` falls
            back to int8 per output channel like :func:`~monoquant_np.quantize.quantize`.
        symmetric: int4 ``-8..7`` (True) or uint4 with zero points.
        damp: relative dampening ``lambda = damp * mean(diag H)``, ``> 0``.
        act_order: process rows by decreasing ``H_kk``; sets ``perm``.
        block_size: rows per lazy-update block; rounded to whole groups.
        scale_search: ``"absmax"`` (spec 3 scales of the current rows) or
            ``"mse"`` (spec 14.1 search on them).
        scale_dtype: float32 or float16.

    Returns:
        A :class:`QuantizedTensor` of shape ``(K, N)``, axis 0; ``perm`` set
        when ``act_order``.
    """
    w32 = check_float_array(w, "w", min_ndim=2, nonempty=True)
    check_matrix(w32.shape, "w")
    k, n = w32.shape
    h64 = check_hessian(h, k)
    o = _check_options(group_size, symmetric, damp, act_order, block_size, scale_search, scale_dtype, int8_fallback)
    group_size, symmetric, damp, act_order = o["group_size"], o["symmetric"], o["damp"], o["act_order"]
    block_size, scale_search, sdt = o["block_size"], o["scale_search"], o["scale_dtype"]
    int8_fallback = o["int8_fallback"]
    check_finite(w32, "w")
    if not np.all(np.isfinite(h64)):
        raise ValueError("h must be finite")
    bits = 4
    if int8_fallback and 0 < k < group_size:
        bits, group_size = 8, k
    g = min(group_size, k) if k else 1
    step = max(g, block_size - block_size % g)  # blocks are whole groups

    diag = np.diag(h64).copy()
    dead = diag <= 0
    h64[dead, dead] = 1.0
    perm = np.argsort(-diag, kind="stable") if act_order else None
    wk = w32[perm] if perm is not None else w32.copy()  # (K, N), rows in processing order
    if perm is not None:
        h64 = h64[np.ix_(perm, perm)]
    u = inverse_hessian_factor(h64, float(damp)).astype(np.float32)  # (K, K) upper

    n_g = -(-k // group_size)
    scale = np.zeros((n_g, n), sdt)
    zp = None if symmetric else np.zeros((n_g, n), np.uint8)
    rounded = np.empty_like(wk)  # the rows as they were when rounded
    for b0 in range(0, k, step):
        b1 = min(b0 + step, k)
        blk = wk[b0:b1].copy()  # (b1 - b0, N)
        err = np.empty_like(blk)
        for i in range(b1 - b0):
            row = b0 + i
            gi = row // group_size
            if row % group_size == 0:
                s_g, z_g = _group_scales(blk[i : i + group_size], symmetric, bits, sdt, scale_search)
                scale[gi] = s_g[0]
                if zp is not None:
                    zp[gi] = z_g[0]
            s_row = scale[gi : gi + 1]  # (1, N)
            z_row = zp[gi : gi + 1] if zp is not None else None
            q = quantize_codes(blk[i : i + 1], s_row, z_row, axis=0, group_size=1, bits=bits)
            deq = q.astype(np.float32)
            if z_row is not None:
                deq -= z_row
            deq *= s_row.astype(np.float32)  # (1, N)
            rounded[row] = blk[i]
            e = (blk[i] - deq[0]) / u[row, row]  # (N,)
            err[i] = e
            blk[i + 1 :] -= np.outer(u[row, row + 1 : b1], e)
        wk[b1:] -= u[b0:b1, b1:].T @ err
    return build_tensor(rounded, scale, zp, axis=0, group_size=group_size, bits=bits, perm=perm)


def gptq(
    w: np.ndarray,
    x: np.ndarray,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    damp: float = 0.01,
    act_order: bool = False,
    block_size: int = 128,
    scale_search: str = "absmax",
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
) -> QuantizedTensor:
    """GPTQ on a ``(K, N)`` weight with calibration activations ``x`` ``(..., K)``.

    ``gptq(w, x, ...) == gptq_from_hessian(w, hessian(x), ...)``; see there.
    """
    w32 = check_float_array(w, "w", min_ndim=2, nonempty=True)
    check_matrix(w32.shape, "w")
    x32 = check_float_array(x, "x", min_ndim=2)
    if x32.shape[-1] != w32.shape[0]:
        raise ValueError(f"x must have last dimension K={w32.shape[0]} to match w {w32.shape}, got {x32.shape}")
    _check_options(group_size, symmetric, damp, act_order, block_size, scale_search, scale_dtype, int8_fallback)
    return gptq_from_hessian(
        w32, hessian(x32), group_size=group_size, symmetric=symmetric, damp=damp,
        act_order=act_order, block_size=block_size, scale_search=scale_search,
        scale_dtype=scale_dtype, int8_fallback=int8_fallback,
    )
