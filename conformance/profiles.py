"""Hypothesis profiles (`dev`, `ci`, `mutation`), registered by the plugin;
HYPOTHESIS_PROFILE picks one (default `ci` under CI, else `dev`). The
strategies themselves are in conformance/strategies.py."""
from __future__ import annotations

import os


def register_profiles():
    try:
        from hypothesis import HealthCheck, Phase, settings
    except ImportError:
        return
    settings.register_profile("dev", deadline=None, max_examples=25,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    # the mutation meta-test (conformance/mutants/runner.py): `ci` without
    # shrinking, since one failing example is all a mutant run needs
    settings.register_profile("mutation", parent=settings.get_profile("ci"),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile(hypothesis_profile())


def hypothesis_profile() -> str:
    return os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
