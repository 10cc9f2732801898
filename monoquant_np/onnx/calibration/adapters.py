"""The ``mse``, ``gptq`` and ``awq`` algorithms of ``quantize_model`` (spec sections 14.4 and 13.3).

Adapters between :mod:`monoquant_np.algorithms` (NumPy, ``(K, N)`` weights)
and the model quantizer's extension point (:class:`~monoquant_np.onnx.quantizer.algorithm.Algorithm`);
:mod:`monoquant_np.onnx.quantizer.registry` lists them by name:

* ``mse`` (hooks in :mod:`.mse_adapter`): per weight,
  :func:`~monoquant_np.algorithms.quantize_mse` along the weight's group axis
  (MatMul/Gemm and Gather tables alike); calibration inputs are optional and
  only add the output errors to the report.
* ``gptq`` / ``awq`` (hooks in :mod:`.gptq_awq`): ``prepare`` runs the calibration of
  :mod:`monoquant_np.onnx.calibration.stages` on the opset-21 working model and
  quantizes every MatMul/Gemm weight of the main graph from its activations'
  statistics (stage by stage when ``sequential``); ``quantize_weight`` then
  returns the stored result. Weights without statistics (Gather tables,
  subgraph weights, weights also read by other ops) get ``mse``.
* AWQ's activation multiplier ``m`` (one per activation tensor, shared by every
  MatMul reading it: query, key and value are searched jointly) is folded into
  the producing ``LayerNormalization`` (``gamma *= m``, ``beta *= m``) when the
  MatMuls are its only readers, and otherwise becomes an explicit ``Mul(x, m)``
  inserted in the working graph in front of them (:mod:`.awq_multipliers`); each
  weight is quantized as ``diag(1 / m) W``.

Each layer's report row carries, in ``extra``, the calibration output error
``||X W - X W'|| / ||X W||`` of the algorithm and of round-to-nearest
(:mod:`.layers`). Here: the :class:`~monoquant_np.onnx.quantizer.algorithm.Algorithm`
each name stands for, with its options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from ...tensor import QuantizedTensor
from ..options import ALGORITHMS, DEFAULT_STAGE_BYTES
from ..quantizer.algorithm import Algorithm, WeightContext
from .gptq_awq import AWQAdapter, GPTQAdapter
from .mse_adapter import mse_prepare, mse_weight_reported
from .partition import check_stage_bytes

__all__ = ["mse_algorithm", "gptq_algorithm", "awq_algorithm"]


def _as_quantizer(f: Callable[[WeightContext], Any]) -> Callable[[WeightContext], QuantizedTensor]:
    """``f`` returns ``(qt, extra)``, which ``quantize_model`` accepts (spec 13.3); typed as its hook."""
    return cast(Callable[[WeightContext], QuantizedTensor], f)


def mse_algorithm() -> Algorithm:
    """``algorithm="mse"``: calibration-free MSE scales (spec 14.1).

    Calibration inputs are optional: when given, they change nothing in the
    model and add each MatMul/Gemm weight's output error, and round-to-nearest's,
    to the report.
    """
    return Algorithm("mse", _as_quantizer(mse_weight_reported), needs_calibration=ALGORITHMS["mse"],
                     prepare=mse_prepare)


def gptq_algorithm(*, act_order: bool = True, scale_search: str = "mse", sequential: bool = False,
                   damp: float = 0.01, batch_size: int = 16, stage_bytes: int = DEFAULT_STAGE_BYTES) -> Algorithm:
    """``algorithm="gptq"`` (spec 14.2) with calibration; the registered default is ``gptq_algorithm()``.

    ``sequential``: each layer is calibrated on the outputs of the layers quantized before it (spec 14.5);
    ``stage_bytes``: the weight budget of one calibration stage (spec 14.5).
    """
    c = GPTQAdapter(scale_search=scale_search, sequential=sequential, batch_size=batch_size, act_order=act_order,
                    damp=damp, stage_bytes=check_stage_bytes(stage_bytes))
    return Algorithm("gptq", _as_quantizer(c.quantize_weight), needs_calibration=ALGORITHMS["gptq"],
                     prepare=c.prepare)


def awq_algorithm(*, scale_search: str = "mse", sequential: bool = False, batch_size: int = 16,
                  stage_bytes: int = DEFAULT_STAGE_BYTES) -> Algorithm:
    """``algorithm="awq"`` (spec 14.3) with calibration; the registered default is ``awq_algorithm()``;
    ``sequential`` and ``stage_bytes`` as for :func:`gptq_algorithm`."""
    c = AWQAdapter(scale_search=scale_search, sequential=sequential, batch_size=batch_size,
                   stage_bytes=check_stage_bytes(stage_bytes))
    return Algorithm("awq", _as_quantizer(c.quantize_weight), needs_calibration=ALGORITHMS["awq"], prepare=c.prepare)
