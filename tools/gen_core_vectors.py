"""Write the golden corpus of the core quantizers under spec/vectors/core/.

One JSON file per case: the float input, the call (function and arguments),
and everything the spec says comes out of it: codes, packed bytes, scales,
zero points, the permutation, the double-quantization fields and the
dequantized values, every float also as the hex of its IEEE bits. Cases whose
input the spec rejects record the error instead. ``manifest.json`` lists every
case with what it exercises (its ``edges``) and the SHA-256 of its file;
``spec/vectors/README.md`` describes the layout precisely enough to write a
reader in any language.

Every file is byte-for-byte reproducible; tests/conformance/test_core_vectors.py
regenerates them into a temporary folder and compares, and checks every stored
case against the library field by field.

usage: python tools/gen_core_vectors.py [OUT_DIR]     (default: spec/vectors/core)
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

from monoquant_np import QuantizedTensor, dequantize, quantize  # noqa: E402
from monoquant_np.algorithms.gptq import gptq_from_hessian  # noqa: E402
from monoquant_np.nf4 import quantize_nf4  # noqa: E402
from monoquant_np.packing import pack_codes  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "vectors", "core")
FORMAT = "monoquant-np core vector 1"
TINY = 2.0**-149  # the smallest float32 subnormal
F16_TINY = 2.0**-24  # the smallest float16 subnormal


# ------------------------------------------------------------------ encoding (spec/vectors/README.md)
def encode(a: Any) -> dict:
    """One array: dtype, shape, and its elements in C order (floats: decimals and IEEE bits in hex)."""
    a = np.ascontiguousarray(a)
    out: dict = {"dtype": a.dtype.name, "shape": list(a.shape)}
    if a.dtype.kind == "f":
        width = {2: 4, 4: 8}[a.dtype.itemsize]
        out["values"] = a.astype(np.float64).ravel().tolist()
        out["bits"] = [f"{int(b):0{width}x}" for b in a.view(f"u{a.dtype.itemsize}").ravel()]
    else:
        out["values"] = [int(v) for v in a.ravel()]
    return out


def encode_bytes(a: np.ndarray) -> dict:
    """Packed bytes: ``{"dtype": "uint8", "shape": [n], "hex": ...}``."""
    a = np.ascontiguousarray(a, dtype=np.uint8).ravel()
    return {"dtype": "uint8", "shape": [int(a.size)], "hex": a.tobytes().hex()}


def encode_tensor(qt: QuantizedTensor) -> dict:
    """Every stored field of ``qt`` and its dequantized values (original order)."""
    out = {"scheme": qt.scheme, "bits": qt.bits, "signed": qt.signed, "shape": list(qt.shape), "axis": qt.axis,
           "block_size": qt.block_size, "codes": encode(qt.codes()), "data": encode_bytes(qt.data),
           "scale": encode(qt.scale), "dequantized": encode(dequantize(qt))}
    if qt.zero_point is not None:
        out["zero_point"] = encode(qt.zero_point)
        if qt.bits in (2, 4):
            out["zero_point_packed"] = encode_bytes(pack_codes(qt.zero_point, qt.bits))
    if qt.codebook is not None:
        out["codebook"] = encode(qt.codebook)
    if qt.perm is not None:
        out["perm"] = encode(np.asarray(qt.perm, np.int64))
    if qt.double_quant is not None:
        dq = qt.double_quant
        out["double_quant"] = {"codes": encode(dq.codes), "scale": encode(dq.scale),
                               "offset": encode(np.array(dq.offset, np.float32)), "block_size": dq.block_size}
    return out


# ------------------------------------------------------------------ the calls
def run(function: str, w: np.ndarray, params: dict, extra: dict) -> QuantizedTensor:
    """The library call a case records (the checking test makes the same call from the JSON)."""
    if function == "quantize":
        kw = dict(params)
        kw["scale_dtype"] = np.dtype(kw["scale_dtype"])
        return quantize(w, **kw)
    if function == "quantize_nf4":
        return quantize_nf4(w, **params | {"scale_dtype": np.dtype(params["scale_dtype"])})
    if function == "gptq_from_hessian":
        kw = dict(params)
        kw["scale_dtype"] = np.dtype(kw["scale_dtype"])
        return gptq_from_hessian(w, extra["hessian"], **kw)
    raise ValueError(f"unknown function {function!r}")


def q_params(group_size: int = 16, axis: int = 0, symmetric: bool = True, scale_dtype: str = "float32",
             int8_fallback: bool = True, double_quant: bool = False, dq_block_size: int = 256) -> dict:
    return {"group_size": group_size, "axis": axis, "symmetric": symmetric, "scale_dtype": scale_dtype,
            "int8_fallback": int8_fallback, "double_quant": double_quant, "dq_block_size": dq_block_size}


def nf4_params(block_size: int = 16, axis: int = 0, double_quant: bool = False, dq_block_size: int = 256,
               scale_dtype: str = "float32") -> dict:
    return {"block_size": block_size, "axis": axis, "double_quant": double_quant, "dq_block_size": dq_block_size,
            "scale_dtype": scale_dtype}


def grid(rng: np.random.Generator, shape: tuple[int, ...], step: float, lim: int) -> np.ndarray:
    """Random multiples of ``step`` in ``[-lim*step, lim*step]``: short decimals, exact in float32."""
    return (rng.integers(-lim, lim + 1, size=shape) * step).astype(np.float32)


def f32(values: Any, scale: float = 1.0) -> np.ndarray:
    return (np.asarray(values, np.float64) * scale).astype(np.float32)


def case(name: str, what: str, spec: str, edges: list[str], function: str, params: dict, w: np.ndarray,
         **extra: Any) -> dict:
    return {"name": name, "what": what, "spec": spec, "edges": edges, "function": function, "params": params,
            "w": np.ascontiguousarray(w, dtype=np.float32), "extra": extra}


# ------------------------------------------------------------------ the cases
def matrix_cases() -> list[dict]:
    """One case per (scheme x scale dtype x axis): int4, uint4, the 8-bit fallback, NF4."""
    rng = np.random.default_rng(20261207)
    out = []
    for axis in (0, 1):
        for sdt in ("float32", "float16"):
            shape = (35, 3) if axis == 0 else (3, 35)
            w = grid(rng, shape, 0.125, 24)
            for sym, scheme in ((True, "int4"), (False, "uint4")):
                out.append(case(f"{scheme}_{sdt}_axis{axis}_{shape[0]}x{shape[1]}_g16",
                                f"{scheme}, {sdt} scales, groups of 16 along axis {axis}, partial last group (35 = "
                                "16 + 16 + 3)", "3.1 3.2 3.4 4.2 5 6.1", ["matrix", "partial_group"], "quantize",
                                q_params(16, axis, sym, sdt), w))
            w8 = grid(rng, (5, 4) if axis == 0 else (4, 5), 0.25, 20)
            for sym, scheme in ((True, "int8"), (False, "uint8")):
                out.append(case(f"{scheme}_fallback_{sdt}_axis{axis}_{w8.shape[0]}x{w8.shape[1]}_g128",
                                f"the {scheme} per-channel fallback (axis length 5 < group 128), {sdt} scales, "
                                f"axis {axis}", "7 3.4", ["matrix", "int8_fallback", "k_lt_group"], "quantize",
                                q_params(128, axis, sym, sdt), w8))
        shape = (40, 3) if axis == 0 else (3, 40)
        wn = grid(rng, shape, 0.0625, 32)
        for sdt in ("float32", "float16"):
            out.append(case(f"nf4_{sdt}_axis{axis}_{shape[0]}x{shape[1]}_b16",
                            f"NF4, {sdt} absmax, blocks of 16 along axis {axis}, partial last block (40 = 16 + 16 + 8)",
                            "10.2", ["matrix", "partial_group"], "quantize_nf4", nf4_params(16, axis, scale_dtype=sdt),
                            wn))
    return out


def worked_examples() -> list[dict]:
    """The spec's own worked examples, as vectors."""
    return [
        case("spec_3_1_ties", "spec 3.1's example: s = 1, ties to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2)",
             "3.1 4.2", ["ties", "worked_example"], "quantize", q_params(8, int8_fallback=False),
             f32([7, 0.5, 1.5, 2.5, -0.5, -2.5, 3.49, -7])),
        case("spec_3_2_uint4", "spec 3.2's example: z = 4, 11.5 -> 12 + 4 saturates at 15", "3.2",
             ["ties", "saturation", "worked_example"], "quantize", q_params(4, symmetric=False, int8_fallback=False),
             f32([-3.5, 11.5, 0, 1.5])),
        case("spec_6_2_matmul_weight", "spec 6.2's weight: 3.5 -> 4 and 7/2 -> 4 (ties to even)", "6.2",
             ["ties", "worked_example"], "quantize", q_params(2), f32([[7, -14], [3.5, 7]])),
        case("spec_7_int8_example", "spec 7's example: codes [[127, -127], [-64, 64]], bytes 7F 81 C0 40", "7",
             ["int8_fallback", "ties", "worked_example"], "quantize", q_params(128), f32([[127, -1], [-63.5, 0.5]])),
        case("spec_9_1_example", "spec 9.1's example: bytes 92 17 2F 97", "9.1 5", ["worked_example"], "quantize",
             q_params(2), f32([[0.5, -1.75], [1.75, 0.25], [-0.25, 1.0], [1.75, -3.5]])),
        case("spec_10_4_nf4_example1", "spec 10.4 example 1: codes [0, 10, 15, 7], bytes A0 7F", "10.4",
             ["worked_example"], "quantize_nf4", nf4_params(4), f32([-2, 0.5, 2, 0])),
        case("spec_10_4_nf4_tie", "spec 10.4 example 2: a value exactly on the midpoint 7|8 takes code 7", "10.3 10.4",
             ["ties", "worked_example"], "quantize_nf4", nf4_params(4),
             np.array([1.0, 0.03979015, np.nextafter(np.float32(0.03979015), np.float32(1)), -0.03979015],
                      np.float32)),
        case("spec_10_4_nf4_two_columns", "spec 10.4 example 3: r = float32(1 / 0.9)", "10.4", ["worked_example"],
             "quantize_nf4", nf4_params(4), f32([[0.3, -0.9], [-0.6, 0.6], [0.9, 0.1], [0.0, 0.45]])),
    ]


