"""The ``DequantizeLinear`` node and the ``Cast`` that widens a float16 scale (spec sections 9.2-9.3).

Every ``DequantizeLinear`` and every dtype ``Cast`` of the ONNX side is built
here: the weight subgraphs of ``qdq``, ``nf4_subgraph`` and
``double_quant_subgraph``, and the model quantizer's rewrite.

``DequantizeLinear(x, scale[, zero_point])`` computes ``(x - zero_point) *
scale`` per element, in the scale's type; its attributes select one of three
layouts (:func:`dequantize_attrs`):

* blocked: ``axis``, ``block_size``: one scale per block of ``block_size``
  elements along ``axis`` (the scale has the group shape, spec 2);
* per axis: ``axis`` only: a 1-D scale along ``axis`` (the int8 fallback's
  ``(N,)`` scale, ``axis = 1 - qt.axis``);
* per tensor: no attributes, a one-element scale.

# Note: onnxruntime reads a one-element 1-D scale as per-tensor and rejects
# ``block_size`` there ("block_size must be 0 for per-tensor quantization");
# a 1-D tensor with a single group is therefore dequantized per tensor (the
# same values).

A float16 scale stays float16 in the file and a ``Cast(to=FLOAT)`` **of the
scale** feeds ``DequantizeLinear`` (:func:`float32_scale`): widening is exact,
onnxruntime constant-folds the Cast and still fuses into ``MatMulNBits``,
while casting the float16 *output* would round every weight to float16.

    >>> node = dequantize_linear_node("w", "w_scale", "w_dq", "w_dq", {"axis": 0, "block_size": 32})
    >>> node.op_type, [(a.name, a.i) for a in node.attribute]
    ('DequantizeLinear', [('axis', 0), ('block_size', 32)])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from onnx import NodeProto, helper

from ...tensor import QuantizedTensor
from .initializers import is_per_axis

__all__ = ["dequantize_attrs", "dequantize_linear_node", "weight_dequantize_node", "cast_node", "float32_scale"]


def dequantize_attrs(rank: int, axis: int, block_size: int, n_groups: int, *, per_axis: bool = False
                     ) -> dict[str, int]:
    """``DequantizeLinear`` attributes of a rank-``rank`` tensor in ``n_groups`` groups along ``axis``.

    ``per_axis``: the scale is 1-D along the other axis of a 2-D tensor
    (``{"axis": 1 - axis}``). A 1-D tensor with one group: per tensor (``{}``).
    Otherwise blocked: ``{"axis": axis, "block_size": block_size}``.

    >>> dequantize_attrs(2, 0, 16, 3), dequantize_attrs(1, 0, 5, 1), dequantize_attrs(2, 0, 8, 1, per_axis=True)
    ({'axis': 0, 'block_size': 16}, {}, {'axis': 1})
    """
    if per_axis:
        return {"axis": 1 - axis}
    if rank == 1 and n_groups == 1:
        return {}
    return {"axis": axis, "block_size": block_size}


def dequantize_linear_node(x: str, scale: str, y: str, name: str, attrs: dict[str, int],
                           zero_point: str | None = None) -> NodeProto:
    """``y = DequantizeLinear(x, scale[, zero_point])`` with ``attrs`` (:func:`dequantize_attrs`), node ``name``."""
    node = helper.make_node("DequantizeLinear", [x, scale] + ([zero_point] if zero_point else []), [y], name=name)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in sorted(attrs.items()))
    return node


def weight_dequantize_node(qt: QuantizedTensor, name: str, scale: str, y: str) -> NodeProto:
    """``DequantizeLinear`` of the weight initializers ``name`` / ``name_zero_point`` of ``qt``, node ``name_dq``.

    ``scale`` is the name of the (float32, or float16 for a float16 output)
    scale in :func:`~monoquant_np.onnx.export.initializers.scale_dims` layout.
    """
    attrs = dequantize_attrs(len(qt.shape), qt.axis, qt.block_size, qt.n_groups, per_axis=is_per_axis(qt))
    zp = name + "_zero_point" if qt.zero_point is not None else None
    return dequantize_linear_node(name, scale, y, name + "_dq", attrs, zp)


def cast_node(x: str, y: str, dtype: npt.DTypeLike, name: str) -> NodeProto:
    """``y = Cast(x, to=dtype)``, ``dtype`` a NumPy dtype or its name (``"float32"``, ``"float16"``, ``"int32"``)."""
    return helper.make_node("Cast", [x], [y], name=name, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def float32_scale(qt: QuantizedTensor, name: str) -> tuple[str, list[NodeProto]]:
    """The float32 scale of weight ``name``: ``(name_scale, [])``, or ``(name_scale_f32, [Cast])`` for float16."""
    if qt.scale.dtype != np.float16:
        return name + "_scale", []
    return name + "_scale_f32", [cast_node(name + "_scale", name + "_scale_f32", np.float32, name + "_scale_cast")]
