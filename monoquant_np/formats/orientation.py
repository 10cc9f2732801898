"""A 2-D quantized weight seen as its transpose (spec section 12.6).

A ``(rows, cols)`` weight grouped along ``cols`` (GGUF, bitsandbytes, PyTorch
``Linear.weight``) becomes the ``(K, N)`` MatMul ``B`` grouped along axis 0
that ONNX and onnxruntime want, without changing a code or a scale.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_matrix
from ..packing import pack_codes
from ..tensor import QuantizedTensor, check_qt

__all__ = ["transpose"]


def transpose(qt: QuantizedTensor) -> QuantizedTensor:
    """The same quantized 2-D weight, transposed: ``dequantize(transpose(qt)) == dequantize(qt).T``.

    Codes, scales and zero points are transposed; ``axis`` becomes ``1 - axis``;
    ``perm`` (which permutes the grouped axis) moves with it. Exact: no value
    changes, only the layout.
    """
    check_qt(qt)
    check_matrix(qt.shape, "qt", "weight to transpose")
    if qt.double_quant is not None:
        raise ValueError(
            "qt has double-quantized scales, whose second-level blocks run over the scales in C order; "
            "transposing would change them. Rebuild plain scales first (double_quant=None)."
        )
    codes = qt.codes().T  # (cols, rows)
    data = pack_codes(codes, qt.bits)
    return QuantizedTensor(
        data=data,
        shape=(qt.shape[1], qt.shape[0]),
        axis=1 - qt.axis,
        block_size=qt.block_size,
        scale=np.ascontiguousarray(qt.scale.T),
        zero_point=None if qt.zero_point is None else np.ascontiguousarray(qt.zero_point.T),
        signed=qt.signed,
        bits=qt.bits,
        codebook=qt.codebook,
        perm=qt.perm,
    )
