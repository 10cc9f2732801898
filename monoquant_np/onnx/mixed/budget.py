"""The model quantizer's budget options: which format each weight gets (spec 21.4).

``size_budget`` (bytes of the output model, e.g. ``"8MB"``), ``bits_per_weight``
(of the quantized weights, as the report counts them) or ``max_error`` (the
predicted error of spec 21.2 summed over the weights): exactly one.
:func:`apply_budget` runs inside
:func:`~monoquant_np.onnx.quantizer.pipeline.quantize_model_with_report` after
the sites are found and before the algorithm's pre-pass:

1. ``H = X^T X`` per MatMul/Gemm layer from the calibration inputs (if any);
2. the sensitivity table (spec 21.2) of every eligible weight by candidate;
3. the budget for the weights: ``size_budget - fixed`` where ``fixed`` is the
   model's bytes that are not eligible weights (``ByteSize`` of the model with
   external tensors counted, minus the eligible weights' bytes) plus
   :data:`GRAPH_BYTES_PER_WEIGHT` per weight for the nodes the rewrite adds;
   or ``bits_per_weight * sum(size) / 8``;
4. the allocation (spec 21.3);
5. the choice applied: a float candidate leaves the weight float (a skipped
   row), ``int8`` and the 2-bit formats are quantized by round-to-nearest
   and exported as given, other formats reach the algorithm as per-weight
   options (:meth:`~monoquant_np.onnx.quantizer.algorithm.QuantOptions.for_weight`),
   so ``gptq`` quantizes each weight in its own format.

The chosen format of every weight goes into the report (``mixed``) and the
model's ``metadata_props`` (:mod:`monoquant_np.onnx.mixed.metadata`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import onnx

from ..tensors import iter_tensors, tensor_array, tensor_nbytes
from .allocation import allocate, parse_size, size_curve
from .candidates import TWO_BIT, default_candidates, quantize_candidate
from .metadata import write_formats
from .sensitivity import layer_hessians, sensitivity_table

__all__ = ["Budget", "check_budget", "apply_budget", "GRAPH_BYTES_PER_WEIGHT"]

#: Bytes allowed per quantized weight for the nodes and initializer headers the rewrite adds.
GRAPH_BYTES_PER_WEIGHT = 1024


@dataclasses.dataclass(frozen=True)
class Budget:
    """``kind`` is ``"size"`` (bytes of the model), ``"bits"`` (bits per weight) or ``"error"``."""

    kind: str
    value: float


def check_budget(size_budget: Any = None, bits_per_weight: Any = None, max_error: Any = None) -> Budget | None:
    """The one budget option given, checked (``ValueError``/``TypeError`` naming it), or None."""
    given = [(k, v) for k, v in (("size_budget", size_budget), ("bits_per_weight", bits_per_weight),
                                 ("max_error", max_error)) if v is not None]
    if not given:
        return None
    if len(given) > 1:
        names = ", ".join(k for k, _ in given)
        raise ValueError(f"give one of size_budget, bits_per_weight and max_error, got {names}")
    name, v = given[0]
    if name == "size_budget":
        return Budget("size", parse_size(v, name))
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not math.isfinite(float(v)) or float(v) < 0 or (name == "bits_per_weight" and float(v) <= 0):
        raise ValueError(f"{name} must be a finite {'positive' if name == 'bits_per_weight' else 'non-negative'} "
                         f"number, got {v!r}")
    return Budget("bits" if name == "bits_per_weight" else "error", float(v))


def _weights_budget(model: onnx.ModelProto, todo: list, budget: Budget) -> int:
    """Bytes the eligible weights may take (module docstring, step 3)."""
    if budget.kind == "bits":
        return int(budget.value * sum(int(np.prod(s.shape)) for s in todo) / 8)
    names = {s.name for s in todo}
    external = sum(tensor_nbytes(t) for t in iter_tensors(model) if t.external_data)
    fixed = model.ByteSize() + external - sum(tensor_nbytes(s.tensor) for s in todo if s.name in names)
    left = int(budget.value) - fixed - GRAPH_BYTES_PER_WEIGHT * len(todo)
    if left <= 0:
        raise ValueError(f"size_budget {int(budget.value):,} bytes is below the model's bytes that are not "
                         f"quantizable weights ({fixed:,})")
    return left


def apply_budget(model: onnx.ModelProto, todo: list, plan: Any, budget: Budget) -> tuple[list, dict[str, Any]]:
    """Choose every weight's format (module docstring); return the sites left to quantize and the report's
    ``mixed`` record. ``plan.opts`` gets the per-weight formats, ``plan.prequantized`` the int8 weights."""
    o = plan.opts
    if o.double_quant:
        raise ValueError("double_quant does not combine with a size budget: the candidates store their own scales")
    cands = default_candidates(plan.alg.name)
    h = layer_hessians(model, todo, plan.feeds, o.base_dir)
    table = sensitivity_table(todo, cands, h, base_dir=o.base_dir, scale_dtype=o.scale_dtype)
    if budget.kind == "error":
        alloc = allocate(table.cost, table.err, max_error=budget.value)
        limit = None
    else:
        limit = _weights_budget(model, todo, budget)
        alloc = allocate(table.cost, table.err, budget=limit)
    chosen = {n: cands[j] for n, j in zip(table.names, alloc.choice, strict=True)}
    formats = {}
    keep = []
    for s in todo:
        c = chosen[s.name]
        if c.scheme == "float":
            s.skip = "kept float by the size budget (spec 21.4)"
            continue
        if c.scheme in ("int8", *TWO_BIT) and s.name not in plan.prequantized:
            w = np.asarray(tensor_array(s.tensor, o.base_dir), dtype=np.float32)  # stored orientation
            qt = quantize_candidate(w, 1 - s.axis if s.transpose else s.axis, c, o.scale_dtype)
            if qt is not None:  # always: int8 and 2-bit candidates quantize
                plan.prequantized[s.name] = qt
                s.transpose, s.axis = False, qt.axis  # as the pipeline reads a prequantized weight (spec 13.3)
        elif c.scheme not in ("int8", *TWO_BIT):
            formats[s.name] = (c.scheme, c.group_size)
        keep.append(s)
    plan.opts = dataclasses.replace(o, formats=tuple(sorted((n, sc, g) for n, (sc, g) in formats.items())))
    labels = {n: c.label for n, c in chosen.items()}
    write_formats(model, labels)
    mixed = {**table.to_dict(), "budget": {"kind": budget.kind, "value": budget.value, "weights_bytes": limit},
             "chosen": labels, "predicted_bytes": alloc.bytes, "predicted_error": alloc.error,
             "curve": [list(p) for p in size_curve(table.cost, table.err)]}
    return keep, mixed
