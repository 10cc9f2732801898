"""The weight as ``Cast`` and ``Mul`` on whole blocks: the export form runtimes without blocked INT4 run (spec 16.4).

``DequantizeLinear(axis, block_size)`` on INT4/UINT4 is what onnxruntime runs
best (spec 9.5), but not every runtime reads it: tract has no 4-bit tensor
type and no blocked ``DequantizeLinear``, OpenVINO rejects a partial last block
and blocks along axis 1 (spec 16.2). :func:`arithmetic_weight_subgraph` writes
the same float32 weight with standard operators every runtime of the matrix
runs, on the codes padded to whole blocks (:func:`padded_codes`)::

    name          the codes (``codes=``, below)                          P = shape, axis padded to G * B
    vals  = Cast(u, to=FLOAT) [- 8]                                       P   (NF4: Gather(name_codebook,
                                                                               Cast(u, to=INT32)))
    split = Reshape(vals, (.., G, B, ..))
    cent  = split - Reshape(Cast(name_zero_point, to=FLOAT), (.., G, 1, ..))   (zero points only)
    W_pad = Reshape(cent * Reshape(scale, (.., G, 1, ..)), P)
    W     = Slice(W_pad, [0], [shape[axis]], [axis])                           (partial last block only)

``(q - z) * s`` with ``q - z`` exact in float32 and one rounded product:
bit for bit ``DequantizeLinear``'s and the spec's ``dequantize`` (spec 6.1).
The scale is ``name_scale`` (a float16 scale widened by a ``Cast``), or the
``"arithmetic"`` rebuild of a double-quantized scale (spec 11.4).

The codes ``u`` are stored in one of three ways (:data:`CODE_STORAGES`):

* ``"int4"``: an INT4/UINT4 tensor of shape ``P`` (``u`` = the codes);
* ``"bytes"``: one code per INT8/UINT8 byte, shape ``P``, for runtimes without
  4-bit tensor types (twice the bytes);
* ``"nibbles"``: two codes per UINT8 byte in the order of spec 5 (element
  ``2i`` in the low nibble), int4 codes stored as ``q + 8`` (so ``- 8`` follows
  the ``Cast``), unpacked by ``BitwiseAnd(b, 15)`` and ``BitShift(b, 4, RIGHT)``
  interleaved with ``Concat`` and ``Reshape``: 4 bits per code with standard
  operators and 8-bit tensors only.

8-bit codes (the int8 fallback) are stored one per byte in every case.

Padding: the codes of the elements added to the last block are the block's
zero point (0 for int4; for NF4, the code whose codebook value is 0), so every
added element dequantizes to 0 and the ``Slice`` drops it: the padding never
changes a dequantized value.

    >>> from monoquant_np import quantize
    >>> qt = quantize(np.array([[1.0], [-7.0], [14.0]], np.float32), group_size=2)  # scales 1 and 2
    >>> padded_codes(qt)[:, 0].tolist()  # the last block [14.0] gains one element, code 0
    [1, -7, 7, 0]
"""

from __future__ import annotations

import math

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...errors import check_choice, check_name
from ...packing import pack_int4
from ...tensor import QuantizedTensor, check_qt
from .dequantize_linear import cast_node, float32_scale
from .double_quant_subgraph import rebuilt_scale_subgraph
from .initializers import int64_tensor, raw_tensor, weight_initializers

__all__ = ["arithmetic_weight_subgraph", "padded_codes", "padded_shape", "CODE_STORAGES"]

#: How the codes are stored (module docstring).
CODE_STORAGES = ("int4", "bytes", "nibbles")


def padded_shape(qt: QuantizedTensor) -> tuple[int, ...]:
    """``qt.shape`` with ``shape[axis]`` rounded up to whole blocks: ``n_groups * block_size``."""
    return qt.shape[: qt.axis] + (qt.n_groups * qt.block_size,) + qt.shape[qt.axis + 1 :]


