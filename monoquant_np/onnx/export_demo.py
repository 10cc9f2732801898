"""The ONNX part of ``monoquant-np demo`` (spec 9.7).

After the NumPy report, the demo MLP's quantized layers are exported with
:func:`monoquant_np.onnx.mlp_model` (QDQ form, GELU between layers), run in
onnxruntime at accuracy level 1 and at its default level 4, and compared with
the NumPy spec's output; the optimized graph tells whether onnxruntime fused
every MatMul into ``MatMulNBits``.
"""

from __future__ import annotations

import argparse
import os

import onnx

from .export.models import mlp_model
from .model_io import save_model
from .runtime import fused_op_types, max_relative_error, run_model

__all__ = ["demo_onnx", "DEMO_FILENAME"]

#: File name of the exported model under ``demo --output DIR``.
DEMO_FILENAME = "demo_mlp.onnx"


def _save(model: onnx.ModelProto, folder: str) -> str:
    """Write ``model`` to ``folder/DEMO_FILENAME`` through a temporary name; return the path."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OSError(f"--output {folder!r} is a file, expected a folder")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, DEMO_FILENAME)
    save_model(model, path)
    return path


def demo_onnx(args: argparse.Namespace, totals: dict) -> dict:
    """Export, run and report; returns the figures printed (for tests)."""
    layers = totals["layers"]
    x = totals["model"].inputs
    y_spec = totals["y_spec"]
    model = mlp_model(layers, activation="gelu")
    onnx.checker.check_model(model, full_check=True)
    y1 = run_model(model, x, accuracy_level=1)[0]
    y4 = run_model(model, x, accuracy_level=4)[0]
    ops = fused_op_types(model)
    n_fused, n_dq = ops.get("MatMulNBits", 0), ops.get("DequantizeLinear", 0)
    err1 = float(abs(y1 - y_spec).max())
    err4 = float(abs(y4 - y_spec).max())
    size = model.ByteSize()
    print(f"\nONNX (opset 21, DequantizeLinear + MatMul, {size:,} bytes) in onnxruntime:")
    print(f"  accuracy level 1 (float32): max |y_ort - y_spec| = {err1:.3g} "
          f"(relative {max_relative_error(y1, y_spec):.3g})")
    print(f"  accuracy level 4 (int8 activations, onnxruntime's default): max |y_ort - y_spec| = {err4:.3g} "
          f"(relative {max_relative_error(y4, y_spec):.3g})")
    verdict = "all fused" if n_dq == 0 and n_fused == len(layers) else "NOT all fused"
    print(f"  optimized graph: {n_fused} MatMulNBits, {n_dq} DequantizeLinear of {len(layers)} layers ({verdict})")
    if n_dq:
        print("  (onnxruntime fuses group sizes that are powers of two >= 16; the others run unfused, spec 9.5)")
    path = None
    if getattr(args, "output", None):
        path = _save(model, args.output)
        print(f"  saved {path}")
    return {"max_abs_diff_level1": err1, "max_abs_diff_level4": err4, "ops": ops, "path": path}
