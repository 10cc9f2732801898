"""The model quantizer's algorithms by name (spec sections 13.3 and 14).

One explicit table: the names and whether each needs calibration inputs are
:data:`monoquant_np.onnx.options.ALGORITHMS`; the algorithms are the built-in
:func:`~monoquant_np.onnx.quantizer.algorithm.rtn_algorithm` and the
calibration adapters :func:`~monoquant_np.onnx.calibration.adapters.mse_algorithm`,
:func:`~monoquant_np.onnx.calibration.adapters.gptq_algorithm` and
:func:`~monoquant_np.onnx.calibration.adapters.awq_algorithm`, each with its
default settings. :func:`register_algorithm` adds a user's :class:`Algorithm`
under its name; :func:`get_algorithm` resolves what ``quantize_model(algorithm=...)``
receives.

    >>> [(a.name, a.needs_calibration) for a in map(get_algorithm, ("rtn", "gptq"))]
    [('rtn', False), ('gptq', True)]
"""

from __future__ import annotations

from collections.abc import Callable

from ..calibration.adapters import awq_algorithm, gptq_algorithm, mse_algorithm
from ..options import ALGORITHMS
from .algorithm import Algorithm, rtn_algorithm

__all__ = ["register_algorithm", "get_algorithm"]

_BUILT_IN: dict[str, Callable[[], Algorithm]] = {
    "rtn": rtn_algorithm, "mse": mse_algorithm, "gptq": gptq_algorithm, "awq": awq_algorithm,
}

#: Name -> algorithm: the built-in ones of ``options.ALGORITHMS``, then those :func:`register_algorithm` adds.
_TABLE: dict[str, Algorithm] = {name: _BUILT_IN[name]() for name in ALGORITHMS}


def register_algorithm(algorithm: Algorithm) -> None:
    """Make ``algorithm`` available by name to :func:`quantize_model` (replacing one of the same name)."""
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"algorithm must be an Algorithm, got {type(algorithm).__name__}")
    _TABLE[algorithm.name] = algorithm


def get_algorithm(algorithm: str | Algorithm | Callable) -> Algorithm:
    """Resolve ``algorithm`` (a name, an :class:`Algorithm` or a callable ``f(ctx) -> QuantizedTensor``)."""
    if isinstance(algorithm, Algorithm):
        return algorithm
    if callable(algorithm):
        return Algorithm(getattr(algorithm, "__name__", "custom"), algorithm)
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a name or a callable, got {type(algorithm).__name__}")
    if algorithm not in _TABLE:
        raise ValueError(f"algorithm must be one of {', '.join(sorted(_TABLE))}, got {algorithm!r}")
    return _TABLE[algorithm]
