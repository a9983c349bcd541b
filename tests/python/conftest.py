"""Fixtures shared by the Python tests."""

import pytest

import tm


@pytest.fixture
def race_report():
    """Turns tm's race reporter on for one test, starting from no reports, and off afterwards.

    Skips where the reporter cannot exist (no dict watchers before CPython 3.12)."""
    if not tm.race_report_available():
        pytest.skip("the race reporter needs dict watchers (CPython 3.12+)")
    tm.set_race_report(True)
    tm.reset_race_reports()
    try:
        yield tm.race_reports
    finally:
        tm.set_race_report(False)
        tm.reset_race_reports()
