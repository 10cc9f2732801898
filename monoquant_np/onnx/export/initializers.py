"""A ``QuantizedTensor`` as ONNX initializers, and back (spec section 9.1).

:func:`tensor_to_onnx` writes the canonical container as standard ONNX
tensors that ``DequantizeLinear`` (opset 21) consumes unchanged:

=====================  =========================================  ===============================
tensor                 ONNX type, dims                            content
=====================  =========================================  ===============================
``name``               INT2/UINT2/INT4/UINT4/INT8/UINT8, shape    ``qt.data`` as ``raw_data``
``name_scale``         FLOAT or FLOAT16, the scale layout         ``qt.scale``
``name_zero_point``    UINT2 / UINT4 / UINT8 (the code width)     ``qt.zero_point`` (asymmetric)
``name_codebook``      FLOAT ``(16,)``                            ``qt.codebook`` (NF4)
``name_perm``          INT64 ``(shape[axis],)``                   ``qt.perm`` (act-order)
``name_scale_codes``   INT8, the scale layout                     ``double_quant.codes``
``name_scale_scale``   FLOAT ``(n_blocks,)``                      ``double_quant.scale``
``name_scale_offset``  FLOAT ``()``                               ``double_quant.offset``
=====================  =========================================  ===============================

Two scale layouts (:func:`scale_dims`):

2-bit tensors (``INT2``/``UINT2``, spec 20) need opset 25
(:data:`~monoquant_np.onnx.export.constants.INT2_OPSET`, :func:`opset_for`).

* ``blocked`` (every 2- and 4-bit tensor): scale dims = ``group_shape(shape, axis,
  block_size)``, consumed by ``DequantizeLinear(axis=axis, block_size=block_size)``.
* ``per_axis`` (the 2-D int8 fallback, one group per channel, spec 7): scale
  dims ``(shape[1 - axis],)``, consumed by ``DequantizeLinear(axis=1 - axis)``
  without ``block_size``; onnxruntime fuses this form into ``MatMulNBits``
  (bits=8), while a blocked int8 layout with a non-power-of-two block is not.

The weight tensor carries ``metadata_props`` ``monoquant.axis``,
``monoquant.block_size``, ``monoquant.layout`` and ``monoquant.scale_dtype`` so
:func:`tensor_from_onnx` can rebuild ``axis`` and ``block_size``, which the
dims alone do not fix (``K = 10`` in 2 groups is ``block_size`` 5..9). Every
tensor carries ``monoquant.role``.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.array([[0.5, -1.0], [3.5, 2.0]], np.float32), group_size=2)
    >>> [t.name for t in tensor_to_onnx(qt, "w")]
    ['w', 'w_scale']
    >>> tensor_from_onnx(*tensor_to_onnx(qt, "w")).equals(qt)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ...double_quant import DoubleQuant
from ...errors import check_name
from ...groups import group_shape
from ...packing import pack_codes, storage_size, unpack_codes
from ...tensor import QuantizedTensor, check_qt
from .constants import INT2_OPSET, OPSET

__all__ = [
    "tensor_to_onnx",
    "tensor_from_onnx",
    "weight_initializers",
    "is_per_axis",
    "scale_dims",
    "raw_tensor",
    "int64_tensor",
    "opset_for",
]

# role -> name suffix; longest suffixes first so that "_scale_codes" wins over "_scale".
_SUFFIX = {
    "dq_codes": "_scale_codes",
    "dq_scale": "_scale_scale",
    "dq_offset": "_scale_offset",
    "zero_point": "_zero_point",
    "codebook": "_codebook",
    "scale": "_scale",
    "perm": "_perm",
}
_META = "monoquant."
# ONNX weight type -> (bits, signed)
_WEIGHT_TYPES: dict[int, tuple[int, bool]] = {TensorProto.INT4: (4, True), TensorProto.UINT4: (4, False),
                 TensorProto.INT8: (8, True), TensorProto.UINT8: (8, False),
                 TensorProto.INT2: (2, True), TensorProto.UINT2: (2, False)}
# the zero point's ONNX type per code width
_ZP_TYPES = {2: TensorProto.UINT2, 4: TensorProto.UINT4, 8: TensorProto.UINT8}


def opset_for(tensors: Sequence[QuantizedTensor]) -> int:
    """The ``ai.onnx`` opset a graph of ``tensors`` needs: :data:`INT2_OPSET` (25, ``INT2``/``UINT2``)
    when one has 2-bit codes, else :data:`OPSET` (21)."""
    return INT2_OPSET if any(qt.bits == 2 and qt.codebook is None for qt in tensors) else OPSET


def raw_tensor(name: str, data_type: int, dims: Sequence[int], data: np.ndarray) -> TensorProto:
    """A ``TensorProto`` whose ``raw_data`` is ``data``'s bytes verbatim (packed nibbles for INT4/UINT4)."""
    return helper.make_tensor(name, data_type, list(dims), np.ascontiguousarray(data).tobytes(), raw=True)


