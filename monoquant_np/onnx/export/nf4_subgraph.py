"""ONNX export of NF4 and of double-quantized weights (spec sections 10.6 and 11.4).

Standard operators only (opset 21), so any runtime runs the graph.

The initializers are those of ``monoquant_np.onnx.export.qdq.tensor_to_onnx``
(spec 9.1), so ``tensor_from_onnx`` reads an exported NF4 weight back. NF4,
weight ``W`` of shape ``S`` grouped along ``axis``, named ``w``::

    w           UINT4  S            the codes, packed low nibble first (= qt.data)
    w_codebook  FLOAT  (16,)        NF4_CODEBOOK
    w_scale     FLOAT  group_shape  the absmax (without double quantization)

    idx   = Cast(w, to=INT32)                             S
    vals  = Gather(w_codebook, idx)                       S   codebook[q]
    W     = vals * expand(scale)                          S   (Reshape + Mul when
            S[axis] % block_size == 0, else a Gather of the scale along axis, then Mul)

Double quantization replaces ``w_scale`` by its 8-bit storage::

    w_scale_codes   INT8   group_shape        DoubleQuant.codes
    w_scale_scale   FLOAT  (n_blocks,)        DoubleQuant.scale
    w_scale_offset  FLOAT  ()                 DoubleQuant.offset

    scale = Reshape(DequantizeLinear(Reshape(w_scale_codes, [-1]), w_scale_scale,
                    axis=0, block_size=dq_block_size) + w_scale_offset, group_shape)

which is ``DoubleQuant.rebuild()`` operation for operation (an int8 times a
float32, then a float32 add), so it is bit-exact. A double-quantized int4,
uint4 or int8 weight feeds that rebuilt scale to the usual
``DequantizeLinear(w, scale, w_zero_point, axis, block_size)``.

Costs in onnxruntime (measured by ``tools/bench_nf4.py``, see the README):

* NF4 ``Gather`` graph: onnxruntime's constant folding evaluates the whole
  subgraph (every input is an initializer) once at session creation and keeps
  the float32 weight: the file is 4-bit, the session's memory is float32 and
  the speed is a float ``MatMul``. It cannot use ``MatMulNBits`` (linear codes
  only).
* ``format="bnb4"``: onnxruntime's contrib ``com.microsoft.MatMulBnb4``
  (quant_type 1 = NF4) runs the same codes and absmax; its CPU kernel
  dequantizes the whole weight on every call, then runs a float GEMM.
* Double-quantized int4/uint4 with ``scale_rebuild="dequantizelinear"``
  (the default here; ``export.weight_subgraph`` and ``linear_model`` pick
  ``"arithmetic"`` for linear codes): the scale input of the weight's ``DequantizeLinear`` is
  computed, not an initializer. ONNX allows that, but onnxruntime's QDQ fusion
  into ``MatMulNBits`` needs constant scales and it never constant-folds
  ``DequantizeLinear``, so the layer runs unfused (``DequantizeLinear`` of the
  whole weight on each call, then ``MatMul``).
* ``scale_rebuild="arithmetic"`` rebuilds the same scales with ``Cast``,
  ``Expand``, ``Slice``, ``Mul`` and ``Add``, which onnxruntime constant-folds at
  session creation: the file keeps the 8-bit scales and the session fuses the
  layer into ``MatMulNBits`` as if it had float scales.

# Note: bitsandbytes packs the *high* nibble first and blocks a ``(N, K)``
# weight in C order; ``MatMulBnb4`` expects that layout, so ``format="bnb4"``
# transposes and repacks, and needs ``K % block_size == 0`` and a block size
# in 16, 32, 64, 128, 256. Its absmax input is float32, so a double-quantized
# tensor exports its rebuilt scales there (no 8-bit storage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import check_float_array, check_name
from ...tensor import QuantizedTensor, check_qt
from .matmulbnb4_node import bnb4_layout
from .qdq import IR_VERSION, OPSET, tensor_to_onnx

__all__ = ["nf4_weight_subgraph", "nf4_linear_model", "bnb4_layout", "OPSET", "IR_VERSION", "FORMATS",
           "SCALE_REBUILDS"]

#: ``nf4_linear_model`` formats.
FORMATS = ("gather", "bnb4")
#: ``scale_rebuild`` choices for double-quantized scales.
SCALE_REBUILDS = ("dequantizelinear", "arithmetic")


def _check_qt(qt: Any) -> QuantizedTensor:
    check_qt(qt)
    if qt.codebook is None and qt.double_quant is None:
        raise ValueError(
            f"nf4_weight_subgraph exports NF4 or double-quantized tensors, got a plain {qt.scheme} "
            "tensor (export it with monoquant_np.onnx.export.qdq.weight_subgraph)"
        )
    return qt


def _raw(name: str, dtype: int, dims: tuple[int, ...] | list[int], data: np.ndarray) -> TensorProto:
    return helper.make_tensor(name, dtype, list(dims), np.ascontiguousarray(data).tobytes(), raw=True)


def _i64(name: str, values: Any) -> TensorProto:
    a = np.asarray(values, dtype=np.int64)
    return _raw(name, TensorProto.INT64, a.shape, a)


def _node(op: str, ins: list[str], outs: list[str], name: str, **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, name=name, **attrs)


def _rebuild_scale(
    qt: QuantizedTensor, name: str, sdims: list[int], mode: str
) -> tuple[list[TensorProto], list[onnx.NodeProto]]:
    """Nodes making ``name_scale_rebuilt`` = ``qt.double_quant.rebuild()`` (shape ``sdims``)."""
    dq = qt.double_quant
    if dq is None:
        raise ValueError(f"qt has no double_quant to rebuild for {name!r}")
    k, kc = name + "_scale_k", name + "_scale_kc"
    inits = [_i64(name + "_scale_flat_shape", [-1]), _i64(name + "_scale_dims", sdims)]
    nodes = [_node("Reshape", [name + "_scale_codes", name + "_scale_flat_shape"], [k], name + "_scale_flatten")]
    if mode == "dequantizelinear":  # float32 k * c_j by DequantizeLinear's block layout
        # onnxruntime reads a one-element scale as per-tensor and then refuses block_size.
        attrs = {"axis": 0, "block_size": dq.block_size} if dq.scale.size > 1 else {}
        nodes.append(_node("DequantizeLinear", [k, name + "_scale_scale"], [kc], name + "_scale_dq", **attrs))
    else:  # "arithmetic": Cast(k) * c_el, c_el = c repeated block_size times, cut to n
        nb, n = int(dq.scale.size), int(dq.codes.size)
        inits += [_i64(name + "_scale_nb1", [nb, 1]), _i64(name + "_scale_nbB", [nb, dq.block_size]),
                  _i64(name + "_scale_zero", [0]), _i64(name + "_scale_n", [n])]
        nodes += [
            _node("Cast", [k], [k + "f"], name + "_scale_cast", to=TensorProto.FLOAT),
            _node("Reshape", [name + "_scale_scale", name + "_scale_nb1"], [name + "_scale_c1"],
                  name + "_scale_c_col"),
            _node("Expand", [name + "_scale_c1", name + "_scale_nbB"], [name + "_scale_cB"], name + "_scale_c_rep"),
            _node("Reshape", [name + "_scale_cB", name + "_scale_flat_shape"], [name + "_scale_cflat"],
                  name + "_scale_c_flat"),
            _node("Slice", [name + "_scale_cflat", name + "_scale_zero", name + "_scale_n"], [name + "_scale_cel"],
                  name + "_scale_c_cut"),
            _node("Mul", [k + "f", name + "_scale_cel"], [kc], name + "_scale_mul"),
        ]
    nodes += [
        _node("Add", [kc, name + "_scale_offset"], [name + "_scale_flat"], name + "_scale_add"),
        _node("Reshape", [name + "_scale_flat", name + "_scale_dims"], [name + "_scale_rebuilt"],
              name + "_scale_reshape"),
    ]
    return inits, nodes


def nf4_weight_subgraph(
    qt: QuantizedTensor, name: str, out_name: str, *, scale_rebuild: str = "dequantizelinear"
) -> tuple[list[TensorProto], list[onnx.NodeProto]]:
    """The float32 weight of an NF4 or double-quantized tensor, as ONNX initializers and nodes.

    The initializers are exactly ``monoquant_np.onnx.export.qdq.tensor_to_onnx(qt,
    name)`` without ``name_perm`` (so ``tensor_from_onnx`` reads them back):
    ``name`` (UINT4 NF4 codes, or the INT4/UINT4/INT8 codes), ``name_scale``
    or ``name_scale_codes`` / ``name_scale_scale`` / ``name_scale_offset``,
    ``name_zero_point``, ``name_codebook``; plus int64 shape and index
    constants named ``name_*``.

    Args:
        qt: NF4 (``codebook`` set, with or without ``double_quant``), or an
            int4/uint4/int8 tensor with ``double_quant``.
        name: the weight's name (prefix of every initializer and node).
        out_name: the output tensor: float32 of shape ``qt.shape``, in stored
            order (``qt.perm`` is *not* undone; permute the activations).
        scale_rebuild: how double-quantized scales are rebuilt (spec 11.4):
            ``"dequantizelinear"`` (``DequantizeLinear(k, c, block_size)``
            then ``Add``), or ``"arithmetic"`` (``Cast(k) * c + offset`` with
            ``c`` repeated by ``Expand``/``Slice``), which onnxruntime
            constant-folds, so a double-quantized int4/uint4 weight still
            fuses into ``MatMulNBits``. Both are bit-identical to
            ``DoubleQuant.rebuild()``.

    Returns:
        ``(initializers, nodes)``, opset 21, standard domain only. The output
        equals ``dequantize_slice(qt, 0, qt.shape[0])`` bit for bit.
    """
    qt = _check_qt(qt)
    if scale_rebuild not in SCALE_REBUILDS:
        raise ValueError(f"scale_rebuild must be one of {', '.join(map(repr, SCALE_REBUILDS))}, "
                         f"got {scale_rebuild!r}")
    if not isinstance(name, str) or not name or not isinstance(out_name, str) or not out_name:
        raise ValueError(f"name and out_name must be non-empty strings, got {name!r}, {out_name!r}")
    inits = [t for t in tensor_to_onnx(qt, name) if t.name != name + "_perm"]
    by_name = {t.name: t for t in inits}
    nodes: list[onnx.NodeProto] = []
    dq = qt.double_quant
    sdims = list(by_name[name + ("_scale" if dq is None else "_scale_codes")].dims)
    scale = name + "_scale"
    if dq is not None:
        rb_inits, rb_nodes = _rebuild_scale(qt, name, sdims, scale_rebuild)
        inits += rb_inits
        nodes += rb_nodes
        scale = name + "_scale_rebuilt"
    elif qt.scale.dtype == np.float16:
        nodes.append(_node("Cast", [scale], [name + "_scale_f32"], name + "_scale_cast", to=TensorProto.FLOAT))
        scale = name + "_scale_f32"
    if qt.codebook is None:  # double-quantized linear codes: DequantizeLinear with the rebuilt scale
        ins = [name, scale] + ([name + "_zero_point"] if qt.zero_point is not None else [])
        if len(sdims) != len(qt.shape):  # the int8 per-channel layout (spec 9.1)
            attrs = {"axis": 1 - qt.axis}
        else:
            attrs = {"axis": qt.axis, "block_size": qt.block_size}
        nodes.append(_node("DequantizeLinear", ins, [out_name], name + "_dq", **attrs))
        return inits, nodes
    nodes += [
        _node("Cast", [name], [name + "_idx"], name + "_cast", to=TensorProto.INT32),
        _node("Gather", [name + "_codebook", name + "_idx"], [name + "_vals"], name + "_lookup", axis=0),
    ]
    length, bs, ax = qt.shape[qt.axis], qt.block_size, qt.axis
    if length % bs == 0:  # (.., G, B, ..) * (.., G, 1, ..)
        g = length // bs
        split = qt.shape[:ax] + (g, bs) + qt.shape[ax + 1 :]
        sshape = qt.shape[:ax] + (g, 1) + qt.shape[ax + 1 :]
        inits += [_i64(name + "_split_shape", split), _i64(name + "_scale_bshape", sshape),
                  _i64(name + "_shape", qt.shape)]
        nodes += [
            _node("Reshape", [name + "_vals", name + "_split_shape"], [name + "_vals_split"], name + "_split"),
            _node("Reshape", [scale, name + "_scale_bshape"], [name + "_scale_b"], name + "_scale_bcast"),
            _node("Mul", [name + "_vals_split", name + "_scale_b"], [name + "_w_split"], name + "_mul"),
            _node("Reshape", [name + "_w_split", name + "_shape"], [out_name], name + "_merge"),
        ]
    else:  # a partial last group: expand the scale with a Gather along axis
        inits.append(_i64(name + "_group_idx", np.arange(length) // bs))
        nodes += [
            _node("Gather", [scale, name + "_group_idx"], [name + "_scale_el"], name + "_scale_expand", axis=ax),
            _node("Mul", [name + "_vals", name + "_scale_el"], [out_name], name + "_mul"),
        ]
    return inits, nodes


def nf4_linear_model(
    qt: QuantizedTensor,
    bias: np.ndarray | None = None,
    *,
    format: str = "gather",
    input_name: str = "x",
    output_name: str = "y",
    scale_rebuild: str = "dequantizelinear",
) -> onnx.ModelProto:
    """A one-layer model ``y = x @ W + bias`` for an NF4 (or double-quantized) ``(K, N)`` weight.

    Args:
        qt: 2-D :class:`QuantizedTensor` ``(K, N)``. ``"gather"`` is
            :func:`monoquant_np.onnx.export.models.linear_model` (``format="qdq"``),
            whose weight is built by :func:`nf4_weight_subgraph` for NF4 and
            double-quantized tensors (``perm`` becomes a ``Gather`` of ``x``);
            for ``"bnb4"`` see :func:`bnb4_layout`.
        bias: optional float array ``(N,)`` (added in float32).
        format: ``"gather"`` (standard operators) or ``"bnb4"``
            (``com.microsoft.MatMulBnb4``, onnxruntime only).
        input_name, output_name: graph input ``(batch, K)`` and output
            ``(batch, N)``, float32.
        scale_rebuild: see :func:`nf4_weight_subgraph` (``"gather"`` only).

    Returns:
        An ``onnx.ModelProto``, opset 21 (plus ``com.microsoft`` 1 for
        ``"bnb4"``), ``ir_version`` 10; ``onnx.checker`` passes.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    if format == "gather":  # the standard-operator graph is linear_model's, with this weight subgraph
        from .models import linear_model

        return linear_model(qt, bias, format="qdq", input_name=input_name, output_name=output_name,
                            scale_rebuild=scale_rebuild)
    check_qt(qt)
    if len(qt.shape) != 2:
        raise ValueError(f"qt must be a 2-D (K, N) weight, got shape {qt.shape}")
    k, n = qt.shape
    check_name(input_name, "input_name")
    check_name(output_name, "output_name")
    bias32 = None
    if bias is not None:
        bias32 = check_float_array(bias, "bias")
        if bias32.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {bias32.shape}")
    mm_out = "mm" if bias is not None else output_name
    b, absmax = bnb4_layout(qt)
    inits: list[TensorProto] = [
        _raw("W_bnb4", TensorProto.UINT8, b.shape, b),
        _raw("W_absmax", TensorProto.FLOAT, absmax.shape, absmax),
    ]
    nodes = [helper.make_node(
        "MatMulBnb4", [input_name, "W_bnb4", "W_absmax"], [mm_out], domain="com.microsoft",
        K=k, N=n, block_size=qt.block_size, quant_type=1, name="matmul_bnb4",
    )]
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    if bias32 is not None:
        inits.append(_raw("bias", TensorProto.FLOAT, (n,), bias32))
        nodes.append(helper.make_node("Add", [mm_out, "bias"], [output_name], name="bias_add"))
    graph = helper.make_graph(
        nodes,
        f"monoquant_{qt.scheme}_{format}",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=opsets, producer_name="monoquant_np")
    model.ir_version = IR_VERSION
    return model
