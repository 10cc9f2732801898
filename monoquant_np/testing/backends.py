"""Ready-made backends for the conformance kit (spec section 12.7.3).

* :data:`~monoquant_np.testing.conformance.SPEC`: the reference itself.
* :func:`onnxruntime_backend`: ``dequant_matmul`` run by onnxruntime on the
  model :func:`monoquant_np.onnx.linear_model` exports (QDQ or MatMulNBits),
  at a chosen ``accuracy_level``.
* :func:`onnxruntime_kernel_backend` and :data:`ORT_DEFAULT`: onnxruntime's
  own blockwise quantizer (``quantize_matmul_4bits``) and its reference, the
  spec's dialect :func:`monoquant_np.formats.ort_default_quantize`.
* :func:`int8_activation_bound`: the error bound of onnxruntime's
  ``accuracy_level=4``, which quantizes activations to int8.

onnx and onnxruntime are imported when a backend is built, not before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..formats.matmulnbits import MATMULNBITS_BLOCK_SIZES, matmulnbits_unpack, ort_default_quantize
from ..tensor import QuantizedTensor
from .conformance import Backend, float32_bound

__all__ = ["onnxruntime_backend", "onnxruntime_kernel_backend", "ORT_DEFAULT", "int8_activation_bound"]


def int8_activation_bound(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Allowed error when activations are rounded to int8 with scale ``max|x_row| / 127``.

    Each ``x[m, k]`` moves by at most half a step, ``max|x[m]| / 254``, so
    ``|dy[m, n]| <= max|x[m]| / 254 * sum_k |W[k, n]|`` (spec 12.7.3). The
    bound is that times 1.001, a margin for the runtime's float32 step (a few
    ulps off ``max|x[m]| / 127``), plus :func:`float32_bound`. Blockwise or
    asymmetric int8 steps are no larger, so the bound holds for those too.
    """
    step = np.abs(x).max(axis=-1, keepdims=True).astype(np.float64) / 254.0  # (M, 1)
    return step * np.abs(w).astype(np.float64).sum(axis=0) * 1.001 + float32_bound(x, w)


def onnxruntime_backend(accuracy_level: int = 1, *, format: str = "qdq", bound: Any = None) -> Backend:
    """``dequant_matmul`` by onnxruntime on :func:`monoquant_np.onnx.linear_model` (2-D weights, axis 0).

    Level 1 computes in float32 and must match within float32 rounding; level 4
    quantizes activations to int8 (pass ``bound=int8_activation_bound`` to
    accept exactly that difference).
    """
    from ..onnx import linear_model, make_session

    def run(x: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
        sess = make_session(linear_model(qt, format=format, accuracy_level=accuracy_level), accuracy_level,
                            intra_op_threads=1)
        return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]

    return Backend(
        f"onnxruntime {format} accuracy_level={accuracy_level}", dequant_matmul=run, ndims=(2,), axes=(0,),
        group_sizes=MATMULNBITS_BLOCK_SIZES[:3], matmul_bound=bound or float32_bound,
    )


def _as_kernel_input(w: np.ndarray, scale_dtype: Any) -> np.ndarray:
    """The weight in the kernel's dtype: float16 scales come from the float16 kernel."""
    return np.ascontiguousarray(w.astype(np.dtype(scale_dtype)))


def _default_quantize(
    w: np.ndarray, *, group_size: int, axis: int, symmetric: bool, scale_dtype: Any
) -> QuantizedTensor:
    return ort_default_quantize(_as_kernel_input(w, scale_dtype), block_size=group_size, symmetric=symmetric)


#: Reference for onnxruntime's quantizer: the spec's dialect 12.1.
ORT_DEFAULT = Backend("ort_default_quantize (spec 12.1)", quantize=_default_quantize, ndims=(2,), axes=(0,),
                      group_sizes=MATMULNBITS_BLOCK_SIZES)


def onnxruntime_kernel_backend() -> Backend:
    """onnxruntime's ``quantize_matmul_4bits`` kernel as a ``quantize`` backend.

    Check it with ``reference=ORT_DEFAULT``: the kernel is onnxruntime's own
    quantizer, not the spec's.
    """
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    def run(w: np.ndarray, *, group_size: int, axis: int, symmetric: bool, scale_dtype: Any) -> QuantizedTensor:
        wk = _as_kernel_input(w, scale_dtype)
        k, n = wk.shape
        nb = -(-k // group_size)
        b = np.zeros((n, nb, group_size // 2), np.uint8)
        zp = np.zeros((n, (nb + 1) // 2), np.uint8)
        scales = np.zeros((n, nb), wk.dtype)
        quantize_matmul_4bits(b, wk, scales, zp, group_size, n, k, bool(symmetric))
        return matmulnbits_unpack(b, scales, None if symmetric else zp, k=k)

    return Backend("onnxruntime quantize_matmul_4bits", quantize=run, ndims=(2,), axes=(0,),
                   group_sizes=MATMULNBITS_BLOCK_SIZES)
