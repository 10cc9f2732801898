"""Reading ONNX protobuf messages: node attributes, Constant tensors, subgraph walks (spec sections 13.1, 13.6).

Every module of the ONNX side that reads an attribute, the tensor of a
``Constant`` node or the graphs nested in ``If``/``Loop``/``Scan`` bodies
calls these, so the conventions live in one place:

* a graph's *constants* are its initializers and the ``value`` tensors of its
  ``Constant`` nodes (domain ``""`` or ``"ai.onnx"``), keyed by value name;
* subgraphs are the ``GRAPH`` and ``GRAPHS`` attributes of a node, walked
  outermost first, any depth.

    >>> from onnx import helper
    >>> attr(helper.make_node("Gemm", ["a", "b"], ["y"], transB=1), "transB", 0)
    1
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import onnx
from onnx import AttributeProto, TensorProto, helper

__all__ = ["attr", "attrs", "subgraphs", "iter_graphs", "constant_tensor", "graph_constants", "subgraph_inputs"]


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name`` (``helper.get_attribute_value``), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """Every attribute of ``node`` as ``{name: value}``."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held by ``node``'s attributes (an ``If``'s branches, a ``Loop``'s or ``Scan``'s body)."""
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph (If/Loop/Scan bodies, any depth), outermost first."""
    yield graph
    for node in graph.node:
        for g in subgraphs(node):
            yield from iter_graphs(g)


def constant_tensor(node: onnx.NodeProto) -> TensorProto | None:
    """The ``value`` tensor of a standard-domain ``Constant`` node; None for any other node."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for a in node.attribute:
        if a.name == "value" and a.type == AttributeProto.TENSOR:
            return a.t
    return None


def graph_constants(graph: onnx.GraphProto) -> dict[str, TensorProto]:
    """Value name -> tensor for ``graph``'s initializers and ``Constant`` outputs (not its subgraphs')."""
    consts = {t.name: t for t in graph.initializer}
    for n in graph.node:
        t = constant_tensor(n)
        if t is not None and n.output:
            consts[n.output[0]] = t
    return consts


def subgraph_inputs(graph: onnx.GraphProto) -> set[str]:
    """Every value name read by a node inside a subgraph of ``graph`` (any depth), not by ``graph`` itself."""
    return {i for node in graph.node for sub in subgraphs(node) for g in iter_graphs(sub)
            for m in g.node for i in m.input}