def padded_codes(qt: QuantizedTensor) -> np.ndarray:
    """The codes of ``qt`` in :func:`padded_shape`, each added element holding its block's zero code.

    int8 for signed codes, else uint8. The zero code is the zero point of
    the last block (uint4/uint8), 0 (int4/int8), or ``argmin |codebook|``
    (NF4: 7, the code of 0.0), so the added elements dequantize to 0.
    """
    codes = qt.codes()
    ax, length = qt.axis, qt.shape[qt.axis]
    if qt.zero_point is not None:
        fill = np.repeat(qt.zero_point.astype(codes.dtype), qt.block_size, axis=ax)  # padded shape
    else:
        zero = int(np.argmin(np.abs(qt.codebook))) if qt.codebook is not None else 0
        fill = np.full(padded_shape(qt), zero, dtype=codes.dtype)
    index = (slice(None),) * ax + (slice(0, length),)
    fill[index] = codes
    return fill


def _code_tensors(qt: QuantizedTensor, name: str, codes: str) -> list[TensorProto]:
    """``name`` (the padded codes, stored as ``codes`` says) and the other tensors as exported; with
    one-byte or nibble codes, ``name_zero_point`` is UINT8 (no 4-bit tensor at all)."""
    padded = padded_codes(qt)
    if qt.bits == 4 and codes == "int4":
        kind = TensorProto.INT4 if padded.dtype == np.int8 else TensorProto.UINT4
        weight = raw_tensor(name, kind, padded.shape, pack_int4(padded))
    elif qt.bits == 4 and codes == "nibbles":
        unsigned = (padded.astype(np.int16) + (8 if qt.signed else 0)).astype(np.uint8)  # 0..15
        weight = numpy_helper.from_array(pack_int4(unsigned), name)
    else:
        weight = numpy_helper.from_array(padded, name)
    out = [weight]
    for t in weight_initializers(qt, name)[1:]:
        if t.name == name + "_zero_point" and codes != "int4":
            t = numpy_helper.from_array(np.ascontiguousarray(qt.zero_point, dtype=np.uint8), t.name)
        out.append(t)
    return out


