"""Shared fixtures and Hypothesis profiles for the property tests (see :mod:`strategies`).

Profiles: ``default`` (fast), ``ci`` (loaded by Hypothesis itself when ``CI`` is set; derandomised) and
``thorough`` (``HYPOTHESIS_PROFILE=thorough``, or ``make thorough``).
"""

from __future__ import annotations

from typing import Any

import strategies
from strategies import xp  # noqa: F401  (the shared backend fixture)

PROFILE = strategies.register_profiles()


def pytest_report_header(config: Any) -> str:
    return f"hypothesis profile: {PROFILE} (HYPOTHESIS_PROFILE selects default, ci or thorough)"

