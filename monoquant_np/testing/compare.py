"""How the conformance kit compares a backend's results and describes a difference (spec section 12.7.2).

Each ``compare_*`` function takes the reference result and a backend's result
for one drawn case and returns a list of :class:`Mismatch` (empty when they
agree), saying where the difference is, as gguf-py's tests do: the group, the
element, the byte and nibble of the packed data, the expected and actual
values, and the bits that differ (``xor``):

* :func:`compare_quantized`: codes, scales (compared as their bit patterns)
  and zero points, exactly;
* :func:`compare_bytes`: packed bytes, naming the element of each differing nibble;
* :func:`compare_values`: dequantized float32 values, exactly (``-0.0 == 0.0``);
* :func:`compare_matmul`: ``|y - y_ref| <= bound`` per output element.

At most :data:`KEEP` mismatches are listed per function and example (the
callers count every example that differs).

    >>> m = compare_bytes(np.array([0x21], np.uint8), np.array([0x12], np.uint8), "case")[0]
    >>> m.where, m.expected, m.got, m.bits
    ('byte 0 (low nibble = element 0; high nibble = element 1)', '0x21', '0x12', 'xor 0b00110011 (bits 0, 1, 4, 5)')
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..tensor import QuantizedTensor

__all__ = ["Mismatch", "KEEP", "compare_quantized", "compare_bytes", "compare_values", "compare_matmul"]

#: Mismatches kept per function and example (the count is always complete).
KEEP = 3


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
