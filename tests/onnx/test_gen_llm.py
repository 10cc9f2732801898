"""tools/gen_llm.py: the LLM-shaped decoders run in onnxruntime, equal a NumPy forward pass,
are byte-deterministic for a seed, and quantize with the command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from monoquant_np.cli import main  # noqa: E402


def _run(path: Path, ids: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input_ids": ids})[0]


def _weights(path: Path) -> dict[str, np.ndarray]:
    m = onnx.load(str(path))  # external data included
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}


def _rms(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def _forward(w: dict[str, np.ndarray], cfg, ids: np.ndarray) -> np.ndarray:
    """The decoder in float64 NumPy, written from the generator's docstring: ``(B, S)`` ids -> ``(B, S, vocab)``."""
    b, s = ids.shape
    hd, rep = cfg.head_dim, cfg.heads // cfg.kv_heads
    cos, sin = w["rotary.cos_table"][:s], w["rotary.sin_table"][:s]  # (S, hd)

    def rope(t):  # (B, n, S, hd)
        return t * cos + np.concatenate([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin

    def proj(x, p, name, n):
        y = x @ w[f"{p}self_attn.{name}_proj.weight"] + w.get(f"{p}self_attn.{name}_proj.bias", 0.0)
        return y.reshape(b, s, n, hd).transpose(0, 2, 1, 3)  # (B, n, S, hd)

    x = w["model.embed_tokens.weight"][ids]  # (B, S, H)
    mask = np.triu(np.full((s, s), -np.inf), 1)
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "input_layernorm.weight"], cfg.eps)
        q = rope(proj(h, p, "q", cfg.heads))
        k = np.repeat(rope(proj(h, p, "k", cfg.kv_heads)), rep, axis=1)
        v = np.repeat(proj(h, p, "v", cfg.kv_heads), rep, axis=1)
        a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(b, s, cfg.hidden)
        x = x + ctx @ w[p + "self_attn.o_proj.weight"]
        h = _rms(x, w[p + "post_attention_layernorm.weight"], cfg.eps)
        g = h @ w[p + "mlp.gate_proj.weight"]
        x = x + (g / (1 + np.exp(-g)) * (h @ w[p + "mlp.up_proj.weight"])) @ w[p + "mlp.down_proj.weight"]
    x = _rms(x, w["model.norm.weight"], cfg.eps)
    head = w["model.embed_tokens.weight"].T if cfg.tied else w["lm_head.weight"]
    return x @ head


@pytest.mark.parametrize("tied", [False, True])
def test_float32_decoder_equals_the_numpy_forward(gen_llm, tmp_path, tied):
    cfg = gen_llm.config("tiny", layers=2, tied=tied, qkv_bias=tied)
    path = gen_llm.generate(tmp_path / "m.onnx", cfg, seed=3)
    ids = gen_llm.input_ids(cfg, 2, 12)
    got = _run(path, ids)
    want = _forward(_weights(path), cfg, ids)
    assert got.shape == (2, 12, cfg.vocab) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    shapes = gen_llm.weight_shapes(cfg)
    assert {k: a.shape for k, a in _weights(path).items() if k in shapes} == shapes
    assert gen_llm.param_count(cfg) == sum(int(np.prod(s)) for s in shapes.values())


def test_float16_decoder_runs_close_to_its_float32_twin(gen_llm, tmp_path):
    cfg = gen_llm.config("tiny", layers=1)
    p32 = gen_llm.generate(tmp_path / "f32.onnx", cfg)
    p16 = gen_llm.generate(tmp_path / "f16.onnx", dataclasses.replace(cfg, dtype="float16"))
    ids = gen_llm.input_ids(cfg, 1, 10)
    y16, y32 = _run(p16, ids), _run(p32, ids)
    assert y16.dtype == np.float16 and y16.shape == y32.shape
    cos = float((y16.astype(np.float64) * y32).sum() / np.linalg.norm(y16.astype(np.float64)) / np.linalg.norm(y32))
    assert cos > 0.999


def test_logits_are_causal(gen_llm, tmp_path):
    cfg = gen_llm.config("tiny", layers=1)
    path = gen_llm.generate(tmp_path / "m.onnx", cfg)
    ids = gen_llm.input_ids(cfg, 1, 8)
    other = ids.copy()
    other[0, 5] = (other[0, 5] + 1) % cfg.vocab
    a, b = _run(path, ids), _run(path, other)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert not np.allclose(a[:, 5:], b[:, 5:])


def test_bytes_depend_only_on_seed_name_and_shape(gen_llm, tmp_path):
    cfg = gen_llm.config("tiny", layers=2)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    a = gen_llm.generate(tmp_path / "a" / "m.onnx", cfg, seed=7)
    b = gen_llm.generate(tmp_path / "b" / "m.onnx", cfg, seed=7)
    c = gen_llm.generate(tmp_path / "c" / "m.onnx", cfg, seed=8)
    data = [Path(str(p) + ".data").read_bytes() for p in (a, b, c)]
    assert a.read_bytes() == b.read_bytes() and data[0] == data[1]
    assert data[0] != data[2] and len(data[0]) == len(data[2])
    one = _weights(gen_llm.generate(tmp_path / "one.onnx", dataclasses.replace(cfg, layers=1), seed=7))
    two = _weights(a)
    for name, w in one.items():  # a shallower model's weights are the deeper one's
        np.testing.assert_array_equal(w, two[name], err_msg=name)
    w = two["model.layers.1.mlp.up_proj.weight"]
    assert abs(w.std() - gen_llm.WEIGHT_STD) < 0.002 and abs(w.mean()) < 0.002


def test_bad_widths_are_value_errors(gen_llm):
    with pytest.raises(ValueError, match="kv_heads"):
        gen_llm.config("tiny", kv_heads=3)
    with pytest.raises(ValueError, match="preset"):
        gen_llm.config("gpt-9")
    with pytest.raises(ValueError, match="dtype"):
        gen_llm.config("tiny", dtype="bfloat16")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_command_line_quantizes_a_generated_decoder(gen_llm, tmp_path, capsys, dtype):
    cfg = gen_llm.config("tiny", layers=2, dtype=dtype, tied=True)
    src = gen_llm.generate(tmp_path / "m.onnx", cfg)
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(src), str(out), "--external-data", "--ops", "MatMul,Gather",
                 "--report", str(tmp_path / "r.json")]) == 0
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["layers"] == 7 * cfg.layers + 1  # 7 per layer + the tied embedding / LM head
    ids = gen_llm.input_ids(cfg, 2, 16)
    y, yq = _run(src, ids).astype(np.float64), _run(out, ids).astype(np.float64)
    cos = (y * yq).sum(-1) / np.linalg.norm(y, axis=-1) / np.linalg.norm(yq, axis=-1)
    assert 0.9 < cos.mean() < 0.9999
