"""The runtime adapters (spec 16.1): outputs, the runtime's own errors, missing runtimes reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from monoquant_np.testing.runtimes import (
    DEFAULT_RUNTIMES,
    INT8_ACTIVATIONS,
    RUNTIMES,
    Outcome,
    get_runtime,
    one_line,
    run_model,
)

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "onnx"


def _vector(name: str) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    data = np.load(VECTORS / name / "data.npz")
    return VECTORS / name / "model.onnx", {"x": data["x"]}, data["y"]


def _installed(name: str):
    rt = RUNTIMES[name]
    if not rt.installed:
        pytest.skip(f"{rt.package} is not installed (pip install '.[runtimes]')")
    return rt


def test_table():
    assert DEFAULT_RUNTIMES[:3] == ("onnxruntime", "onnxruntime-int8", "onnx-reference")
    assert {"openvino", "tract"} <= set(DEFAULT_RUNTIMES)
    assert RUNTIMES["onnxruntime-int8"].bound == INT8_ACTIVATIONS and RUNTIMES["onnxruntime"].bound is None
    assert RUNTIMES["openvino"].config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == "0"
    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in RUNTIMES["openvino-dynquant"].config


@pytest.mark.parametrize("name", [n for n in DEFAULT_RUNTIMES if RUNTIMES[n].bound is None])
def test_int8_per_channel_vector_runs_everywhere(name):
    """The INT8 per-channel golden model: every float32 runtime runs it within 2e-5 of the spec's output."""
    _installed(name)
    path, feeds, y = _vector("int8_perchannel_k8_n3")
    for model in (path, path.read_bytes(), onnx.load(path)):  # a path, bytes, a ModelProto
        out = run_model(name, model, feeds)
        assert out.ok, out.summary()
        assert out.outputs[0].shape == y.shape
        np.testing.assert_allclose(out.outputs[0], y, rtol=0, atol=2e-5 * np.abs(y).max())


def test_reference_evaluator_does_not_know_contrib_ops():
    path, feeds, _ = _vector("matmulnbits_uint4_k40_n3_g16_bias")
    out = run_model("onnx-reference", path, feeds)
    assert out.status == "load error" and "MatMulNBits" in out.message
    assert not out.outputs and "\n" not in out.summary()


def test_tract_has_no_4bit_tensors():
    _installed("tract")
    path, feeds, _ = _vector("int4_sym_k4_n2_g2")
    out = run_model("tract", path, feeds)
    assert out.status == "load error"
    assert out.summary() == "load error: Unknown DatumType Int4"  # the stack trace is cut


def test_openvino_partial_block_message_is_one_line():
    _installed("openvino")
    path, feeds, _ = _vector("int4_g24_k50_n3_bias")
    out = run_model("openvino", path, feeds)
    assert out.status == "load error"
    assert out.summary().startswith("load error: DequantizeLinear-21: DequantizeLinear doesn't support case")
    assert "(50)" in out.summary() and "(24)" in out.summary()


def test_run_error_is_reported():
    path, _, _ = _vector("int4_sym_k4_n2_g2")
    out = run_model("onnxruntime", path, {"x": np.zeros((1, 3), np.float32)})  # K is 4
    assert out.status == "run error" and out.message


def test_missing_runtime_is_reported_not_raised():
    missing = dataclasses.replace(RUNTIMES["onnxruntime"], name="absent", package="no-such-dist",
                                  module="no_such_module_monoquant")
    path, feeds, _ = _vector("int4_sym_k4_n2_g2")
    out = run_model(missing, path, feeds)
    assert out == Outcome("absent", "not installed", (), "no-such-dist is not installed")
    assert out.summary() == "not installed: no-such-dist is not installed"
    assert not missing.installed and missing.version is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="runtime must be one of onnxruntime"):
        get_runtime("trt")
    with pytest.raises(TypeError, match="model must be an onnx.ModelProto, serialized bytes or a path, got int"):
        run_model("onnxruntime", 3, {})


def test_one_line():
    assert one_line("[ONNXRuntimeError] : 1 : FAIL : \nbad shape\n") == "bad shape"
    assert one_line("a\nb\nStack backtrace:\n 0: x") == "b"
    assert len(one_line("x" * 500)) == 200
