"""The versions and the contrib domain that every exported model declares (spec chapter 9).

Opset 21 is where ``DequantizeLinear`` gained ``block_size`` and the
``INT4``/``UINT4`` types; IR version 10 is the IR of opset 21. onnx 1.23
writes IR 14 by default, which onnxruntime 1.32 (at most IR 13) refuses to
load, so every model sets ``ir_version`` explicitly. ``INT2``/``UINT2`` (2-bit
codes, spec 20) arrived in opset 25 (IR 13): a model with a 2-bit weight
declares those instead.
"""

from __future__ import annotations

__all__ = ["OPSET", "IR_VERSION", "INT2_OPSET", "INT2_IR_VERSION", "MS_DOMAIN", "ir_version_for"]

#: The opset of every exported model: blocked DequantizeLinear and INT4/UINT4 arrived in 21.
OPSET = 21
#: IR version 10 goes with opset 21; onnxruntime 1.32 loads IR <= 13 (onnx 1.23 writes 14).
IR_VERSION = 10
#: The opset of a model with ``INT2``/``UINT2`` weights (``DequantizeLinear`` takes them from 25).
INT2_OPSET = 25
#: The IR version of opset 25 (onnx 1.20).
INT2_IR_VERSION = 13
#: The domain of onnxruntime's contrib operators (MatMulNBits, MatMulBnb4, GatherBlockQuantized).
MS_DOMAIN = "com.microsoft"


def ir_version_for(opset: int) -> int:
    """The IR version an exported model of ``ai.onnx`` opset ``opset`` declares: 10 for 21, 12 for 24, 13 for 25."""
    if opset >= INT2_OPSET:
        return INT2_IR_VERSION
    return 12 if opset >= 24 else IR_VERSION  # opset 24 (FLOAT8E8M0 scales, spec 19.7) came with IR 12
