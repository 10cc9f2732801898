"""ONNX export of MXFP4 and NVFP4 weights as ``DequantizeLinear`` of ``FLOAT4E2M1`` (spec 19.7).

The standard form, opset 24 (``FLOAT8E8M0`` scales arrived in 24, blocked
``FLOAT4E2M1`` in 23). A weight ``W`` of shape ``S`` blocked along ``axis``,
named ``w``::

    w               FLOAT4E2M1    S             the E2M1 codes, packed low nibble first (= qt.data)
    w_scale         FLOAT8E8M0    group_shape   MXFP4: the E8M0 codes
                    FLOAT8E4M3FN  group_shape   NVFP4: the E4M3 block codes
    w_tensor_scale  FLOAT         ()            NVFP4: g

    MXFP4:  W         = DequantizeLinear(w, w_scale, axis, block_size, output_dtype=FLOAT)
    NVFP4:  w_scale_f = DequantizeLinear(w_scale, w_tensor_scale)                 float32(e4m3(c) * g)
            W         = DequantizeLinear(w, w_scale_f, axis, block_size)          float32(E2M1[q] * S)

Both compute ``dequantize(qt)`` bit for bit (spec 18.3, 19.3): the E8M0 scale
is a power of two, and NVFP4's two nodes are the recipe's two float32
roundings in its order. The ONNX reference evaluator runs both; onnxruntime
1.32's CPU provider has no ``DequantizeLinear`` for ``FLOAT4E2M1`` and runs
the lookup form instead (:func:`~monoquant_np.onnx.export.qdq.weight_subgraph`:
``UINT4`` codes, ``Gather`` of the 16 E2M1 values, ``Mul`` by the float32
block scale, spec 10.6's graph).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper

from ... import __version__
from ...errors import check_name
from ...tensor import QuantizedTensor, check_qt
from .dequantize_linear import dequantize_linear_node
from .initializers import raw_tensor

__all__ = ["FP4_OPSET", "FP4_IR_VERSION", "fp4_initializers", "fp4_weight_subgraph", "fp4_weight_model",
           "fp4_linear_model"]

#: The opset of the standard FP4 form: ``DequantizeLinear`` takes ``FLOAT8E8M0`` scales from 24.
FP4_OPSET = 24
#: The IR version of opset 24 (onnx 1.19).
FP4_IR_VERSION = 12
_SCALE_TYPES = {"e8m0": TensorProto.FLOAT8E8M0, "e4m3": TensorProto.FLOAT8E4M3FN}


def _check_fp4(qt: Any) -> QuantizedTensor:
    qt = check_qt(qt)
    if qt.fp_scales is None:
        raise ValueError(f"qt must be an MXFP4 or NVFP4 tensor (quantize_mxfp4, quantize_nvfp4), got {qt.scheme}")
    if qt.perm is not None:
        raise ValueError("qt.perm is not exported in the FP4 form; FP4 tensors carry none")
    return qt


def fp4_initializers(qt: QuantizedTensor, name: str) -> list[TensorProto]:
    """``name`` (FLOAT4E2M1), ``name_scale`` (FLOAT8E8M0 or FLOAT8E4M3FN codes) and, for NVFP4,
    ``name_tensor_scale`` (FLOAT scalar): the stored bytes, verbatim."""
    qt = _check_fp4(qt)
    fp = qt.fp_scales
    assert fp is not None  # for mypy: _check_fp4 refused None
    inits = [raw_tensor(name, TensorProto.FLOAT4E2M1, qt.shape, qt.data),
             raw_tensor(name + "_scale", _SCALE_TYPES[fp.kind], fp.codes.shape, fp.codes)]
    if fp.kind == "e4m3":
        inits.append(raw_tensor(name + "_tensor_scale", TensorProto.FLOAT, (), np.float32(fp.tensor_scale)))
    return inits


def fp4_weight_subgraph(qt: QuantizedTensor, name: str, out_name: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """Float32 ``out_name`` = ``dequantize(qt)`` of an MXFP4/NVFP4 tensor, in the module's standard form.

    Returns ``(initializers, nodes)`` for opset :data:`FP4_OPSET`. ``ValueError``
    for a tensor without ``fp_scales``.
    """
    qt = _check_fp4(qt)
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    attrs = {"axis": qt.axis, "block_size": qt.block_size}
    inits = fp4_initializers(qt, name)
    if qt.scheme == "mxfp4":
        node = dequantize_linear_node(name, name + "_scale", out_name, name + "_dq",
                                      {**attrs, "output_dtype": TensorProto.FLOAT})
        return inits, [node]
    return inits, [
        dequantize_linear_node(name + "_scale", name + "_tensor_scale", name + "_scale_f32", name + "_scale_dq", {}),
        dequantize_linear_node(name, name + "_scale_f32", out_name, name + "_dq", attrs),
    ]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FP4_OPSET)],
                              producer_name="monoquant-np", producer_version=__version__)
    model.ir_version = FP4_IR_VERSION
    return model


def fp4_weight_model(qt: QuantizedTensor, output_name: str = "W") -> onnx.ModelProto:
    """A model without inputs whose one output is ``dequantize(qt)`` (float32, ``qt.shape``): the
    form any runtime can be checked on, value for value."""
    inits, nodes = fp4_weight_subgraph(qt, "w", check_name(output_name, "output_name"))
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(qt.shape))
    return _model(helper.make_graph(nodes, "monoquant_fp4_weight", [], [out], inits))


def fp4_linear_model(qt: QuantizedTensor, *, input_name: str = "x", output_name: str = "y") -> onnx.ModelProto:
    """``y = x @ dequantize(qt)`` for a 2-D ``(K, N)`` FP4 weight: ``(batch, K)`` -> ``(batch, N)``, float32."""
    qt = _check_fp4(qt)
    if len(qt.shape) != 2:
        raise ValueError(f"qt must be a 2-D (K, N) weight, got shape {qt.shape}")
    x, y = check_name(input_name, "input_name"), check_name(output_name, "output_name")
    inits, nodes = fp4_weight_subgraph(qt, "fc0_w", "fc0_w_f32")
    nodes.append(helper.make_node("MatMul", [x, "fc0_w_f32"], [y], name="fc0_matmul"))
    k, n = qt.shape
    graph = helper.make_graph(nodes, "monoquant_fp4_linear",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", k])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", n])], inits)
    return _model(graph)
