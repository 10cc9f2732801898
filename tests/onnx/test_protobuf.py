"""The protobuf helpers of spec 13.1/13.6: attributes, Constant tensors, graphs nested at any depth."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.onnx.protobuf import (
    attr,
    attrs,
    constant_tensor,
    graph_constants,
    iter_graphs,
    subgraph_inputs,
    subgraphs,
)


def _graph(name: str, nodes: list, inputs: tuple[str, ...] = ()) -> object:
    vi = [helper.make_tensor_value_info(i, TensorProto.FLOAT, [2]) for i in inputs]
    return helper.make_graph(nodes, name, vi, [helper.make_tensor_value_info(name + "_y", TensorProto.FLOAT, [2])])


def _nested():
    """main -> If(then: Loop(body), else) : three levels, the innermost reading ``w`` from the outer scope."""
    body = _graph("body", [helper.make_node("MatMul", ["x", "w"], ["body_y"])])
    then = _graph("then", [helper.make_node("Loop", ["n", "c"], ["then_y"], body=body)])
    other = _graph("else", [helper.make_node("Identity", ["w"], ["else_y"])])
    k = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "k")
    main = _graph("main", [
        helper.make_node("Constant", [], ["c"], value=k),
        helper.make_node("If", ["cond"], ["main_y"], then_branch=then, else_branch=other),
    ])
    main.initializer.append(numpy_helper.from_array(np.zeros(2, np.float32), "w"))
    return main


def test_attr_and_attrs():
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transB=1, alpha=0.5)
    assert attr(node, "transB", 0) == 1 and attr(node, "transA", 0) == 0 and attr(node, "beta") is None
    assert attrs(node) == {"transB": 1, "alpha": 0.5}


def test_graphs_are_walked_outermost_first_at_any_depth():
    main = _nested()
    # pre-order, each node's graphs in attribute order (helper.make_node sorts attributes by name)
    assert [g.name for g in iter_graphs(main)] == ["main", "else", "then", "body"]
    assert [g.name for g in subgraphs(main.node[1])] == ["else", "then"]


def test_constants_are_initializers_and_standard_constant_nodes():
    main = _nested()
    consts = graph_constants(main)
    assert sorted(consts) == ["c", "w"]
    assert numpy_helper.to_array(consts["c"]).tolist() == [1.0, 2.0]
    custom = helper.make_node("Constant", [], ["z"], domain="com.example", value=consts["c"])
    assert constant_tensor(custom) is None and constant_tensor(main.node[1]) is None


def test_subgraph_inputs_are_what_nested_nodes_read():
    assert subgraph_inputs(_nested()) == {"n", "c", "x", "w"}
