"""Staged calibration and verify on a generated decoder: peak RSS, time, logits cosine (spec 14.5).

Each measured command runs in its own process (``os.wait4`` gives that
child's own peak resident set, ``ru_maxrss``), one at a time:

* GPTQ (``quantize --algorithm gptq --calibration ... --external-data``),
  plain and ``--sequential``: seconds and peak RSS, the peak as a fraction of
  the float model's bytes; then ``verify`` of each twin against the float
  model on held-out inputs (the logits cosine);
* ``verify`` of the round-to-nearest twin (peak RSS and seconds).

Usage (models from ``tools/gen_llm.py``; the calibration file holds
``input_ids`` ``(16, 64)``, made with ``--make-inputs``)::

    python tools/gen_llm.py /tmp/m/tl8.onnx --preset tinyllama-1.1b --layers 8
    python tools/bench_staged.py --model /tmp/m/tl8.onnx --make-inputs --gptq --verify [--markdown docs/staged.md]

Other scripts (``tools/bench_llm.py``) call :func:`gptq_row` and :func:`verify_row`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import environment, markdown_table, print_environment, write_page  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd`` under a small Python wrapper that waits for it with ``os.wait4``: (seconds, peak RSS bytes
    of that process alone, its stdout). Raises ``RuntimeError`` when it fails."""
    wrapper = ("import os, subprocess, sys, time; t = time.perf_counter(); p = subprocess.Popen(sys.argv[1:]); "
               "_, s, u = os.wait4(p.pid, 0); "
               "print(f'@@ {time.perf_counter() - t} {u.ru_maxrss * 1024} {s}', file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    m = re.search(r"@@ (\S+) (\d+) (\d+)", r.stderr)
    if m is None or int(m.group(3)) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip().splitlines()[-3:]}")
    return float(m.group(1)), int(m.group(2)), r.stdout


def model_bytes(path: Path) -> int:
    """Bytes of the model file plus its external data file(s) in the same folder."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "monoquant_np", *args]


def cosine(reference: Path, candidate: Path, inputs: Path) -> float:
    """``verify``'s cosine of the first output (logits) on ``inputs``."""
    _, _, out = measure(_cli("verify", str(reference), str(candidate), "--inputs", str(inputs)))
    row = [ln for ln in out.splitlines() if ln and not ln.startswith(("output", "-"))][0]
    return float(row.split()[-1])


def gptq_row(model: Path, calibration: Path, eval_inputs: Path, out_dir: Path, sequential: bool = False
             ) -> dict[str, float]:
    """GPTQ on ``model`` (a fresh process): seconds, peak RSS bytes, peak / float bytes, logits cosine."""
    out = out_dir / f"{model.stem}-gptq{'-seq' if sequential else ''}.onnx"
    cmd = _cli("quantize", str(model), str(out), "--algorithm", "gptq", "--calibration", str(calibration),
               "--external-data", *(["--sequential"] if sequential else []))
    seconds, peak, _ = measure(cmd)
    cos = cosine(model, out, eval_inputs)
    for p in out_dir.glob(out.name + "*"):
        p.unlink()
    return {"seconds": seconds, "peak": peak, "ratio": peak / model_bytes(model), "cosine": cos}


def verify_row(reference: Path, candidate: Path, inputs: Path | None = None) -> dict[str, float]:
    """``verify`` (a fresh process): seconds, peak RSS bytes, the first output's cosine."""
    extra = ["--inputs", str(inputs)] if inputs is not None else []
    seconds, peak, out = measure(_cli("verify", str(reference), str(candidate), *extra))
    row = [ln for ln in out.splitlines() if ln and not ln.startswith(("output", "-"))][0]
    return {"seconds": seconds, "peak": peak, "cosine": float(row.split()[-1])}


def make_inputs(model: Path, out_dir: Path) -> tuple[Path, Path]:
    """``calib16x64.npz`` (16 x 64 token ids, seed 1) and ``eval4x64.npz`` (4 x 64, seed 2) from the model's
    vocabulary (the rows of its embedding table)."""
    import onnx

    m = onnx.load(str(model), load_external_data=False)
    vocab = next(int(t.dims[0]) for t in m.graph.initializer if "embed" in t.name)
    cal, ev = out_dir / "calib16x64.npz", out_dir / "eval4x64.npz"
    np.savez(cal, input_ids=np.random.default_rng(1).integers(0, vocab, (16, 64), dtype=np.int64))
    np.savez(ev, input_ids=np.random.default_rng(2).integers(0, vocab, (4, 64), dtype=np.int64))
    return cal, ev


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="a float model from tools/gen_llm.py")
    ap.add_argument("--make-inputs", action="store_true", help="write calib16x64.npz and eval4x64.npz next to it")
    ap.add_argument("--gptq", action="store_true", help="measure GPTQ, plain and --sequential")
    ap.add_argument("--verify", action="store_true", help="measure verify of the round-to-nearest twin")
    ap.add_argument("--markdown", help="write the tables to this page")
    a = ap.parse_args(argv)
    env = environment()
    print_environment(env)
    d = a.model.parent
    cal, ev = make_inputs(a.model, d) if a.make_inputs else (d / "calib16x64.npz", d / "eval4x64.npz")
    fbytes = model_bytes(a.model)
    sections, rows = [], []
    if a.gptq:
        for seq in (False, True):
            r = gptq_row(a.model, cal, ev, d, sequential=seq)
            rows.append([a.model.name, "gptq --sequential" if seq else "gptq", f"{r['seconds']:.0f}",
                         f"{r['peak'] / 2**30:.2f}", f"{r['ratio']:.2f}", f"{r['cosine']:.4f}"])
            print(rows[-1], flush=True)
    if a.verify:
        twin = d / f"{a.model.stem}-rtn.onnx"
        subprocess.run(_cli("quantize", str(a.model), str(twin), "--external-data"), check=True,
                       stdout=subprocess.DEVNULL)
        r = verify_row(a.model, twin, ev)
        rows.append([a.model.name, "verify (rtn twin)", f"{r['seconds']:.0f}", f"{r['peak'] / 2**30:.2f}",
                     f"{r['peak'] / fbytes:.2f}", f"{r['cosine']:.4f}"])
        print(rows[-1], flush=True)
        for p in d.glob(twin.name + "*"):
            p.unlink()
    table = markdown_table(["model", "run", "seconds", "peak RSS GiB", "peak / float bytes", "logits cosine"],
                           rows, "llrrrr")
    print(table)
    sections.append(f"Float model: {fbytes / 2**30:.2f} GiB ({a.model.name}).\n\n{table}")
    if a.markdown:
        write_page(a.markdown, "Staged calibration and verify", env, sections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
