"""Spec 13.7: ``verify`` makes inputs only of types it knows and within the input byte limit, checked up front."""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.assets import minilm_model_path
from monoquant_np.cli import main
from monoquant_np.onnx.feeds import MAX_BYTES_ENV
from monoquant_np.onnx.verify import make_inputs


def _model(elem_type=TensorProto.FLOAT, dims=("b", 8)):
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", elem_type, list(dims))],
                          [helper.make_tensor_value_info("y", elem_type, list(dims))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _embedding_model():
    table = numpy_helper.from_array(np.zeros((30, 4), np.float32), "E")
    g = helper.make_graph([helper.make_node("Gather", ["E", "input_ids"], ["y"])], "g",
                          [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])], [table])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _verify(tmp_path, capsys, model, *args):
    onnx.save(model, str(tmp_path / "m.onnx"))
    before = sorted(os.listdir(tmp_path))
    code = main(["verify", str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx"), *args])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out.err, out.err
    assert sorted(os.listdir(tmp_path)) == before
    return lines[0]


@pytest.mark.parametrize("elem_type, name", [(0, "UNDEFINED"), (99, "99 (unknown)"), (TensorProto.STRING, "STRING"),
                                             (TensorProto.BFLOAT16, "BFLOAT16")])
def test_unknown_element_types_are_refused(tmp_path, capsys, elem_type, name):
    line = _verify(tmp_path, capsys, _model(elem_type))
    assert line == (f"monoquant-np: error: input 'x' has element type {name}, which verify cannot make; "
                    "pass --inputs FEEDS.npz")


def test_huge_declared_input_is_refused_before_allocating(tmp_path, capsys):
    line = _verify(tmp_path, capsys, _model(dims=(10**6, 10**6)))
    assert line == ("monoquant-np: error: input 'x' of shape (1000000, 1000000) float32 brings the made inputs to "
                    "4000000000000 bytes, above the limit of 536870912 (lower --samples/--seq-len, pass --inputs "
                    f"FEEDS.npz, or set {MAX_BYTES_ENV})")


def test_huge_seq_len_is_refused_before_allocating(tmp_path, capsys):
    line = _verify(tmp_path, capsys, _embedding_model(), "--seq-len", "1000000000")
    assert "input 'input_ids' of shape (2, 1000000000) int64 brings the made inputs to 16000000000 bytes" in line


def test_limit_counts_every_input_and_is_exact():
    m = _embedding_model()
    assert make_inputs(m, samples=2, seq_len=4, max_bytes=64)["input_ids"].shape == (2, 4)  # 2 * 4 * 8 bytes
    with pytest.raises(ValueError, match=r"shape \(2, 4\) int64 brings the made inputs to 64 bytes, above the "
                                         r"limit of 63"):
        make_inputs(m, samples=2, seq_len=4, max_bytes=63)


@pytest.mark.e2e
@pytest.mark.skipif(minilm_model_path() is None, reason="MiniLM wheel not installed")
def test_minilm_seq_len_one_billion_is_one_line(capsys):
    m = str(minilm_model_path())
    assert main(["verify", m, m, "--seq-len", "1000000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "of shape (2, 1000000000) int64 brings the made inputs to" in err[0], err


def test_nonfinite_and_empty_outputs_compare_without_warnings():
    from monoquant_np.onnx.verify import cosine_per_sample

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = np.array([[np.inf, 1.0], [1.0, 2.0]])
        assert np.isnan(cosine_per_sample(a, a * 2)) and cosine_per_sample(np.zeros((2, 0)), np.zeros((2, 0))) == 1.0
        assert cosine_per_sample(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0


@pytest.mark.parametrize("ids, expect", [
    (np.full((2, 3), 10**12, np.int64), "indices element out of data bounds, idx=1000000000000"),
    (np.zeros((2, 3), np.complex64), "input 'input_ids' is complex64, the model takes int64"),
    (np.zeros((0, 3), np.int64), None),
])
def test_bad_given_inputs_are_one_line_on_file_descriptor_2(tmp_path, capfd, ids, expect):
    """onnxruntime's own error log would be a second line on stderr: only the exception's line is printed."""
    onnx.save(_embedding_model(), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "f.npz", input_ids=ids)
    m = str(tmp_path / "m.onnx")
    code = main(["verify", m, m, "--inputs", str(tmp_path / "f.npz")])
    out = capfd.readouterr()
    err = out.err.strip().splitlines()
    if expect is None:  # an empty batch compares as equal
        assert code == 0 and err == [] and "1.000000" in out.out
    else:
        assert code == 2 and len(err) == 1 and expect in err[0], err


def test_graph_output_computed_by_no_node_is_one_line(tmp_path, capsys):
    m = _model()
    m.graph.output[0].name = "nobody"
    line = _verify(tmp_path, capsys, m)
    assert line == "monoquant-np: error: reference: graph output 'nobody' is computed by no node of the model"


@pytest.mark.parametrize("axis", [3, -3])
def test_gather_axis_out_of_range_is_left_to_onnxruntime(tmp_path, capsys, axis):
    m = _embedding_model()
    m.graph.node[0].attribute.append(helper.make_attribute("axis", axis))
    assert "input_ids" in make_inputs(m)  # the table's rows are not read at a missing axis
    assert "onnxruntime cannot load" in _verify(tmp_path, capsys, m)
