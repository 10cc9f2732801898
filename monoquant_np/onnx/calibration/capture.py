"""Capturing activations through onnxruntime and accumulating their statistics (spec section 14.4).

The float model runs in onnxruntime on the user's calibration feeds, stage by
stage (:mod:`monoquant_np.onnx.calibration.staged`, spec 14.5); the
activations that feed each quantized ``MatMul``/``Gemm`` (input A) are extra
outputs of the sub-model of the stage that first has them (the user's model
is never modified). Per activation tensor ``x`` with rows ``x_m`` (all
leading axes flattened, ``(M, K)``), summed batch by batch so memory stays
bounded by one batch of activations plus ``K x K`` per tensor::

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

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx

from ..feeds import batch_length, model_input_names
from ..options import DEFAULT_STAGE_BYTES
from .staged import StagedModel

__all__ = ["ActivationStats", "collect_stats", "iter_feeds", "add_rows", "batch_mask", "model_batches",
           "mask_input_name"]


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
        """Accumulate rows ``x`` ``(M, K)``: float32 products per batch, float64 sums.

        ``ValueError`` (and no warning) when ``x`` or its float32 products are
        not finite: the float model overflows, or makes NaN, on these inputs.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            x32 = np.asarray(x, dtype=np.float32)
            prod = x32.T @ x32  # float32 (K, K)
        if not np.isfinite(prod).all():
            what = "holds NaN or inf" if not np.isfinite(x32).all() else "overflows float32 in x^T x"
            raise ValueError(f"calibration: activation {self.name!r} {what} on these calibration inputs; "
                             "the float model must stay finite on them")
        np.add(self.xtx, prod, out=self.xtx)  # the float32 product widened inside the add: no float64 copy
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


def _rows(x: np.ndarray, mask: np.ndarray | None, trans: bool) -> np.ndarray:
    """The ``(M, K)`` rows of one captured activation (masked rows dropped)."""
    x = np.asarray(x)
    if trans:
        x = x.T  # Gemm transA=1: A is (K, M)
    if mask is not None and x.ndim >= 2 and x.shape[:-1] == mask.shape:
        return x[mask != 0]  # (M_kept, K)
    return x.reshape(-1, x.shape[-1])  # (M, K)


def mask_input_name(mask_input: str | None, input_names: Iterable[str]) -> str | None:
    """``mask_input``, or for ``"auto"`` ``"attention_mask"`` when it is one of ``input_names`` (else None)."""
    if mask_input != "auto":
        return mask_input
    return "attention_mask" if "attention_mask" in set(input_names) else None


def add_rows(stats: dict[str, ActivationStats], name: str, x: np.ndarray, mask: np.ndarray | None,
             trans: bool) -> None:
    """Accumulate one captured batch ``x`` of activation ``name`` into ``stats`` (created on first sight)."""
    rows = _rows(x, mask, trans)
    k = rows.shape[1]
    st = stats.get(name)
    if st is None:
        st = stats[name] = ActivationStats(name, np.zeros((k, k)), np.zeros(k))
    st.add(rows)


def batch_mask(batch: Mapping[str, np.ndarray], mask_name: str | None) -> np.ndarray | None:
    """The mask of one batch (``batch[mask_name]``), or None."""
    return np.asarray(batch[mask_name]) if mask_name and mask_name in batch else None


def model_batches(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
                  batch_size: int) -> list[dict[str, np.ndarray]]:
    """The batches of :func:`iter_feeds`, keeping only the arrays ``model`` takes as inputs."""
    names = set(model_input_names(model))
    return [{k: v for k, v in b.items() if k in names} for b in iter_feeds(feeds, batch_size)]


def collect_stats(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    activations: Iterable[str],
    *,
    trans_act: Iterable[str] = (),
    batch_size: int = 16,
    mask_input: str | None = "auto",
    overrides: Mapping[str, np.ndarray] | None = None,
    threads: int = 1,
    base_dir: str | None = None,
    stage_bytes: int = DEFAULT_STAGE_BYTES,
) -> dict[str, ActivationStats]:
    """Run the model on ``feeds`` stage by stage (spec 14.5) and accumulate :class:`ActivationStats` per
    activation name.

    ``mask_input``: the name of a model input whose zeros mark rows to drop
    (padding), ``None`` for none, or ``"auto"``: ``attention_mask`` when the
    model has such an input. ``overrides`` replace initializers (name -> array).
    ``base_dir``: the folder of the model's external data files, when its
    tensors stay there. Each stage captures the activations it computes (or
    receives); only one stage's weights are loaded at a time.
    """
    names = list(dict.fromkeys(activations))
    ta = set(trans_act)
    stats: dict[str, ActivationStats] = {}
    if not names:
        return stats
    staged = StagedModel(model, stage_bytes=stage_bytes, base_dir=base_dir, threads=threads)
    mask_name = mask_input_name(mask_input, model_input_names(model))
    batches = model_batches(model, feeds, batch_size)
    masks = [batch_mask(b, mask_name) for b in batches]
    first = {n: staged.first_stage(n) for n in names}
    for si in range(len(staged.stages)):
        here = [n for n in names if first[n] == si]
        got = staged.step(si, batches, capture=here, overrides=overrides)
        for vals, mask in zip(got, masks, strict=True):
            for n in here:
                add_rows(stats, n, vals[n], mask, n in ta)
    return stats
