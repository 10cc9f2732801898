"""Whole models from quantized layers: one linear layer, an MLP, an NF4 layer (spec 9.2-9.4, 10.6).

Each layer ``y = x @ dequantize(qt) + bias`` becomes, with ``format="qdq"``::

    name_scale (float16) -> Cast -> float32    (float16 scales only)
    DequantizeLinear(name, name_scale[, name_zero_point]; axis=0, block_size=g) -> W
    MatMul(x, W) -> Add(bias)

standard ONNX that any opset-21 runtime runs, and that onnxruntime fuses into
``MatMulNBits`` when ``g`` is a power of two >= 16 (spec 9.5). With
``format="matmulnbits"`` the layer is onnxruntime's ``com.microsoft.MatMulNBits``
directly (bias inside the node). An NF4 layer (:func:`nf4_linear_model`) is
the codebook graph of spec 10.6 (``"gather"``) or onnxruntime's
``com.microsoft.MatMulBnb4`` (``"bnb4"``).

# Note: a weight MatMulNBits cannot hold exactly (a group size such as 24 or
# 100 with K > group size, NF4 codebooks, double-quantized scales, groups
# along axis 1) is exported in the QDQ form even when format="matmulnbits",
# so every model equals the spec; the layer then runs unfused (spec 9.5).

``target`` (default ``"onnxruntime"``, the forms above) writes each weight in
a form the named runtime runs exactly instead (spec 16.4,
:mod:`~monoquant_np.onnx.export.targets`): OpenVINO, tract, or ``"portable"``.

Models: input ``input_name`` float32 ``(batch, K)``, output ``output_name``
float32 ``(batch, N)``, opset 21 (plus ``com.microsoft`` 1 when used),
``ir_version`` 10 so that onnxruntime (IR <= 13) loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper

from ... import __version__
from ...errors import check_choice, check_float_array, check_matrix, check_name
from ...linear import QuantizedLinear
from ...tensor import QuantizedTensor, check_qt
from ..options import DEFAULT_FORMAT, DEFAULT_GATHER_OP, DEFAULT_TARGET, FORMATS, check_accuracy_level
from .constants import INT2_OPSET, MS_DOMAIN, OPSET, ir_version_for
from .fp4_subgraph import FP4_OPSET
from .matmulbnb4_node import matmulbnb4_node
from .matmulnbits_node import matmulnbits_node
from .qdq import input_permutation
from .targets import target_options, target_weight_subgraph, uses_matmulnbits

__all__ = ["linear_model", "mlp_model", "nf4_linear_model", "ACTIVATIONS", "NF4_FORMATS"]

#: activation -> (op_type, attributes). Gelu is the tanh form, as monoquant_np.demo.gelu.
ACTIVATIONS: dict[str | None, tuple[str, dict[str, Any]] | None] = {
    "gelu": ("Gelu", {"approximate": "tanh"}),
    "relu": ("Relu", {}),
    None: None,
}
#: ``nf4_linear_model`` formats: the standard-operator codebook graph, or ``com.microsoft.MatMulBnb4``.
NF4_FORMATS = ("gather", "bnb4")


def _weight_product(qt: QuantizedTensor, a: str, out: str, prefix: str, fmt: str, scale_rebuild: str | None,
                    target: str) -> tuple[list[TensorProto], list[NodeProto]]:
    """``out = a @ W_stored``: MatMulBnb4 (``fmt="bnb4"``), else the target's weight subgraph and a MatMul."""
    if fmt == "bnb4":
        inits, node = matmulbnb4_node(qt, a, out, prefix)
        return inits, [node]
    inits, nodes = target_weight_subgraph(qt, prefix + "_w", prefix + "_w_dq", target, scale_rebuild=scale_rebuild)
    return inits, nodes + [helper.make_node("MatMul", [a, prefix + "_w_dq"], [out], name=prefix + "_matmul")]


