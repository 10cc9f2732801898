"""Non-finite calibration (spec 14.4): one line up front, and no RuntimeWarning, whatever the algorithm.

The CLI runs in-process; ``warnings.catch_warnings(record=True)`` with the
``always`` filter records every warning that would otherwise reach stderr.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.cli import main
from monoquant_np.onnx.calibration.capture import ActivationStats


def _model(path):
    rng = np.random.default_rng(0)
    w, w2 = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((32, 32)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 32])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(w2, "W2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _run(tmp_path, capsys, value, algorithm):
    _model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    x[2, 5] = value
    np.savez(tmp_path / "c.npz", x=x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["quantize", str(tmp_path / "m.onnx"), str(tmp_path / "out.onnx"), "--algorithm", algorithm,
                     "--calibration", str(tmp_path / "c.npz"), "--min-elements", "0"])
    out = capsys.readouterr()
    assert [str(w.message) for w in caught] == []
    return code, out.err.strip().splitlines()


@pytest.mark.parametrize("algorithm", ["gptq", "awq", "mse"])
@pytest.mark.parametrize("value, expect", [
    (np.inf, "input 'x' holds 1 non-finite value (inf at [2, 5]); these inputs must be finite"),
    (-np.inf, "input 'x' holds 1 non-finite value (-inf at [2, 5]); these inputs must be finite"),
    (np.nan, "input 'x' holds 1 non-finite value (nan at [2, 5]); these inputs must be finite"),
    (1e30, "calibration: activation 'x' overflows float32 in x^T x on these calibration inputs"),
])
def test_nonfinite_calibration_is_one_line_without_warnings(tmp_path, capsys, algorithm, value, expect):
    code, err = _run(tmp_path, capsys, value, algorithm)
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not os.path.exists(tmp_path / "out.onnx")


@pytest.mark.parametrize("algorithm", ["gptq", "awq", "mse"])
def test_finite_extremes_succeed_silently(tmp_path, capsys, algorithm):
    code, err = _run(tmp_path, capsys, 1e-45, algorithm)  # a float32 subnormal among normal values
    assert code == 0 and err == []
    assert os.path.exists(tmp_path / "out.onnx")


def test_activation_stats_refuse_nan_rows_without_touching_the_sums():
    st = ActivationStats("h", np.zeros((2, 2)), np.zeros(2))
    st.add(np.array([[1, 2]], np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="activation 'h' holds NaN or inf on these calibration inputs"):
            st.add(np.array([[np.nan, 1]], np.float32))
    assert st.xtx.tolist() == [[1, 2], [2, 4]] and st.rows == 1
