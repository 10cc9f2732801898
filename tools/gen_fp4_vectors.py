"""Write the golden vectors of MXFP4, NVFP4 and their element formats under spec/vectors/fp4/.

One JSON file per case (format ``monoquant-np fp4 vector 1``):

* ``input``: the float32 weight (``dtype``, ``shape``, ``values`` as decimals
  and ``bits``, the IEEE bits in hex, C order), and the call: ``function``
  (``quantize_mxfp4`` or ``quantize_nvfp4``), ``axis``, ``block_size``;
* ``output``: ``codes`` (E2M1 codes 0..15, C order), ``data`` (the packed
  bytes in hex, element 2i in the low nibble, = ONNX ``FLOAT4E2M1`` raw data),
  ``scale_codes`` (E8M0 or E4M3FN codes, group shape), ``tensor_scale_bits``
  (NVFP4's float32 ``g`` in hex; ``3f800000`` = 1.0 for MXFP4), ``scale_bits``
  (the float32 block scales ``S``) and ``dequantized_bits``.

``elements.json`` holds the element tables (every E2M1, E4M3FN and E8M0 code
with its float32 value's bits; every E2M1 midpoint with its code). Each
weight case also has ``<case>.onnx``: ``fp4_weight_model`` (spec 19.7), a
model without inputs whose output is the dequantized weight. ``manifest.json``
lists every file with what it exercises and its SHA-256.

Every file is byte-for-byte reproducible; tests/conformance/test_fp4_vectors.py
regenerates them into a temporary folder and compares, checks every case
against the library and runs every model in the ONNX reference evaluator.

usage: python tools/gen_fp4_vectors.py [OUT_DIR]     (default: spec/vectors/fp4)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monoquant_np import dequantize, quantize_mxfp4, quantize_nvfp4  # noqa: E402
from monoquant_np.e2m1 import E2M1_TIES_DOWN, E2M1_TIES_UP, E2M1_VALUES, e2m1_codes  # noqa: E402
from monoquant_np.fp8 import e4m3_values, e8m0_values  # noqa: E402
from monoquant_np.onnx.export.fp4_subgraph import fp4_weight_model  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "vectors", "fp4")
FORMAT = "monoquant-np fp4 vector 1"
FUNCTIONS = {"quantize_mxfp4": quantize_mxfp4, "quantize_nvfp4": quantize_nvfp4}
f32 = np.float32


def bits(a: Any) -> list[str]:
    return [f"{b:08x}" for b in np.ascontiguousarray(a, np.float32).view(np.uint32).ravel().tolist()]


def _col(values: list[float], *rest: list[float]) -> np.ndarray:
    return np.array([values, *rest], f32).T.copy() if rest else np.array(values, f32)


def cases() -> list[tuple[str, str, np.ndarray, int, int, str]]:
    """``(name, function, w, axis, block_size, what)`` of every weight case."""
    mids = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    rng = np.random.default_rng(2026)
    normal = (rng.standard_normal((64, 4)) * 0.05).astype(f32)
    return [
        ("mxfp4_worked_example", "quantize_mxfp4", _col([7.0, -1.25, 0.3, 0.0]), 0, 4,
         "spec 18.5: saturation (7 -> 6), a tie (-1.25 -> -1), 0.3 -> 0.5"),
        ("mxfp4_all_zero_blocks", "quantize_mxfp4", np.concatenate([np.zeros(32, f32), normal[:32, 0]]), 0, 32,
         "an all-zero block (E8M0 code 0) next to a normal one"),
        ("mxfp4_power_of_two_amax", "quantize_mxfp4", _col([8.0, 1.0, -3.0, 0.5, 4.0, -4.0, 2.0, 0.25]), 0, 4,
         "amax exactly 8 and 4: the scale's exponent and a 0.25 tie to 0"),
        ("mxfp4_subnormal_and_clamped", "quantize_mxfp4",
         _col([2.0**-126, 2.0**-127, -(2.0**-128), 0.0, 1e-40, -1e-41, 2.0**-149, 0.0]), 0, 4,
         "the exponent clamped to -127: a smallest-normal block and a float32-subnormal block"),
        ("mxfp4_huge_amax", "quantize_mxfp4", _col([3.4e38, -1e38, 1e37, 0.0, 3.4028235e38, 1.0, -2.0, 0.0]), 0, 4,
         "amax near float32's largest: e = 125, saturation"),
        ("mxfp4_every_midpoint", "quantize_mxfp4", np.array(mids + [6.0] + [-m for m in mids] + [0.0], f32), 0, 16,
         "every E2M1 midpoint, both signs, with S = 1: every tie to the even mantissa"),
        ("mxfp4_every_midpoint_scaled", "quantize_mxfp4",
         np.array([m * 2.0**-10 for m in mids] + [6 * 2.0**-10] + [-m * 2.0**-10 for m in mids] + [-0.0], f32),
         0, 16, "the midpoints times 2**-10 (S = 2**-10), and -0.0 -> code 8"),
        ("mxfp4_matrix_axis1_partial", "quantize_mxfp4", normal[:5, :].T.reshape(4, 5).repeat(9, axis=1), 1, 32,
         "a (4, 45) matrix blocked along axis 1: 45 = 32 + 13, a partial last block"),
        ("mxfp4_matrix_axis0", "quantize_mxfp4", normal, 0, 32, "a (64, 4) normal weight along K"),
        ("nvfp4_worked_example", "quantize_nvfp4", _col([2688.0, 672.0, -12.0, 3.0, 0.1]), 0, 2,
         "spec 19.4: g = 1; E4M3 codes 126, 64 and the subnormal 9"),
        ("nvfp4_zero_and_tiny_blocks", "quantize_nvfp4",
         np.concatenate([_col([2688.0, 0, 0, 0]), np.zeros(4, f32), _col([2688 * 2.0**-20, 0, 0, 0])]), 0, 4,
         "an all-zero block (s = 1, code 56) and a tiny one clipped to 2**-9 (code 1)"),
        ("nvfp4_all_zero_tensor", "quantize_nvfp4", np.zeros((4, 3), f32), 0, 2,
         "g = 0: S = 0, every code 0"),
        ("nvfp4_huge_amax", "quantize_nvfp4", _col([3.4e38, -1e38, 1e30, 1.0] * 4), 0, 16,
         "amax near float32's largest"),
        ("nvfp4_subnormal_tensor", "quantize_nvfp4", _col([1e-40, -3e-41, 2.0**-149, 0.0] * 4), 0, 16,
         "a float32-subnormal tensor: g is itself subnormal (27 * 2**-149)"),
        ("nvfp4_matrix_axis0", "quantize_nvfp4", normal, 0, 16, "a (64, 4) normal weight along K"),
        ("nvfp4_matrix_axis1_partial", "quantize_nvfp4", normal[:5, :].T.reshape(4, 5).repeat(9, axis=1), 1, 16,
         "a (4, 45) matrix blocked along axis 1: 45 = 16 + 16 + 13"),
    ]


def weight_case(function: str, w: np.ndarray, axis: int, block_size: int) -> dict[str, Any]:
    qt = FUNCTIONS[function](w, axis=axis, block_size=block_size)
    assert qt.fp_scales is not None
    return {
        "format": FORMAT,
        "input": {"function": function, "axis": axis, "block_size": block_size, "dtype": "float32",
                  "shape": list(w.shape), "values": w.astype(np.float64).ravel().tolist(), "bits": bits(w)},
        "output": {"scheme": qt.scheme, "scale_kind": qt.fp_scales.kind,
                   "codes": qt.codes().ravel().tolist(), "data": qt.data.tobytes().hex(),
                   "scale_shape": list(qt.scale.shape), "scale_codes": qt.fp_scales.codes.ravel().tolist(),
                   "tensor_scale_bits": bits(np.float32(qt.fp_scales.tensor_scale))[0],
                   "scale_bits": bits(qt.scale), "dequantized_bits": bits(dequantize(qt))},
    }


def elements() -> dict[str, Any]:
    c16, c256 = np.arange(16, dtype=np.uint8), np.arange(256, dtype=np.uint8)
    mids = np.sort(np.concatenate([E2M1_TIES_DOWN, E2M1_TIES_UP]))
    mids = np.concatenate([mids, -mids]).astype(f32)
    return {"format": FORMAT,
            "e2m1": {"codes": c16.tolist(), "value_bits": bits(E2M1_VALUES)},
            "e2m1_midpoints": {"bits": bits(mids), "codes": e2m1_codes(mids).tolist()},
            "e4m3fn": {"codes": c256.tolist(), "value_bits": bits(e4m3_values(c256))},
            "e8m0": {"codes": c256.tolist(), "value_bits": bits(e8m0_values(c256))}}


def dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def generate(out_dir: str) -> list[str]:
    """Write every file into ``out_dir``; returns the file names, manifest last."""
    os.makedirs(out_dir, exist_ok=True)
    files: dict[str, tuple[bytes, str]] = {"elements.json": (dump(elements()), "every E2M1, E4M3FN, E8M0 code; "
                                                             "every E2M1 midpoint")}
    for name, function, w, axis, bs, what in cases():
        files[name + ".json"] = (dump(weight_case(function, w, axis, bs)), what)
        qt = FUNCTIONS[function](w, axis=axis, block_size=bs)
        files[name + ".onnx"] = (fp4_weight_model(qt).SerializeToString(), "fp4_weight_model of " + name)
    manifest = {"format": FORMAT, "files": [{"file": f, "what": what, "sha256": hashlib.sha256(data).hexdigest()}
                                            for f, (data, what) in files.items()]}
    files["manifest.json"] = (dump(manifest), "")
    for f, (data, _) in files.items():
        with open(os.path.join(out_dir, f), "wb") as fh:
            fh.write(data)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", nargs="?", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    names = generate(args.out_dir)
    print(f"wrote {len(names)} files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
