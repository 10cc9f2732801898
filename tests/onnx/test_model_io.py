"""External data of saved models (spec 13.6): ``save_model(..., external_data=True)``.

Every tensor of at least ``size_threshold`` bytes is appended to ``<path>.data``
at a 64-byte aligned offset; smaller tensors stay in the model; tensors that
still refer to an input's side file (``base_dir``) are copied across the same way.
The files are read back without loading external data, so the stored
``location``/``offset``/``length`` entries and the bytes at those offsets are
what is checked.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from monoquant_np import quantize
from monoquant_np.onnx import make_session, mlp_model, save_model
from monoquant_np.onnx.tensors import iter_tensors, tensor_nbytes

ALIGN = 64


def _model() -> onnx.ModelProto:
    """Two quantized layers whose tensors have sizes that are not multiples of 64 bytes.

    fc0_w int4 (100, 37): 1850 B; fc0_w_scale (4, 37) f32: 592 B; fc0_w_zero_point
    uint4 (4, 37): 74 B; fc0_bias (37,) f32: 148 B; fc1_w int4 (37, 9): 167 B;
    fc1_w_scale (3, 9) f32: 108 B.
    """
    rng = np.random.default_rng(0)
    q0 = quantize(rng.standard_normal((100, 37)).astype(np.float32), group_size=32, symmetric=False)
    q1 = quantize(rng.standard_normal((37, 9)).astype(np.float32), group_size=16)
    m = mlp_model([(q0, rng.standard_normal(37).astype(np.float32)), (q1, None)])
    assert m.ir_version == 10
    return m


def _x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((3, 100)).astype(np.float32)


def _run(model) -> np.ndarray:
    sess = make_session(model, 1, intra_op_threads=1)
    return sess.run(None, {sess.get_inputs()[0].name: _x()})[0]


def _entries(t: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _check_layout(stored: onnx.ModelProto, data: bytes, location: str, want: dict[str, bytes]) -> list[int]:
    """Every external tensor: ``location``, a 64-aligned offset, in bounds, its bytes; appended in turn."""
    spans = []
    for t in iter_tensors(stored):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        e = _entries(t)
        assert e["location"] == location, (t.name, e)
        offset, length = int(e["offset"]), int(e["length"])
        assert offset % ALIGN == 0, f"{t.name}: offset {offset} is not a multiple of {ALIGN}"
        assert length == tensor_nbytes(t) == len(want[t.name]), (t.name, length)
        assert offset + length <= len(data), f"{t.name}: {offset} + {length} > {len(data)} bytes"
        assert data[offset : offset + length] == want[t.name], f"{t.name}: bytes at offset {offset} differ"
        assert not t.raw_data
        spans.append((offset, length))
    spans.sort()
    # appended one after another: each starts at the first multiple of 64 after the previous one ends
    end = 0
    for offset, length in spans:
        assert offset == -(-end // ALIGN) * ALIGN, (offset, end)
        end = offset + length
    assert len(data) >= end
    return [o for o, _ in spans]


def test_external_data_offsets_are_64_byte_aligned(tmp_path):
    m = _model()
    before = {t.name: t.raw_data for t in iter_tensors(m)}
    y_before = _run(m)
    path = tmp_path / "q.onnx"
    data_path = save_model(m, path, external_data=True, size_threshold=108)
    assert data_path == tmp_path / "q.onnx.data"  # <path>.data
    assert sorted(os.listdir(tmp_path)) == ["q.onnx", "q.onnx.data"]  # no temporary file left
    assert {t.name: t.raw_data for t in iter_tensors(m)} == before  # the in-memory model is not modified

    stored = onnx.load(str(path), load_external_data=False)
    external = {t.name for t in iter_tensors(stored) if t.data_location == TensorProto.EXTERNAL}
    # at least size_threshold (108 B, fc1_w_scale's size exactly) bytes: external; the 74-B zero points stay inline
    assert external == {"fc0_w", "fc0_w_scale", "fc0_bias", "fc1_w", "fc1_w_scale"}
    inline = {t.name: t.raw_data for t in iter_tensors(stored) if t.name not in external}
    assert inline == {"fc0_w_zero_point": before["fc0_w_zero_point"]}

    offsets = _check_layout(stored, data_path.read_bytes(), "q.onnx.data", before)
    # by hand, graph order: 1850 B at 0; 592 B at 1856; 148 B at 2496 (2448 rounded up);
    # 167 B at 2688 (2644 rounded up); 108 B at 2880 (2855 rounded up)
    assert offsets == [0, 1856, 2496, 2688, 2880]

    np.testing.assert_array_equal(_run(str(path)), y_before)  # onnxruntime reads the side file


def test_tensors_copied_from_an_input_side_file_are_realigned(tmp_path):
    # an input saved with its own side file, read without its data, saved again with base_dir:
    # the referenced tensors are copied across, one at a time, at 64-byte aligned offsets.
    m = _model()
    before = {t.name: t.raw_data for t in iter_tensors(m)}
    y_before = _run(m)
    src = tmp_path / "in.onnx"
    save_model(m, src, external_data=True, size_threshold=150)  # fc0_w, fc0_w_scale, fc1_w
    bare = onnx.load(str(src), load_external_data=False)
    out = tmp_path / "out.onnx"
    data_path = save_model(bare, out, external_data=True, size_threshold=100, base_dir=tmp_path, inputs=(src,))
    stored = onnx.load(str(out), load_external_data=False)
    external = {t.name for t in iter_tensors(stored) if t.data_location == TensorProto.EXTERNAL}
    assert external == {"fc0_w", "fc0_w_scale", "fc0_bias", "fc1_w", "fc1_w_scale"}
    offsets = _check_layout(stored, data_path.read_bytes(), "out.onnx.data", before)
    assert offsets == [0, 1856, 2496, 2688, 2880]
    assert all(_entries(t)["location"] == "in.onnx.data" for t in iter_tensors(bare)
               if t.data_location == TensorProto.EXTERNAL)  # the input's proto still points at its own file
    np.testing.assert_array_equal(_run(str(out)), y_before)


@pytest.mark.parametrize("threshold", [1, 2000])
def test_threshold_extremes(tmp_path, threshold):
    # threshold 1: every tensor goes to the side file; 2000 (> the largest, 1850 B): none
    m = _model()
    before = {t.name: t.raw_data for t in iter_tensors(m)}
    path = tmp_path / "q.onnx"
    data_path = save_model(m, path, external_data=True, size_threshold=threshold)
    stored = onnx.load(str(path), load_external_data=False)
    n_external = sum(t.data_location == TensorProto.EXTERNAL for t in iter_tensors(stored))
    if threshold == 1:
        assert n_external == len(before) == 6
        offsets = _check_layout(stored, data_path.read_bytes(), "q.onnx.data", before)
        assert all(o % ALIGN == 0 for o in offsets) and len(offsets) == 6
    else:
        assert n_external == 0
        assert not data_path.exists() or data_path.stat().st_size == 0
    np.testing.assert_array_equal(_run(str(path)), _run(m))