def int64_tensor(name: str, values: Any) -> TensorProto:
    """An INT64 tensor of ``values`` (shapes and indices), dims ``np.shape(values)``."""
    a = np.asarray(values, dtype=np.int64)
    return raw_tensor(name, TensorProto.INT64, a.shape, a)


def _tag(t: TensorProto, **meta: Any) -> TensorProto:
    for k, v in meta.items():
        t.metadata_props.add(key=_META + k, value=str(v))
    return t


def _meta(t: TensorProto) -> dict[str, str]:
    return {p.key[len(_META):]: p.value for p in t.metadata_props if p.key.startswith(_META)}


def is_per_axis(qt: QuantizedTensor) -> bool:
    """True for the 2-D int8 per-channel fallback, exported with a 1-D scale (the ``per_axis`` layout)."""
    return qt.bits == 8 and len(qt.shape) == 2 and qt.n_groups == 1 and qt.codebook is None


def scale_dims(qt: QuantizedTensor) -> tuple[int, ...]:
    """Dims of the exported scale (and zero point): ``(shape[1 - axis],)`` per axis, else the group shape."""
    return (qt.shape[1 - qt.axis],) if is_per_axis(qt) else tuple(qt.scale.shape)


def _weight_type(qt: QuantizedTensor) -> int:
    return next(t for t, bs in _WEIGHT_TYPES.items() if bs == (qt.bits, qt.signed))


def _scale_tensors(qt: QuantizedTensor, name: str, sdims: tuple[int, ...]) -> list[TensorProto]:
    """``name_scale``, or the three double-quantization tensors that replace it."""
    dq = qt.double_quant
    if dq is None:
        return [_tag(numpy_helper.from_array(qt.scale.reshape(sdims), name + "_scale"), role="scale")]
    if not np.array_equal(dq.rebuild().astype(qt.scale.dtype), qt.scale):
        raise ValueError(f"qt.scale of {name!r} must equal qt.double_quant.rebuild(); the tensor is inconsistent")
    codes = np.asarray(dq.codes, dtype=np.int8).reshape(sdims)
    return [
        _tag(numpy_helper.from_array(codes, name + "_scale_codes"), role="dq_codes", block_size=dq.block_size),
        _tag(numpy_helper.from_array(np.asarray(dq.scale, np.float32), name + "_scale_scale"), role="dq_scale"),
        _tag(numpy_helper.from_array(np.array(dq.offset, np.float32), name + "_scale_offset"), role="dq_offset"),
    ]


def _zero_point_tensor(zero_point: np.ndarray, bits: int, name: str, sdims: tuple[int, ...]) -> TensorProto:
    """``name_zero_point``: UINT2 / UINT4 (packed, spec 20.3 / 5) or UINT8 of the scale's dims."""
    zp = zero_point.reshape(sdims)
    if bits in (2, 4):
        return _tag(raw_tensor(name + "_zero_point", _ZP_TYPES[bits], sdims, pack_codes(zp, bits)), role="zero_point")
    return _tag(numpy_helper.from_array(zp, name + "_zero_point"), role="zero_point")


