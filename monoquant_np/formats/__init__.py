"""Other backends' storage dialects, encoded from and decoded to ``QuantizedTensor`` (spec section 12).

One module per dialect; each encodes the canonical :class:`~monoquant_np.QuantizedTensor`
into the backend's own tensors and decodes them back exactly, or raises
``ValueError`` saying why a tensor is not representable. NumPy only.

* :mod:`.matmulnbits`: onnxruntime ``MatMulNBits``, its block sizes and its DEFAULT quantizer (12.1)
* :mod:`.gguf`: GGUF ``Q4_0``, ``Q4_1``, ``Q8_0``, byte-identical to gguf-py (12.2)
* :mod:`.bnb`: bitsandbytes NF4 (12.3)
* :mod:`.autogptq`: AutoGPTQ ``qweight``/``qzeros``/``scales``/``g_idx`` (12.4)
* :mod:`.autoawq`: AutoAWQ ``WQLinear_GEMM`` (12.5)
"""

from .autoawq import AWQ_ORDER, awq_decode, awq_encode
from .autogptq import GPTQ_FORMATS, gptq_decode, gptq_encode
from .bnb import bnb_nf4_pack, bnb_nf4_unpack
from .gguf import (
    q4_0_decode,
    q4_0_dequantize,
    q4_0_encode,
    q4_0_quantize,
    q4_1_decode,
    q4_1_dequantize,
    q4_1_encode,
    q4_1_quantize,
    q8_0_decode,
    q8_0_dequantize,
    q8_0_encode,
    q8_0_quantize,
)
from .matmulnbits import (
    is_block_size,
    matmulnbits_block_size,
    matmulnbits_pack,
    matmulnbits_unpack,
    ort_default_quantize,
)
from .orientation import transpose

__all__ = [
    # layout helper
    "transpose",
    # onnxruntime MatMulNBits (12.1)
    "matmulnbits_pack",
    "matmulnbits_unpack",
    "matmulnbits_block_size",
    "is_block_size",
    "ort_default_quantize",
    # GGUF (12.2)
    "q4_0_quantize",
    "q4_0_dequantize",
    "q4_0_decode",
    "q4_0_encode",
    "q4_1_quantize",
    "q4_1_dequantize",
    "q4_1_decode",
    "q4_1_encode",
    "q8_0_quantize",
    "q8_0_dequantize",
    "q8_0_decode",
    "q8_0_encode",
    # bitsandbytes (12.3)
    "bnb_nf4_pack",
    "bnb_nf4_unpack",
    # GPTQ (12.4) and AWQ (12.5)
    "gptq_decode",
    "gptq_encode",
    "GPTQ_FORMATS",
    "awq_decode",
    "awq_encode",
    "AWQ_ORDER",
]
