"""Shared pytest set-up: hypothesis profiles and the ``gen_llm`` fixture (tools/gen_llm.py).

Hypothesis: the machine CI runs on is shared and its speed varies, so a slow
draw must not fail a property (the properties are about values, not time:
``deadline=None`` everywhere, and the ``too_slow`` health check is off).
``HYPOTHESIS_PROFILE=ci`` additionally derandomizes the examples, for a run
that must reproduce exactly; the default profile keeps exploring.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def gen_llm():
    """``tools/gen_llm.py`` (LLM-shaped decoder models) as a module: ``gen_llm.generate(path, gen_llm.config(...))``."""
    if "gen_llm" in sys.modules:
        return sys.modules["gen_llm"]
    path = Path(__file__).resolve().parents[1] / "tools" / "gen_llm.py"
    spec = importlib.util.spec_from_file_location("gen_llm", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_llm"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod
