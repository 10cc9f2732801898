"""AWQ: activation-aware per-input-channel scaling (spec section 14.3).

Reference: J. Lin, J. Tang, H. Tang, S. Yang, W.-M. Chen, W.-C. Wang, G. Xiao,
X. Dang, C. Gan, S. Han, "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", arXiv:2306.00978 (2023), section 3.2;
github.com/mit-han-lab/llm-awq (awq/quantize/auto_scale.py).

Input channels that carry large activations matter most. AWQ scales row ``k``
of the ``(K, N)`` weight up by ``s_k`` before rounding and the activation down
by ``1 / s_k``, which the float graph computes exactly but which makes the
salient rows' rounding error relatively smaller::

    a_k      = mean_m |X_mk|                                 (per input channel, float64)
    s_k(al)  = max(a_k, 1e-4)**al / sqrt(max_k(.) * min_k(.))  for al in grid (0, 1/20, ..., 19/20)
    m        = float32(1 / s)                                  the activation multiplier
    W'(al)   = diag(1 / m) W,  Q = quantize(W'(al))            (spec 3, or the MSE scales of 14.1
                                                                weighted by H_kk * m_k**2)
    err(al)  = ||X W - (X diag(m)) deq(Q)||_F^2 = sum((H D) * D),  D = W - diag(m) deq(Q),  H = X^T X

and keeps the ``al`` with the smallest ``err`` (``al = 0`` is ``s = 1``, plain
round-to-nearest, so the result is never worse than it on the calibration data).

The result is the quantized ``W'`` and the multiplier ``m``: ``y ~= (x * m) @ deq(Q)``.
Where ``m`` goes in an ONNX graph (``monoquant_np.onnx.calibration.adapters``, spec 14.3):

* folded into a ``LayerNormalization`` over the last axis that produces ``x``
  (``gamma *= m``, ``beta *= m``) when the quantized MatMuls are its only
  readers and its ``gamma``/``beta`` serve it alone;
* otherwise an explicit ``Mul(x, m)`` in front of those MatMuls (for example
  after ``GELU``, which is not linear, or after a BERT LayerNorm whose output
  also feeds the residual ``Add``). Other per-channel linear producers (a
  ``MatMul``'s output columns, a constant ``Mul``) could absorb ``m`` too; the
  model quantizer does not fold into them.

Several MatMuls reading the same ``x`` (query, key, value) must share ``m``:
concatenate their weights along ``N`` and call :func:`awq_from_stats` once.

# Note: llm-awq also searches a per-group clipping threshold against the real
# activations (auto_clip); here the clipping search is the MSE search of 14.1
# with the diagonal weighting ``H_kk * m_k**2`` (``scale_search="mse"``).
# Note: llm-awq clamps after the power (``x_max.pow(ratio).clamp(min=1e-4)``);
# here ``a_k`` is clamped before it. They differ only for ``mean|x_k| < 1e-4``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..dequantize import dequantize
from ..errors import (
    check_bool,
    check_choice,
    check_finite,
    check_float_array,
    check_matrix,
    check_positive_int,
    check_reals,
    check_scale_dtype,
)
from ..quantize import quantize
from ..tensor import QuantizedTensor
from .gptq import check_hessian, hessian
from .mse import quantize_mse

__all__ = ["AWQ_GRID", "AWQResult", "awq", "awq_from_stats"]

#: Exponents searched: ``i / 20`` for ``i = 0..19`` (llm-awq auto_scale, ``n_grid = 20``).
AWQ_GRID: tuple[float, ...] = tuple(i / 20 for i in range(20))


@dataclasses.dataclass(frozen=True)
class AWQResult:
    """The outcome of :func:`awq`.

    Attributes:
        qt: the quantized scaled weight ``diag(1 / act_scale) W`` ``(K, N)``.
        act_scale: float32 ``(K,)`` multiplier of the activations: ``y ~= (x * act_scale) @ deq(qt)``.
        alpha: the chosen exponent.
        error: ``||X W - (X * act_scale) deq(qt)||^2`` on the calibration data.
        rtn_error: the same for ``alpha = 0`` (round-to-nearest, ``act_scale = 1``).
    """

    qt: QuantizedTensor
    act_scale: np.ndarray
    alpha: float
    error: float
    rtn_error: float


def _stats_error(w64: np.ndarray, deq_eff: np.ndarray, h32: np.ndarray) -> float:
    d = (w64 - deq_eff).astype(np.float32)  # (K, N)
    return float(np.sum((h32 @ d) * d, dtype=np.float64))


def _check_arrays(w: Any, mean_abs: Any, h: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 ``w`` ``(K, N)``, float64 ``mean_abs`` ``(K,)`` and ``h`` ``(K, K)`` (spec 15; data not yet checked)."""
    w32 = check_float_array(w, "w", min_ndim=2, nonempty=True)
    check_matrix(w32.shape, "w")
    k = w32.shape[0]
    a = check_float_array(mean_abs, "mean_abs", dtype=np.float64)
    if a.shape != (k,):
        raise ValueError(f"mean_abs must have shape ({k},), got {a.shape}")
    return w32, a, check_hessian(h, k)


