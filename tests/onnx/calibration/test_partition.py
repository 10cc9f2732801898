"""Cutting a model into stages and running it stage by stage (spec 14.5).

The hand-checkable example of the spec (two residual blocks, one weight
each), constant nodes copied into the stages reading them, a weight read by
two stages, and staged runs equal to one onnxruntime session on the whole
model: outputs, statistics, and GPTQ/AWQ output bytes (plain and sequential).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from monoquant_np.onnx.calibration.adapters import awq_algorithm, gptq_algorithm
from monoquant_np.onnx.calibration.capture import collect_stats
from monoquant_np.onnx.calibration.partition import check_stage_bytes, partition
from monoquant_np.onnx.calibration.staged import StagedModel
from monoquant_np.onnx.quantizer.pipeline import quantize_model
from monoquant_np.onnx.runtime import make_session
from monoquant_np.onnx.verify import verify_models

K = 64  # a (64, 64) float32 weight is 16384 bytes


def _blocks(n_blocks: int = 2, seed: int = 0, transposed_last: bool = False) -> onnx.ModelProto:
    """``s_0 = x``; per block ``i``: ``s_{i+1} = s_i + relu(s_i @ W_i)``; ``y = s_n``.

    With ``transposed_last`` the last block reads ``Transpose(V)`` (a constant node) instead of ``W``.
    """
    rng = np.random.default_rng(seed)
    nodes, inits, s = [], [], "x"
    for i in range(n_blocks):
        w = f"W{i}"
        if transposed_last and i == n_blocks - 1:
            inits.append(numpy_helper.from_array((rng.standard_normal((K, K)) * 0.1).astype(np.float32), "V"))
            nodes.append(helper.make_node("Transpose", ["V"], [w], perm=[1, 0]))
        else:
            inits.append(numpy_helper.from_array((rng.standard_normal((K, K)) * 0.1).astype(np.float32), w))
        out = "y" if i == n_blocks - 1 else f"s{i + 1}"
        nodes += [helper.make_node("MatMul", [s, w], [f"h{i}"]), helper.make_node("Relu", [f"h{i}"], [f"r{i}"]),
                  helper.make_node("Add", [s, f"r{i}"], [out])]
        s = out
    g = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _x(b: int = 16, t: int = 4, seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((b, t, K)).astype(np.float32)}


def test_spec_example_cuts_between_blocks():
    # nodes: 0 h0=MatMul(x,W0) 1 r0=Relu 2 s1=Add(x,r0) 3 h1=MatMul(s1,W1) 4 r1=Relu 5 y=Add(s1,r1)
    # cut costs (values made before c, read at or after c): c=1: h0; 2: r0; 3: s1; 4: s1,h1; 5: s1,r1 -> 1,1,1,2,2
    # node 3 brings W1: 16384 + 16384 > 16384, so the stage ends at the latest cut of cost 1 in (0, 3]: c = 3
    st = partition(_blocks(), stage_bytes=K * K * 4)
    assert [(s.nodes, s.inputs, s.outputs, s.weights, s.weight_bytes) for s in st] == [
        ((0, 1, 2), (), ("s1",), ("W0",), 16384), ((3, 4, 5), ("s1",), ("y",), ("W1",), 16384)]
    assert len(partition(_blocks(), stage_bytes=2 * K * K * 4)) == 1  # both weights fit: one stage


def test_constant_nodes_go_with_their_readers_and_shared_weights_count_in_each_stage():
    st = partition(_blocks(3, transposed_last=True), stage_bytes=K * K * 4)
    # the Transpose of V (node 6) is constant: it is copied into the last stage, not cut from it
    assert [s.nodes for s in st] == [(0, 1, 2), (3, 4, 5), (6, 7, 8, 9)]
    assert st[2].weights == ("V",) and st[2].inputs == ("s2",)
    m = _blocks(2)
    m.graph.node[3].input[1] = "W0"  # the second block reads W0 too: each stage holds it
    st = partition(m, stage_bytes=1)
    assert [s.weights for s in st if s.weights] == [("W0",), ("W0",)]


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)])
def test_stage_bytes_checked(bad, exc):
    with pytest.raises(exc, match="stage_bytes"):
        check_stage_bytes(bad)
    with pytest.raises(exc, match="stage_bytes"):
        partition(_blocks(), stage_bytes=bad)


@pytest.mark.parametrize("stage_bytes", [1, K * K * 4, 1 << 30])
def test_staged_outputs_equal_one_session(stage_bytes):
    m, f = _blocks(4), _x()
    staged = StagedModel(m, stage_bytes=stage_bytes)
    assert len(staged.stages) == {1: 8, K * K * 4: 4, 1 << 30: 1}[stage_bytes]
    want = make_session(m).run(["y"], f)[0]
    np.testing.assert_array_equal(staged.outputs(f)["y"], want)


def test_staged_statistics_equal_one_session():
    m, f = _blocks(4), _x()
    names = ["x", "s1", "s2", "s3"]
    one = collect_stats(m, f, names, batch_size=5, stage_bytes=1 << 30)
    many = collect_stats(m, f, names, batch_size=5, stage_bytes=1)
    for n in names:
        np.testing.assert_array_equal(many[n].xtx, one[n].xtx)
        np.testing.assert_array_equal(many[n].abs_sum, one[n].abs_sum)
        assert many[n].rows == one[n].rows == 16 * 4


def test_verify_staged_equals_whole():
    m = _blocks(3)
    q = quantize_model(m, group_size=32)
    whole = verify_models(m, q, samples=3, seq_len=5, stage_bytes=1 << 30)
    staged = verify_models(m, q, samples=3, seq_len=5, stage_bytes=1)
    assert [(d.name, d.shape) for d in staged] == [("y", (3, 5, K))]
    for a, b in zip(whole, staged, strict=True):
        assert (a.max_abs_err, a.rel_err, a.cosine) == pytest.approx((b.max_abs_err, b.rel_err, b.cosine),
                                                                      rel=1e-6, abs=1e-7)
        assert 0.9 < b.cosine < 1.0


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("make", [gptq_algorithm, awq_algorithm])
def test_staged_calibration_output_equals_one_stage(make, sequential):
    m, f = _blocks(4), _x(32)
    outs = [quantize_model(m, group_size=32, calibration=f,
                           algorithm=make(sequential=sequential, stage_bytes=sb)).SerializeToString()
            for sb in (1 << 30, K * K * 4, 1)]
    assert outs[1] == outs[0] and outs[2] == outs[0]


def test_sequential_differs_from_plain_and_is_closer():
    m, f = _blocks(4), _x(32)
    plain = quantize_model(m, group_size=32, calibration=f, algorithm=gptq_algorithm(stage_bytes=1))
    seq = quantize_model(m, group_size=32, calibration=f, algorithm=gptq_algorithm(sequential=True, stage_bytes=1))
    assert plain.SerializeToString() != seq.SerializeToString()
    cos = [verify_models(m, q, _x(8, seed=5))[0].cosine for q in (plain, seq)]
    assert min(cos) > 0.99


def test_cli_sequential(tmp_path, capsys):
    from monoquant_np.cli import main

    src, feeds = tmp_path / "f.onnx", tmp_path / "c.npz"
    onnx.save(_blocks(2), str(src))
    np.savez(feeds, **_x(16))
    outs = []
    for extra in ([], ["--sequential"]):
        dst = tmp_path / f"q{len(extra)}.onnx"
        assert main(["quantize", str(src), str(dst), "--algorithm", "gptq", "--calibration", str(feeds),
                     "--group-size", "32", *extra]) == 0
        outs.append(dst.read_bytes())
    want = quantize_model(_blocks(2), group_size=32, calibration=_x(16), algorithm=gptq_algorithm(sequential=True))
    assert outs[1] == want.SerializeToString() and outs[0] != outs[1]
    capsys.readouterr()
    assert main(["quantize", str(src), str(tmp_path / "r.onnx"), "--sequential"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["monoquant-np: error: --sequential needs --algorithm gptq or awq, got --algorithm rtn"]
