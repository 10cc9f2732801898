"""monoquant_np: a NumPy-only executable specification of INT4 weight quantization.

The core (everything exported here) imports NumPy only. ONNX export lives in
``monoquant_np.onnx`` and the conformance kit in ``monoquant_np.testing``.
The written specification is in ``spec/`` of the source tree.
"""

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