def tensor_to_onnx(qt: QuantizedTensor, name: str) -> list[TensorProto]:
    """The ONNX initializers of ``qt`` (see the module table), weight first.

    Args:
        qt: any :class:`QuantizedTensor` (int4, uint4, int8/uint8 fallback,
            NF4, double-quantized scales, act-order ``perm``), any axis.
        name: the weight tensor's name; the others are ``name`` + a suffix.

    Returns:
        A list of ``TensorProto`` in the order weight, scale (or the three
        double-quantization tensors), zero point, codebook, perm, omitting
        those ``qt`` does not have. Packed data is copied byte for byte: ONNX's
        INT4/UINT4 ``raw_data`` is the spec's nibble order (spec 5).

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: empty ``name``; ``qt.scale`` is not the rebuild of
            ``qt.double_quant``.
    """
    qt = check_qt(qt)
    name = check_name(name, "name")
    sdims = scale_dims(qt)
    weight = _tag(raw_tensor(name, _weight_type(qt), qt.shape, qt.data), role="weight", axis=qt.axis,
                  block_size=qt.block_size, layout="per_axis" if is_per_axis(qt) else "blocked",
                  scale_dtype=qt.scale.dtype.name)
    out = [weight, *_scale_tensors(qt, name, sdims)]
    if qt.zero_point is not None:
        out.append(_zero_point_tensor(qt.zero_point, qt.bits, name, sdims))
    if qt.codebook is not None:
        out.append(_tag(numpy_helper.from_array(qt.codebook, name + "_codebook"), role="codebook"))
    if qt.perm is not None:
        out.append(_tag(numpy_helper.from_array(qt.perm, name + "_perm"), role="perm"))
    return out


def weight_initializers(qt: QuantizedTensor, name: str) -> list[TensorProto]:
    """:func:`tensor_to_onnx` without ``name_perm``: what a subgraph computing the STORED weight reads.

    A weight with ``perm`` stays in stored order; the permutation is applied
    to the activations instead (``input_permutation``, spec 6.2).
    """
    return [t for t in tensor_to_onnx(qt, name) if _meta(t)["role"] != "perm"]


def _role(t: TensorProto) -> str:
    role = _meta(t).get("role")
    if role:
        return role
    for r, suffix in _SUFFIX.items():
        if t.name.endswith(suffix):
            return r
    return "weight"


def _by_role(tensors: Sequence[Any]) -> dict[str, TensorProto]:
    """Role -> tensor; at most one tensor per role, and a weight among them."""
    by_role: dict[str, TensorProto] = {}
    for t in tensors:
        if not isinstance(t, TensorProto):
            raise TypeError(f"tensors must be onnx.TensorProto, got {type(t).__name__}")
        r = _role(t)
        if r in by_role:
            raise ValueError(f"tensors {by_role[r].name!r} and {t.name!r} both have role {r!r}")
        by_role[r] = t
    if "weight" not in by_role:
        raise ValueError(f"tensors must include the weight, got roles {sorted(by_role)}")
    return by_role


def _nibbles(t: TensorProto, count: int, bits: int = 4) -> np.ndarray:
    """Packed bytes of an INT4/UINT4 (or INT2/UINT2) tensor, from ``raw_data`` or ``int32_data``."""
    if t.raw_data:
        return np.frombuffer(t.raw_data, dtype=np.uint8).copy()
    vals = np.asarray(t.int32_data, dtype=np.int32)  # packed codes, one byte per int32 (ONNX spec)
    if vals.size >= storage_size(count, bits):
        return vals.astype(np.uint8)
    raise ValueError(f"tensor {t.name!r} holds {vals.size} bytes, fewer than {count} {bits}-bit codes need")


def _weight_data(w: TensorProto) -> tuple[np.ndarray, tuple[int, ...], int, bool]:
    """``(data, shape, bits, signed)`` of the weight tensor, ``data`` as ``QuantizedTensor.data``."""
    if w.data_type not in _WEIGHT_TYPES:
        got = TensorProto.DataType.Name(w.data_type)
        raise ValueError(f"weight {w.name!r} must be INT2, UINT2, INT4, UINT4, INT8 or UINT8, got {got}")
    bits, signed = _WEIGHT_TYPES[w.data_type]
    shape = tuple(int(d) for d in w.dims)
    size = int(np.prod(shape))
    if bits in (2, 4):
        return _nibbles(w, size, bits)[: storage_size(size, bits)], shape, bits, signed
    return numpy_helper.to_array(w).reshape(-1).view(np.uint8).copy(), shape, bits, signed


