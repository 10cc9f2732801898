"""The error contract (spec 15), table-driven: every public function of the core, the dialects and
the algorithms, one bad argument at a time, the exception class and a fragment of its message.

Each row calls a function with valid arguments except one (or, in the order table, several); the
bad values are those spec 15.1 lists for each kind of argument, exhaustively.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import monoquant_np as mq
from monoquant_np import algorithms as A
from monoquant_np import formats as F
from monoquant_np.cli import main as cli_main

f32 = np.float32

# ------------------------------------------------------------------ the bad values of spec 15.1
#: Not an integer: TypeError for every size, count, axis and integer choice.
NOT_INT = [True, False, np.bool_(True), 1.5, 128.0, 1.0, np.float64(2.0), "128", None, [4], 1 + 0j]
#: Integers below 1: ValueError for every size (group_size, block_size, dq_block_size, k, blocksize).
NOT_POSITIVE = [0, -1, np.int64(-128)]
#: Not a bool: TypeError for every flag.
NOT_BOOL = [1, 0, np.int64(1), 1.0, "yes", "True", None]
#: Not a dtype-like (str, numpy.dtype, type): TypeError for scale_dtype and dequantize's dtype.
NOT_DTYPE = [None, 1.5, 32, [("a", "f4")], np.zeros(1, f32)]
#: Dtype-likes naming something other than float32/float16: ValueError for scale_dtype.
BAD_SCALE_DTYPE = [np.float64, "float64", float, np.int8, "int8", np.complex64, object, "float17",
                   np.dtype("f4,f4"), np.longdouble]
#: Array-likes numpy does not make a float16/32/64 array of: TypeError for every float array argument.
NOT_FLOAT_ARRAY = [np.array([[1, 2]], np.int32), [[1, 2], [3, 4]], "abc", None, np.array([[True]]),
                   np.array([[1j]]), [[1.0], [2.0, 3.0]], np.array([[1.0]], object), {"w": 1.0}, b"ab"]
#: Float weights no quantizer accepts: ValueError (0-d, empty, beyond float32).
BAD_WEIGHT_VALUE = [1.5, np.float32(1.0), np.zeros((0, 4), f32), np.zeros((4, 0), f32),
                    np.array([[1e39, 1.0]]), np.array([[-3.5e38, 1.0]])]
#: Not stored bytes (a uint8 ndarray): TypeError for data, packed, B, zero_points.
NOT_BYTES = [[1, 2], b"\x01\x02", np.array([1, 2], np.int64), np.array([1, 2], np.int8), None, "ab"]
#: Not a shape (a tuple or list of ints): TypeError.
NOT_SHAPE = [None, 32, "32", (1.5, 32), ("32",), (True, 32), (2, 32.0), np.array([1, 32])]
#: Not a str: TypeError for every str choice.
NOT_STR = [None, 1, b"mse", ["mse"]]


# ---------------------------------------------------------------------------- fixtures
W = np.arange(-16, 16, dtype=f32).reshape(8, 4) / 4  # (8, 4), finite, not all zero
W32 = np.arange(-32, 32, dtype=f32).reshape(2, 32) / 8  # (2, 32): one GGUF/bnb block per row
QT = mq.quantize(W, group_size=4)  # int4 (8, 4), 2 groups along axis 0
QT_U = mq.quantize(W, group_size=4, symmetric=False)
QT_NF4 = mq.quantize_nf4(W32, block_size=32, axis=1)
QT_DQ = mq.quantize(W, group_size=4, double_quant=True)
QT_3D = mq.quantize(np.ones((4, 2, 2), f32), group_size=2)
QT_Q4_0 = F.q4_0_decode(F.q4_0_quantize(W32), (2, 32))
QT_Q4_1 = mq.quantize(W32, group_size=32, axis=1, symmetric=False, scale_dtype=np.float16)
QT16 = mq.quantize(np.ones((16, 8), f32), group_size=16)  # MatMulNBits / GPTQ / AWQ shaped
MNB = F.matmulnbits_pack(mq.quantize(np.ones((16, 8), f32), group_size=16, symmetric=False))
GPTQ_T = F.gptq_encode(QT16)
AWQ_T = F.awq_encode(QT16)
BNB_PACKED, BNB_ABSMAX = F.bnb_nf4_pack(QT_NF4)
H = np.eye(8)  # (K, K) for W
X = np.ones((3, 8), f32)
NAN_W = W.copy()
NAN_W[1, 1] = np.nan
NOT_QT = [None, W, "qt", {"qt": QT}]

#: The table: (function, valid keyword arguments, the argument made bad, its bad values, class, fragment).
Row = tuple[Callable[..., Any], dict[str, Any], str, list[Any], type, str]
ROWS: list[Row] = []


def rows(fn: Callable[..., Any], base: dict[str, Any], param: str, bads: list[Any], exc: type,
         fragment: str) -> None:
    """Rows of ``param``: ``fn(**base, param=bad)`` raises exactly ``exc`` matching ``fragment`` for every bad."""
    ROWS.append((fn, base, param, list(bads), exc, fragment))


def weights(fn: Callable[..., Any], base: dict[str, Any], param: str = "w", *, quantizer: bool = True,
            optional: bool = False) -> None:
    """The float-array rows of ``param``: the type errors, then (quantizers) 0-d, empty, beyond float32.

    ``optional``: ``None`` is the argument's default (no bias, no importance), not a bad value.
    """
    bads = [b for b in NOT_FLOAT_ARRAY if not (optional and b is None)]
    rows(fn, base, param, bads, TypeError, f"{param} must be")
    if quantizer:
        rows(fn, base, param, BAD_WEIGHT_VALUE, ValueError, f"{param} must")


def sizes(fn: Callable[..., Any], base: dict[str, Any], param: str) -> None:
    rows(fn, base, param, NOT_INT, TypeError, f"{param} must be an int")
    rows(fn, base, param, NOT_POSITIVE, ValueError, f"{param} must be a positive int")


def flags(fn: Callable[..., Any], base: dict[str, Any], *params: str) -> None:
    for p in params:
        rows(fn, base, p, NOT_BOOL, TypeError, f"{p} must be a bool")


def scale_dtypes(fn: Callable[..., Any], base: dict[str, Any]) -> None:
    rows(fn, base, "scale_dtype", NOT_DTYPE, TypeError, "scale_dtype must be a dtype")
    rows(fn, base, "scale_dtype", BAD_SCALE_DTYPE, ValueError, "scale_dtype must be float32 or float16")


def qts(fn: Callable[..., Any], base: dict[str, Any], param: str = "qt") -> None:
    rows(fn, base, param, NOT_QT, TypeError, f"{param} must be a QuantizedTensor")


def axes(fn: Callable[..., Any], base: dict[str, Any]) -> None:
    rows(fn, base, "axis", NOT_INT, TypeError, "axis must be an int")
    rows(fn, base, "axis", [2, -3, 100], ValueError, "axis must be an int in [-2, 1]")


# ------------------------------------------------------------------------ the core (15.3)
for _fn, _size in ((mq.quantize, "group_size"), (mq.quantize_nf4, "block_size")):
    _b = {"w": W}
    weights(_fn, _b)
    sizes(_fn, _b, _size)
    sizes(_fn, _b, "dq_block_size")
    axes(_fn, _b)
    flags(_fn, _b, "double_quant")
    rows(_fn, _b, "w", [NAN_W, np.array([[np.inf, 1.0]], f32)], ValueError, "w must be finite")
for _fn in (mq.quantize_mxfp4, mq.quantize_nvfp4):
    weights(_fn, {"w": W})
    sizes(_fn, {"w": W}, "block_size")
    axes(_fn, {"w": W})
    rows(_fn, {"w": W}, "w", [NAN_W], ValueError, "w must be finite")
flags(mq.quantize, {"w": W}, "symmetric", "int8_fallback")
rows(mq.quantize, {"w": W}, "bits", NOT_INT, TypeError, "bits must be one of 2, 4, 8 (an int)")
rows(mq.quantize, {"w": W}, "bits", [0, 1, 3, 16, -4], ValueError, "bits must be one of 2, 4, 8")
scale_dtypes(mq.quantize, {"w": W})
scale_dtypes(mq.quantize_nf4, {"w": W})

qts(mq.dequantize, {})
rows(mq.dequantize, {"qt": QT}, "dtype", NOT_DTYPE, TypeError, "dtype must be a dtype")
rows(mq.dequantize, {"qt": QT}, "dtype", [np.int8, "int32", object, np.complex64, "float17", np.longdouble],
     ValueError, "dtype must be float32 or float16 or float64")
qts(mq.bits_per_weight, {})

qts(mq.double_quantize, {})
rows(mq.double_quantize, {}, "qt", [QT_DQ], ValueError, "qt is already double-quantized")
sizes(mq.double_quantize, {"qt": QT}, "block_size")
weights(mq.double_quantize, {"qt": QT}, quantizer=False, optional=True)
rows(mq.double_quantize, {"qt": QT}, "w", [1.5, np.ones((4, 8), f32), np.ones(32, f32), np.array([[1e39] * 4] * 8)],
     ValueError, "w must")
rows(mq.double_quantize, {"qt": QT}, "w", [NAN_W], ValueError, "w must be finite")

rows(mq.pack_int4, {}, "codes", [np.array([1.0], f32), [1.5], "abc", None, np.array([True]), [[1], [2, 3]]],
     TypeError, "codes must be an")
rows(mq.pack_int4, {}, "codes", [[16], np.array([-9, 3]), np.array([300], np.int64)], ValueError,
     "codes must lie in -8..15")
_up = {"packed": np.zeros(2, np.uint8), "count": 3}
rows(mq.unpack_int4, _up, "packed", NOT_BYTES, TypeError, "packed must be a numpy uint8 array")
rows(mq.unpack_int4, _up, "count", NOT_INT, TypeError, "count must be an int")
rows(mq.unpack_int4, _up, "count", [-1, np.int8(-2)], ValueError, "count must be a non-negative int")
rows(mq.unpack_int4, _up, "count", [5, 100], ValueError, "fewer than count")
flags(mq.unpack_int4, _up, "signed")

_mm = {"x": X, "qt": QT}
weights(mq.dequant_matmul, _mm, "x", quantizer=False)
rows(mq.dequant_matmul, _mm, "x", [1.5, np.ones((3, 7), f32), np.array([[1e39] * 8])], ValueError, "x must")
qts(mq.dequant_matmul, _mm)
rows(mq.dequant_matmul, _mm, "qt", [QT_3D], ValueError, "qt must be a 2-D (K, N) weight")
rows(mq.dequant_matmul, _mm, "qt", [QT_NF4], ValueError, "x must have last dimension K=2")
weights(mq.dequant_matmul, _mm, "bias", quantizer=False, optional=True)
rows(mq.dequant_matmul, _mm, "bias", [np.ones(5, f32), np.ones((1, 4), f32), 1.0], ValueError, "bias must")

_lin = mq.QuantizedLinear.from_float
weights(_lin, {})
rows(_lin, {}, "w", [np.ones(8, f32), np.ones((2, 2, 2), f32)], ValueError, "w must be a 2-D")
weights(_lin, {"w": W}, "bias", quantizer=False, optional=True)
rows(_lin, {"w": W}, "bias", [np.ones(5, f32), 1.0], ValueError, "bias must")
sizes(_lin, {"w": W}, "group_size")
flags(_lin, {"w": W}, "symmetric")
scale_dtypes(_lin, {"w": W})
qts(mq.QuantizedLinear, {})
rows(mq.QuantizedLinear, {}, "qt", [QT_3D], ValueError, "qt must be a 2-D")
weights(mq.QuantizedLinear, {"qt": QT}, "bias", quantizer=False, optional=True)
rows(mq.QuantizedLinear, {"qt": QT}, "bias", [np.ones(3, f32)], ValueError, "bias must have shape (4,)")

_dq = {"codes": np.zeros(3, np.int8), "scale": np.ones(1, f32), "offset": 0.0, "block_size": 4}
rows(mq.DoubleQuant, _dq, "codes", [np.zeros(3, np.int16), [0, 0, 0], None], TypeError, "codes must be a numpy int8")
rows(mq.DoubleQuant, _dq, "scale", [np.ones(1), [1.0], None], TypeError, "scale must be a float32 array")
rows(mq.DoubleQuant, _dq, "scale", [np.ones(2, f32), np.ones((1, 1), f32)], ValueError, "scale must have shape (1,)")
rows(mq.DoubleQuant, _dq, "offset", ["0", None, True, [0.0]], TypeError, "offset must be a real number")
rows(mq.DoubleQuant, _dq, "offset", [np.nan, np.inf, 1e39], ValueError, "offset must be a finite number")
sizes(mq.DoubleQuant, _dq, "block_size")

_fs = {"codes": np.zeros(2, np.uint8), "kind": "e4m3", "tensor_scale": 0.5}
rows(mq.FloatScales, _fs, "codes", [np.zeros(2, np.int8), [0, 0], None], TypeError, "codes must be a numpy uint8 array")
rows(mq.FloatScales, _fs, "kind", NOT_STR, TypeError, "kind must be one of")
rows(mq.FloatScales, _fs, "kind", ["e5m2", "E4M3"], ValueError, "kind must be one of")
rows(mq.FloatScales, _fs, "tensor_scale", ["1", None, True, [1.0]], TypeError, "tensor_scale must be a real number")
rows(mq.FloatScales, _fs, "tensor_scale", [-1.0, np.nan, np.inf], ValueError, "tensor_scale must be a finite number")
rows(mq.FloatScales, _fs, "tensor_scale", [0.1, 1e39], ValueError, "tensor_scale must be a finite float32 value")
rows(mq.FloatScales, {**_fs, "kind": "e8m0", "tensor_scale": 1.0}, "codes", [np.array([255], np.uint8)], ValueError,
     "0..254")
_qt = {"data": QT.data, "shape": (8, 4), "axis": 0, "block_size": 4, "scale": QT.scale}
_qtu = {**_qt, "zero_point": QT_U.zero_point, "scale": QT_U.scale, "signed": False}
rows(mq.QuantizedTensor, _qt, "shape", NOT_SHAPE, TypeError, "shape must be a tuple of ints")
rows(mq.QuantizedTensor, _qt, "shape", [(), (-8, 4)], ValueError, "shape must have at least one dimension")
rows(mq.QuantizedTensor, _qt, "axis", NOT_INT, TypeError, "axis must be an int")
rows(mq.QuantizedTensor, _qt, "axis", [2, -1], ValueError, "axis must be in [0, 1]")
sizes(mq.QuantizedTensor, _qt, "block_size")
rows(mq.QuantizedTensor, _qt, "bits", NOT_INT, TypeError, "bits must be one of 2, 4, 8 (an int)")
rows(mq.QuantizedTensor, _qt, "bits", [1, 3, 16], ValueError, "bits must be one of 2, 4, 8")
rows(mq.QuantizedTensor, _qt, "bits", [2], ValueError, "data must hold 8 bytes for shape (8, 4) at 2 bits")
flags(mq.QuantizedTensor, _qt, "signed")
rows(mq.QuantizedTensor, _qt, "data", [QT.data.tolist(), QT.data.view(np.int8), None], TypeError,
     "data must be a uint8 array")
rows(mq.QuantizedTensor, _qt, "data", [QT.data[:3]], ValueError, "data must hold 16 bytes")
rows(mq.QuantizedTensor, _qt, "scale", [QT.scale.astype(np.float64), QT.scale.tolist()], TypeError,
     "scale must be a float32 or float16 array")
rows(mq.QuantizedTensor, _qt, "scale", [QT.scale[:1]], ValueError, "scale must have shape (2, 4)")
rows(mq.QuantizedTensor, _qtu, "zero_point", [QT_U.zero_point.astype(np.int64), QT_U.zero_point.tolist()],
     TypeError, "zero_point must be a numpy uint8 array")
rows(mq.QuantizedTensor, _qtu, "zero_point", [QT_U.zero_point[:1], np.full((2, 4), 16, np.uint8)], ValueError,
     "zero_point")
rows(mq.QuantizedTensor, _qt, "zero_point", [QT_U.zero_point], ValueError, "zero_point must be None for signed")
_qtc = {**_qt, "signed": False}
rows(mq.QuantizedTensor, _qtc, "codebook", [mq.NF4_CODEBOOK.astype(np.float64), mq.NF4_CODEBOOK.tolist()],
     TypeError, "codebook must be a float32 array")
rows(mq.QuantizedTensor, _qtc, "codebook", [mq.NF4_CODEBOOK[:8]], ValueError, "codebook must be float32 (16,)")
rows(mq.QuantizedTensor, _qt, "double_quant", ["dq", QT_DQ.scale], TypeError, "double_quant must be a DoubleQuant")
rows(mq.QuantizedTensor, _qt, "fp_scales", ["fp", QT.scale], TypeError, "fp_scales must be a FloatScales")
rows(mq.QuantizedTensor, _qt, "perm", [np.zeros(8, np.int64), np.arange(4)], ValueError, "perm must be a permutation")
rows(mq.save, {"tensors": {"a": QT}}, "path", [None, 1, b"x.npz", ["x.npz"]], TypeError, "path must be a str")
rows(mq.save, {"path": "unused.npz"}, "tensors", [[QT], None, QT], TypeError, "tensors must be a dict")
rows(mq.save, {"path": "unused.npz"}, "tensors", [{1: QT}, {None: QT}], TypeError, "tensor names must be str")
rows(mq.save, {"path": "unused.npz"}, "tensors", [{"a": W}, {"a": None}], TypeError, "must be a QuantizedTensor")
rows(mq.save, {"tensors": {"a": QT}}, "path", ["/no/such/folder/x.npz"], ValueError, "does not exist")
rows(mq.load, {}, "path", [None, 1, b"x.npz", ["x.npz"]], TypeError, "path must be a str")
rows(mq.load, {}, "path", [str(Path(__file__).parent)], ValueError, "is a directory")
rows(mq.load, {}, "path", [__file__], ValueError, "is not a readable .npz")
rows(mq.load, {}, "path", ["/no/such/file.npz"], OSError, "does not exist")

# ------------------------------------------------------------------------ the dialects (15.4)
qts(F.transpose, {})
rows(F.transpose, {}, "qt", [QT_3D, QT_DQ], ValueError, "qt ")

qts(F.matmulnbits_pack, {})
rows(F.matmulnbits_pack, {}, "qt", [QT_3D], ValueError, "qt must be a 2-D (K, N) weight")
rows(F.matmulnbits_pack, {}, "qt", [QT_NF4], ValueError, "qt must be grouped along axis 0")
rows(F.matmulnbits_pack, {"qt": QT16}, "block_size", [b for b in NOT_INT if b is not None], TypeError,
     "block_size must be an int")
rows(F.matmulnbits_pack, {"qt": QT16}, "block_size", [0, 8, 24, -16], ValueError, "block_size must be a power of two")
rows(F.matmulnbits_pack, {"qt": mq.quantize(np.ones((32, 8), f32), group_size=16)}, "block_size", [32], ValueError,
     "block_size must divide the group size")
qts(F.matmulnbits_block_size, {})
rows(F.is_block_size, {}, "block_size", NOT_INT, TypeError, "block_size must be an int")

_mu = {"b": MNB[0], "scales": MNB[1], "zero_points": MNB[2], "k": 16}
rows(F.matmulnbits_unpack, _mu, "b", NOT_BYTES, TypeError, "B must be a numpy uint8 array")
rows(F.matmulnbits_unpack, _mu, "b", [MNB[0][0]], ValueError, "B must be 3-D")
rows(F.matmulnbits_unpack, _mu, "scales", [MNB[1].astype(np.float64), [[1.0]], None], TypeError,
     "scales must be a float32 or float16 array")
rows(F.matmulnbits_unpack, _mu, "scales", [np.ones(3, f32)], ValueError, "scales must hold")
rows(F.matmulnbits_unpack, _mu, "zero_points", NOT_BYTES[:4], TypeError, "zero_points must be a numpy uint8")
rows(F.matmulnbits_unpack, _mu, "zero_points", [np.zeros(100, np.uint8)], ValueError, "zero_points must hold")
sizes(F.matmulnbits_unpack, _mu, "k")
rows(F.matmulnbits_unpack, _mu, "k", [17, 100], ValueError, "k must lie in")
rows(F.matmulnbits_unpack, _mu, "bits", NOT_INT, TypeError, "bits must be one of 2, 4, 8 (an int)")
rows(F.matmulnbits_unpack, _mu, "bits", [3, 16, 0], ValueError, "bits must be one of 2, 4, 8")

_od = {"w": np.ones((16, 2), f32), "block_size": 16}
rows(F.ort_default_quantize, _od, "w", [np.ones((16, 2)), [[1.0, 2.0]] * 16, np.ones((16, 2), np.int32), None],
     TypeError, "w must be a float32 or float16 array")
rows(F.ort_default_quantize, _od, "w", [np.ones(16, f32), np.zeros((0, 2), f32), np.ones((16, 2, 1), f32)],
     ValueError, "w must")
rows(F.ort_default_quantize, _od, "w", [NAN_W.repeat(2, axis=0)], ValueError, "w must be finite")
rows(F.ort_default_quantize, _od, "block_size", NOT_INT, TypeError, "block_size must be one of")
rows(F.ort_default_quantize, _od, "block_size", [8, 24, 512, 0], ValueError, "block_size must be one of")
flags(F.ort_default_quantize, _od, "symmetric")

for _q in (F.q4_0_quantize, F.q4_1_quantize, F.q8_0_quantize):
    weights(_q, {"w": W32})
    rows(_q, {}, "w", [np.ones((2, 31), f32), np.ones(16, f32)], ValueError, "multiple of 32")
    rows(_q, {}, "w", [np.where(np.arange(64).reshape(2, 32) == 5, np.nan, W32).astype(f32)], ValueError,
         "w must be finite")
for _d, _q in ((F.q4_0_decode, F.q4_0_quantize), (F.q4_0_dequantize, F.q4_0_quantize),
               (F.q4_1_decode, F.q4_1_quantize), (F.q4_1_dequantize, F.q4_1_quantize),
               (F.q8_0_decode, F.q8_0_quantize), (F.q8_0_dequantize, F.q8_0_quantize)):
    _g = {"data": _q(W32), "shape": (2, 32)}
    rows(_d, _g, "data", NOT_BYTES, TypeError, "data must be a numpy uint8 array")
    rows(_d, _g, "shape", NOT_SHAPE, TypeError, "shape must be a tuple of ints")
    rows(_d, _g, "shape", [(), (-2, -32)], ValueError, "shape must have at least one dimension")
    rows(_d, _g, "shape", [(2, 31), (64, 1)], ValueError, "multiple of 32")
    rows(_d, _g, "shape", [(4, 32), (32,)], ValueError, "data must hold")
for _e in (F.q4_0_encode, F.q4_1_encode, F.q8_0_encode):
    qts(_e, {})
    rows(_e, {}, "qt", [QT_NF4, QT_3D, QT16], ValueError, "qt must be")

qts(F.bnb_nf4_pack, {})
rows(F.bnb_nf4_pack, {}, "qt", [QT, QT_Q4_1], ValueError, "qt must use the NF4 codebook")
_bu = {"packed": BNB_PACKED, "absmax": BNB_ABSMAX, "shape": (2, 32), "blocksize": 32}
rows(F.bnb_nf4_unpack, _bu, "packed", NOT_BYTES, TypeError, "packed must be a numpy uint8 array")
rows(F.bnb_nf4_unpack, _bu, "absmax", [BNB_ABSMAX.astype(np.float16), BNB_ABSMAX.tolist(), np.float32(2.0), None],
     TypeError, "absmax must be a float32 array")
rows(F.bnb_nf4_unpack, _bu, "absmax", [BNB_ABSMAX[:1]], ValueError, "absmax must hold")
rows(F.bnb_nf4_unpack, _bu, "shape", NOT_SHAPE, TypeError, "shape must be a tuple of ints")
rows(F.bnb_nf4_unpack, _bu, "shape", [(), (2, -32)], ValueError, "shape must have at least one dimension")
rows(F.bnb_nf4_unpack, _bu, "shape", [(3, 32)], ValueError, "packed must hold")
sizes(F.bnb_nf4_unpack, _bu, "blocksize")
rows(F.bnb_nf4_unpack, _bu, "blocksize", [24], ValueError, "is not a multiple of blocksize")

_gd = {**GPTQ_T}
rows(F.gptq_decode, _gd, "qweight", [GPTQ_T["qweight"].astype(np.int64), [[1]], None], TypeError,
     "qweight must be an int32 array")
rows(F.gptq_decode, _gd, "qweight", [GPTQ_T["qweight"][0]], ValueError, "qweight must be 2-D")
rows(F.gptq_decode, _gd, "qzeros", [GPTQ_T["qzeros"].astype(f32), None], TypeError, "qzeros must be an int32 array")
rows(F.gptq_decode, _gd, "scales", [GPTQ_T["scales"].astype(np.float64), None], TypeError, "scales must be a float32")
rows(F.gptq_decode, _gd, "scales", [GPTQ_T["scales"][:, :4]], ValueError, "scales must have shape")
rows(F.gptq_decode, _gd, "g_idx", [np.zeros(16, f32), ["0"] * 16, np.zeros(16, bool)], TypeError,
     "g_idx must be an integer array")
rows(F.gptq_decode, _gd, "g_idx", [np.zeros(8, np.int32), np.full(16, 3)], ValueError, "g_idx")
rows(F.gptq_decode, {**_gd, "g_idx": None}, "group_size", NOT_INT[:-3] + [[4]], TypeError, "group_size must be an int")
rows(F.gptq_decode, {**_gd, "g_idx": None}, "group_size", NOT_POSITIVE + [4], ValueError, "group_size")
rows(F.gptq_decode, _gd, "checkpoint_format", NOT_STR, TypeError, "checkpoint_format must be one of")
rows(F.gptq_decode, _gd, "checkpoint_format", ["gptq_v3", "GPTQ", ""], ValueError, "checkpoint_format must be one of")
qts(F.gptq_encode, {})
rows(F.gptq_encode, {}, "qt", [QT_NF4, QT_3D], ValueError, "qt must be")
rows(F.gptq_encode, {}, "qt", [QT], ValueError, "K and N must be multiples of 8")
rows(F.gptq_encode, {"qt": QT16}, "checkpoint_format", NOT_STR, TypeError, "checkpoint_format must be one of")
rows(F.gptq_encode, {"qt": QT16}, "checkpoint_format", ["v2"], ValueError, "checkpoint_format must be one of")
rows(F.awq_decode, AWQ_T, "qweight", [AWQ_T["qweight"].astype(np.uint8), None], TypeError, "qweight must be an int32")
rows(F.awq_decode, AWQ_T, "qzeros", [AWQ_T["qzeros"].tolist()], TypeError, "qzeros must be an int32")
rows(F.awq_decode, AWQ_T, "qzeros", [np.zeros((1, 2), np.int32)], ValueError, "qzeros must have shape")
rows(F.awq_decode, AWQ_T, "scales", [AWQ_T["scales"].astype(np.float64)], TypeError, "scales must be a float32")
rows(F.awq_decode, AWQ_T, "scales", [AWQ_T["scales"][:, :4]], ValueError, "qzeros/scales must describe")
qts(F.awq_encode, {})
rows(F.awq_encode, {}, "qt", [QT_NF4, QT_3D], ValueError, "qt must be a 2-D (K, N) int4/uint4 weight")
rows(F.awq_encode, {}, "qt", [QT], ValueError, "AWQ needs N % 8 == 0")

# ---------------------------------------------------------------------- the algorithms (15.5)
for _fn in (A.mse_scales, A.quantize_mse):
    _b = {"w": W}
    weights(_fn, _b)
    rows(_fn, _b, "w", [NAN_W], ValueError, "w must be finite")
    sizes(_fn, _b, "group_size")
    axes(_fn, _b)
    flags(_fn, _b, "symmetric", "negative_scales")
    rows(_fn, _b, "grid", ["abc", None, [True], [[0.5], [0.5, 1.0]], [1j]], TypeError, "grid must be")
    rows(_fn, _b, "grid", [[], [0.0], [1.5], [-0.5], [[0.5]], [np.nan]], ValueError, "grid must be a non-empty 1-D")
    scale_dtypes(_fn, _b)
    weights(_fn, _b, "importance", quantizer=False, optional=True)
    rows(_fn, _b, "importance", [np.ones(4, f32), np.ones((8, 1), f32)], ValueError, "importance must have shape (8,)")
    rows(_fn, _b, "importance", [1.0], ValueError, "importance must have at least 1 dimension")
    rows(_fn, _b, "importance", [-np.ones(8, f32), np.full(8, np.nan, f32)], ValueError,
         "importance must be finite and non-negative")
    rows(_fn, _b, "norm", ["2", None, True, [2.0], 1j], TypeError, "norm must be a real number")
    rows(_fn, _b, "norm", [0.5, 0, 16.5, np.nan, -np.inf], ValueError, "norm must be a finite number in [1, 16]")
rows(A.mse_scales, {"w": W}, "bits", NOT_INT, TypeError, "bits must be one of 4, 8 (an int)")
rows(A.mse_scales, {"w": W}, "bits", [2, 3, 16], ValueError, "bits must be one of 4, 8")
flags(A.quantize_mse, {"w": W}, "int8_fallback")

_bt = {"w32": W, "scale": QT.scale, "zero_point": None, "axis": 0, "group_size": 4}
weights(A.build_tensor, _bt, "w32", quantizer=False)
rows(A.build_tensor, _bt, "scale", [QT.scale.astype(np.float64), QT.scale.tolist()], TypeError,
     "scale must be a float32 or float16 array")
rows(A.build_tensor, _bt, "scale", [QT.scale[:1]], ValueError, "group shape (2, 4)")
rows(A.build_tensor, _bt, "zero_point", [np.zeros((2, 4), np.int64)], TypeError, "zero_point must be a numpy uint8")
axes(A.build_tensor, _bt)
sizes(A.build_tensor, _bt, "group_size")
rows(A.build_tensor, _bt, "bits", NOT_INT, TypeError, "bits must be one of 4, 8 (an int)")
rows(A.build_tensor, _bt, "bits", [2], ValueError, "bits must be one of 4, 8")

for _fn, _b in ((A.gptq_from_hessian, {"w": W, "h": H}), (A.gptq, {"w": W, "x": X})):
    weights(_fn, _b)
    rows(_fn, _b, "w", [np.ones(8, f32), np.ones((8, 4, 1), f32)], ValueError, "w must")
    rows(_fn, _b, "w", [NAN_W], ValueError, "w must be finite")
    sizes(_fn, _b, "group_size")
    sizes(_fn, _b, "block_size")
    flags(_fn, _b, "symmetric", "act_order", "int8_fallback")
    rows(_fn, _b, "damp", ["0.01", None, True, [0.01], 1j], TypeError, "damp must be a real number")
    rows(_fn, _b, "damp", [0, 0.0, -0.01, np.nan, np.inf], ValueError, "damp must be a finite number in (0, inf)")
    rows(_fn, _b, "scale_search", NOT_STR, TypeError, "scale_search must be one of")
    rows(_fn, _b, "scale_search", ["MSE", "gptq"], ValueError, "scale_search must be one of")
    scale_dtypes(_fn, _b)
weights(A.gptq_from_hessian, {"w": W}, "h", quantizer=False)
rows(A.gptq_from_hessian, {"w": W}, "h", [np.eye(4), np.ones(8), np.eye(8)[None]], ValueError, "h must")
rows(A.gptq_from_hessian, {"w": W}, "h", [np.full((8, 8), np.nan)], ValueError, "h must be finite")
weights(A.gptq, {"w": W}, "x", quantizer=False)
rows(A.gptq, {"w": W}, "x", [np.ones(8, f32), np.ones((3, 7), f32), np.full((3, 8), np.inf, f32)], ValueError, "x must")

for _fn, _b in ((A.awq_from_stats, {"w": W, "mean_abs": np.ones(8, f32), "h": H}), (A.awq, {"w": W, "x": X})):
    weights(_fn, _b)
    rows(_fn, _b, "w", [np.ones(8, f32), NAN_W], ValueError, "w must")
    sizes(_fn, _b, "group_size")
    flags(_fn, _b, "symmetric", "int8_fallback")
    rows(_fn, _b, "grid", ["abc", None, [True]], TypeError, "grid must be")
    rows(_fn, _b, "grid", [[], [1.5], [-0.1], [np.nan]], ValueError, "grid must be a non-empty 1-D")
    rows(_fn, _b, "scale_search", NOT_STR, TypeError, "scale_search must be one of")
    rows(_fn, _b, "scale_search", ["gptq"], ValueError, "scale_search must be one of")
    scale_dtypes(_fn, _b)
_as = {"w": W, "mean_abs": np.ones(8, f32), "h": H}
weights(A.awq_from_stats, _as, "mean_abs", quantizer=False)
rows(A.awq_from_stats, _as, "mean_abs", [np.ones(4, f32), -np.ones(8, f32)], ValueError, "mean_abs must")
weights(A.awq_from_stats, _as, "h", quantizer=False)
rows(A.awq_from_stats, _as, "h", [np.eye(4), np.full((8, 8), np.inf)], ValueError, "h must")
weights(A.awq, {"w": W}, "x", quantizer=False)
rows(A.awq, {"w": W}, "x", [np.ones(8, f32), np.ones((3, 7), f32), np.full((3, 8), np.nan, f32)], ValueError, "x must")


def _row_id(row: Row) -> str:
    fn, _, param, bads, exc, _ = row
    return f"{getattr(fn, '__qualname__', fn)}-{param}-{exc.__name__}-{len(bads)}"


@pytest.mark.parametrize("fn,base,param,bads,exc,fragment", ROWS, ids=[_row_id(r) for r in ROWS])
def test_bad_argument(fn, base, param, bads, exc, fragment):
    for bad in bads:
        try:
            fn(**{**base, param: bad})
        except Exception as e:  # noqa: BLE001 - the class is what is checked
            got: BaseException = e
        else:
            pytest.fail(f"{param}={bad!r}: nothing raised, expected {exc.__name__}")
        # exactly the class (not a subclass), the fragment, one line (the command line prints it as it is)
        assert type(got) is exc and fragment in str(got) and "\n" not in str(got), f"{param}={bad!r}: {got!r}"


#: Several bad arguments at once (spec 15.6): signature order, type before value, data last.
ORDER = [
    (mq.quantize, {"w": np.zeros((0, 4), f32), "group_size": 1.5}, ValueError, "w must have at least one element"),
    (mq.quantize, {"w": W, "group_size": 0, "scale_dtype": None}, ValueError, "group_size"),
    (mq.quantize, {"w": W, "axis": 5, "scale_dtype": None}, ValueError, "axis"),
    (mq.quantize, {"w": W, "symmetric": 1, "group_size": -1}, ValueError, "group_size"),
    (mq.quantize, {"w": NAN_W, "group_size": "8"}, TypeError, "group_size"),
    (mq.quantize, {"w": NAN_W, "dq_block_size": None}, TypeError, "dq_block_size"),
    (mq.quantize_nf4, {"w": NAN_W, "double_quant": "yes"}, TypeError, "double_quant"),
    (mq.quantize_nf4, {"w": 1.5, "block_size": None}, ValueError, "w must have at least 1 dimension"),
    (mq.double_quantize, {"qt": QT_DQ, "block_size": "x"}, ValueError, "already double-quantized"),
    (mq.double_quantize, {"qt": QT, "block_size": 0, "w": "abc"}, ValueError, "block_size"),
    (mq.dequant_matmul, {"x": np.ones((2, 8), np.int64), "qt": None}, TypeError, "x must"),
    (mq.dequant_matmul, {"x": 1.5, "qt": None}, ValueError, "x must have at least 1 dimension"),
    (mq.dequant_matmul, {"x": np.ones((2, 7), f32), "qt": QT, "bias": "b"}, ValueError, "x must have last dimension"),
    (mq.unpack_int4, {"packed": [1], "count": -1}, TypeError, "packed"),
    (mq.QuantizedTensor, {"data": [1], "shape": (8, 4.0), "axis": 0, "block_size": 4, "scale": None}, TypeError,
     "shape"),
    (mq.QuantizedTensor, {"data": QT.data[:3], "shape": (8, 4), "axis": 0, "block_size": 0, "scale": QT.scale},
     ValueError, "block_size"),
    (F.ort_default_quantize, {"w": NAN_W.repeat(2, axis=0), "block_size": 16.0}, TypeError, "block_size"),
    (F.q4_0_decode, {"data": np.zeros(18, np.uint8), "shape": (1, 31.0)}, TypeError, "shape"),
    (F.bnb_nf4_unpack, {"packed": BNB_PACKED, "absmax": BNB_ABSMAX, "shape": (9, 32), "blocksize": "64"},
     ValueError, "packed must hold"),
    (F.gptq_decode, {**GPTQ_T, "g_idx": None, "group_size": None, "checkpoint_format": 1}, ValueError,
     "group_size is required"),
    (A.mse_scales, {"w": NAN_W, "norm": "2"}, TypeError, "norm"),
    (A.mse_scales, {"w": W, "grid": [], "bits": 4.0}, ValueError, "grid"),
    (A.gptq_from_hessian, {"w": W, "h": np.full((8, 8), np.nan), "damp": None}, TypeError, "damp"),
    (A.gptq, {"w": W, "x": np.full((3, 8), np.nan, f32), "scale_search": 1}, TypeError, "scale_search"),
    (A.awq, {"w": W, "x": np.full((3, 8), np.nan, f32), "grid": None}, TypeError, "grid"),
]


@pytest.mark.parametrize("fn,kwargs,exc,fragment", ORDER,
                         ids=[f"{fn.__name__}-{'-'.join(kw)}" for fn, kw, *_ in ORDER])
def test_order_of_checks(fn, kwargs, exc, fragment):
    with pytest.raises(exc, match=re.escape(fragment)) as info:
        fn(**kwargs)
    assert type(info.value) is exc


# ------------------------------------------------------------- what is accepted (15.2)
def test_array_likes_are_accepted_as_arrays():
    w = [[0.5, -1.0], [2.0, 0.25]]
    assert mq.quantize(w, group_size=2).equals(mq.quantize(np.array(w, f32), group_size=2))
    assert mq.quantize_nf4(w, block_size=2).equals(mq.quantize_nf4(np.array(w, f32), block_size=2))
    assert F.q8_0_quantize([W32[0].tolist()]).tobytes() == F.q8_0_quantize(W32[:1]).tobytes()
    assert mq.pack_int4([1, 2, 3, 4]).tolist() == mq.pack_int4(np.array([1, 2, 3, 4])).tolist() == [0x21, 0x43]
    qt = mq.quantize(W, group_size=4)
    assert np.array_equal(mq.dequant_matmul(X.tolist(), qt), mq.dequant_matmul(X, qt))


def test_numpy_integers_and_bools_are_accepted():
    got = mq.quantize(W, group_size=np.int64(4), axis=np.int8(-2), symmetric=np.bool_(False),
                      scale_dtype="half", dq_block_size=np.uint16(8), double_quant=np.bool_(True))
    assert got.equals(mq.quantize(W, group_size=4, symmetric=False, scale_dtype=np.float16, double_quant=True,
                                  dq_block_size=8))
    assert mq.unpack_int4(np.array([0xE1], np.uint8), np.int32(2)).tolist() == [1, -2]
    assert F.is_block_size(np.int64(64)) and not F.is_block_size(-16) and not F.is_block_size(0)
    assert mq.dequantize(QT, "float64").dtype == np.float64
    assert mq.dequantize(QT, np.dtype("float16")).dtype == np.float16
    assert F.q4_0_decode(F.q4_0_quantize(W32), [np.int64(2), 32]).equals(QT_Q4_0)


def test_empty_and_0d_weights_are_rejected_alike():
    """Every quantizer rejects an empty weight, whatever axis is empty; decoders and packing accept empty input."""
    for w in (np.zeros((4, 0), f32), np.zeros((0, 4), f32), np.zeros(0, f32)):
        for fn in (mq.quantize, mq.quantize_nf4, mq.quantize_mxfp4, mq.quantize_nvfp4, A.quantize_mse, A.mse_scales):
            with pytest.raises(ValueError, match="w must have at least one element"):
                fn(w)
    for fn in (mq.quantize, mq.quantize_nf4):
        with pytest.raises(ValueError, match="w must have at least 1 dimension"):
            fn(np.float32(2.0))
    assert mq.pack_int4(np.zeros(0, np.int8)).size == 0
    assert mq.unpack_int4(np.zeros(0, np.uint8), 0).size == 0
    assert mq.dequant_matmul(np.zeros((0, 8), f32), QT).shape == (0, 4)


def test_float64_beyond_float32_is_a_value_error_at_the_exact_bound():
    """``|x| >= 2**128 - 2**103`` rounds to inf in float32; the largest float32 and just below the bound do not."""
    big = float(np.finfo(f32).max)
    bound = 2.0**128 - 2.0**103
    below = np.nextafter(bound, 0.0)
    assert np.float32(below) == np.float32(big)
    w = np.array([[below, 1.0], [-below, 0.0]])
    assert mq.quantize(w, group_size=2).scale[0, 0] == np.float32(big) / np.float32(7)
    for v in (bound, -bound, 1e39):
        with pytest.raises(ValueError, match=r"w must fit in float32: 1 float64 value\(s\) round to \+-inf"):
            mq.quantize(np.array([[v, 1.0], [0.0, 0.0]]), group_size=2)
    with pytest.raises(ValueError, match="w must be finite"):  # a float64 inf is non-finite, not out of range
        mq.quantize(np.array([[np.inf, 1.0]]), group_size=2)


def test_inputs_are_not_modified():
    w = W.astype(np.float64)
    before = w.copy()
    mq.quantize(w, group_size=4)
    A.gptq_from_hessian(w, H, group_size=4)
    assert np.array_equal(w, before)


@pytest.mark.parametrize("argv,fragment", [
    (["demo", "--group-size", "0"], "group_size must be a positive int, got 0"),
    (["demo", "--group-size", "1.5"], "invalid int value"),
])
def test_cli_turns_argument_errors_into_one_line(argv, fragment, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("option,exc", [
    ({"group_size": 1.5}, TypeError), ({"group_size": True}, TypeError), ({"group_size": 0}, ValueError),
    ({"scale_dtype": None}, TypeError), ({"scale_dtype": "float64"}, ValueError), ({"min_elements": 1.5}, TypeError),
])
def test_onnx_quantizer_options_follow_the_contract_on_one_line(option, exc):
    onnx = pytest.importorskip("onnx")
    from monoquant_np.onnx.quantizer.pipeline import quantize_model

    h = onnx.helper
    graph = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
                         [onnx.numpy_helper.from_array(np.ones((64, 8), f32), "W")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])
    with pytest.raises(exc, match=re.escape(next(iter(option)))) as info:
        quantize_model(model, **option)
    assert type(info.value) is exc and "\n" not in str(info.value)
