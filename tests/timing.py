"""Deadlines for tests that wait on real processes and services, scaled for a loaded machine.

Every wait in the suite polls a condition until a deadline; the deadline is the time the
condition needs on an idle machine times ``TIME_FACTOR``: ``MARKET_TEST_TIME_FACTOR`` when set,
else 3 under CI (the CI machine is shared with other work) and 1 on a developer's machine.
A condition that holds early ends the wait early, so a large factor costs nothing when green.
"""

from __future__ import annotations

import os


def _time_factor() -> float:
    configured = os.environ.get("MARKET_TEST_TIME_FACTOR", "").strip()
    if configured:
        factor = float(configured)
        if factor <= 0:
            raise ValueError(f"MARKET_TEST_TIME_FACTOR must be positive, not {configured!r}")
        return factor
    return 3.0 if os.environ.get("CI") else 1.0


TIME_FACTOR = _time_factor()


def scaled(seconds: float) -> float:
    """``seconds`` (enough on an idle machine) stretched by the run's time factor."""
    return seconds * TIME_FACTOR
