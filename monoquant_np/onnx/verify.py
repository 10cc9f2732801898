"""Comparing a quantized model with its float reference in onnxruntime (spec section 13.7).

:func:`verify_models` runs both models on the same inputs, each stage by
stage (:func:`staged_outputs`: one stage's weights loaded at a time, spec
14.5), and reports, per output present in both, with ``a`` the reference and
``b`` the candidate (float64 arithmetic)::

    max_abs_err = max |a - b|
    rel_err     = ||a - b||_F / ||a||_F                      (0 when a is all zero)
    cosine      = mean over samples i of  a_i . b_i / (||a_i|| ||b_i||)

where sample ``i`` is the output's slice ``[i]`` along axis 0 flattened (a
0-D or 1-D output is one sample). For MiniLM's output ``461`` (``(batch,
384)`` sentence embeddings) this is the mean sentence-embedding cosine.
Two zero vectors have cosine 1, one zero vector cosine 0; identical samples
have cosine exactly 1 (rounding could otherwise give ``1 - 2**-52``, failing
``--min-cosine 1``), and every cosine is clipped to ``[-1, 1]``.

Inputs are the user's (``.npz``: arrays named after the model inputs) or
made by :func:`make_inputs` from the declared types and shapes:

* symbolic dimensions: the first is ``samples``, the others ``seq_len``;
* floats: standard normal (seeded);
* integers named like ``*mask*``: ones; ``*token_type*``/``*segment*``: zeros;
  ``*position*``: ``0..seq_len-1``; any integer input read as the indices of
  a ``Gather`` on a constant table: uniform in ``[0, table rows)`` (so
  ``input_ids`` stay within the vocabulary); other integers: ``0`` or ``1``;
* bools: True;
* other element types (UNDEFINED, strings, bfloat16, ...) are refused, and so
  are inputs whose declared bytes ``sum(prod(dims) * itemsize)`` exceed the
  input limit (512 MiB, ``MONOQUANT_NP_MAX_INPUT_BYTES``), before anything is
  allocated.

    >>> float(cosine_per_sample(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])))  # 1/sqrt(2)
    0.7071067811865475
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import onnx

from ..errors import check_positive_int
from .calibration.staged import StagedModel
from .feeds import MAX_BYTES_ENV, check_feeds, elem_type_name, feeds_max_bytes, input_dtype, model_input_names
from .model_io import load_model
from .options import DEFAULT_STAGE_BYTES, check_accuracy_level
from .protobuf import attr, graph_constants

__all__ = ["OutputDiff", "make_inputs", "verify_models", "staged_outputs", "cosine_per_sample", "format_diffs"]


@dataclasses.dataclass
class OutputDiff:
    """The differences of one output."""

    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    rel_err: float
    cosine: float


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of ``a[i]`` and ``b[i]`` over axis 0 (see the module docstring)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim <= 1:
        a64, b64 = a64.reshape(1, -1), b64.reshape(1, -1)
    if a64.shape[0] == 0:
        return 1.0
    features = int(np.prod(a64.shape[1:]))  # not -1: a sample may have zero features
    a64 = a64.reshape(a64.shape[0], features)  # (samples, features)
    b64 = b64.reshape(b64.shape[0], features)
    with np.errstate(all="ignore"):  # inf/NaN samples give a NaN cosine, not a warning
        na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
        dot = np.sum(a64 * b64, axis=1)
        both_zero = (na == 0) & (nb == 0)
        cos = np.where(both_zero, 1.0, dot / np.where(na * nb == 0, 1.0, na * nb))
        cos = np.where(~both_zero & (na * nb == 0), 0.0, cos)
        cos = np.where(np.all(a64 == b64, axis=1), 1.0, np.clip(cos, -1.0, 1.0))  # identical: exactly 1, not 1 - ulp
        return float(np.mean(cos))


def _outputs(got: dict[str, np.ndarray], names: list[str], what: str) -> dict[str, np.ndarray]:
    """``got`` restricted to ``names``; ``ValueError`` for a graph output no node computes (a damaged model)."""
    missing = [n for n in names if n not in got]
    if missing:
        raise ValueError(f"{what}: graph output {missing[0]!r} is computed by no node of the model")
    return {n: got[n] for n in names}


def _ratio(num: float, den: float) -> float:
    """``num / den``; for ``den == 0``: 0 if ``num`` is 0, else 1; NaN in, NaN out, without a warning."""
    with np.errstate(all="ignore"):
        return float(np.float64(num) / den) if den > 0 else float(num > 0) if num == num else num


def _gather_table_rows(model: onnx.ModelProto) -> dict[str, int]:
    """input name -> rows of the constant ``Gather`` table it indexes (main graph)."""
    consts = graph_constants(model.graph)
    rows: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in ("Gather", "GatherBlockQuantized") and len(n.input) > 1 and n.input[0] in consts:
            shape = tuple(consts[n.input[0]].dims)
            axis = attr(n, "gather_axis", attr(n, "axis", 0))
            if isinstance(axis, int) and -len(shape) <= axis < len(shape):  # else onnxruntime refuses the node
                r = max(int(shape[axis]), 0)
                rows[n.input[1]] = min(rows.get(n.input[1], r), r)
    return rows


def _declared_inputs(model: onnx.ModelProto, samples: int, seq_len: int, max_bytes: int
                     ) -> list[tuple[str, list[int], np.dtype]]:
    """``(name, dims, dtype)`` of each input to make, their bytes checked against ``max_bytes`` before any exists."""
    wanted = set(model_input_names(model))
    out: list[tuple[str, list[int], np.dtype]] = []
    total = 0
    for vi in model.graph.input:
        if vi.name not in wanted:
            continue
        if not vi.type.HasField("tensor_type"):
            raise ValueError(f"input {vi.name!r} is not a tensor; pass --inputs FEEDS.npz")
        tt = vi.type.tensor_type
        dt = input_dtype(tt.elem_type)
        if dt is None or dt.kind not in "fbiu":
            raise ValueError(f"input {vi.name!r} has element type {elem_type_name(tt.elem_type)}, which verify "
                             "cannot make; pass --inputs FEEDS.npz")
        dims = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (samples if i == 0 else seq_len)
                for i, d in enumerate(tt.shape.dim)]
        total += math.prod(dims) * dt.itemsize
        if total > max_bytes:
            raise ValueError(f"input {vi.name!r} of shape ({', '.join(map(str, dims))}) {dt} brings the made inputs "
                             f"to {total} bytes, above the limit of {max_bytes} (lower --samples/--seq-len, pass "
                             f"--inputs FEEDS.npz, or set {MAX_BYTES_ENV})")
        out.append((vi.name, dims, dt))
    return out


def make_inputs(model: onnx.ModelProto, *, samples: int = 2, seq_len: int = 16, seed: int = 0,
                max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Inputs for every graph input that is not an initializer, by the rules of the module docstring.

    Returns input name -> array of the declared dtype, fixed dims as declared,
    the first symbolic dim ``samples`` and the others ``seq_len``. Raises
    ``ValueError`` for ``samples``/``seq_len`` below 1, for an input that
    is not a float, integer or bool tensor (pass ``--inputs FEEDS.npz``),
    and, before allocating anything, when the inputs' declared bytes
    ``sum(prod(dims) * itemsize)`` exceed ``max_bytes`` (default
    :func:`~monoquant_np.onnx.feeds.feeds_max_bytes`: 512 MiB, the same limit
    as inputs read from a file).
    """
    samples, seq_len = check_positive_int(samples, "samples"), check_positive_int(seq_len, "seq_len")
    limit = feeds_max_bytes() if max_bytes is None else max_bytes
    rng = np.random.default_rng(seed)
    table_rows = _gather_table_rows(model)
    feeds: dict[str, np.ndarray] = {}
    for name, dims, dt in _declared_inputs(model, samples, seq_len, limit):
        low = name.lower()
        if dt.kind == "f":
            x = rng.standard_normal(dims).astype(dt)
        elif dt.kind == "b":
            x = np.ones(dims, dtype=dt)
        elif "mask" in low:
            x = np.ones(dims, dtype=dt)
        elif "token_type" in low or "segment" in low:
            x = np.zeros(dims, dtype=dt)
        elif "position" in low and dims:
            x = np.broadcast_to(np.arange(dims[-1]), dims).astype(dt)
        elif name in table_rows:
            x = rng.integers(0, max(table_rows[name], 1), size=dims).astype(dt)
        else:
            x = rng.integers(0, 2, size=dims).astype(dt)
        feeds[name] = x
    return feeds


