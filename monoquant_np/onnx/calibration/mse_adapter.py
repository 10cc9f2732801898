"""The ``mse`` algorithm's hooks for the model quantizer (spec sections 14.1, 14.4 and 13.3).

Per weight, :func:`~monoquant_np.algorithms.quantize_mse` along the weight's
group axis (MatMul/Gemm weights and Gather tables alike), then
:func:`~monoquant_np.requantize.double_quantize` with ``double_quant``; no
calibration is needed. With calibration inputs, :func:`mse_prepare` captures
``X^T X`` for each MatMul/Gemm weight (:mod:`monoquant_np.onnx.calibration.layers`)
and :func:`mse_weight_reported` adds the output errors of ``mse`` and of
round-to-nearest to the weight's report row; the quantized weights are the
same either way. :func:`mse_weight` is also the fallback of ``gptq`` and
``awq`` for weights without statistics
(:mod:`monoquant_np.onnx.calibration.gptq_awq`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...algorithms import quantize_mse
from ...algorithms.extreme import quantize_extreme
from ...dequantize import dequantize
from ...requantize import double_quantize
from ...tensor import QuantizedTensor
from ..quantizer.algorithm import QuantOptions, WeightContext
from .capture import collect_stats
from .layers import find_layers, merged_stats, output_errors

__all__ = ["check_linear_scheme", "mse_tensor", "mse_weight", "mse_prepare", "mse_weight_reported"]


def check_linear_scheme(opts: QuantOptions, name: str) -> None:
    """``ValueError`` unless ``opts.scheme`` is ``int4`` or ``uint4`` (algorithm ``name`` has no ``nf4``)."""
    scheme = opts.scheme
    if scheme not in ("int4", "uint4"):
        raise ValueError(f"algorithm {name!r} supports scheme int4 or uint4, got {scheme!r}")


def mse_tensor(w: np.ndarray, axis: int, o: QuantOptions) -> QuantizedTensor:
    """``w`` (float32, 2-D) quantized with MSE scales grouped along ``axis`` (spec 14.1), with ``o``'s options.

    int4: the line search on ``r * m / -8`` (:func:`~monoquant_np.algorithms.extreme.search_scales`).
    uint4, or int4 with ``o.double_quant``: :func:`~monoquant_np.algorithms.quantize_mse`'s grid,
    without negative scales under ``o.double_quant``, which then stores the scales of a 4-bit
    result in 8 bits (spec 11).
    """
    check_linear_scheme(o, "mse")
    if o.symmetric and not o.double_quant and o.bits == 4:  # the line search of spec 14.1's model-quantizer form
        return quantize_extreme(w, group_size=o.group_size, axis=axis, scale_dtype=o.scale_dtype, search=True)
    qt = quantize_mse(w, group_size=o.group_size, axis=axis, symmetric=o.symmetric,
                      scale_dtype=o.scale_dtype, negative_scales=not o.double_quant)
    if o.double_quant and qt.bits == 4:
        qt = double_quantize(qt, w=w)
    return qt


def mse_weight(ctx: WeightContext) -> QuantizedTensor:
    """:func:`mse_tensor` of the context's weight, along its group axis."""
    return mse_tensor(ctx.w, ctx.axis, ctx.options)


def mse_prepare(model: onnx.ModelProto, sites: list, feeds: Any, opts: Any) -> dict[str, Any]:
    """``Algorithm.prepare`` of ``mse`` (run only with calibration inputs): ``{weight name: {"h": X^T X}}``,
    ``(K, K)`` per MatMul/Gemm layer of ``sites``, for the report only; ``model`` is not modified."""
    check_linear_scheme(opts, "mse")
    layers, targets = find_layers(model, sites, opts.base_dir)
    if not targets:
        return {}
    stats = collect_stats(model, feeds, [t.activation for t in targets],
                          trans_act=[t.activation for t in targets if t.trans_act], base_dir=opts.base_dir)
    return {ly.name: {"h": merged_stats(stats, ly.acts).xtx} for ly in layers}


def mse_weight_reported(ctx: WeightContext) -> QuantizedTensor | tuple[QuantizedTensor, dict[str, Any]]:
    """:func:`mse_weight`; with calibration statistics also the output errors of it and of round-to-nearest."""
    qt = mse_weight(ctx)
    st = ctx.stats
    if not st or "h" not in st:
        return qt
    w_hat = dequantize(qt)
    w, w_hat = (ctx.w.T, w_hat.T) if ctx.axis == 1 else (ctx.w, w_hat)  # (K, N): ctx.w is (N, K) when axis 1
    return qt, output_errors(w, w_hat, st["h"], ctx.options)
