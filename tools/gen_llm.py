"""Generate LLM-shaped ONNX models: a LLaMA/Qwen-style decoder with random weights.

The graph is a decoder-only transformer as exported from Hugging Face models
(prefill, no KV cache), built with ``onnx.helper`` only:

* ``input_ids`` ``(batch, seq)`` int64 -> ``logits`` ``(batch, seq, vocab)`` in the model's dtype;
* token embedding ``Gather`` of ``model.embed_tokens.weight`` ``(vocab, hidden)``;
* per layer: RMSNorm ``y = x / sqrt(mean(x^2, -1) + eps) * g``; attention with
  ``heads`` query heads and ``kv_heads`` key/value heads (grouped-query attention,
  each key/value head repeated ``heads / kv_heads`` times), rotary position
  embedding read from ``cos``/``sin`` tables ``(max_positions, head_dim)``
  (``x * cos + rotate_half(x) * sin``), a causal mask, optional q/k/v biases
  (Qwen); a SwiGLU MLP ``down(silu(gate(x)) * up(x))``; residual adds;
* a final RMSNorm and the LM head: its own ``(hidden, vocab)`` MatMul weight, or
  the embedding table read through ``Transpose`` (tied embeddings).

Every MatMul weight is stored ``(K, N)`` = ``(in, out)``, the orientation
``MatMul`` reads. Weights are ``standard_normal * 0.02`` (norm gains 1, biases
0.02-scaled too), each drawn from ``numpy.random.default_rng([seed,
crc32(name)])`` in fixed chunks of rows, so a tensor's bytes depend only on the
seed, its name, its shape and the dtype (an 8-layer model's first two layers
equal the 2-layer model's). Each tensor is written to the external data file
``OUT.onnx.data`` as it is drawn, one chunk of at most :data:`CHUNK_ELEMENTS`
values in memory at a time, so a 7B model is generated in a few hundred MB.

Usage::

    python tools/gen_llm.py OUT.onnx --preset tinyllama-1.1b --layers 8 [--dtype float16] [--seed 0]
    python tools/gen_llm.py OUT.onnx --preset tiny --layers 2 --tied

From tests (``tools/`` is not a package)::

    spec = importlib.util.spec_from_file_location("gen_llm", ROOT / "tools" / "gen_llm.py")
    gen_llm = importlib.util.module_from_spec(spec); spec.loader.exec_module(gen_llm)
    gen_llm.generate(path, gen_llm.config("tiny", layers=2))
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

__all__ = ["LlmConfig", "PRESETS", "config", "generate", "param_count", "weight_shapes", "input_ids", "CHUNK_ELEMENTS"]

#: Values drawn and written at a time; fixed, because the bytes depend on it.
CHUNK_ELEMENTS = 1 << 22
#: Scale of the random weights (the usual initializer range of LLaMA-style models).
WEIGHT_STD = 0.02
OPSET = 21
IR_VERSION = 10


@dataclasses.dataclass(frozen=True)
class LlmConfig:
    """The widths of a decoder. ``head_dim = hidden // heads``; ``heads`` is a multiple of ``kv_heads``."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    max_positions: int = 2048
    tied: bool = False
    qkv_bias: bool = False
    dtype: str = "float32"
    rope_theta: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def check(self) -> LlmConfig:
        for f in ("vocab", "hidden", "layers", "heads", "kv_heads", "intermediate", "max_positions"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be a positive int, got {v!r}")
        if self.hidden % self.heads or self.head_dim % 2:
            raise ValueError(f"hidden {self.hidden} must be heads {self.heads} x an even head_dim")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        return self


#: Widths of known models (layers can be overridden).
PRESETS: dict[str, LlmConfig] = {
    "tiny": LlmConfig(vocab=512, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=384, max_positions=64),
    "tinyllama-1.1b": LlmConfig(vocab=32000, hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632),
    "llama-2-7b": LlmConfig(vocab=32000, hidden=4096, layers=32, heads=32, kv_heads=32, intermediate=11008,
                            max_positions=4096),
    "qwen2-0.5b": LlmConfig(vocab=151936, hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864,
                            max_positions=4096, tied=True, qkv_bias=True, rope_theta=1000000.0, eps=1e-6),
}


def config(preset: str = "tiny", **overrides: Any) -> LlmConfig:
    """The widths of ``preset`` with ``overrides`` (any :class:`LlmConfig` field), checked."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return dataclasses.replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}).check()


def weight_shapes(cfg: LlmConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's name and stored shape, in file order (rotary tables excluded)."""
    h, kv = cfg.hidden, cfg.kv_heads * cfg.head_dim
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab, h)}
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (h,)
        for name, n in (("q", h), ("k", kv), ("v", kv)):
            out[p + f"self_attn.{name}_proj.weight"] = (h, n)
            if cfg.qkv_bias:
                out[p + f"self_attn.{name}_proj.bias"] = (n,)
        out[p + "self_attn.o_proj.weight"] = (h, h)
        out[p + "post_attention_layernorm.weight"] = (h,)
        out[p + "mlp.gate_proj.weight"] = (h, cfg.intermediate)
        out[p + "mlp.up_proj.weight"] = (h, cfg.intermediate)
        out[p + "mlp.down_proj.weight"] = (cfg.intermediate, h)
    out["model.norm.weight"] = (h,)
    if not cfg.tied:
        out["lm_head.weight"] = (h, cfg.vocab)
    return out


