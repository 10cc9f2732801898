"""bitsandbytes NF4 storage (spec section 12.3).

``bitsandbytes.functional.quantize_4bit(A, blocksize=64, quant_type="nf4")``
stores a tensor of ``n`` elements as:

* ``packed``: uint8 ``((n + 1) // 2, 1)``; the tensor is flattened in C order
  and byte ``i`` holds element ``2i`` in its **high** nibble and ``2i + 1``
  in its low nibble (the opposite of ONNX); for odd ``n`` the last low nibble
  is code 7, the code of the ``0.0`` bitsandbytes pads with;
* ``absmax``: float32 ``(ceil(n / blocksize),)``, one per block of
  ``blocksize`` *consecutive flattened* elements;
* ``w[i] = NF4[code[i]] * absmax[i // blocksize]`` (float32), with ``NF4`` the
  16-value table :data:`monoquant_np.nf4.NF4_CODEBOOK`.

Canonical form: the blocks of the flattened tensor are groups along the last
axis exactly when ``shape[-1] % blocksize == 0`` (a 1-D tensor always);
otherwise a block straddles two rows, which no per-axis grouping represents,
and decoding raises. A ``(N, K)`` ``Linear.weight`` blocked along K is the
transpose of ONNX's ``(K, N)`` MatMul ``B``: see :func:`monoquant_np.formats.transpose`.

# Note: with ``compress_statistics=True`` bitsandbytes stores absmax with its
# nested 8-bit dynamic map; the spec's double quantization (spec 11) is linear
# int8, so :func:`bnb_nf4_pack` writes the rebuilt float32 absmax (exact) and
# :func:`bnb_nf4_unpack` takes plain absmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import check_positive_int, check_scales, check_shape, check_uint8
from ..nf4 import NF4_CODEBOOK
from ..packing import pack_int4
from ..tensor import QuantizedTensor, check_qt

__all__ = ["bnb_nf4_pack", "bnb_nf4_unpack"]

#: The NF4 code of 0.0 (``NF4_CODEBOOK[7] == 0``): what an odd count's padding nibble holds.
ZERO_CODE = 7


def bnb_nf4_pack(qt: QuantizedTensor) -> tuple[np.ndarray, np.ndarray]:
    """``(packed, absmax)`` in bitsandbytes' NF4 layout of an NF4 ``qt``.

    ``qt`` must be grouped along its last axis with ``shape[-1] % block_size
    == 0`` (or be 1-D), have no ``perm``, and use the NF4 codebook. Returns
    uint8 ``((size + 1) // 2, 1)`` and float32 ``(n_blocks,)``.

    >>> from monoquant_np.nf4 import quantize_nf4
    >>> packed, absmax = bnb_nf4_pack(quantize_nf4(np.array([-2.0, 2.0, 0.0]), block_size=64))
    >>> [hex(b) for b in packed.ravel()], absmax.tolist()
    (['0xf', '0x77'], [2.0])

    (codes ``0, 15, 7``: ``-1``, ``1`` and ``0`` of the table times absmax 2;
    the odd count's padding nibble is code 7 too.)
    """
    check_qt(qt)
    ax = len(qt.shape) - 1
    if qt.codebook is None or not np.array_equal(qt.codebook.view(np.uint32), NF4_CODEBOOK.view(np.uint32)):
        raise ValueError(f"qt must use the NF4 codebook (monoquant_np.nf4.NF4_CODEBOOK), got scheme {qt.scheme}")
    if qt.axis != ax or qt.perm is not None:
        raise ValueError(f"qt must be grouped along its last axis ({ax}) without perm, got axis {qt.axis}; "
                         "transpose a (K, N) weight with monoquant_np.formats.transpose first")
    if ax and qt.shape[-1] % qt.block_size:
        raise ValueError(f"qt's last dimension {qt.shape[-1]} must be a multiple of block_size {qt.block_size}, "
                         "or bitsandbytes' flattened blocks would straddle rows")
    codes = qt.codes().reshape(-1)  # (n,) C order
    if codes.size % 2:  # bitsandbytes pads with 0.0, which quantizes to code 7
        codes = np.concatenate([codes, np.full(1, ZERO_CODE, np.uint8)])
    pairs = codes.reshape(-1, 2)  # (n/2, 2): first element -> high nibble
    packed = (pairs[:, 0] << np.uint8(4)) | pairs[:, 1]
    return packed.reshape(-1, 1), qt.scale.astype(np.float32).reshape(-1)


def bnb_nf4_unpack(packed: np.ndarray, absmax: Any, shape: Any, *, blocksize: int = 64) -> QuantizedTensor:
    """The NF4 :class:`QuantizedTensor` of bitsandbytes' ``(packed, absmax)`` for a tensor of ``shape``.

    Raises ``ValueError`` when ``shape[-1] % blocksize != 0`` for a tensor of
    two or more dimensions (its blocks straddle rows: not representable).
    """
    check_uint8(packed, "packed")
    a = check_scales(absmax, "absmax", (np.float32,))
    shape = check_shape(shape)
    n = int(np.prod(shape))
    if packed.size != (n + 1) // 2:
        raise ValueError(f"packed must hold (n + 1) // 2 = {(n + 1) // 2} bytes for shape {shape}, got {packed.size}")
    blocksize = check_positive_int(blocksize, "blocksize")
    if len(shape) > 1 and shape[-1] % blocksize:
        raise ValueError(
            f"shape[-1] = {shape[-1]} is not a multiple of blocksize {blocksize}: bitsandbytes' flattened blocks "
            "straddle rows, which groups along one axis cannot represent"
        )
    n_blocks = -(-n // blocksize)
    if a.size != n_blocks:
        raise ValueError(f"absmax must hold ceil(n / blocksize) = {n_blocks} values, got {a.size}")
    b = packed.reshape(-1)
    codes = np.stack([b >> np.uint8(4), b & np.uint8(0xF)], axis=1).reshape(-1)[:n]  # (n,) high nibble first
    gshape = shape[:-1] + (-(-shape[-1] // blocksize),)
    return QuantizedTensor(
        data=pack_int4(codes), shape=shape, axis=len(shape) - 1, block_size=int(blocksize),
        scale=a.reshape(gshape).copy(), zero_point=None, signed=False, bits=4, codebook=NF4_CODEBOOK,
    )