def _grouping(w: TensorProto, axis: int | None, block_size: int | None) -> tuple[int, int]:
    """``(axis, block_size)`` from the weight's metadata, else from the arguments."""
    meta = _meta(w)
    ax = int(meta["axis"]) if "axis" in meta else axis
    bs = int(meta["block_size"]) if "block_size" in meta else block_size
    if ax is None or bs is None:
        raise ValueError(f"weight {w.name!r} has no monoquant.axis/block_size metadata; pass axis= and "
                         "block_size= (the DequantizeLinear attributes)")
    return ax, bs


def _read_scale(by_role: dict[str, TensorProto], gshape: tuple[int, ...]) -> tuple[np.ndarray, DoubleQuant | None]:
    """``(scale, double_quant)``: the plain scale, or the rebuild of the three double-quantization tensors."""
    w = by_role["weight"]
    if "dq_codes" in by_role:
        c = by_role["dq_codes"]
        dq = DoubleQuant(codes=numpy_helper.to_array(c).astype(np.int8).reshape(gshape),
                         scale=numpy_helper.to_array(by_role["dq_scale"]).astype(np.float32),
                         offset=float(numpy_helper.to_array(by_role["dq_offset"])),
                         block_size=int(_meta(c).get("block_size", 256)))
        return dq.rebuild().astype(_meta(w).get("scale_dtype", "float32")), dq
    if "scale" in by_role:
        return numpy_helper.to_array(by_role["scale"]).reshape(gshape), None
    raise ValueError(f"tensors must include the scale of {w.name!r}, got roles {sorted(by_role)}")


def _read_zero_point(z: TensorProto | None, gshape: tuple[int, ...]) -> np.ndarray | None:
    if z is None:
        return None
    n = int(np.prod(gshape))
    if z.data_type in (TensorProto.UINT4, TensorProto.UINT2):
        bits = 4 if z.data_type == TensorProto.UINT4 else 2
        return unpack_codes(_nibbles(z, n, bits), n, bits, False).reshape(gshape)
    return numpy_helper.to_array(z).astype(np.uint8).reshape(gshape)


def tensor_from_onnx(*tensors: Any, axis: int | None = None, block_size: int | None = None) -> QuantizedTensor:
    """Rebuild the :class:`QuantizedTensor` that :func:`tensor_to_onnx` wrote.

    Args:
        *tensors: the ``TensorProto`` list (in any order; a single list is
            accepted too). Roles come from ``monoquant.role`` metadata, or
            failing that from the name suffixes of the module table.
        axis, block_size: the ``DequantizeLinear`` attributes, needed only
            when the weight has no ``monoquant.axis``/``block_size`` metadata.

    Returns:
        A tensor with the same codes, scales, zero points and metadata
        (``QuantizedTensor.equals`` holds for a round trip).

    Raises:
        ValueError: a missing weight or scale, two tensors with one role, an
            unsupported data type, or no axis/block size.
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    by_role = _by_role(tensors)
    data, shape, bits, signed = _weight_data(by_role["weight"])
    ax, bs = _grouping(by_role["weight"], axis, block_size)
    gshape = group_shape(shape, ax, bs)
    scale, dq = _read_scale(by_role, gshape)
    zp = _read_zero_point(by_role.get("zero_point"), gshape)
    codebook = numpy_helper.to_array(by_role["codebook"]) if "codebook" in by_role else None
    perm = numpy_helper.to_array(by_role["perm"]) if "perm" in by_role else None
    return QuantizedTensor(data=data, shape=shape, axis=ax, block_size=bs, scale=scale, zero_point=zp,
                           signed=signed and codebook is None, bits=bits, codebook=codebook,
                           double_quant=dq, perm=perm)