def _check_options(group_size, symmetric, grid, scale_search, scale_dtype, int8_fallback):
    """The options of :func:`awq_from_stats` and :func:`awq`, checked in signature order (spec 15)."""
    return (
        check_positive_int(group_size, "group_size"),
        check_bool(symmetric, "symmetric"),
        [float(v) for v in check_reals(grid, "grid", low=0.0, high=1.0)],
        check_choice(scale_search, ("absmax", "mse"), "scale_search"),
        check_scale_dtype(scale_dtype),
        check_bool(int8_fallback, "int8_fallback"),
    )


def awq_from_stats(
    w: np.ndarray,
    mean_abs: np.ndarray,
    h: np.ndarray,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    grid: Any = AWQ_GRID,
    scale_search: str = "absmax",
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
) -> AWQResult:
    """AWQ on a ``(K, N)`` weight from activation statistics (spec 14.3).

    Args:
        w: float ``(K, N)`` weight, finite.
        mean_abs: float ``(K,)``, ``mean |x_k|`` over the calibration rows.
        h: float ``(K, K)``, ``X^T X`` (any positive multiple).
        group_size, symmetric, scale_dtype, int8_fallback: as in
            :func:`monoquant_np.quantize.quantize`.
        grid: exponents ``alpha`` to try (:data:`AWQ_GRID`).
        scale_search: ``"absmax"`` (spec 3) or ``"mse"`` (spec 14.1 weighted by
            ``H_kk * act_scale_k**2``) for the scaled weight.
    """
    w32, a, h64 = _check_arrays(w, mean_abs, h)
    k = w32.shape[0]
    group_size, symmetric, alphas, scale_search, scale_dtype, int8_fallback = _check_options(
        group_size, symmetric, grid, scale_search, scale_dtype, int8_fallback)
    check_finite(w32, "w")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("mean_abs must be finite and non-negative")
    if not np.all(np.isfinite(h64)):
        raise ValueError("h must be finite")
    h = h64
    if 0.0 not in alphas:
        alphas = [0.0] + alphas
    h32 = h.astype(np.float32)
    w64 = w32.astype(np.float64)
    hdiag = np.maximum(np.diag(h).astype(np.float64), 0)
    best: AWQResult | None = None
    rtn_error = None
    for al in alphas:
        s = np.maximum(a, 1e-4) ** al
        s /= np.sqrt(s.max() * s.min()) if k else 1.0
        m = (1.0 / s).astype(np.float32)  # (K,) the activation multiplier
        w_scaled = (w32 / m[:, None]).astype(np.float32)  # (K, N)
        if scale_search == "mse":
            qt = quantize_mse(w_scaled, group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype,
                              importance=(hdiag * m.astype(np.float64) ** 2).astype(np.float32),
                              int8_fallback=int8_fallback)
        else:
            qt = quantize(w_scaled, group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype,
                          int8_fallback=int8_fallback)
        deq_eff = dequantize(qt).astype(np.float64) * m[:, None]  # (K, N)
        err = _stats_error(w64, deq_eff, h32)
        if al == 0.0:
            rtn_error = err
        if best is None or err < best.error:
            best = AWQResult(qt=qt, act_scale=m, alpha=al, error=err, rtn_error=np.nan)
    if best is None or rtn_error is None:  # unreachable: alphas holds 0.0
        raise ValueError(f"grid must hold at least one exponent, got {grid!r}")
    return dataclasses.replace(best, rtn_error=rtn_error)


def awq(
    w: np.ndarray,
    x: np.ndarray,
    *,
    group_size: int = 128,
    symmetric: bool = True,
    grid: Any = AWQ_GRID,
    scale_search: str = "absmax",
    scale_dtype: Any = np.float32,
    int8_fallback: bool = True,
) -> AWQResult:
    """AWQ on a ``(K, N)`` weight with calibration activations ``x`` ``(..., K)``.

    ``awq(w, x) == awq_from_stats(w, mean(|x|, rows), x^T x)``; see there.
    """
    w32 = check_float_array(w, "w", min_ndim=2, nonempty=True)
    check_matrix(w32.shape, "w")
    x32 = check_float_array(x, "x", min_ndim=2)
    x2 = x32.reshape(-1, x32.shape[-1])  # (M, K)
    if x2.shape[1] != w32.shape[0]:
        raise ValueError(f"x must have last dimension K={w32.shape[0]} to match w {w32.shape}, got {x32.shape}")
    _check_options(group_size, symmetric, grid, scale_search, scale_dtype, int8_fallback)
    check_finite(x32, "x")
    mean_abs = np.abs(x2.astype(np.float64)).mean(axis=0) if x2.shape[0] else np.zeros(x2.shape[1])
    return awq_from_stats(w, mean_abs, hessian(x2), group_size=group_size, symmetric=symmetric, grid=grid,
                          scale_search=scale_search, scale_dtype=scale_dtype, int8_fallback=int8_fallback)
