"""The conformance matrix (spec 16.1): classification, the forms table, the reduced matrix, the command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from monoquant_np import quantize
from monoquant_np.cli import main
from monoquant_np.testing.forms import FLOAT32, FORMS, Form, FormCase, layer_case
from monoquant_np.testing.matrix import VERDICTS, classify, matrix_json, matrix_markdown, run_matrix, select_forms
from monoquant_np.testing.runtimes import DEFAULT_RUNTIMES, INT8_ACTIVATIONS, RUNTIMES, Outcome

Y = np.array([[1.0, -2.0], [0.5, 4.0]])
CASE = FormCase(None, {}, (Y,), {FLOAT32: (np.full((2, 2), 1e-3),), INT8_ACTIVATIONS: (np.full((2, 2), 0.1),)})
EXACT, INT8 = RUNTIMES["onnxruntime"], RUNTIMES["onnxruntime-int8"]


def _out(*arrays):
    return Outcome("r", "ok", tuple(np.asarray(a, np.float32) for a in arrays))


def test_classify_exact_bound_mismatch():
    assert classify(CASE, _out(Y + 5e-4), EXACT)[:2] == ("exact", "0.5 of the float32 bound")
    verdict, detail, worst = classify(CASE, _out(Y + 0.05), INT8)
    assert verdict == "within bound" and detail.startswith("int8 activations: 0.5 of that bound")
    assert worst == pytest.approx(50, rel=1e-4)
    off = Y.copy()
    off[1, 0] += 0.05
    verdict, detail, worst = classify(CASE, _out(off), EXACT)  # no documented bound: a mismatch
    assert verdict == "mismatch" and detail.startswith("y0[1, 0] = 0.55, spec 0.5 (|diff| 0.05)")
    assert "max |diff| / max|y| = 0.013" in detail
    nan = Y.copy()
    nan[0, 1] = np.nan
    assert classify(CASE, _out(nan), INT8)[0] == "mismatch"  # NaN is beyond every bound
    assert classify(CASE, _out(Y[:1]), EXACT)[:2] == ("mismatch", "y0 has shape (1, 2), the spec (2, 2)")
    assert classify(CASE, _out(Y, Y), EXACT)[:2] == ("mismatch", "2 outputs, the spec has 1")


def test_classify_refusals():
    refused = Outcome("tract", "load error", message="Unknown DatumType Int4\n\nStack backtrace:\n  0: x")
    assert classify(CASE, refused, EXACT) == ("unsupported", "load error: Unknown DatumType Int4", None)
    missing = Outcome("x", "not installed", message="x is not installed")
    assert classify(CASE, missing, EXACT) == ("not installed", "x is not installed", None)


def test_forms_table():
    names = [f.name for f in FORMS]
    assert len(names) == len(set(names))
    assert sum(f.name.startswith("qdq ") for f in FORMS) == 32  # int4/uint4 x g16/g24 x whole/partial x axis x scale
    groups = {f.group for f in FORMS}
    assert {"com.microsoft.MatMulNBits", "Gather tables", "NF4 (codebook lookup)"} <= groups
    assert len({f.group for f in select_forms(quick=True)}) >= 8  # the reduced matrix has a row of most groups
    assert all(f.e2e for f in FORMS if "MiniLM" in f.name) and not any(f.e2e for f in select_forms(e2e=False))
    with pytest.raises(ValueError, match="unknown"):
        select_forms(names=["no such form"])


def test_a_new_form_is_one_entry():
    form = Form("qdq int4 g64 whole axis0 f32", "QDQ",
                lambda: layer_case(quantize(np.ones((128, 3), np.float32), group_size=64)))
    cells, skipped = run_matrix([form], ["onnxruntime", "onnx-reference"])
    assert skipped == [] and [(c.runtime, c.verdict) for c in cells] == [("onnxruntime", "exact"),
                                                                          ("onnx-reference", "exact")]


@pytest.fixture(scope="module")
def quick():
    return run_matrix(select_forms(quick=True))


def _verdicts(cells, form):
    return {c.runtime: c.verdict for c in cells if c.form == form}


def test_reduced_matrix_every_cell_filled(quick):
    cells, skipped = quick
    forms = select_forms(quick=True)
    assert skipped == [] and len(cells) == len(forms) * len(DEFAULT_RUNTIMES)
    assert all(c.verdict in VERDICTS and c.detail for c in cells)
    assert all(c.verdict == "exact" for c in cells if c.runtime == "onnxruntime")


def test_reduced_matrix_findings(quick):
    cells, _ = quick
    installed = {n for n in DEFAULT_RUNTIMES if RUNTIMES[n].installed}
    row = _verdicts(cells, "matmulnbits int4 g16")
    assert row["onnx-reference"] == "unsupported"  # no com.microsoft operators
    portable = _verdicts(cells, "target=portable: uint4 g24 partial axis0 f16")
    assert {portable[n] for n in installed if RUNTIMES[n].bound is None} == {"exact"}
    detail = {c.runtime: c.detail for c in cells if c.form == "qdq int4 g16 partial axis0 f32"}
    if "tract" in installed:
        assert detail["tract"] == "load error: Unknown DatumType Int4"
    if "openvino" in installed:
        assert "cannot be divided by block_size (16)" in detail["openvino"]
        assert _verdicts(cells, "qdq int4 g16 whole axis0 f32")["openvino"] == "exact"
    level4 = _verdicts(cells, "qdq int4 g16 whole axis0 f32")["onnxruntime-int8"]
    assert level4 == "within bound"  # onnxruntime's default fused kernel: int8 activations


def test_markdown_and_json(quick):
    cells, skipped = quick
    page = matrix_markdown(cells, skipped, DEFAULT_RUNTIMES, command="monoquant-np conformance --quick")
    assert page.startswith("# ONNX runtimes against the spec: the conformance matrix")
    assert "Command: `monoquant-np conformance --quick`" in page and "onnxruntime 1." in page
    assert f"{len(cells)} cells" in page and "### Notes" in page
    data = json.loads(matrix_json(cells, skipped, DEFAULT_RUNTIMES))
    assert len(data["cells"]) == len(cells) and data["runtimes"][3]["config"]["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == "0"


def test_missing_runtime_column_is_filled():
    absent = dataclasses.replace(RUNTIMES["tract"], name="absent", module="no_such_module_monoquant")
    RUNTIMES["absent"] = absent
    try:
        cells, _ = run_matrix(select_forms(names=["int8 per-channel fallback"]), ["absent"])
    finally:
        del RUNTIMES["absent"]
    assert [c.verdict for c in cells] == ["not installed"]


def test_command(tmp_path, capsys):
    md, js = tmp_path / "m.md", tmp_path / "m.json"
    assert main(["conformance", "--runtime", "onnxruntime", "--form", "int8 per-channel", "--markdown", str(md),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 cells (2 forms x 1 runtimes)") and "onnxruntime: exact 2" in out
    assert "--form 'int8 per-channel'" in md.read_text() and len(json.loads(js.read_text())["cells"]) == 2


@pytest.mark.parametrize(("args", "expect"), [
    (["--runtime", "trt"], "runtime must be one of onnxruntime"),
    (["--form", "no such form"], "matches no form"),
    (["--markdown", "/no/such/dir/m.md"], "does not exist"),
])
def test_command_errors(capsys, args, expect):
    assert main(["conformance", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err


def test_command_help_names_every_runtime(capsys):
    with pytest.raises(SystemExit):
        main(["conformance", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens
    assert all(n in text for n in RUNTIMES)
