"""The ``mse``, ``gptq`` and ``awq`` algorithms of ``quantize_model`` (spec sections 14.4 and 13.3).

Adapters between :mod:`monoquant_np.algorithms` (NumPy, ``(K, N)`` weights)
and the model quantizer's extension point (:class:`~monoquant_np.onnx.quantizer.pipeline.Algorithm`):

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
  inserted in the working graph in front of them (:mod:`.awq_graph`); each
  weight is quantized as ``diag(1 / m) W``.

Each layer's report row carries, in ``extra``, the calibration output error
``||X W - X W'|| / ||X W||`` of the algorithm and of round-to-nearest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import onnx

from ...algorithms import awq_from_stats, gptq_from_hessian, quantize_mse
from ...algorithms.gptq import output_error
from ...dequantize import dequantize
from ...formats import transpose
from ...quantize import quantize
from ...tensor import QuantizedTensor
from ..quantizer.pipeline import Algorithm, WeightContext, register_algorithm
from ..tensors import tensor_array
from .awq_multipliers import insert_multipliers
from .stages import ActivationStats, CalibrationTarget, calibrate_sequential, collect_stats

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
        from ...requantize import double_quantize

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
    return Algorithm("mse", _as_quantizer(_mse_reported), prepare=_mse_prepare)


@dataclasses.dataclass
class _Layer:
    """A weight of the main graph read only by MatMul/Gemm, in ``(K, N)`` orientation."""

    name: str
    w: np.ndarray  # float32 (K, N)
    stored_t: bool  # the stored tensor is (N, K)
    acts: list[str]


def _subgraph_inputs(graph: onnx.GraphProto) -> set[str]:
    """Every value name read by a node inside a subgraph (If/Loop/Scan bodies) of ``graph``."""
    names: set[str] = set()
    for n in graph.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names.update(i for m in sub.node for i in m.input)
                names |= _subgraph_inputs(sub)
    return names


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
                    sub_reads = _subgraph_inputs(model.graph)
                t_out = c.node.output[0]
                if t_out in sub_reads:
                    readers = []
                    break  # a subgraph MatMul reads the Transpose too: no statistics for it
                readers += [(n, False) for n in model.graph.node if n.op_type == "MatMul" and n.input[1:2] == [t_out]]
            else:
                ta = c.role == "gemm" and any(a.name == "transA" and a.i for a in c.node.attribute)
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


@dataclasses.dataclass(frozen=True)
class _Calibrated:
    kind: str  # "gptq" or "awq"
    act_order: bool = True
    scale_search: str = "mse"
    sequential: bool = False
    damp: float = 0.01
    batch_size: int = 16

    def prepare(self, model, sites, feeds, opts) -> dict[str, Any]:
        _check_scheme(opts, self.kind)
        if opts.double_quant:
            raise ValueError(f"algorithm {self.kind!r} does not support double_quant: re-rounding the 4-bit codes "
                             "to 8-bit scales would undo its choices; use algorithm='mse' or 'rtn'")
        layers, targets = _layers(model, sites, opts.base_dir)
        by_name = {ly.name: ly for ly in layers}
        out: dict[str, Any] = {}
        muls: dict[str, tuple[np.ndarray, set[str]]] = {}
        trans_act = {t.weight for t in targets if t.trans_act}

        def quantize_stage(stage: list[CalibrationTarget], stats: dict[str, ActivationStats]):
            w_hats = {}
            names = list(dict.fromkeys(t.weight for t in stage))
            groups: dict[tuple[str, ...], list[str]] = {}
            for n in names:
                groups.setdefault(tuple(dict.fromkeys(by_name[n].acts)), []).append(n)
            for acts, members in groups.items():
                st = _merged(stats, list(acts))
                h = st.xtx
                if self.kind == "awq":
                    w_cat = np.concatenate([by_name[n].w for n in members], axis=1)  # (K, sum N)
                    res = awq_from_stats(w_cat, st.mean_abs, h, group_size=opts.group_size,
                                         symmetric=opts.symmetric, scale_search="absmax",
                                         scale_dtype=opts.scale_dtype)
                    m = res.act_scale
                    if len(acts) == 1 and res.alpha > 0 and not trans_act & set(members):
                        muls[acts[0]] = (m, set(members))
                    elif res.alpha > 0:  # several activations share the weights, or Gemm transA: no Mul fits
                        m = np.ones_like(m)
                for n in members:
                    ly = by_name[n]
                    rtn_hat = dequantize(quantize(ly.w, group_size=opts.group_size, symmetric=opts.symmetric,
                                                  scale_dtype=opts.scale_dtype))
                    if self.kind == "gptq":
                        qt = gptq_from_hessian(ly.w, h, group_size=opts.group_size, symmetric=opts.symmetric,
                                               damp=self.damp, act_order=self.act_order,
                                               scale_search=self.scale_search, scale_dtype=opts.scale_dtype)
                        w_hat = dequantize(qt)
                    else:
                        w_s = (ly.w / m[:, None]).astype(np.float32)
                        if self.scale_search == "mse":
                            imp = (np.maximum(np.diag(h), 0) * m.astype(np.float64) ** 2).astype(np.float32)
                            qt = quantize_mse(w_s, group_size=opts.group_size, symmetric=opts.symmetric,
                                              scale_dtype=opts.scale_dtype, importance=imp)
                        else:
                            qt = quantize(w_s, group_size=opts.group_size, symmetric=opts.symmetric,
                                          scale_dtype=opts.scale_dtype)
                        w_hat = dequantize(qt) * m[:, None]
                    info = _row_info(ly.w, w_hat, h, rtn_hat)
                    out[n] = {"qt": qt, "w_hat": w_hat, "info": info}
                    w_hats[n] = w_hat.T if ly.stored_t else w_hat
            return w_hats

        # Weights without statistics (Gather tables, ...) are quantized first, with mse, and the
        # calibration runs on their quantized values, so the layers after them compensate.
        fixed = {}
        for s in sites:
            if s.name in by_name or s.graph is not model.graph or s.const_node:
                continue
            w = np.asarray(tensor_array(s.tensor, opts.base_dir), dtype=np.float32)
            w = np.ascontiguousarray(w.T) if s.transpose else w
            qt = _mse_tensor(w, s.axis, opts)
            w_hat = dequantize(qt)
            out[s.name] = {"qt": qt, "w_hat": w_hat, "info": {}}
            fixed[s.name] = w_hat.T if s.transpose else w_hat
        if targets:
            calibrate_sequential(model, feeds, targets, quantize_stage, sequential=self.sequential,
                                 batch_size=self.batch_size, fixed=fixed, base_dir=opts.base_dir)
        insert_multipliers(model, muls, opts.base_dir)
        return out

    def quantize_weight(self, ctx: WeightContext) -> tuple[QuantizedTensor, dict[str, Any]]:
        st = ctx.stats
        if not st:
            return _mse(ctx), {"note": "no calibration statistics: mse"}
        qt, w_hat = st["qt"], st["w_hat"]
        if ctx.axis == 1 and qt.axis == 0:
            qt, w_hat = transpose_qt(qt), w_hat.T
        return qt, {"w_hat": w_hat, **st["info"]}


def _as_quantizer(f: Callable[[WeightContext], Any]) -> Callable[[WeightContext], QuantizedTensor]:
    """``f`` returns ``(qt, extra)``, which ``quantize_model`` accepts (spec 13.3); typed as its hook."""
    return cast(Callable[[WeightContext], QuantizedTensor], f)


def gptq_algorithm(*, act_order: bool = True, scale_search: str = "mse", sequential: bool = False,
                   damp: float = 0.01, batch_size: int = 16) -> Algorithm:
    """``algorithm="gptq"`` (spec 14.2) with calibration; the registered default is ``gptq_algorithm()``."""
    c = _Calibrated("gptq", act_order=act_order, scale_search=scale_search, sequential=sequential, damp=damp,
                    batch_size=batch_size)
    return Algorithm("gptq", _as_quantizer(c.quantize_weight), needs_calibration=True, prepare=c.prepare)


def awq_algorithm(*, scale_search: str = "mse", sequential: bool = False, batch_size: int = 16) -> Algorithm:
    """``algorithm="awq"`` (spec 14.3) with calibration; the registered default is ``awq_algorithm()``."""
    c = _Calibrated("awq", scale_search=scale_search, sequential=sequential, batch_size=batch_size)
    return Algorithm("awq", _as_quantizer(c.quantize_weight), needs_calibration=True, prepare=c.prepare)


register_algorithm(mse_algorithm())
register_algorithm(gptq_algorithm())
register_algorithm(awq_algorithm())