def _layer(
    qt: QuantizedTensor, bias: np.ndarray | None, x: str, y: str, prefix: str, fmt: str, level: int,
    scale_rebuild: str | None = None, target: str = DEFAULT_TARGET,
) -> tuple[list[TensorProto], list[NodeProto], bool]:
    """Initializers and nodes of ``y = x @ dequantize(qt) + bias``; the flag says a com.microsoft op was used."""
    inits: list[TensorProto] = []
    nodes: list[NodeProto] = []
    a = x
    if qt.perm is not None and qt.axis == 0:  # stored rows are w[perm]: x @ W == x[..., perm] @ W_stored
        inits, nodes = input_permutation(qt, prefix + "_w", x, prefix + "_x_perm")
        a = prefix + "_x_perm"
    bias_t = numpy_helper.from_array(bias, prefix + "_bias") if bias is not None else None
    if fmt != "bnb4" and uses_matmulnbits(qt, target, fmt):
        i, node = matmulnbits_node(qt, a, y, prefix, bias_name=bias_t.name if bias_t else None,
                                   accuracy_level=level)
        return inits + i + ([bias_t] if bias_t else []), nodes + [node], True
    unperm = qt.perm is not None and qt.axis == 1
    out = y if bias_t is None and not unperm else prefix + "_matmul"
    i, n = _weight_product(qt, a, out, prefix, fmt, scale_rebuild, target)
    inits += i
    nodes += n
    if unperm and qt.perm is not None:  # stored columns are w[:, perm]: undo on the output
        inv = numpy_helper.from_array(np.argsort(qt.perm).astype(np.int64), prefix + "_w_perm_inverse")
        inits.append(inv)
        nxt = y if bias_t is None else prefix + "_unperm"
        nodes.append(helper.make_node("Gather", [out, inv.name], [nxt], name=prefix + "_unperm", axis=-1))
        out = nxt
    if bias_t is not None:
        inits.append(bias_t)
        nodes.append(helper.make_node("Add", [out, bias_t.name], [y], name=prefix + "_bias_add"))
    return inits, nodes, fmt == "bnb4"


def _as_layer(layer: Any, i: int) -> tuple[QuantizedTensor, np.ndarray | None]:
    if isinstance(layer, QuantizedLinear):
        qt, bias = layer.qt, layer.bias
    elif isinstance(layer, QuantizedTensor):
        qt, bias = layer, None
    elif isinstance(layer, (tuple, list)) and len(layer) == 2:
        qt, bias = layer
    else:
        raise TypeError(f"layers[{i}] must be a QuantizedLinear or a (QuantizedTensor, bias) pair, "
                        f"got {type(layer).__name__}")
    check_qt(qt, f"layers[{i}] weight")
    check_matrix(qt.shape, f"layers[{i}] weight", "(K, N) MatMul weight")
    if bias is not None:
        bias = check_float_array(bias, f"layers[{i}] bias")
        if bias.shape != (qt.shape[1],):
            raise ValueError(f"layers[{i}] bias must have shape ({qt.shape[1]},), got {bias.shape}")
    return qt, bias


def _model(nodes: list[NodeProto], inits: list[TensorProto], k: int, n: int, x: str, y: str,
           uses_ms: bool, graph_name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", n])],
        inits,
    )
    # INT2/UINT2 initializers (2-bit DequantizeLinear, spec 20.8) need opset 25, FLOAT4E2M1 (spec 19.7) 24
    opset = INT2_OPSET if any(t.data_type in (TensorProto.INT2, TensorProto.UINT2) for t in inits) else OPSET
    if opset == OPSET and any(t.data_type == TensorProto.FLOAT4E2M1 for t in inits):
        opset = FP4_OPSET
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS_DOMAIN, 1)] if uses_ms else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="monoquant-np",
                              producer_version=__version__)
    model.ir_version = ir_version_for(opset)
    return model


def _names(input_name: Any, output_name: Any) -> tuple[str, str]:
    check_name(input_name, "input_name")
    check_name(output_name, "output_name")
    if input_name == output_name:
        raise ValueError(f"input_name and output_name must differ, got {input_name!r} for both")
    return input_name, output_name


def linear_model(
    qt: QuantizedTensor,
    bias: np.ndarray | None = None,
    *,
    format: str = DEFAULT_FORMAT,
    input_name: str = "x",
    output_name: str = "y",
    accuracy_level: int = 1,
    scale_rebuild: str | None = None,
    target: str = DEFAULT_TARGET,
) -> onnx.ModelProto:
    """A one-layer model ``y = x @ dequantize(qt) + bias``: ``(batch, K)`` -> ``(batch, N)`` float32.

    Args:
        qt: a 2-D ``(K, N)`` weight, any scheme (axis 0 for ``MatMulNBits``;
            axis 1 and ``perm`` are exported too, as Gathers on x or y).
        bias: optional float ``(N,)``, stored float32.
        format: ``"qdq"`` (DequantizeLinear -> MatMul -> Add) or
            ``"matmulnbits"`` (com.microsoft.MatMulNBits where exact, see the
            module note).
        input_name, output_name: graph input and output names.
        accuracy_level: the MatMulNBits attribute (0-4); unused by ``"qdq"``,
            whose fused nodes take the session option instead (spec 9.6).
        scale_rebuild: how double-quantized scales are rebuilt, see
            :func:`monoquant_np.onnx.export.qdq.weight_subgraph` (None: its default).
        target: the runtime the model is for (``"onnxruntime"``, ``"openvino"``,
            ``"tract"``, ``"portable"``): each weight in a form that runtime
            runs exactly (:mod:`monoquant_np.onnx.export.targets`, spec 16.4).

    Initializers are named ``fc0_w``, ``fc0_w_scale``, ... (``fc0_B`` etc.
    for MatMulNBits). ``onnx.checker.check_model(model, full_check=True)``
    passes.
    """
    return mlp_model([(qt, bias)], None, format=format, input_name=input_name, output_name=output_name,
                     accuracy_level=accuracy_level, graph_name="monoquant_linear", scale_rebuild=scale_rebuild,
                     target=target)


