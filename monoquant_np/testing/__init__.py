"""The conformance kit: hypothesis strategies and backend checks (spec section 12.7).

Needs ``hypothesis`` (and ``pytest`` for :func:`conformance_tests`); the
NumPy core never imports this package. :mod:`monoquant_np.testing.reference`
holds the textbook NumPy form of each formula of the spec, which the optimized
kernels are pinned to and the benchmarks time as their plain NumPy peer.

    >>> from monoquant_np.testing import SPEC, check_backend
    >>> check_backend(SPEC, max_examples=3).ok
    True
"""

from .backends import ORT_DEFAULT, int8_activation_bound, onnxruntime_backend, onnxruntime_kernel_backend
from .conformance import (
    FUNCTIONS,
    SPEC,
    Backend,
    Mismatch,
    Report,
    check_backend,
    conformance_tests,
    float32_bound,
)
from .strategies import (
    GGUF_KINDS,
    KINDS,
    Case,
    axes,
    cases,
    gguf_rows,
    group_sizes,
    matmul_inputs,
    nf4_weights,
    scale_dtypes,
    schemes,
    shapes,
    weights,
)

__all__ = [
    # checking a backend
    "Backend",
    "check_backend",
    "conformance_tests",
    "Report",
    "Mismatch",
    "FUNCTIONS",
    "float32_bound",
    # ready-made backends
    "SPEC",
    "ORT_DEFAULT",
    "onnxruntime_backend",
    "onnxruntime_kernel_backend",
    "int8_activation_bound",
    # strategies
    "Case",
    "KINDS",
    "cases",
    "weights",
    "shapes",
    "axes",
    "group_sizes",
    "schemes",
    "scale_dtypes",
    "matmul_inputs",
    "nf4_weights",
    "gguf_rows",
    "GGUF_KINDS",
]
