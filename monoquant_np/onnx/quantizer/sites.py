"""Finding the weights a model quantizer may quantize (spec section 13.1).

A *weight site* is one constant float tensor (an initializer, or the output of
a ``Constant`` node) in some graph of the model (the main graph or an
``If``/``Loop``/``Scan`` body, any depth), together with every node that reads
it, in that graph or in nested ones. A site is *eligible* when

* it is 2-D, float32 or float16, with at least ``min_elements`` elements;
* every reader uses it in one of these roles, with the op in ``ops``:

  ======================  ========================  ======================
  reader                  role                       group axis (stored)
  ======================  ========================  ======================
  ``MatMul`` input B       ``(K, N)``                 0 (K)
  ``Gemm`` B, transB=0     ``(K, N)``                 0 (K)
  ``Gemm`` B, transB=1     ``(N, K)``                 1 (K)
  ``Gather`` data, axis 0  table ``(V, D)``           1 (D, the embedding)
  ``Transpose`` [1, 0]     feeding only MatMul B      1 (K of ``W.T``)
  ======================  ========================  ======================

* neither its name nor any reader's node name matches ``exclude``.

A site read by several nodes (tied embeddings: a ``Gather`` table that is
also a transposed ``MatMul``/``Gemm`` weight) is one site, quantized once.
When readers disagree on the axis, the first reader's axis is used and a note
says so. Everything else is skipped with a note saying why.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable

import onnx
from onnx import TensorProto

from ..options import DEFAULT_MIN_ELEMENTS, DEFAULT_OPS
from ..protobuf import attr, constant_tensor, iter_graphs, subgraphs

__all__ = ["Consumer", "WeightSite", "find_weight_sites", "QUANTIZED_OPS", "FLOAT_TYPES"]

#: Operators that mean a model is (partly) quantized already; left untouched.
QUANTIZED_OPS = (
    "DequantizeLinear", "QuantizeLinear", "MatMulInteger", "QLinearMatMul", "ConvInteger",
    "QLinearConv", "DynamicQuantizeMatMul", "MatMulNBits", "MatMulBnb4", "GatherBlockQuantized",
    "DynamicQuantizeLinear", "QGemm",
)

#: ONNX element types of weights that can be quantized.
FLOAT_TYPES: dict[int, str] = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}


@dataclasses.dataclass
class Consumer:
    """One node reading a weight.

    ``role`` is ``"matmul"``, ``"gemm"``, ``"gather"``, ``"transpose_matmul"``
    or ``"other"``; ``axis`` is the group axis that role asks for in the
    weight's stored orientation (``None`` for ``"other"``).
    """

    node: onnx.NodeProto
    graph: onnx.GraphProto
    role: str
    op: str
    axis: int | None


@dataclasses.dataclass
class WeightSite:
    """A constant float tensor and its readers.

    Attributes:
        name: the value name (initializer name or Constant output).
        graph: the graph that defines it.
        tensor: its ``TensorProto`` (possibly with external data).
        const_node: the ``Constant`` node, or None for an initializer.
        shape: the stored shape.
        dtype: ``"float32"`` or ``"float16"`` (else ``None``).
        consumers: every reader, in graph order.
        axis: the group axis chosen (stored orientation), once eligible.
        transpose: quantize ``W.T`` instead (a lone ``Gemm`` with transB=1 is
            rewritten to transB=0 so onnxruntime can fuse it).
        skip: why the site is not quantized (``None`` when eligible).
    """

    name: str
    graph: onnx.GraphProto
    tensor: TensorProto
    const_node: onnx.NodeProto | None
    shape: tuple[int, ...]
    dtype: str | None
    consumers: list[Consumer] = dataclasses.field(default_factory=list)
    axis: int = 0
    transpose: bool = False
    skip: str | None = None

    @property
    def size(self) -> int:
        """The number of elements, ``prod(shape)``."""
        return math.prod(self.shape)


def _role(node: onnx.NodeProto, index: int, ndim: int, uses: dict[str, list]) -> tuple[str, int | None]:
    """The role of input ``index`` of ``node`` for a ``ndim``-D constant."""
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    if ndim != 2:
        return "other", None
    if op == "MatMul" and index == 1:
        return "matmul", 0
    if op == "Gemm" and index == 1:
        return "gemm", 1 if attr(node, "transB", 0) else 0
    if op == "Gather" and index == 0 and attr(node, "axis", 0) == 0:
        return "gather", 1
    if op == "Transpose" and index == 0 and list(attr(node, "perm", [1, 0])) == [1, 0]:
        readers = uses.get(node.output[0], [])
        if readers and all(n.op_type == "MatMul" and i == 1 for n, _, i in readers):
            return "transpose_matmul", 1
    return "other", None


def _collect_uses(graph: onnx.GraphProto, uses: dict[str, list]) -> None:
    """name -> [(node, graph, input index)] over ``graph`` and its subgraphs."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                uses.setdefault(name, []).append((node, graph, i))
        for g in subgraphs(node):
            _collect_uses(g, uses)