def mlp_model(
    layers: Sequence[Any],
    activation: str | None = "gelu",
    *,
    format: str = DEFAULT_FORMAT,
    input_name: str = "x",
    output_name: str = "y",
    accuracy_level: int = 1,
    graph_name: str = "monoquant_mlp",
    scale_rebuild: str | None = None,
    target: str = DEFAULT_TARGET,
) -> onnx.ModelProto:
    """A stack of quantized linear layers with ``activation`` between them (not after the last).

    ``layers``: ``QuantizedLinear`` objects or ``(QuantizedTensor, bias)``
    pairs, each ``(K_i, N_i)`` with ``K_{i+1} == N_i``. ``activation``:
    ``"gelu"`` (ONNX ``Gelu(approximate="tanh")``, opset 20+, the demo's
    GELU), ``"relu"`` or ``None``. Layer ``i`` is named ``fc{i}``. Other
    arguments as :func:`linear_model`.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be a non-empty list of layers, got {layers!r:.80}")
    check_choice(activation, tuple(ACTIVATIONS), "activation")
    check_choice(format, FORMATS, "format")
    target_options(target, format, DEFAULT_GATHER_OP)  # target is known and does not contradict format
    level = check_accuracy_level(accuracy_level)
    x, y = _names(input_name, output_name)
    pairs = [_as_layer(layer, i) for i, layer in enumerate(layers)]
    for i in range(1, len(pairs)):
        if pairs[i][0].shape[0] != pairs[i - 1][0].shape[1]:
            raise ValueError(f"layers[{i}] has K={pairs[i][0].shape[0]} but layers[{i - 1}] has "
                             f"N={pairs[i - 1][0].shape[1]}")
    return _stack(pairs, activation, format, level, x, y, graph_name, scale_rebuild, target)


def _stack(pairs: list[tuple[QuantizedTensor, np.ndarray | None]], activation: str | None, fmt: str, level: int,
           x: str, y: str, graph_name: str, scale_rebuild: str | None, target: str = DEFAULT_TARGET
           ) -> onnx.ModelProto:
    """The model of the checked ``(qt, bias)`` layers ``fc0, fc1, ...`` with ``activation`` between them."""
    inits: list[TensorProto] = []
    nodes: list[NodeProto] = []
    uses_ms = False
    h = x
    act = ACTIVATIONS[activation]
    for i, (qt, bias) in enumerate(pairs):
        last = i == len(pairs) - 1
        out = y if last else f"fc{i}_out"
        li, ln, ms = _layer(qt, bias, h, out, f"fc{i}", fmt, level, scale_rebuild, target)
        inits += li
        nodes += ln
        uses_ms |= ms
        h = out
        if not last and act is not None:
            h = f"fc{i}_act"
            nodes.append(helper.make_node(act[0], [out], [h], name=f"fc{i}_{act[0].lower()}", **act[1]))
    return _model(nodes, inits, pairs[0][0].shape[0], pairs[-1][0].shape[1], x, y, uses_ms, graph_name)


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
            :func:`linear_model` (``format="qdq"``), whose weight is built by
            :func:`~monoquant_np.onnx.export.nf4_subgraph.nf4_weight_subgraph`
            for NF4 and double-quantized tensors (``perm`` becomes a
            ``Gather`` of ``x``); for ``"bnb4"`` see
            :func:`~monoquant_np.onnx.export.matmulbnb4_node.bnb4_layout`.
        bias: optional float array ``(N,)`` (added in float32).
        format: ``"gather"`` (standard operators) or ``"bnb4"``
            (``com.microsoft.MatMulBnb4``, onnxruntime only).
        input_name, output_name: graph input ``(batch, K)`` and output
            ``(batch, N)``, float32.
        scale_rebuild: see ``nf4_weight_subgraph`` (``"gather"`` only).

    Returns:
        An ``onnx.ModelProto``, opset 21 (plus ``com.microsoft`` 1 for
        ``"bnb4"``), ``ir_version`` 10; ``onnx.checker`` passes.
    """
    check_choice(format, NF4_FORMATS, "format")
    x, y = _names(input_name, output_name)
    pair = _as_layer((qt, bias), 0)
    return _stack([pair], None, "qdq" if format == "gather" else "bnb4", 1, x, y, "monoquant_linear", scale_rebuild)
