"""ONNX export of NF4 weights as a codebook lookup (spec section 10.6).

Standard operators only (opset 21), so any runtime runs the graph. The
initializers are those of
:func:`~monoquant_np.onnx.export.initializers.tensor_to_onnx` (spec 9.1), so
``tensor_from_onnx`` reads an exported NF4 weight back. NF4, weight ``W`` of
shape ``S`` grouped along ``axis``, named ``w``::

    w           UINT4  S            the codes, packed low nibble first (= qt.data)
    w_codebook  FLOAT  (16,)        NF4_CODEBOOK
    w_scale     FLOAT  group_shape  the absmax (without double quantization)

    idx   = Cast(w, to=INT32)                             S
    vals  = Gather(w_codebook, idx)                       S   codebook[q]
    W     = vals * expand(scale)                          S   (Reshape + Mul when
            S[axis] % block_size == 0, else a Gather of the scale along axis, then Mul)

With double quantization the scale is ``w_scale_rebuilt`` of
:mod:`~monoquant_np.onnx.export.double_quant_subgraph` (spec 11.4), and a
double-quantized weight with linear codes goes there whole.

Cost in onnxruntime: constant folding evaluates the whole lookup (every input
is an initializer) once at session creation and keeps the float32 weight: the
file is 4-bit, the session's memory is float32 and the speed is a float
``MatMul``. It cannot use ``MatMulNBits`` (linear codes only); onnxruntime's
``com.microsoft.MatMulBnb4`` runs NF4 codes directly
(:mod:`~monoquant_np.onnx.export.matmulbnb4_node`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper

from ...errors import check_choice, check_name
from ...tensor import QuantizedTensor, check_qt
from .dequantize_linear import cast_node, float32_scale
from .double_quant_subgraph import SCALE_REBUILDS, double_quant_weight_subgraph, rebuilt_scale_subgraph
from .initializers import int64_tensor, weight_initializers

__all__ = ["nf4_weight_subgraph", "SCALE_REBUILDS"]


def _check_qt(qt: Any) -> QuantizedTensor:
    check_qt(qt)
    if qt.codebook is None and qt.double_quant is None:
        raise ValueError(
            f"nf4_weight_subgraph exports NF4 or double-quantized tensors, got a plain {qt.scheme} "
            "tensor (export it with monoquant_np.onnx.export.qdq.weight_subgraph)"
        )
    return qt


def _codebook_lookup(name: str) -> list[NodeProto]:
    """``name_vals = Gather(name_codebook, Cast(name, to=INT32), axis=0)``: ``codebook[q]``, shape of the weight."""
    return [
        cast_node(name, name + "_idx", np.int32, name + "_cast"),
        helper.make_node("Gather", [name + "_codebook", name + "_idx"], [name + "_vals"], name=name + "_lookup",
                         axis=0),
    ]


def _scale_multiply(qt: QuantizedTensor, name: str, scale: str, out_name: str
                    ) -> tuple[list[TensorProto], list[NodeProto]]:
    """``out_name = name_vals * scale`` along ``qt.axis``: Reshapes when the groups are whole, else a Gather."""
    length, bs, ax = qt.shape[qt.axis], qt.block_size, qt.axis
    if length % bs:  # a partial last group: expand the scale with a Gather along axis
        return [int64_tensor(name + "_group_idx", np.arange(length) // bs)], [
            helper.make_node("Gather", [scale, name + "_group_idx"], [name + "_scale_el"], name=name + "_scale_expand",
                             axis=ax),
            helper.make_node("Mul", [name + "_vals", name + "_scale_el"], [out_name], name=name + "_mul"),
        ]
    g = length // bs  # (.., G, B, ..) * (.., G, 1, ..)
    split = qt.shape[:ax] + (g, bs) + qt.shape[ax + 1 :]
    sshape = qt.shape[:ax] + (g, 1) + qt.shape[ax + 1 :]
    inits = [int64_tensor(name + "_split_shape", split), int64_tensor(name + "_scale_bshape", sshape),
             int64_tensor(name + "_shape", qt.shape)]
    return inits, [
        helper.make_node("Reshape", [name + "_vals", name + "_split_shape"], [name + "_vals_split"],
                         name=name + "_split"),
        helper.make_node("Reshape", [scale, name + "_scale_bshape"], [name + "_scale_b"], name=name + "_scale_bcast"),
        helper.make_node("Mul", [name + "_vals_split", name + "_scale_b"], [name + "_w_split"], name=name + "_mul"),
        helper.make_node("Reshape", [name + "_w_split", name + "_shape"], [out_name], name=name + "_merge"),
    ]


def nf4_weight_subgraph(
    qt: QuantizedTensor, name: str, out_name: str, *, scale_rebuild: str = "dequantizelinear"
) -> tuple[list[TensorProto], list[NodeProto]]:
    """The float32 weight of an NF4 or double-quantized tensor, as ONNX initializers and nodes.

    The initializers are exactly ``weight_initializers(qt, name)`` (so
    ``tensor_from_onnx`` reads them back): ``name`` (UINT4 NF4 codes, or the
    INT4/UINT4/INT8 codes), ``name_scale`` or ``name_scale_codes`` /
    ``name_scale_scale`` / ``name_scale_offset``, ``name_zero_point``,
    ``name_codebook``; plus int64 shape and index constants named ``name_*``.

    Args:
        qt: NF4 (``codebook`` set, with or without ``double_quant``), or an
            int4/uint4/int8 tensor with ``double_quant``.
        name: the weight's name (prefix of every initializer and node).
        out_name: the output tensor: float32 of shape ``qt.shape``, in stored
            order (``qt.perm`` is *not* undone; permute the activations).
        scale_rebuild: how double-quantized scales are rebuilt (spec 11.4):
            ``"dequantizelinear"`` (``DequantizeLinear(k, c, block_size)``
            then ``Add``), or ``"arithmetic"`` (``Cast(k) * c + offset`` with
            ``c`` repeated by ``Expand``/``Slice``), which onnxruntime
            constant-folds, so a double-quantized int4/uint4 weight still
            fuses into ``MatMulNBits``. Both are bit-identical to
            ``DoubleQuant.rebuild()``.

    Returns:
        ``(initializers, nodes)``, opset 21, standard domain only. The output
        equals ``dequantize_slice(qt, 0, qt.shape[0])`` bit for bit.
    """
    qt = _check_qt(qt)
    check_choice(scale_rebuild, SCALE_REBUILDS, "scale_rebuild")
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    if qt.codebook is None:  # double-quantized linear codes: DequantizeLinear with the rebuilt scale
        return double_quant_weight_subgraph(qt, name, out_name, scale_rebuild=scale_rebuild)
    inits = weight_initializers(qt, name)
    if qt.double_quant is not None:
        rb_inits, nodes = rebuilt_scale_subgraph(qt, name, scale_rebuild)
        inits += rb_inits
        scale = name + "_scale_rebuilt"
    else:
        scale, nodes = float32_scale(qt, name)
    mul_inits, mul_nodes = _scale_multiply(qt, name, scale, out_name)
    return inits + mul_inits, nodes + _codebook_lookup(name) + mul_nodes
