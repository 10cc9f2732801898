"""The worked examples in the package's docstrings are tests too (STYLE habit 2).

Every module of ``monoquant_np`` whose source holds a ``>>>`` example is
found by walking the package, so a new module's examples run without being
listed here; each such module must run at least one example and fail none.
"""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import monoquant_np

ROOT = Path(monoquant_np.__file__).parent


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(ROOT)], prefix="monoquant_np."):
        rel = info.name.split(".")[1:]
        path = ROOT.joinpath(*rel, "__init__.py") if info.ispkg else ROOT.joinpath(*rel[:-1], rel[-1] + ".py")
        if ">>>" in path.read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_walk_finds_the_modules_of_every_layer():
    # core, NF4, the dialects, the algorithms, the ONNX layer and the conformance kit
    for name in ("monoquant_np.packing", "monoquant_np.nf4", "monoquant_np.formats.gguf", "monoquant_np.algorithms.mse",
                 "monoquant_np.onnx.quantizer.report", "monoquant_np.testing.compare"):
        assert name in MODULES, name


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, (name, result)
