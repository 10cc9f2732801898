"""Where AWQ's activation multiplier goes in an ONNX graph (spec section 14.3).

AWQ (:mod:`monoquant_np.algorithms.awq`) quantizes ``diag(1 / m) W`` and needs
the graph to compute ``(x * m) @ deq(Q)``. The multiplier ``m`` of an
activation ``x`` is

* folded into the ``LayerNormalization`` over the last axis that produces
  ``x`` (``gamma *= m``, ``beta *= m``) when the quantized MatMuls are the only
  readers of ``x`` and ``gamma``/``beta`` serve that node alone;
* otherwise an explicit ``x_awq = Mul(x, m)`` inserted in front of the first
  reader, and only the readers of the searched weights rewired to ``x_awq``
  (BERT's LayerNorm output also feeds the residual ``Add``, which keeps ``x``).

A weight read through ``Transpose(W) -> MatMul`` counts as read by that MatMul.
The model is edited in place: callers pass the quantizer's working copy.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..tensors import tensor_array

__all__ = ["insert_multipliers", "fold_into_layernorm"]


def insert_multipliers(model: onnx.ModelProto, muls: dict[str, tuple[np.ndarray, set[str]]],
                       base_dir: str | None = None) -> None:
    """For each ``x: (m, weights)``: ``x_awq = Mul(x, m)`` before the first MatMul/Gemm reading ``x``
    with one of ``weights``, and those readers rewired to ``x_awq`` (other readers keep ``x``).

    Folded into the producing LayerNormalization instead when that is exact (:func:`fold_into_layernorm`;
    its gamma and beta are read from ``base_dir`` when they are in external data files).
    """
    g = model.graph
    taken = {o for n in g.node for o in n.output} | {t.name for t in g.initializer} | {i.name for i in g.input}
    # Transpose(W) -> MatMul reads W through the Transpose's output (role "transpose_matmul")
    transposed = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Transpose" and n.input and n.output}
    for x, (m, weights) in muls.items():
        base = f"{x}_awq"
        name, k = base, 1
        while name in taken or f"{name}_m" in taken:
            name, k = f"{base}{k}", k + 1
        taken.update({name, f"{name}_m"})
        readers = [i for i, n in enumerate(g.node) if n.op_type in ("MatMul", "Gemm") and n.input and n.input[0] == x
                   and len(n.input) > 1 and (n.input[1] in weights or transposed.get(n.input[1]) in weights)]
        if not readers or fold_into_layernorm(g, x, m, readers, base_dir):
            continue
        for i in readers:
            g.node[i].input[0] = name
        g.initializer.append(numpy_helper.from_array(m.astype(np.float32), f"{name}_m"))
        g.node.insert(readers[0], helper.make_node("Mul", [x, f"{name}_m"], [name], name=f"{name}_mul"))


def fold_into_layernorm(g: onnx.GraphProto, x: str, m: np.ndarray, readers: list[int],
                        base_dir: str | None = None) -> bool:
    """``gamma *= m``, ``beta *= m`` when ``x`` is the output of a ``LayerNormalization`` over its last
    axis whose only readers are ``readers`` and whose gamma/beta initializers serve it alone (the new
    values are stored in the model, also when the old ones were in external data files)."""
    prod = next((n for n in g.node if x in n.output), None)
    if prod is None or prod.op_type != "LayerNormalization" or prod.output[0] != x or len(prod.input) < 3:
        return False
    if any(a.name == "axis" and a.i != -1 for a in prod.attribute) or x in {o.name for o in g.output}:
        return False
    users = [i for i, n in enumerate(g.node) if x in n.input]
    if sorted(users) != sorted(readers):
        return False  # x also feeds something else (BERT's residual Add): an explicit Mul instead
    inits = {t.name: t for t in g.initializer}
    params = [prod.input[1], prod.input[2]]
    uses = sum(1 for n in g.node for i in n.input if i in params)
    if any(p not in inits or list(inits[p].dims) != [m.shape[0]] for p in params) or uses != 2:
        return False
    for p in params:
        v = tensor_array(inits[p], base_dir)
        inits[p].CopyFrom(numpy_helper.from_array((v.astype(np.float32) * m).astype(v.dtype), p))
    return True
