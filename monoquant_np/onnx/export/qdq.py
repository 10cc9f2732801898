"""A ``QuantizedTensor`` as ONNX initializers and a ``DequantizeLinear`` subgraph (spec 9.1-9.3).

:func:`tensor_to_onnx` writes the canonical container as standard ONNX
tensors that ``DequantizeLinear`` (opset 21) consumes unchanged:

=====================  =========================================  ===============================
tensor                 ONNX type, dims                            content
=====================  =========================================  ===============================
``name``               INT4 / UINT4 / INT8 / UINT8, ``qt.shape``  ``qt.data`` as ``raw_data``
``name_scale``         FLOAT or FLOAT16, the scale layout         ``qt.scale``
``name_zero_point``    UINT4 (4 bits) / UINT8 (8 bits)            ``qt.zero_point`` (asymmetric)
``name_codebook``      FLOAT ``(16,)``                            ``qt.codebook`` (NF4)
``name_perm``          INT64 ``(shape[axis],)``                   ``qt.perm`` (act-order)
``name_scale_codes``   INT8, the scale layout                     ``double_quant.codes``
``name_scale_scale``   FLOAT ``(n_blocks,)``                      ``double_quant.scale``
``name_scale_offset``  FLOAT ``()``                               ``double_quant.offset``
=====================  =========================================  ===============================

Two scale layouts (spec 9.1):

* ``blocked`` (every 4-bit tensor): scale dims = ``group_shape(shape, axis,
  block_size)``, consumed by ``DequantizeLinear(axis=axis, block_size=block_size)``.
* ``per_axis`` (the 2-D int8 fallback, one group per channel, spec 7): scale
  dims ``(shape[1 - axis],)``, consumed by ``DequantizeLinear(axis=1 - axis)``
  without ``block_size``; onnxruntime fuses this form into ``MatMulNBits``
  (bits=8), while a blocked int8 layout with a non-power-of-two block is not.

The weight tensor carries ``metadata_props`` ``monoquant.axis``,
``monoquant.block_size`` and ``monoquant.layout`` so :func:`tensor_from_onnx`
can rebuild ``axis`` and ``block_size``, which the dims alone do not fix
(``K = 10`` in 2 groups is ``block_size`` 5..9). Every tensor carries
``monoquant.role``.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.array([[0.5, -1.0], [3.5, 2.0]], np.float32), group_size=2)
    >>> [t.name for t in tensor_to_onnx(qt, "w")]
    ['w', 'w_scale']
    >>> tensor_from_onnx(*tensor_to_onnx(qt, "w")).equals(qt)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...double_quant import DoubleQuant
from ...errors import check_name
from ...groups import group_shape
from ...packing import pack_int4, unpack_int4
from ...tensor import QuantizedTensor, check_qt
from .matmulnbits_node import matmulnbits_block_size, matmulnbits_node

__all__ = [
    "tensor_to_onnx",
    "tensor_from_onnx",
    "weight_subgraph",
    "input_permutation",
    "matmulnbits_node",
    "matmulnbits_block_size",
    "OPSET",
    "IR_VERSION",
    "MS_DOMAIN",
]

#: The opset of every exported model: blocked DequantizeLinear and INT4/UINT4 arrived in 21.
OPSET = 21
#: IR version 10 goes with opset 21; onnxruntime 1.32 loads IR <= 13 (onnx 1.23 writes 14).
IR_VERSION = 10
#: The domain of onnxruntime's contrib operators (MatMulNBits).
MS_DOMAIN = "com.microsoft"

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


def _tag(t: TensorProto, **meta: Any) -> TensorProto:
    for k, v in meta.items():
        t.metadata_props.add(key=_META + k, value=str(v))
    return t


def _meta(t: TensorProto) -> dict[str, str]:
    return {p.key[len(_META):]: p.value for p in t.metadata_props if p.key.startswith(_META)}


def _raw(name: str, data_type: int, dims: tuple[int, ...], data: np.ndarray) -> TensorProto:
    """A tensor whose bytes are ``data`` verbatim (packed nibbles for INT4/UINT4)."""
    return helper.make_tensor(name, data_type, list(dims), np.ascontiguousarray(data).tobytes(), raw=True)


def _per_axis(qt: QuantizedTensor) -> bool:
    """True for the 2-D int8 per-channel fallback, exported with a 1-D scale (spec 9.1)."""
    return qt.bits == 8 and len(qt.shape) == 2 and qt.n_groups == 1 and qt.codebook is None


def _weight_type(qt: QuantizedTensor) -> int:
    if qt.bits == 4:
        return TensorProto.INT4 if qt.signed else TensorProto.UINT4
    return TensorProto.INT8 if qt.signed else TensorProto.UINT8


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
    layout = "per_axis" if _per_axis(qt) else "blocked"
    gshape = qt.scale.shape
    sdims = (qt.shape[1 - qt.axis],) if layout == "per_axis" else gshape
    out = [_tag(_raw(name, _weight_type(qt), qt.shape, qt.data), role="weight", axis=qt.axis,
                block_size=qt.block_size, layout=layout, scale_dtype=qt.scale.dtype.name)]
    if qt.double_quant is None:
        out.append(_tag(numpy_helper.from_array(qt.scale.reshape(sdims), name + "_scale"), role="scale"))
    else:
        dq = qt.double_quant
        if not np.array_equal(dq.rebuild().astype(qt.scale.dtype), qt.scale):
            raise ValueError(f"qt.scale of {name!r} must equal qt.double_quant.rebuild(); the tensor is inconsistent")
        codes = np.asarray(dq.codes, dtype=np.int8).reshape(sdims)
        out.append(_tag(numpy_helper.from_array(codes, name + "_scale_codes"), role="dq_codes",
                        block_size=dq.block_size))
        out.append(_tag(numpy_helper.from_array(np.asarray(dq.scale, np.float32), name + "_scale_scale"),
                        role="dq_scale"))
        out.append(_tag(numpy_helper.from_array(np.array(dq.offset, np.float32), name + "_scale_offset"),
                        role="dq_offset"))
    if qt.zero_point is not None:
        zp = qt.zero_point.reshape(sdims)
        if qt.bits == 4:
            out.append(_raw(name + "_zero_point", TensorProto.UINT4, sdims, pack_int4(zp)))
        else:
            out.append(numpy_helper.from_array(zp, name + "_zero_point"))
        _tag(out[-1], role="zero_point")
    if qt.codebook is not None:
        out.append(_tag(numpy_helper.from_array(qt.codebook, name + "_codebook"), role="codebook"))
    if qt.perm is not None:
        out.append(_tag(numpy_helper.from_array(qt.perm, name + "_perm"), role="perm"))
    return out


def _role(t: TensorProto) -> str:
    role = _meta(t).get("role")
    if role:
        return role
    for r, suffix in _SUFFIX.items():
        if t.name.endswith(suffix):
            return r
    return "weight"


def _nibbles(t: TensorProto, count: int, signed: bool) -> np.ndarray:
    """Packed bytes of an INT4/UINT4 tensor, from ``raw_data`` or ``int32_data``."""
    if t.raw_data:
        return np.frombuffer(t.raw_data, dtype=np.uint8).copy()
    vals = np.asarray(t.int32_data, dtype=np.int32)  # packed pairs, one byte per int32 (ONNX spec)
    if vals.size * 2 >= count:
        return vals.astype(np.uint8)
    raise ValueError(f"tensor {t.name!r} holds {vals.size} bytes, fewer than {count} nibbles need")


def tensor_from_onnx(*tensors: TensorProto, axis: int | None = None, block_size: int | None = None) -> QuantizedTensor:
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
    w = by_role["weight"]
    types: dict[int, tuple[int, bool]] = {TensorProto.INT4: (4, True), TensorProto.UINT4: (4, False),
             TensorProto.INT8: (8, True), TensorProto.UINT8: (8, False)}
    if w.data_type not in types:
        got = TensorProto.DataType.Name(w.data_type)
        raise ValueError(f"weight {w.name!r} must be INT4, UINT4, INT8 or UINT8, got {got}")
    bits, signed = types[w.data_type]
    shape = tuple(int(d) for d in w.dims)
    meta = _meta(w)
    ax = int(meta["axis"]) if "axis" in meta else axis
    bs = int(meta["block_size"]) if "block_size" in meta else block_size
    if ax is None or bs is None:
        raise ValueError(f"weight {w.name!r} has no monoquant.axis/block_size metadata; pass axis= and "
                         "block_size= (the DequantizeLinear attributes)")
    size = int(np.prod(shape))
    if bits == 4:
        data = _nibbles(w, size, signed)[: (size + 1) // 2]
    else:
        data = numpy_helper.to_array(w).reshape(-1).view(np.uint8).copy()
    gshape = group_shape(shape, ax, bs)
    if "dq_codes" in by_role:
        c = by_role["dq_codes"]
        dq = DoubleQuant(codes=numpy_helper.to_array(c).astype(np.int8).reshape(gshape),
                         scale=numpy_helper.to_array(by_role["dq_scale"]).astype(np.float32),
                         offset=float(numpy_helper.to_array(by_role["dq_offset"])),
                         block_size=int(_meta(c).get("block_size", 256)))
        scale = dq.rebuild().astype(meta.get("scale_dtype", "float32"))
    elif "scale" in by_role:
        dq = None
        scale = numpy_helper.to_array(by_role["scale"]).reshape(gshape)
    else:
        raise ValueError(f"tensors must include the scale of {w.name!r}, got roles {sorted(by_role)}")
    zp = None
    if "zero_point" in by_role:
        z = by_role["zero_point"]
        n = int(np.prod(gshape))
        zp = (unpack_int4(_nibbles(z, n, False), n, signed=False) if z.data_type == TensorProto.UINT4
              else numpy_helper.to_array(z).astype(np.uint8)).reshape(gshape)
    codebook = numpy_helper.to_array(by_role["codebook"]) if "codebook" in by_role else None
    perm = numpy_helper.to_array(by_role["perm"]) if "perm" in by_role else None
    return QuantizedTensor(data=data, shape=shape, axis=ax, block_size=bs, scale=scale, zero_point=zp,
                           signed=signed and codebook is None, bits=bits, codebook=codebook,
                           double_quant=dq, perm=perm)


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
    NF4 codebooks and double-quantized scales are built by
    ``monoquant_np.onnx.export.nf4_subgraph.nf4_weight_subgraph`` (spec 10-11), with
    ``scale_rebuild`` forwarded. Its default (None) picks ``"arithmetic"`` for
    double-quantized int4/uint4/int8 codes, which onnxruntime constant-folds so
    the weight still fuses into ``MatMulNBits``, and ``"dequantizelinear"`` (the
    standard-operator form of spec 11.4) for NF4, which cannot fuse anyway.

    Raises:
        ValueError: an NF4 / double-quantized tensor when ``monoquant_np.onnx.export.nf4_subgraph``
            is not available; empty names.
    """
    qt = check_qt(qt)
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    if qt.codebook is not None or qt.double_quant is not None:
        try:
            from .nf4_subgraph import nf4_weight_subgraph
        except ImportError as e:
            raise ValueError(f"exporting {qt.scheme} weight {name!r} with codebook or double-quantized scales "
                             f"needs export.nf4_subgraph, which is unavailable ({e})") from e
        if scale_rebuild is None:
            scale_rebuild = "dequantizelinear" if qt.codebook is not None else "arithmetic"
        return nf4_weight_subgraph(qt, name, out_name, scale_rebuild=scale_rebuild)
    inits = [t for t in tensor_to_onnx(qt, name) if _meta(t)["role"] != "perm"]
    nodes: list[NodeProto] = []
    scale_in = name + "_scale"
    if qt.scale.dtype == np.float16:
        scale_in = name + "_scale_f32"
        nodes.append(helper.make_node("Cast", [name + "_scale"], [scale_in], name=name + "_scale_cast",
                                      to=TensorProto.FLOAT))
    inputs = [name, scale_in] + ([name + "_zero_point"] if qt.zero_point is not None else [])
    attrs: dict[str, Any]
    if _per_axis(qt):
        attrs = {"axis": 1 - qt.axis}
    elif len(qt.shape) == 1 and qt.n_groups == 1:
        # Note: onnxruntime reads a 1-element 1-D scale as per-tensor and rejects
        # block_size there; per-tensor DequantizeLinear computes the same values.
        attrs = {}
    else:
        attrs = {"axis": qt.axis, "block_size": qt.block_size}
    nodes.append(helper.make_node("DequantizeLinear", inputs, [out_name], name=name + "_dq", **attrs))
    return inits, nodes


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
