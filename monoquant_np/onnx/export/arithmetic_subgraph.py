"""The weight as ``Cast`` and ``Mul`` on whole blocks: the export form runtimes without blocked INT4 run (spec 16.4).

``DequantizeLinear(axis, block_size)`` on INT4/UINT4 is what onnxruntime runs
best (spec 9.5), but not every runtime reads it: tract has no 4-bit tensor
type and no blocked ``DequantizeLinear``, OpenVINO rejects a partial last block
and blocks along axis 1 (spec 16.2). :func:`arithmetic_weight_subgraph` writes
the same float32 weight with standard operators every runtime of the matrix
runs, on the codes padded to whole blocks (:func:`padded_codes`)::

    name          INT4/UINT4 (code_bits=4) or INT8/UINT8 (code_bits=8)   P = shape, axis padded to G * B
    vals  = Cast(name, to=FLOAT)                                          P   (NF4: Gather(name_codebook,
                                                                               Cast(name, to=INT32)))
    split = Reshape(vals, (.., G, B, ..))
    cent  = split - Reshape(Cast(name_zero_point, to=FLOAT), (.., G, 1, ..))   (zero points only)
    W_pad = Reshape(cent * Reshape(scale, (.., G, 1, ..)), P)
    W     = Slice(W_pad, [0], [shape[axis]], [axis])                           (partial last block only)

``(q - z) * s`` with ``q - z`` exact in float32 and one rounded product:
bit for bit ``DequantizeLinear``'s and the spec's ``dequantize`` (spec 6.1).
The scale is ``name_scale`` (a float16 scale widened by a ``Cast``), or the
``"arithmetic"`` rebuild of a double-quantized scale (spec 11.4).

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

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ...errors import check_choice, check_name
from ...packing import pack_int4
from ...tensor import QuantizedTensor, check_qt
from .dequantize_linear import cast_node, float32_scale
from .double_quant_subgraph import rebuilt_scale_subgraph
from .initializers import int64_tensor, raw_tensor, weight_initializers

__all__ = ["arithmetic_weight_subgraph", "padded_codes", "padded_shape", "CODE_BITS"]

#: Storage of the codes: packed 4-bit tensors, or one code per byte (runtimes without INT4/UINT4).
CODE_BITS = (4, 8)


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


def _code_tensors(qt: QuantizedTensor, name: str, code_bits: int) -> list[TensorProto]:
    """``name`` (padded codes) and, for 8-bit storage, ``name_zero_point`` as UINT8; the rest as exported."""
    codes = padded_codes(qt)
    if code_bits == 4 and qt.bits == 4:
        kind = TensorProto.INT4 if codes.dtype == np.int8 else TensorProto.UINT4
        weight = raw_tensor(name, kind, codes.shape, pack_int4(codes))
    else:
        weight = numpy_helper.from_array(codes, name)
    out = [weight]
    for t in weight_initializers(qt, name)[1:]:
        if t.name == name + "_zero_point" and code_bits == 8:
            t = numpy_helper.from_array(np.ascontiguousarray(qt.zero_point, dtype=np.uint8), t.name)
        out.append(t)
    return out


def _values(qt: QuantizedTensor, name: str) -> list[NodeProto]:
    """``name_vals``: float32 codes (linear) or codebook values (NF4), padded shape."""
    if qt.codebook is None:
        return [cast_node(name, name + "_vals", np.float32, name + "_cast")]
    return [cast_node(name, name + "_idx", np.int32, name + "_cast"),
            helper.make_node("Gather", [name + "_codebook", name + "_idx"], [name + "_vals"], name=name + "_lookup",
                             axis=0)]


def arithmetic_weight_subgraph(qt: QuantizedTensor, name: str, out_name: str, *, code_bits: int = 4
                               ) -> tuple[list[TensorProto], list[NodeProto]]:
    """Initializers and nodes making float32 ``out_name`` = ``dequantize(qt)`` in stored order (module docstring).

    Args:
        qt: any :class:`QuantizedTensor`: int4, uint4, int8/uint8 fallback,
            NF4, with or without double-quantized scales, any rank and axis.
        name: the weight's name (prefix of every initializer and node).
        out_name: the output, float32 of shape ``qt.shape``.
        code_bits: 4 (INT4/UINT4 codes, packed) or 8 (one code per INT8/UINT8
            byte: twice the bytes, for runtimes without 4-bit tensors). 8-bit
            codes are stored in 8 bits either way.

    Returns:
        ``(initializers, nodes)``, standard operators of opset 21 only
        (``Cast``, ``Gather``, ``Reshape``, ``Sub``, ``Mul``, ``Slice``, and
        the ``Expand`` of a double-quantized scale's rebuild).

    Raises:
        TypeError: ``qt`` is not a QuantizedTensor.
        ValueError: empty names; ``code_bits`` not 4 or 8.
    """
    qt = check_qt(qt)
    name, out_name = check_name(name, "name"), check_name(out_name, "out_name")
    check_choice(code_bits, CODE_BITS, "code_bits")
    inits = _code_tensors(qt, name, code_bits)
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
    nodes += _values(qt, name)
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