def scale_edge_cases() -> list[dict]:
    """Zero, subnormal, underflowing and overflowing scales (spec 3.3, 3.4)."""
    rng = np.random.default_rng(33)
    zeros = grid(rng, (40, 3), 0.25, 8)
    zeros[16:32, 0] = 0.0
    zeros[16:32, 1] = -0.0
    zeros[32:, 2] = 0.0
    den = (rng.integers(-40, 41, (20, 3)) * TINY).astype(np.float32)
    out = [
        case("all_zero_groups_int4", "all-zero groups (+0.0 and -0.0 elements): s = 0, codes 0, w' = +0.0", "3.3",
             ["all_zero_group"], "quantize", q_params(16), zeros),
        case("all_zero_groups_uint4", "all-zero groups, uint4: s = 0, z = 0, codes 0", "3.3", ["all_zero_group"],
             "quantize", q_params(16, symmetric=False), zeros),
        case("all_zero_groups_nf4", "all-zero blocks, NF4: absmax 0, code 7", "10.2", ["all_zero_group"],
             "quantize_nf4", nf4_params(16), zeros),
        case("float32_underflow_int4", "spec 3.3: max|w| = 3 * 2^-149, s = (3/7) 2^-149 rounds to 0", "3.3",
             ["float32_underflow", "worked_example"], "quantize", q_params(2, int8_fallback=False), f32([3, -1], TINY)),
        case("float32_underflow_uint4", "spec 3.3: hi - lo = 4 * 2^-149, s = (4/15) 2^-149 rounds to 0", "3.3",
             ["float32_underflow", "worked_example"], "quantize", q_params(2, symmetric=False, int8_fallback=False),
             f32([3, -1], TINY)),
        case("float32_underflow_thresholds_int4",
             "columns with max|w| = 3 and 4 * 2^-149 (scale 0 and 2^-149), and 63/64 * 2^-149 for int8 below",
             "3.3", ["float32_underflow", "subnormal_scale"], "quantize", q_params(1), f32([[3, 4, 63, 64]], TINY)),
        case("float32_underflow_thresholds_int8", "int8 fallback: max|w| = 63 * 2^-149 -> 0, 64 * 2^-149 -> 2^-149",
             "3.3 7", ["float32_underflow", "subnormal_scale", "int8_fallback"], "quantize", q_params(128),
             f32([[63, 64], [1, -1]], TINY)),
        case("subnormal_scales_float32", "float32 subnormal weights and scales (multiples of 2^-149)", "3.3 3.4",
             ["subnormal_scale", "saturation"], "quantize", q_params(8), den),
        case("subnormal_scales_uint4", "float32 subnormal weights and scales, uint4", "3.3 3.4",
             ["subnormal_scale"], "quantize", q_params(8, symmetric=False), den),
        case("minus8_subnormal_float32_scale", "spec 3.4: s = (10/7) 2^-149 rounds to 2^-149, -10 -> -8", "3.4",
             ["minus8", "subnormal_scale", "worked_example"], "quantize", q_params(2, int8_fallback=False),
             f32([-10, 1], TINY)),
        case("minus8_subnormal_float16_scale", "float16 scale (10/7) 2^-24 rounds to 2^-24, -10 -> -8", "3.4",
             ["minus8", "subnormal_scale"], "quantize", q_params(2, scale_dtype="float16", int8_fallback=False),
             f32([-10, 3], F16_TINY)),
        case("float16_subnormal_scale", "spec 3.4: 7e-7 / 7 rounds to the float16 subnormal 2 * 2^-24, code 6",
             "3.4", ["subnormal_scale", "worked_example"], "quantize", q_params(1, scale_dtype="float16"),
             f32([7e-7])),
        case("float16_underflow", "float16 scales at or below 2^-25 round to 0: the group dequantizes to 0", "3.3 3.4",
             ["f16_underflow"], "quantize", q_params(2, scale_dtype="float16", int8_fallback=False),
             f32([[7 * 2.0**-25, 7 * 2.0**-25 * 1.01], [-1e-8, 1e-9]])),
    ]
    return out + f16_boundary_cases()


