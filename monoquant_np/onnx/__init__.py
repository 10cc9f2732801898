"""ONNX export of quantized weights for onnxruntime and any opset-21 runtime (spec section 9).

This subpackage imports ``onnx`` and ``onnxruntime``; the NumPy core never
imports it. Exported graphs use ``DequantizeLinear(axis, block_size)`` on
packed ``INT4``/``UINT4`` initializers (opset 21), which onnxruntime fuses
into ``MatMulNBits``, or ``com.microsoft.MatMulNBits`` directly.

``quantize_model`` quantizes a whole float model (spec chapter 13), with
``verify_models`` and ``inspect_model`` behind the ``verify``/``inspect`` commands.
"""

from ..formats.matmulnbits import matmulnbits_block_size
from .export.constants import IR_VERSION, MS_DOMAIN, OPSET
from .export.initializers import tensor_from_onnx, tensor_to_onnx
from .export.matmulbnb4_node import bnb4_layout
from .export.matmulnbits_node import matmulnbits_arrays, matmulnbits_node
from .export.models import linear_model, mlp_model, nf4_linear_model
from .export.nf4_subgraph import nf4_weight_subgraph
from .export.qdq import input_permutation, weight_subgraph
from .inspect import inspect_model
from .model_io import load_model, save, save_model
from .quantizer.algorithm import Algorithm, WeightContext
from .quantizer.pipeline import quantize_model, quantize_model_with_report
from .quantizer.registry import register_algorithm
from .runtime import (
    fused_op_types,
    int8_activation_reference,
    make_session,
    max_relative_error,
    optimized_model,
    run_model,
)
from .verify import make_inputs, verify_models

__all__ = [
    # tensors and subgraphs (spec 9.1-9.3)
    "tensor_to_onnx",
    "tensor_from_onnx",
    "weight_subgraph",
    "input_permutation",
    # onnxruntime's MatMulNBits layout (spec 9.4)
    "matmulnbits_node",
    "matmulnbits_block_size",
    "matmulnbits_arrays",
    # models
    "linear_model",
    "mlp_model",
    # NF4 and double-quantized weights (spec 10.6, 11.4)
    "nf4_weight_subgraph",
    "nf4_linear_model",
    "bnb4_layout",
    # running in onnxruntime (spec 9.5-9.6)
    "make_session",
    "run_model",
    "optimized_model",
    "fused_op_types",
    "max_relative_error",
    "int8_activation_reference",
    # quantizing a whole model (spec 13)
    "quantize_model",
    "quantize_model_with_report",
    "Algorithm",
    "WeightContext",
    "register_algorithm",
    "load_model",
    "save",
    "save_model",
    "verify_models",
    "make_inputs",
    "inspect_model",
    # constants
    "OPSET",
    "IR_VERSION",
    "MS_DOMAIN",
]
