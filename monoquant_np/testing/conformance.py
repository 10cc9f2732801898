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

A mismatch says where, like gguf-py's tests: the function, the case, the
group, the byte and nibble, the expected and actual values and the bits that
differ (``xor``). :func:`conformance_tests` wraps it all in a pytest class, so
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

from ..matmul import dequant_matmul
from ..packing import pack_int4
from ..quantize import dequantize, quantize
from ..tensor import QuantizedTensor
from .strategies import KINDS, Case, cases, matmul_inputs

__all__ = ["Backend", "Mismatch", "Report", "SPEC", "FUNCTIONS", "check_backend", "conformance_tests",
           "float32_bound"]

FUNCTIONS = ("quantize", "pack", "dequantize", "dequant_matmul")
#: Mismatches kept per function and example (the count is always complete).
KEEP = 3


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


def _spec_quantize(w: np.ndarray, *, group_size: int, axis: int, symmetric: bool, scale_dtype: Any) -> QuantizedTensor:
    return quantize(w, group_size=group_size, axis=axis, symmetric=symmetric, scale_dtype=scale_dtype)


#: The reference: the spec's own functions.
SPEC = Backend("spec", quantize=_spec_quantize, pack=pack_int4, dequantize=dequantize, dequant_matmul=dequant_matmul)


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One difference between a backend and the reference."""

    function: str
    case: str
    where: str
    expected: str
    got: str
    bits: str = ""
    ratio: float = float("inf")

    def __str__(self) -> str:
        bits = f"; {self.bits}" if self.bits else ""
        return f"{self.function}: {self.where}: expected {self.expected}, got {self.got}{bits}  [{self.case}]"


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


# ----------------------------------------------------------------- comparisons
def _bits(a: int, b: int, width: int) -> str:
    x = (a ^ b) & ((1 << width) - 1)
    return f"xor 0b{x:0{width}b} (bits {', '.join(str(i) for i in range(width) if x >> i & 1)})"


def _group_of(index: tuple[int, ...], axis: int, group_size: int) -> tuple[int, ...]:
    g = list(index)
    g[axis] //= group_size
    return tuple(g)


def _as_parts(got: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if isinstance(got, QuantizedTensor):
        return got.codes(), got.scale, got.zero_point
    codes, scale, zp = got
    return np.asarray(codes), np.asarray(scale), None if zp is None else np.asarray(zp)


def compare_quantized(ref: QuantizedTensor, got: Any, case: str) -> list[Mismatch]:
    """Codes, scales and zero points of ``got`` against ``ref``, bit for bit."""
    out: list[Mismatch] = []
    codes, scale, zp = _as_parts(got)
    width = ref.bits
    if scale.dtype != ref.scale.dtype or scale.shape != ref.scale.shape:
        want, have = f"{ref.scale.dtype}{ref.scale.shape}", f"{scale.dtype}{scale.shape}"
        return [Mismatch("quantize", case, "scale dtype and shape", want, have)]
    sbits = ref.scale.dtype.itemsize * 8
    uint = np.dtype(f"u{ref.scale.dtype.itemsize}")
    diff = ref.scale.view(uint) != scale.view(uint)
    for g in np.argwhere(diff)[:KEEP]:
        g = tuple(int(i) for i in g)
        a, b = int(ref.scale.view(uint)[g]), int(scale.view(uint)[g])
        out.append(Mismatch("quantize", case, f"scale of group {g}", f"{ref.scale[g]!r} (0x{a:x})",
                            f"{scale[g]!r} (0x{b:x})", _bits(a, b, sbits)))
    if ref.zero_point is not None or zp is not None:
        rz = ref.zero_point if ref.zero_point is not None else np.zeros(ref.scale.shape, np.uint8)
        gz = zp.astype(np.int64) if zp is not None else np.zeros(ref.scale.shape, np.int64)
        for g in np.argwhere(rz.astype(np.int64) != gz)[:KEEP]:
            g = tuple(int(i) for i in g)
            out.append(Mismatch("quantize", case, f"zero point of group {g}", str(int(rz[g])), str(int(gz[g])),
                                _bits(int(rz[g]), int(gz[g]), width)))
    rc = ref.codes().astype(np.int64)
    gc = np.asarray(codes).astype(np.int64).reshape(rc.shape) if codes.size == rc.size else None
    if gc is None:
        return out + [Mismatch("quantize", case, "codes", f"{rc.size} codes", f"{codes.size}")]
    flat = np.flatnonzero(rc != gc)
    for i in flat[:KEEP]:
        idx = tuple(int(v) for v in np.unravel_index(i, rc.shape))
        byte = f"byte {i // 2} {'high' if i % 2 else 'low'} nibble" if width == 4 else f"byte {i}"
        out.append(Mismatch("quantize", case, f"element {idx} (group {_group_of(idx, ref.axis, ref.block_size)}, "
                            f"{byte})", str(int(rc[idx])), str(int(gc[idx])), _bits(int(rc[idx]), int(gc[idx]), width)))
    if len(flat) > KEEP:
        out.append(Mismatch("quantize", case, f"{len(flat) - KEEP} more codes", "", ""))
    return out


def compare_bytes(ref: np.ndarray, got: Any, case: str, function: str = "pack") -> list[Mismatch]:
    """Packed bytes, byte for byte, naming the elements each differing nibble holds."""
    got = np.asarray(got)
    if got.dtype != np.uint8 or got.size != ref.size:
        return [Mismatch(function, case, "bytes", f"uint8 x {ref.size}", f"{got.dtype} x {got.size}")]
    r, g = ref.reshape(-1), got.reshape(-1)
    out = []
    for i in np.flatnonzero(r != g)[:KEEP]:
        a, b = int(r[i]), int(g[i])
        which = "; ".join(f"{('low', 'high')[k]} nibble = element {2 * i + k}"
                          for k in (0, 1) if (a ^ b) >> 4 * k & 0xF)
        out.append(Mismatch(function, case, f"byte {i} ({which})", f"0x{a:02x}", f"0x{b:02x}", _bits(a, b, 8)))
    return out


def compare_values(ref: np.ndarray, got: Any, qt: QuantizedTensor, case: str) -> list[Mismatch]:
    """Dequantized values, exactly (``-0.0 == 0.0``), naming element and group."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return [Mismatch("dequantize", case, "shape", str(ref.shape), str(got.shape))]
    out = []
    for idx in np.argwhere(~(ref == got))[:KEEP]:
        idx = tuple(int(v) for v in idx)
        a, b = np.float32(ref[idx]), np.float32(got[idx])
        out.append(Mismatch("dequantize", case, f"element {idx} (group {_group_of(idx, qt.axis, qt.block_size)})",
                            repr(float(a)), repr(float(b)), _bits(int(a.view(np.uint32)), int(b.view(np.uint32)), 32)))
    return out


def compare_matmul(ref: np.ndarray, got: Any, bound: np.ndarray, case: str) -> tuple[list[Mismatch], float]:
    """``|got - ref| <= bound`` elementwise; returns the mismatches and the worst ``|got - ref| / bound``."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape:
        return [Mismatch("dequant_matmul", case, "shape", str(ref.shape), str(got.shape))], float("inf")
    err = np.abs(got - ref)
    ratio = err / bound
    worst = float(ratio.max()) if ratio.size else 0.0
    out = []
    for idx in np.argwhere(ratio > 1)[:KEEP]:
        idx = tuple(int(v) for v in idx)
        out.append(Mismatch("dequant_matmul", case, f"output {idx}", repr(float(ref[idx])), repr(float(got[idx])),
                            f"|diff| {err[idx]:.3g} > bound {bound[idx]:.3g}", float(ratio[idx])))
    return out, worst


# -------------------------------------------------------------------- driver
def _kwargs(case: Case) -> dict[str, Any]:
    return {"group_size": case.group_size, "axis": case.axis, "symmetric": case.symmetric,
            "scale_dtype": case.scale_dtype}


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