def f16_boundary_cases() -> list[dict]:
    """Spec 3.4's table: the largest group stored in float16 and the first that overflows, per scheme."""
    out = []
    for scheme, sym, fallback, stored, over in (("int4", True, False, 458639.96875, 458640.0),
                                                  ("uint4", False, False, 982799.9375, 982800.0),
                                                  ("int8", True, True, 8321039.5, 8321040.0),
                                                  ("uint8", False, True, 16707599.0, 16707600.0)):
        for side, value in (("stored", stored), ("overflow", over)):
            w = f32([[value, -1.0 if sym else 0.0]]).T  # (2, 1): a uint group [0, x] spans x
            params = q_params(3 if fallback else 2, scale_dtype="float16", symmetric=sym, int8_fallback=fallback)
            what = (f"{scheme}, float16 scale: the largest group stored (scale 65519.99609375 -> 65504)"
                    if side == "stored" else f"{scheme}, float16 scale: the first group that overflows (ValueError)")
            out.append(case(f"f16_boundary_{scheme}_{side}", what, "3.4", ["f16_overflow_boundary"], "quantize",
                            params, w))
    return out


def structure_cases() -> list[dict]:
    """Spikes, ties, partial groups, short axes, other ranks, GPTQ act-order."""
    rng = np.random.default_rng(77)
    spike = (rng.standard_normal((32, 4)) * 1e-3).astype(np.float32)
    spike[5, 1], spike[20, 3] = 100.0, -100.0
    ties = ((rng.integers(-7, 7, (16, 4)) + 0.5) * 0.25).astype(np.float32)
    ties[0], ties[8] = 1.75, -1.75  # s = 0.25 in every group: w / s lands on .5 elsewhere
    uties = ties.copy()
    uties[[0, 8]], uties[[1, 9]] = -1.75, 2.0  # hi - lo = 3.75: s = 0.25, z = 7
    w_gptq = grid(rng, (32, 6), 0.125, 16)
    x_cal = grid(rng, (48, 32), 0.5, 4)
    x_cal[:, 3] *= 8  # a loud input channel: act-order moves it first
    h = (x_cal.T.astype(np.float64) @ x_cal.astype(np.float64)).astype(np.float32)
    return [
        case("single_spike_int4", "one +-100 spike in groups of N(0, 1e-3): the rest round to 0", "3.1",
             ["spike"], "quantize", q_params(16), spike),
        case("single_spike_nf4", "one +-100 spike per block, NF4", "10.2", ["spike"], "quantize_nf4",
             nf4_params(16), spike),
        case("exact_ties_int4", "every w / s is k + 0.5 except the extremes: ties to even", "4.2",
             ["ties"], "quantize", q_params(8, scale_dtype="float16"), ties),
        case("exact_ties_uint4", "s = 0.25, z = 7 in every group, w / s on .5 elsewhere", "3.2 4.2", ["ties"],
             "quantize", q_params(8, symmetric=False), uties),
        case("partial_last_group_of_one", "K = 17, groups of 16: the last group has one row", "2",
             ["partial_group"], "quantize", q_params(16, symmetric=False), grid(rng, (17, 3), 0.25, 8)),
        case("k_lt_group_no_fallback", "K = 5 < group 16 with int8_fallback=False: one partial int4 group", "2 7",
             ["k_lt_group", "partial_group"], "quantize", q_params(16, int8_fallback=False),
             grid(rng, (5, 3), 0.25, 8)),
        case("k_lt_block_nf4", "K = 5 < block 64: one partial NF4 block (no fallback)", "10.2",
             ["k_lt_group", "partial_group"], "quantize_nf4", nf4_params(64), grid(rng, (5, 3), 0.25, 8)),
        case("rank1_int4", "a 1-D weight, 21 elements in groups of 8", "2", ["rank"], "quantize", q_params(8),
             grid(rng, (21,), 0.5, 8)),
        case("rank3_uint4_axis1", "a 3-D weight (2, 20, 3), groups of 8 along axis 1", "2", ["rank", "partial_group"],
             "quantize", q_params(8, axis=1, symmetric=False), grid(rng, (2, 20, 3), 0.25, 8)),
        case("gptq_act_order_int4", "GPTQ with act-order: codes stored in perm order, dequantize undoes it",
             "14.2 6.1", ["gptq_act_order"], "gptq_from_hessian",
             {"group_size": 8, "symmetric": True, "damp": 0.01, "act_order": True, "block_size": 16,
              "scale_dtype": "float32"}, w_gptq, hessian=h),
        case("gptq_act_order_uint4", "GPTQ with act-order, uint4, float16 scales", "14.2 6.1", ["gptq_act_order"],
             "gptq_from_hessian", {"group_size": 8, "symmetric": False, "damp": 0.01, "act_order": True,
                                   "block_size": 16, "scale_dtype": "float16"}, w_gptq, hessian=h),
    ]


