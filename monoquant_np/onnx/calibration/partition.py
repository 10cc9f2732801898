"""Cutting a model's main graph into stages with bounded weights (spec section 14.5).

Calibration and ``verify`` run a model stage by stage
(:mod:`monoquant_np.onnx.calibration.staged`) so that only one stage's
weights are in memory at a time. The partition rule, on the main graph's
nodes in their (topological) order:

* A *constant* value is an initializer, a ``Constant`` output, or the output
  of a node whose every input is constant (``DequantizeLinear`` of a stored
  weight, a ``Transpose`` of one, a rotary table built from constants); random
  ops are never constant. Constant nodes belong to no stage: each stage gets a
  copy of those its nodes read (directly or through other constant nodes).
* The other nodes, in order, are numbered ``0 .. n-1``. A stage is a run
  ``[a, b)`` of them. Its *weights* are the initializers and ``Constant``
  tensors it reads (through its constant nodes too), counted once per stage:
  ``weight_bytes = sum(tensor_nbytes)``.
* The *cost* of the cut before node ``c`` is the number of values produced by a
  node before ``c`` and read at or after ``c`` (a graph output counts as read
  at the end). Graph inputs and constants never count: every stage reads them
  itself.
* Greedy: nodes join the current stage in order; when node ``i`` would take
  the stage's ``weight_bytes`` above ``stage_bytes`` (and the stage is not
  empty), the stage ends at the cut ``c`` in ``(a, i]`` of lowest cost, the
  latest of those on ties, and the next stage starts at ``c``. A node whose
  weights alone exceed ``stage_bytes`` is a stage by itself.

Between the blocks of a transformer only the residual stream and the values
every block shares (attention mask, rotary tables) are live, so the cuts fall
there without knowing any layer names. A node reading an ``If``/``Loop``/``Scan``
body reads every outer value the body reads.

    >>> import onnx.helper as h
    >>> g = h.make_graph([h.make_node("Relu", ["x"], ["a"]), h.make_node("Relu", ["a"], ["y"])], "g",
    ...                  [h.make_tensor_value_info("x", 1, None)], [h.make_tensor_value_info("y", 1, None)])
    >>> [(s.nodes, s.inputs, s.outputs) for s in partition(h.make_model(g), stage_bytes=1)]
    [((0, 1), (), ('y',))]
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

import numpy as np
import onnx

from ..protobuf import constant_tensor, iter_graphs, subgraphs
from ..tensors import tensor_nbytes

__all__ = ["Stage", "partition", "check_stage_bytes", "node_reads", "stage_of_nodes", "RANDOM_OPS"]

#: Ops whose output differs from run to run: never constant, never copied into several stages.
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli", "Dropout"})


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: indices into ``graph.node`` (its own nodes and the constant nodes they need, in graph
    order), the values it reads from earlier stages, those it hands to later stages or the graph outputs,
    and its weights."""

    nodes: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: tuple[str, ...]
    weight_bytes: int
    own: tuple[int, ...] = ()  # the stage's own (non-constant) nodes, the run [a, b)


def node_reads(node: onnx.NodeProto) -> list[str]:
    """The value names ``node`` reads: its inputs, then every name read inside its subgraphs."""
    names = [i for i in node.input if i]
    for sub in subgraphs(node):
        names += [i for g in iter_graphs(sub) for m in g.node for i in m.input if i]
    return names


@dataclasses.dataclass
class _Graph:
    """The partition's view of a main graph."""

    regular: list[int]  # indices of the non-constant nodes, in order
    const_nodes: dict[str, int]  # value produced by a constant node -> its node index
    roots: dict[str, frozenset[str]]  # constant value -> the stored tensors it is computed from
    nbytes: dict[str, int]  # stored tensor -> bytes
    produced: dict[str, int]  # value -> position (in ``regular``) of its producer
    last: dict[str, int]  # value -> last position reading it (n for graph outputs)


def _analyse(graph: onnx.GraphProto) -> _Graph:
    stored = {t.name: tensor_nbytes(t) for t in graph.initializer}
    roots: dict[str, frozenset[str]] = {n: frozenset({n}) for n in stored}
    const_nodes: dict[str, int] = {}
    regular: list[int] = []
    for idx, node in enumerate(graph.node):
        t = constant_tensor(node)
        reads = node_reads(node)
        if t is not None and node.output:
            stored[node.output[0]] = tensor_nbytes(t)
            roots[node.output[0]] = frozenset({node.output[0]})
            const_nodes[node.output[0]] = idx
        elif node.op_type not in RANDOM_OPS and reads and all(r in roots for r in reads):
            src = frozenset().union(*(roots[x] for x in reads))
            for o in node.output:
                if o:
                    roots[o], const_nodes[o] = src, idx
        else:
            regular.append(idx)
    produced: dict[str, int] = {}
    last: dict[str, int] = {}
    for pos, idx in enumerate(regular):
        for r in node_reads(graph.node[idx]):
            if r in produced:
                last[r] = pos
        for o in graph.node[idx].output:
            if o:
                produced[o] = pos
    for o in graph.output:
        if o.name in produced:
            last[o.name] = len(regular)
    return _Graph(regular, const_nodes, roots, stored, produced, last)


