"""Accuracy beyond round-to-nearest on MiniLM-L3 (spec section 14; docs/accuracy.md).

Quantizes the real MiniLM-L3 model (``monoquant_np.assets.minilm_model_path()``)
at group 128, symmetric int4, with ``--algorithm`` ``rtn``, ``mse``, ``gptq`` and
``awq`` of ``monoquant_np.onnx.quantize_model``, and with onnxruntime's own
``matmul_nbits_quantizer`` (the peer, measured in the same run), for
``--ops MatMul`` and ``--ops MatMul,Gather``. Prints, per row: the file size,
the time to quantize (in process, ModelProto to ModelProto, calibration
included; median of ``--repeat``), and the mean cosine similarity of the
sentence embeddings (output ``461``) with the float model's.

Data (deterministic, no download): real English prose from Python's stdlib
docstrings (:func:`monoquant_np.onnx.calibration.corpus.stdlib_sentences`), tokenized by
the real ``tokenizer.json``. Calibration: sentences 256..511 (``--calibration``
of the gptq/awq rows: one FEEDS mapping, as ``FEEDS.npz`` would hold it; the
padding rows are masked by ``attention_mask``). Evaluation: sentences 0..255, which the
calibration never sees. onnxruntime runs at accuracy level 1 (float32
activations), as the spec does.

BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set): on a small
shared machine more threads only contend.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.

    python tools/accuracy_table.py [--repeat 1] [--sequential] [--markdown docs/accuracy.md]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from _report import environment, markdown_table, print_environment, write_page  # noqa: E402

from monoquant_np.assets import MINILM_INSTALL_HINT, minilm_model_path, minilm_tokenizer_path  # noqa: E402
from monoquant_np.onnx.calibration.corpus import minilm_feeds, stdlib_sentences  # noqa: E402
from monoquant_np.onnx.model_io import save_model  # noqa: E402
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report  # noqa: E402
from monoquant_np.onnx.runtime import make_session  # noqa: E402


def _embed(model: onnx.ModelProto | str, sentences: list[str]) -> np.ndarray:
    sess = make_session(model, 1, intra_op_threads=1)
    return np.concatenate([sess.run(["461"], minilm_feeds(sentences[i : i + 64]))[0]
                           for i in range(0, len(sentences), 64)])  # (n, 384)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _ort(src: str, ops: str) -> onnx.ModelProto:
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.disable(logging.INFO)
    cfg = DefaultWeightOnlyQuantConfig(block_size=128, is_symmetric=True, accuracy_level=None,
                                       op_types_to_quantize=tuple(ops.split(",")))
    q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
    q.process()
    return q.model.model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="timing repeats (median), default 1")
    ap.add_argument("--sequential", action="store_true",
                    help="also run gptq/awq with sequential calibration through the quantized layers")
    ap.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {args.repeat}")
    model_path = minilm_model_path()
    if model_path is None or minilm_tokenizer_path() is None:
        print(f"MiniLM not installed: {MINILM_INSTALL_HINT}", file=sys.stderr)
        return 2
    src = str(model_path)
    env = environment()
    print_environment(env)
    from monoquant_np.onnx.calibration import adapters as calibrated
    from monoquant_np.onnx.quantizer.algorithm import Algorithm

    sents = stdlib_sentences(512)
    evaluation, calibration = sents[:256], sents[256:512]
    if set(evaluation) & set(calibration):
        raise SystemExit("calibration and evaluation sentences overlap")
    cal = minilm_feeds(calibration)  # FEEDS: input_ids, attention_mask (256, T), padded
    ref = _embed(src, evaluation)
    float_mb = os.path.getsize(src) / 1e6
    variants: list[tuple[str, str | Algorithm]] = [("rtn", "rtn"), ("mse", "mse"), ("gptq", "gptq"), ("awq", "awq")]
    if args.sequential:
        variants += [("gptq, sequential", calibrated.gptq_algorithm(sequential=True)),
                     ("awq, sequential", calibrated.awq_algorithm(sequential=True))]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for ops in ("MatMul", "MatMul,Gather"):
            for label, alg in variants:
                name = alg if isinstance(alg, str) else alg.name
                needs = name in ("gptq", "awq")
                times: list[float] = []
                q = onnx.ModelProto()
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    q, _rep = quantize_model_with_report(src, ops=ops, group_size=128, algorithm=alg,
                                                         calibration=cal if needs else None)
                    times.append(time.perf_counter() - t)
                path = os.path.join(d, "q.onnx")
                save_model(q, path, base_dir=os.path.dirname(src))
                rows.append((ops, f"monoquant-np --algorithm {label}", os.path.getsize(path) / 1e6,
                             statistics.median(times), _cos(ref, _embed(path, evaluation))))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            times = []
            q = onnx.ModelProto()
            for _ in range(args.repeat):
                t = time.perf_counter()
                q = _ort(src, ops)
                times.append(time.perf_counter() - t)
            path = os.path.join(d, "ort.onnx")
            onnx.save(q, path)
            rows.append((ops, "onnxruntime matmul_nbits_quantizer", os.path.getsize(path) / 1e6,
                         statistics.median(times), _cos(ref, _embed(path, evaluation))))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    intro = (f"MiniLM-L3 ({float_mb:.1f} MB float), int4 group 128 symmetric; mean embedding cosine (output 461) "
             f"on {len(evaluation)} stdlib-docstring sentences; gptq/awq calibrated on {len(calibration)} other "
             f"sentences; time = quantize in process incl. calibration, median of {args.repeat}.")
    table = markdown_table(["ops", "quantizer", "file MB", "quantize s", "mean cosine", "cosine - ORT's"],
                           [_cells(r, rows) for r in rows], "llrrrr")
    print(f"{intro}\n\n{table}")
    if args.markdown:
        write_page(args.markdown, "Accuracy of rtn, mse, gptq and awq on MiniLM-L3", env, [intro, table, READING])
    return 0


READING = """\
How to read it: `mean cosine` is the mean cosine similarity between the quantized
and the float model's sentence embeddings on sentences the calibration never saw
(1 is identical); `cosine - ORT's` is the difference from onnxruntime's own
`matmul_nbits_quantizer` on the same settings, measured in the same run (positive:
closer to the float model than onnxruntime's). `--ops MatMul` quantizes the
matmul weights only; `MatMul,Gather` the embedding table as well. `rtn` and `mse`
need no data; `gptq` and `awq` are calibrated, and their times include the
calibration. File sizes are of the saved model; times are wall-clock on the
machine above and vary by run."""


def _cells(r: tuple[str, str, float, float, float], rows: list[tuple[str, str, float, float, float]]) -> list[str]:
    """One table row: ops, quantizer, MB, seconds, cosine and its difference from onnxruntime's row."""
    ops, name, mb, secs, cos = r
    peer = next(p for p in rows if p[0] == ops and p[1].startswith("onnxruntime"))
    return [ops, name, f"{mb:.2f}", f"{secs:.1f}", f"{cos:.4f}", f"{cos - peer[4]:+.4f}"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
