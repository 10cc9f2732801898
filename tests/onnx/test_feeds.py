"""Feeds (spec 13.7, 14.4): one reader and one validator for calibration and verification inputs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.onnx.feeds import batch_length, check_feeds, load_feeds, model_input_names


def _model():
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])  # an input with an initializer: not fed
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [ids, x, w], [y],
                          [numpy_helper.from_array(np.zeros(3, np.float32), "w")])
    return helper.make_model(g)


GOOD = {"ids": np.zeros((2, 4), np.int64), "x": np.ones((2, 3), np.float32)}


def test_input_names_leave_out_initializers():
    assert model_input_names(_model()) == ["ids", "x"]


def test_good_feeds_pass_and_round_trip_through_npz(tmp_path):
    check_feeds(GOOD, _model(), batched=True, strict=True)
    path = tmp_path / "feeds.npz"
    np.savez(path, **GOOD)
    back = load_feeds(path, _model(), batched=True)
    assert sorted(back) == ["ids", "x"] and np.array_equal(back["x"], GOOD["x"])


@pytest.mark.parametrize("feeds, message", [
    ({"x": GOOD["x"]}, r"lack the model input\(s\) \['ids'\]"),
    ({**GOOD, "ids": GOOD["ids"].astype(np.float32)}, "input 'ids' is float32, the model takes int64"),
    ({**GOOD, "x": np.ones((2, 5), np.float32)}, r"input 'x' has shape \(2, 5\), the model takes \(batch, 3\)"),
    ({**GOOD, "x": np.ones(3, np.float32)}, r"input 'x' has shape \(3,\)"),
])
def test_bad_feeds_name_the_input(feeds, message):
    with pytest.raises(ValueError, match=message):
        check_feeds(feeds, _model(), "calibration inputs")


def test_unknown_names_are_an_error_only_when_strict():
    extra = {**GOOD, "mask": np.ones((2, 4))}
    check_feeds(extra, _model())
    with pytest.raises(ValueError, match=r"unknown \['mask'\]"):
        check_feeds(extra, _model(), strict=True)


def test_batch_length():
    assert batch_length(GOOD) == 2
    with pytest.raises(ValueError, match="same batch length"):
        batch_length({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="at least one sample"):
        batch_length({"a": np.zeros((0, 4))})
    with pytest.raises(ValueError, match="holds no arrays"):
        batch_length({})


def test_files_that_are_not_npz(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        load_feeds(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable .npz"):
        load_feeds(bad, what="calibration file")
