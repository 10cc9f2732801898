"""The built-in example behind ``monoquant-np demo``.

A small float MLP is built in NumPy from a fixed seed, each layer is quantized
with the spec's defaults, the quantized layers run through
:func:`monoquant_np.dequant_matmul`, and the report compares them with the
float model. The last layer has ``K = 64 < 128`` and so takes the int8
per-channel fallback (spec 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .dequantize import bits_per_weight, dequantize
from .linear import QuantizedLinear

__all__ = ["DemoModel", "build_demo_model", "run_demo_numpy", "gelu"]

#: (K, N) of each layer of the demo MLP.
DEMO_SHAPES = ((512, 1024), (1024, 512), (512, 64), (64, 10))


def gelu(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GELU, float32."""
    x = np.asarray(x, dtype=np.float32)
    c = np.float32(np.sqrt(2.0 / np.pi))
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(c * (x + np.float32(0.044715) * x**3)))


@dataclass
class DemoModel:
    weights: list[np.ndarray]  # float32 (K, N) each
    biases: list[np.ndarray]  # float32 (N,) each
    inputs: np.ndarray  # float32 (batch, K0)


def build_demo_model(seed: int = 0, batch: int = 8) -> DemoModel:
    """A deterministic float MLP with weights ~ N(0, 1/K) and small biases."""
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for s in DEMO_SHAPES]
    biases = [(0.01 * rng.standard_normal(s[1])).astype(np.float32) for s in DEMO_SHAPES]
    inputs = rng.standard_normal((batch, DEMO_SHAPES[0][0])).astype(np.float32)
    return DemoModel(weights, biases, inputs)


def run_float(model: DemoModel, x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        h = h @ w + b
        if i < len(model.weights) - 1:
            h = gelu(h)
    return h


def run_quantized(layers: list[QuantizedLinear], x: np.ndarray) -> np.ndarray:
    h = x
    for i, layer in enumerate(layers):
        h = layer(h)
        if i < len(layers) - 1:
            h = gelu(h)
    return h


def run_demo_numpy(group_size: int = 128, symmetric: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Quantize the demo model and measure it. Returns (per-layer rows, totals)."""
    model = build_demo_model()
    layers = [
        QuantizedLinear.from_float(w, b, group_size=group_size, symmetric=symmetric)
        for w, b in zip(model.weights, model.biases, strict=True)
    ]
    rows: list[dict[str, Any]] = []
    for i, (w, layer) in enumerate(zip(model.weights, layers, strict=True)):
        qt = layer.qt
        wq = dequantize(qt)
        rows.append({
            "layer": f"fc{i}",
            "shape": qt.shape,
            "scheme": qt.scheme,
            "block_size": qt.block_size,
            "bytes_float": w.nbytes,
            "bytes_quant": int(round(bits_per_weight(qt) * qt.size / 8)),
            "bits_per_weight": bits_per_weight(qt),
            "max_abs_err": float(np.abs(w - wq).max()),
            "rel_err": float(np.linalg.norm(w - wq) / np.linalg.norm(w)),
        })
    y_ref = run_float(model, model.inputs)
    y_q = run_quantized(layers, model.inputs)
    totals: dict[str, Any] = {
        "bytes_float": sum(r["bytes_float"] for r in rows),
        "bytes_quant": sum(r["bytes_quant"] for r in rows),
        "weights": sum(int(np.prod(r["shape"])) for r in rows),
        "output_max_abs_err": float(np.abs(y_ref - y_q).max()),
        "output_rel_err": float(np.linalg.norm(y_ref - y_q) / np.linalg.norm(y_ref)),
        "layers": layers,
        "model": model,
        "y_spec": y_q,
    }
    totals["bits_per_weight"] = 8.0 * totals["bytes_quant"] / totals["weights"]
    return rows, totals


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Render ``rows`` as an aligned text table; columns are (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if f else str(r[k]) for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(wd) if j else c.ljust(wd) for j, (c, wd) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)