def _walk(graph: onnx.GraphProto, scope: dict[str, WeightSite], uses: dict, sites: list[WeightSite]) -> None:
    scope = dict(scope)
    for vi in graph.input:
        scope.pop(vi.name, None)
    for t in graph.initializer:
        site = WeightSite(t.name, graph, t, None, tuple(t.dims), FLOAT_TYPES.get(t.data_type))
        scope[t.name] = site
        sites.append(site)
    for node in graph.node:
        for out in node.output:
            scope.pop(out, None)
        t = constant_tensor(node)
        if t is not None and node.output:
            site = WeightSite(node.output[0], graph, t, node, tuple(t.dims), FLOAT_TYPES.get(t.data_type))
            scope[node.output[0]] = site
            sites.append(site)
    for node in graph.node:
        for i, name in enumerate(node.input):
            found = scope.get(name)
            if found is not None:
                role, axis = _role(node, i, len(found.shape), uses)
                op = "MatMul" if role == "transpose_matmul" else node.op_type
                found.consumers.append(Consumer(node, graph, role, op, axis))
        for g in subgraphs(node):
            _walk(g, scope, uses, sites)


def find_weight_sites(
    model: onnx.ModelProto,
    *,
    ops: Iterable[str] = DEFAULT_OPS,
    exclude: str | None = None,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
) -> tuple[list[WeightSite], list[str]]:
    """Every float constant that feeds an op in ``ops``, and notes on the model.

    Returns ``(sites, notes)``: the sites (eligible ones have ``skip is None``
    and ``axis`` set; the others say why in ``skip``) and free-text notes
    (already-quantized operators found, axis disagreements, and, when
    ``"Gather"`` is not in ``ops``, the eligible ``Gather`` tables left float:
    the largest tensor of a language model is often its embedding table).
    """
    ops = tuple(ops)
    pattern = re.compile(exclude) if exclude else None
    uses: dict[str, list] = {}
    _collect_uses(model.graph, uses)
    sites: list[WeightSite] = []
    _walk(model.graph, {}, uses, sites)
    notes: list[str] = []
    found_q = sorted({n.op_type for g in iter_graphs(model.graph) for n in g.node if n.op_type in QUANTIZED_OPS})
    if found_q:
        notes.append(
            f"the model already contains quantized operators ({', '.join(found_q)}); "
            "they and their weights are left as they are"
        )
    relevant = [s for s in sites if _reads(s, ops)]  # other constants are silently left alone
    for s in relevant:
        s.skip = _skip_reason(s, ops, pattern, min_elements)
        if s.skip is None:
            notes.extend(_choose_axis(s))
    if "Gather" not in ops:
        tables = [s for s in sites if _reads(s, ("Gather",)) and _skip_reason(s, ("Gather",), pattern, min_elements)
                  is None]
        if tables:
            nbytes = sum(t.size * (2 if t.dtype == "float16" else 4) for t in tables)
            notes.append(f"{len(tables)} Gather table(s) ({nbytes:,} bytes) left float; "
                         f"--ops {','.join(ops)},Gather quantizes them too")
    return relevant, notes


def _reads(s: WeightSite, ops: tuple[str, ...]) -> bool:
    """True when an op of ``ops`` reads ``s`` in a quantizable role."""
    return any(c.op in ops and c.role != "other" for c in s.consumers)


def _skip_reason(s: WeightSite, ops: tuple[str, ...], pattern: re.Pattern | None, min_elements: int) -> str | None:
    """Why ``s`` is not quantized with these options, or None when it is eligible (spec 13.1)."""
    others = sorted({c.op for c in s.consumers if c.role == "other" or c.op not in ops})
    if s.dtype is None:
        return f"dtype {TensorProto.DataType.Name(s.tensor.data_type)} is not float32/float16"
    if others:
        return f"also read by {', '.join(others)} (not quantizable there with ops={','.join(ops)})"
    if s.size < min_elements:
        return f"{s.size} elements < min_elements {min_elements}"
    if pattern and (pattern.search(s.name) or any(pattern.search(c.node.name) for c in s.consumers)):
        return f"matches exclude {pattern.pattern!r}"
    return None


def _choose_axis(s: WeightSite) -> list[str]:
    """Set the eligible ``s``'s group axis (the first reader's) and ``transpose``; a note when readers disagree."""
    axes = [int(c.axis) for c in s.consumers if c.axis is not None]
    s.axis = axes[0]
    c0 = s.consumers[0]
    if len(s.consumers) == 1 and c0.role == "gemm" and c0.axis == 1:
        s.transpose, s.axis = True, 0
    if len(set(axes)) > 1:
        return [f"{s.name}: readers want different group axes {sorted(set(axes))}; grouped along axis {axes[0]}"]
    return []
