"""What the differential tests share (test_twisted_differential.py, test_asyncio_differential.py):
children started with the default signal dispositions and an environment of their own,
concurrent clients on threads, and each runtime's outcome computed once per test session."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable

import tm
import tm_asyncio

CLIENTS_TIMEOUT = 120  # how long run_threads waits for its clients, all together


def default_signals() -> None:
    """A child's preexec_fn: SIGINT and SIGTERM at their default dispositions. A test runner
    started in the background has SIGINT ignored and a child inherits that; twistd installs its
    SIGINT handler only where the disposition is the default, and the asyncio programs stop on
    SIGTERM, which must not be ignored either."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def child_environment(workers: str, parallel: bool = False) -> dict[str, str]:
    """This process's environment with tm and tm_asyncio importable as here (the overlay in
    development), no TM_* setting but TM_WORKERS (and TM_ASYNCIO_PARALLEL=1 if `parallel`), and
    no asyncio debug mode."""
    paths = [
        str(pathlib.Path(tm.__file__).parents[1]),
        str(pathlib.Path(tm_asyncio.__file__).parents[1]),
    ]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TM_") and k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")
    }
    env.update(PYTHONPATH=os.pathsep.join(paths), TM_WORKERS=workers)
    if parallel:
        env["TM_ASYNCIO_PARALLEL"] = "1"
    return env


def run_threads(target: Callable[..., Any], count: int, *args: Any) -> list:
    """Runs target(index, *args) on `count` threads at once; their results in index order."""
    results: list = [None] * count
    errors: list = []

    def body(i: int) -> None:
        try:
            results[i] = target(i, *args)
        except BaseException as e:  # reported below, with the client's index
            errors.append((i, e))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLIENTS_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a client is stuck"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"client {i}: {e!r} ({len(errors)} clients failed)") from e
    return results


class Outcomes:
    """Runs a scenario once per runtime and test session (the stock runtime's run, epoll's or the
    default asyncio loop's, is the reference of the tm runs) and remembers what the clients
    observed."""

    def __init__(self, scenario: Callable[[str], Any]) -> None:
        self._scenario = scenario
        self._seen: dict[str, object] = {}

    def __call__(self, runtime: str) -> Any:
        if runtime not in self._seen:
            started = time.monotonic()
            self._seen[runtime] = self._scenario(runtime)
            print(f"{runtime}: {time.monotonic() - started:.1f} s")
        return self._seen[runtime]
