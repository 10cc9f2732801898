"""The worked examples in the core modules' docstrings are tests too."""

import doctest
import importlib

import pytest

CORE = ["errors", "numerics", "packing", "groups", "scales", "quantize", "matmul", "linear", "tensor",
        "double_quant", "serialize"]


@pytest.mark.parametrize("name", CORE)
def test_doctests(name):
    mod = importlib.import_module(f"monoquant_np.{name}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
