"""Calibration through onnxruntime: which activations, in which stages (spec sections 14.4, 14.5).

The statistics themselves (``X^T X``, ``sum |x|`` and the row count per
activation, batch by batch) are :mod:`monoquant_np.onnx.calibration.capture`;
the model runs stage by stage (:mod:`monoquant_np.onnx.calibration.staged`,
one stage's weights in memory at a time). Here: the (weight, activation)
pairs of the MatMul/Gemm readers (:class:`CalibrationTarget`, found by
:mod:`monoquant_np.onnx.calibration.layers`) and the order in which layers
are calibrated (:func:`calibrate_sequential`): an activation is captured in
the first stage running one of its readers, and a weight is quantized as soon
as all its activations are captured, its statistics then dropped.

Sequential calibration splits each stage further into :func:`layer_stages`:
a sub-stage is every remaining layer whose activation does not depend on a
remaining layer; after each sub-stage the quantized layers' float weights are
replaced, in the stage, by what the quantized model computes, and the values
handed to the next stage are computed with them, so every later statistic is
that of the inputs the quantized model will really see (as in GPTQ's
reference, which runs layer by layer).

# Note: activations inside ``If``/``Loop``/``Scan`` bodies cannot be graph
# outputs; weights read only there get the ``mse`` scales of 14.1 (no statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx

from ..feeds import model_input_names
from ..options import DEFAULT_STAGE_BYTES
from ..protobuf import graph_constants
from .capture import ActivationStats, add_rows, batch_mask, mask_input_name, model_batches
from .staged import StagedModel

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
    reader: str = ""  # the first output of the reading MatMul/Gemm ("" : the activation's producer stands in)


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


@dataclasses.dataclass
class _Plan:
    """Where each activation is captured and each weight quantized (stage indices of the partition)."""

    act_stage: dict[str, int]  # activation -> the first stage running one of its readers
    weight_stage: dict[str, int]  # weight -> the stage where its last activation is captured
    targets: list[CalibrationTarget]

    def acts_at(self, si: int) -> list[str]:
        return [a for a, s in self.act_stage.items() if s == si]

    def weights_at(self, si: int) -> set[str]:
        return {w for w, s in self.weight_stage.items() if s == si}


def _plan(staged: StagedModel, targets: list[CalibrationTarget]) -> _Plan:
    act_stage: dict[str, int] = {}
    for t in targets:
        si = staged.first_stage(t.reader) if t.reader else staged.first_stage(t.activation)
        act_stage[t.activation] = min(act_stage.get(t.activation, si), si)
    weight_stage: dict[str, int] = {}
    for t in targets:
        weight_stage[t.weight] = max(weight_stage.get(t.weight, 0), act_stage[t.activation])
    return _Plan(act_stage, weight_stage, list(targets))


def calibrate_sequential(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    targets: list[CalibrationTarget],
    quantize_stage: Callable[[list[CalibrationTarget], dict[str, ActivationStats]],
                             Mapping[str, Callable[[], np.ndarray]]],
    *,
    sequential: bool = True,
    batch_size: int = 16,
    mask_input: str | None = "auto",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    fixed: Mapping[str, Callable[[], np.ndarray]] | None = None,
    base_dir: str | None = None,
    stage_bytes: int = DEFAULT_STAGE_BYTES,
) -> None:
    """Calibrate and quantize ``targets`` stage by stage (spec 14.4, 14.5).

    The model runs as a :class:`~monoquant_np.onnx.calibration.staged.StagedModel`
    (at most about ``stage_bytes`` of weights loaded at a time). In each stage,
    the activations first read there are captured, then
    ``quantize_stage(stage_targets, stats)`` gets the targets of the weights
    whose activations are all captured and the statistics
    (``stats[target.activation]``), quantizes (the caller keeps the results)
    and returns, per weight name, a function computing the float weight the
    quantized model computes with, in the weight's *stored* orientation (called
    only when sequential, so no float copy is made otherwise). With ``sequential`` each stage
    is split further into :func:`layer_stages`, and the returned weights
    replace the float ones for what follows (later layers of the stage, and
    the values handed to the next stages), so later statistics are those of
    the quantized model; without it every stage runs once, on the float
    weights. ``feeds`` must be re-iterable (a mapping or a list). ``fixed``
    maps other initializers (e.g. an embedding table already quantized
    without calibration) to a function returning the float values the
    quantized model computes with; they replace the originals in every stage
    reading them, also when not sequential. ``base_dir``: the folder of the
    model's external data files, when its tensors stay there.
    """
    staged = StagedModel(model, stage_bytes=stage_bytes, base_dir=base_dir, threads=threads)
    plan = _plan(staged, targets)
    batches = model_batches(model, feeds, batch_size)
    mask_name = mask_input_name(mask_input, model_input_names(model))
    masks = [batch_mask(b, mask_name) for b in batches]
    ta = {t.activation for t in targets if t.trans_act}
    fixed = dict(fixed or {})
    stats: dict[str, ActivationStats] = {}
    overrides: dict[str, np.ndarray] = {}
    n = len(staged.stages)
    for si, stage in enumerate(staged.stages):
        overrides.update({w: np.asarray(fixed[w]()) for w in stage.weights if w in fixed and w not in overrides})
        acts = plan.acts_at(si)
        if progress:
            progress(f"calibrate stage {si + 1}/{n}: {len(acts)} activation(s)")
        subs = layer_stages(model, [t for t in targets if t.activation in acts]) if sequential else [targets]
        for sub in subs:
            here = [a for a in acts if a in {t.activation for t in sub}] if sequential else acts
            got = staged.run(si, batches, here, overrides) if sequential else staged.step(si, batches, here, overrides)
            for vals, mask in zip(got, masks, strict=True):
                for a in here:
                    add_rows(stats, a, vals[a], mask, a in ta)
            del got
            _quantize_ready(plan, si, stats, quantize_stage, overrides if sequential else None)
        if sequential:
            staged.step(si, batches, (), overrides)
        later = {w for s in staged.stages[si + 1:] for w in s.weights}
        for w in [w for w in overrides if w not in later]:
            del overrides[w]


def _quantize_ready(plan: _Plan, si: int, stats: dict[str, ActivationStats],
                    quantize_stage: Callable[[list[CalibrationTarget], dict[str, ActivationStats]],
                                             Mapping[str, Callable[[], np.ndarray]]],
                    overrides: dict[str, np.ndarray] | None) -> None:
    """Quantize the weights of stage ``si`` whose activations are all in ``stats``; drop statistics no
    longer needed; with ``overrides``, add the returned weights to them."""
    ready = {w for w in plan.weights_at(si)
             if all(t.activation in stats for t in plan.targets if t.weight == w)}
    if not ready:
        return
    w_hats = quantize_stage([t for t in plan.targets if t.weight in ready], stats)
    if overrides is not None:
        overrides.update({k: np.asarray(v()) for k, v in w_hats.items()})
    plan.weight_stage = {w: s for w, s in plan.weight_stage.items() if w not in ready}
    plan.targets = [t for t in plan.targets if t.weight not in ready]
    still = {t.activation for t in plan.targets}
    for a in [a for a in stats if a not in still]:
        del stats[a]
