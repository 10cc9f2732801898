"""Replacing one float weight by its quantized form in the graph (spec section 13.2).

For a :class:`~monoquant_np.onnx.quantizer.sites.WeightSite` and its
:class:`~monoquant_np.QuantizedTensor` ``qt`` (in the site's stored
orientation), each reader is served in one of three ways:

* ``MatMulNBits`` (``format="matmulnbits"``): the ``MatMul``/``Gemm`` node is
  replaced by ``com.microsoft.MatMulNBits`` on the packed weight (a ``Gemm``
  only when ``alpha == beta == 1`` and ``transA == 0``; its bias ``C`` follows
  as an ``Add``);
* ``GatherBlockQuantized`` (``gather_op="GatherBlockQuantized"``, the
  default): a ``Gather`` on an int4/uint4 table grouped along its last axis
  with a power-of-two group >= 16 is replaced by onnxruntime's contrib op,
  which dequantizes only the gathered rows;
* ``qdq`` (everything else, and the only standard-ONNX form):
  ``DequantizeLinear`` (built by :func:`~monoquant_np.onnx.export.qdq.weight_subgraph`)
  produces the float weight under the weight's own name, so readers are
  untouched; a tied table read by a ``Gather`` and a transposed ``MatMul``
  shares the same quantized initializers.

# Note: onnxruntime's ``matmul_nbits_quantizer`` always emits
# ``GatherBlockQuantized`` for ``Gather``. It is the default here too, because
# ``DequantizeLinear -> Gather`` dequantizes the whole table on every run while
# ``GatherBlockQuantized`` dequantizes only the gathered rows (same outputs;
# ``tools/bench_gather_ops.py`` measures both). ``gather_op="DequantizeLinear"``
# keeps the model standard ONNX.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...formats.matmulnbits import is_block_size, matmulnbits_block_size
from ...tensor import QuantizedTensor
from ..export.constants import MS_DOMAIN
from ..export.dequantize_linear import cast_node, weight_dequantize_node
from ..export.initializers import tensor_to_onnx, weight_initializers
from ..export.matmulnbits_node import matmulnbits_node
from ..export.qdq import input_permutation
from ..export.targets import target_weight_subgraph, uses_matmulnbits, weight_form
from ..options import DEFAULT_FORMAT, DEFAULT_GATHER_OP, DEFAULT_TARGET
from ..protobuf import attr, iter_graphs
from .sites import WeightSite

__all__ = ["apply_quantized", "gather_block_quantized_ok", "matmulnbits_ok", "unique_names", "fresh_name"]


def _index(graph: onnx.GraphProto, node: onnx.NodeProto) -> int:
    outs = list(node.output)
    for i, n in enumerate(graph.node):
        if list(n.output) == outs and n.op_type == node.op_type:
            return i
    raise ValueError(f"node {node.name!r} not found in its graph")


def _set_attr(node: onnx.NodeProto, name: str, value: int) -> None:
    for a in node.attribute:
        if a.name == name:
            a.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))


def gather_block_quantized_ok(qt: QuantizedTensor) -> bool:
    """True when ``GatherBlockQuantized`` can read ``qt`` (4-bit linear codes grouped along the last axis)."""
    return (qt.bits == 4 and qt.codebook is None and qt.double_quant is None and qt.perm is None
            and qt.axis == len(qt.shape) - 1 and is_block_size(qt.block_size))


def matmulnbits_ok(qt: QuantizedTensor, dtype: str) -> bool:
    """True when ``MatMulNBits`` can take ``qt`` exactly in a model of float ``dtype``.

    MatMulNBits wants scales of A's type (spec 9.4): a float32 model takes any
    scales (float16 ones widened exactly), a float16 model float16 scales only;
    other float16 weights keep the QDQ form.
    """
    ok_dtype = dtype == "float32" or (dtype == "float16" and qt.scale.dtype == np.float16)
    return ok_dtype and matmulnbits_block_size(qt) is not None


def _float_weight(qt: QuantizedTensor, qname: str, out: str, dtype: str, target: str):
    """Initializers and nodes making ``out`` = the weight in stored order, in the model's float dtype,
    in the form ``target`` runs (spec 16.4)."""
    if (dtype == "float16" and qt.scale.dtype == np.float16 and qt.codebook is None and qt.double_quant is None
            and weight_form(qt, target) == "dequantizelinear"):
        return weight_initializers(qt, qname), [weight_dequantize_node(qt, qname, qname + "_scale", out)]
    if dtype == "float16":
        inits, nodes = target_weight_subgraph(qt, qname, out + "_f32", target)
        nodes.append(cast_node(out + "_f32", out, "float16", qname + "_cast"))
        return inits, nodes
    return target_weight_subgraph(qt, qname, out, target)


class _Added(set):
    """The names of the initializers added for one weight, and ``spill``, which receives each new one before it
    joins the graph (its bytes then go to the output file from the tensor's own protobuf arena, which is freed;
    an arena only grows, so bytes cleared after joining the graph's would stay in memory)."""

    def __init__(self, spill: Callable[[onnx.TensorProto], None] | None = None):
        super().__init__()
        self.spill = spill


def _add_inits(graph: onnx.GraphProto, inits, seen: set[str]) -> None:
    for t in inits:
        if t.name not in seen:
            if isinstance(seen, _Added) and seen.spill is not None:
                seen.spill(t)
            graph.initializer.append(t)
            seen.add(t.name)


def apply_quantized(
    site: WeightSite,
    qt: QuantizedTensor,
    qname: str,
    *,
    fmt: str = DEFAULT_FORMAT,
    gather_op: str = DEFAULT_GATHER_OP,
    accuracy_level: int | None = None,
    target: str = DEFAULT_TARGET,
    spill: Callable[[onnx.TensorProto], None] | None = None,
) -> str:
    """Rewrite the graphs around ``site`` to use ``qt``; return how it is served (e.g. ``"qdq"``).

    ``qname`` is a fresh name prefix for the quantized initializers. The float
    tensor (initializer or ``Constant`` node) is removed. Every node inserted
    before a reader lands right before it, in the reader's graph; the
    dequantizing nodes land where the weight was defined, in the form
    ``target`` runs (``fmt`` and ``gather_op`` as
    :func:`~monoquant_np.onnx.export.targets.target_options` set them). ``spill`` receives
    every new initializer before it is added to the graph (spec 13.6).
    """
    g = site.graph
    served: list[str] = []
    seen: set[str] = _Added(spill)
    need_float: list = []
    for c in site.consumers:
        node = c.graph.node[_index(c.graph, c.node)]
        if (c.role in ("matmul", "gemm") and uses_matmulnbits(qt, target, fmt)
                and matmulnbits_ok(qt, site.dtype or "")):
            if c.role == "matmul" or (
                attr(node, "alpha", 1.0) == 1.0 and attr(node, "beta", 1.0) == 1.0 and not attr(node, "transA", 0)
                and (attr(node, "transB", 0) == 0 or site.transpose)
            ):
                _replace_with_nbits(c.graph, node, qt, qname, accuracy_level, seen, g, site.dtype or "float32")
                served.append("MatMulNBits")
                continue
        if c.role == "gather" and gather_op == "GatherBlockQuantized" and gather_block_quantized_ok(qt):
            _replace_with_gbq(c.graph, node, qt, qname, site.dtype or "float32", g, seen)
            served.append("GatherBlockQuantized")
            continue
        need_float.append((c, node))
    if need_float:
        out = site.name if not site.transpose and qt.perm is None else f"{qname}_dq"
        inits, nodes = _float_weight(qt, qname, out, site.dtype or "float32", target)
        _add_inits(g, inits, seen)
        at = _index(g, site.const_node) if site.const_node is not None else 0
        for k, n in enumerate(nodes):
            g.node.insert(at + k, n)
        for c, node in need_float:
            if site.transpose:
                _set_attr(node, "transB", 0)
            if qt.perm is not None:
                _permute_reader(c, node, qt, qname, out, site.name, seen, g)
            elif out != site.name:
                for i, name in enumerate(node.input):
                    if name == site.name:
                        node.input[i] = out
        form = weight_form(qt, target)
        served.append("qdq" if form == "dequantizelinear" else form)  # arithmetic-* for other targets
    _remove_float(site)
    return "+".join(dict.fromkeys(served))


def _permute_reader(c, node, qt: QuantizedTensor, qname: str, stored: str, name: str, seen: set[str],
                    def_graph: onnx.GraphProto) -> None:
    """Make ``node`` correct on the stored-order weight ``stored`` of a ``qt`` with ``perm``.

    A MatMul/Gemm whose K axis is the permuted axis reads ``x[..., perm] @ W_stored``
    (spec 14); any other reader gets ``Gather(W_stored, argsort(perm), axis)``.
    """
    k_axis = 0 if c.role == "matmul" or (c.role == "gemm" and not attr(node, "transB", 0)) else 1
    if c.role in ("matmul", "gemm") and qt.axis == k_axis:
        x, xp = node.input[0], f"{qname}_{node.name or node.output[0]}_x"
        if qt.axis == 0:
            inits, nodes = input_permutation(qt, qname, x, xp)
        else:
            inits, nodes = _activation_gather(qt, qname, x, xp)
        _add_inits(def_graph, inits, seen)
        c.graph.node.insert(_index(c.graph, node), nodes[0])
        node.input[0] = xp
        node.input[1] = stored
        return
    if f"{qname}_unpermute" not in seen and qt.perm is not None:
        inv = numpy_helper.from_array(np.argsort(qt.perm).astype(np.int64), f"{qname}_inv_perm")
        _add_inits(def_graph, [inv], seen)
        seen.add(f"{qname}_unpermute")
        at = _index(def_graph, _find_producer(def_graph, stored)) + 1
        def_graph.node.insert(at, helper.make_node("Gather", [stored, inv.name], [f"{qname}_orig"],
                                                   name=f"{qname}_unpermute", axis=qt.axis))
    for i, n in enumerate(node.input):
        if n == name:
            node.input[i] = f"{qname}_orig"


def _find_producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto:
    for n in graph.node:
        if name in n.output:
            return n
    raise ValueError(f"no node produces {name!r}")


def _activation_gather(qt: QuantizedTensor, qname: str, x: str, out: str):
    perm = numpy_helper.from_array(np.asarray(qt.perm, dtype=np.int64), qname + "_perm")
    return [perm], [helper.make_node("Gather", [x, perm.name], [out], name=out + "_gather", axis=-1)]


def _replace_with_nbits(graph, node, qt: QuantizedTensor, qname: str, accuracy_level, seen, def_graph,
                        dtype: str = "float32") -> None:
    at = _index(graph, node)
    a = node.input[0]
    y = node.output[0]
    new_nodes = []
    if qt.perm is not None:
        inits, nodes = input_permutation(qt, qname, a, f"{qname}_{node.name or y}_x")
        _add_inits(def_graph, inits, seen)
        new_nodes += nodes
        a = nodes[0].output[0]
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    mm_out = f"{y}_nobias" if bias else y
    kw = {} if accuracy_level is None else {"accuracy_level": accuracy_level}
    inits, nb_node = matmulnbits_node(qt, a, mm_out, qname, dtype=dtype, **kw)
    nb_node.name = f"{qname}_nbits_{y}"  # unique per reader: a weight shared by several MatMuls (ALBERT)
    _add_inits(def_graph, inits, seen)
    new_nodes.append(nb_node)
    if bias:
        new_nodes.append(helper.make_node("Add", [mm_out, bias], [y], name=f"{qname}_bias_{y}"))
    del graph.node[at]
    for k, n in enumerate(new_nodes):
        graph.node.insert(at + k, n)


def _replace_with_gbq(graph, node, qt: QuantizedTensor, qname: str, dtype: str, def_graph, seen) -> None:
    at = _index(graph, node)
    _add_inits(def_graph, [t for t in tensor_to_onnx(qt, qname)], seen)
    ins = [qname, node.input[1], qname + "_scale"] + ([qname + "_zero_point"] if qt.zero_point is not None else [])
    y = node.output[0]
    scale_dt = qt.scale.dtype.name
    out = y if scale_dt == dtype else f"{y}_{scale_dt}"
    new = [helper.make_node("GatherBlockQuantized", ins, [out], name=f"{qname}_gbq_{y}", domain=MS_DOMAIN,
                            gather_axis=0, quantize_axis=len(qt.shape) - 1, block_size=qt.block_size)]
    if out != y:
        new.append(cast_node(out, y, dtype, f"{qname}_gbq_cast_{y}"))
    del graph.node[at]
    for k, n in enumerate(new):
        graph.node.insert(at + k, n)


def _remove_float(site: WeightSite) -> None:
    g = site.graph
    if site.const_node is not None:
        del g.node[_index(g, site.const_node)]
    else:
        for i, t in enumerate(g.initializer):
            if t.name == site.name:
                del g.initializer[i]
                break
    for i, vi in enumerate(g.input):
        if vi.name == site.name:
            del g.input[i]
            break
    if site.transpose:
        for i, vi in enumerate(g.value_info):
            if vi.name == site.name:
                del g.value_info[i]
                break


def unique_names(model: onnx.ModelProto) -> set[str]:
    """Every initializer, graph input and node output name, in all graphs (the names new tensors avoid)."""
    names: set[str] = set()
    for g in iter_graphs(model.graph):
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in g.input)
        for n in g.node:
            names.update(n.output)
    return names


def fresh_name(base: str, names: set[str]) -> str:
    """``base + "_Q4"`` (then ``_Q4_1``, ``_Q4_2``, ...): the first that neither is in ``names`` nor
    prefixes one of them (the quantized tensors get suffixes such as ``_scale``); added to ``names``."""
    cand, k = f"{base}_Q4", 1
    while any(x == cand or x.startswith(cand + "_") for x in names):
        cand, k = f"{base}_Q4_{k}", k + 1
    names.add(cand)
    return cand
