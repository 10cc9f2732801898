"""LLM-scale benchmark: monoquant-np against onnxruntime's quantizer on generated decoders (docs/llm-scale.md).

The models are ``tools/gen_llm.py`` decoders with TinyLlama-1.1B widths (vocab
32000, hidden 2048, 32 query / 4 key-value heads, MLP 5632; 2, 8 or 22 layers)
and LLaMA-2-7B widths (hidden 4096, 32 heads, MLP 11008, 32 layers, float16),
random weights x 0.02, external data. Every quantization runs in a fresh
process; its time is wall time and its peak memory the process's ``VmHWM``
(peak resident set, read from ``/proc/self/status`` at exit). Measured in the
same run:

* ``speed``: ``monoquant-np quantize --external-data`` (default settings, all
  cores, then ``--jobs 1``) and onnxruntime's ``MatMulNBitsQuantizer`` (4 bits,
  block 128, symmetric, ``MatMul`` weights) on 8 and 22 layers, float32 and
  float16; both again with another process keeping one core busy; the share
  of our run spent measuring the report's per-weight error;
* ``accuracy``: logits cosine with the float model (one per token position,
  averaged; onnxruntime, float32 arithmetic) for the default settings of both
  quantizers on 2, 8 and 22 layers, and MiniLM-L3's sentence-embedding cosine
  (``tools/compare_ort_quantizer.py``'s code);
* ``mse``: ``--algorithm mse`` time against the default's on 22 layers;
* ``gptq``: ``--algorithm gptq`` on 8 layers with 16 x 64 calibration tokens:
  time and peak memory against the float model's bytes;
* ``verify``: ``monoquant-np verify`` of the 22-layer model: time, peak memory;
* ``7b``: LLaMA-2-7B widths in float16, generated once and measured once; our
  quantizer, and onnxruntime's under ``prlimit --as`` (``--ort-cap-gib``, 14 by
  default), whose outcome (finished, or the error it stopped with) is stated.

Results accumulate in ``--results`` (JSON), so groups can be measured in
separate runs (``--rows speed,accuracy``); ``--markdown`` writes the page from
everything measured so far. Models are generated under ``--workdir`` (never
the repository) and deleted after their group unless ``--keep``.

    python tools/bench_llm.py --workdir /work/tmp-models --rows speed,accuracy,mse,gptq,verify,7b \\
        --markdown docs/llm-scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gen_llm
import numpy as np
from _report import environment, markdown_table, print_environment, write_page

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("speed", "accuracy", "mse", "gptq", "verify", "7b")

#: Runs ``python -m monoquant_np ...`` or a script given as text, and reports VmHWM on stderr at exit.
WRAP = r"""
import atexit, runpy, sys
def _peak():
    with open("/proc/self/status") as f:
        kb = [ln.split()[1] for ln in f if ln.startswith("VmHWM")][0]
    sys.stderr.write(f"\nPEAK_KB {kb}\n")
atexit.register(_peak)
kind, target, *rest = sys.argv[1:]
if kind == "module":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__")
else:
    sys.argv = ["script", *rest]
    exec(compile(target, "script", "exec"), {"__name__": "__main__"})
"""

ORT = r"""
import logging, sys
logging.disable(logging.INFO)
import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig
src, dst = sys.argv[1:3]
cfg = DefaultWeightOnlyQuantConfig(block_size=128, is_symmetric=True, accuracy_level=None,
                                   op_types_to_quantize=("MatMul",))
