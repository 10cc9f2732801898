"""onnxruntime's ``com.microsoft.MatMulNBits`` layout (spec 9.4).

``MatMulNBits(A, B, scales, zero_points, g_idx, bias)`` computes
``Y = A @ W + bias`` for a ``(K, N)`` weight quantized in blocks of
``block_size`` along K (onnxruntime docs/ContribOperators.md), with its own
layout, column by column:

* ``B``: uint8 ``(N, n_blocks, block_size * bits / 8)``; unsigned codes of
  column ``n``, block ``j``, packed low nibble first along K (4 bits) or one
  per byte (8 bits). ``n_blocks = ceil(K / block_size)``; the padding of the
  last block holds the zero point, so it dequantizes to 0.
* ``scales``: ``(N, n_blocks)`` of A's type (float32 here).
* ``zero_points``: uint8 ``(N, ceil(n_blocks * bits / 8))``, each row packed
  on its own; absent means ``2 ** (bits - 1)`` (8 or 128).

The spec's signed codes map exactly: ``q`` int4 becomes ``q + 8`` with the
default zero point 8, so ``(q + 8 - 8) * s`` is the spec's ``q * s``.

Block sizes: onnxruntime 1.32 accepts only powers of two >= 16
(``matmul_nbits.cc``: "Only power-of-two block sizes >= 16 are supported";
512 and 1024 run too). A group size ``g`` that is not one is still exported
exactly when the blocks can nest inside the groups: ``block = 2**k`` dividing
``g`` (48 -> 16, 96 -> 32), or any block when one group spans all of K (the
int8 per-channel fallback). Each group's scale is then repeated over its
blocks. See :func:`matmulnbits_block_size`.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.arange(96, dtype=np.float32).reshape(48, 2), group_size=48)
    >>> matmulnbits_block_size(qt), matmulnbits_arrays(qt, 16)[0].shape
    (16, (2, 3, 8))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...errors import check_name
from ...packing import pack_int4
from ...tensor import QuantizedTensor, check_qt

__all__ = ["matmulnbits_block_size", "matmulnbits_arrays", "matmulnbits_node", "ACCURACY_LEVELS"]

#: MatMulNBits ``accuracy_level``: the least precise type A may be converted to
#: inside the kernel (onnxruntime docs/ContribOperators.md).
ACCURACY_LEVELS = {0: "unset (float32 on CPU)", 1: "float32", 2: "float16", 3: "bfloat16", 4: "int8"}
#: The smallest block size onnxruntime's MatMulNBits accepts.
MIN_BLOCK = 16


def _pow2(n: int) -> bool:
    return n >= MIN_BLOCK and n & (n - 1) == 0


def matmulnbits_block_size(qt: QuantizedTensor) -> int | None:
    """The MatMulNBits ``block_size`` that represents ``qt`` exactly, or ``None``.

    Rules, in order (spec 9.4): ``qt`` must be a 2-D ``(K, N)`` weight grouped
    along axis 0 with linear 4- or 8-bit codes (no codebook, no double
    quantization); then the group size itself if it is a power of two >= 16;
    else the largest power of two dividing the group size, if it is >= 16;
    else, when one group covers all of K, ``max(16, next_pow2(K))``.

    >>> from monoquant_np import quantize
    >>> w = np.ones((200, 3), np.float32)
    >>> [matmulnbits_block_size(quantize(w, group_size=g)) for g in (32, 48, 100, 24, 256)]
    [32, 16, None, None, 256]
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0 or qt.codebook is not None or qt.double_quant is not None:
        return None
    g, k = qt.block_size, qt.shape[0]
    if _pow2(g):
        return g
    low = g & -g  # the largest power of two dividing g
    if low >= MIN_BLOCK:
        return low
    if qt.n_groups <= 1:
        return max(MIN_BLOCK, 1 << max(k - 1, 0).bit_length())
    return None