def param_count(cfg: LlmConfig) -> int:
    """Number of weights (rotary tables excluded)."""
    return sum(math.prod(s) for s in weight_shapes(cfg).values())


def input_ids(cfg: LlmConfig, batch: int, seq: int, seed: int = 0) -> np.ndarray:
    """Random token ids ``(batch, seq)`` int64 in ``[0, vocab)``; ``seq <= max_positions``."""
    if seq > cfg.max_positions:
        raise ValueError(f"seq must be at most max_positions {cfg.max_positions}, got {seq}")
    return np.random.default_rng([seed, 1]).integers(0, cfg.vocab, size=(batch, seq), dtype=np.int64)


class _DataFile:
    """Appends tensors to the external data file, returning initializers that refer to it."""

    def __init__(self, f, location: str, dtype: str, seed: int):
        self.f, self.location, self.dtype, self.seed, self.offset = f, location, np.dtype(dtype), seed, 0

    def _ref(self, name: str, shape: tuple[int, ...], nbytes: int) -> TensorProto:
        t = TensorProto(name=name, dims=list(shape), data_type=helper.np_dtype_to_tensor_dtype(self.dtype))
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(self.offset)), ("length", str(nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.offset += nbytes
        return t

    def random(self, name: str, shape: tuple[int, ...]) -> TensorProto:
        """``standard_normal * 0.02`` drawn in chunks of rows, written as drawn (norm gains: ones)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        cols = shape[-1]
        rows = math.prod(shape[:-1])
        step = max(1, CHUNK_ELEMENTS // cols)
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            if name.endswith("norm.weight"):
                block = np.ones((n, cols), dtype=self.dtype)
            else:
                block = (rng.standard_normal((n, cols), dtype=np.float32) * np.float32(WEIGHT_STD)).astype(self.dtype)
            self.f.write(block.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        return self._ref(name, shape, math.prod(shape) * self.dtype.itemsize)

    def array(self, name: str, a: np.ndarray) -> TensorProto:
        a = np.ascontiguousarray(a, dtype=self.dtype.newbyteorder("<"))
        self.f.write(a.tobytes())
        return self._ref(name, a.shape, a.nbytes)


class _Graph:
    """Nodes with fresh output names, and small inline constants."""

    def __init__(self, dtype: str):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.np_dtype = np.dtype(dtype)
        self._n = 0

    def op(self, op: str, *inputs: str, outputs: int = 1, name: str = "", **attrs: Any) -> Any:
        self._n += 1
        base = name or f"{op.lower()}_{self._n}"
        outs = [f"{base}_out{j}" if outputs > 1 else f"{base}_out" for j in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=base, **attrs))
        return outs if outputs > 1 else outs[0]

    def const(self, name: str, value: Any, dtype: Any = np.int64) -> str:
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def fconst(self, name: str, value: float) -> str:
        return self.const(name, value, self.np_dtype)


def _rotary_tables(cfg: LlmConfig) -> tuple[np.ndarray, np.ndarray]:
    """``cos``, ``sin`` ``(max_positions, head_dim)``: angle ``p * theta^(-2j / head_dim)``, halves repeated."""
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    ang = np.outer(np.arange(cfg.max_positions, dtype=np.float64), inv)  # (P, head_dim / 2)
    ang = np.concatenate([ang, ang], axis=1)  # (P, head_dim)
    return np.cos(ang), np.sin(ang)


def _rms_norm(g: _Graph, x: str, weight: str, name: str) -> str:
    """``x / sqrt(mean(x^2, axis=-1) + eps) * weight``."""
    var = g.op("ReduceMean", g.op("Mul", x, x, name=f"{name}.sq"), "axes_last", keepdims=1, name=f"{name}.mean")
    r = g.op("Sqrt", g.op("Add", var, "eps", name=f"{name}.add_eps"), name=f"{name}.sqrt")
    return g.op("Mul", g.op("Div", x, r, name=f"{name}.div"), weight, name=f"{name}.scale")


def _heads(g: _Graph, x: str, n: int, cfg: LlmConfig, name: str) -> str:
    """``(B, S, n * head_dim)`` -> ``(B, n, S, head_dim)``."""
    r = g.op("Reshape", x, g.const(f"{name}.shape", [0, 0, n, cfg.head_dim]), name=f"{name}.reshape")
    return g.op("Transpose", r, perm=[0, 2, 1, 3], name=f"{name}.transpose")


def _rope(g: _Graph, x: str, name: str) -> str:
    """``x * cos + rotate_half(x) * sin``; ``rotate_half([x1, x2]) = [-x2, x1]`` on the last axis."""
    x1, x2 = g.op("Split", x, axis=-1, num_outputs=2, outputs=2, name=f"{name}.split")
    rot = g.op("Concat", g.op("Neg", x2, name=f"{name}.neg"), x1, axis=-1, name=f"{name}.rotate")
    return g.op("Add", g.op("Mul", x, "cos", name=f"{name}.mul_cos"), g.op("Mul", rot, "sin", name=f"{name}.mul_sin"),
                name=f"{name}.rope")


def _linear(g: _Graph, x: str, w: TensorProto, data: _DataFile, bias: TensorProto | None = None) -> str:
    g.inits.append(w)
    y = g.op("MatMul", x, w.name, name=w.name.removesuffix(".weight"))
    if bias is None:
        return y
    g.inits.append(bias)
    return g.op("Add", y, bias.name, name=bias.name.removesuffix(".bias") + ".bias_add")


def _attention(g: _Graph, x: str, cfg: LlmConfig, data: _DataFile, p: str) -> str:
    """Grouped-query self-attention with rotary embedding and a causal mask: ``(B, S, hidden)`` in and out."""
    h, kv = cfg.hidden, cfg.kv_heads * cfg.head_dim
    proj = {}
    for name, n in (("q", h), ("k", kv), ("v", kv)):
        w = data.random(f"{p}self_attn.{name}_proj.weight", (h, n))
        b = data.random(f"{p}self_attn.{name}_proj.bias", (n,)) if cfg.qkv_bias else None
        proj[name] = _heads(g, _linear(g, x, w, data, b), n // cfg.head_dim, cfg, f"{p}self_attn.{name}")
    q, k, v = _rope(g, proj["q"], f"{p}self_attn.q"), _rope(g, proj["k"], f"{p}self_attn.k"), proj["v"]
    rep = cfg.heads // cfg.kv_heads
    if rep > 1:  # (B, kv, S, hd) -> (B, kv, rep, S, hd) -> (B, heads, S, hd)
        k, v = (g.op("Reshape", g.op("Expand", g.op("Unsqueeze", t, "axis_2", name=f"{p}self_attn.{s}.unsq"),
                                     "repeat_kv", name=f"{p}self_attn.{s}.expand"),
                     "heads_shape", name=f"{p}self_attn.{s}.repeat") for s, t in (("k", k), ("v", v)))
    kt = g.op("Transpose", k, perm=[0, 1, 3, 2], name=f"{p}self_attn.k_t")
    scores = g.op("Mul", g.op("MatMul", q, kt, name=f"{p}self_attn.qk"), "attn_scale", name=f"{p}self_attn.scale")
    probs = g.op("Softmax", g.op("Add", scores, "causal_mask", name=f"{p}self_attn.mask"), axis=-1,
                 name=f"{p}self_attn.softmax")
    ctx = g.op("Transpose", g.op("MatMul", probs, v, name=f"{p}self_attn.pv"), perm=[0, 2, 1, 3],
               name=f"{p}self_attn.ctx_t")
    ctx = g.op("Reshape", ctx, "merge_heads", name=f"{p}self_attn.merge")
    return _linear(g, ctx, data.random(f"{p}self_attn.o_proj.weight", (h, h)), data)


def _mlp(g: _Graph, x: str, cfg: LlmConfig, data: _DataFile, p: str) -> str:
    """SwiGLU: ``down(silu(gate(x)) * up(x))``, ``silu(a) = a * sigmoid(a)``."""
    gate = _linear(g, x, data.random(f"{p}mlp.gate_proj.weight", (cfg.hidden, cfg.intermediate)), data)
    up = _linear(g, x, data.random(f"{p}mlp.up_proj.weight", (cfg.hidden, cfg.intermediate)), data)
    silu = g.op("Mul", gate, g.op("Sigmoid", gate, name=f"{p}mlp.sigmoid"), name=f"{p}mlp.silu")
    act = g.op("Mul", silu, up, name=f"{p}mlp.glu")
    return _linear(g, act, data.random(f"{p}mlp.down_proj.weight", (cfg.intermediate, cfg.hidden)), data)


def _shared_inputs(g: _Graph, cfg: LlmConfig, data: _DataFile) -> None:
    """Constants every layer reads: rotary tables cut to ``seq`` rows, the causal mask, shapes, eps."""
    cos, sin = _rotary_tables(cfg)
    g.inits += [data.array("rotary.cos_table", cos), data.array("rotary.sin_table", sin)]
    seq = g.op("Shape", "input_ids", start=1, end=2, name="seq_len")  # (1,)
    g.const("zero_1d", [0]), g.const("axis_2", [2]), g.const("axes_last", [-1]), g.const("zero", 0)
    g.const("one", 1)
    for which in ("cos", "sin"):
        g.nodes.append(helper.make_node("Slice", [f"rotary.{which}_table", "zero_1d", seq, "zero_1d"], [which],
                                        name=f"rotary.{which}"))
    r = g.op("Range", "zero", g.op("Squeeze", seq, "zero_1d", name="seq_scalar"), "one", name="positions")
    future = g.op("Greater", g.op("Unsqueeze", r, "zero_1d", name="cols"),
                  g.op("Unsqueeze", r, g.const("axis_1", [1]), name="rows"),
                  name="future")
    g.nodes.append(helper.make_node("Where", [future, g.fconst("neg_big", np.finfo(g.np_dtype).min),
                                              g.fconst("fzero", 0.0)], ["causal_mask"], name="causal_mask"))
    g.fconst("eps", cfg.eps), g.fconst("attn_scale", 1.0 / math.sqrt(cfg.head_dim))
    g.const("repeat_kv", [1, 1, cfg.heads // cfg.kv_heads, 1, 1])
    g.const("heads_shape", [0, cfg.heads, -1, cfg.head_dim]), g.const("merge_heads", [0, 0, cfg.hidden])


def _build(cfg: LlmConfig, data: _DataFile) -> onnx.ModelProto:
    g = _Graph(cfg.dtype)
    embed = data.random("model.embed_tokens.weight", (cfg.vocab, cfg.hidden))
    g.inits.append(embed)
    _shared_inputs(g, cfg, data)
    x = g.op("Gather", embed.name, "input_ids", axis=0, name="model.embed_tokens")
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        w1 = data.random(p + "input_layernorm.weight", (cfg.hidden,))
        g.inits.append(w1)
        x = g.op("Add", x, _attention(g, _rms_norm(g, x, w1.name, p + "input_layernorm"), cfg, data, p),
                 name=p + "attn_residual")
        w2 = data.random(p + "post_attention_layernorm.weight", (cfg.hidden,))
        g.inits.append(w2)
        x = g.op("Add", x, _mlp(g, _rms_norm(g, x, w2.name, p + "post_attention_layernorm"), cfg, data, p),
                 name=p + "mlp_residual")
    wn = data.random("model.norm.weight", (cfg.hidden,))
    g.inits.append(wn)
    x = _rms_norm(g, x, wn.name, "model.norm")
    if cfg.tied:
        head = g.op("Transpose", embed.name, perm=[1, 0], name="lm_head.tied_transpose")
        g.nodes.append(helper.make_node("MatMul", [x, head], ["logits"], name="lm_head"))
    else:
        w = data.random("lm_head.weight", (cfg.hidden, cfg.vocab))
        g.inits.append(w)
        g.nodes.append(helper.make_node("MatMul", [x, w.name], ["logits"], name="lm_head"))
    elem = helper.np_dtype_to_tensor_dtype(g.np_dtype)
    graph = helper.make_graph(
        g.nodes, "decoder", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", elem, ["batch", "seq", cfg.vocab])], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gen_llm")
    model.ir_version = IR_VERSION
    return model


def generate(path: str | Path, cfg: LlmConfig, seed: int = 0,
             log: Callable[[str], None] | None = None) -> Path:
    """Write the decoder ``cfg`` to ``path`` with its weights in ``path + ".data"``; return ``path``.

    Tensors are drawn and written one chunk at a time (module docstring), so
    memory stays near :data:`CHUNK_ELEMENTS` values whatever the model's size.
    """
    cfg.check()
    out = Path(path)
    location = out.name + ".data"
    with open(out.with_name(location), "wb") as f:
        model = _build(cfg, _DataFile(f, location, cfg.dtype, seed))
    onnx.save(model, str(out))
    onnx.checker.check_model(str(out))
    if log is not None:
        size = out.with_name(location).stat().st_size
        log(f"wrote {out} ({param_count(cfg):,} weights, {cfg.layers} layers, {cfg.dtype}, "
            f"{size / 2**30:.2f} GiB data)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", help="the .onnx file (its weights go to OUTPUT.data)")
    ap.add_argument("--preset", default="tiny", choices=tuple(PRESETS))
    for f in ("vocab", "hidden", "layers", "heads", "kv_heads", "intermediate", "max_positions"):
        ap.add_argument("--" + f.replace("_", "-"), type=int, default=None, help=f"override the preset's {f}")
    ap.add_argument("--dtype", choices=("float32", "float16"), default=None)
    ap.add_argument("--tied", action=argparse.BooleanOptionalAction, default=None,
                    help="LM head reads the embedding table (default: the preset's)")
    ap.add_argument("--qkv-bias", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        cfg = config(a.preset, vocab=a.vocab, hidden=a.hidden, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
                     intermediate=a.intermediate, max_positions=a.max_positions, dtype=a.dtype, tied=a.tied,
                     qkv_bias=a.qkv_bias)
        generate(a.output, cfg, a.seed, log=print)
    except (ValueError, OSError) as e:
        print(f"gen_llm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
