"""The quantization report (spec 13.5): the error formulas on hand-checkable
vectors, float32 differences with sums close to float64, chunking, and the totals, text and JSON."""

import json

import numpy as np
import pytest

import monoquant_np as mq
from monoquant_np.onnx.quantizer.report import LayerRow, QuantReport, format_rows, relative_error, tensor_error


def test_relative_error_hand_vector():
    # ||w - w'|| = ||(0, 4)|| = 4, ||w|| = ||(3, 4)|| = 5
    w = np.array([3.0, 4.0], np.float32)
    rel, mx = relative_error(w, np.array([3.0, 0.0], np.float32))
    assert rel == 0.8 and mx == 4.0
    # the largest difference may be negative: max |w - w'|
    rel, mx = relative_error(w, np.array([3.0, 6.5], np.float32))
    assert mx == 2.5 and rel == pytest.approx(0.5)


def test_relative_error_of_an_all_zero_weight_is_zero():
    w = np.zeros((4, 3), np.float32)
    assert relative_error(w, w) == (0.0, 0.0)
    rel, mx = relative_error(w, np.full((4, 3), 0.5, np.float32))
    assert rel == 0.0 and mx == 0.5  # "0 when w is all zero"; the max difference is still reported


def test_differences_are_float32_and_sums_agree_with_float64():
    # 2**24 + 2 and 1.5 are float32 values; their difference 2**24 + 0.5 is not: float32 rounds it to
    # the nearest even neighbour 2**24 (spec 13.5: d = fl32(w - w'))
    w = np.array([2.0**24 + 2, 1.0], np.float32)
    w_hat = np.array([1.5, 1.0], np.float32)
    rel, mx = relative_error(w, w_hat)
    assert mx == 2.0**24
    assert rel == pytest.approx(2.0**24 / np.hypot(2.0**24 + 2, 1.0), rel=1e-7)
    # float32 chunk sums added in float64: within 1e-6 of the float64 formula on a weight of 3 chunks
    rng = np.random.default_rng(3)
    w = rng.standard_normal(3 * 2**18 - 5).astype(np.float32)
    w_hat = (w + rng.standard_normal(w.size).astype(np.float32) * np.float32(0.1)).astype(np.float32)
    want = np.linalg.norm(w.astype(np.float64) - w_hat) / np.linalg.norm(w.astype(np.float64))
    assert relative_error(w, w_hat)[0] == pytest.approx(want, rel=1e-6)


def test_relative_error_leaves_its_inputs_unchanged():
    w = np.array([[1.0, -2.0]], np.float32)
    w_hat = np.array([[0.5, -2.5]], np.float32)
    relative_error(w, w_hat)
    assert w.tolist() == [[1.0, -2.0]] and w_hat.tolist() == [[0.5, -2.5]]


@pytest.mark.parametrize("rows_per_chunk", [None, 1, 3, 64])
@pytest.mark.parametrize("kind", ["int4", "uint4", "int8", "nf4"])
def test_tensor_error_equals_the_whole_tensor_formula(kind, rows_per_chunk):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((70, 24)).astype(np.float32)  # 70 rows: a partial last group and chunk
    if kind == "nf4":
        qt = mq.quantize_nf4(w, block_size=32)
    elif kind == "int8":
        qt = mq.quantize(w, group_size=128)  # K = 70 < 128: the int8 per-channel fallback
        assert qt.bits == 8
    else:
        qt = mq.quantize(w, group_size=32, symmetric=kind == "int4")
    want = relative_error(w, mq.dequantize(qt))
    got = tensor_error(w, qt, rows_per_chunk)
    assert got[1] == want[1]  # the maximum does not depend on the order
    assert got[0] == pytest.approx(want[0], rel=1e-6)  # float32 chunk sums in another order (spec 13.5)
    assert 0 < got[0] < 0.2


def test_tensor_error_with_a_permutation():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    qt = mq.quantize(w, group_size=32)
    perm = rng.permutation(64)
    from dataclasses import replace

    qp = replace(qt, perm=perm)
    assert tensor_error(w, qp) == relative_error(w, mq.dequantize(qp))


def _row(name="W", scheme="int4", before=12288, after=1920, size=3072, bpw=5.0, rel_err=0.1, **kw):
    return LayerRow(name, (64, 48), scheme, 32, before, after, size, bpw, rel_err, 0.05, "qdq", **kw)


def test_totals_follow_spec_13_5():
    # spec 13.5's example and its asymmetric twin: 1920 and 1968 bytes for 3072 weights each
    r = QuantReport(rows=[_row(), _row("V", "uint4", after=1968, bpw=5.125)], skipped=[("b", "1-D")])
    t = r.totals()
    assert (t["layers"], t["skipped"], t["weights"]) == (2, 1, 6144)
    assert (t["bytes_before"], t["bytes_after"]) == (24576, 3888)
    assert t["bits_per_weight"] == 8 * 3888 / 6144 == 5.0625
    assert QuantReport().totals()["bits_per_weight"] == 0.0


def test_format_says_what_changed():
    r = QuantReport(rows=[_row()], skipped=[("bias", "1-D")], notes=["a note"],
                    file_bytes_before=4000, file_bytes_after=1000)
    text = r.format()
    assert "skipped bias: 1-D" in text and "note: a note" in text
    assert "total: 1 weights, 12,288 -> 1,920 bytes (5.000 bits/weight)" in text
    assert "file: 4,000 -> 1,000 bytes (4.00x smaller)" in text
    r.file_bytes_after = 8000
    assert "(2.00x larger)" in r.format()
    assert QuantReport().format() == "no weight was quantized"


def test_format_rows_table():
    long = "model." + "x" * 80
    lines = format_rows([_row(), _row(long)]).splitlines()
    assert lines[0].split()[:4] == ["name", "shape", "scheme", "group"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["W", "64x48", "int4", "32", "12,288", "1,920", "0.1000", "qdq"]
    name = lines[3].split()[0]
    assert len(name) == 60 and name.startswith("...") and long.endswith(name[3:])


def test_calibrated_rows_add_the_output_errors():
    rows = [_row(extra={"out_rel_err": 0.01, "out_rel_err_rtn": 0.02}), _row("V")]
    lines = format_rows(rows).splitlines()
    assert "out err" in lines[0] and "rtn out err" in lines[0]
    assert lines[2].split()[6:9] == ["0.1000", "0.0100", "0.0200"]
    assert lines[3].split()[6:9] == ["0.1000", "-", "-"]  # a row without them


def test_json_round_trip_with_numpy_values():
    r = QuantReport(rows=[_row(rel_err=np.float32(0.25), extra={"n": np.int64(3), "v": np.arange(2)})],
                    options={"group_size": 32}, skipped=[("b", "why")], notes=["n"])
    d = json.loads(r.to_json())
    assert set(d) == {"options", "layers", "skipped", "notes", "totals", "timings"}
    layer = d["layers"][0]
    assert layer["shape"] == [64, 48] and layer["rel_err"] == 0.25
    assert layer["extra"] == {"n": 3, "v": [0, 1]}
    assert d["skipped"] == [{"name": "b", "reason": "why"}]
    assert d["totals"]["bits_per_weight"] == 5.0
