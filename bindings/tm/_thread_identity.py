"""A reactor's worker threads present themselves as the thread that called ``run()``.

The stock loops run every callback on the thread that runs the loop, so a callback's
``threading.current_thread()`` is that thread (``MainThread`` for ``asyncio.run()`` or
``twistd``): logging's ``%(threadName)s``, ``current_thread() is main_thread()`` checks, Twisted's
``isInIOThread()``. With several workers, callbacks run on the reactor's own threads, which Python
would show as ``Dummy-N`` threads. Each worker, before its first callback, enters that thread's
``Thread`` object under its own identifier in ``threading``'s table of running threads, and takes
it out again when it ends (the bindings call ``adopt`` and ``release``).

What this cannot change: ``threading.get_ident()`` and ``get_native_id()`` stay the worker's own;
a ``threading.local`` holds a value per worker; and ``threading.enumerate()`` lists the loop's
thread once for itself and once for each worker.
"""

from __future__ import annotations

import threading

# A private table of the threading module (identifier -> Thread), read by current_thread() and
# guarded by _active_limbo_lock; it has the same name and meaning from 3.8 through 3.14.
_running = threading._active  # type: ignore[attr-defined]
_running_lock = threading._active_limbo_lock  # type: ignore[attr-defined]


def adopt(thread: threading.Thread) -> None:
    """Makes ``threading.current_thread()`` on this (worker) thread return ``thread``."""
    with _running_lock:
        _running[threading.get_ident()] = thread


def release(thread: threading.Thread) -> None:
    """Undoes ``adopt(thread)`` on this thread, as it ends (its identifier may be reused)."""
    ident = threading.get_ident()
    with _running_lock:
        if _running.get(ident) is thread:
            del _running[ident]


__all__ = ["adopt", "release"]
