"""Helpers shared by the dialect modules (spec section 12.0).

* :func:`round_half_away`: C's ``roundf`` (ties away from zero), the rounding
  of onnxruntime's blockwise quantizer and of GGUF ``Q8_0``. The spec itself
  rounds half to even (:func:`monoquant_np.numerics.round_half_even`); the
  dialects that reproduce a peer's own quantizer call this one instead.
* :func:`check_qt`: the argument check every encoder starts with.
* :func:`transpose`: a 2-D ``QuantizedTensor`` seen as its transpose, so that
  a ``(rows, cols)`` weight grouped along ``cols`` (GGUF, bitsandbytes,
  PyTorch ``Linear.weight``) becomes the ``(K, N)`` MatMul ``B`` grouped along
  axis 0 that ONNX and onnxruntime want, without touching a code or a scale.
"""

from __future__ import annotations

import numpy as np

from ..packing import pack_codes
from ..tensor import QuantizedTensor, check_qt

__all__ = [
    "round_half_away",
    "check_qt",
    "check_uint8",
    "check_scales",
    "zero_points_of",
    "transpose",
    "pack_words",
    "unpack_words",
]


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C ``roundf``), exactly.

    ``sign(x) * (floor(|x|) + floor(2 * (|x| - floor(|x|))))``: every step is
    exact in binary floating point, unlike ``floor(|x| + 0.5)``, which rounds
    ``0.49999997`` up to 1. (Same formula as gguf-py's ``np_roundf``.)
    Infinities and NaN are returned as they are, as ``roundf`` does.

    >>> round_half_away(np.array([0.5, 1.5, 2.5, -2.5, 0.49999997], dtype=np.float32)).tolist()
    [1.0, 2.0, 3.0, -3.0, 0.0]
    """
    a = np.abs(x)
    fl = np.floor(a)
    with np.errstate(invalid="ignore"):
        r = np.sign(x) * (fl + np.floor(2 * (a - fl)))
    return np.where(np.isfinite(x), r, x)


def check_uint8(a: object, name: str, ndim: int | None = None) -> np.ndarray:
    """Return ``a`` if it is a uint8 ndarray (of ``ndim`` dimensions), else raise."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a numpy uint8 array, got {got}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def pack_words(nibbles: np.ndarray) -> np.ndarray:
    """Eight 4-bit codes per int32 word, nibble ``j`` at bits ``4j..4j+3`` (GPTQ/AWQ words).

    Shapes: ``(..., 8)`` codes ``0..15`` -> ``(...)`` int32 (the uint32 bit
    pattern, so a code >= 8 in nibble 7 makes the word negative).

    >>> hex(int(pack_words(np.arange(8)).view(np.uint32)))
    '0x76543210'
    """
    u = nibbles.astype(np.uint32)
    shifts = np.arange(0, 32, 4, dtype=np.uint32)  # (8,)
    return np.bitwise_or.reduce(u << shifts, axis=-1).astype(np.uint32).view(np.int32)


def unpack_words(words: np.ndarray, name: str = "packed words") -> np.ndarray:
    """Inverse of :func:`pack_words`: int32 ``(...)`` -> uint8 ``(..., 8)`` codes ``0..15``.

    ``name`` is the argument named in the ``TypeError`` for a non-int32 array.
    """
    if not isinstance(words, np.ndarray) or words.dtype not in (np.int32, np.uint32):
        got = words.dtype if isinstance(words, np.ndarray) else type(words).__name__
        raise TypeError(f"{name} must be an int32 array, got {got}")
    u = words.view(np.uint32)[..., None]  # (..., 1)
    return ((u >> np.arange(0, 32, 4, dtype=np.uint32)) & np.uint32(0xF)).astype(np.uint8)


def check_scales(a: object, name: str = "scales") -> np.ndarray:
    """Return ``a`` if it is a float32 or float16 ndarray, else raise ``TypeError``."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float16):
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a float32 or float16 array, got {got}")
    return a


def zero_points_of(qt: QuantizedTensor) -> np.ndarray:
    """``qt.zero_point``, or ``ValueError`` for a tensor without zero points."""
    if qt.zero_point is None:
        raise ValueError(f"qt must have zero points (uint4), got {qt.scheme} without")
    return qt.zero_point


def transpose(qt: QuantizedTensor) -> QuantizedTensor:
    """The same quantized 2-D weight, transposed: ``dequantize(transpose(qt)) == dequantize(qt).T``.

    Codes, scales and zero points are transposed; ``axis`` becomes ``1 - axis``;
    ``perm`` (which permutes the grouped axis) moves with it. Exact: no value
    changes, only the layout.
    """
    check_qt(qt)
    if len(qt.shape) != 2:
        raise ValueError(f"qt must be 2-D to transpose, got shape {qt.shape}")
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