def nf4_and_dq_cases() -> list[dict]:
    """Subnormal NF4 absmax (spec 10.2) and double quantization in every scheme (spec 11)."""
    rng = np.random.default_rng(11)
    w = grid(rng, (48, 4), 0.125, 24)
    w[:, 0] *= np.float32(24)  # scales of very different sizes: coarse second-level steps
    w[16:32, 2] = 0.0  # an all-zero group: its rebuilt scale is forced positive (spec 11.1)
    w8 = grid(rng, (6, 5), 0.25, 30)
    w8[:, 0] *= np.float32(40)
    dq = {"double_quant": True, "dq_block_size": 4}
    nf4_sub = np.zeros((4, 3), np.float32)
    nf4_sub[:, 0] = f32([57, 10, -3, 0], TINY)
    nf4_sub[:, 1] = f32([1, 0.5, -0.25, 0], 2.0**-127)
    nf4_sub[:, 2] = f32([1, 0.5, -0.25, 0], 2.0**-126)
    return [
        case("nf4_float16_absmax_example", "spec 10.2: a16 = 0.89990234, x = -1.0001 for -0.9, codes [11, 0, 14, 7]",
             "10.2", ["worked_example"], "quantize_nf4", nf4_params(4, scale_dtype="float16"),
             f32([0.3, -0.9, 0.6, 0])),
        case("nf4_float16_absmax_underflow", "float16 absmax 2^-25 rounds to 0: codes 7, the block dequantizes to 0",
             "10.2 3.4", ["f16_underflow"], "quantize_nf4", nf4_params(3, scale_dtype="float16"),
             f32([2.0**-25, -(2.0**-26), 1e-9])),
        case("nf4_float16_absmax_overflow", "absmax 65520 does not fit float16 (ValueError)", "10.2 3.4",
             ["f16_overflow_boundary"], "quantize_nf4", nf4_params(1, scale_dtype="float16"), f32([65520.0])),
        case("nf4_subnormal_absmax", "spec 10.2: absmax 57 * 2^-149, 2^-127 (lifted by 2^24) and 2^-126 (normal): "
             "codes [15, 9, 6, 7] and [15, 12, 4, 7]", "10.2", ["nf4_subnormal_absmax", "worked_example"],
             "quantize_nf4", nf4_params(4), nf4_sub),
        case("dq_int4", "double-quantized int4 scales, 3 second-level blocks of 4 (the last partial)", "11.1 11.2",
             ["double_quant"], "quantize", q_params(16, **dq), w),
        case("minus8_double_quant", "a rebuilt scale below max|w_g| / 7.5: the group's negative extreme gets -8",
             "11.2 3.1", ["double_quant", "minus8"], "quantize", q_params(4, double_quant=True, dq_block_size=4),
             f32([[8.75, -2.25, 2.25, -3.5], [-26.25, -1.75, 2.0, 2.0], [61.25, 3.5, 3.5, -2.5],
                  [-113.75, -3.0, 2.0, 4.0], [122.5, 1.5, 3.75, 3.0], [-140.0, -3.25, 3.0, -3.5],
                  [140.0, 2.75, 3.75, -1.25], [-105.0, 0.25, 4.0, -1.0]])),
        case("dq_uint4", "double-quantized uint4 scales (zero points kept)", "11.1 11.2", ["double_quant"],
             "quantize", q_params(16, symmetric=False, **dq), w),
        case("dq_int8_fallback", "double-quantized int8 per-channel scales", "7 11", ["double_quant", "int8_fallback"],
             "quantize", q_params(128, **dq), w8),
        case("dq_uint8_fallback", "double-quantized uint8 per-channel scales", "7 11",
             ["double_quant", "int8_fallback"], "quantize", q_params(128, symmetric=False, **dq), w8),
        case("dq_nf4", "double-quantized NF4 absmax (codes from the rebuilt absmax)", "10 11",
             ["double_quant"], "quantize_nf4", nf4_params(16, **dq), w),
        case("dq_positivity", "spec 11.3 example 2's scales [0, 4, 4, 4]: the zero scale is raised to 0.0236",
             "11.1 11.3", ["double_quant", "all_zero_group", "worked_example"], "quantize",
             q_params(1, double_quant=True, dq_block_size=4), f32([[0, 28, 28, -28]])),
        case("dq_float16_first_level", "float16 first-level scales, double-quantized (rebuilt scales are float32)",
             "3.4 11", ["double_quant"], "quantize", q_params(16, scale_dtype="float16", **dq), w),
    ]


