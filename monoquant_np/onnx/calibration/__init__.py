"""Calibration through onnxruntime and the calibrated algorithms of the model quantizer (spec section 14.4).

``capture`` (activation statistics), ``stages`` (sequential calibration),
``layers`` (the weights with statistics), ``adapters`` (``mse``, ``gptq``, ``awq``) with their hooks
``mse_adapter`` and ``gptq_awq``, ``awq_multipliers`` (spec 14.3),
``corpus`` (calibration sentences, spec 13.10).
"""
