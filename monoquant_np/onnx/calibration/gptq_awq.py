"""The ``gptq`` and ``awq`` algorithms' hooks for the model quantizer (spec sections 14.2-14.4 and 13.3).

:meth:`CalibratedAlgorithm.prepare` runs the calibration of
:mod:`monoquant_np.onnx.calibration.stages` on the opset-21 working model and
quantizes every MatMul/Gemm layer of the main graph
(:mod:`monoquant_np.onnx.calibration.layers`) from its activations' statistics,
stage by stage when ``sequential``; weights read by the same activations are
quantized together (:meth:`~CalibratedAlgorithm.quantize_group`: GPTQ one by
one with their ``X^T X``, AWQ with one multiplier ``m`` searched jointly).
Main-graph weights without statistics (Gather tables, ...) are quantized first
with ``mse`` and the calibration runs on their quantized values.
:meth:`CalibratedAlgorithm.quantize_weight` then returns the stored result;
weights ``prepare`` did not quantize (subgraph weights, ``Constant`` outputs) get ``mse``.

AWQ's multiplier ``m`` of an activation read by one group of weights goes into
the working graph (:func:`~monoquant_np.onnx.calibration.awq_multipliers.insert_multipliers`:
folded into a ``LayerNormalization`` or an explicit ``Mul``); each weight is
quantized as ``diag(1 / m) W``. Several activations sharing weights, or a
``Gemm`` with ``transA = 1``, leave ``m = 1``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import onnx

from ...algorithms import awq_from_stats, gptq_from_hessian, quantize_mse
from ...dequantize import dequantize
from ...formats import transpose
from ...quantize import quantize
from ...tensor import QuantizedTensor
from ..options import DEFAULT_STAGE_BYTES
from ..quantizer.algorithm import QuantOptions, WeightContext
from ..quantizer.sites import WeightSite
from ..tensors import tensor_array
from .awq_multipliers import insert_multipliers
from .capture import ActivationStats
from .layers import Layer, find_layers, merged_stats, output_errors
from .mse_adapter import check_linear_scheme, mse_tensor, mse_weight
from .stages import CalibrationTarget, calibrate_sequential

__all__ = ["CalibratedAlgorithm", "GPTQAdapter", "AWQAdapter", "effective_weight"]


@dataclasses.dataclass
class _Run:
    """The state of one ``prepare`` call: the layers, and what their quantization produced."""

    by_name: dict[str, Layer]
    opts: QuantOptions
    trans_act: set[str]  # weights read through Gemm transA=1
    out: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> {"qt", "m", "info"}
    muls: dict[str, tuple[np.ndarray, set[str]]] = dataclasses.field(default_factory=dict)  # AWQ: x -> (m, weights)


@dataclasses.dataclass(frozen=True)
class CalibratedAlgorithm:
    """A calibrated algorithm: ``prepare`` quantizes every layer from its activations' statistics.

    Subclasses say how one group of weights sharing their activations is
    quantized (:meth:`quantize_group`).
    """

    name: ClassVar[str]
    scale_search: str = "mse"
    sequential: bool = False
    batch_size: int = 16
    stage_bytes: int = DEFAULT_STAGE_BYTES

    def prepare(self, model: onnx.ModelProto, sites: list[WeightSite], feeds: Any, opts: QuantOptions
                ) -> dict[str, Any]:
        """``Algorithm.prepare``: ``{weight name: {"qt", "m", "info"}}`` for every weight of ``sites`` it
        quantizes (``m``: AWQ's multiplier or None; the weight the graph computes with is
        :func:`effective_weight`); AWQ's multipliers are folded or inserted into ``model`` (the quantizer's
        working copy). Only the results are kept: each float weight is read when its stage quantizes it."""
        check_linear_scheme(opts, self.name)
        if opts.double_quant:
            raise ValueError(f"algorithm {self.name!r} does not support double_quant: re-rounding the 4-bit codes "
                             "to 8-bit scales would undo its choices; use algorithm='mse' or 'rtn'")
        layers, targets = find_layers(model, sites, opts.base_dir)
        run = _Run({ly.name: ly for ly in layers}, opts, {t.weight for t in targets if t.trans_act})
        fixed = _quantize_without_stats(model, sites, run)
        if targets:
            calibrate_sequential(model, feeds, targets, lambda stage, stats: self._quantize_stage(run, stage, stats),
                                 sequential=self.sequential, batch_size=self.batch_size, fixed=fixed,
                                 base_dir=opts.base_dir, stage_bytes=self.stage_bytes)
        insert_multipliers(model, run.muls, opts.base_dir)
        return run.out

    def _quantize_stage(self, run: _Run, stage: list[CalibrationTarget], stats: dict[str, ActivationStats]
                        ) -> dict[str, Callable[[], np.ndarray]]:
        """Quantize the stage's weights, grouped by the activations they read; return, per weight, a function
        computing its ``w_hat`` in the stored orientation (called only by sequential calibration)."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for n in dict.fromkeys(t.weight for t in stage):
            groups.setdefault(tuple(dict.fromkeys(run.by_name[n].acts)), []).append(n)
        w_hats: dict[str, Callable[[], np.ndarray]] = {}
        for acts, members in groups.items():
            st = merged_stats(stats, list(acts))
            for n, qt, m, w in self.quantize_group(run, acts, members, st):
                ly = run.by_name[n]
                run.out[n] = {"qt": qt, "m": m, "info": output_errors(w, effective_weight(qt, m), st.xtx, run.opts)}
                del w
                w_hats[n] = functools.partial(_stored_weight, qt, m, ly.stored_t)
        return w_hats

    def quantize_group(self, run: _Run, acts: tuple[str, ...], members: list[str], st: ActivationStats
                       ) -> Iterator[tuple[str, QuantizedTensor, np.ndarray | None, np.ndarray]]:
        """``(name, qt, m, w)`` for each weight of ``members`` (all read ``acts``): its quantization, AWQ's
        multiplier ``m`` (K,) or None, and the float weight ``w`` ``(K, N)``."""
        raise NotImplementedError

    def quantize_weight(self, ctx: WeightContext) -> tuple[QuantizedTensor, dict[str, Any]]:
        """``Algorithm.quantize_weight``: the result ``prepare`` stored (in ``ctx``'s orientation), else ``mse``."""
        st = ctx.stats
        if not st:
            return mse_weight(ctx), {"note": "no calibration statistics: mse"}
        qt = st["qt"]
        w_hat = effective_weight(qt, st["m"])
        if ctx.axis == 1 and qt.axis == 0:
            qt, w_hat = transpose(qt), w_hat.T
        return qt, {"w_hat": w_hat, **st["info"]}


