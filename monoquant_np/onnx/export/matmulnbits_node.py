"""onnxruntime's ``com.microsoft.MatMulNBits`` node (spec 9.4).

``MatMulNBits(A, B, scales, zero_points, g_idx, bias)`` computes
``Y = A @ W + bias`` for a ``(K, N)`` weight quantized in blocks of
``block_size`` along K (onnxruntime docs/ContribOperators.md). Its byte
layout, the padding of a partial last block (the zero point, so padded rows
dequantize to 0) and the block-size rule are the dialect's, written once in
:mod:`monoquant_np.formats.matmulnbits` (spec 12.1); this module builds the
node from those bytes.

# Note: MatMulNBits wants scales of A's type: in a float32 model float16
# scales are stored widened to float32 (exact; 2 more bytes per group than the
# QDQ form); in a float16 model (``dtype="float16"``) the scales must be
# float16 values and are stored as such.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.arange(96, dtype=np.float32).reshape(48, 2), group_size=48)
    >>> matmulnbits_block_size(qt), matmulnbits_arrays(qt, 16)[0].shape
    (16, (2, 3, 8))
"""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...errors import check_choice, check_name
from ...formats.matmulnbits import MIN_BLOCK_SIZE, matmulnbits_block_size, matmulnbits_pack
from ...tensor import QuantizedTensor, check_qt
from ..options import check_accuracy_level
from .constants import MS_DOMAIN

__all__ = ["matmulnbits_arrays", "matmulnbits_node"]


def matmulnbits_arrays(qt: QuantizedTensor, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(B, scales, zero_points)`` of ``qt`` in MatMulNBits layout with blocks of ``block_size``.

    :func:`monoquant_np.formats.matmulnbits_pack` of ``qt`` in stored order
    (``perm`` is applied to the activations instead), scales widened to
    float32: ``B`` uint8 ``(N, nb, block_size * bits // 8)`` with rows past K
    set to the zero point, ``scales`` float32 ``(N, nb)``, ``zero_points``
    uint8 ``(N, ceil(nb * bits / 8))`` or ``None`` for signed codes; ``nb =
    ceil(K / block_size)``.

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: ``qt`` is not a 2-D axis-0 weight with linear codes, or
            ``block_size`` is not a power of two >= 16 nesting inside the groups.
    """
    check_qt(qt)
    b, scales, zps = matmulnbits_pack(dataclasses.replace(qt, perm=None), block_size)
    return b, scales.astype(np.float32), zps


def matmulnbits_node(
    qt: QuantizedTensor,
    a_name: str,
    y_name: str,
    name: str,
    *,
    bias_name: str | None = None,
    accuracy_level: int = 1,
    dtype: str = "float32",
) -> tuple[list[TensorProto], NodeProto]:
    """A ``com.microsoft.MatMulNBits`` node computing ``y = a @ dequantize(qt)`` (+ bias).

    Args:
        qt: a ``(K, N)`` weight grouped along axis 0 (4 or 8 bits) for which
            :func:`monoquant_np.formats.matmulnbits.matmulnbits_block_size` is not ``None``. With ``perm`` the
            weight is in stored order: feed ``a`` through
            :func:`monoquant_np.onnx.export.qdq.input_permutation` first.
        a_name, y_name: names of the float32 input ``(..., K)`` and output ``(..., N)``.
        name: prefix of the node and its initializers ``name_B``,
            ``name_scales``, ``name_zero_points``.
        bias_name: optional float32 ``(N,)`` value added by the kernel.
        accuracy_level: 0-4 (:data:`monoquant_np.onnx.options.ACCURACY_LEVELS`); 1 (float32) reproduces
            the spec within float32 rounding, 4 quantizes A to int8 per block.
        dtype: ``"float32"`` or ``"float16"``, the type of ``a``, ``y`` and the bias; the scales are
            stored in it (float16 needs float16 scales, which are stored exactly).

    Returns:
        ``(initializers, node)``; the model needs opset ``com.microsoft`` 1.

    Raises:
        ValueError: a weight MatMulNBits cannot represent exactly (the message
            says why), a bad ``accuracy_level``.
    """
    check_qt(qt)
    for v, what in ((a_name, "a_name"), (y_name, "y_name"), (name, "name")):
        check_name(v, what)
    level = check_accuracy_level(accuracy_level)
    block = matmulnbits_block_size(qt)
    if block is None:
        raise ValueError(
            f"MatMulNBits cannot hold {qt!r} exactly: it needs a 2-D axis-0 weight with linear codes and a group "
            f"size that is a power of two >= {MIN_BLOCK_SIZE}, a multiple of one, or spans all of K; "
            f"got group size {qt.block_size}; export it with DequantizeLinear (weight_subgraph) instead"
        )
    b, scales, zps = matmulnbits_arrays(qt, block)
    check_choice(dtype, ("float32", "float16"), "dtype")
    if dtype == "float16":
        if qt.scale.dtype != np.float16:
            raise ValueError(f"a float16 MatMulNBits needs float16 scales (scale_dtype='float16'), "
                             f"got {qt.scale.dtype}")
        scales = scales.astype(np.float16)  # exact: widened from float16 above
    k, n = qt.shape
    inits = [numpy_helper.from_array(b, name + "_B"), numpy_helper.from_array(scales, name + "_scales")]
    inputs = [a_name, name + "_B", name + "_scales"]
    if zps is not None:
        inits.append(numpy_helper.from_array(zps, name + "_zero_points"))
        inputs.append(name + "_zero_points")
    if bias_name:
        inputs += [""] * (5 - len(inputs)) + [bias_name]  # zero_points and g_idx may be empty
    node = helper.make_node("MatMulNBits", inputs, [y_name], name=name + "_matmulnbits", domain=MS_DOMAIN,
                            K=k, N=n, bits=qt.bits, block_size=block, accuracy_level=level)
    return inits, node
