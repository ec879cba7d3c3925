"""Hypothesis profiles: `ci` (make test: fixed seed, bounded) and `long` (make test-property-long).

FMS_HYPOTHESIS_PROFILE picks one; `ci` is the default. The `ci` profile derandomizes the
search, so every run of `make test` tries the same examples and a failure reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, **COMMON)
settings.register_profile("long", derandomize=False, **COMMON)
PROFILE = os.environ.get("FMS_HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
# multiplier of the examples each property tries (make test: 1; the long search: 30)
EXAMPLES = {"ci": 1, "long": 30}[PROFILE]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    os.environ["TZ"] = "UTC"
    from fms_jobs.sparkutil.session import build_session

    s = build_session("fms-property", "local[2]", local_test=True)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def rules() -> Any:
    from fms_jobs.quality.rulebook import load_rules

    return load_rules()
