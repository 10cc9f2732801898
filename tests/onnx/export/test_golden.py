"""The golden ONNX vectors of spec 9.8 (spec/vectors/onnx/): reproducible, valid, and honoured by runtimes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from monoquant_np import dequant_matmul, dequantize  # noqa: E402
from monoquant_np.onnx import max_relative_error, run_model, tensor_from_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "spec" / "vectors" / "onnx"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
CASES = [c["name"] for c in MANIFEST["cases"]]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_onnx_vectors", ROOT / "tools" / "gen_onnx_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load(case: str):
    d = VECTORS / case
    x = numpy_helper.to_array(onnx.load_tensor(str(d / "test_data_set_0" / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(d / "test_data_set_0" / "output_0.pb")))
    return onnx.load(str(d / "model.onnx")), x, y


def test_regenerated_vectors_are_byte_identical(tmp_path):
    written = _generator().generate(str(tmp_path))
    on_disk = sorted(str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*") if p.is_file())
    assert sorted(written) == on_disk
    for rel in written:
        new, old = (tmp_path / rel).read_bytes(), (VECTORS / rel).read_bytes()
        assert new == old, f"{rel} differs from a fresh run of tools/gen_onnx_vectors.py"


def test_manifest_checksums():
    for c in MANIFEST["cases"]:
        for rel, digest in c["sha256"].items():
            assert hashlib.sha256((VECTORS / c["name"] / rel).read_bytes()).hexdigest() == digest, (c["name"], rel)


@pytest.mark.parametrize("case", CASES)
def test_golden_case_valid_and_onnxruntime_matches(case):
    model, x, y = _load(case)
    onnx.checker.check_model(model, full_check=True)
    tol = next(c["tolerance"] for c in MANIFEST["cases"] if c["name"] == case)
    got = run_model(model, x, accuracy_level=1)[0]
    assert max_relative_error(got, y) <= max(tol, 0.0) or np.array_equal(got, y), case
    data = np.load(VECTORS / case / "data.npz")
    np.testing.assert_array_equal(data["x"], x)
    np.testing.assert_array_equal(data["y"], y)


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("matmulnbits")])
def test_onnx_reference_evaluator_matches(case):
    """ONNX's own reference runtime checks itself against the vectors (standard operators only)."""
    model, x, y = _load(case)
    got = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert max_relative_error(got, y) <= 2e-5, case


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith(("mlp", "matmulnbits"))])
def test_numpy_spec_matches_vectors(case):
    """The spec's own float32 dequant_matmul agrees with the float64-accumulated expected outputs."""
    model, x, y = _load(case)
    inits = {t.name: t for t in model.graph.initializer}
    qt = tensor_from_onnx([t for n, t in inits.items() if n.startswith("fc0_w")])
    bias = numpy_helper.to_array(inits["fc0_bias"]) if "fc0_bias" in inits else None
    assert max_relative_error(dequant_matmul(x, qt, bias), y) <= 2e-5, case
    np.testing.assert_array_equal(np.load(VECTORS / case / "data.npz")["w_dequantized"], dequantize(qt))


def test_hand_checkable_case():
    model, x, y = _load("int4_sym_k4_n2_g2")
    # spec 9.8: W' = [[0.5, -1.75], [1.75, 0.25], [-0.25, 1.0], [1.75, -3.5]]
    assert y.tolist() == [[3.75, -4.0], [-0.875, -1.75]]
    w = {t.name: t for t in model.graph.initializer}["fc0_w"]
    assert list(w.raw_data) == [0x92, 0x17, 0x2F, 0x97]
    np.testing.assert_array_equal(run_model(model, x)[0], y)


def _floats(d: dict) -> np.ndarray:
    """A float array of weights.json, from its hex bits (spec/vectors/README.md)."""
    dt = np.dtype(d["dtype"])
    return np.array([int(b, 16) for b in d["bits"]], f"u{dt.itemsize}").view(dt).reshape(d["shape"])


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("matmulnbits")])
def test_float_weights_reproduce_the_model(case):
    """weights.json's float weights, quantized with its arguments, give the model's initializers exactly."""
    from monoquant_np import quantize

    model, _, _ = _load(case)
    inits = {t.name: t for t in model.graph.initializer}
    layers = json.loads((VECTORS / case / "weights.json").read_text())["layers"]
    assert len(layers) == sum(1 for n in inits if n.endswith("_w"))
    for layer in layers:
        w = _floats(layer["input"])
        qt = tensor_from_onnx([t for n, t in inits.items() if n.startswith(layer["initializer"])])
        params = dict(layer["params"])
        if "scale_dtype" in params:
            params["scale_dtype"] = np.dtype(params["scale_dtype"])
        assert quantize(w, **params).equals(qt), (case, layer["initializer"])
        np.testing.assert_array_equal(_floats(layer["dequantized"]), dequantize(qt))
    np.testing.assert_array_equal(np.load(VECTORS / case / "data.npz")["w"], _floats(layers[0]["input"]))