q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
q.process()
q.model.save_model_to_file(dst, use_external_data_format=True)
"""

LOGITS = r"""
import sys
import numpy as np
import onnxruntime as ort
model, ids, out = sys.argv[1:4]
so = ort.SessionOptions()
so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
np.save(out, s.run(["logits"], {"input_ids": np.load(ids)})[0].astype(np.float32))
"""


def run(kind: str, target: str, args: list[str], *, busy: bool = False, cap_gib: float | None = None,
        threads1: bool = False) -> dict[str, Any]:
    """Run ``python -m target args`` (``kind="module"``) or the script ``target`` in a fresh process, niced;
    return ``{"seconds", "peak_gib", "rc", "error"}`` (``error``: the last stderr line when it failed)."""
    cmd = [sys.executable, "-c", WRAP, kind, target, *args]
    if cap_gib is not None:
        cmd = ["prlimit", f"--as={int(cap_gib * 2**30)}", *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if threads1:
        env["OPENBLAS_NUM_THREADS"] = "1"
    hog = subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        t = time.perf_counter()
        r = subprocess.run(["nice", "-n", "5", *cmd], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t
    finally:
        if hog is not None:
            hog.send_signal(signal.SIGKILL)
            hog.wait()
    peaks = [int(ln.split()[1]) for ln in r.stderr.splitlines() if ln.startswith("PEAK_KB")]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("PEAK_KB")]
    out = {"seconds": seconds, "peak_gib": peaks[-1] / 2**20 if peaks else None, "rc": r.returncode,
           "error": (lines[-1][:200] if lines else f"exit {r.returncode}") if r.returncode else None}
    print(f"  {' '.join(args[:2]) if kind == 'module' else 'script'} {args[-1] if args else ''}: {out}",
          flush=True)
    return out


def ours(src: Path, dst: Path, *extra: str, **kw: Any) -> dict[str, Any]:
    """``monoquant-np quantize src dst --external-data`` with its report's timings added."""
    rep = dst.with_suffix(".json")
    r = run("module", "monoquant_np", ["quantize", str(src), str(dst), "--external-data", "--report", str(rep),
                                         *extra], **kw)
    if r["rc"] == 0:
        t = json.loads(rep.read_text())
        r["timings"] = t.get("timings", {})
        r["report_seconds"] = t["totals"]["seconds"]
    return r


def ort(src: Path, dst: Path, **kw: Any) -> dict[str, Any]:
    return run("script", ORT, [str(src), str(dst)], **kw)


#: The widths of the 2-22 layer models (``--preset``; "tiny" checks the script in seconds).
PRESET = "tinyllama-1.1b"


def model(work: Path, layers: int, dtype: str, preset: str | None = None) -> Path:
    """The generated decoder (made once; reused while it exists)."""
    preset = preset or PRESET
    path = work / f"{preset}-{layers}L-{dtype}.onnx"
    if not path.exists():
        t = time.perf_counter()
        gen_llm.generate(path, gen_llm.config(preset, layers=layers, dtype=dtype), seed=0, log=print)
        print(f"  generated in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def drop(*paths: Path) -> None:
    """Delete generated models and outputs with their data files."""
    for p in paths:
        for q in (p, Path(str(p) + ".data"), p.with_suffix(".json")):
            if q.exists():
                q.unlink()


def data_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))


