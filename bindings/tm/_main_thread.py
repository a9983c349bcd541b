"""What only the main thread may do, asked for on a reactor's worker threads.

Python lets only the main thread call ``signal.signal()`` and ``signal.set_wakeup_fd()``; on any
other thread they raise ValueError. With several workers a program's callbacks and coroutines run
on worker threads while the main thread waits in ``Reactor.run()``, running its tick: a coroutine
that installs a handler with ``signal.signal()``, as asyncio programs often do at the start of
``main()``, or a Twisted callback that does, failed where the stock loops run it on the main
thread. While a reactor runs on the main thread (``route_signal_calls``), those two functions of
the ``signal`` module, called on one of its workers, run on the main thread at its tick and
return or raise there what they would have; called anywhere else, they are Python's. They are
replaced when this module is imported (with tm_asyncio's loop or tm_twisted's reactor): code that
bound Python's before (``from signal import signal``) keeps them.
"""

from __future__ import annotations

import functools
import signal
import threading
from typing import Any, Callable

# Python's functions (this module reloaded finds its own wrappers in their place).
_PYTHONS = {
    name: getattr(getattr(signal, name), "_tm_python", getattr(signal, name))
    for name in ("signal", "set_wakeup_fd")
}

# The reactors running on the main thread, newest last: (in_worker, run_on_main) each, where
# in_worker() says whether this thread is one of its workers and run_on_main(fn) runs fn() on the
# main thread. A tuple, replaced whole, so that a worker reads it without the lock.
_routes: tuple = ()
_lock = threading.Lock()


def call_on_main_thread(post: Callable[[Callable[[], None]], None], fn: Callable[[], Any]) -> Any:
    """fn() on the main thread: post(call) queues call for the main thread's tick (and wakes it);
    returns fn's result, or raises its exception, once the main thread has run it."""
    done = threading.Event()
    outcome: list = []

    def call() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as error:  # handed back to the caller
            outcome.append((False, error))
        finally:
            done.set()

    post(call)
    done.wait()
    ok, value = outcome.pop()
    if not ok:
        raise value
    return value


def _routed(name: str) -> Callable[..., Any]:
    python = _PYTHONS[name]

    @functools.wraps(python)
    def routed(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != threading.main_thread().ident:
            for in_worker, run_on_main in reversed(_routes):
                if in_worker():
                    return run_on_main(functools.partial(python, *args, **kwargs))
        return python(*args, **kwargs)

    routed._tm_python = python  # type: ignore[attr-defined]
    return routed


for _name in _PYTHONS:
    setattr(signal, _name, _routed(_name))


def route_signal_calls(
    in_worker: Callable[[], bool], run_on_main: Callable[[Callable[[], Any]], Any]
) -> Callable[[], None]:
    """From the thread about to run a reactor: while it runs, signal.signal() and
    signal.set_wakeup_fd() called on a thread where in_worker() is true go to run_on_main.
    Returns what ends it. Does nothing off the main thread, where the stock loops' callbacks could
    not make those calls either."""
    global _routes
    if threading.get_ident() != threading.main_thread().ident:
        return lambda: None
    route = (in_worker, run_on_main)
    with _lock:
        _routes = (*_routes, route)

    def end() -> None:
        global _routes
        with _lock:
            _routes = tuple(r for r in _routes if r is not route)

    return end


__all__ = ["call_on_main_thread", "route_signal_calls"]
