"""Calibration through onnxruntime: the statistics GPTQ and AWQ need (spec section 14.4).

The float model runs in onnxruntime on the user's calibration feeds; the
activations that feed each quantized ``MatMul``/``Gemm`` (input A) are made
extra graph outputs of a *copy* of the model (the user's model is never
modified). Per activation tensor ``x`` with rows ``x_m`` (all leading axes
flattened, ``(M, K)``), summed batch by batch so memory stays bounded by one
batch of activations plus ``K x K`` per tensor::

    xtx     = sum_m x_m^T x_m      float64 (K, K)   (GPTQ's H, AWQ's error metric)
    abs_sum = sum_m |x_m|          float64 (K,)     (AWQ's a = abs_sum / rows)
    rows    = M

Rows can be masked: with ``mask_input`` (e.g. ``"attention_mask"``), an
activation whose leading shape equals that input's shape keeps only the rows
where the mask is non-zero, so padding tokens do not count.

Sequential calibration (:func:`calibrate_sequential`) quantizes the layers in
stages: a stage is every remaining layer whose activation does not depend on
a remaining layer; after each stage the quantized layers' float weights are
replaced, in the working copy, by what the quantized model computes, so the
next stage's statistics are those of the inputs the quantized model will
really see (as in GPTQ's reference, which runs layer by layer).

Feeds: a ``FEEDS.npz`` (or a mapping) of arrays named after the model inputs,
batch along axis 0, all with the same batch length; or an iterable of feed
dicts, each run as it is (useful for unpadded sentences).

# Note: activations inside ``If``/``Loop``/``Scan`` bodies cannot be graph
# outputs; weights read only there are calibrated with ``H = I`` (no data).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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


@dataclasses.dataclass
class ActivationStats:
    """Accumulated statistics of one activation tensor (spec 14.4)."""

    name: str
    xtx: np.ndarray  # float64 (K, K)
    abs_sum: np.ndarray  # float64 (K,)
    rows: int = 0

    @property
    def k(self) -> int:
        return int(self.abs_sum.shape[0])

    @property
    def mean_abs(self) -> np.ndarray:
        """``mean_m |x_mk|`` (zeros when no rows were seen)."""
        return self.abs_sum / max(self.rows, 1)

    def add(self, x: np.ndarray) -> None:
        """Accumulate rows ``x`` ``(M, K)``: float32 products per batch, float64 sums."""
        x32 = np.asarray(x, dtype=np.float32)
        self.xtx += (x32.T @ x32).astype(np.float64)
        self.abs_sum += np.abs(x32).sum(axis=0, dtype=np.float64)
        self.rows += int(x32.shape[0])

    def merged(self, other: ActivationStats) -> ActivationStats:
        """Stats of the rows of both (a weight read by several MatMuls)."""
        return ActivationStats(self.name, self.xtx + other.xtx, self.abs_sum + other.abs_sum,
                               self.rows + other.rows)


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


def load_feeds(path: str | os.PathLike, model: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """Read ``FEEDS.npz`` (:func:`monoquant_np.onnx.weights.load_feeds`) and :func:`check_feeds` it.

    Raises ``OSError`` for a missing file, ``ValueError`` for a file that is
    not an ``.npz``, for names that are not model inputs, missing inputs or
    unequal batch lengths.
    """
    from .weights import load_feeds as _read

    feeds = _read(path, "calibration file")
    check_feeds(feeds, model, what=f"calibration file {os.fspath(path)!r}")
    return feeds


def check_feeds(feeds: Mapping[str, np.ndarray], model: onnx.ModelProto | None, what: str = "feeds") -> int:
    """Validate batched feeds; return the batch length."""
    if not feeds:
        raise ValueError(f"{what} holds no arrays; expected one per model input, batch on axis 0")
    if model is not None:
        inits = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in inits]
        extra = sorted(set(feeds) - set(names))
        missing = [n for n in names if n not in feeds]
        if extra or missing:
            raise ValueError(f"{what} must hold arrays named after the model inputs {names}; "
                             f"unknown {extra}, missing {missing}")
    lengths = {k: (int(np.shape(v)[0]) if np.ndim(v) else -1) for k, v in feeds.items()}
    if -1 in lengths.values() or len(set(lengths.values())) != 1:
        raise ValueError(f"{what}: every array needs the same batch length on axis 0, got {lengths}")
    return next(iter(lengths.values()))


def iter_feeds(feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
               batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` samples from batched feeds, or the given feed dicts one by one."""
    if isinstance(feeds, Mapping):
        n = check_feeds(feeds, None)
        for i in range(0, n, batch_size):
            yield {k: np.asarray(v[i : i + batch_size]) for k, v in feeds.items()}
    else:
        for f in feeds:
            yield dict(f)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a convenience here; FLOAT is the fallback
        inferred = model
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}