def matmulnbits_arrays(qt: QuantizedTensor, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(B, scales, zero_points)`` of ``qt`` in MatMulNBits layout with blocks of ``block_size``.

    Shapes: ``B`` uint8 ``(N, nb, block_size * bits // 8)``, ``scales`` float32
    ``(N, nb)`` (float16 scales widened exactly), ``zero_points`` uint8
    ``(N, ceil(nb * bits / 8))`` or ``None`` for signed codes; ``nb =
    ceil(K / block_size)``. Block ``j`` takes the scale of group
    ``j * block_size // qt.block_size``, so the blocks must nest inside the
    groups: ``block_size`` divides ``qt.block_size``, or one group spans all
    of K (:func:`matmulnbits_block_size` picks such a block).

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: ``qt`` is not a 2-D axis-0 weight with linear codes, or
            ``block_size`` is not a positive even int nesting inside the groups.
    """
    check_qt(qt)
    if len(qt.shape) != 2 or qt.axis != 0 or qt.codebook is not None or qt.double_quant is not None:
        raise ValueError(f"qt must be a 2-D (K, N) weight grouped along axis 0 with linear codes and plain "
                         f"scales, got shape {qt.shape} axis {qt.axis} scheme {qt.scheme}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0 \
            or block_size % 2:
        raise ValueError(f"block_size must be a positive even int, got {block_size!r}")
    if qt.block_size % block_size and qt.n_groups > 1:
        raise ValueError(f"block_size must divide the group size {qt.block_size} (blocks nest inside groups), "
                         f"got {block_size}")
    k, n = qt.shape
    bits = qt.bits
    nb = -(-k // block_size)
    first = np.arange(nb) * block_size // qt.block_size  # (nb,) group of each block
    codes = qt.codes()  # (K, N)
    if qt.signed:
        u = (codes.astype(np.int16) + (1 << (bits - 1))).astype(np.uint8)  # (K, N) in 0..2**bits-1
        zp_blocks = None
        pad_value = np.full((1, n), 1 << (bits - 1), np.uint8)
    else:  # unsigned codes without a zero point dequantize as q * s: zero point 0
        u = codes
        zp = qt.zero_point if qt.zero_point is not None else np.zeros(qt.scale.shape, np.uint8)
        zp_blocks = zp[first]  # (nb, N)
        pad_value = zp_blocks[-1:]  # (1, N)
    full = np.empty((nb * block_size, n), np.uint8)
    full[:k] = u
    full[k:] = pad_value  # padding dequantizes to exactly 0
    cols = np.ascontiguousarray(full.T).reshape(n, nb, block_size)  # (N, nb, block_size)
    b = pack_int4(cols).reshape(n, nb, block_size // 2) if bits == 4 else cols
    # Note: MatMulNBits wants scales of A's type, so float16 scales are stored
    # widened to float32 here (exact; 2 more bytes per group than the QDQ form).
    scales = np.ascontiguousarray(qt.scale.astype(np.float32)[first].T)  # (N, nb)
    zps = None
    if zp_blocks is not None:
        zt = np.ascontiguousarray(zp_blocks.T)  # (N, nb)
        if bits == 4:
            even = np.zeros((n, nb + nb % 2), np.uint8)  # (N, nb rounded up to even): rows pack alone
            even[:, :nb] = zt
            zps = pack_int4(even).reshape(n, (nb + 1) // 2)
        else:
            zps = zt
    return b, scales, zps


def matmulnbits_node(
    qt: QuantizedTensor,
    a_name: str,
    y_name: str,
    name: str,
    *,
    bias_name: str | None = None,
    accuracy_level: int = 1,
) -> tuple[list[TensorProto], NodeProto]:
    """A ``com.microsoft.MatMulNBits`` node computing ``y = a @ dequantize(qt)`` (+ bias).

    Args:
        qt: a ``(K, N)`` weight grouped along axis 0 (4 or 8 bits) for which
            :func:`matmulnbits_block_size` is not ``None``. With ``perm`` the
            weight is in stored order: feed ``a`` through
            :func:`monoquant_np.onnx.export.qdq.input_permutation` first.
        a_name, y_name: names of the float32 input ``(..., K)`` and output ``(..., N)``.
        name: prefix of the node and its initializers ``name_B``,
            ``name_scales``, ``name_zero_points``.
        bias_name: optional float32 ``(N,)`` value added by the kernel.
        accuracy_level: 0-4 (:data:`ACCURACY_LEVELS`); 1 (float32) reproduces
            the spec within float32 rounding, 4 quantizes A to int8 per block.

    Returns:
        ``(initializers, node)``; the model needs opset ``com.microsoft`` 1.

    Raises:
        ValueError: a weight MatMulNBits cannot represent exactly (the message
            says why), a bad ``accuracy_level``.
    """
    check_qt(qt)
    for v, what in ((a_name, "a_name"), (y_name, "y_name"), (name, "name")):
        check_name(v, what)
    level = _check_level(accuracy_level)
    block = matmulnbits_block_size(qt)
    if block is None:
        raise ValueError(
            f"MatMulNBits cannot hold {qt!r} exactly: it needs a 2-D axis-0 weight with linear codes and a group "
            f"size that is a power of two >= {MIN_BLOCK}, a multiple of one, or spans all of K; "
            f"got group size {qt.block_size}; export it with DequantizeLinear (weight_subgraph) instead"
        )
    b, scales, zps = matmulnbits_arrays(qt, block)
    k, n = qt.shape
    inits = [numpy_helper.from_array(b, name + "_B"), numpy_helper.from_array(scales, name + "_scales")]
    inputs = [a_name, name + "_B", name + "_scales"]
    if zps is not None:
        inits.append(numpy_helper.from_array(zps, name + "_zero_points"))
        inputs.append(name + "_zero_points")
    if bias_name:
        inputs += [""] * (5 - len(inputs)) + [bias_name]  # zero_points and g_idx may be empty
    node = helper.make_node("MatMulNBits", inputs, [y_name], name=name + "_matmulnbits", domain="com.microsoft",
                            K=k, N=n, bits=qt.bits, block_size=block, accuracy_level=level)
    return inits, node


def _check_level(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or int(level) not in ACCURACY_LEVELS:
        raise ValueError(f"accuracy_level must be one of {sorted(ACCURACY_LEVELS)}, got {level!r}")
    return int(level)