def _unpack_nibbles(qt: QuantizedTensor, name: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """``name_u`` (UINT8, padded shape) from the bytes ``name``: low nibble first (spec 5), trailing nibble cut."""
    count = math.prod(padded_shape(qt))
    inits = [numpy_helper.from_array(np.array(15, np.uint8), name + "_low_mask"),
             numpy_helper.from_array(np.array(4, np.uint8), name + "_shift"),
             int64_tensor(name + "_last_axis", [-1]), int64_tensor(name + "_flat", [-1]),
             int64_tensor(name + "_count", [count]), int64_tensor(name + "_zero", [0])]
    nodes = [
        helper.make_node("BitwiseAnd", [name, name + "_low_mask"], [name + "_lo"], name=name + "_low"),
        helper.make_node("BitShift", [name, name + "_shift"], [name + "_hi"], name=name + "_high", direction="RIGHT"),
        helper.make_node("Unsqueeze", [name + "_lo", name + "_last_axis"], [name + "_lo1"], name=name + "_lo_col"),
        helper.make_node("Unsqueeze", [name + "_hi", name + "_last_axis"], [name + "_hi1"], name=name + "_hi_col"),
        helper.make_node("Concat", [name + "_lo1", name + "_hi1"], [name + "_pairs"], name=name + "_pair", axis=-1),
        helper.make_node("Reshape", [name + "_pairs", name + "_flat"], [name + "_nibbles"], name=name + "_flatten"),
    ]
    flat = name + "_nibbles"
    if count % 2:  # an odd count: the last byte's high nibble is padding
        nodes.append(helper.make_node("Slice", [flat, name + "_zero", name + "_count"], [name + "_u_flat"],
                                      name=name + "_cut"))
        flat = name + "_u_flat"
    nodes.append(helper.make_node("Reshape", [flat, name + "_padded_shape"], [name + "_u"], name=name + "_shape"))
    return inits, nodes


def _values(qt: QuantizedTensor, name: str, codes: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """``name_vals``: float32 codes (linear) or codebook values (NF4), padded shape."""
    inits, nodes = _unpack_nibbles(qt, name) if qt.bits == 4 and codes == "nibbles" else ([], [])
    u = name + "_u" if nodes else name
    if qt.codebook is not None:
        return inits, nodes + [
            cast_node(u, name + "_idx", np.int32, name + "_cast"),
            helper.make_node("Gather", [name + "_codebook", name + "_idx"], [name + "_vals"], name=name + "_lookup",
                             axis=0)]
    if not (nodes and qt.signed):
        return inits, nodes + [cast_node(u, name + "_vals", np.float32, name + "_cast")]
    inits.append(numpy_helper.from_array(np.array(8.0, np.float32), name + "_nibble_offset"))  # int4 stored q + 8
    return inits, nodes + [cast_node(u, name + "_vals_u", np.float32, name + "_cast"),
                           helper.make_node("Sub", [name + "_vals_u", name + "_nibble_offset"], [name + "_vals"],
                                            name=name + "_unoffset")]


def arithmetic_weight_subgraph(qt: QuantizedTensor, name: str, out_name: str, *, codes: str = "int4"
                               ) -> tuple[list[TensorProto], list[NodeProto]]:
    """Initializers and nodes making float32 ``out_name`` = ``dequantize(qt)`` in stored order (module docstring).

    Args:
        qt: any :class:`QuantizedTensor`: int4, uint4, int8/uint8 fallback,
            NF4, with or without double-quantized scales, any rank and axis.
        name: the weight's name (prefix of every initializer and node).
        out_name: the output, float32 of shape ``qt.shape``.
        codes: how the 4-bit codes are stored, one of :data:`CODE_STORAGES`
            (module docstring); 8-bit codes take one byte each whatever it says.

    Returns:
        ``(initializers, nodes)``, standard operators of opset 21 only
        (``Cast``, ``Gather``, ``Reshape``, ``Sub``, ``Mul``, ``Slice``; the
        ``Expand`` of a double-quantized scale's rebuild; ``BitwiseAnd``,
        ``BitShift``, ``Unsqueeze``, ``Concat`` for nibbles).

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: empty names; ``codes`` not one of :data:`CODE_STORAGES`.
    """
    qt = check_qt(qt)
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    check_choice(codes, CODE_STORAGES, "codes")
    inits = _code_tensors(qt, name, codes)
    if qt.double_quant is not None:
        rb_inits, nodes = rebuilt_scale_subgraph(qt, name, "arithmetic")
        inits += rb_inits
        scale = name + "_scale_rebuilt"
    else:
        scale, nodes = float32_scale(qt, name)
    ax, g, bs = qt.axis, qt.n_groups, qt.block_size
    pshape = padded_shape(qt)
    split = pshape[:ax] + (g, bs) + pshape[ax + 1 :]  # (.., G, B, ..)
    bshape = pshape[:ax] + (g, 1) + pshape[ax + 1 :]  # (.., G, 1, ..)
    inits += [int64_tensor(name + "_split_shape", split), int64_tensor(name + "_group_shape", bshape),
              int64_tensor(name + "_padded_shape", pshape)]
    v_inits, v_nodes = _values(qt, name, codes)
    inits += v_inits
    nodes += v_nodes
    nodes.append(helper.make_node("Reshape", [name + "_vals", name + "_split_shape"], [name + "_split"],
                                  name=name + "_split"))
    centered = name + "_split"
    if qt.zero_point is not None:
        nodes += [cast_node(name + "_zero_point", name + "_zp_f32", np.float32, name + "_zp_cast"),
                  helper.make_node("Reshape", [name + "_zp_f32", name + "_group_shape"], [name + "_zp_b"],
                                   name=name + "_zp_bcast"),
                  helper.make_node("Sub", [centered, name + "_zp_b"], [name + "_centered"], name=name + "_sub")]
        centered = name + "_centered"
    padded = pshape != qt.shape
    w_pad = name + "_w_padded" if padded else out_name
    nodes += [helper.make_node("Reshape", [scale, name + "_group_shape"], [name + "_scale_b"],
                               name=name + "_scale_bcast"),
              helper.make_node("Mul", [centered, name + "_scale_b"], [name + "_w_split"], name=name + "_mul"),
              helper.make_node("Reshape", [name + "_w_split", name + "_padded_shape"], [w_pad], name=name + "_merge")]
    if padded:
        inits += [int64_tensor(name + "_slice_start", [0]), int64_tensor(name + "_slice_end", [qt.shape[ax]]),
                  int64_tensor(name + "_slice_axis", [ax])]
        nodes.append(helper.make_node("Slice", [w_pad, name + "_slice_start", name + "_slice_end",
                                                name + "_slice_axis"], [out_name], name=name + "_unpad"))
    return inits, nodes
