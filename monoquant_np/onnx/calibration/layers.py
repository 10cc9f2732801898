"""The weights that get activation statistics, and their output error (spec section 14.4).

A *layer* is a weight of the main graph read only by main-graph ``MatMul`` or
``Gemm`` nodes (directly, or through ``Transpose -> MatMul``); each reading
node gives one :class:`~monoquant_np.onnx.calibration.stages.CalibrationTarget`,
whose activation (input A) is captured by
:mod:`monoquant_np.onnx.calibration.capture`. Weights of subgraphs, weights also
read by other ops and ``Gather`` tables are not layers: they get no statistics.

A layer read by several nodes gets their merged statistics
(:func:`merged_stats`); its report row carries the calibration output error
``||X W - X W'|| / ||X W||`` of the algorithm and of round-to-nearest
(:func:`output_errors`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ...algorithms.gptq import output_error
from ...dequantize import dequantize
from ..protobuf import attr, subgraph_inputs
from ..quantizer.algorithm import QuantOptions, rtn_tensor
from ..tensors import tensor_array
from .capture import ActivationStats
from .stages import CalibrationTarget

__all__ = ["Layer", "find_layers", "merged_stats", "output_errors", "ERROR_CHUNK_ELEMENTS"]


@dataclasses.dataclass
class Layer:
    """A weight of the main graph read only by MatMul/Gemm; :meth:`load` reads it in ``(K, N)`` orientation."""

    name: str
    tensor: onnx.TensorProto  # the stored tensor (its bytes may stay in an external data file)
    base_dir: str | None  # the folder of that file
    stored_t: bool  # the stored tensor is (N, K)
    acts: list[str]

    def load(self) -> np.ndarray:
        """The weight as float32 ``(K, N)``, read now (from its file when external), not kept."""
        w = np.asarray(tensor_array(self.tensor, self.base_dir), dtype=np.float32)
        return np.ascontiguousarray(w.T) if self.stored_t else w  # (K, N)


def find_layers(model: onnx.ModelProto, sites: list,
                base_dir: str | None = None) -> tuple[list[Layer], list[CalibrationTarget]]:
    """The weights read only by main-graph MatMul/Gemm nodes, and one target per reading MatMul/Gemm
    (weights in external data files are read from ``base_dir`` by :meth:`Layer.load`, not here).

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
        acts = []
        for node, ta in readers:
            targets.append(CalibrationTarget(s.name, node.input[0], stored_t, ta, node.output[0]))
            acts.append(node.input[0])
        layers.append(Layer(s.name, s.tensor, base_dir, stored_t, acts))
    return layers, targets


def merged_stats(stats: dict[str, ActivationStats], acts: list[str]) -> ActivationStats:
    """The statistics of the activations ``acts`` (duplicates and missing names ignored), merged in order."""
    sts = [stats[a] for a in dict.fromkeys(acts) if a in stats]
    st = sts[0]
    for other in sts[1:]:
        st = st.merged(other)
    return st


#: Elements of one column chunk of :func:`output_errors` (its float64 temporaries are 8 bytes each).
ERROR_CHUNK_ELEMENTS = 1 << 22


def output_errors(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray, opts: QuantOptions) -> dict[str, float]:
    """The report's output errors of a ``(K, N)`` weight ``w`` given its activations' ``h = X^T X`` ``(K, K)``.

    ``out_rel_err = sqrt(||X W - X W'||^2) / sqrt(sum((h @ w) * w))`` with ``W' = w_hat``, and
    ``out_rel_err_rtn`` the same with ``W'`` the model quantizer's round-to-nearest
    (:func:`~monoquant_np.onnx.quantizer.algorithm.rtn_tensor` along K with ``opts``); the squared error is
    :func:`~monoquant_np.algorithms.gptq.output_error` clipped at 0, the denominator 1 when ``sum(...)`` <= 0.
    Every sum runs over chunks of columns (at most :data:`ERROR_CHUNK_ELEMENTS` values, the columns being
    independent), so the float64 temporaries stay small whatever ``N``.
    """
    k, n = w.shape
    step = max(1, ERROR_CHUNK_ELEMENTS // max(k, 1))
    ref = err = err_rtn = 0.0
    for c0 in range(0, n, step):
        wc = np.ascontiguousarray(w[:, c0 : c0 + step])  # (K, chunk)
        rtn_hat = dequantize(rtn_tensor(wc, 0, opts))
        ref += float(np.sum((h @ wc.astype(np.float64)) * wc))
        err += output_error(wc, w_hat[:, c0 : c0 + step], h)
        err_rtn += output_error(wc, rtn_hat, h)
    den = np.sqrt(ref) if ref > 0 else 1.0
    return {
        "out_rel_err": float(np.sqrt(max(err, 0.0)) / den),
        "out_rel_err_rtn": float(np.sqrt(max(err_rtn, 0.0)) / den),
    }
