"""The ``mse``, ``gptq`` and ``awq`` algorithms of ``quantize_model`` (spec sections 14.4 and 13.3).

Adapters between :mod:`monoquant_np.algorithms` (NumPy, ``(K, N)`` weights)
and the model quantizer's extension point (:class:`~monoquant_np.onnx.quantizer.algorithm.Algorithm`);
:mod:`monoquant_np.onnx.quantizer.registry` lists them by name:

* ``mse``: per weight, :func:`~monoquant_np.algorithms.quantize_mse` along the
  weight's group axis (MatMul/Gemm and Gather tables alike); calibration inputs
  are optional and only add the output errors to the report.
* ``gptq`` / ``awq``: ``prepare`` runs the calibration of
  :mod:`monoquant_np.onnx.calibration.stages` on the opset-21 working model and
  quantizes every MatMul/Gemm weight of the main graph from its activations'
  statistics (stage by stage when ``sequential``); ``quantize_weight`` then
  returns the stored result. Weights without statistics (Gather tables,
  subgraph weights, weights also read by other ops) get ``mse``.
* AWQ's activation multiplier ``m`` (one per activation tensor, shared by every
  MatMul reading it: query, key and value are searched jointly) is folded into
  the producing ``LayerNormalization`` (``gamma *= m``, ``beta *= m``) when the
  MatMuls are its only readers, and otherwise becomes an explicit ``Mul(x, m)``
  inserted in the working graph in front of them (:mod:`.awq_multipliers`); each
  weight is quantized as ``diag(1 / m) W``.

Each layer's report row carries, in ``extra``, the calibration output error
``||X W - X W'|| / ||X W||`` of the algorithm and of round-to-nearest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

import numpy as np
import onnx

from ...algorithms import awq_from_stats, gptq_from_hessian, quantize_mse
from ...algorithms.gptq import output_error
from ...dequantize import dequantize
from ...formats import transpose
from ...quantize import quantize
from ...requantize import double_quantize
from ...tensor import QuantizedTensor
from ..options import ALGORITHMS
from ..protobuf import attr, subgraph_inputs
from ..quantizer.algorithm import Algorithm, QuantOptions, WeightContext
from ..quantizer.sites import WeightSite
from ..tensors import tensor_array
from .awq_multipliers import insert_multipliers
from .capture import ActivationStats, collect_stats
from .stages import CalibrationTarget, calibrate_sequential

__all__ = ["mse_algorithm", "gptq_algorithm", "awq_algorithm", "transpose_qt"]


#: The same quantized 2-D weight, transposed (one definition: ``monoquant_np.formats.transpose``).
transpose_qt = transpose


def _check_scheme(ctx_or_opts: Any, name: str) -> None:
    scheme = ctx_or_opts.scheme
    if scheme not in ("int4", "uint4"):
        raise ValueError(f"algorithm {name!r} supports scheme int4 or uint4, got {scheme!r}")


def _mse_tensor(w: np.ndarray, axis: int, o: Any) -> QuantizedTensor:
    _check_scheme(o, "mse")
    qt = quantize_mse(w, group_size=o.group_size, axis=axis, symmetric=o.symmetric,
                      scale_dtype=o.scale_dtype, negative_scales=not o.double_quant)
    if o.double_quant and qt.bits == 4:
        qt = double_quantize(qt, w=w)
    return qt


def _mse(ctx: WeightContext) -> QuantizedTensor:
    return _mse_tensor(ctx.w, ctx.axis, ctx.options)


def _mse_prepare(model: onnx.ModelProto, sites: list, feeds: Any, opts: Any) -> dict[str, Any]:
    """With calibration inputs (optional for ``mse``): ``X^T X`` per MatMul/Gemm weight, for the report only."""
    _check_scheme(opts, "mse")
    layers, targets = _layers(model, sites, opts.base_dir)
    if not targets:
        return {}
    stats = collect_stats(model, feeds, [t.activation for t in targets],
                          trans_act=[t.activation for t in targets if t.trans_act], base_dir=opts.base_dir)
    return {ly.name: {"h": _merged(stats, ly.acts).xtx} for ly in layers}


def _mse_reported(ctx: WeightContext) -> QuantizedTensor | tuple[QuantizedTensor, dict[str, Any]]:
    """:func:`_mse`; with calibration statistics also the output errors of it and of round-to-nearest."""
    qt = _mse(ctx)
    st = ctx.stats
    if not st or "h" not in st:
        return qt
    o = ctx.options
    w_hat = dequantize(qt)
    w, w_hat = (ctx.w.T, w_hat.T) if ctx.axis == 1 else (ctx.w, w_hat)  # (K, N): ctx.w is (N, K) when axis 1
    rtn_hat = dequantize(quantize(w, group_size=o.group_size, symmetric=o.symmetric, scale_dtype=o.scale_dtype))
    return qt, _row_info(w, w_hat, st["h"], rtn_hat)


def mse_algorithm() -> Algorithm:
    """``algorithm="mse"``: calibration-free MSE scales (spec 14.1).

    Calibration inputs are optional: when given, they change nothing in the
    model and add each MatMul/Gemm weight's output error, and round-to-nearest's,
    to the report.
    """
    return Algorithm("mse", _as_quantizer(_mse_reported), needs_calibration=ALGORITHMS["mse"], prepare=_mse_prepare)


@dataclasses.dataclass
class _Layer:
    """A weight of the main graph read only by MatMul/Gemm, in ``(K, N)`` orientation."""

    name: str
    w: np.ndarray  # float32 (K, N)
    stored_t: bool  # the stored tensor is (N, K)
    acts: list[str]


def _layers(model: onnx.ModelProto, sites: list,
            base_dir: str | None = None) -> tuple[list[_Layer], list[CalibrationTarget]]:
    """The weights read only by main-graph MatMul/Gemm nodes, and one target per reading MatMul/Gemm
    (weights in external data files are read from ``base_dir``).

    A ``"transpose_matmul"`` consumer is the ``Transpose``; its activations are
    input A of the MatMuls that read the Transpose's output.
    """
    layers, targets = [], []
    sub_reads = None
    for s in sites:
        if s.graph is not model.graph or any(c.graph is not model.graph for c in s.consumers):
            continue  # subgraph weights: no statistics
        if not s.consumers or any(c.role not in ("matmul", "gemm", "transpose_matmul") for c in s.consumers):
            continue
        readers: list[tuple[onnx.NodeProto, bool]] = []  # (MatMul/Gemm node, transA)
        for c in s.consumers:
            if c.role == "transpose_matmul":
                if sub_reads is None:
                    sub_reads = subgraph_inputs(model.graph)
                t_out = c.node.output[0]
                if t_out in sub_reads:
                    readers = []
                    break  # a subgraph MatMul reads the Transpose too: no statistics for it
                readers += [(n, False) for n in model.graph.node if n.op_type == "MatMul" and n.input[1:2] == [t_out]]
            else:
                ta = c.role == "gemm" and bool(attr(c.node, "transA", 0))
                readers.append((c.node, ta))
        if not readers:
            continue
        stored_t = bool(s.transpose or s.axis == 1)
        w = np.asarray(tensor_array(s.tensor, base_dir), dtype=np.float32)
        w = np.ascontiguousarray(w.T) if stored_t else w  # (K, N)
        acts = []
        for node, ta in readers:
            targets.append(CalibrationTarget(s.name, node.input[0], stored_t, ta))
            acts.append(node.input[0])
        layers.append(_Layer(s.name, w, stored_t, acts))
    return layers, targets


def _merged(stats: dict[str, ActivationStats], acts: list[str]) -> ActivationStats:
    sts = [stats[a] for a in dict.fromkeys(acts) if a in stats]
    st = sts[0]
    for other in sts[1:]:
        st = st.merged(other)
    return st


def _row_info(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray, rtn_hat: np.ndarray) -> dict[str, float]:
    ref = float(np.sum((h @ w.astype(np.float64)) * w))
    den = np.sqrt(ref) if ref > 0 else 1.0
    return {
        "out_rel_err": float(np.sqrt(max(output_error(w, w_hat, h), 0.0)) / den),
        "out_rel_err_rtn": float(np.sqrt(max(output_error(w, rtn_hat, h), 0.0)) / den),
    }


@dataclasses.dataclass
class _Run:
    """The state of one ``prepare`` call: the layers, and what their quantization produced."""

    by_name: dict[str, _Layer]
    opts: QuantOptions
    trans_act: set[str]  # weights read through Gemm transA=1
    out: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> {"qt", "w_hat", "info"}
    muls: dict[str, tuple[np.ndarray, set[str]]] = dataclasses.field(default_factory=dict)  # AWQ: x -> (m, weights)


@dataclasses.dataclass(frozen=True)
class _Calibrated:
    """A calibrated algorithm: ``prepare`` quantizes every layer from its activations' statistics.

    Subclasses say how one group of weights sharing their activations is
    quantized (:meth:`quantize_group`).
    """

    name: ClassVar[str]
    scale_search: str = "mse"
    sequential: bool = False
    batch_size: int = 16

    def prepare(self, model: onnx.ModelProto, sites: list[WeightSite], feeds: Any, opts: QuantOptions
                ) -> dict[str, Any]:
        """``Algorithm.prepare``: ``{weight name: {"qt", "w_hat", "info"}}`` for every weight of ``sites`` it
        quantizes; AWQ's multipliers are folded or inserted into ``model`` (the quantizer's working copy)."""
        _check_scheme(opts, self.name)
        if opts.double_quant:
            raise ValueError(f"algorithm {self.name!r} does not support double_quant: re-rounding the 4-bit codes "
                             "to 8-bit scales would undo its choices; use algorithm='mse' or 'rtn'")
        layers, targets = _layers(model, sites, opts.base_dir)
        run = _Run({ly.name: ly for ly in layers}, opts, {t.weight for t in targets if t.trans_act})
        fixed = _quantize_without_stats(model, sites, run)
        if targets:
            calibrate_sequential(model, feeds, targets, lambda stage, stats: self._quantize_stage(run, stage, stats),
                                 sequential=self.sequential, batch_size=self.batch_size, fixed=fixed,
                                 base_dir=opts.base_dir)
        insert_multipliers(model, run.muls, opts.base_dir)
        return run.out

    def _quantize_stage(self, run: _Run, stage: list[CalibrationTarget], stats: dict[str, ActivationStats]
                        ) -> dict[str, np.ndarray]:
        """Quantize the stage's weights, grouped by the activations they read; return their ``w_hat``s, stored."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for n in dict.fromkeys(t.weight for t in stage):
            groups.setdefault(tuple(dict.fromkeys(run.by_name[n].acts)), []).append(n)
        w_hats = {}
        o = run.opts
        for acts, members in groups.items():
            st = _merged(stats, list(acts))
            for n, qt, w_hat in self.quantize_group(run, acts, members, st):
                ly = run.by_name[n]
                rtn_hat = dequantize(quantize(ly.w, group_size=o.group_size, symmetric=o.symmetric,
                                              scale_dtype=o.scale_dtype))
                run.out[n] = {"qt": qt, "w_hat": w_hat, "info": _row_info(ly.w, w_hat, st.xtx, rtn_hat)}
                w_hats[n] = w_hat.T if ly.stored_t else w_hat
        return w_hats

    def quantize_group(self, run: _Run, acts: tuple[str, ...], members: list[str], st: ActivationStats
                       ) -> Iterator[tuple[str, QuantizedTensor, np.ndarray]]:
        """``(name, qt, w_hat)`` for each weight of ``members`` (``(K, N)``; all read ``acts``)."""
        raise NotImplementedError

    def quantize_weight(self, ctx: WeightContext) -> tuple[QuantizedTensor, dict[str, Any]]:
        """``Algorithm.quantize_weight``: the result ``prepare`` stored (in ``ctx``'s orientation), else ``mse``."""
        st = ctx.stats
        if not st:
            return _mse(ctx), {"note": "no calibration statistics: mse"}
        qt, w_hat = st["qt"], st["w_hat"]
        if ctx.axis == 1 and qt.axis == 0:
            qt, w_hat = transpose_qt(qt), w_hat.T
        return qt, {"w_hat": w_hat, **st["info"]}