def _model_and_dir(model: onnx.ModelProto | str | os.PathLike, what: str) -> tuple[onnx.ModelProto, str | None]:
    """The model proto (external data left on disk) and the folder its side files are read from."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"{what} must be an onnx.ModelProto or a path, got {type(model).__name__}")
    return load_model(model, what=what, load_external_data=False), str(Path(model).resolve().parent)


def staged_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, base_dir: str | None = None,
                   stage_bytes: int = DEFAULT_STAGE_BYTES, accuracy_level: int = 1, what: str = "model"
                   ) -> dict[str, np.ndarray]:
    """Every graph output of ``model`` on ``feeds``, run stage by stage (spec 14.5): one stage's weights
    at a time. onnxruntime failures are one ``ValueError`` naming ``what``."""
    try:
        staged = StagedModel(model, stage_bytes=stage_bytes, base_dir=base_dir, accuracy_level=accuracy_level)
        return staged.outputs(feeds)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def verify_models(
    reference: onnx.ModelProto | str | os.PathLike,
    candidate: onnx.ModelProto | str | os.PathLike,
    feeds: dict[str, np.ndarray] | None = None,
    *,
    samples: int = 2,
    seq_len: int = 16,
    seed: int = 0,
    accuracy_level: int = 1,
    stage_bytes: int = DEFAULT_STAGE_BYTES,
) -> list[OutputDiff]:
    """Run both models in onnxruntime on ``feeds`` (or made inputs) and compare every shared output.

    ``feeds`` are checked against the reference (:func:`~monoquant_np.onnx.feeds.check_feeds`);
    without them :func:`make_inputs` makes ``samples`` x ``seq_len`` inputs
    from ``seed``. ``accuracy_level`` is the session option for fused
    ``MatMulNBits`` (1: float32, the spec; 4: onnxruntime's default int8
    activations). Each model runs stage by stage (:func:`staged_outputs`,
    at most about ``stage_bytes`` of weights loaded at a time; a path's
    external data is read from its folder), the reference first. Returns one
    :class:`OutputDiff` per output name the two models share, in the
    reference's order. Raises ``ValueError`` for bad files or feeds, models
    sharing no output, an output whose shapes differ, or onnxruntime failing
    to load or run either model.
    """
    accuracy_level = check_accuracy_level(accuracy_level)
    ref_model, ref_dir = _model_and_dir(reference, "reference")
    cand_model, cand_dir = _model_and_dir(candidate, "candidate")
    if feeds is None:
        feeds = make_inputs(ref_model, samples=samples, seq_len=seq_len, seed=seed)
    else:
        check_feeds(feeds, ref_model, "the given inputs")
    names = [o.name for o in ref_model.graph.output]
    cand_names = {o.name for o in cand_model.graph.output}
    shared = [n for n in names if n in cand_names]
    if not shared:
        raise ValueError(f"the models share no output name (reference {names}, candidate {sorted(cand_names)})")
    ref_in, cand_in = set(model_input_names(ref_model)), set(model_input_names(cand_model))
    ra = staged_outputs(ref_model, {k: v for k, v in feeds.items() if k in ref_in}, base_dir=ref_dir,
                        stage_bytes=stage_bytes, accuracy_level=accuracy_level, what="reference")
    ra = _outputs(ra, shared, "reference")
    rb = _outputs(staged_outputs(cand_model, {k: v for k, v in feeds.items() if k in cand_in}, base_dir=cand_dir,
                                 stage_bytes=stage_bytes, accuracy_level=accuracy_level, what="candidate"),
                  shared, "candidate")
    out = []
    for name in shared:
        a64, b64 = np.asarray(ra[name], np.float64), np.asarray(rb[name], np.float64)
        if a64.shape != b64.shape:
            raise ValueError(f"output {name!r} has shape {a64.shape} in the reference, {b64.shape} in the candidate")
        with np.errstate(all="ignore"):  # inf/NaN outputs give NaN errors and cosines, not warnings
            d = a64 - b64
            den = float(np.linalg.norm(a64))
        out.append(OutputDiff(
            name=name, shape=tuple(a64.shape),
            max_abs_err=float(np.max(np.abs(d))) if d.size else 0.0,
            rel_err=_ratio(float(np.linalg.norm(d)), den),
            cosine=cosine_per_sample(a64, b64),
        ))
    return out


def format_diffs(diffs: list[OutputDiff]) -> str:
    """A text table of ``diffs``."""
    head = f"{'output':<24} {'shape':<16} {'max abs err':>12} {'rel err':>10} {'cosine':>10}"
    lines = [head, "-" * len(head)]
    for d in diffs:
        lines.append(f"{d.name[:24]:<24} {'x'.join(map(str, d.shape)):<16} {d.max_abs_err:>12.4g} "
                     f"{d.rel_err:>10.4g} {d.cosine:>10.6f}")
    return "\n".join(lines)
