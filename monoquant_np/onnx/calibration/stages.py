"""Calibration through onnxruntime: which activations, in which stages (spec section 14.4).

The statistics themselves (``X^T X``, ``sum |x|`` and the row count per
activation, captured on a *copy* of the model, batch by batch) are
:mod:`monoquant_np.onnx.calibration.capture`, whose names this module re-exports.
Here: the (weight, activation) pairs of the MatMul/Gemm readers
(:func:`find_targets`) and the order in which layers are calibrated.

Sequential calibration (:func:`calibrate_sequential`) quantizes the layers in
stages: a stage is every remaining layer whose activation does not depend on
a remaining layer; after each stage the quantized layers' float weights are
replaced, in the working copy, by what the quantized model computes, so the
next stage's statistics are those of the inputs the quantized model will
really see (as in GPTQ's reference, which runs layer by layer).

# Note: activations inside ``If``/``Loop``/``Scan`` bodies cannot be graph
# outputs; weights read only there get the ``mse`` scales of 14.1 (no statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from .capture import (
    ActivationStats,
    CaptureSession,
    _mask_name,
    check_feeds,
    collect_stats,
    iter_feeds,
    load_feeds,
)

__all__ = [
    "ActivationStats",
    "CalibrationTarget",
    "find_targets",
    "load_feeds",
    "iter_feeds",
    "collect_stats",
    "layer_stages",
    "calibrate_sequential",
    "CaptureSession",
    "check_feeds",
]


@dataclasses.dataclass(frozen=True)
class CalibrationTarget:
    """A quantized weight and the activation its reader multiplies.

    ``y = act @ W`` with ``W`` ``(K, N)`` the weight as the algorithms see it:
    ``transpose_weight`` when the stored tensor is ``(N, K)`` (``Gemm``
    transB=1, ``Transpose`` -> ``MatMul``); ``trans_act`` when ``act`` is
    ``(K, M)`` (``Gemm`` transA=1).
    """

    weight: str
    activation: str
    transpose_weight: bool = False
    trans_act: bool = False


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _constants(graph: onnx.GraphProto) -> dict[str, TensorProto]:
    consts = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    consts[n.output[0]] = a.t
    return consts


def find_targets(model: onnx.ModelProto, weights: Iterable[str] | None = None) -> list[CalibrationTarget]:
    """The (weight, activation) pairs of the main graph's MatMul/Gemm readers of 2-D constants.

    ``weights`` restricts the result to those names. Order: graph order.
    """
    g = model.graph
    consts = _constants(g)
    wanted = set(weights) if weights is not None else None
    transposed = {}  # Transpose(perm=[1,0]) output -> constant name
    for n in g.node:
        if n.op_type == "Transpose" and n.input and n.input[0] in consts and list(_attr(n, "perm", [1, 0])) == [1, 0]:
            transposed[n.output[0]] = n.input[0]
    out: list[CalibrationTarget] = []
    for n in g.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2:
            continue
        b = n.input[1]
        tw = False
        if b in transposed:
            b, tw = transposed[b], True
        if b not in consts or len(consts[b].dims) != 2 or (wanted is not None and b not in wanted):
            continue
        ta = False
        if n.op_type == "Gemm":
            tw = tw != bool(_attr(n, "transB", 0))
            ta = bool(_attr(n, "transA", 0))
        out.append(CalibrationTarget(b, n.input[0], tw, ta))
    return out


def _ancestors_of(graph: onnx.GraphProto) -> dict[str, set[str]]:
    """For each value name, the set of constant names it (transitively) depends on."""
    consts = set(_constants(graph))
    dep: dict[str, set[str]] = {c: {c} for c in consts}
    for n in graph.node:  # ONNX graphs are topologically sorted
        d: set[str] = set()
        for i in n.input:
            d |= dep.get(i, set())
        for o in n.output:
            dep[o] = d
    return dep


def layer_stages(model: onnx.ModelProto, targets: list[CalibrationTarget]) -> list[list[CalibrationTarget]]:
    """Split ``targets`` into stages: each target's activation depends on no weight of its stage or later.

    All readers of one weight land in the stage of its first reader.
    """
    dep = _ancestors_of(model.graph)
    remaining = list(targets)
    stages = []
    while remaining:
        pending = {t.weight for t in remaining}
        ready = {t.weight for t in remaining if not (dep.get(t.activation, set()) & (pending - {t.weight}))}
        stage = [t for t in remaining if t.weight in ready] or remaining  # a valid graph has no cycle
        stages.append(stage)
        remaining = [t for t in remaining if t not in stage]
    return stages


def calibrate_sequential(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    targets: list[CalibrationTarget],
    quantize_stage: Callable[[list[CalibrationTarget], dict[str, ActivationStats]], Mapping[str, np.ndarray]],
    *,
    sequential: bool = True,
    batch_size: int = 16,
    mask_input: str | None = "auto",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    fixed: Mapping[str, np.ndarray] | None = None,
    base_dir: str | None = None,
) -> None:
    """Calibrate and quantize ``targets`` stage by stage (spec 14.4).

    ``quantize_stage(stage_targets, stats)`` gets the stage's targets and the
    statistics of their activations (``stats[target.activation]``), quantizes
    (the caller keeps the results) and returns, per weight name, the float
    weight the quantized model computes with, in the weight's *stored*
    orientation. Those replace the float weights for the following stages, so
    later statistics are those of the quantized model. With
    ``sequential=False`` there is one stage and one pass on the float model.
    ``feeds`` must be re-iterable (a mapping or a list): every stage runs the
    model again. One onnxruntime session serves every stage. ``fixed`` maps
    other initializers (e.g. an embedding table already quantized without
    calibration) to the float values the quantized model computes with; they
    replace the originals from the first stage on, also when not sequential.
    ``base_dir``: the folder of the model's external data files, when its
    tensors stay there.
    """
    stages = layer_stages(model, targets) if sequential else [list(targets)]
    consts = {t.name for t in model.graph.initializer}
    fixed = {k: v for k, v in (fixed or {}).items() if k in consts}
    over = [t.weight for t in targets if t.weight in consts] if sequential else []
    sess = CaptureSession(model, [t.activation for t in targets], overridable=over + list(fixed), threads=threads,
                          base_dir=base_dir)
    mask_name = _mask_name(mask_input, model)
    overrides: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in fixed.items()}
    for si, stage in enumerate(stages):
        acts = list(dict.fromkeys(t.activation for t in stage))
        if progress:
            progress(f"calibration stage {si + 1}/{len(stages)}: {len(acts)} activation(s)")
        stats = collect_stats(sess, feeds, acts, trans_act=[t.activation for t in stage if t.trans_act],
                              batch_size=batch_size, mask_input=mask_name, overrides=overrides)
        w_hats = quantize_stage(stage, stats)
        if sequential:
            overrides.update({k: np.asarray(v) for k, v in w_hats.items() if k in sess.overridable})


# Importing this module registers the mse, gptq and awq algorithms with
# monoquant_np.onnx.quantizer.pipeline (its ALGORITHM_MODULE); the adapters live in .calibrated.
from . import adapters as _calibrated  # noqa: E402,F401
