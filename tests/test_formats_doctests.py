"""The worked examples in the dialect and conformance-kit docstrings are tests too (spec 12)."""

import doctest
import importlib

import pytest

MODULES = ["formats._common", "formats.matmulnbits", "formats.gguf", "formats.bnb", "formats.gptq", "formats.awq",
           "testing", "testing.compare"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(f"monoquant_np.{name}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