class CaptureSession:
    """One onnxruntime session on a copy of ``model`` that returns the activations ``names``.

    The initializers named in ``overridable`` become graph inputs too (keeping
    their values as defaults), so that :meth:`run` can feed replacements:
    sequential calibration swaps in the quantized layers without building a
    new session per stage.
    """

    def __init__(self, model: onnx.ModelProto, names: Iterable[str], *, overridable: Iterable[str] = (),
                 threads: int = 1) -> None:
        import onnxruntime as ort

        m = copy.deepcopy(model)  # the user's model is never modified
        types = _elem_types(m)
        present = {o.name for o in m.graph.output}
        self.names = list(dict.fromkeys(names))
        for name in self.names:
            if name not in present:
                m.graph.output.append(helper.make_tensor_value_info(name, types.get(name) or TensorProto.FLOAT, None))
        inits = {t.name: t for t in m.graph.initializer}
        declared = {i.name for i in m.graph.input}
        self.overridable = [n for n in dict.fromkeys(overridable) if n in inits]
        for n in self.overridable:
            if n not in declared:
                t = inits[n]
                m.graph.input.append(helper.make_tensor_value_info(n, t.data_type, list(t.dims)))
        if m.ir_version > 10:
            m.ir_version = 10  # onnxruntime loads IR <= 10 for these opsets
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.model_inputs = {i.name for i in self.session.get_inputs()} - set(self.overridable)
        self.dtypes = {n: numpy_helper.to_array(inits[n]).dtype for n in self.overridable}

    def run(self, feeds: Mapping[str, np.ndarray], overrides: Mapping[str, np.ndarray] | None = None,
            names: list[str] | None = None) -> list[np.ndarray]:
        run_feeds = {k: v for k, v in feeds.items() if k in self.model_inputs}
        for k, v in (overrides or {}).items():
            run_feeds[k] = np.asarray(v, dtype=self.dtypes[k])
        return self.session.run(names or self.names, run_feeds)


def _rows(x: np.ndarray, mask: np.ndarray | None, trans: bool) -> np.ndarray:
    """The ``(M, K)`` rows of one captured activation (masked rows dropped)."""
    x = np.asarray(x)
    if trans:
        x = x.T  # Gemm transA=1: A is (K, M)
    if mask is not None and x.ndim >= 2 and x.shape[:-1] == mask.shape:
        return x[mask != 0]  # (M_kept, K)
    return x.reshape(-1, x.shape[-1])  # (M, K)


def _mask_name(mask_input: str | None, model: onnx.ModelProto) -> str | None:
    if mask_input != "auto":
        return mask_input
    names = {i.name for i in model.graph.input}
    return "attention_mask" if "attention_mask" in names else None


def collect_stats(
    model: onnx.ModelProto | CaptureSession,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    activations: Iterable[str],
    *,
    trans_act: Iterable[str] = (),
    batch_size: int = 16,
    mask_input: str | None = "auto",
    overrides: Mapping[str, np.ndarray] | None = None,
    threads: int = 1,
) -> dict[str, ActivationStats]:
    """Run the model on ``feeds`` and accumulate :class:`ActivationStats` per activation name.

    ``mask_input``: the name of a model input whose zeros mark rows to drop
    (padding), ``None`` for none, or ``"auto"``: ``attention_mask`` when the
    model has such an input.
    """
    names = list(dict.fromkeys(activations))
    ta = set(trans_act)
    stats: dict[str, ActivationStats] = {}
    if not names:
        return stats
    if isinstance(model, CaptureSession):
        sess, mask_name = model, (None if mask_input == "auto" else mask_input)
        if mask_input == "auto" and "attention_mask" in sess.model_inputs:
            mask_name = "attention_mask"
    else:
        sess, mask_name = CaptureSession(model, names, threads=threads), _mask_name(mask_input, model)
    for batch in iter_feeds(feeds, batch_size):
        outs = sess.run(batch, overrides, names)
        mask = np.asarray(batch[mask_name]) if mask_name and mask_name in batch else None
        for name, x in zip(names, outs, strict=True):
            rows = _rows(x, mask, name in ta)
            k = rows.shape[1]
            st = stats.get(name)
            if st is None:
                st = stats[name] = ActivationStats(name, np.zeros((k, k)), np.zeros(k))
            st.add(rows)
    return stats


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
    """
    stages = layer_stages(model, targets) if sequential else [list(targets)]
    consts = {t.name for t in model.graph.initializer}
    fixed = {k: v for k, v in (fixed or {}).items() if k in consts}
    over = [t.weight for t in targets if t.weight in consts] if sequential else []
    sess = CaptureSession(model, [t.activation for t in targets], overridable=over + list(fixed), threads=threads)
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
# monoquant_np.onnx.model (its ALGORITHM_MODULE); the adapters live in .calibrated.
from . import calibrated as _calibrated  # noqa: E402,F401
