"""Export targets: the graph form of each weight that a given runtime runs exactly (spec 16.4).

``target`` (one of :data:`~monoquant_np.onnx.options.TARGETS`) picks, per
weight, one of three forms; every form computes the spec's ``dequantize(qt)``
bit for bit, so the choice changes which runtimes load the model, not its
numbers:

* ``"dequantizelinear"``: :func:`~monoquant_np.onnx.export.qdq.weight_subgraph`
  (INT4/UINT4 codes, blocked ``DequantizeLinear``; NF4's codebook graph), the
  form of spec 9-11;
* ``"arithmetic-int4"`` / ``"arithmetic-nibbles"`` / ``"arithmetic-bytes"``:
  :func:`~monoquant_np.onnx.export.arithmetic_subgraph.arithmetic_weight_subgraph`
  (``Cast``, ``Mul`` on whole blocks, then ``Slice``) with the codes in an
  INT4/UINT4 tensor, two per UINT8 byte (unpacked by ``BitwiseAnd`` and
  ``BitShift``), or one per byte (8-bit codes);

and whether a MatMul weight becomes ``com.microsoft.MatMulNBits``:

===============  =========================================  ====================  ==============
target           float weight form                          MatMulNBits           Gather tables
===============  =========================================  ====================  ==============
``onnxruntime``  dequantizelinear                           ``format=``           ``gather_op=``
``openvino``     dequantizelinear for axis-0 whole blocks,  ``format=``           float table
                 the int8 fallback and NF4; float4 for
                 MXFP4/NVFP4 of whole blocks (opset 24,
                 spec 19.7); else arithmetic-int4
``tract``        the int8 fallback: dequantizelinear;       wherever exact        float table
                 else arithmetic-nibbles (4-bit codes),     (4-bit; block 32 with
                 arithmetic-bytes (8-bit codes)             float16 scales)
``portable``     the int8 fallback: dequantizelinear;       never (standard ops)  float table
                 else arithmetic-bytes
===============  =========================================  ====================  ==============

The reasons, runtime by runtime, are spec 16.2's findings: OpenVINO rejects a
partial last block and blocks along axis 1 of a MatMul weight, and the
``DequantizeLinear`` rebuild of double-quantized scales; tract has no INT4/UINT4
tensors and no blocked ``DequantizeLinear`` but runs ``MatMulNBits`` (rounding
the scales of block size 32 to float16); OpenVINO computes a wrong weight
from nibbles unpacked with ``BitwiseAnd``/``BitShift`` when they feed a
``MatMul``, so ``portable`` stores one code per byte; the ONNX
reference evaluator runs no ``com.microsoft`` operator.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.ones((40, 3), np.float32), group_size=16)  # 40 = 16 + 16 + 8: a partial block
    >>> [weight_form(qt, t) for t in ("onnxruntime", "openvino", "tract", "portable")]
    ['dequantizelinear', 'arithmetic-int4', 'arithmetic-nibbles', 'arithmetic-bytes']
    >>> [uses_matmulnbits(qt, t, "qdq") for t in ("onnxruntime", "openvino", "tract", "portable")]
    [False, False, True, False]
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto

from ...errors import check_choice
from ...formats.matmulnbits import matmulnbits_block_size
from ...tensor import QuantizedTensor
from ..options import DEFAULT_TARGET, FORMATS, GATHER_OPS, TARGETS
from .arithmetic_subgraph import arithmetic_weight_subgraph
from .constants import OPSET
from .fp4_subgraph import FP4_OPSET, fp4_weight_subgraph
from .initializers import is_per_axis
from .qdq import weight_subgraph

__all__ = ["WEIGHT_FORMS", "weight_form", "uses_matmulnbits", "int2_misfused", "target_weight_subgraph",
           "target_options", "target_opset"]

#: The float-weight forms a target chooses among (module docstring).
WEIGHT_FORMS = ("dequantizelinear", "arithmetic-int4", "arithmetic-nibbles", "arithmetic-bytes", "float4")


def _openvino_reads_dequantizelinear(qt: QuantizedTensor) -> bool:
    """OpenVINO 2026.4 converts this weight's DequantizeLinear (or NF4 codebook graph) exactly (spec 16.2)."""
    if qt.double_quant is not None:
        return False  # its 1-D blocked DequantizeLinear rebuild is rejected
    if qt.codebook is not None or is_per_axis(qt):
        return True  # Gather/Mul, and the per-axis int8 form
    return qt.axis == 0 and qt.shape[0] % qt.block_size == 0


def weight_form(qt: QuantizedTensor, target: str = DEFAULT_TARGET) -> str:
    """The form (:data:`WEIGHT_FORMS`) in which ``target`` reads ``qt`` as a float tensor (module table)."""
    check_choice(target, TARGETS, "target")
    if target == "onnxruntime":
        return "dequantizelinear"
    if target == "openvino" and qt.fp_scales is not None and qt.shape[qt.axis] % qt.block_size == 0:
        return "float4"  # MXFP4/NVFP4 as DequantizeLinear of FLOAT4E2M1 (spec 19.7), whole blocks
    if target == "openvino":
        return "dequantizelinear" if _openvino_reads_dequantizelinear(qt) else "arithmetic-int4"
    if is_per_axis(qt) and qt.double_quant is None:
        return "dequantizelinear"  # INT8 per-channel DequantizeLinear: every runtime of the matrix runs it
    if target == "tract" and qt.bits == 4:
        return "arithmetic-nibbles"
    return "arithmetic-bytes"  # portable: OpenVINO miscomputes nibbles unpacked before a MatMul (spec 16.2)


