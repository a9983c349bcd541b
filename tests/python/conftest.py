"""Fixtures shared by the Python tests."""

import asyncio

import pytest

import tm
import tm_asyncio

# The loops a test of asyncio behaviour runs on (the `each_loop` fixture): asyncio's default
# loop, and tm_asyncio's with one worker, two workers one at a time, and in parallel mode (where
# a client connection made from the loop's strand keeps asyncio's transport there).
LOOP_FACTORIES = {
    "default": asyncio.new_event_loop,
    "tm-1-worker": lambda: tm_asyncio.EventLoop(workers=1),
    "tm-2-workers": lambda: tm_asyncio.EventLoop(workers=2, parallel=False),
    "tm-parallel": lambda: tm_asyncio.EventLoop(workers=2, parallel=True),
}


@pytest.fixture(params=list(LOOP_FACTORIES))
def each_loop(request):
    """A new loop of each kind in LOOP_FACTORIES, closed after the test."""
    loop = LOOP_FACTORIES[request.param]()
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "no_race_check: the test turns the race reporter on and off itself, or shares plain state"
        " between strands on purpose",
    )


@pytest.fixture(autouse=True)
def _no_race_between_strands(request):
    """Every test runs with the race reporter on, where it exists, and fails if callbacks of two
    strands mutated the same plain state (docs/MANAGED_STATE.md "Race reports"): the suite's
    own programs must use managed state where they share it. Tests of the reporter itself (they
    use the race_report fixture) and tests marked no_race_check are exempt."""
    exempt = "race_report" in request.fixturenames or request.node.get_closest_marker(
        "no_race_check"
    )
    if exempt or not tm.race_report_available() or tm.race_report_enabled():
        yield
        return
    tm.reset_race_reports()
    tm.set_race_report(True)
    try:
        yield
        reports = tm.race_reports()
    finally:
        tm.set_race_report(False)
        tm.reset_race_reports()
    assert not reports, "unmanaged state mutated by two strands:\n" + "\n\n".join(map(str, reports))
