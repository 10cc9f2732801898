"""Benchmarks of monoquant_np's NumPy kernels against their peers (docs/performance.md).

Usage::

    python tools/bench.py [--quick] [--reps 5] [--markdown docs/performance.md] [--json bench.json]
                          [--only quant,unpack,matmul,memory,model,nf4] [--threads N] [--pair-reps 21]

One run, every row a ratio ``ours / peer`` of medians measured side by side
in the same run: the candidates of a row group are timed round-robin
(``--reps`` rounds after one warm-up call, each round starting with the
next candidate), so a load spike from another process hits all of them alike. Sections:

* ``quant``: quantize + pack a 4096x4096 float32 weight, group 128, symmetric
  and asymmetric, against onnxruntime's C++ kernel
  (``onnxruntime.capi._pybind_state.quantize_matmul_4bits``), gguf-py's NumPy
  ``Q4_0`` (``Q4_1`` for asymmetric) and the textbook NumPy form of
  :mod:`monoquant_np.testing.reference` (whose bytes must equal ours: checked); and the same with groups along
  axis 1 (the ``(N, K)`` layout, gguf-py's blocks' axis; no target);
* ``unpack``: 16M int4 codes against a memcpy of the same 16 MB of output;
* ``matmul``: ``dequant_matmul`` at batch 1, 32 and 256 against plain NumPy
  dequantize-then-matmul, ``onnx.reference.ReferenceEvaluator`` on the same
  exported graph (``linear_model(qt, format="qdq")``), onnxruntime on that
  graph unfused (``ORT_DISABLE_ALL``) and fused (``MatMulNBits``, accuracy
  levels 1 and 4; the fusion is checked in the optimized graph) and NumPy's
  float32 matmul on the unquantized weight;
* ``memory``: tracemalloc peak of ``dequant_matmul`` on a 4096x11008 weight as
  a fraction of its float32 size (peer: plain dequantize-then-matmul);
* ``nf4`` (no target): NF4 block 64 on a 4096x4096 weight, ``quantize_nf4``
  (time and tracemalloc peak) against the textbook rounding, ``dequantize``
  against the textbook lookup (values must be identical: checked) and against
  int4 g64, and ``dequant_matmul`` at batch 1 and 256 against
  dequantize-then-matmul and against int4 g64; and quantizing (with and without
  double quantization) and dequantizing against bitsandbytes' own CPU kernels
  on the same weight (bytes and values must be identical: checked), when torch
  and bitsandbytes are installed;
* ``model``: quantizing MiniLM-L3 with ``monoquant_np.onnx.quantizer.pipeline.quantize_model``
  against onnxruntime's ``MatMulNBitsQuantizer``, and onnxruntime's latency on
  both outputs (batch 8 x 128 tokens) at accuracy levels 1 and 4.

``--threads N`` runs every candidate on ``N`` threads (OpenBLAS through its
environment variables, set before NumPy loads; onnxruntime's intra-op pool).
``dequant_matmul`` decodes on one thread between multithreaded BLAS products,
while the float32 peer is one BLAS call on every core: ``--threads 1``
compares like with like on one core.

Candidates that leave threads behind slow whatever runs next on two cores:
onnxruntime's pool thread spins for some 20-50 ms after a run
(``tools/bench_interference.py`` measures it). The ``matmul`` section therefore
times two rotations per batch: ours, plain NumPy and the float32 matmul; and
ours again against the onnxruntime sessions (the ``ours`` of the onnxruntime
rows, always timed right after a session: pessimistic for ours).

The batch-256 row against the float32 matmul, the one target whose margin is
smaller than the noise of a short median here, is timed a third time on its
own: ours and the float32 matmul strictly alternating, ``--pair-reps`` rounds
(21, about 2 s), so that every call of each comes right after one of the
other. (A rotation of two would run each after itself at every other round
boundary, where ``dequant_matmul`` finds its packed weight still in the cache.)
On a shared machine a median of a few rounds of this pair spreads widely; 21
rounds keep the spread well inside the target's margin.

The "plain NumPy" peers are the textbook implementations of
:mod:`monoquant_np.testing.reference`, the same functions the fast-path tests
pin the kernels to.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the tables and how to read them to a page
(``docs/performance.md``). ``--quick`` shrinks the sizes (1024x1024, 1M codes,
1024x2752) for a smoke run; only a full run's figures belong on the page. Rows
that cannot run (a missing module or model) print the reason instead of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any


def _threads_from_argv(argv: list[str]) -> int | None:
    """``--threads N`` must act before NumPy loads its BLAS: read it here."""
    for i, a in enumerate(argv):
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
    return None


THREADS = _threads_from_argv(sys.argv[1:])
if THREADS is not None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(THREADS)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _report import environment, markdown_table, print_environment, write_page  # noqa: E402

from monoquant_np import dequant_matmul, dequantize, quantize, unpack_int4  # noqa: E402
from monoquant_np.testing import reference  # noqa: E402

ROWS: list[dict[str, Any]] = []


# ---------------------------------------------------------------- harness
def timeit(cands: dict[str, Callable[[], Any]], reps: int, rotate: bool = True) -> dict[str, float]:
    """Median seconds of each candidate, timed round-robin after one warm-up call each;
    the round's starting candidate rotates, so no one always runs first. With two
    candidates and ``rotate=False`` they strictly alternate: each call comes right after
    the other's, never after its own (which would find its operands in the cache)."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    for f in cands.values():
        f()
    names = list(cands)
    for r in range(reps):
        start = r % len(names) if rotate else 0
        for k in names[start:] + names[:start]:
            t0 = time.perf_counter()
            cands[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def add_row(section: str, case: str, ours: float | None, peer: str, theirs: float | None,
            target: float | None = None, unit: str = "ms", note: str = "") -> None:
    """One table row; ``ours``/``theirs`` in ``unit``; ``target`` bounds ``ours / theirs``."""
    ratio = ours / theirs if ours is not None and theirs else None
    met = None if target is None or ratio is None else ratio <= target
    ROWS.append(dict(section=section, case=case, ours=ours, peer=peer, theirs=theirs, ratio=ratio,
                     target=target, met=met, unit=unit, note=note))
    print(_fmt(ROWS[-1]), flush=True)


def skip_row(section: str, case: str, peer: str, reason: str) -> None:
    ROWS.append(dict(section=section, case=case, ours=None, peer=peer, theirs=None, ratio=None,
                     target=None, met=None, unit="", note=f"skipped: {reason}"))
    print(_fmt(ROWS[-1]), flush=True)


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if unit == "x weight" else f"{v:.2f}"


def _fmt(r: dict[str, Any]) -> str:
    tgt = "" if r["target"] is None else f"<= {r['target']:g}"
    met = {None: "", True: "yes", False: "NO"}[r["met"]]
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
    return (f"| {r['section']} | {r['case']} | {_num(r['ours'], r['unit'])} | {r['peer']} | "
            f"{_num(r['theirs'], r['unit'])} | {ratio} | {tgt} | {met} | {r['note']} |")


HEADER = ("| section | case | ours | peer | peer | ours/peer | target | met | note |\n"
          "|---|---|---|---|---|---|---|---|---|")


# ------------------------------------------------------- plain NumPy peers
def plain_quantize(w: np.ndarray, group: int, symmetric: bool, axis: int = 0) -> np.ndarray:
    """The textbook quantize + pack (spec 3-5): packed bytes."""
    return reference.quantize(w, group, axis, symmetric).data


# ---------------------------------------------------------------- sections
def bench_quant(k: int, n: int, reps: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n), dtype=np.float32)
    group = 128
    try:
        from onnxruntime.capi._pybind_state import quantize_matmul_4bits
    except ImportError as e:
        quantize_matmul_4bits = None
        ort_reason = f"onnxruntime: {e}"
    try:
        import gguf.quants as gq
        from gguf import GGMLQuantizationType
    except ImportError as e:
        gq = None
        gguf_reason = f"gguf: {e}"
    for symmetric in (True, False):
        case = f"quantize+pack {k}x{n} g{group} {'sym' if symmetric else 'asym'}"
        same = np.array_equal(quantize(w, symmetric=symmetric).data, plain_quantize(w, group, symmetric))
        cands: dict[str, Callable[[], Any]] = {"ours": lambda s=symmetric: quantize(w, symmetric=s)}
        cands["plain"] = lambda s=symmetric: plain_quantize(w, group, s)
        if quantize_matmul_4bits is not None:
            kb = -(-k // group)

            def ort_q(s: bool = symmetric, kb: int = kb) -> None:
                packed = np.zeros((n, kb, group // 2), np.uint8)
                zp = np.zeros((n, (kb + 1) // 2), np.uint8)
                sc = np.zeros((n, kb), np.float32)
                quantize_matmul_4bits(packed, w, sc, zp, group, n, k, s)
            cands["ort"] = ort_q
        gtype: Any = None
        if gq is not None:
            gtype = GGMLQuantizationType.Q4_0 if symmetric else GGMLQuantizationType.Q4_1
            cands["gguf"] = lambda t=gtype: gq.quantize(w, t)
        t = timeit(cands, reps)
        ms = {name: v * 1e3 for name, v in t.items()}
        if "ort" in ms:
            add_row("quant", case, ms["ours"], "onnxruntime C++ quantize_matmul_4bits", ms["ort"], 1.0)
        else:
            skip_row("quant", case, "onnxruntime C++", ort_reason)
        if "gguf" in ms:
            add_row("quant", case, ms["ours"], f"gguf-py NumPy {gtype.name} (block 32)", ms["gguf"], 1.0)
        else:
            skip_row("quant", case, "gguf-py", gguf_reason)
        add_row("quant", case, ms["ours"], "plain NumPy", ms["plain"],
                note="bytes bit-identical" if same else "BYTES DIFFER")
    # groups along the last axis (the (N, K) layout of PyTorch and bitsandbytes), as gguf-py's blocks
    for symmetric in (True, False):
        case = f"quantize+pack {k}x{n} g{group} {'sym' if symmetric else 'asym'}, groups along axis 1"
        same = np.array_equal(quantize(w, axis=1, symmetric=symmetric).data, plain_quantize(w, group, symmetric, 1))
        cands = {"ours": lambda s=symmetric: quantize(w, axis=1, symmetric=s),
                 "plain": lambda s=symmetric: plain_quantize(w, group, s, 1)}
        if gq is not None:
            gtype = GGMLQuantizationType.Q4_0 if symmetric else GGMLQuantizationType.Q4_1
            cands["gguf"] = lambda t=gtype: gq.quantize(w, t)
        ms = {name: v * 1e3 for name, v in timeit(cands, reps).items()}
        if "gguf" in ms:
            add_row("quant", case, ms["ours"], f"gguf-py NumPy {gtype.name} (block 32, same axis)", ms["gguf"])
        add_row("quant", case, ms["ours"], "plain NumPy", ms["plain"],
                note="bytes bit-identical" if same else "BYTES DIFFER")


def bench_unpack(count: int, reps: int) -> None:
    rng = np.random.default_rng(1)
    packed = rng.integers(0, 256, count // 2, dtype=np.uint8)
    src = rng.integers(0, 256, count, dtype=np.uint8)  # the output's bytes, for the memcpy
    same = np.array_equal(unpack_int4(packed, count), reference.unpack(packed, count, True))
    t = timeit({"ours": lambda: unpack_int4(packed, count), "memcpy": src.copy,
                "plain": lambda: reference.unpack(packed, count, True)}, reps)
    case = f"unpack {count // 2**20}M int4 codes"
    add_row("unpack", case, t["ours"] * 1e3, f"memcpy of the {count // 2**20} MB output", t["memcpy"] * 1e3, 4.0)
    add_row("unpack", case, t["ours"] * 1e3, "plain NumPy (strided nibbles)", t["plain"] * 1e3,
            note="codes identical" if same else "CODES DIFFER")


def _op_types(sess_opts: Any, model_bytes: bytes, level: str | None) -> tuple[Any, list[str]]:
    """An onnxruntime session and the op types of the graph it optimized (sorted, one per node)."""
    import onnx
    import onnxruntime as ort

    # Spinning worker threads would steal the cores from the NumPy candidates
    # timed in between (and OpenBLAS's from onnxruntime's): off, for every session.
    sess_opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess_opts.log_severity_level = 3
    if THREADS is not None:
        sess_opts.intra_op_num_threads = THREADS
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        sess_opts.optimized_model_filepath = path
        if level is not None:
            sess_opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", level)
        sess = ort.InferenceSession(model_bytes, sess_opts, providers=["CPUExecutionProvider"])
        ops = sorted(node.op_type for node in onnx.load(path).graph.node)  # with repeats: counts compare
    return sess, ops


def bench_matmul(k: int, n: int, batches: list[int], reps: int, pair_reps: int) -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((k, n), dtype=np.float32)
    qt = quantize(w)
    sessions: dict[str, Any] = {}
    ref = None
    reason = ""
    try:
        import onnxruntime as ort
        from onnx.reference import ReferenceEvaluator

        from monoquant_np.onnx.export.models import linear_model

        model = linear_model(qt, format="qdq")
        data = model.SerializeToString()
        ref = ReferenceEvaluator(model)
        for name, opt, level in (("unfused", ort.GraphOptimizationLevel.ORT_DISABLE_ALL, None),
                                 ("fused1", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "1"),
                                 ("fused4", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "4")):
            so = ort.SessionOptions()
            so.graph_optimization_level = opt
            sess, ops = _op_types(so, data, level)
            sessions[name] = (sess, ops)
        in_name = sessions["unfused"][0].get_inputs()[0].name
    except ImportError as e:
        reason = f"{e}"
    for m in batches:
        x = rng.standard_normal((m, k), dtype=np.float32)
        case = f"dequant_matmul {k}x{n} int4 g128, batch {m}"
        want = x.astype(np.float64) @ (qt.codes().astype(np.float64).reshape(k // 128, 128, n)
                                       * qt.scale.astype(np.float64)[:, None, :]).reshape(k, n)
        got = dequant_matmul(x, qt)
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        # Two rotations: onnxruntime's pool thread spins for some 20-50 ms after a run and slows
        # whatever runs next on two cores (tools/bench_interference.py); in one rotation the
        # candidate after the last session would always be the same one (here: ours).
        np_cands: dict[str, Callable[[], Any]] = {
            "ours": lambda x=x: dequant_matmul(x, qt),
            "plain": lambda x=x: reference.dequant_matmul(x, qt),
            "f32": lambda x=x: x @ w,
        }
        ms = {kk: v * 1e3 for kk, v in timeit(np_cands, reps).items()}
        ort_ms: dict[str, float] = {}
        if sessions:
            ort_cands: dict[str, Callable[[], Any]] = {"ours": np_cands["ours"]}
            for name, (sess, _) in sessions.items():
                ort_cands[name] = lambda x=x, s=sess: s.run(None, {in_name: x})
            ort_ms = {kk: v * 1e3 for kk, v in timeit(ort_cands, reps).items()}
        add_row("matmul", case, ms["ours"], "plain NumPy dequantize-then-matmul", ms["plain"],
                1 / 3 if m == 1 else None, note=f"rel err vs float64 {err:.1e}")
        if sessions:
            for name, label, target in (("unfused", "onnxruntime DQ+MatMul unfused (same graph)", 1.0),
                                        ("fused1", "onnxruntime fused, accuracy 1", None),
                                        ("fused4", "onnxruntime fused, accuracy 4", None)):
                ops = sessions[name][1]
                add_row("matmul", case, ort_ms["ours"], label, ort_ms[name], target if m == 1 else None,
                        note="ops: " + "+".join(op for op in ops if op not in ("Identity",)))
        else:
            skip_row("matmul", case, "onnxruntime sessions", reason)
        if m >= 256:  # the target: timed once more, the two alternating (see the module docstring)
            pair = {kk: v * 1e3 for kk, v in timeit({"ours": np_cands["ours"], "f32": np_cands["f32"]},
                                                     pair_reps, rotate=False).items()}
            add_row("matmul", case, pair["ours"], "NumPy float32 matmul, float weight", pair["f32"], 1.5,
                    note=f"the two alternating, {pair_reps} rounds")
        else:
            add_row("matmul", case, ms["ours"], "NumPy float32 matmul, float weight", ms["f32"])
        if ref is not None:
            tr = timeit({"ref": lambda x=x: ref.run(None, {in_name: x})}, max(1, min(reps, 3)))["ref"]
            add_row("matmul", case, ms["ours"], "onnx ReferenceEvaluator (same graph)", tr * 1e3)
        else:
            skip_row("matmul", case, "onnx ReferenceEvaluator", reason)


def _peak(f: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_memory(k: int, n: int, batches: list[int]) -> None:
    rng = np.random.default_rng(3)
    qt = quantize(rng.standard_normal((k, n), dtype=np.float32))
    wbytes = 4 * k * n
    for m in batches:
        x = rng.standard_normal((m, k), dtype=np.float32)
        ours = _peak(lambda x=x: dequant_matmul(x, qt)) / wbytes
        plain = _peak(lambda x=x: reference.dequant_matmul(x, qt)) / wbytes
        add_row("memory", f"dequant_matmul peak temporaries {k}x{n}, batch {m}", ours,
                "plain NumPy dequantize-then-matmul", plain, target=None, unit="x weight",
                note=f"target <= 0.25 of the float32 weight: {'yes' if ours <= 0.25 else 'NO'}")
        ROWS[-1]["met"] = ours <= 0.25


def bench_model(reps: int, quick: bool) -> None:
    section = "model"
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        from monoquant_np.assets import minilm_model_path
        from monoquant_np.onnx.quantizer.pipeline import quantize_model
    except ImportError as e:
        skip_row(section, "MiniLM-L3", "onnxruntime matmul_nbits_quantizer", f"{e}")
        return
    path = minilm_model_path()
    if path is None:
        skip_row(section, "MiniLM-L3", "onnxruntime matmul_nbits_quantizer", "MiniLM model not installed")
        return
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    float_model = onnx.load(str(path))
    float_bytes = float_model.SerializeToString()
    outs: dict[str, Any] = {}

    def ours() -> None:  # quantize_model does not modify its input
        outs["ours"] = quantize_model(float_model, group_size=128, symmetric=True)

    def theirs(level: int) -> Callable[[], None]:
        def run() -> None:
            q = MatMulNBitsQuantizer(onnx.ModelProto.FromString(float_bytes),
                                     block_size=128, is_symmetric=True, accuracy_level=level)
            q.process()
            outs[f"ort{level}"] = q.model.model
        return run

    cands: dict[str, Callable[[], Any]] = {"ours": ours, "ort1": theirs(1), "ort4": theirs(4)}
    try:
        from monoquant_np.onnx.quantizer.opset import to_opset21

        # to_opset21 converts in place: time it on a fresh copy, and the copy alone
        cands["opset"] = lambda: to_opset21(onnx.ModelProto.FromString(float_bytes))
        cands["copy"] = lambda: onnx.ModelProto.FromString(float_bytes)
    except ImportError:
        pass
    t = timeit(cands, max(1, min(reps, 3)))
    note = ""
    if "opset" in t:
        note = f"of which to_opset21 (onnx version converter) ~{(t['opset'] - t['copy']) * 1e3:.0f} ms"
    add_row(section, "quantize MiniLM-L3 (all MatMuls, g128 sym)", t["ours"] * 1e3,
            "onnxruntime MatMulNBitsQuantizer (incl. model copy)", t["ort1"] * 1e3, note=note)
    # the kernels alone, on the same weights: every 2-D float initializer read by a MatMul
    from onnx import numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    inits = {i.name: i for i in float_model.graph.initializer}
    ws = [numpy_helper.to_array(inits[name]).astype(np.float32) for node in float_model.graph.node
          if node.op_type == "MatMul" for name in node.input[1:2] if name in inits]
    ws = [w for w in ws if w.ndim == 2 and w.size >= 4096 and w.shape[0] >= 128]

    def ort_all() -> None:
        for w in ws:
            k, n = w.shape
            kb = -(-k // 128)
            quantize_matmul_4bits(np.zeros((n, kb, 64), np.uint8), w, np.zeros((n, kb), np.float32),
                                  np.zeros((n, (kb + 1) // 2), np.uint8), 128, n, k, True)

    tk = timeit({"ours": lambda: [quantize(w) for w in ws], "ort": ort_all}, reps)
    add_row(section, f"quantize kernels only, MiniLM-L3's {len(ws)} MatMul weights",
            tk["ours"] * 1e3, "onnxruntime C++ quantize_matmul_4bits", tk["ort"] * 1e3, 1.0)
    batch, seq = (2, 64) if quick else (8, 128)
    rng = np.random.default_rng(4)
    feeds = {"input_ids": rng.integers(1000, 20000, (batch, seq), dtype=np.int64),
             "attention_mask": np.ones((batch, seq), np.int64)}
    names = {i.name for i in float_model.graph.input}
    feeds = {kk: v for kk, v in feeds.items() if kk in names}
    sess: dict[str, Any] = {}
    ops: dict[str, list[str]] = {}
    for name, model, level in (("ours1", outs["ours"], "1"), ("ours4", outs["ours"], "4"),
                               ("ort1", outs["ort1"], None), ("ort4", outs["ort4"], None),
                               ("float", float_model, None)):
        so = ort.SessionOptions()
        sess[name], ops[name] = _op_types(so, model.SerializeToString(), level)
    # same graphs (checked in the note): only noise separates them, so many rounds
    tt = timeit({kk: (lambda s=s: s.run(None, feeds)) for kk, s in sess.items()}, reps * 8)
    n_nbits = {kk: sum(1 for n in onnx.load_from_string(v.SerializeToString()).graph.node
                       if n.op_type in ("MatMulNBits", "DequantizeLinear")) for kk, v in outs.items()}
    for level in ("1", "4"):
        fused = "MatMulNBits" in ops[f"ours{level}"]
        add_row(section, f"MiniLM-L3 inference {batch}x{seq}, accuracy {level}", tt[f"ours{level}"] * 1e3,
                f"onnxruntime on its own quantizer's output (accuracy_level={level})",
                tt[f"ort{level}"] * 1e3, 1.1,
                note=("monoquant-np's model fused into MatMulNBits" if fused else "monoquant-np's model NOT fused")
                + f"; quantized nodes monoquant-np {n_nbits['ours']}, ort {n_nbits[f'ort{level}']}; optimized graphs "
                + ("have the same op counts" if ops[f"ours{level}"] == ops[f"ort{level}"] else "DIFFER"))
    add_row(section, f"MiniLM-L3 inference {batch}x{seq}, accuracy 1", tt["ours1"] * 1e3,
            "onnxruntime on the float model", tt["float"] * 1e3)


def bench_nf4(k: int, n: int, batches: list[int], reps: int) -> None:
    """NF4 (block 64) on a ``(K, N)`` weight: quantizing (time and tracemalloc peak) against the
    textbook form, ``dequantize`` against the textbook lookup and against int4 g64, and
    ``dequant_matmul`` against dequantize-then-matmul and against int4 g64."""
    from monoquant_np.nf4 import quantize_nf4

    rng = np.random.default_rng(5)
    w = rng.standard_normal((k, n), dtype=np.float32)
    nf = quantize_nf4(w, block_size=64)
    same = np.array_equal(nf.codes(), reference.nf4_quantize(w, 64)[0])
    t = timeit({"ours": lambda: quantize_nf4(w, block_size=64), "plain": lambda: reference.nf4_quantize(w, 64)},
               reps)
    case = f"quantize_nf4 {k}x{n} block 64"
    add_row("nf4", case, t["ours"] * 1e3, "plain NumPy NF4 rounding", t["plain"] * 1e3,
            note="codes identical" if same else "CODES DIFFER")
    peaks = [_peak(lambda: quantize_nf4(w, block_size=64)) / w.nbytes,
             _peak(lambda: reference.nf4_quantize(w, 64)) / w.nbytes]
    add_row("nf4", case + ", peak temporaries", peaks[0], "plain NumPy NF4 rounding", peaks[1], unit="x weight")
    q4 = quantize(w, group_size=64)
    same = np.array_equal(dequantize(nf), reference.dequantize(nf))
    t = timeit({"ours": lambda: dequantize(nf), "plain": lambda: reference.dequantize(nf),
                "int4": lambda: dequantize(q4)}, reps)
    case = f"dequantize {k}x{n} nf4 b64"
    add_row("nf4", case, t["ours"] * 1e3, "plain NumPy codebook[codes] * scales", t["plain"] * 1e3,
            note="values identical" if same else "VALUES DIFFER")
    add_row("nf4", case, t["ours"] * 1e3, "monoquant-np dequantize, int4 g64", t["int4"] * 1e3)
    for m in batches:
        x = rng.standard_normal((m, k), dtype=np.float32)
        t = timeit({"ours": lambda x=x: dequant_matmul(x, nf), "plain": lambda x=x: reference.dequant_matmul(x, nf),
                    "int4": lambda x=x: dequant_matmul(x, q4)}, reps)
        case = f"dequant_matmul {k}x{n} nf4 b64, batch {m}"
        add_row("nf4", case, t["ours"] * 1e3, "plain NumPy dequantize-then-matmul", t["plain"] * 1e3)
        add_row("nf4", case, t["ours"] * 1e3, "monoquant-np dequant_matmul, int4 g64", t["int4"] * 1e3)


def bench_nf4_bnb(k: int, n: int, reps: int) -> None:
    """NF4 against bitsandbytes' own CPU kernels (``quantize_4bit`` / ``dequantize_4bit``,
    torch tensors) on the same ``(N, K)`` weight blocked along K (its layout: 64 consecutive
    elements per block); monoquant_np quantizes that layout with ``axis=1``, and its bytes and absmax
    must equal bitsandbytes' after ``bnb_nf4_pack`` (checked). With double quantization the
    8-bit schemes differ (bitsandbytes: its nested dynamic map; monoquant_np: linear int8, spec 11)."""
    case = f"NF4 {n}x{k} (N, K) block 64"
    peer = "bitsandbytes CPU quantize_4bit"
    try:
        import torch
        from bitsandbytes import functional as bnbf
    except Exception as e:  # ImportError, or a broken torch/bitsandbytes build
        skip_row("nf4", case, peer, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                 "(pip install torch==2.13.0 bitsandbytes==0.50.2, CPU builds)")
        return
    from monoquant_np.formats import bnb_nf4_pack
    from monoquant_np.nf4 import quantize_nf4

    if THREADS is not None:
        torch.set_num_threads(THREADS)
    w = np.random.default_rng(6).standard_normal((n, k), dtype=np.float32)  # (N, K), C order
    tw = torch.from_numpy(w)
    q, state = bnbf.quantize_4bit(tw, blocksize=64, quant_type="nf4")
    packed, absmax = bnb_nf4_pack(quantize_nf4(w, block_size=64, axis=1))
    same = np.array_equal(q.numpy(), packed) and absmax.tobytes() == state.absmax.numpy().tobytes()
    t = timeit({"ours": lambda: quantize_nf4(w, block_size=64, axis=1),
                "theirs": lambda: bnbf.quantize_4bit(tw, blocksize=64, quant_type="nf4")}, reps)
    add_row("nf4", f"quantize {case}", t["ours"] * 1e3, peer, t["theirs"] * 1e3,
            note="bytes and absmax identical" if same else "BYTES DIFFER")
    t = timeit({"ours": lambda: quantize_nf4(w, block_size=64, axis=1, double_quant=True),
                "theirs": lambda: bnbf.quantize_4bit(tw, blocksize=64, quant_type="nf4",
                                                     compress_statistics=True)}, reps)
    add_row("nf4", f"quantize {case}, double quantization", t["ours"] * 1e3, peer + " (compress_statistics)",
            t["theirs"] * 1e3, note="different 8-bit schemes for the absmax")
    nf = quantize_nf4(w, block_size=64, axis=1)
    same = np.array_equal(dequantize(nf), bnbf.dequantize_4bit(q, state).numpy())
    t = timeit({"ours": lambda: dequantize(nf), "theirs": lambda: bnbf.dequantize_4bit(q, state)}, reps)
    add_row("nf4", f"dequantize {case}", t["ours"] * 1e3, "bitsandbytes CPU dequantize_4bit", t["theirs"] * 1e3,
            note="values identical" if same else "VALUES DIFFER")


# ---------------------------------------------------------------- main
SECTIONS = ("quant", "unpack", "matmul", "memory", "model", "nf4")
TITLES = {"quant": "Quantize + pack", "unpack": "Unpack", "matmul": "Dequantizing matmul",
          "memory": "Temporary memory of dequant_matmul", "model": "MiniLM-L3 end to end", "nf4": "NF4"}
READING = """\
How to read it: every row is one case timed against one peer in the same run, in
round-robin rounds so that a load spike from another process hits all candidates
alike; `monoquant-np` and `peer's` are medians in ms (memory rows: peak
temporaries in multiples of the float32 weight), `ratio` is monoquant-np / peer,
below 1 when monoquant-np is faster. Where a row has a target, `met` says whether the ratio is within it. The
"plain NumPy" peers are the textbook implementations of
`monoquant_np.testing.reference` (the fast-path tests pin the kernels to them bit
for bit); the notes say what the run checked (identical bytes, codes or values,
the operators onnxruntime ran). On a shared machine single ratios move by 10-20 %
from run to run; compare ratios, not absolute times, across machines."""


def page_sections(args: argparse.Namespace) -> list[str]:
    """The Markdown of a docs/ page: the run's settings, one table per section, how to read it."""
    missed = sum(r["met"] is False for r in ROWS)
    out = [f"Settings: threads {THREADS or 'library defaults'}; medians of {args.reps} round-robin rounds "
           f"({args.pair_reps} for batch 256 against the float32 matmul){'; --quick sizes' if args.quick else ''}. "
           f"Targets: {sum(r['met'] is True for r in ROWS)} met, {missed} missed.", READING]
    head = ["case", "peer", "monoquant-np", "peer's", "ratio", "target", "met", "note"]
    for section in SECTIONS:
        rows = [r for r in ROWS if r["section"] == section]
        if rows:
            cells = [[r["case"], r["peer"], _num(r["ours"], r["unit"]), _num(r["theirs"], r["unit"]),
                      "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                      "" if r["target"] is None else f"<= {r['target']:g}",
                      {None: "", True: "yes", False: "NO"}[r["met"]], r["note"]] for r in rows]
            out.append(f"## {TITLES[section]}\n\n" + markdown_table(head, cells, "llrrrlll"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds per row group (median)")
    ap.add_argument("--pair-reps", type=int, default=21,
                    help="rounds of ours and the float32 matmul alternating at batch 256 (median)")
    ap.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, tables) to PATH")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of every candidate (OpenBLAS and onnxruntime); default: theirs")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad or args.reps < 1 or args.pair_reps < 1:
        print(f"bench.py: --only takes {','.join(SECTIONS)}, --reps and --pair-reps >= 1, got {args.only!r} "
              f"{args.reps} {args.pair_reps}", file=sys.stderr)
        return 2
    env = environment(peers=("gguf", "torch", "bitsandbytes"))
    print_environment(env)
    print(f"# threads: {THREADS or 'library defaults'}; times in ms (memory: multiples of the float32 weight); "
          f"ratio = ours / peer, medians of {args.reps} round-robin rounds ({args.pair_reps} for batch 256 "
          "against the float32 matmul)")
    print(HEADER)
    q = args.quick
    if "quant" in only:
        bench_quant(1024 if q else 4096, 1024 if q else 4096, args.reps)
    if "unpack" in only:
        bench_unpack((1 if q else 16) * 2**20, args.reps)
    if "matmul" in only:
        bench_matmul(1024 if q else 4096, 1024 if q else 4096, [1, 32, 256], args.reps, args.pair_reps)
    if "memory" in only:
        bench_memory(1024 if q else 4096, 2752 if q else 11008, [1, 32])
    if "model" in only:
        bench_model(args.reps, q)
    if "nf4" in only:
        bench_nf4(1024 if q else 4096, 1024 if q else 4096, [1, 256], args.reps)
        bench_nf4_bnb(1024 if q else 4096, 1024 if q else 4096, args.reps)
    load_after = os.getloadavg()[0]
    missed = [r for r in ROWS if r["met"] is False]
    print(f"# targets: {sum(r['met'] is True for r in ROWS)} met, {len(missed)} missed; "
          f"load {env['load']:.2f} -> {load_after:.2f}")
    if args.markdown:
        write_page(args.markdown, "Performance of the NumPy kernels", env, page_sections(args))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(meta=dict(env, threads=THREADS, load_after=load_after), rows=ROWS), f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
