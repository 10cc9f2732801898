"""Write the golden vectors of spec 12.8: dialect vectors and ONNX node tests.

* ``spec/vectors/dialects/<dialect>/<case>.json``: per case the float input,
  the codes, the packed bytes of the dialect, the scales and zero points, and
  the dequantized values. Floats are given twice: as decimal (for reading)
  and as the hex of their IEEE bits (for bit-exact checks); bytes as hex.
* ``spec/vectors/onnx_node/test_dequantizelinear_blocked_*``: ONNX backend
  node tests (``model.onnx`` + ``test_data_set_0/input_*.pb``, ``output_0.pb``)
  for blocked INT4/UINT4 ``DequantizeLinear`` (opset 21), which ONNX's own
  suite lacks: odd sizes, partial last blocks, axis 1, float16 scales.
* ``manifest.json`` in each folder: what every case exercises and the SHA-256
  of every file.

Every file is byte-for-byte reproducible; tests/conformance/test_vectors.py regenerates
them into a temporary folder and compares.

usage: python tools/gen_vectors.py [OUT_DIR]     (default: spec/vectors)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monoquant_np import QuantizedTensor, dequantize, pack_int4, quantize  # noqa: E402
from monoquant_np import formats as F  # noqa: E402
from monoquant_np.nf4 import quantize_nf4  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "vectors")


# ------------------------------------------------------------------ encoding helpers
def _floats(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    bits = a.view(np.uint16 if a.dtype == np.float16 else np.uint32)
    width = 4 if a.dtype == np.float16 else 8
    return {"dtype": a.dtype.name, "shape": list(a.shape), "values": a.astype(np.float64).ravel().tolist(),
            "bits": [f"{int(b):0{width}x}" for b in bits.ravel()]}


def _ints(a: np.ndarray) -> dict:
    return {"dtype": a.dtype.name, "shape": list(a.shape), "values": a.ravel().tolist()}


def _bytes(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "hex": a.view(np.uint8).tobytes().hex()}


def _qt(qt: QuantizedTensor) -> dict:
    out = {"shape": list(qt.shape), "axis": qt.axis, "block_size": qt.block_size, "scheme": qt.scheme,
           "codes": _ints(qt.codes()), "scale": _floats(qt.scale), "dequantized": _floats(dequantize(qt))}
    if qt.zero_point is not None:
        out["zero_point"] = _ints(qt.zero_point)
    if qt.perm is not None:
        out["perm"] = _ints(qt.perm)
    return out


def _grid(rng: np.random.Generator, shape: tuple[int, ...], step: float, lim: int) -> np.ndarray:
    """Random multiples of ``step`` in ``[-lim*step, lim*step]``: short decimals, exact in float32."""
    return (rng.integers(-lim, lim + 1, size=shape) * step).astype(np.float32)


# ------------------------------------------------------------------ dialect cases
def _dialect_cases() -> list[tuple[str, str, str, Callable[[], dict]]]:
    rng = np.random.default_rng(20261122)
    w35 = _grid(rng, (35, 3), 0.25, 8)
    w35[16:32, 1] = 0.0  # an all-zero block
    wrows = _grid(rng, (2, 64), 0.125, 16)
    wrows[0, :32] = 0.0  # an all-zero Q4_0 block
    wnf4 = _grid(rng, (2, 64), 0.0625, 20)
    codes = rng.integers(0, 16, (32, 8))
    zeros = rng.integers(1, 16, (2, 8))
    scales = (2.0 ** rng.integers(-5, -1, (2, 8))).astype(np.float16)
    perm = rng.permutation(32)
    g_idx = np.empty(32, np.int32)
    g_idx[perm] = np.arange(32) // 16

    def mnb(sym: bool) -> dict:
        qt = F.ort_default_quantize(w35, block_size=16, symmetric=sym)
        b, s, z = F.matmulnbits_pack(qt)
        packed = {"B": _bytes(b), "scales": _floats(s)}
        if z is not None:
            packed["zero_points"] = _bytes(z)
        return {"input": _floats(w35), "params": {"block_size": 16, "symmetric": sym}, "canonical": _qt(qt),
                "packed": packed}

    # spec 12.2's edges, one block per row: 1/d overflows (every code 0, d stored as -0.0); the float32
    # intermediate that a float64 port rounds the other way; an all-zero block; |m| = 2^-125 (1/d = -inf)
    # next to 2^-124 (finite); a negative extreme (d > 0) with a zero
    wedge = np.zeros((5, 32), np.float32)
    wedge[0, :2] = [2e-39, -1e-39]
    wedge[1, :2] = [7.0, 6.5625]
    wedge[3, :3] = [2.0**-125, -(2.0**-126), 2.0**-127]
    wedge[4, :3] = [-3.0, 1.5, 0.375]

    def gguf(fmt: str, w: np.ndarray = wrows) -> dict:
        q, dec = {"Q4_0": (F.q4_0_quantize, F.q4_0_decode), "Q8_0": (F.q8_0_quantize, F.q8_0_decode),
                  "Q4_1": (F.q4_1_quantize, None)}[fmt]
        data = q(w)
        deq = {"Q4_0": F.q4_0_dequantize, "Q8_0": F.q8_0_dequantize, "Q4_1": F.q4_1_dequantize}[fmt](data, w.shape)
        out = {"input": _floats(w), "params": {"format": fmt}, "packed": {"data": _bytes(data)},
               "dequantized": _floats(deq)}
        if dec is not None:
            out["canonical"] = _qt(dec(data, w.shape))
        return out

    def bnb() -> dict:
        qt = quantize_nf4(wnf4, block_size=64, axis=1)
        packed, absmax = F.bnb_nf4_pack(qt)
        return {"input": _floats(wnf4), "params": {"blocksize": 64}, "canonical": _qt(qt),
                "packed": {"packed": _bytes(packed), "absmax": _floats(absmax)}}

    def gptq(act: bool) -> dict:
        qt = QuantizedTensor(pack_int4(codes if not act else codes[perm]), (32, 8), 0, 16, scales,
                             zeros.astype(np.uint8), signed=False, perm=perm if act else None)
        t = F.gptq_encode(qt)
        qt = F.gptq_decode(**t)  # the canonical perm: stable argsort of g_idx
        return {"params": {"group_size": 16, "checkpoint_format": "gptq", "act_order": act}, "canonical": _qt(qt),
                "packed": {"qweight": _bytes(t["qweight"]), "qzeros": _bytes(t["qzeros"]),
                           "scales": _floats(t["scales"]), "g_idx": _ints(t["g_idx"])}}

    def awq() -> dict:
        qt = QuantizedTensor(pack_int4(codes), (32, 8), 0, 16, scales, zeros.astype(np.uint8), signed=False)
        t = F.awq_encode(qt)
        return {"params": {"group_size": 16}, "canonical": _qt(qt),
                "packed": {"qweight": _bytes(t["qweight"]), "qzeros": _bytes(t["qzeros"]),
                           "scales": _floats(t["scales"])}}

    def onnx_int4() -> dict:
        qt = quantize(w35, group_size=16)
        return {"input": _floats(w35), "params": {"group_size": 16, "axis": 0, "symmetric": True},
                "canonical": _qt(qt), "packed": {"data": _bytes(qt.data)}}

    return [
        ("onnx", "int4_k35_n3_g16", "the spec's own INT4, ONNX nibble order (low first), partial last group",
         onnx_int4),
        ("matmulnbits", "ort_default_sym_k35_n3_bs16", "onnxruntime DEFAULT quantizer, symmetric: s = signed max / -8",
         lambda: mnb(True)),
        ("matmulnbits", "ort_default_asym_k35_n3_bs16", "onnxruntime DEFAULT quantizer, asymmetric, packed zero points",
         lambda: mnb(False)),
        ("gguf", "q4_0_2x64", "GGUF Q4_0 incl. an all-zero block (d = -0.0)", lambda: gguf("Q4_0")),
        ("gguf", "q4_1_2x64", "GGUF Q4_1 (min offset: no canonical form)", lambda: gguf("Q4_1")),
        ("gguf", "q8_0_2x64", "GGUF Q8_0, ties rounded away from zero", lambda: gguf("Q8_0")),
        ("gguf", "q4_0_edges_5x32", "GGUF Q4_0 edges (spec 12.2): 1/d overflows (codes 0, d = -0.0), the float32 "
         "rounding a float64 port misses ([7, 6.5625]: code 0), all-zero, |m| = 2^-125, signed zeros",
         lambda: gguf("Q4_0", wedge)),
        ("gguf", "q4_1_edges_5x32", "GGUF Q4_1 on the same edge blocks (non-finite 1/d: codes 0, m = -0.0)",
         lambda: gguf("Q4_1", wedge)),
        ("gguf", "q8_0_edges_5x32", "GGUF Q8_0 on the same edge blocks (non-finite 1/d: codes 0)",
         lambda: gguf("Q8_0", wedge)),
        ("bnb", "nf4_2x64_b64", "bitsandbytes NF4, high nibble first, absmax per 64", bnb),
        ("gptq", "gptq_v1_k32_n8_g16", "AutoGPTQ v1, zero points minus one", lambda: gptq(False)),
        ("gptq", "gptq_v1_actorder_k32_n8_g16", "AutoGPTQ v1 with act-order g_idx -> perm", lambda: gptq(True)),
        ("awq", "awq_gemm_k32_n8_g16", "AutoAWQ WQLinear_GEMM, order 0,2,4,6,1,3,5,7", awq),
    ]


# ------------------------------------------------------------------ ONNX node tests
def _node_cases() -> list[dict]:
    rng = np.random.default_rng(21)

    def case(name, what, shape, axis, block, signed, sdt=np.float32):
        w = _grid(rng, shape, 0.25, 8)
        qt = quantize(w, group_size=block, axis=axis, symmetric=signed, scale_dtype=sdt, int8_fallback=False)
        return {"name": name, "what": what, "qt": qt}

    return [
        case("test_dequantizelinear_blocked_int4", "INT4, axis 0, block 2, (6, 4)", (6, 4), 0, 2, True),
        case("test_dequantizelinear_blocked_uint4", "UINT4 with UINT4 zero points, axis 0, block 2", (6, 4), 0, 2,
             False),
        case("test_dequantizelinear_blocked_int4_partial_block", "INT4 (5, 3): odd element count, last block of 1",
             (5, 3), 0, 2, True),
        case("test_dequantizelinear_blocked_uint4_axis1_odd", "UINT4 (3, 7), axis 1, block 3: partial last block",
             (3, 7), 1, 3, False),
        case("test_dequantizelinear_blocked_int4_float16_scale", "INT4, float16 scale -> float16 output", (8, 3), 0, 4,
             True, np.float16),
    ]


def _tensor(name: str, a: np.ndarray, elem: int | None = None) -> TensorProto:
    if elem is None:
        elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}[a.dtype]
        return helper.make_tensor(name, elem, a.shape, vals=np.ascontiguousarray(a).tobytes(), raw=True)
    return helper.make_tensor(name, elem, a.shape, vals=pack_int4(a).tobytes(), raw=True)


def build_node_case(c: dict) -> dict[str, bytes]:
    qt: QuantizedTensor = c["qt"]
    q4 = TensorProto.INT4 if qt.signed else TensorProto.UINT4
    sdt = TensorProto.FLOAT if qt.scale.dtype == np.float32 else TensorProto.FLOAT16
    inputs = [_tensor("x", qt.codes(), q4), _tensor("x_scale", qt.scale)]
    if qt.zero_point is not None:
        inputs.append(_tensor("x_zero_point", qt.zero_point, TensorProto.UINT4))
    node = helper.make_node("DequantizeLinear", [t.name for t in inputs], ["y"], axis=qt.axis,
                            block_size=qt.block_size)
    graph = helper.make_graph([node], c["name"], [helper.make_tensor_value_info(t.name, t.data_type, t.dims)
                                                  for t in inputs],
                              [helper.make_tensor_value_info("y", sdt, qt.shape)])
    model = helper.make_model(graph, producer_name="monoquant-np gen_vectors", opset_imports=[
        helper.make_opsetid("", 21)])
    model.ir_version = 10
    y = dequantize(qt, qt.scale.dtype)  # exact in float32, rounded once to the scale's type
    files = {"model.onnx": model.SerializeToString()}
    for i, t in enumerate(inputs):
        files[f"test_data_set_0/input_{i}.pb"] = t.SerializeToString()
    files["test_data_set_0/output_0.pb"] = _tensor("y", y).SerializeToString()
    return files


# ------------------------------------------------------------------ writing
def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate(out_dir: str = DEFAULT_OUT) -> list[str]:
    """Write every vector and both manifests under ``out_dir``; return the paths written."""
    written = []
    manifest: dict = {"spec": "spec/12-dialects.md section 12.8", "cases": []}
    for dialect, name, what, build in _dialect_cases():
        doc = {"dialect": dialect, "name": name, "what": what, **build()}
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        rel = f"{dialect}/{name}.json"
        _write(os.path.join(out_dir, "dialects", rel), data)
        written.append(os.path.join(out_dir, "dialects", rel))
        manifest["cases"].append({"file": rel, "dialect": dialect, "what": what, "sha256": _sha(data)})
    _write(os.path.join(out_dir, "dialects", "manifest.json"), (json.dumps(manifest, indent=1) + "\n").encode())
    node_manifest: dict = {"spec": "spec/12-dialects.md section 12.8", "opset": 21, "ir_version": 10,
                           "tolerance": 0.0, "cases": []}
    for c in _node_cases():
        files = build_node_case(c)
        for rel, data in files.items():
            _write(os.path.join(out_dir, "onnx_node", c["name"], rel), data)
            written.append(os.path.join(out_dir, "onnx_node", c["name"], rel))
        node_manifest["cases"].append({"name": c["name"], "what": c["what"],
                                       "sha256": {k: _sha(v) for k, v in sorted(files.items())}})
    _write(os.path.join(out_dir, "onnx_node", "manifest.json"), (json.dumps(node_manifest, indent=1) + "\n").encode())
    return written + [os.path.join(out_dir, d, "manifest.json") for d in ("dialects", "onnx_node")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the golden vectors of spec 12.8 (dialects, ONNX node tests).")
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT, help="output folder (default: spec/vectors)")
    out = ap.parse_args(argv).out_dir
    paths = generate(out)
    print(f"wrote {len(paths)} files under {os.path.normpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
