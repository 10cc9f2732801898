"""The conformance kit: check a backend against the reference (spec section 12.7.2).

A :class:`Backend` names up to four functions; :func:`check_backend` runs the
strategies of :mod:`monoquant_np.testing.strategies` through each one the
backend has and compares with the reference backend (the spec's own functions
by default):

==================  ===========================================  ===================
function            signature                                    compared
==================  ===========================================  ===================
``quantize``        ``(w, *, group_size, axis, symmetric,``      codes and scales
                    ``scale_dtype) -> QuantizedTensor`` or       bit for bit
                    ``(codes, scale, zero_point)``
``pack``            ``(codes) -> uint8 bytes`` (ONNX order)      byte for byte
``dequantize``      ``(qt) -> float32 array``                    exactly (``==``)
``dequant_matmul``  ``(x, qt) -> float32 (M, N)``                ``|y - y_ref| <=
                                                                 bound(x, W)``
==================  ===========================================  ===================

The matmul bound defaults to float32 rounding, ``tol * (|x| @ |W|)`` with
``tol = 2e-5`` (the summation order is free); a backend that rounds on
purpose (onnxruntime's int8 activations) passes its own ``matmul_bound``.

A mismatch (:mod:`monoquant_np.testing.compare`) says where, like gguf-py's
tests: the function, the case, the group, the byte and nibble, the expected
and actual values and the bits that differ (``xor``). :func:`conformance_tests` wraps it all in a pytest class, so
a backend's own suite runs the kit in one line::

    TestMyBackend = conformance_tests(Backend("mine", pack=my_pack, dequantize=my_dequantize))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..dequantize import dequantize
from ..matmul import dequant_matmul
from ..packing import pack_int4
from ..quantize import quantize
from ..tensor import QuantizedTensor
from .compare import Mismatch, compare_bytes, compare_matmul, compare_quantized, compare_values
from .strategies import KINDS, Case, cases, matmul_inputs

__all__ = ["Backend", "Mismatch", "Report", "SPEC", "FUNCTIONS", "check_backend", "conformance_tests",
           "float32_bound"]

FUNCTIONS = ("quantize", "pack", "dequantize", "dequant_matmul")


def float32_bound(x: np.ndarray, w: np.ndarray, tol: float = 2e-5) -> np.ndarray:
    """Allowed ``|y - y_ref|`` of a float32 matmul: ``tol * (|x| @ |W|)`` plus the smallest normal."""
    return tol * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)) + np.finfo(np.float32).tiny


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend under test: any subset of the four functions, and what it supports.

    ``ndims``/``axes``/``group_sizes``/``schemes``/``scale_dtypes`` restrict
    the drawn cases to what the backend implements (``None``: anything);
    ``dequant_matmul`` always gets 2-D ``(K, N)`` weights. ``matmul_bound(x, W)``
    is the allowed per-element error (default :func:`float32_bound`).
    """

    name: str
    quantize: Callable[..., Any] | None = None
    pack: Callable[[np.ndarray], np.ndarray] | None = None
    dequantize: Callable[[QuantizedTensor], np.ndarray] | None = None
    dequant_matmul: Callable[[np.ndarray, QuantizedTensor], np.ndarray] | None = None
    ndims: tuple[int, ...] = (1, 2, 3)
    axes: tuple[int, ...] | None = None
    group_sizes: tuple[int, ...] | None = None
    schemes: tuple[str, ...] = ("int4", "uint4")
    scale_dtypes: tuple[Any, ...] = (np.float32, np.float16)
    kinds: tuple[str, ...] = KINDS
    matmul_bound: Callable[[np.ndarray, np.ndarray], np.ndarray] = float32_bound
    max_side: int = 64

    def functions(self) -> tuple[str, ...]:
        return tuple(f for f in FUNCTIONS if getattr(self, f) is not None)


def _spec_quantize(w: np.ndarray, *, group_size: int, axis: int, symmetric: bool, scale_dtype: Any,
                   bits: int = 4) -> QuantizedTensor:
    return quantize(w, bits=bits, group_size=group_size, axis=axis, symmetric=symmetric, scale_dtype=scale_dtype)


#: The reference: the spec's own functions.
SPEC = Backend("spec", quantize=_spec_quantize, pack=pack_int4, dequantize=dequantize, dequant_matmul=dequant_matmul)


@dataclasses.dataclass
class Report:
    """What :func:`check_backend` found. ``ok`` when nothing differs.

    ``worst[f]``: for ``dequant_matmul``, the largest ``|y - y_ref| / bound``
    seen (<= 1 passes); for the others, the largest count of differing
    elements in one example.
    """

    backend: str
    reference: str
    examples: dict[str, int] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    worst: dict[str, float] = dataclasses.field(default_factory=dict)
    mismatches: list[Mismatch] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def __str__(self) -> str:
        lines = [f"conformance of {self.backend!r} against {self.reference!r}: {'OK' if self.ok else 'MISMATCH'}"]
        for f, n in self.examples.items():
            lines.append(f"  {f}: {n} examples, {self.counts.get(f, 0)} mismatching, worst {self.worst.get(f, 0):.4g}")
        lines += [f"  - {m}" for m in self.mismatches[:20]]
        if len(self.mismatches) > 20:
            lines.append(f"  ... {len(self.mismatches) - 20} more")
        return "\n".join(lines)


