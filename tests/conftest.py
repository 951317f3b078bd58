"""Fixtures for the unit tests: the ``xp`` backend fixture and the Hypothesis profiles shared with
``properties/`` (both come from ``properties/strategies.py``, the one place they are defined)."""

from __future__ import annotations

import sys
from pathlib import Path

# properties/ is not a package; put it on the path the way pytest does for its own conftest, so that
# `pytest tests` alone still finds the shared helpers.
_PROPERTIES = str(Path(__file__).resolve().parents[1] / "properties")
if _PROPERTIES not in sys.path:
    sys.path.insert(0, _PROPERTIES)

import strategies  # noqa: E402
from strategies import xp  # noqa: E402,F401  (the shared backend fixture)

strategies.register_profiles()

