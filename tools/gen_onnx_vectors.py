"""Write the golden ONNX vectors of spec 9.8 under spec/vectors/onnx/.

Each case is a folder in the layout of ONNX's own backend tests, so that any
runtime can check itself without Python:

    CASE/model.onnx                    the exported model (opset 21, IR 10)
    CASE/test_data_set_0/input_0.pb    TensorProto "x", float32 (batch, K)
    CASE/test_data_set_0/output_0.pb   TensorProto "y", float32 (batch, N): the NumPy spec's output
    CASE/data.npz                      the same x and y, plus "w" (the float weight quantized) and
                                       "w_dequantized" (K, N) float32 of the first layer
    CASE/weights.json                  every layer's float weight, quantization arguments and
                                       dequantized weight, floats with their IEEE bits
                                       (the encoding of spec/vectors/README.md)

and ``manifest.json`` lists every case (scheme, group size, format, what it
exercises, the tolerance) with the SHA-256 of every file. The expected outputs
are the spec's ``x @ dequantize(qt) + bias`` accumulated in float64 and rounded
once to float32 per layer (independent of summation order); a conforming
float32 runtime matches them within ``max|y - y_expected| <= 2e-5 *
max|y_expected|``, and the ``exact`` case, whose inputs and weights are small
multiples of powers of two, matches bit for bit.

Every file is byte-for-byte reproducible (``.npz`` members carry a fixed
timestamp); tests/onnx/export/test_golden.py regenerates them and compares.

usage: python tools/gen_onnx_vectors.py [OUT_DIR]     (default: spec/vectors/onnx)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile

import numpy as np
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gen_core_vectors import encode  # noqa: E402  (a sibling script, found through sys.path above)

from monoquant_np import dequantize, quantize  # noqa: E402
from monoquant_np.onnx import linear_model, mlp_model  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "vectors", "onnx")
TOLERANCE = 2e-5


def _grid(rng: np.random.Generator, shape: tuple[int, ...], step: float, lim: int) -> np.ndarray:
    """Random multiples of ``step`` in ``[-lim*step, lim*step]``: exact in float32."""
    return (rng.integers(-lim, lim + 1, size=shape) * step).astype(np.float32)


def _cases() -> list[dict]:
    rng = np.random.default_rng(20240921)
    cases = []
    # 1. hand-checkable: K=4 in groups of 2; every scale is 0.25 or 0.5 (spec 9.8 works it through)
    w = np.array([[0.5, -1.75], [1.75, 0.25], [-0.25, 1.0], [1.75, -3.5]], np.float32)
    x = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 2.0, 0.5]], np.float32)
    cases.append(dict(name="int4_sym_k4_n2_g2", qt=quantize(w, group_size=2), w=w, args={"group_size": 2}, x=x,
                      exact=True,
                      what="hand-checkable INT4, two groups of 2 along K, DequantizeLinear(axis=0, block_size=2)"))
    # 2. asymmetric uint4, K=20 with a partial last group of 4, packed UINT4 zero points
    w = _grid(rng, (20, 3), 0.125, 12) + np.float32(0.5)
    cases.append(dict(name="uint4_asym_k20_n3_g16", qt=quantize(w, group_size=16, symmetric=False), w=w,
                      args={"group_size": 16, "symmetric": False}, x=_grid(rng, (3, 20), 0.5, 4), exact=False,
                      what="UINT4 codes and UINT4 zero points (scale shape), partial last group (20 = 16 + 4)"))
    # 3. float16 scales, widened by a Cast of the scale before DequantizeLinear
    w = rng.standard_normal((32, 5)).astype(np.float32)
    cases.append(dict(name="int4_f16scale_k32_n5_g16", qt=quantize(w, group_size=16, scale_dtype=np.float16), w=w,
                      args={"group_size": 16, "scale_dtype": "float16"},
                      x=rng.standard_normal((2, 32)).astype(np.float32), exact=False,
                      what="FLOAT16 scales -> Cast(to=FLOAT) -> DequantizeLinear; float32 input and output"))
    # 4. the int8 per-channel fallback: K=8 < group 128
    w = rng.standard_normal((8, 3)).astype(np.float32)
    cases.append(dict(name="int8_perchannel_k8_n3", qt=quantize(w, group_size=128), w=w, args={"group_size": 128},
                      x=rng.standard_normal((2, 8)).astype(np.float32), exact=False,
        what="INT8 per-channel fallback (spec 7): DequantizeLinear(axis=1), scale (N,)"))
    # 5. a group size that is not a power of two (unfused in onnxruntime), with a bias
    w = rng.standard_normal((50, 3)).astype(np.float32)
    cases.append(dict(name="int4_g24_k50_n3_bias", qt=quantize(w, group_size=24), w=w, args={"group_size": 24},
                      x=rng.standard_normal((2, 50)).astype(np.float32), bias=np.array([0.5, -0.25, 1.0], np.float32),
                      exact=False,
                      what="group size 24 (not a power of two), partial last group (50 = 24 + 24 + 2), "
                           "MatMul + Add bias"))
    # 6. onnxruntime's contrib operator, asymmetric, with bias
    w = rng.standard_normal((40, 3)).astype(np.float32)
    cases.append(dict(name="matmulnbits_uint4_k40_n3_g16_bias", qt=quantize(w, group_size=16, symmetric=False), w=w,
                      args={"group_size": 16, "symmetric": False}, x=rng.standard_normal((2, 40)).astype(np.float32),
                      bias=np.array([1.0, 0.0, -1.0], np.float32),
                      format="matmulnbits", exact=False,
                      what="com.microsoft.MatMulNBits (onnxruntime only): B (N, 3, 8), the last block's 8 "
                           "padding rows hold its zero point; scales (N, 3), zero points (N, 2) ending in the "
                           "nibble 8; bias input"))
    # 7. two layers with ReLU between them
    w1 = rng.standard_normal((32, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 5)).astype(np.float32)
    cases.append(dict(name="mlp_relu_k32_h16_n5", layers=[(quantize(w1, group_size=16), None),
                                                           (quantize(w2, group_size=16, symmetric=False), None)],
                      ws=[w1, w2], args=[{"group_size": 16, "symmetric": True},
                                               {"group_size": 16, "symmetric": False}],
                      x=rng.standard_normal((3, 32)).astype(np.float32), exact=False,
                      what="two layers (INT4 g16, UINT4 g16) with Relu between them"))
    return cases


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` with a fixed member timestamp, so the bytes depend on the arrays only."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _exact_layer(x: np.ndarray, qt, bias: np.ndarray | None) -> np.ndarray:
    """``x @ dequantize(qt) + bias`` accumulated in float64 and rounded once to float32.

    This does not depend on a summation order (unlike a float32 matmul), so the
    expected outputs stay byte-identical however ``dequant_matmul`` is tuned;
    the spec's float32 ``dequant_matmul`` agrees within the tolerance.
    """
    y = x.astype(np.float64) @ dequantize(qt).astype(np.float64)
    if bias is not None:
        y += bias.astype(np.float64)
    return y.astype(np.float32)


def _weights_json(qts: list, ws: list[np.ndarray], args: list[dict]) -> bytes:
    """Per layer ``fc{i}_w``: the float weight, the ``quantize`` arguments it was quantized with
    (the others at their defaults) and the dequantized weight the model holds."""
    layers = []
    for i, (qt, w, a) in enumerate(zip(qts, ws, args, strict=True)):
        kw = {k: np.dtype(v) if k == "scale_dtype" else v for k, v in a.items()}
        if not np.array_equal(dequantize(quantize(w, **kw)), dequantize(qt)):
            raise ValueError(f"layer {i}: quantize(w, **{a}) does not reproduce the layer")
        layers.append({"initializer": f"fc{i}_w", "function": "quantize", "params": a, "input": encode(w),
                       "scheme": qt.scheme, "dequantized": encode(dequantize(qt))})
    return (json.dumps({"layers": layers}, indent=1, sort_keys=True) + "\n").encode()


def build_case(case: dict) -> tuple[dict[str, bytes], dict]:
    """The files of one case (relative path -> bytes) and its manifest entry."""
    x = case["x"]
    fmt = case.get("format", "qdq")
    if "layers" in case:
        layers = case["layers"]
        model = mlp_model(layers, "relu", format=fmt)
        h = x
        for i, (qt, b) in enumerate(layers):
            h = _exact_layer(h, qt, b)
            if i < len(layers) - 1:
                h = np.maximum(h, np.float32(0))
        y = h
        qts, ws, args = [qt for qt, _ in layers], case["ws"], case["args"]
    else:
        qt, bias = case["qt"], case.get("bias")
        model = linear_model(qt, bias, format=fmt)
        y = _exact_layer(x, qt, bias)
        qts, ws, args = [qt], [case["w"]], [case["args"]]
    schemes, groups = [qt.scheme for qt in qts], [qt.block_size for qt in qts]
    files = {
        "model.onnx": model.SerializeToString(),
        "test_data_set_0/input_0.pb": numpy_helper.from_array(x, "x").SerializeToString(),
        "test_data_set_0/output_0.pb": numpy_helper.from_array(y, "y").SerializeToString(),
        "data.npz": _npz_bytes({"x": x, "y": y, "w": ws[0], "w_dequantized": dequantize(qts[0])}),
        "weights.json": _weights_json(qts, ws, args),
    }
    entry = {
        "name": case["name"], "what": case["what"], "format": fmt, "schemes": schemes, "group_sizes": groups,
        "input_shape": list(x.shape), "output_shape": list(y.shape),
        "tolerance": 0.0 if case["exact"] else TOLERANCE,
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())},
    }
    return files, entry


def generate(out_dir: str) -> list[str]:
    """Write every case and the manifest under ``out_dir``; return the relative paths written."""
    written = []
    manifest = {"spec": "spec/09-onnx-export.md section 9.8", "opset": 21, "ir_version": 10,
                "tolerance_rule": "max|y - y_expected| <= tolerance * max|y_expected|", "cases": []}
    for case in _cases():
        files, entry = build_case(case)
        for rel, data in files.items():
            _write(os.path.join(out_dir, case["name"], rel), data)
            written.append(f"{case['name']}/{rel}")
        manifest["cases"].append(entry)
    _write(os.path.join(out_dir, "manifest.json"), (json.dumps(manifest, indent=1) + "\n").encode())
    written.append("manifest.json")
    _write(os.path.join(out_dir, "README.md"), _readme(manifest).encode())
    written.append("README.md")
    return written


def _readme(manifest: dict) -> str:
    lines = [
        "# Golden ONNX vectors (spec 9.8)",
        "",
        "Written by `python tools/gen_onnx_vectors.py`; do not edit by hand (a test regenerates them).",
        "Each folder: `model.onnx` (opset 21, IR 10), `test_data_set_0/input_0.pb` (`x`) and",
        "`output_0.pb` (`y`, the expected output), `data.npz` (`x`, `y`, `w`: the float weight,",
        "`w_dequantized`, of the first layer) and `weights.json` (every layer's float weight `input`,",
        "its `quantize` arguments `params` and its `dequantized` weight; arrays encoded as in",
        "`spec/vectors/README.md`, floats with their IEEE bits).",
        "A runtime conforms when `max|y - y_expected| <= tolerance * max|y_expected|`",
        "(tolerance 0: bit-exact). `manifest.json` holds the SHA-256 of every file.",
        "",
        "| case | format | schemes | groups | tolerance | exercises |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in manifest["cases"]:
        lines.append(f"| `{c['name']}` | {c['format']} | {', '.join(c['schemes'])} | "
                     f"{', '.join(map(str, c['group_sizes']))} | {c['tolerance']:g} | {c['what']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the golden ONNX vectors of spec 9.8.")
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT, help="output folder (default: spec/vectors/onnx)")
    out = ap.parse_args(argv).out_dir
    paths = generate(out)
    print(f"wrote {len(paths)} files under {os.path.normpath(out)}")
    with open(os.path.join(out, "manifest.json")) as f:
        cases = json.load(f)["cases"]
    for c in cases:
        print(f"  {c['name']:36s} {c['format']:12s} {','.join(c['schemes']):11s} tol {c['tolerance']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
