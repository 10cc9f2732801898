"""The versions and the contrib domain that every exported model declares (spec chapter 9).

Opset 21 is where ``DequantizeLinear`` gained ``block_size`` and the
``INT4``/``UINT4`` types; IR version 10 is the IR of opset 21. onnx 1.23
writes IR 14 by default, which onnxruntime 1.32 (at most IR 13) refuses to
load, so every model sets ``ir_version`` explicitly.
"""

from __future__ import annotations

__all__ = ["OPSET", "IR_VERSION", "MS_DOMAIN"]

#: The opset of every exported model: blocked DequantizeLinear and INT4/UINT4 arrived in 21.
OPSET = 21
#: IR version 10 goes with opset 21; onnxruntime 1.32 loads IR <= 13 (onnx 1.23 writes 14).
IR_VERSION = 10
#: The domain of onnxruntime's contrib operators (MatMulNBits, MatMulBnb4, GatherBlockQuantized).
MS_DOMAIN = "com.microsoft"
