"""Calibration through onnxruntime and the calibrated algorithms of the model quantizer (spec section 14.4).

``capture`` (activation statistics), ``stages`` (sequential calibration),
``adapters`` (``mse``, ``gptq``, ``awq``), ``awq_multipliers`` (spec 14.3),
``corpus`` (calibration sentences, spec 13.10).
"""
