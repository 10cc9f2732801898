"""Shared pytest set-up.

Hypothesis: the machine CI runs on is shared and its speed varies, so a slow
draw must not fail a property (the properties are about values, not time:
``deadline=None`` everywhere, and the ``too_slow`` health check is off).
``HYPOTHESIS_PROFILE=ci`` additionally derandomizes the examples, for a run
that must reproduce exactly; the default profile keeps exploring.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
