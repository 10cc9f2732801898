"""What a model quantization changed: per-layer rows and totals (spec section 13.5).

Every quantized weight gets one :class:`LayerRow`::

    bytes_before = size * itemsize(float32 or float16)
    bytes_after  = bits_per_weight(qt) * size / 8       (codes + scales + zero points, spec 6.3)
    d            = fl32(w - w')                          (element-wise in float32)
    rel_err      = sqrt(sum d^2) / sqrt(sum w^2)         (0 for an all-zero weight)
    max_abs_err  = max |d|

Each sum is taken in float32 over chunks of at most 2**18 elements
(:data:`CHUNK_ELEMENTS`) and the chunk sums are added in float64; ``rel_err``
agrees with the all-float64 formula to about 1e-6 relative. Measuring a
weight's error costs a few chunk-sized buffers, whatever its size.

The report's totals add the rows; ``bits_per_weight = 8 * sum(bytes_after) /
sum(size)``. File sizes before and after are filled in by whoever writes the
files (the command line). ``to_json`` is what ``--report`` writes.

Spec 13.5's example: ``W`` ``(64, 48)`` float32, int4, group 32: 1536 bytes of
codes and ``2 * 48 * 4 = 384`` of scales, ``8 * 1920 / 3072 = 5`` bits per weight.

    >>> r = QuantReport(rows=[LayerRow("W", (64, 48), "int4", 32, 12288, 1920, 3072, 5.0, 0.1, 0.05, "qdq")])
    >>> r.totals()["bits_per_weight"]
    5.0
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from ...dequantize import dequantize, dequantize_slice

__all__ = ["LayerRow", "QuantReport", "relative_error", "tensor_error", "format_rows"]


#: Elements per chunk of the error sums: a few chunk-sized float32 buffers stay in cache.
CHUNK_ELEMENTS = 1 << 18


def _sums(w: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
    """``(sum d^2, sum w^2, max |d|)`` of one chunk: float32 ``w`` and ``d = fl32(w - w')`` (module docstring).

    ``np.einsum`` multiplies and adds in one pass in float32 on the calling
    thread: no BLAS dot product (whose worker threads spin when another
    process holds a core) and no float64 copy of the weight.
    """
    a, d = w.reshape(-1), d.reshape(-1)
    if not d.size:
        return 0.0, 0.0, 0.0
    mx = max(float(d.max()), -float(d.min()))
    return float(np.einsum("i,i->", d, d)), float(np.einsum("i,i->", a, a)), mx


def _error_sums(w: np.ndarray, w_hat: np.ndarray) -> tuple[float, float, float]:
    """:func:`_sums` of ``w`` and ``w'`` (a new difference array: the inputs are not changed)."""
    a = np.asarray(w, dtype=np.float32)
    return _sums(a, np.subtract(a, np.asarray(w_hat, dtype=np.float32)))


def _ratio(num: float, den: float) -> float:
    return float(np.sqrt(num) / np.sqrt(den)) if den > 0 else 0.0


def relative_error(w: np.ndarray, w_hat: np.ndarray) -> tuple[float, float]:
    """``(||w - w'||_F / ||w||_F, max |w - w'|)`` as the module docstring computes them; 0 when ``w`` is all zero."""
    a, b = np.asarray(w).reshape(-1), np.asarray(w_hat).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"w_hat must have w's {a.size} elements, got {b.size}")
    num = den = mx = 0.0
    for i in range(0, a.size, CHUNK_ELEMENTS):
        n, d, m = _error_sums(a[i:i + CHUNK_ELEMENTS], b[i:i + CHUNK_ELEMENTS])
        num, den, mx = num + n, den + d, max(mx, m)
    return _ratio(num, den), mx


