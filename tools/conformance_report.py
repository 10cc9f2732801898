"""Run the conformance kit against the reference and onnxruntime (spec 12.7.3; docs/conformance-kit.md).

Usage::

    python tools/conformance_report.py [--examples 25] [--kernel-examples 60] [--markdown docs/conformance-kit.md]

Each row is one :func:`monoquant_np.testing.check_backend` run (deterministic:
hypothesis ``derandomize``): the backend, its reference, how many examples
mismatched per function, and the worst ``|diff| / bound`` of ``dequant_matmul``
(the float32 rounding bound ``2e-5 * (|x| @ |W|)`` unless the row names the
int8-activation bound). A worst ratio <= 1 means no mismatch.

The run prints the machine, the library versions and the date first;
``--markdown PATH`` writes them, the table and how to read it to a page.
"""

from __future__ import annotations

import argparse
import sys
import time

from _report import environment, markdown_table, print_environment, print_table, write_page

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
    p.add_argument("--markdown", metavar="PATH", help="write the page (machine, versions, date, table) to PATH")
    args = p.parse_args(argv)
    if args.examples <= 0 or args.kernel_examples <= 0:
        p.error(f"--examples and --kernel-examples must be positive, got {args.examples}, {args.kernel_examples}")
    env = environment(peers=("hypothesis",))
    print_environment(env)
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
    print_table(head, rows, markdown=False)
    print(f"\n{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.markdown:
        intro = (f"{n} examples per function ({args.kernel_examples} for onnxruntime's quantize_matmul_4bits "
                 "kernel), hypothesis derandomized: the same examples on every run.")
        write_page(args.markdown, "The conformance kit run against onnxruntime", env,
                   [intro, markdown_table(head, rows), READING])
    return 0


READING = """\
How to read it: each row runs `monoquant_np.testing.check_backend` on one
backend: the examples (shapes, axes, group sizes, schemes, scale dtypes and
adversarial weights: all-zero groups, spikes, exact ties, float16 limits,
denormals) go through the backend's functions and the reference's, and
`mismatching examples` counts, per function, those that differ (`quantize` and
`pack` bit for bit, `dequantize` exactly, `dequant_matmul` within a bound).
`worst diff / bound` is the largest `|difference| / bound` of `dequant_matmul`:
at most 1 means within the bound. The bound is the float32 rounding bound
`2e-5 * (|x| @ |W|)` unless the row names the int8-activation bound
`max|x_row| / 254 * sum_k |W[k, n]|`, which is what onnxruntime's accuracy level 4
(int8 activations, its default for fused nodes) can reach. A row whose backend is
expected to differ from the spec (level 4 against the float32 bound) shows
MISMATCH by design; the next row checks it against its own bound."""


if __name__ == "__main__":
    raise SystemExit(main())
