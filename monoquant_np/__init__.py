"""monoquant_np: a NumPy-only executable specification of INT4 weight quantization.

The core (everything exported here) imports NumPy only. ONNX export lives in
``monoquant_np.onnx`` and the conformance kit in ``monoquant_np.testing``.
The written specification is in ``spec/`` of the source tree.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dequantize import bits_per_weight, dequantize
    from .double_quant import DoubleQuant
    from .e2m1 import E2M1_VALUES
    from .fp_scales import FloatScales
    from .linear import QuantizedLinear
    from .matmul import dequant_matmul
    from .mxfp4 import quantize_mxfp4
    from .nf4 import NF4_CODEBOOK, quantize_nf4
    from .nvfp4 import quantize_nvfp4
    from .packing import pack_int4, unpack_int4
    from .quantize import quantize
    from .requantize import double_quantize
    from .serialize import load, save
    from .tensor import QuantizedTensor

#: Where each public name lives. The names are imported on first use (PEP 562), so that importing the
#: package (the command line does, before it installs its signal handlers) does not import NumPy.
_LAZY = {
    "bits_per_weight": ".dequantize",
    "dequantize": ".dequantize",
    "DoubleQuant": ".double_quant",
    "E2M1_VALUES": ".e2m1",
    "FloatScales": ".fp_scales",
    "QuantizedLinear": ".linear",
    "dequant_matmul": ".matmul",
    "quantize_mxfp4": ".mxfp4",
    "NF4_CODEBOOK": ".nf4",
    "quantize_nf4": ".nf4",
    "quantize_nvfp4": ".nvfp4",
    "pack_int4": ".packing",
    "unpack_int4": ".packing",
    "quantize": ".quantize",
    "double_quantize": ".requantize",
    "load": ".serialize",
    "save": ".serialize",
    "QuantizedTensor": ".tensor",
}


def __getattr__(name: str) -> object:
    """The public name ``name``, imported from its module on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package's module type: importing a submodule named like the public function it defines
    (``monoquant_np.quantize``, ``monoquant_np.dequantize``) keeps the function under that name, as an
    eager ``from .quantize import quantize`` would."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    # the container
    "QuantizedTensor",
    "DoubleQuant",
    # quantize / dequantize (spec 3, 6, 7)
    "quantize",
    "dequantize",
    "bits_per_weight",
    # NF4 and double quantization (spec 10, 11)
    "quantize_nf4",
    "NF4_CODEBOOK",
    "double_quantize",
    # MXFP4 and NVFP4 (spec 17, 18, 19)
    "quantize_mxfp4",
    "quantize_nvfp4",
    "E2M1_VALUES",
    "FloatScales",
    # nibble packing (spec 5)
    "pack_int4",
    "unpack_int4",
    # compute (spec 6.2)
    "dequant_matmul",
    "QuantizedLinear",
    # files (spec 8)
    "save",
    "load",
    "__version__",
]
