"""Writing the output as its tensors are produced (spec 13.6): the data file writer, one-file models copied
from side files in chunks, ModelWriter's two endings, the bytes of --jobs, and a memory bound that does not
grow with the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import monoquant_np.onnx.streaming as streaming  # noqa: E402
from monoquant_np.cli import main  # noqa: E402
from monoquant_np.onnx import save_model  # noqa: E402
from monoquant_np.onnx.model_io import ModelWriter  # noqa: E402
from monoquant_np.onnx.streaming import DataFile, write_inline  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _model_with_side_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """``x @ W1 @ W2`` plus a ``Constant`` node, every tensor of 1 kB or more in ``m.onnx.data``."""
    rng = np.random.default_rng(0)
    arrays = {"W1": rng.standard_normal((64, 32)).astype(np.float32),
              "W2": rng.standard_normal((32, 16)).astype(np.float32),
              "c": rng.standard_normal((1, 16)).astype(np.float32) * 0 + np.arange(16, dtype=np.float32)}
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(arrays["c"], "c")),
             helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["y0"]),
             helper.make_node("Add", ["y0", "c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])],
                          [numpy_helper.from_array(arrays[k], k) for k in ("W1", "W2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    return src, arrays


def _arrays(path: Path) -> dict[str, np.ndarray]:
    m = onnx.load(str(path))
    out = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"})
    return out


def test_write_inline_equals_the_model_with_its_tensors_read_in(tmp_path, monkeypatch):
    src, arrays = _model_with_side_file(tmp_path)
    monkeypatch.setattr(streaming, "COPY_CHUNK", 100)  # several chunks per tensor
    m = onnx.load(str(src), load_external_data=False)
    before = m.SerializeToString()
    out = tmp_path / "one.onnx"
    with open(out, "wb") as f:
        write_inline(m, f, None, tmp_path)
    assert m.SerializeToString() == before  # not changed
    got = onnx.load(str(out))
    assert not any(t.HasField("data_location") and t.data_location == TensorProto.EXTERNAL
                   for t in got.graph.initializer)
    for name, a in _arrays(out).items():
        np.testing.assert_array_equal(a, arrays[name], err_msg=name)
    inline = onnx.load(str(src), load_external_data=False)
    for t in [*inline.graph.initializer, inline.graph.node[0].attribute[0].t]:
        info = {e.key: e.value for e in t.external_data}
        if not info:
            continue
        with open(tmp_path / info["location"], "rb") as data:
            data.seek(int(info.get("offset", 0)))
            t.raw_data = data.read(int(info["length"]))
        del t.external_data[:]
        t.ClearField("data_location")
    assert out.read_bytes() == inline.SerializeToString()  # byte for byte what protobuf writes
    want = onnx.load(str(src))  # onnx's own loader: same graph, same tensors
    assert [n.SerializeToString() for n in got.graph.node] == [n.SerializeToString() for n in want.graph.node]
    def key(t):
        return t.name, tuple(t.dims), t.data_type, t.raw_data

    assert sorted(map(key, got.graph.initializer)) == sorted(map(key, want.graph.initializer))


def test_data_file_aligns_and_refers(tmp_path):
    a = numpy_helper.from_array(np.arange(5, dtype=np.float32), "a")  # 20 bytes
    b = numpy_helper.from_array(np.arange(3, dtype=np.int64), "b")  # 24 bytes
    small = numpy_helper.from_array(np.arange(2, dtype=np.float32), "small")
    with open(tmp_path / "d.bin", "wb") as f:
        d = DataFile(f, tmp_path / "d.bin", "d.bin")
        assert d.append(a) and d.append(b) and not d.append(small, threshold=16)
        assert not d.append(a)  # already there
    raw = (tmp_path / "d.bin").read_bytes()
    assert len(raw) == 64 + 24 and raw[20:64] == b"\0" * 44
    assert {e.key: e.value for e in b.external_data} == {"location": "d.bin", "offset": "64", "length": "24"}
    assert np.frombuffer(raw[64:], np.int64).tolist() == [0, 1, 2] and small.HasField("raw_data")


@pytest.mark.parametrize("external", [True, False])
def test_model_writer_spills_then_finishes(tmp_path, external):
    src, arrays = _model_with_side_file(tmp_path)
    m = onnx.load(str(src), load_external_data=False)
    extra = numpy_helper.from_array(np.full((16, 16), 7, np.float32), "extra")
    out = tmp_path / "out.onnx"
    with ModelWriter(out, external_data=external, base_dir=tmp_path, inputs=(src,)) as w:
        w.spill(extra)  # written now, before the model exists
        assert extra.data_location == TensorProto.EXTERNAL
        m.graph.initializer.append(extra)
        data = w.finish(m)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.onnx", "m.onnx.data", "out.onnx"]
                                                  + (["out.onnx.data"] if external else []))
    assert data == (tmp_path / "out.onnx.data" if external else None)
    got = _arrays(out)
    np.testing.assert_array_equal(got["extra"], np.full((16, 16), 7, np.float32))
    np.testing.assert_array_equal(got["W1"], arrays["W1"])


def test_model_writer_leaves_nothing_without_finish(tmp_path):
    src, _ = _model_with_side_file(tmp_path)
    with pytest.raises(RuntimeError):
        with ModelWriter(tmp_path / "out.onnx", external_data=True, inputs=(src,)) as w:
            w.spill(numpy_helper.from_array(np.ones((32, 32), np.float32), "t"))
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data"]


def test_save_model_single_file_from_side_files_keeps_the_input(tmp_path):
    src, arrays = _model_with_side_file(tmp_path)
    m = onnx.load(str(src), load_external_data=False)
    before = m.SerializeToString()
    assert save_model(m, tmp_path / "copy.onnx", base_dir=tmp_path) is None
    assert m.SerializeToString() == before
    for name, a in _arrays(tmp_path / "copy.onnx").items():
        np.testing.assert_array_equal(a, arrays[name])


@pytest.mark.parametrize("algorithm", ["rtn", "mse"])
def test_jobs_do_not_change_a_byte(gen_llm, tmp_path, algorithm):
    src = gen_llm.generate(tmp_path / "m.onnx", gen_llm.config("tiny", layers=2, tied=True))
    outs = []
    for jobs in (1, 3):
        d = tmp_path / f"j{jobs}"
        d.mkdir()
        args = ["quantize", str(src), str(d / "q.onnx"), "--jobs", str(jobs), "--algorithm", algorithm,
                "--ops", "MatMul,Gather", "--report", str(d / "r.json")]
        assert main(args + ["--external-data"]) == 0
        outs.append(d)
    for name in ("q.onnx", "q.onnx.data"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    rows = [json.loads((d / "r.json").read_text())["layers"] for d in outs]
    assert rows[0] == rows[1] and len(rows[0]) == 15


_MEASURE = textwrap.dedent("""
    import resource, sys
    sys.argv = ["monoquant-np"] + sys.argv[1:]
    import numpy, onnx, monoquant_np.onnx.quantizer.pipeline, monoquant_np.onnx.commands  # imports counted out
    from monoquant_np.cli import main
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(sys.argv[1:])
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
""")


def _peak_growth(src: Path, out: Path, *extra: str) -> int:
    """Peak resident kB that ``quantize src out`` adds to the imports, in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _MEASURE, "quantize", str(src), str(out), "--jobs", "1", *extra],
                         capture_output=True, text=True, env=env, check=True)
    before, after, code = map(int, res.stdout.strip().splitlines()[-1].split())
    assert code == 0
    return (after - before) * 1024


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kB is Linux's")
@pytest.mark.parametrize("external", [True, False])
def test_peak_memory_does_not_grow_with_the_model(gen_llm, tmp_path, external):
    """Spec 13.6's bound, one job: the peak is the imports plus at most 3x the largest weight's float32 bytes
    plus 8 MiB, for 2 layers and for 8 (about 12 MB more int4 output, which used to stay in memory)."""
    growth = {}
    for layers in (2, 8):
        cfg = gen_llm.config("tiny", vocab=2048, hidden=512, heads=8, kv_heads=2, intermediate=2048, layers=layers)
        src = gen_llm.generate(tmp_path / f"m{layers}.onnx", cfg)
        flags = ("--external-data",) if external else ()
        growth[layers] = _peak_growth(src, tmp_path / f"q{layers}.onnx", *flags)
    largest = 512 * 2048 * 4  # the LM head and the MLP weights, float32: 4 MiB
    bound = 3 * largest + 8 * 2**20
    assert growth[2] < bound and growth[8] < bound, (growth, bound)
    assert growth[8] - growth[2] < 4 * 2**20, growth  # 4x the weights: no growth beyond noise