def all_cases() -> list[dict]:
    return matrix_cases() + worked_examples() + scale_edge_cases() + structure_cases() + nf4_and_dq_cases()


# ------------------------------------------------------------------ writing
def build(c: dict) -> dict:
    """The JSON document of one case."""
    doc = {"format": FORMAT, "name": c["name"], "what": c["what"], "spec": c["spec"], "edges": c["edges"],
           "function": c["function"], "params": c["params"], "input": encode(c["w"])}
    if "hessian" in c["extra"]:
        doc["hessian"] = encode(c["extra"]["hessian"])
    try:
        qt = run(c["function"], c["w"], c["params"], c["extra"])
    except ValueError as exc:
        doc["error"] = {"type": "ValueError", "message": str(exc)}
    else:
        doc["output"] = encode_tensor(qt)
    return doc


def write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def generate(out_dir: str = DEFAULT_OUT) -> list[str]:
    """Write every case and ``manifest.json`` under ``out_dir``; return the relative paths written."""
    manifest: dict = {"format": FORMAT, "spec": "spec/vectors/README.md", "cases": []}
    written = []
    names = set()
    for c in all_cases():
        if c["name"] in names:
            raise ValueError(f"duplicate case name {c['name']!r}")
        names.add(c["name"])
        doc = build(c)
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        rel = c["name"] + ".json"
        write_file(os.path.join(out_dir, rel), data)
        written.append(rel)
        manifest["cases"].append({"file": rel, "function": c["function"], "scheme": doc.get("output", {}).get(
            "scheme", "error"), "edges": c["edges"], "what": c["what"], "sha256": hashlib.sha256(data).hexdigest()})
    write_file(os.path.join(out_dir, "manifest.json"), (json.dumps(manifest, indent=1) + "\n").encode())
    write_file(os.path.join(out_dir, "README.md"), readme(manifest).encode())
    return written + ["manifest.json", "README.md"]


