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

``--budget`` runs the mixed-precision rows instead (spec 21; ``tools/_mixed_rows.py``):
``--size-budget`` 10/9/8 MB with rtn and gptq against onnxruntime's quantizer at
its closest size, the proxy's Spearman rank agreement with the measured effect,
the size/accuracy curve ``docs/mixed-precision.svg`` and the 8 MB run's HTML
report with its Chromium screenshot ``docs/mixed-report.png``.

    python tools/accuracy_table.py [--repeat 1] [--sequential] [--markdown docs/accuracy.md]
    python tools/accuracy_table.py --budget --markdown docs/mixed-precision.md
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
    ap.add_argument("--budget", action="store_true", help="the mixed-precision rows (spec 21) instead")
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
    if args.budget:
        return _budget(src, env, cal, calibration, evaluation, ref, float_mb, args.markdown)
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


def _budget(src: str, env: dict, cal: dict, calibration: list[str], evaluation: list[str], ref: np.ndarray,
            float_mb: float, markdown: str | None) -> int:
    """The ``--budget`` run (module docstring)."""
    import _mixed_rows as mixed

    docs = os.path.dirname(markdown) if markdown else None
    with tempfile.TemporaryDirectory() as d:
        rows, rep8 = mixed.budget_rows(src, d, cal, _embed, _cos, ref, evaluation)
        ort_path = os.path.join(d, "ort.onnx")
        onnx.save(_ort(src, "MatMul,Gather"), ort_path)
        ort = [("onnxruntime int4 block 128", os.path.getsize(ort_path) / 1e6, _cos(ref, _embed(ort_path, evaluation)))]
    probe = minilm_feeds(calibration[:64])
    rho, n = mixed.spearman(src, rep8, probe, lambda m, f: make_session(m, 1, intra_op_threads=1).run(["461"], f)[0])
    table = markdown_table(["quantizer", "algorithm", "file MB", "mean cosine", "cosine - ORT's"],
                           [[f"monoquant-np --size-budget {b}", a, f"{mb:.2f}", f"{c:.4f}", f"{c - ort[0][2]:+.4f}"]
                            for a, b, mb, c in rows]
                           + [[o[0], "rtn", f"{o[1]:.2f}", f"{o[2]:.4f}", "+0.0000"] for o in ort], "llrrr")
    best = max(rows, key=lambda r: r[3])
    reach = {t: min((r[2] for r in rows if r[3] >= t), default=None) for t in (0.98, 0.99)}
    facts = (f"MiniLM-L3 ({float_mb:.1f} MB float) with its embedding table (`--ops MatMul,Gather`); calibration "
             f"(sensitivity H and gptq) on {len(calibration)} sentences, mean embedding cosine on {len(evaluation)} "
             f"others. Best: {best[3]:.4f} ({best[0]}, --size-budget {best[1]}, {best[2]:.2f} MB). Smallest file "
             f"reaching 0.98: {_mb(reach[0.98])}; 0.99: {_mb(reach[0.99])} (among the budgets measured). "
             f"Spearman rank agreement of the proxy (spec 21.2) with the measured effect of quantizing one weight "
             f"alone (1 - mean cosine on 64 calibration sentences; {n} weight x format pairs, formats "
             f"{', '.join(mixed.PROBE)}): {rho:.3f}.")
    print(f"{facts}\n\n{table}")
    if markdown:
        with open(os.path.join(docs or ".", "mixed-precision.svg"), "w") as f:
            f.write(mixed.curve_svg(rows, ort))
        wrote = mixed.write_report_files(rep8, os.path.join(docs or ".", "mixed-report.html"),
                                         os.path.join(docs or ".", "mixed-report.png"))
        pics = ("![size/accuracy](mixed-precision.svg)\n\nThe 8 MB run's report (`--report r.html`), "
                "rendered by headless Chromium: ![report](mixed-report.png) ([the page](mixed-report.html))")
        write_page(markdown, "Mixed precision under a size budget on MiniLM-L3", env,
                   [facts, table, pics, BUDGET_READING])
        print(f"wrote {markdown}, {wrote}")
    return 0


def _mb(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.2f} MB"


BUDGET_READING = """\
How to read it: each `--size-budget` row is the whole saved model (file MB, 10^6
bytes) with one format per weight chosen from float, int8, int4 g32/g64/g128,
uint4 g128, int2 g32/g64/g128, uint2 g64 (nf4 g64 with rtn) to minimise the
predicted error within the budget (spec 21.3); `cosine - ORT's` is against
onnxruntime's `matmul_nbits_quantizer` (int4, block 128, the embedding table
included) measured in the same run, whose size is the closest it offers. The
Spearman figure says how well the per-layer proxy orders the real effect of a
format on the model's output."""


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