# -------------------------------------------------------------------- driver
def _kwargs(case: Case) -> dict[str, Any]:
    """``quantize``'s keywords for ``case``; ``bits`` only for a 2- or 8-bit scheme (spec 20), so that a
    backend declaring int4/uint4 alone need not take it."""
    kw = {"group_size": case.group_size, "axis": case.axis, "symmetric": case.symmetric,
          "scale_dtype": case.scale_dtype}
    return kw if case.bits == 4 else {**kw, "bits": case.bits}


def _one(impl: Backend, reference: Backend, function: str, case: Case, x: np.ndarray) -> tuple[list, float]:
    """Compare ``function`` of ``impl`` and ``reference`` on one case: ``(mismatches, worst)``."""
    desc = case.describe()
    ref_quantize = reference.quantize or _spec_quantize
    ref_qt = ref_quantize(case.w, **_kwargs(case))
    mine: Callable[..., Any] = getattr(impl, function)
    theirs: Callable[..., Any] = getattr(reference, function)
    try:
        if function == "quantize":
            found = compare_quantized(ref_qt, mine(case.w, **_kwargs(case)), desc)
        elif function == "pack":
            codes = ref_qt.codes()
            found = compare_bytes(theirs(codes), mine(codes), desc) if ref_qt.bits == 4 else []
        elif function == "dequantize":
            found = compare_values(theirs(ref_qt), mine(ref_qt), ref_qt, desc)
        else:
            ref_y = np.asarray(theirs(x, ref_qt), dtype=np.float64)
            bound = impl.matmul_bound(x, dequantize(ref_qt))
            return compare_matmul(ref_y, mine(x, ref_qt), bound, desc)
    except Exception as exc:  # a backend that raises on a valid input does not conform
        return [Mismatch(function, desc, "call", "a result", f"{type(exc).__name__}: {exc}")], float("inf")
    return found, float(len(found))


def _run(impl: Backend, reference: Backend, function: str, max_examples: int, report: Report) -> None:
    """Run one function over ``max_examples`` drawn cases, adding to ``report``."""
    ndims = (2,) if function == "dequant_matmul" else impl.ndims
    strategy = cases(ndims=ndims, axes_=impl.axes, group_sizes_=impl.group_sizes, schemes_=impl.schemes,
                     scale_dtypes_=impl.scale_dtypes, kinds=impl.kinds, max_side=impl.max_side)
    both = strategy.flatmap(lambda c: st.tuples(st.just(c), matmul_inputs(c.w.shape[0])))
    stats = {"n": 0, "count": 0, "worst": 0.0}

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(both)
    def run(pair: tuple[Case, np.ndarray]) -> None:
        case, x = pair
        found, worst = _one(impl, reference, function, case, x)
        stats["n"] += 1
        stats["count"] += int(bool(found))
        stats["worst"] = max(stats["worst"], worst)
        report.mismatches.extend(found)

    run()
    report.examples[function] = int(stats["n"])
    report.counts[function] = int(stats["count"])
    report.worst[function] = float(stats["worst"])


def check_backend(
    impl: Backend,
    *,
    reference: Backend = SPEC,
    functions: tuple[str, ...] | None = None,
    max_examples: int = 25,
) -> Report:
    """Run the strategies through ``impl``'s functions and compare with ``reference``.

    Deterministic (hypothesis ``derandomize``); no shrinking, so that every
    example's mismatches are counted. Returns a :class:`Report`.
    """
    if not isinstance(impl, Backend) or not isinstance(reference, Backend):
        raise TypeError(f"impl and reference must be Backend instances, got {type(impl).__name__}")
    report = Report(impl.name, reference.name)
    todo = functions if functions is not None else impl.functions()
    for function in todo:
        if function not in FUNCTIONS:
            raise ValueError(f"functions must be among {FUNCTIONS}, got {function!r}")
        if getattr(impl, function) is None or getattr(reference, function) is None:
            continue
        _run(impl, reference, function, max_examples, report)
    return report


def conformance_tests(impl: Backend, *, reference: Backend = SPEC, max_examples: int = 25) -> type:
    """A pytest test class running :func:`check_backend` for each of ``impl``'s functions.

    Usage, in a backend's own test module: ``TestMine = conformance_tests(Backend("mine", pack=...))``.
    Functions the backend lacks are skipped; a mismatch fails with the report.
    """

    def make(function: str) -> Callable[[Any], None]:
        def test(self: Any) -> None:
            import pytest

            if getattr(impl, function) is None:
                pytest.skip(f"backend {impl.name!r} has no {function}")
            report = check_backend(impl, reference=reference, functions=(function,), max_examples=max_examples)
            if not report.ok:
                raise AssertionError(str(report))

        test.__name__ = f"test_{function}"
        return test

    name = "TestConformance_" + "".join(c if c.isalnum() else "_" for c in impl.name)
    return type(name, (), {f"test_{f}": make(f) for f in FUNCTIONS})