@dataclasses.dataclass(frozen=True)
class GPTQAdapter(CalibratedAlgorithm):
    """GPTQ (spec 14.2) on each weight with its activations' ``X^T X``."""

    name: ClassVar[str] = "gptq"
    act_order: bool = True
    damp: float = 0.01

    def quantize_group(self, run, acts, members, st):
        for n in members:
            o = run.opts.for_weight(n)
            w = run.by_name[n].load()
            qt = gptq_from_hessian(w, st.xtx, group_size=o.group_size, symmetric=o.symmetric,
                                   damp=self.damp, act_order=self.act_order, scale_search=self.scale_search,
                                   scale_dtype=o.scale_dtype)
            yield n, qt, None, w


@dataclasses.dataclass(frozen=True)
class AWQAdapter(CalibratedAlgorithm):
    """AWQ (spec 14.3): one multiplier ``m`` per activation, searched jointly over the weights reading it."""

    name: ClassVar[str] = "awq"

    def quantize_group(self, run, acts, members, st):
        o = run.opts
        ws = [run.by_name[n].load() for n in members]
        w_cat = np.concatenate(ws, axis=1)  # (K, sum N)
        res = awq_from_stats(w_cat, st.mean_abs, st.xtx, group_size=o.group_size, symmetric=o.symmetric,
                             scale_search="absmax", scale_dtype=o.scale_dtype)
        m = res.act_scale
        if len(acts) == 1 and res.alpha > 0 and not run.trans_act & set(members):
            run.muls[acts[0]] = (m, set(members))
        elif res.alpha > 0:  # several activations share the weights, or Gemm transA: no Mul fits
            m = np.ones_like(m)
        del w_cat
        for n, w in zip(members, ws, strict=True):
            w_s = (w / m[:, None]).astype(np.float32)
            if self.scale_search == "mse":
                imp = (np.maximum(np.diag(st.xtx), 0) * m.astype(np.float64) ** 2).astype(np.float32)
                qt = quantize_mse(w_s, group_size=o.group_size, symmetric=o.symmetric, scale_dtype=o.scale_dtype,
                                  importance=imp)
            else:
                qt = quantize(w_s, group_size=o.group_size, symmetric=o.symmetric, scale_dtype=o.scale_dtype)
            yield n, qt, m, w


def effective_weight(qt: QuantizedTensor, m: np.ndarray | None) -> np.ndarray:
    """The float weight the quantized graph computes with: ``dequantize(qt)``, times AWQ's ``m[:, None]``."""
    w_hat = dequantize(qt)
    return w_hat if m is None else w_hat * m[:, None]


def _quantize_without_stats(model: onnx.ModelProto, sites: list[WeightSite], run: _Run
                            ) -> dict[str, Callable[[], np.ndarray]]:
    """Quantize the main-graph initializers that get no statistics (Gather tables, ...) with ``mse`` first.

    The calibration then runs on their quantized values (for each, a function
    returning them in the stored orientation, called by the stages reading
    it), so the layers after them compensate.
    """
    fixed: dict[str, Callable[[], np.ndarray]] = {}
    for s in sites:
        if s.name in run.by_name or s.graph is not model.graph or s.const_node:
            continue
        w = np.asarray(tensor_array(s.tensor, run.opts.base_dir), dtype=np.float32)
        w = np.ascontiguousarray(w.T) if s.transpose else w
        qt = mse_tensor(w, s.axis, run.opts.for_weight(s.name))
        del w
        run.out[s.name] = {"qt": qt, "m": None, "info": {}}
        fixed[s.name] = functools.partial(_stored_weight, qt, None, s.transpose)
    return fixed


def _stored_weight(qt: QuantizedTensor, m: np.ndarray | None, transpose: bool) -> np.ndarray:
    """:func:`effective_weight`, transposed back to the stored ``(N, K)`` when ``transpose``."""
    w_hat = effective_weight(qt, m)
    return w_hat.T if transpose else w_hat