def readme(manifest: dict) -> str:
    """The folder's table of cases and its counts per scheme and per edge."""
    per_scheme, per_edge = counts(manifest)
    lines = ["# The core corpus", "",
             "Written by `python tools/gen_core_vectors.py`; do not edit by hand (a test regenerates it and",
             "checks every case against the library). The file layout is described in `../README.md`.", "",
             f"{len(manifest['cases'])} cases. Per scheme (`error`: the input is rejected with `ValueError`): "
             + ", ".join(f"{k} {v}" for k, v in sorted(per_scheme.items())) + ".", "",
             "Per edge: " + ", ".join(f"`{k}` {v}" for k, v in sorted(per_edge.items())) + ".", "",
             "| case | function | scheme | edges | what |", "| --- | --- | --- | --- | --- |"]
    for c in manifest["cases"]:
        lines.append(f"| `{c['file'][:-5]}` | {c['function']} | {c['scheme']} | {', '.join(c['edges'])} | "
                     f"{c['what']} |")
    return "\n".join(lines) + "\n"


def counts(manifest: dict) -> tuple[dict[str, int], dict[str, int]]:
    """Cases per scheme and per edge."""
    per_scheme: dict[str, int] = {}
    per_edge: dict[str, int] = {}
    for c in manifest["cases"]:
        per_scheme[c["scheme"]] = per_scheme.get(c["scheme"], 0) + 1
        for e in c["edges"]:
            per_edge[e] = per_edge.get(e, 0) + 1
    return per_scheme, per_edge


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the golden corpus of the core quantizers (spec/vectors/core).")
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT, help="output folder (default: spec/vectors/core)")
    out = ap.parse_args(argv).out_dir
    paths = generate(out)
    with open(os.path.join(out, "manifest.json")) as f:
        per_scheme, per_edge = counts(json.load(f))
    print(f"wrote {len(paths)} files under {os.path.normpath(out)}")
    print("per scheme: " + ", ".join(f"{k} {v}" for k, v in sorted(per_scheme.items())))
    print("per edge:   " + ", ".join(f"{k} {v}" for k, v in sorted(per_edge.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
