"""``QuantizedTensor``: the canonical container of a quantized weight (spec section 6).

A ``QuantizedTensor`` holds everything needed to rebuild the weight and
nothing else; every exporter, dialect and algorithm takes and returns it.
Its invariants are checked on construction, so an inconsistent tensor cannot
exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .double_quant import DoubleQuant
from .e2m1 import E2M1_VALUES
from .errors import check_bool, check_choice, check_int, check_scales, check_shape, check_uint8
from .fp_scales import FloatScales
from .groups import group_shape
from .numerics import code_range
from .packing import storage_size, unpack_codes

__all__ = ["QuantizedTensor", "check_qt", "zero_points_of"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True) if a.flags.writeable or not a.flags.c_contiguous else a
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """An immutable quantized weight.

    Attributes:
        data: uint8, packed codes of the weight in its own ``shape``, flattened
            in C order. 4-bit codes: two per byte, low nibble first (spec 5),
            ``ceil(size / 2)`` bytes. 2-bit codes: four per byte, element
            ``4i`` lowest (spec 20.3), ``ceil(size / 4)`` bytes. 8-bit codes:
            one per byte (int8 codes as their two's complement byte), ``size`` bytes.
        shape: the weight's shape.
        axis: the axis along which groups run (non-negative).
        block_size: the group size along ``axis``.
        scale: float32 or float16, ``group_shape(shape, axis, block_size)``.
            With double quantization, the scales rebuilt from ``double_quant``.
        zero_point: uint8 codes with ``scale``'s shape (``0..2**bits - 1``),
            or ``None`` (symmetric codes, or a codebook).
        signed: True for two's complement codes (int2, int4 ``-8..7``, int8),
            False for unsigned codes (uint2, uint4 ``0..15``, uint8, codebook indices).
        bits: the code width: 2, 4 or 8 (spec 1, 20; 8 also for the int8
            per-channel fallback, spec 7).
        codebook: float32 ``(16,)`` values that unsigned codes index (NF4,
            spec 10), or ``None`` for linear codes.
        double_quant: the 8-bit storage of ``scale`` (spec 11), or ``None``.
        perm: int64 ``(shape[axis],)`` or ``None``. When set, the stored codes
            are those of ``w.take(perm, axis)``; :func:`dequantize` undoes the
            permutation (GPTQ act-order, spec 14).
        fp_scales: the 8-bit float block scales of MXFP4/NVFP4 (spec 18,
            19), or ``None``. When set, ``codebook`` is ``E2M1_VALUES`` and
            ``scale`` equals ``fp_scales.rebuild()``.
    """

    data: np.ndarray
    shape: tuple[int, ...]
    axis: int
    block_size: int
    scale: np.ndarray
    zero_point: np.ndarray | None = None
    signed: bool = True
    bits: int = 4
    codebook: np.ndarray | None = None
    double_quant: DoubleQuant | None = None
    perm: np.ndarray | None = None
    fp_scales: FloatScales | None = None

    def _check_scalars(self) -> tuple[int, ...]:
        """Spec 15.4: ``shape`` a tuple of ints >= 0, ``axis`` an int in ``[0, ndim)``, ``block_size`` an int
        >= 1, ``bits`` 2, 4 or 8, ``signed`` a bool; stored as Python ints and bools."""
        shape = check_shape(self.shape)
        axis = check_int(self.axis, "axis")
        if not 0 <= axis < len(shape):
            raise ValueError(f"axis must be in [0, {len(shape) - 1}] for shape {shape}, got {axis}")
        block_size = check_int(self.block_size, "block_size", minimum=1)
        bits = check_choice(self.bits, (2, 4, 8), "bits")
        signed = check_bool(self.signed, "signed")
        for name, value in (("shape", shape), ("axis", axis), ("block_size", block_size), ("bits", int(bits)),
                            ("signed", signed)):
            object.__setattr__(self, name, value)
        return shape

    def __post_init__(self) -> None:
        shape = self._check_scalars()
        if not isinstance(self.data, np.ndarray) or self.data.dtype != np.uint8:
            raise TypeError(f"data must be a uint8 array, got {getattr(self.data, 'dtype', type(self.data))}")
        size = int(np.prod(shape))
        want = storage_size(size, self.bits)
        if self.data.size != want:
            raise ValueError(
                f"data must hold {want} bytes for shape {shape} at {self.bits} bits, got {self.data.size}"
            )
        gshape = group_shape(shape, self.axis, self.block_size)
        if not isinstance(self.scale, np.ndarray) or self.scale.dtype not in (np.float32, np.float16):
            raise TypeError(f"scale must be a float32 or float16 array, got {getattr(self.scale, 'dtype', self.scale)}")
        if self.scale.shape != gshape:
            raise ValueError(f"scale must have shape {gshape}, got {self.scale.shape}")
        if self.zero_point is not None:
            check_uint8(self.zero_point, "zero_point")
            if self.signed or self.codebook is not None:
                raise ValueError("zero_point must be None for signed codes and for codebooks, "
                                 f"got a zero point with signed={self.signed}, codebook={self.codebook is not None}")
            if self.zero_point.shape != gshape:
                raise ValueError(
                    f"zero_point must be uint8 of shape {gshape}, got "
                    f"{self.zero_point.dtype} {self.zero_point.shape}"
                )
            zmax = code_range(self.bits, False)[1]
            if self.zero_point.size and int(self.zero_point.max()) > zmax:
                raise ValueError(f"zero_point codes must fit in {self.bits} bits (0..{zmax}), "
                                 f"got a maximum of {int(self.zero_point.max())}")
        if self.codebook is not None:
            check_scales(self.codebook, "codebook", (np.float32,))
            if self.signed or self.bits != 4:
                raise ValueError("a codebook needs unsigned 4-bit codes (signed=False, bits=4), "
                                 f"got signed={self.signed}, bits={self.bits}")
            if self.codebook.shape != (16,):
                raise ValueError(f"codebook must be float32 (16,), got {self.codebook.dtype} {self.codebook.shape}")
        if self.double_quant is not None:  # ``scale`` is derived from it: they must agree
            if not isinstance(self.double_quant, DoubleQuant):
                raise TypeError(f"double_quant must be a DoubleQuant or None, got {type(self.double_quant).__name__}")
            rebuilt = self.double_quant.rebuild()
            if rebuilt.shape != gshape or not np.array_equal(rebuilt, self.scale.astype(np.float32)):
                raise ValueError("scale must equal double_quant.rebuild() (the scales its 8-bit codes rebuild), "
                                 f"got a scale of shape {self.scale.shape} that differs")
        _check_fp_scales(self, gshape)
        if self.perm is not None:
            n = shape[self.axis]
            p = np.asarray(self.perm)
            if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
                raise ValueError(f"perm must be a permutation of range({n}) along axis {self.axis}")
            object.__setattr__(self, "perm", p.astype(np.int64))
        for name in ("data", "scale", "zero_point", "codebook", "perm"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))

    # ----------------------------------------------------------------- views
    @property
    def size(self) -> int:
        """Number of weight elements."""
        return int(np.prod(self.shape))

    @property
    def n_groups(self) -> int:
        """Number of groups along ``axis``."""
        return int(self.scale.shape[self.axis])

    @property
    def scheme(self) -> str:
        """``"int4"``, ``"uint4"``, ``"nf4"``, ``"mxfp4"``, ``"nvfp4"``, ``"int2"``, ``"uint2"``, ``"int8"``
        or ``"uint8"``."""
        if self.fp_scales is not None:
            return self.fp_scales.scheme
        if self.codebook is not None:
            return "nf4"
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    @property
    def symmetric(self) -> bool:
        """True when there is no zero point."""
        return self.zero_point is None

    def codes(self) -> np.ndarray:
        """The logical codes, shape ``shape``: int8 when ``signed``, else uint8."""
        return unpack_codes(self.data, self.size, self.bits, self.signed).reshape(self.shape)

    def equals(self, other: Any) -> bool:
        """True when ``other`` stores exactly the same codes and metadata."""
        if not isinstance(other, QuantizedTensor):
            return False
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.dtype != b.dtype or not np.array_equal(a, b):
                    return False
            elif isinstance(a, (DoubleQuant, FloatScales)) or isinstance(b, (DoubleQuant, FloatScales)):
                if not (isinstance(a, (DoubleQuant, FloatScales)) and a.equals(b)):
                    return False
            elif a != b:
                return False
        return True

    def __repr__(self) -> str:
        extra = ", double_quant" if self.double_quant is not None else ""
        extra += ", perm" if self.perm is not None else ""
        return (
            f"QuantizedTensor({self.scheme}, shape={self.shape}, axis={self.axis}, "
            f"block_size={self.block_size}, scale={self.scale.dtype}{extra})"
        )


def _check_fp_scales(qt: QuantizedTensor, gshape: tuple[int, ...]) -> None:
    """The FP4 invariants (spec 18, 19): E2M1 codebook, no double quantization, ``scale == fp_scales.rebuild()``."""
    fp = qt.fp_scales
    if fp is None:
        return
    if not isinstance(fp, FloatScales):
        raise TypeError(f"fp_scales must be a FloatScales or None, got {type(fp).__name__}")
    if qt.codebook is None or qt.codebook.view(np.uint32).tolist() != E2M1_VALUES.view(np.uint32).tolist():
        raise ValueError("fp_scales needs codebook=E2M1_VALUES (FP4 E2M1 codes), got another codebook or none")
    if qt.double_quant is not None:
        raise ValueError("fp_scales and double_quant exclude each other, got both")
    if qt.scale.dtype != np.float32 or fp.codes.shape != gshape or not np.array_equal(fp.rebuild(), qt.scale):
        raise ValueError(f"scale must equal fp_scales.rebuild() (float32, shape {gshape}), got a scale that differs")


def check_qt(qt: Any, name: str = "qt") -> QuantizedTensor:
    """Return ``qt`` if it is a :class:`QuantizedTensor`, else raise ``TypeError`` naming ``name``."""
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"{name} must be a QuantizedTensor, got {type(qt).__name__}")
    return qt


def zero_points_of(qt: QuantizedTensor) -> np.ndarray:
    """``qt.zero_point``, or ``ValueError`` for a tensor without zero points."""
    if qt.zero_point is None:
        raise ValueError(f"qt must have zero points (uint4), got {qt.scheme} without")
    return qt.zero_point
