"""How much each candidate format of each weight costs and hurts: the sensitivity table (spec 21.2).

For a weight ``W`` and a candidate's round-to-nearest ``W'`` (``D = W - W'``,
float64), the predicted error is the relative squared output error of the
layer on the calibration activations ``X`` (``H = X^T X``, spec 14.4)::

    err = tr(D^T H D) / tr(W^T H W)        (W, D as (K, N); H (K, K))

For a weight without activation statistics (a ``Gather`` table, a weight
read by other operators, or no calibration inputs) ``H = I``:
``err = ||D||_F^2 / ||W||_F^2``. A float candidate has ``err = 0``. The
model's predicted error is the sum over weights (the allocation, spec 21.3,
adds these). A candidate whose group is longer than the weight's group axis
does not apply (``err = inf``): spec 7 would store it as the ``int8``
candidate. The table is computed once per run: the budget search never
runs the model again.

    >>> w = np.array([[1.0], [2.0]]); d = np.array([[0.1], [0.0]])
    >>> round(proxy_error(w, w - d, np.diag([1.0, 0.0]), 0), 6)
    0.01
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...dequantize import dequantize
from ..calibration.capture import collect_stats
from ..calibration.layers import find_layers, merged_stats
from ..tensors import tensor_array
from .candidates import Candidate, candidate_bytes, quantize_candidate

__all__ = ["SensitivityTable", "proxy_error", "sensitivity_table", "layer_hessians"]


def proxy_error(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray | None, axis: int) -> float:
    """``tr(D^T H D) / tr(W^T H W)`` (module docstring); ``axis`` is ``W``'s K axis; ``h`` None means I."""
    w = np.asarray(w, dtype=np.float64)
    d = w - np.asarray(w_hat, dtype=np.float64)
    if h is None:
        num, den = float(np.vdot(d, d)), float(np.vdot(w, w))
    elif axis == 0:  # (K, N)
        num, den = float(np.sum((h @ d) * d)), float(np.sum((h @ w) * w))
    else:  # (N, K)
        num, den = float(np.sum((d @ h) * d)), float(np.sum((w @ h) * w))
    return max(num, 0.0) / den if den > 0 else 0.0


@dataclasses.dataclass
class SensitivityTable:
    """``cost[i][j]`` bytes and ``err[i][j]`` predicted error of weight ``names[i]`` in ``candidates[j]``."""

    names: list[str]
    sizes: list[int]
    candidates: list[Candidate]
    cost: np.ndarray  # int64 (n, m)
    err: np.ndarray  # float64 (n, m)
    calibrated: list[bool]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for the report's JSON."""
        return {"candidates": [c.label for c in self.candidates],
                "weights": [{"name": n, "size": s, "calibrated": c, "bytes": [int(x) for x in self.cost[i]],
                             "error": [float(x) for x in self.err[i]]}
                            for i, (n, s, c) in enumerate(zip(self.names, self.sizes, self.calibrated, strict=True))]}


def layer_hessians(model: Any, sites: Sequence[Any], feeds: Mapping[str, np.ndarray] | None,
                   base_dir: str | None) -> dict[str, np.ndarray]:
    """``{weight name: X^T X}`` of every MatMul/Gemm layer of ``sites`` (spec 14.4), empty without feeds."""
    if feeds is None:
        return {}
    layers, targets = find_layers(model, list(sites), base_dir)
    if not targets:
        return {}
    stats = collect_stats(model, feeds, [t.activation for t in targets],
                          trans_act=[t.activation for t in targets if t.trans_act], base_dir=base_dir)
    return {ly.name: merged_stats(stats, ly.acts).xtx for ly in layers}


def sensitivity_table(sites: Sequence[Any], candidates: Sequence[Candidate], hessians: Mapping[str, np.ndarray],
                      *, base_dir: str | None = None, scale_dtype: str = "float32") -> SensitivityTable:
    """The table of every site (eligible :class:`~monoquant_np.onnx.quantizer.sites.WeightSite`) by candidate."""
    n, m = len(sites), len(candidates)
    cost = np.zeros((n, m), dtype=np.int64)
    err = np.zeros((n, m), dtype=np.float64)
    for i, s in enumerate(sites):
        w_store = tensor_array(s.tensor, base_dir)
        itemsize = w_store.dtype.itemsize
        w = np.asarray(w_store, dtype=np.float32)
        w = np.ascontiguousarray(w.T) if s.transpose else w
        h = hessians.get(s.name)
        for j, c in enumerate(candidates):
            if c.group_size > w.shape[s.axis]:  # spec 7 would store it as int8: the int8 candidate already is
                err[i, j] = np.inf
                continue
            qt = quantize_candidate(w, s.axis, c, scale_dtype)
            cost[i, j] = candidate_bytes(qt, w.size, itemsize)
            err[i, j] = 0.0 if qt is None else proxy_error(w, dequantize(qt), h, s.axis)
    return SensitivityTable([s.name for s in sites], [int(np.prod(s.shape)) for s in sites], list(candidates),
                            cost, err, [s.name in hessians for s in sites])
