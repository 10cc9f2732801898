"""Quantization beyond round-to-nearest (spec section 14), NumPy only.

* :mod:`.mse`  -- calibration-free MSE-optimal group scales (spec 14.1);
* :mod:`.gptq` -- GPTQ, error feedback through the inverse Hessian (spec 14.2);
* :mod:`.awq`  -- AWQ, activation-aware per-input-channel scaling (spec 14.3).

Every algorithm chooses scales (and, for GPTQ, the values to round) and then
calls :func:`monoquant_np.codes.quantize_codes`, the spec's one rounding
step, so the codes always follow the spec for the chosen scales.
"""

from .awq import AWQ_GRID, AWQResult, awq, awq_from_stats
from .gptq import gptq, gptq_from_hessian
from .mse import MSE_GRID, build_tensor, mse_scales, quantize_mse

__all__ = [
    # MSE-optimal scales (spec 14.1)
    "MSE_GRID",
    "mse_scales",
    "quantize_mse",
    "build_tensor",
    # GPTQ (spec 14.2)
    "gptq",
    "gptq_from_hessian",
    # AWQ (spec 14.3)
    "AWQ_GRID",
    "AWQResult",
    "awq",
    "awq_from_stats",
]