@dataclasses.dataclass(frozen=True)
class _GPTQ(_Calibrated):
    """GPTQ (spec 14.2) on each weight with its activations' ``X^T X``."""

    name: ClassVar[str] = "gptq"
    act_order: bool = True
    damp: float = 0.01

    def quantize_group(self, run, acts, members, st):
        o = run.opts
        for n in members:
            qt = gptq_from_hessian(run.by_name[n].w, st.xtx, group_size=o.group_size, symmetric=o.symmetric,
                                   damp=self.damp, act_order=self.act_order, scale_search=self.scale_search,
                                   scale_dtype=o.scale_dtype)
            yield n, qt, dequantize(qt)


@dataclasses.dataclass(frozen=True)
class _AWQ(_Calibrated):
    """AWQ (spec 14.3): one multiplier ``m`` per activation, searched jointly over the weights reading it."""

    name: ClassVar[str] = "awq"

    def quantize_group(self, run, acts, members, st):
        o = run.opts
        w_cat = np.concatenate([run.by_name[n].w for n in members], axis=1)  # (K, sum N)
        res = awq_from_stats(w_cat, st.mean_abs, st.xtx, group_size=o.group_size, symmetric=o.symmetric,
                             scale_search="absmax", scale_dtype=o.scale_dtype)
        m = res.act_scale
        if len(acts) == 1 and res.alpha > 0 and not run.trans_act & set(members):
            run.muls[acts[0]] = (m, set(members))
        elif res.alpha > 0:  # several activations share the weights, or Gemm transA: no Mul fits
            m = np.ones_like(m)
        for n in members:
            w_s = (run.by_name[n].w / m[:, None]).astype(np.float32)
            if self.scale_search == "mse":
                imp = (np.maximum(np.diag(st.xtx), 0) * m.astype(np.float64) ** 2).astype(np.float32)
                qt = quantize_mse(w_s, group_size=o.group_size, symmetric=o.symmetric, scale_dtype=o.scale_dtype,
                                  importance=imp)
            else:
                qt = quantize(w_s, group_size=o.group_size, symmetric=o.symmetric, scale_dtype=o.scale_dtype)
            yield n, qt, dequantize(qt) * m[:, None]


