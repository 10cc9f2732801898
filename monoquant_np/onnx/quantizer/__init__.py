"""The model quantizer: a float ONNX model to its 4-bit twin (spec chapter 13).

``pipeline`` (``quantize_model``), ``sites`` (13.1), ``rewrite`` (13.2),
``algorithm`` and ``registry`` (13.3), ``opset`` (13.4), ``report`` (13.5).
"""
