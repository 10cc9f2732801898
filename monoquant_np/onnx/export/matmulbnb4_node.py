"""onnxruntime's ``com.microsoft.MatMulBnb4`` layout for NF4 weights (spec section 10.6).

``MatMulBnb4(A, B, absmax; K, N, block_size, quant_type)`` (onnxruntime
contrib operator, ``quant_type`` 0 = FP4, 1 = NF4) dequantizes a weight
``(N, K)`` stored the bitsandbytes way and computes ``A @ W.T``:

* ``B``: uint8 ``(ceil(N*K/2),)``: the codes of the ``(N, K)`` weight in C
  order, two per byte, **first element in the high nibble**;
* ``absmax``: float32 ``(ceil(N*K/block_size),)``, one per block of
  ``block_size`` consecutive elements of that flattened weight.

For a ``(K, N)`` weight grouped along axis 0 this is the transposed codes
and ``scale.T``, provided ``K % block_size == 0`` (so that no block straddles
two rows of ``W.T``). Provenance: onnxruntime
``contrib_ops/cpu/quantization/blockwise_quant_block_bnb4.h``
(``QuantizeBlockBnb4`` writes ``(vi0 << 4) | vi1``) and ``matmul_bnb4.cc``.

# Note: the spec packs the *low* nibble first (spec 5); ``bnb4_layout``
# repacks with ``monoquant_np.formats.bnb_nf4_pack`` (spec 12.3).
# onnxruntime implements block sizes 16, 32, 64, 128 and 256 only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import NodeProto, TensorProto, helper

from ...errors import check_matrix, check_name
from ...formats import bnb_nf4_pack, transpose
from ...tensor import QuantizedTensor, check_qt
from .constants import MS_DOMAIN
from .initializers import raw_tensor

__all__ = ["bnb4_layout", "matmulbnb4_node", "BNB4_BLOCK_SIZES"]

#: Block sizes ``com.microsoft.MatMulBnb4`` implements.
BNB4_BLOCK_SIZES = (16, 32, 64, 128, 256)


def bnb4_layout(qt: QuantizedTensor) -> tuple[np.ndarray, np.ndarray]:
    """``(B, absmax)`` inputs of ``com.microsoft.MatMulBnb4`` for a 2-D NF4 weight ``(K, N)``.

    ``B``: uint8 ``(ceil(N*K/2),)``, the codes of ``W.T`` (``(N, K)``, C order)
    packed two per byte, **first element in the high nibble** (bitsandbytes).
    ``absmax``: float32 ``(N * K / block_size,)``, ``scale.T`` in C order
    (the rebuilt scales when double-quantized).

    Raises ``ValueError`` unless ``qt`` is NF4, 2-D, grouped along axis 0
    with ``K % block_size == 0``, a block size of 16..256 (powers of two),
    and no ``perm``.
    """
    check_qt(qt)
    if qt.codebook is None:
        raise ValueError(f"format='bnb4' needs an NF4 tensor, got {qt.scheme}")
    check_matrix(qt.shape, "qt", extra="grouped along axis 0 (format='bnb4')")
    if qt.axis != 0:
        raise ValueError(f"format='bnb4' needs a weight grouped along axis 0 (the K of a (K, N) weight), "
                         f"got axis {qt.axis}")
    k, n = qt.shape
    if qt.block_size not in BNB4_BLOCK_SIZES or k % qt.block_size:
        raise ValueError(f"format='bnb4' needs block_size in {BNB4_BLOCK_SIZES} dividing K={k}, "
                         f"got {qt.block_size}")
    if qt.perm is not None:
        raise ValueError("format='bnb4' cannot express perm; use format='gather'")
    # The one definition of bitsandbytes' layout is monoquant_np.formats.bnb; MatMulBnb4 reads W.T.
    # Its absmax input is float32: a double-quantized tensor gives its rebuilt scales (qt.scale).
    packed, absmax = bnb_nf4_pack(transpose(dataclasses.replace(qt, double_quant=None)))
    return packed.reshape(-1), absmax


def matmulbnb4_node(qt: QuantizedTensor, a_name: str, y_name: str, name: str) -> tuple[list[TensorProto], NodeProto]:
    """A ``com.microsoft.MatMulBnb4`` node computing ``y = a @ dequantize(qt)`` for an NF4 ``(K, N)`` weight.

    Args:
        qt: as :func:`bnb4_layout` accepts.
        a_name, y_name: names of the float32 input ``(..., K)`` and output ``(..., N)``.
        name: prefix of the node (``name_matmulbnb4``) and of its initializers
            ``name_B`` (uint8, :func:`bnb4_layout`'s ``B``) and ``name_absmax`` (float32).

    Returns:
        ``(initializers, node)``; the model needs opset ``com.microsoft`` 1.
    """
    for v, what in ((a_name, "a_name"), (y_name, "y_name"), (name, "name")):
        check_name(v, what)
    b, absmax = bnb4_layout(qt)
    k, n = qt.shape
    inits = [raw_tensor(name + "_B", TensorProto.UINT8, b.shape, b),
             raw_tensor(name + "_absmax", TensorProto.FLOAT, absmax.shape, absmax)]
    node = helper.make_node("MatMulBnb4", [a_name, name + "_B", name + "_absmax"], [y_name], name=name + "_matmulbnb4",
                            domain=MS_DOMAIN, K=k, N=n, block_size=qt.block_size, quant_type=1)
    return inits, node