def _quantize_without_stats(model: onnx.ModelProto, sites: list[WeightSite], run: _Run) -> dict[str, np.ndarray]:
    """Quantize the main-graph initializers that get no statistics (Gather tables, ...) with ``mse`` first.

    The calibration then runs on their quantized values (returned, stored
    orientation), so the layers after them compensate.
    """
    fixed = {}
    for s in sites:
        if s.name in run.by_name or s.graph is not model.graph or s.const_node:
            continue
        w = np.asarray(tensor_array(s.tensor, run.opts.base_dir), dtype=np.float32)
        w = np.ascontiguousarray(w.T) if s.transpose else w
        qt = _mse_tensor(w, s.axis, run.opts)
        w_hat = dequantize(qt)
        run.out[s.name] = {"qt": qt, "w_hat": w_hat, "info": {}}
        fixed[s.name] = w_hat.T if s.transpose else w_hat
    return fixed


def _as_quantizer(f: Callable[[WeightContext], Any]) -> Callable[[WeightContext], QuantizedTensor]:
    """``f`` returns ``(qt, extra)``, which ``quantize_model`` accepts (spec 13.3); typed as its hook."""
    return cast(Callable[[WeightContext], QuantizedTensor], f)


def gptq_algorithm(*, act_order: bool = True, scale_search: str = "mse", sequential: bool = False,
                   damp: float = 0.01, batch_size: int = 16) -> Algorithm:
    """``algorithm="gptq"`` (spec 14.2) with calibration; the registered default is ``gptq_algorithm()``."""
    c = _GPTQ(scale_search=scale_search, sequential=sequential, batch_size=batch_size, act_order=act_order,
              damp=damp)
    return Algorithm("gptq", _as_quantizer(c.quantize_weight), needs_calibration=ALGORITHMS["gptq"],
                     prepare=c.prepare)


def awq_algorithm(*, scale_search: str = "mse", sequential: bool = False, batch_size: int = 16) -> Algorithm:
    """``algorithm="awq"`` (spec 14.3) with calibration; the registered default is ``awq_algorithm()``."""
    c = _AWQ(scale_search=scale_search, sequential=sequential, batch_size=batch_size)
    return Algorithm("awq", _as_quantizer(c.quantize_weight), needs_calibration=ALGORITHMS["awq"], prepare=c.prepare)
