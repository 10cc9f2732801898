"""MiniLM-L3 quantized to MXFP4, NVFP4, INT4 and NF4, run in onnxruntime (docs/fp4.md).

Usage::

    python tools/fp4_minilm.py [--sentences 256] [--markdown docs/fp4.md]

Quantizes the 18 MatMul weights of the real MiniLM-L3 model
(``monoquant_np.assets.minilm_model_path()``) with
``monoquant_np.onnx.quantizer.pipeline.quantize_model_with_report`` at each
scheme (round to nearest, groups along K), runs every model in onnxruntime's
CPU provider (accuracy level 1) on real English sentences (the first
``--sentences`` of :func:`monoquant_np.onnx.calibration.corpus.stdlib_sentences`,
tokenized by the real tokenizer) and prints, per scheme: bits per weight of
the quantized weights (spec 6.3), the file size, and the mean and minimum
cosine of the sentence embeddings (output ``461``) with the float model's.
MXFP4 and NVFP4 are written in the form onnxruntime runs (spec 19.7); rows of
equal bits per weight are next to each other.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnx
from _report import environment, markdown_table, print_environment, print_table, write_page

from monoquant_np.assets import minilm_model_path
from monoquant_np.onnx.calibration.corpus import minilm_feeds, stdlib_sentences
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.runtime import make_session

#: Row label -> quantize_model_with_report keywords, in groups of equal bits per weight.
SCHEMES = {
    "INT4 g128": dict(scheme="int4", group_size=128),
    "NF4 b128": dict(scheme="nf4", group_size=128),
    "MXFP4 b32": dict(scheme="mxfp4"),
    "INT4 g64": dict(scheme="int4", group_size=64),
    "NF4 b64": dict(scheme="nf4", group_size=64),
    "NVFP4 b16": dict(scheme="nvfp4"),
    "INT4 g32": dict(scheme="int4", group_size=32),
}


def embed(model: onnx.ModelProto | str, sentences: list[str], batch: int = 64) -> np.ndarray:
    sess = make_session(model, 1)
    return np.concatenate([sess.run(["461"], minilm_feeds(sentences[i : i + batch]))[0]
                           for i in range(0, len(sentences), batch)])  # (n, 384)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = p.parse_args(argv)
    path = minilm_model_path()
    if path is None:
        print("MiniLM model not installed (see monoquant_np.assets)", file=sys.stderr)
        return 1
    env = environment()
    print_environment(env)
    sentences = sorted(stdlib_sentences(args.sentences), key=len)
    ref = embed(str(path), sentences)
    head = ["scheme", "bits/w", "file MB", "mean cosine", "min cosine"]
    rows = []
    for label, kw in SCHEMES.items():
        model, report = quantize_model_with_report(path, **kw)
        cos = cosines(ref, embed(model, sentences))
        rows.append([label, f"{report.totals()['bits_per_weight']:.3f}", f"{model.ByteSize() / 1e6:.2f}",
                     f"{cos.mean():.4f}", f"{cos.min():.4f}"])
        print(" ".join(rows[-1]), file=sys.stderr)
    print_table(head, rows, markdown=False)
    if args.markdown:
        intro = (f"MiniLM-L3 ({path.stat().st_size / 1e6:.1f} MB float), its 18 MatMul weights quantized by "
                 "round to nearest along K; onnxruntime CPU, accuracy level 1; cosine of the sentence embeddings "
                 f"(output 461) with the float model's on {len(sentences)} stdlib-docstring sentences.")
        write_page(args.markdown, "MXFP4 and NVFP4 on MiniLM-L3 in onnxruntime", env,
                   [intro, markdown_table(head, rows, "lrrrr"), READING])
    return 0


READING = """\
How to read it: rows of equal bits per weight come together (4.25: INT4 g128,
NF4 b128, MXFP4; 4.5: INT4 g64, NF4 b64, NVFP4; 5: INT4 g32). `bits/w` counts
the stored bits of the quantized weights (codes and scales; NVFP4's one float32
per tensor included; spec 6.3). MXFP4 and NVFP4 are written in the form
onnxruntime 1.32 runs, UINT4 codes through a Gather of the 16 E2M1 values and a
Mul by float32 block scales (spec 19.7), so the file keeps float32 block scales
and is larger than the bits per weight say; the standard `FLOAT4E2M1` form is
checked in the ONNX reference evaluator instead (onnxruntime has no kernel for
it). The same numbers for 128 sentences are asserted by
`tests/onnx/quantizer/test_minilm_fp4.py`."""


if __name__ == "__main__":
    raise SystemExit(main())
