"""ONNX export of double-quantized scales (spec section 11.4).

Standard operators only (opset 21). Double quantization replaces a weight's
``name_scale`` by its 8-bit storage (the initializers of
:func:`~monoquant_np.onnx.export.initializers.tensor_to_onnx`)::

    name_scale_codes   INT8   scale dims        DoubleQuant.codes
    name_scale_scale   FLOAT  (n_blocks,)       DoubleQuant.scale
    name_scale_offset  FLOAT  ()                DoubleQuant.offset

and :func:`rebuilt_scale_subgraph` computes ``name_scale_rebuilt`` =
``DoubleQuant.rebuild()`` from them, in one of two ways (``scale_rebuild``):

* ``"dequantizelinear"``::

      scale = Reshape(DequantizeLinear(Reshape(name_scale_codes, [-1]), name_scale_scale,
                      axis=0, block_size=dq_block_size) + name_scale_offset, scale dims)

* ``"arithmetic"``: ``Cast(k) * c_el + offset``, ``c_el`` = each block's
  ``c`` repeated ``block_size`` times (``Reshape``, ``Expand``, ``Reshape``,
  ``Slice``).

Both are ``DoubleQuant.rebuild()`` operation for operation (an int8 times a
float32, then a float32 add), so they are bit-exact. A double-quantized int4,
uint4 or int8 weight feeds the rebuilt scale to the usual
``DequantizeLinear(name, scale, name_zero_point, axis, block_size)``
(:func:`double_quant_weight_subgraph`); NF4 feeds it to its codebook graph.

Costs in onnxruntime: the scale input of the weight's ``DequantizeLinear`` is
computed, not an initializer. ONNX allows that, but onnxruntime's QDQ fusion
into ``MatMulNBits`` needs constant scales and it never constant-folds
``DequantizeLinear``, so with ``"dequantizelinear"`` the layer runs unfused
(``DequantizeLinear`` of the whole weight on each call, then ``MatMul``).
``"arithmetic"`` is constant-folded at session creation: the file keeps the
8-bit scales and the session fuses the layer into ``MatMulNBits`` as if it
had float scales.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto, helper

from ...double_quant import DoubleQuant
from ...errors import check_choice
from ...tensor import QuantizedTensor
from .dequantize_linear import cast_node, dequantize_attrs, dequantize_linear_node, weight_dequantize_node
from .initializers import int64_tensor, scale_dims, weight_initializers

__all__ = ["rebuilt_scale_subgraph", "double_quant_weight_subgraph", "SCALE_REBUILDS"]

#: ``scale_rebuild`` choices for double-quantized scales.
SCALE_REBUILDS = ("dequantizelinear", "arithmetic")


def _dequantizelinear_rebuild(dq: DoubleQuant, name: str, k: str, kc: str
                              ) -> tuple[list[TensorProto], list[NodeProto]]:
    """``kc = DequantizeLinear(k, name_scale_scale; axis=0, block_size)``: float32 ``k * c_j``."""
    attrs = dequantize_attrs(1, 0, dq.block_size, int(dq.scale.size))
    return [], [dequantize_linear_node(k, name + "_scale_scale", kc, name + "_scale_dq", attrs)]


def _arithmetic_rebuild(dq: DoubleQuant, name: str, k: str, kc: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """``kc = Cast(k) * c_el``, ``c_el`` = ``c`` repeated ``block_size`` times and cut to ``n`` (constant-foldable)."""
    nb, n, p = int(dq.scale.size), int(dq.codes.size), name + "_scale"
    inits = [int64_tensor(p + "_nb1", [nb, 1]), int64_tensor(p + "_nbB", [nb, dq.block_size]),
             int64_tensor(p + "_zero", [0]), int64_tensor(p + "_n", [n])]
    nodes = [
        cast_node(k, k + "f", "float32", p + "_cast"),
        helper.make_node("Reshape", [p + "_scale", p + "_nb1"], [p + "_c1"], name=p + "_c_col"),
        helper.make_node("Expand", [p + "_c1", p + "_nbB"], [p + "_cB"], name=p + "_c_rep"),
        helper.make_node("Reshape", [p + "_cB", p + "_flat_shape"], [p + "_cflat"], name=p + "_c_flat"),
        helper.make_node("Slice", [p + "_cflat", p + "_zero", p + "_n"], [p + "_cel"], name=p + "_c_cut"),
        helper.make_node("Mul", [k + "f", p + "_cel"], [kc], name=p + "_mul"),
    ]
    return inits, nodes


def rebuilt_scale_subgraph(qt: QuantizedTensor, name: str, mode: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """Initializers and nodes making float32 ``name_scale_rebuilt`` = ``qt.double_quant.rebuild()``.

    The output has the scale dims of ``qt``
    (:func:`~monoquant_np.onnx.export.initializers.scale_dims`); it reads
    ``name_scale_codes``, ``name_scale_scale`` and ``name_scale_offset``.
    ``mode`` is one of :data:`SCALE_REBUILDS` (module docstring).

    Raises:
        ValueError: ``qt`` has no ``double_quant``; an unknown ``mode``.
    """
    check_choice(mode, SCALE_REBUILDS, "scale_rebuild")
    dq = qt.double_quant
    if dq is None:
        raise ValueError(f"qt must have double-quantized scales to rebuild for {name!r}, got plain {qt.scheme} scales")
    p = name + "_scale"
    k, kc = p + "_k", p + "_kc"
    inits = [int64_tensor(p + "_flat_shape", [-1]), int64_tensor(p + "_dims", scale_dims(qt))]
    nodes = [helper.make_node("Reshape", [p + "_codes", p + "_flat_shape"], [k], name=p + "_flatten")]
    build = _dequantizelinear_rebuild if mode == "dequantizelinear" else _arithmetic_rebuild
    more_inits, more_nodes = build(dq, name, k, kc)
    nodes += more_nodes + [
        helper.make_node("Add", [kc, p + "_offset"], [p + "_flat"], name=p + "_add"),
        helper.make_node("Reshape", [p + "_flat", p + "_dims"], [p + "_rebuilt"], name=p + "_reshape"),
    ]
    return inits + more_inits, nodes


def double_quant_weight_subgraph(qt: QuantizedTensor, name: str, out_name: str, *, scale_rebuild: str
                                 ) -> tuple[list[TensorProto], list[NodeProto]]:
    """Float32 ``out_name`` = the STORED weight of a double-quantized int4/uint4/int8 ``qt``.

    ``DequantizeLinear(name, name_scale_rebuilt[, name_zero_point])`` with the
    scale from :func:`rebuilt_scale_subgraph`; the initializers are
    ``weight_initializers(qt, name)`` plus the rebuild's int64 constants.

    Raises:
        ValueError: ``qt`` has a codebook (NF4 goes through ``nf4_weight_subgraph``)
            or no ``double_quant``; an unknown ``scale_rebuild``.
    """
    if qt.codebook is not None:
        raise ValueError(f"double_quant_weight_subgraph exports linear codes, got {qt.scheme} with a codebook "
                         "(export it with nf4_weight_subgraph)")
    rb_inits, rb_nodes = rebuilt_scale_subgraph(qt, name, scale_rebuild)
    dq_node = weight_dequantize_node(qt, name, name + "_scale_rebuilt", out_name)
    return weight_initializers(qt, name) + rb_inits, rb_nodes + [dq_node]
