"""Write the golden vectors of the 2- and 8-bit group-wise codes (spec 20) under spec/vectors/bits/.

The same file layout as the core corpus (``spec/vectors/README.md``, written by
``tools/gen_core_vectors.py``, whose encoders this script uses): one JSON file
per ``quantize(w, bits=...)`` call with its input, arguments, scales, zero
points (also packed at the code width), codes, packed bytes and dequantized
values; ``manifest.json`` lists every case with the SHA-256 of its file.
tests/core/test_bits_vectors.py regenerates the folder and compares byte for
byte, and checks every case against the library.

usage: python tools/gen_bits_vectors.py [OUT_DIR]     (default: spec/vectors/bits)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from gen_core_vectors import FORMAT, build, case, f32, grid, q_params, write_file  # noqa: E402

DEFAULT_OUT = os.path.join(HERE, "..", "spec", "vectors", "bits")


def params(bits: int, group_size: int = 16, axis: int = 0, symmetric: bool = True, scale_dtype: str = "float32",
           int8_fallback: bool = True) -> dict:
    """``quantize``'s arguments with ``bits`` first (its signature order)."""
    return {"bits": bits, **q_params(group_size, axis, symmetric, scale_dtype, int8_fallback)}


def worked_examples() -> list[dict]:
    """Spec 20.4's table, one group of 4 each."""
    rows = [("int2", 2, True, [0.5, -1, 0.25, 0.75], "codes [0, -1, 0, 1] (0.5 -> 0), byte 4C"),
            ("uint2", 2, False, [-1, 0.5, 2, 0], "s = 1, z = 1, codes [0, 1, 3, 1], byte 74"),
            ("int8", 8, True, [-254, 1, 3, 127], "s = 2, codes [-127, 0, 2, 64] (ties to even), bytes 81 00 02 40"),
            ("uint8", 8, False, [0, 255, 127.5, 1.5], "s = 1, z = 0, codes [0, 255, 128, 2], bytes 00 FF 80 02")]
    return [case(f"spec_20_4_{scheme}", f"spec 20.4's {scheme} example: {what}", "20.1 20.3 20.4",
                 ["worked_example", "ties"], "quantize", params(bits, 4, symmetric=sym, int8_fallback=False), f32(w))
            for scheme, bits, sym, w, what in rows]


def matrix_cases() -> list[dict]:
    """(int2, uint2, int8, uint8) x (float32, float16 scales) x (axis 0, 1), partial last group."""
    rng = np.random.default_rng(20261208)
    out = []
    for axis in (0, 1):
        for sdt in ("float32", "float16"):
            shape = (35, 3) if axis == 0 else (3, 35)
            w = grid(rng, shape, 0.125, 24)
            for bits in (2, 8):
                for sym in (True, False):
                    scheme = f"{'int' if sym else 'uint'}{bits}"
                    out.append(case(f"{scheme}_{sdt}_axis{axis}_{shape[0]}x{shape[1]}_g16",
                                    f"{scheme}, {sdt} scales, groups of 16 along axis {axis}, partial last group "
                                    "(35 = 16 + 16 + 3)", "20.1 20.2 20.3 2.2", ["matrix", "partial_group"],
                                    "quantize", params(bits, 16, axis, sym, sdt), w))
    return out


def edge_cases() -> list[dict]:
    """Odd code counts, all-zero groups, the int8 fallback reached from bits=2, float16 overflow at qmax 1."""
    rng = np.random.default_rng(7)
    zeros = grid(rng, (12, 2), 0.5, 6)
    zeros[4:8] = 0.0
    return [
        case("int2_seven_codes", "7 codes: the last byte holds three codes and one zero pad", "20.3",
             ["odd_count"], "quantize", params(2, 4, int8_fallback=False), f32([1, -1, 0.5, -0.25, 2, -2, 0.75])),
        case("uint2_all_zero_group", "an all-zero group: s = 0, z = 0, codes 0", "20.1 3.3", ["all_zero_group"],
             "quantize", params(2, 4, symmetric=False), zeros),
        case("int2_all_zero_group", "an all-zero group: s = 0, codes 0", "20.1 3.3", ["all_zero_group"], "quantize",
             params(2, 4), zeros),
        case("int2_short_axis_fallback", "bits=2 with an axis shorter than the group: the int8 per-channel fallback",
             "20.5 7", ["int8_fallback", "k_lt_group"], "quantize", params(2, 128), grid(rng, (5, 3), 0.25, 20)),
        case("int8_group_wise_g8", "group-wise int8: groups of 8 along K, several scales per channel", "20.5",
             ["group_wise_int8"], "quantize", params(8, 8), grid(rng, (24, 3), 0.5, 200)),
        case("int2_float16_overflow", "float16 scale overflow at qmax = 1: max|w| = 70000 > 65504", "20.2 3.4",
             ["f16_overflow"], "quantize", params(2, 2, scale_dtype="float16"), f32([70000, 1])),
        case("int8_float16_holds_70000", "the same group at 8 bits: 70000 / 127 fits float16", "20.2 3.4",
             ["f16_limits"], "quantize", params(8, 2, scale_dtype="float16", int8_fallback=False), f32([70000, 1])),
    ]


def all_cases() -> list[dict]:
    return worked_examples() + matrix_cases() + edge_cases()


def generate(out_dir: str = DEFAULT_OUT) -> list[str]:
    """Write every case and ``manifest.json`` under ``out_dir``; return the relative paths written."""
    manifest: dict = {"format": FORMAT, "spec": "spec/20-bits.md", "cases": []}
    written = []
    for c in all_cases():
        doc = build(c)
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        rel = c["name"] + ".json"
        write_file(os.path.join(out_dir, rel), data)
        written.append(rel)
        manifest["cases"].append({"file": rel, "scheme": doc.get("output", {}).get("scheme", "error"),
                                  "edges": c["edges"], "what": c["what"], "sha256": hashlib.sha256(data).hexdigest()})
    write_file(os.path.join(out_dir, "manifest.json"), (json.dumps(manifest, indent=1) + "\n").encode())
    return written + ["manifest.json"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the golden vectors of 2- and 8-bit codes (spec/vectors/bits).")
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT, help="output folder (default: spec/vectors/bits)")
    out = ap.parse_args(argv).out_dir
    paths = generate(out)
    print(f"wrote {len(paths)} files under {os.path.normpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