def tensor_error(w: np.ndarray, qt, rows_per_chunk: int | None = None) -> tuple[float, float]:
    """:func:`relative_error` of ``w`` and ``dequantize(qt)``, computed over row chunks.

    Memory stays at a few chunks (about :data:`CHUNK_ELEMENTS` each) instead of
    several float64 copies of the weight.
    """
    if qt.perm is not None or w.ndim < 1 or w.shape[0] == 0:
        return relative_error(w, dequantize(qt))
    inner = max(1, int(np.prod(w.shape[1:])))
    step = rows_per_chunk or max(1, CHUNK_ELEMENTS // inner)
    num = den = mx = 0.0
    for r0 in range(0, w.shape[0], step):
        r1 = min(r0 + step, w.shape[0])
        a = np.asarray(w[r0:r1], dtype=np.float32)
        d = dequantize_slice(qt, r0, r1)  # a fresh float32 chunk: the difference overwrites it
        n, d2, m = _sums(a, np.subtract(a, d, out=d))
        num, den, mx = num + n, den + d2, max(mx, m)
    return _ratio(num, den), mx


@dataclasses.dataclass
class LayerRow:
    """One quantized weight.

    ``shape`` is the stored orientation (``(K, N)`` for a MatMul weight),
    ``scheme`` e.g. ``"int4"``, ``"uint4"``, ``"nf4"``, ``"int8"``;
    ``served_as`` how the graph reads it: ``"qdq"`` (DequantizeLinear),
    ``"MatMulNBits"``, ``"GatherBlockQuantized"``, ``"arithmetic-int4"``,
    ``"arithmetic-nibbles"``, ``"arithmetic-bytes"`` (``Cast`` and ``Mul``, spec
    16.4) or a mix joined by ``+``.
    """

    name: str
    shape: tuple[int, ...]
    scheme: str
    group_size: int
    bytes_before: int
    bytes_after: int
    size: int
    bits_per_weight: float
    rel_err: float
    max_abs_err: float
    served_as: str
    consumers: tuple[str, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class QuantReport:
    """Rows, skipped weights with reasons, notes, and file sizes."""

    rows: list[LayerRow] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    file_bytes_before: int | None = None
    file_bytes_after: int | None = None
    seconds: float | None = None
    #: Seconds by step: ``read``, ``algorithm``, ``error`` and ``rewrite`` summed over the weights (threads
    #: add up), ``prepare`` (calibration), ``quantize_wall`` (the weight loop); the command line adds ``save``.
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    #: With a size budget (spec 21): the sensitivity table, the budget, the chosen format per weight, the curve.
    mixed: dict[str, Any] | None = None

    def totals(self) -> dict[str, Any]:
        """Sums over the rows (module docstring), the file sizes and the seconds taken."""
        before = sum(r.bytes_before for r in self.rows)
        after = sum(r.bytes_after for r in self.rows)
        size = sum(r.size for r in self.rows)
        return {
            "layers": len(self.rows),
            "skipped": len(self.skipped),
            "weights": size,
            "bytes_before": before,
            "bytes_after": after,
            "bits_per_weight": 8.0 * after / size if size else 0.0,
            "file_bytes_before": self.file_bytes_before,
            "file_bytes_after": self.file_bytes_after,
            "seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        """``{"options", "layers", "skipped", "notes", "totals", "timings"}`` with plain lists and dicts."""
        rows = []
        for r in self.rows:
            d = dataclasses.asdict(r)
            d["shape"] = list(r.shape)
            d["consumers"] = list(r.consumers)
            rows.append(d)
        return {
            "options": self.options,
            "layers": rows,
            "skipped": [{"name": n, "reason": why} for n, why in self.skipped],
            "notes": list(self.notes),
            "totals": self.totals(),
            "timings": dict(self.timings),
            **({"mixed": self.mixed} if self.mixed is not None else {}),
        }

    def to_json(self, indent: int = 2) -> str:
        """:meth:`to_dict` as JSON (NumPy scalars and arrays as numbers and lists): what ``--report`` writes."""
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    def format(self) -> str:
        """The per-layer table, the skipped weights, the notes and the totals, as text."""
        lines = [format_rows(self.rows)] if self.rows else ["no weight was quantized"]
        for name, why in self.skipped:
            lines.append(f"skipped {name}: {why}")
        for note in self.notes:
            lines.append(f"note: {note}")
        t = self.totals()
        if self.rows:
            lines.append(
                f"total: {t['layers']} weights, {t['bytes_before']:,} -> {t['bytes_after']:,} bytes "
                f"({t['bits_per_weight']:.3f} bits/weight)"
            )
        if self.file_bytes_before is not None and self.file_bytes_after is not None:
            b, a = self.file_bytes_before, self.file_bytes_after
            how = ("unchanged" if a == b else f"{b / max(a, 1):.2f}x smaller" if a < b
                   else f"{a / max(b, 1):.2f}x larger")
            lines.append(f"file: {b:,} -> {a:,} bytes ({how})")
        return "\n".join(lines)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _opt4(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_rows(rows: list[LayerRow]) -> str:
    """A fixed-width text table of ``rows``."""
    # Calibrated algorithms add the output error ||XW - XW'|| / ||XW|| and round-to-nearest's.
    calib = any("out_rel_err" in r.extra for r in rows)
    out_cols = ("out err", "rtn out err") if calib else ()
    head = ("name", "shape", "scheme", "group", "bytes before", "bytes after", "rel err", *out_cols, "as")
    body = [
        (
            r.name,
            "x".join(map(str, r.shape)),
            r.scheme,
            str(r.group_size),
            f"{r.bytes_before:,}",
            f"{r.bytes_after:,}",
            f"{r.rel_err:.4f}",
            *((_opt4(r.extra.get("out_rel_err")), _opt4(r.extra.get("out_rel_err_rtn"))) if calib else ()),
            r.served_as,
        )
        for r in rows
    ]
    width = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    width[0] = min(width[0], 60)
    out = []
    for i, cells in enumerate([head, *body]):
        name = cells[0] if len(cells[0]) <= 60 else "..." + cells[0][-57:]
        parts = [name.ljust(width[0])] + [c.rjust(w) if 3 <= j <= 6 + len(out_cols) else c.ljust(w)
                                          for j, (c, w) in enumerate(zip(cells[1:], width[1:], strict=True), 1)]
        out.append("  ".join(parts).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in width))
    return "\n".join(out)
