"""Capturing activations through onnxruntime and accumulating their statistics (spec section 14.4).

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

Feeds: a mapping of arrays named after the model inputs, batch along axis 0,
all with the same batch length (read from ``FEEDS.npz`` by
:func:`monoquant_np.onnx.feeds.load_feeds`); or an iterable of feed dicts,
each run as it is (useful for unpadded sentences).

What is calibrated, and in which order, is :mod:`monoquant_np.onnx.calibration.stages`.

    >>> st = ActivationStats("x", np.zeros((2, 2)), np.zeros(2))
    >>> st.add(np.array([[1, 2], [3, -4]], np.float32))  # spec 14.4's example
    >>> st.xtx.tolist(), st.mean_abs.tolist(), st.rows
    ([[10.0, -10.0], [-10.0, 20.0]], [2.0, 3.0], 2)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ..feeds import batch_length
from ..tensors import is_external, iter_tensors, tensor_array, tensor_nbytes

__all__ = ["ActivationStats", "CaptureSession", "collect_stats", "iter_feeds"]


@dataclasses.dataclass
class ActivationStats:
    """Accumulated statistics of one activation tensor (spec 14.4)."""

    name: str
    xtx: np.ndarray  # float64 (K, K)
    abs_sum: np.ndarray  # float64 (K,)
    rows: int = 0

    @property
    def k(self) -> int:
        """The activation's width ``K``."""
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


def iter_feeds(feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
               batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` samples from batched feeds, or the given feed dicts one by one."""
    if isinstance(feeds, Mapping):
        n = batch_length(feeds, "calibration feeds")
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
                 threads: int = 1, base_dir: str | None = None) -> None:
        m = copy.deepcopy(model)  # the user's model is never modified
        if base_dir is not None:
            _inline_small_external(m, base_dir)
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
        if base_dir is not None:  # tensors in side files: onnxruntime reads them from the model's folder
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(base_dir))
        self.session = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.model_inputs = {i.name for i in self.session.get_inputs()} - set(self.overridable)
        self.dtypes = {n: helper.tensor_dtype_to_np_dtype(inits[n].data_type) for n in self.overridable}

    def run(self, feeds: Mapping[str, np.ndarray], overrides: Mapping[str, np.ndarray] | None = None,
            names: list[str] | None = None) -> list[np.ndarray]:
        """The activations ``names`` (default: all) on one batch of ``feeds``, with ``overrides`` replacing
        overridable initializers (cast to their dtype); feeds the model does not take are ignored."""
        run_feeds = {k: v for k, v in feeds.items() if k in self.model_inputs}
        for k, v in (overrides or {}).items():
            run_feeds[k] = np.asarray(v, dtype=self.dtypes[k])
        return self.session.run(names or self.names, run_feeds)


#: External tensors up to this size, and every non-float one, are read into the capture model:
#: shape inference needs the values of shape-like inputs (a Reshape's shape) and cannot read side files.
INLINE_BYTES = 1 << 16


def _inline_small_external(m: onnx.ModelProto, base_dir: str) -> None:
    """Read the external tensors shape inference may need into ``m`` (a copy): the non-float ones and
    those of at most ``INLINE_BYTES``; weights stay in their files, which onnxruntime reads itself."""
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    for t in iter_tensors(m):
        if is_external(t) and (t.data_type not in floats or tensor_nbytes(t) <= INLINE_BYTES):
            t.CopyFrom(numpy_helper.from_array(tensor_array(t, base_dir), t.name))


def _rows(x: np.ndarray, mask: np.ndarray | None, trans: bool) -> np.ndarray:
    """The ``(M, K)`` rows of one captured activation (masked rows dropped)."""
    x = np.asarray(x)
    if trans:
        x = x.T  # Gemm transA=1: A is (K, M)
    if mask is not None and x.ndim >= 2 and x.shape[:-1] == mask.shape:
        return x[mask != 0]  # (M_kept, K)
    return x.reshape(-1, x.shape[-1])  # (M, K)


def _mask_name(mask_input: str | None, input_names: Iterable[str]) -> str | None:
    """``mask_input``, or for ``"auto"`` ``"attention_mask"`` when it is one of ``input_names`` (else None)."""
    if mask_input != "auto":
        return mask_input
    return "attention_mask" if "attention_mask" in set(input_names) else None


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
    base_dir: str | None = None,
) -> dict[str, ActivationStats]:
    """Run the model on ``feeds`` and accumulate :class:`ActivationStats` per activation name.

    ``mask_input``: the name of a model input whose zeros mark rows to drop
    (padding), ``None`` for none, or ``"auto"``: ``attention_mask`` when the
    model has such an input. ``base_dir``: the folder of the model's external
    data files, when its tensors stay there.
    """
    names = list(dict.fromkeys(activations))
    ta = set(trans_act)
    stats: dict[str, ActivationStats] = {}
    if not names:
        return stats
    if isinstance(model, CaptureSession):
        sess, mask_name = model, _mask_name(mask_input, model.model_inputs)
    else:
        sess = CaptureSession(model, names, threads=threads, base_dir=base_dir)
        mask_name = _mask_name(mask_input, (i.name for i in model.graph.input))
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