def _cut_costs(gr: _Graph) -> list[int]:
    """``cost[c]`` for ``c`` in ``0..n``: values produced before position ``c`` and read at or after it."""
    n = len(gr.regular)
    delta = [0] * (n + 2)
    for v, p in gr.produced.items():
        if v in gr.last and gr.last[v] > p:
            delta[p + 1] += 1
            delta[gr.last[v] + 1] -= 1
    cost, run = [], 0
    for c in range(n + 1):
        run += delta[c]
        cost.append(run)
    return cost


def _node_roots(graph: onnx.GraphProto, gr: _Graph) -> list[frozenset[str]]:
    """Per regular position, the stored tensors its node reads (through constant nodes too)."""
    return [frozenset().union(*(gr.roots[r] for r in node_reads(graph.node[idx]) if r in gr.roots))
            for idx in gr.regular]


def _spans(reads: list[frozenset[str]], nbytes: dict[str, int], cost: list[int], budget: int
           ) -> list[tuple[int, int]]:
    """The greedy rule of the module docstring: ``[(a, b), ...]`` covering ``0..n``."""
    spans: list[tuple[int, int]] = []
    start, i, n = 0, 0, len(reads)
    held: Counter[str] = Counter()
    size = 0
    while i < n:
        add = sum(nbytes[r] for r in reads[i] if r not in held)
        if i > start and size + add > budget:
            c = min(range(start + 1, i + 1), key=lambda k: (cost[k], -k))
            spans.append((start, c))
            start = c
            held = Counter(r for k in range(c, i) for r in reads[k])
            size = sum(nbytes[r] for r in held)
            continue
        held.update(reads[i])
        size += add
        i += 1
    spans.append((start, n))
    return spans


def _stage(graph: onnx.GraphProto, gr: _Graph, reads: list[frozenset[str]], a: int, b: int) -> Stage:
    own = [gr.regular[p] for p in range(a, b)]
    needed: set[int] = set()
    todo = [r for idx in own for r in node_reads(graph.node[idx]) if r in gr.const_nodes]
    while todo:  # the constant nodes computing what the stage reads, transitively
        k = gr.const_nodes[todo.pop()]
        if k not in needed:
            needed.add(k)
            todo += [r for r in node_reads(graph.node[k]) if r in gr.const_nodes]
    inputs = dict.fromkeys(r for idx in own for r in node_reads(graph.node[idx])
                           if r in gr.produced and gr.produced[r] < a)
    outputs = [o for idx in own for o in graph.node[idx].output if o and gr.last.get(o, -1) >= b]
    weights = sorted(frozenset().union(*reads[a:b])) if b > a else []
    return Stage(tuple(sorted(needed.union(own))), tuple(inputs), tuple(outputs), tuple(weights),
                 sum(gr.nbytes[w] for w in weights), tuple(own))


def check_stage_bytes(stage_bytes: object) -> int:
    """``stage_bytes`` if it is an int >= 1: ``TypeError`` for another type, ``ValueError`` below 1."""
    if isinstance(stage_bytes, bool) or not isinstance(stage_bytes, (int, np.integer)):
        raise TypeError(f"stage_bytes must be an int (bytes of weights per stage), got {type(stage_bytes).__name__}")
    if stage_bytes < 1:
        raise ValueError(f"stage_bytes must be a positive int, got {stage_bytes}")
    return int(stage_bytes)


def partition(model: onnx.ModelProto | onnx.GraphProto, stage_bytes: int) -> list[Stage]:
    """The stages of ``model``'s main graph for a weight budget of ``stage_bytes`` per stage (module docstring).

    Returns at least one stage (one empty stage for a graph with no
    non-constant node). Raises as :func:`check_stage_bytes`.
    """
    stage_bytes = check_stage_bytes(stage_bytes)
    graph = model.graph if isinstance(model, onnx.ModelProto) else model
    gr = _analyse(graph)
    reads = _node_roots(graph, gr)
    return [_stage(graph, gr, reads, a, b) for a, b in _spans(reads, gr.nbytes, _cut_costs(gr), stage_bytes)]


def stage_of_nodes(stages: Iterable[Stage]) -> dict[int, int]:
    """Node index -> the stage that runs it as its own (constant nodes, copied into several, map to the first)."""
    out: dict[int, int] = {}
    for si, s in enumerate(stages):
        for k in s.nodes:
            out.setdefault(k, si)
    return out
