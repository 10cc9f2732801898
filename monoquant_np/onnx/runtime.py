"""Running exported models in onnxruntime, and reading back what it fused (spec 9.5-9.6).

onnxruntime rewrites ``DequantizeLinear(int4/uint4, axis=0, block_size=2**k >= 16)
-> MatMul(B)`` into ``com.microsoft.MatMulNBits`` at optimization level
``ORT_ENABLE_EXTENDED`` (and above), as well as the per-channel int8 form
(``DequantizeLinear(axis=1)``, no block size). The fused kernel's numerics are
set by the session option ``session.qdq_matmulnbits_accuracy_level``: its
default, 4, quantizes the activations to int8 per block, which differs from
the spec by about 0.5% relative; 1 computes in float32 and equals the spec
within float32 rounding (spec 9.6). :func:`make_session` sets 1 unless told
otherwise.

``fused_op_types(model)`` answers "did it fuse?" from the graph onnxruntime
actually runs, written with ``SessionOptions.optimized_model_filepath``.
"""

from __future__ import annotations

import collections
import os
import tempfile
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..dequantize import dequantize
from ..formats.matmulnbits import matmulnbits_block_size
from .options import check_accuracy_level

__all__ = ["make_session", "optimized_model", "fused_op_types", "run_model", "max_relative_error",
           "int8_activation_reference", "ACCURACY_OPTION"]

#: The session option that sets the accuracy level of fused QDQ -> MatMulNBits nodes.
ACCURACY_OPTION = "session.qdq_matmulnbits_accuracy_level"


def _model_arg(model: Any) -> bytes | str:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    raise TypeError(f"model must be an onnx.ModelProto, serialized bytes or a path, got {type(model).__name__}")


def make_session(
    model: Any,
    accuracy_level: int = 1,
    optimized_path: str | os.PathLike | None = None,
    disable_optimizations: bool = False,
    *,
    intra_op_threads: int | None = None,
) -> ort.InferenceSession:
    """A CPU ``InferenceSession`` for ``model`` with the spec's accuracy level.

    Args:
        model: ``onnx.ModelProto``, its serialized bytes, or a path.
        accuracy_level: value of ``session.qdq_matmulnbits_accuracy_level``
            (0-4) for MatMulNBits nodes that onnxruntime fuses from QDQ; 1 is
            float32 (the spec), 4 int8 activations (onnxruntime's default).
            Exported ``MatMulNBits`` nodes keep their own attribute.
        optimized_path: if set, onnxruntime writes the graph it optimized
            there. The level is then ``ORT_ENABLE_EXTENDED`` (which already
            fuses MatMulNBits), because files written at higher levels are
            hardware-specific, as onnxruntime warns.
        disable_optimizations: ``ORT_DISABLE_ALL``: run the graph as written,
            DequantizeLinear and MatMul unfused (to measure what fusion buys).
        intra_op_threads: onnxruntime's thread count (default: all cores).
    """
    accuracy_level = check_accuracy_level(accuracy_level)
    so = ort.SessionOptions()
    so.add_session_config_entry(ACCURACY_OPTION, str(accuracy_level))
    so.log_severity_level = 4  # fatal only: errors come back as exceptions, reported on one line
    if disable_optimizations:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif optimized_path is not None:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if optimized_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_path)
    if intra_op_threads is not None:
        so.intra_op_num_threads = int(intra_op_threads)
    return ort.InferenceSession(_model_arg(model), so, providers=["CPUExecutionProvider"])


def optimized_model(model: Any, accuracy_level: int = 1) -> onnx.ModelProto:
    """The graph onnxruntime runs for ``model`` (level ``ORT_ENABLE_EXTENDED``), read back from disk."""
    with tempfile.TemporaryDirectory(prefix="monoquant-ort-") as d:
        path = os.path.join(d, "optimized.onnx")
        make_session(model, accuracy_level, optimized_path=path)
        return onnx.load(path)


def fused_op_types(model: Any, accuracy_level: int = 1) -> dict[str, int]:
    """Operator counts of the optimized graph, e.g. ``{"MatMulNBits": 4}`` when everything fused.

    Counts every node of the main graph by ``op_type``; a model whose weights
    all fused has ``MatMulNBits`` and no ``DequantizeLinear``.
    """
    counts = collections.Counter(n.op_type for n in optimized_model(model, accuracy_level).graph.node)
    return dict(sorted(counts.items()))


def run_model(model: Any, inputs: Any, accuracy_level: int = 1, **session_options: Any) -> list[np.ndarray]:
    """Run ``model`` once in a :func:`make_session` session; return every output, in the model's order.

    ``inputs`` is a feed dict (input name -> array), or one array for the
    first input; ``session_options`` go to :func:`make_session`.
    """
    sess = make_session(model, accuracy_level, **session_options)
    if not isinstance(inputs, dict):
        inputs = {sess.get_inputs()[0].name: inputs}
    return sess.run(None, inputs)


def max_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max|expected|`` in float64 (0 when both are all zero).

    The yardstick of spec 9.6: onnxruntime at accuracy level 1 stays below
    ``2e-5`` of the spec's ``dequant_matmul``.
    """
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        raise ValueError(f"actual and expected must have one shape, got {a.shape} and {e.shape}")
    if e.size == 0:
        return 0.0
    diff = float(np.abs(a - e).max())
    ref = float(np.abs(e).max())
    return diff / ref if ref else (0.0 if diff == 0 else float("inf"))


def int8_activation_reference(x: np.ndarray, qt: Any, bias: np.ndarray | None = None,
                              block_size: int | None = None) -> np.ndarray:
    """What MatMulNBits computes at accuracy level 4 (spec 9.6), in NumPy.

    The activations are quantized symmetrically to int8 in blocks of
    ``block_size`` along K (the weight's MatMulNBits block, by default
    :func:`monoquant_np.formats.matmulnbits.matmulnbits_block_size`), the last
    block partial::

        s_a = max|x_blk| / 127;   x_q = rint(x_blk / s_a) * s_a   (x_q = 0 where s_a = 0)
        y = x_q @ dequantize(qt) + bias       (accumulated in float64, rounded to float32)

    onnxruntime at level 4 matches this to float32 rounding (its integer dot
    products are exact; ``tests/onnx/export/test_qdq.py`` checks it), and
    differs from the spec by about 0.5% relative.
    """
    bs = block_size or matmulnbits_block_size(qt)
    if bs is None:
        raise ValueError(f"block_size is needed: {qt!r} has no MatMulNBits block size")
    x32 = np.asarray(x, np.float32)
    k = x32.shape[-1]
    nb = -(-k // bs)
    lead = x32.shape[:-1]
    xp = np.zeros((int(np.prod(lead, dtype=np.int64)), nb * bs), np.float32)
    xp[:, :k] = x32.reshape(-1, k)
    blocks = xp.reshape(-1, nb, bs)  # (M, nb, bs)
    sa = np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127)  # (M, nb, 1)
    safe = np.where(sa == 0, np.float32(1), sa)
    xq = (np.rint(blocks / safe) * sa).reshape(-1, nb * bs)[:, :k]  # (M, K)
    y = xq.astype(np.float64) @ dequantize(qt).astype(np.float64)
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y.astype(np.float32).reshape(lead + (y.shape[-1],))
