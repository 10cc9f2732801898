"""Calibration through onnxruntime: which activations, in which stages (spec section 14.4).

The statistics themselves (``X^T X``, ``sum |x|`` and the row count per
activation, captured on a *copy* of the model, batch by batch) are
:mod:`monoquant_np.onnx.calibration.capture`. Here: the (weight, activation)
pairs of the MatMul/Gemm readers (:class:`CalibrationTarget`, found by
:mod:`monoquant_np.onnx.calibration.layers`) and the order in which layers
are calibrated.

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

import numpy as np
import onnx

from ..protobuf import graph_constants
from .capture import ActivationStats, CaptureSession, collect_stats

__all__ = ["CalibrationTarget", "layer_stages", "calibrate_sequential"]


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


def _ancestors_of(graph: onnx.GraphProto) -> dict[str, set[str]]:
    """For each value name, the set of constant names it (transitively) depends on."""
    consts = set(graph_constants(graph))
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
    overrides: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in fixed.items()}
    for si, stage in enumerate(stages):
        acts = list(dict.fromkeys(t.activation for t in stage))
        if progress:
            progress(f"calibration stage {si + 1}/{len(stages)}: {len(acts)} activation(s)")
        stats = collect_stats(sess, feeds, acts, trans_act=[t.activation for t in stage if t.trans_act],
                              batch_size=batch_size, mask_input=mask_input, overrides=overrides)
        w_hats = quantize_stage(stage, stats)
        if sequential:
            overrides.update({k: np.asarray(v) for k, v in w_hats.items() if k in sess.overridable})

