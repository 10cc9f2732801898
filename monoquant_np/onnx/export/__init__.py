"""``QuantizedTensor`` -> ONNX: initializers, weight subgraphs, contrib-op nodes, whole models (spec 9-11).

Modules, each importing only those above it:

* :mod:`.constants`: ``OPSET``, ``IR_VERSION``, ``MS_DOMAIN`` (spec 9)
* :mod:`.initializers`: ``tensor_to_onnx`` / ``tensor_from_onnx`` (spec 9.1)
* :mod:`.dequantize_linear`: the ``DequantizeLinear`` and ``Cast`` node builders (spec 9.2-9.3)
* :mod:`.double_quant_subgraph`: double-quantized scales rebuilt in the graph (spec 11.4)
* :mod:`.nf4_subgraph`: NF4 codes through a codebook ``Gather`` (spec 10.6)
* :mod:`.matmulnbits_node`: ``com.microsoft.MatMulNBits`` from the dialect's bytes (spec 9.4, 12.1)
* :mod:`.matmulbnb4_node`: ``com.microsoft.MatMulBnb4`` for NF4 (spec 10.6)
* :mod:`.qdq`: ``weight_subgraph``, the one entry point for a weight as a float tensor (spec 9.2)
* :mod:`.models`: ``linear_model``, ``mlp_model``, ``nf4_linear_model``
"""