def _tract_matmulnbits_exact(qt: QuantizedTensor) -> bool:
    """tract 0.23 runs this weight's ``MatMulNBits`` within float32 rounding (spec 16.2).

    # Note: tract computes a ``MatMulNBits`` of block size 32 with its Q4_0
    # kernel, whose block scales are float16: float32 scales are rounded (about
    # 2.5e-4 of the output, measured), so block 32 needs float16-exact scales.
    """
    block = matmulnbits_block_size(qt)
    if block is None or qt.bits != 4:
        return False
    return block != 32 or bool(np.array_equal(qt.scale.astype(np.float16).astype(np.float32), qt.scale))


def uses_matmulnbits(qt: QuantizedTensor, target: str, format: str) -> bool:  # noqa: A002 - the option's name
    """True when a MatMul on ``qt`` is exported as ``MatMulNBits`` for ``target`` and ``format``.

    ``onnxruntime``/``openvino``: when ``format="matmulnbits"`` and the weight
    fits (:func:`~monoquant_np.formats.matmulnbits.matmulnbits_block_size`);
    ``onnxruntime`` also for a fitting 2-bit weight whose ``N`` is not a
    multiple of 4, which onnxruntime 1.32 would fuse wrongly (spec 20.8);
    ``tract``: whenever a 4-bit weight fits and tract computes it exactly
    (block size 32 only with float16-exact scales); ``portable``: never.
    """
    check_choice(target, TARGETS, "target")
    if target == "tract":
        return _tract_matmulnbits_exact(qt)
    fits = matmulnbits_block_size(qt) is not None
    if target == "onnxruntime" and fits and int2_misfused(qt):
        return True
    return target != "portable" and format == "matmulnbits" and fits


def int2_misfused(qt: QuantizedTensor) -> bool:
    """True for a 2-D 2-bit weight with ``N % 4 != 0``: onnxruntime 1.32 fuses ``DequantizeLinear(INT2/UINT2)``
    -> ``MatMul`` into a ``MatMulNBits(bits=2)`` that computes wrong values for it (rows of the ``(K, N)`` INT2
    tensor then do not start on a byte), while its own ``MatMulNBits`` node is exact (spec 20.8)."""
    return qt.bits == 2 and len(qt.shape) == 2 and qt.shape[1] % 4 != 0


def target_options(target: str, format: str, gather_op: str) -> tuple[str, str]:  # noqa: A002
    """``(format, gather_op)`` as ``target`` applies them; a ``ValueError`` when they conflict.

    ``tract`` writes ``MatMulNBits`` wherever exact (``format`` becomes
    ``"matmulnbits"``); ``portable`` is standard operators only, so
    ``format="matmulnbits"`` is an error; every target but ``onnxruntime``
    reads quantized ``Gather`` tables as a float table
    (``gather_op="DequantizeLinear"``: ``GatherBlockQuantized`` is onnxruntime's).
    """
    check_choice(target, TARGETS, "target")
    check_choice(format, FORMATS, "format")
    check_choice(gather_op, GATHER_OPS, "gather_op")
    if target == "portable" and format == "matmulnbits":
        raise ValueError("target='portable' writes standard ONNX operators only; format='matmulnbits' is "
                         "onnxruntime's com.microsoft.MatMulNBits (use format='qdq', or target='tract')")
    if target == "onnxruntime":
        return format, gather_op
    return ("matmulnbits" if target == "tract" else format), "DequantizeLinear"


def target_opset(target: str, scheme: str) -> int:
    """The ``ai.onnx`` opset a model for ``target`` needs: 24 when ``target="openvino"`` writes
    MXFP4/NVFP4 weights as ``FLOAT4E2M1`` (spec 19.7), else 21."""
    check_choice(target, TARGETS, "target")
    return FP4_OPSET if target == "openvino" and scheme in ("mxfp4", "nvfp4") else OPSET


def target_weight_subgraph(qt: QuantizedTensor, name: str, out_name: str, target: str = DEFAULT_TARGET, *,
                           scale_rebuild: str | None = None) -> tuple[list[TensorProto], list[NodeProto]]:
    """Float32 ``out_name`` = ``dequantize(qt)`` in stored order, in the form :func:`weight_form` picks.

    ``scale_rebuild`` applies to the ``"dequantizelinear"`` form (see
    :func:`~monoquant_np.onnx.export.qdq.weight_subgraph`); the arithmetic
    forms rebuild double-quantized scales arithmetically.
    """
    form = weight_form(qt, target)
    if form == "float4":
        return fp4_weight_subgraph(qt, name, out_name)
    if form == "dequantizelinear":
        return weight_subgraph(qt, name, out_name, scale_rebuild=scale_rebuild)
    return arithmetic_weight_subgraph(qt, name, out_name, codes=form.split("-")[1])
