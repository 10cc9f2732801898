"""Calibration through onnxruntime and the calibrated algorithms of the model quantizer (spec sections 14.4, 14.5).

``partition`` (cutting a model into stages of bounded weights) and ``staged``
(running it stage by stage, also for ``verify``), ``capture`` (activation statistics),
``stages`` (which activations in which stage, sequential calibration),
``layers`` (the weights with statistics), ``adapters`` (``mse``, ``gptq``, ``awq``) with their hooks
``mse_adapter`` and ``gptq_awq``, ``awq_multipliers`` (spec 14.3),
``corpus`` (calibration sentences, spec 13.10).
"""
