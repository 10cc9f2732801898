"""The whole conformance matrix (spec 16.1), MiniLM rows included, and MiniLM through the CLI's --target."""

from __future__ import annotations

import numpy as np
import pytest

from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path
from monoquant_np.cli import main
from monoquant_np.testing.forms import FLOAT32, minilm_case
from monoquant_np.testing.matrix import VERDICTS, classify, run_matrix
from monoquant_np.testing.runtimes import DEFAULT_RUNTIMES, RUNTIMES, run_model

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(minilm_model_path() is None, reason=f"MiniLM model wheel not installed ({MINILM_INSTALL_HINT})"),
]
FOUR = ("onnxruntime", "onnx-reference", "openvino", "tract")


def _need(name):
    if not RUNTIMES[name].installed:
        pytest.skip(f"{RUNTIMES[name].package} is not installed (pip install '.[runtimes]')")


@pytest.fixture(scope="module")
def full():
    return run_matrix()


def test_every_cell_filled(full):
    for name in FOUR:
        _need(name)
    cells, skipped = full
    assert skipped == []
    forms = {c.form for c in cells}
    assert len(cells) == len(forms) * len(DEFAULT_RUNTIMES) and len(forms) >= 80
    assert all(c.verdict in VERDICTS[:4] and c.detail for c in cells)  # installed: no "not installed"
    ort = {c.form: c.verdict for c in cells if c.runtime == "onnxruntime"}
    # every form exact, except the standard FLOAT4E2M1 forms: onnxruntime 1.32 has no such kernel (spec 16, 19.7)
    assert {v for f, v in ort.items() if "FLOAT4E2M1" not in f} == {"exact"}
    assert {v for f, v in ort.items() if "FLOAT4E2M1" in f} <= {"unsupported"}
    mismatches = sorted((c.form, c.runtime) for c in cells if c.verdict == "mismatch")
    print(f"\n{len(cells)} cells; mismatches: {mismatches}")
    # the runtimes' documented departures, and tract's float16 block-32 scales (spec 16.2), nothing else
    assert {r for _, r in mismatches} <= {"onnxruntime-int8", "openvino", "openvino-dynquant", "tract"}
    assert [f for f, r in mismatches if r == "tract"] == ["matmulnbits int4 g32 + bias"]
    # OpenVINO and nibbles unpacked in front of a MatMul (the tract target's form, spec 16.2)
    assert all(f.startswith("target=tract: ") for f, r in mismatches if r == "openvino")


@pytest.mark.parametrize("target", ["openvino", "tract", "portable"])
def test_minilm_target_runs_exactly_in_its_runtimes(full, target):
    cells, _ = full
    row = {c.runtime: c for c in cells if c.form == f"MiniLM-L3 int4 g128, target={target}"}
    runtimes = FOUR if target == "portable" else (target,)
    for name in runtimes:
        _need(name)
        assert row[name].verdict == "exact", row[name].detail
        print(f"\nMiniLM target={target} in {name}: {row[name].worst * 2e-5:.2g} of max|y|")


@pytest.mark.parametrize("target", ["openvino", "tract"])
def test_minilm_cli_target(tmp_path, capsys, target):
    _need(target)
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(minilm_model_path()), str(out), "--target", target]) == 0
    capsys.readouterr()
    case = minilm_case(target)  # the same RTN quantization through the API, with the spec's expected outputs
    got = run_model(target, out, case.feeds)
    verdict, detail, worst = classify(case, got, RUNTIMES[target])
    assert verdict == "exact", detail
    rel = max(float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())
              for a, b in zip(got.outputs, case.expected, strict=True) if b.dtype.kind == "f")
    assert rel <= 2e-5 and worst <= 1.0 and FLOAT32 in case.bounds
