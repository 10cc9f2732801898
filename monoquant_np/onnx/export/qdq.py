"""The float weight of any ``QuantizedTensor`` as a ``DequantizeLinear`` subgraph (spec sections 9.2-9.3).

:func:`weight_subgraph` is the one entry point for "this quantized weight,
as a float32 tensor in the graph": a plain int4/uint4/int8 tensor becomes
``DequantizeLinear`` on the initializers of
:func:`~monoquant_np.onnx.export.initializers.tensor_to_onnx` (spec 9.1); an
NF4 tensor goes to :mod:`~monoquant_np.onnx.export.nf4_subgraph` (spec 10.6)
and a double-quantized one to
:mod:`~monoquant_np.onnx.export.double_quant_subgraph` (spec 11.4).
:func:`input_permutation` is the ``Gather`` that an act-order weight's
consumer puts on its activations.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...errors import check_name
from ...tensor import QuantizedTensor, check_qt
from .dequantize_linear import float32_scale, weight_dequantize_node
from .double_quant_subgraph import double_quant_weight_subgraph
from .initializers import weight_initializers
from .nf4_subgraph import nf4_weight_subgraph

__all__ = ["weight_subgraph", "input_permutation"]


def weight_subgraph(
    qt: QuantizedTensor, name: str, out_name: str, *, scale_rebuild: str | None = None
) -> tuple[list[TensorProto], list[NodeProto]]:
    """Initializers and nodes that make float32 ``out_name`` = ``dequantize(qt)`` in STORED order.

    ``out_name`` has shape ``qt.shape`` and equals ``(q - z) * s`` elementwise
    (``DequantizeLinear`` computes ``(x - zero_point) * scale`` in float32;
    spec 9.2). A float16 scale is kept float16 in the file and widened by a
    ``Cast`` of the scale before ``DequantizeLinear`` (exact), so the output is
    float32 and onnxruntime still constant-folds the Cast and fuses into
    ``MatMulNBits``. (Casting the float16 *output* of ``DequantizeLinear``
    instead rounds every weight to float16 and prevents the fusion; spec 9.3.)

    When ``qt.perm`` is set the weight is in stored order: the consumer must
    permute the activations (:func:`input_permutation`, a ``Gather`` on the
    last axis) for an axis-0 weight, or the output for an axis-1 weight.

    NF4 tensors are built by :func:`~monoquant_np.onnx.export.nf4_subgraph.nf4_weight_subgraph`
    and double-quantized linear codes by
    :func:`~monoquant_np.onnx.export.double_quant_subgraph.double_quant_weight_subgraph`,
    with ``scale_rebuild`` forwarded. Its default (None) picks ``"arithmetic"``
    for double-quantized int4/uint4/int8 codes, which onnxruntime
    constant-folds so the weight still fuses into ``MatMulNBits``, and
    ``"dequantizelinear"`` (the standard-operator form of spec 11.4) for NF4,
    which cannot fuse anyway.

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: empty names; an unknown ``scale_rebuild``.
    """
    qt = check_qt(qt)
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    if qt.codebook is not None:
        rebuild = "dequantizelinear" if scale_rebuild is None else scale_rebuild
        return nf4_weight_subgraph(qt, name, out_name, scale_rebuild=rebuild)
    if qt.double_quant is not None:
        rebuild = "arithmetic" if scale_rebuild is None else scale_rebuild
        return double_quant_weight_subgraph(qt, name, out_name, scale_rebuild=rebuild)
    scale, nodes = float32_scale(qt, name)
    return weight_initializers(qt, name), nodes + [weight_dequantize_node(qt, name, scale, out_name)]


def input_permutation(qt: QuantizedTensor, name: str, x_name: str, out_name: str
                      ) -> tuple[list[TensorProto], list[NodeProto]]:
    """``out_name = x[..., qt.perm]`` (``Gather`` on the last axis) for an axis-0 weight with ``perm``.

    ``x @ dequantize(qt) == x[..., perm] @ W_stored`` (spec 6), so a MatMul on
    the stored weight of :func:`weight_subgraph` or :func:`matmulnbits_node`
    takes ``out_name`` as its input A. Returns ``([], [])`` without ``perm``.
    """
    qt = check_qt(qt)
    if qt.perm is None:
        return [], []
    if qt.axis != 0:
        raise ValueError(f"input_permutation needs an axis-0 weight, got axis {qt.axis}")
    perm = numpy_helper.from_array(qt.perm, check_name(name, "name") + "_perm")
    node = helper.make_node("Gather", [check_name(x_name, "x_name"), perm.name], [check_name(out_name, "out_name")],
                            name=name + "_perm_gather", axis=-1)
    return [perm], [node]
