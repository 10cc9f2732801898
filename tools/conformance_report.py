"""Run the conformance kit against the reference and onnxruntime (spec 12.7.3; README figures).

Usage::

    python tools/conformance_report.py [--examples 25] [--kernel-examples 60] [--markdown]

Each row is one :func:`monoquant_np.testing.check_backend` run (deterministic:
hypothesis ``derandomize``): the backend, its reference, how many examples
mismatched per function, and the worst ``|diff| / bound`` of ``dequant_matmul``
(the float32 rounding bound ``2e-5 * (|x| @ |W|)`` unless the row names the
int8-activation bound). A worst ratio <= 1 means no mismatch.
"""

from __future__ import annotations

import argparse
import sys
import time

from _report import print_table

from monoquant_np.testing import (
    ORT_DEFAULT,
    SPEC,
    Report,
    check_backend,
    int8_activation_bound,
    onnxruntime_backend,
    onnxruntime_kernel_backend,
)


def _row(label: str, report: Report) -> list[str]:
    counts = ", ".join(f"{f} {report.counts[f]}/{report.examples[f]}" for f in report.examples)
    worst = report.worst.get("dequant_matmul")
    return [label, report.reference, "OK" if report.ok else "MISMATCH", counts,
            "-" if worst is None else f"{worst:.3g}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=25, help="examples per function (default 25)")
    p.add_argument("--kernel-examples", type=int, default=60,
                   help="examples for onnxruntime's quantize_matmul_4bits kernel (default 60)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)
    if args.examples <= 0 or args.kernel_examples <= 0:
        p.error(f"--examples and --kernel-examples must be positive, got {args.examples}, {args.kernel_examples}")
    t0 = time.perf_counter()
    n = args.examples
    runs = [
        ("SPEC", check_backend(SPEC, max_examples=n)),
        ("onnxruntime qdq, accuracy_level=1", check_backend(onnxruntime_backend(1), max_examples=n)),
        ("onnxruntime matmulnbits, accuracy_level=1",
         check_backend(onnxruntime_backend(1, format="matmulnbits"), max_examples=n)),
        ("onnxruntime qdq, accuracy_level=4", check_backend(onnxruntime_backend(4), max_examples=n)),
        ("onnxruntime qdq, accuracy_level=4, int8 bound",
         check_backend(onnxruntime_backend(4, bound=int8_activation_bound), max_examples=n)),
        ("onnxruntime quantize_matmul_4bits",
         check_backend(onnxruntime_kernel_backend(), reference=ORT_DEFAULT, max_examples=args.kernel_examples)),
    ]
    head = ["backend", "reference", "result", "mismatching examples", "worst diff / bound (matmul)"]
    rows = [_row(label, r) for label, r in runs]
    print_table(head, rows, args.markdown)
    print(f"\n{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
