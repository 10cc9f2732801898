"""The option table of the ONNX side: choices and defaults, read by the API and the command line (spec 9.4, 13.3, 13.9).

Every option that offers a fixed list of choices is written here once; the
functions that take it (``linear_model``, ``quantize_model``, ``make_session``)
check it against this table, and the command line builds its ``choices`` and
defaults from it, so the two cannot drift apart.

    >>> FORMATS
    ('qdq', 'matmulnbits')
    >>> check_accuracy_level(4)
    4
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SCHEMES",
    "DEFAULT_SCHEME",
    "BITS",
    "DEFAULT_BITS",
    "SCALE_DTYPES",
    "DEFAULT_SCALE_DTYPE",
    "FORMATS",
    "DEFAULT_FORMAT",
    "OPS",
    "DEFAULT_OPS",
    "GATHER_OPS",
    "DEFAULT_GATHER_OP",
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "ACCURACY_LEVELS",
    "TARGETS",
    "DEFAULT_TARGET",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_MIN_ELEMENTS",
    "DEFAULT_STAGE_BYTES",
    "check_accuracy_level",
]

#: Code schemes of the model quantizer (spec 1, 10, 18, 19).
SCHEMES = ("int4", "uint4", "nf4", "mxfp4", "nvfp4")
DEFAULT_SCHEME = "int4"
#: Code widths of the linear schemes (``int4``/``uint4`` become int2/uint2 or int8/uint8, spec 20).
BITS = (2, 4, 8)
DEFAULT_BITS = 4
#: Dtypes of the stored group scales (spec 3.4).
#: ``auto``: float16 scales when every quantized weight of the model is float16 (and the scheme is
#: int4/uint4), float32 otherwise (spec 13.3), so that a float16 model runs MatMulNBits in float16.
SCALE_DTYPES = ("auto", "float32", "float16")
DEFAULT_SCALE_DTYPE = "auto"
#: How a MatMul weight is written: ``DequantizeLinear`` -> ``MatMul`` (standard
#: ONNX) or onnxruntime's ``com.microsoft.MatMulNBits`` (spec 9.2, 9.4).
FORMATS = ("qdq", "matmulnbits")
DEFAULT_FORMAT = "qdq"
#: Operators whose weights the model quantizer may quantize (spec 13.1).
OPS = ("MatMul", "Gemm", "Gather")
DEFAULT_OPS = ("MatMul", "Gemm")
#: How a quantized ``Gather`` table is read (spec 13.2).
GATHER_OPS = ("GatherBlockQuantized", "DequantizeLinear")
DEFAULT_GATHER_OP = "GatherBlockQuantized"
#: The model quantizer's algorithms, and whether each needs calibration inputs (spec 13.3, 14).
ALGORITHMS = {"rtn": False, "mse": False, "gptq": True, "awq": True}
DEFAULT_ALGORITHM = "rtn"
#: Elements per group along the reduction axis.
DEFAULT_GROUP_SIZE = 128
#: Weights with fewer elements stay float (spec 13.1).
DEFAULT_MIN_ELEMENTS = 4096
#: The runtime an export is for: the graph forms it runs exactly (spec 16.4). ``portable``: the forms
#: every runtime of the conformance matrix runs (standard operators, no 4-bit tensors, whole blocks).
TARGETS = ("onnxruntime", "openvino", "tract", "portable")
DEFAULT_TARGET = "onnxruntime"
#: Weight bytes per stage when calibration and ``verify`` run a model stage by stage (spec 14.5).
DEFAULT_STAGE_BYTES = 256 << 20
#: ``MatMulNBits``' ``accuracy_level`` and onnxruntime's session option of the
#: same name: the precision its fused kernel computes in (spec 9.6).
ACCURACY_LEVELS = {0: "unset (float32 on CPU)", 1: "float32", 2: "float16", 3: "bfloat16", 4: "int8"}


def check_accuracy_level(level: Any, name: str = "accuracy_level") -> int:
    """``level`` as an int if it is a key of :data:`ACCURACY_LEVELS`, else a ``ValueError`` naming ``name``."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or int(level) not in ACCURACY_LEVELS:
        raise ValueError(f"{name} must be one of {sorted(ACCURACY_LEVELS)}, got {level!r}")
    return int(level)