def speed(work: Path, res: dict[str, Any]) -> None:
    for layers in (8, 22):
        for dtype in ("float32", "float16"):
            key = f"speed/{layers}/{dtype}"
            print(key, flush=True)
            src = model(work, layers, dtype)
            q, o = work / "ours.onnx", work / "ort.onnx"
            row = {"float_bytes": data_bytes(src), "ours": ours(src, q), "ours_jobs1": ours(src, q, "--jobs", "1"),
                   "ours_busy": ours(src, q, busy=True), "ort": ort(src, o), "ort_busy": ort(src, o, busy=True)}
            res[key] = row
            drop(q, o)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over token positions of the cosine of two logits vectors (float64)."""
    a, b = a.astype(np.float64).reshape(-1, a.shape[-1]), b.astype(np.float64).reshape(-1, b.shape[-1])
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def accuracy(work: Path, res: dict[str, Any]) -> None:
    cfg = gen_llm.config(PRESET)
    ids = work / "ids.npy"
    np.save(ids, gen_llm.input_ids(cfg, 2, min(64, cfg.max_positions), seed=1))
    for layers in (2, 8, 22):
        print(f"accuracy/{layers}", flush=True)
        src = model(work, layers, "float32")
        q, o = work / "ours.onnx", work / "ort.onnx"
        ours(src, q)
        ort(src, o)
        logits = {}
        for name, path in (("float", src), ("ours", q), ("ort", o)):
            out = work / f"{name}.npy"
            run("script", LOGITS, [str(path), str(ids), str(out)])
            logits[name] = np.load(out)
            out.unlink()
        res[f"accuracy/{layers}"] = {"ours": cosine(logits["float"], logits["ours"]),
                                     "ort": cosine(logits["float"], logits["ort"])}
        print(f"  {res[f'accuracy/{layers}']}", flush=True)
        drop(q, o)
    res["accuracy/minilm"] = minilm(work)


def minilm(work: Path) -> dict[str, float]:
    """MiniLM-L3 sentence-embedding cosine, default settings of both (``compare_ort_quantizer``'s code)."""
    import compare_ort_quantizer as cmp

    from monoquant_np.assets import minilm_model_path
    from monoquant_np.onnx.calibration.corpus import stdlib_sentences

    src = str(minilm_model_path())
    sentences = sorted(stdlib_sentences(256), key=len)
    ref = cmp._embed(src, sentences)
    out = {}
    for kind in ("ours-qdq", "ort"):
        dst = str(work / f"minilm-{kind}.onnx")
        cmp._quantize_in_process(kind, src, dst, "MatMul")
        emb = cmp._embed(dst, sentences)
        out[kind.split("-")[0]] = float(((ref * emb).sum(1) / np.linalg.norm(ref, axis=1)
                                         / np.linalg.norm(emb, axis=1)).mean())
        os.unlink(dst)
    print(f"  minilm {out}", flush=True)
    return out


def mse(work: Path, res: dict[str, Any]) -> None:
    print("mse/22", flush=True)
    src = model(work, 22, "float32")
    q = work / "ours.onnx"
    res["mse/22"] = {"default": ours(src, q), "mse": ours(src, q, "--algorithm", "mse")}
    drop(q)


def gptq(work: Path, res: dict[str, Any]) -> None:
    print("gptq/8", flush=True)
    src = model(work, 8, "float32")
    feeds = work / "calib.npz"
    cfg = gen_llm.config(PRESET)
    np.savez(feeds, input_ids=gen_llm.input_ids(cfg, 16, min(64, cfg.max_positions), seed=2))
    q = work / "ours.onnx"
    res["gptq/8"] = {"float_bytes": data_bytes(src),
                     "gptq": ours(src, q, "--algorithm", "gptq", "--calibration", str(feeds))}
    drop(q)


def verify(work: Path, res: dict[str, Any]) -> None:
    print("verify/22", flush=True)
    src = model(work, 22, "float32")
    q = work / "ours.onnx"
    ours(src, q)
    res["verify/22"] = {"float_bytes": data_bytes(src), "verify": run(
        "module", "monoquant_np", ["verify", str(src), str(q), "--samples", "2", "--seq-len", "64"])}
    drop(q)


def seven_b(work: Path, res: dict[str, Any], keep: bool, cap_gib: float) -> None:
    print("7b", flush=True)
    t = time.perf_counter()
    src = model(work, 32, "float16", preset="llama-2-7b")
    gen_s = time.perf_counter() - t
    q, o = work / "ours.onnx", work / "ort.onnx"
    row = {"float_bytes": data_bytes(src), "generate_seconds": gen_s, "ours": ours(src, q)}
    drop(q)
    row["ort"] = ort(src, o, cap_gib=cap_gib)
    row["ort_cap_gib"] = cap_gib
    res["7b"] = row
    drop(o)
    if not keep:
        drop(src)  # 13.5 GB: not kept for another group


# ------------------------------------------------------------------ the page
def _s(r: dict[str, Any] | None) -> str:
    if not r:
        return "not run"
    return f"{r['seconds']:.1f}" if r["rc"] == 0 else f"failed ({r['error']})"


def _g(r: dict[str, Any] | None) -> str:
    return "-" if not r or r.get("peak_gib") is None else f"{r['peak_gib']:.2f}"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> str:
    if not a or not b or a["rc"] or b["rc"] or a.get(key) is None or b.get(key) is None:
        return "-"
    return f"{a[key] / b[key]:.2f}"


def _error_share(r: dict[str, Any] | None) -> str:
    """The report's error measurement as a share of the run: summed thread seconds / (wall x jobs used)."""
    if not r or r["rc"] or "timings" not in r:
        return "-"
    t = r["timings"]
    busy = sum(t.get(k, 0.0) for k in ("read", "algorithm", "error", "rewrite"))
    return f"{100 * t.get('error', 0.0) / busy:.0f}% of weight work" if busy else "-"


def speed_table(res: dict[str, Any]) -> str:
    rows = []
    for layers in (8, 22):
        for dtype in ("float32", "float16"):
            r = res.get(f"speed/{layers}/{dtype}")
            if r is None:
                continue
            rows.append([f"{layers} layers, {dtype}", f"{r['float_bytes'] / 1e9:.2f}", _s(r["ours"]), _g(r["ours"]),
                         _s(r["ort"]), _g(r["ort"]), _ratio(r["ours"], r["ort"], "seconds"),
                         _ratio(r["ours"], r["ort"], "peak_gib"), _s(r["ours_busy"]), _s(r["ort_busy"]),
                         _ratio(r["ours_busy"], r["ort_busy"], "seconds"), _s(r["ours_jobs1"]),
                         _ratio(r["ours_jobs1"], r["ours"], "seconds"), _error_share(r["ours"])])
    head = ["model", "float GB", "monoquant-np s", "monoquant-np peak GiB", "ORT s", "ORT peak GiB", "time / ORT",
            "peak / ORT", "monoquant-np s, 1 core busy", "ORT s, 1 core busy", "busy time / ORT",
            "monoquant-np --jobs 1 s", "jobs 1 / all",
            "error report"]
    return markdown_table(head, rows, "l" + "r" * (len(head) - 1))


def accuracy_table(res: dict[str, Any]) -> str:
    rows = []
    for key, name in (("accuracy/2", "2 layers"), ("accuracy/8", "8 layers"), ("accuracy/22", "22 layers"),
                      ("accuracy/minilm", "MiniLM-L3 (sentence embeddings)")):
        r = res.get(key)
        if r is not None:
            rows.append([name, f"{r['ours']:.4f}", f"{r['ort']:.4f}", f"{r['ours'] - r['ort']:+.4f}"])
    return markdown_table(["model (float32)", "monoquant-np (default)", "ORT (4 bits, block 128, symmetric)",
                           "monoquant-np - ORT"], rows, "lrrr")


def other_lines(res: dict[str, Any]) -> list[str]:
    out = []
    if "mse/22" in res:
        r = res["mse/22"]
        out.append(f"- `--algorithm mse`, 22 layers: {_s(r['mse'])} s against the default's {_s(r['default'])} s "
                   f"({_ratio(r['mse'], r['default'], 'seconds')}x); peak {_g(r['mse'])} GiB.")
    if "gptq/8" in res:
        r = res["gptq/8"]
        g = r["gptq"]
        share = "-" if g.get("peak_gib") is None else f"{g['peak_gib'] * 2**30 / r['float_bytes']:.2f}"
        out.append(f"- `--algorithm gptq`, 8 layers, 16 x 64 calibration tokens: {_s(g)} s, peak {_g(g)} GiB = "
                   f"{share}x the float model's {r['float_bytes'] / 1e9:.2f} GB.")
    if "verify/22" in res:
        r = res["verify/22"]
        out.append(f"- `verify`, 22 layers (2 x 64 tokens): {_s(r['verify'])} s, peak {_g(r['verify'])} GiB "
                   f"(float model {r['float_bytes'] / 1e9:.2f} GB).")
    if "7b" in res:
        r = res["7b"]
        o = r["ort"]
        outcome = (f"finished in {o['seconds']:.1f} s, peak {_g(o)} GiB" if o["rc"] == 0 else
                   f"stopped after {o['seconds']:.1f} s under `prlimit --as={r['ort_cap_gib']:g}GiB`: {o['error']}")
        out.append(f"- LLaMA-2-7B widths, float16 ({r['float_bytes'] / 1e9:.1f} GB, generated in "
                   f"{r['generate_seconds']:.0f} s): monoquant-np {_s(r['ours'])} s, peak {_g(r['ours'])} GiB; "
                   f"onnxruntime's quantizer {outcome}.")
    return out


READING = """\
How to read it: every figure is one run of a fresh process on this machine, with
other work possibly running (see the load average above); `peak` is the
process's peak resident memory (`VmHWM`). `time / ORT` and `peak / ORT` are
monoquant-np's over onnxruntime's for the same model. "1 core busy" runs both
while another process spins on one core. `jobs 1 / all` is `--jobs 1`'s time
over the default's (every core). `error report` is the share of the per-weight
work (read, quantize, measure, rewrite; summed over threads) spent measuring
the report's error (spec 13.5). Logits cosine: the mean over 2 x 64 token
positions of the cosine between the quantized and the float model's logits,
both run in onnxruntime with float32 arithmetic; MiniLM: the mean cosine of
256 sentence embeddings. onnxruntime's quantizer loads the whole float model
into memory; monoquant-np reads one weight at a time and writes each quantized
weight to the output's data file as it is made (spec 13.6)."""


def write(path: str, env: dict[str, Any], res: dict[str, Any]) -> None:
    groups = ",".join(res.get("environment", {})) or "..."
    env = dict(env, command=f"python tools/bench_llm.py --workdir MODELS --rows {groups} --markdown {path}")
    intro = ("Generated LLaMA-style decoders (`tools/gen_llm.py`): TinyLlama-1.1B widths (vocab 32000, hidden 2048, "
             "32 query / 4 key-value heads, MLP 5632), random weights x 0.02, external data; default settings of "
             "both quantizers (4 bits, group 128, symmetric; `MatMul` weights).")
    when = "; ".join(f"{g}: {e['date']}, load {e['load']:.1f}" for g, e in res.get("environment", {}).items())
    sections = [intro, f"Measured ({when}).", "## Quantizing: time and peak memory", speed_table(res),
                "## Accuracy: logits cosine with the float model", accuracy_table(res),
                "## Algorithms, verify, 7B", "\n".join(other_lines(res)) or "not run", READING]
    write_page(path, "LLM-scale decoders: monoquant-np and onnxruntime's quantizer", env, sections)


def main() -> int:
    global PRESET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="where models are generated (needs ~25 GB with 7b)")
    ap.add_argument("--rows", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--results", help="JSON file of results, read and updated (default WORKDIR/bench_llm.json)")
    ap.add_argument("--markdown", metavar="PATH", help="write the page from every result so far")
    ap.add_argument("--ort-cap-gib", type=float, default=14.0, help="address-space cap of onnxruntime at 7B")
    ap.add_argument("--keep", action="store_true", help="keep the generated models")
    ap.add_argument("--preset", default=PRESET, help="widths of the 2-22 layer models (tiny: a quick check)")
    a = ap.parse_args()
    PRESET = a.preset
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(a.results or work / "bench_llm.json")
    res = json.loads(results.read_text()) if results.exists() else {}
    env = environment(peers=("onnx-ir",))
    print_environment(env)
    groups = [g.strip() for g in a.rows.split(",") if g.strip()]
    try:
        for g in groups:
            if g not in GROUPS:
                raise SystemExit(f"--rows: unknown group {g!r}, expected {', '.join(GROUPS)}")
            started = environment(peers=("onnx-ir",))  # the date and load when this group began
            {"speed": speed, "accuracy": accuracy, "mse": mse, "gptq": gptq, "verify": verify,
             "7b": lambda w, r: seven_b(w, r, a.keep, a.ort_cap_gib)}[g](work, res)
            res.setdefault("environment", {})[g] = started
            results.write_text(json.dumps(res, indent=1))
    finally:
        if not a.keep:
            for p in work.glob("*.onnx"):
                drop(p)
    print("\n".join([speed_table(res), "", accuracy_table(res), "", *other_lines(res)]))
    if a.markdown:  # headed by the run that measured the first group on the page
        first = next(iter(res.get("environment", {}).values()), env)
        write(a.markdown, first, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
