"""Both adapters pick their worker count by one rule: TM_WORKERS when set (0: one per core);
unset, one worker per core where callbacks can run in parallel (a free-threaded interpreter) and
one under the GIL, which would serialize them anyway."""

import os
import sys

import pytest
import tm_asyncio
from tm_twisted import TMReactor

ONE_PER_CORE = os.cpu_count() or 1


def expected_default():
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return 1 if gil else ONE_PER_CORE


@pytest.fixture(autouse=True)
def _no_worker_setting(monkeypatch):
    monkeypatch.delenv("TM_WORKERS", raising=False)


def test_the_twisted_reactor_and_the_asyncio_loop_default_alike():
    loop = tm_asyncio.new_event_loop()
    try:
        assert loop.workers == expected_default()
    finally:
        loop.close()
    assert TMReactor().workers == expected_default()


@pytest.mark.parametrize("setting, workers", [("1", 1), ("2", 2), ("0", ONE_PER_CORE)])
def test_tm_workers_decides_for_both(monkeypatch, setting, workers):
    monkeypatch.setenv("TM_WORKERS", setting)
    loop = tm_asyncio.new_event_loop()
    try:
        assert loop.workers == workers
    finally:
        loop.close()
    assert TMReactor().workers == workers
