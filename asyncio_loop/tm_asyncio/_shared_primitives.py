"""asyncio's synchronization primitives made on a parallel loop are managed at construction.

``asyncio.Queue``, ``Event``, ``Lock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore`` and
``Barrier`` are how tasks coordinate: one made in ``main()`` is used by the handlers of every
connection, which in parallel mode run on their connections' strands at once, and by the loop
strand's tasks. Their state is plain Python (a deque of items, the waiters' futures, a counter)
changed by code that checks and then acts, written for one thread: a server whose handlers put
what they read into one ``asyncio.Queue`` that a task of the loop's strand fans out lost items
and wake-ups with 2 workers on 3.13t (a ``queue.join()`` that never returned, a server that did
not stop; tests/python/test_asyncio_parallel.py).

An instance made while a parallel tm_asyncio loop is the running loop is handed to ``tm.manage``
when its ``__init__`` returns: a step that touches it becomes inevitable there (DESIGN.md section
4), so the steps that use one primitive run one at a time, as on asyncio's one thread. Instances
made outside a running parallel loop (at import, before ``asyncio.run``) stay plain, and so do
``PriorityQueue`` and ``LifoQueue`` (_list_backed).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from tm import _reactor
from tm_asyncio._compat import _get_running_loop

_PRIMITIVES: tuple[type, ...] = tuple(
    cls
    for cls in (
        asyncio.Queue,
        asyncio.Event,
        asyncio.Lock,
        asyncio.Condition,
        asyncio.Semaphore,
        asyncio.Barrier if hasattr(asyncio, "Barrier") else None,  # 3.11+
    )
    if cls is not None
)

_lock = threading.Lock()
_installed = False


def install(manages: Callable[[object], bool]) -> None:
    """Patches the primitives' __init__ (once): an instance is managed when manages(the running
    loop) is true."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True

    def made_on_a_managing_loop(primitive) -> bool:
        loop = _get_running_loop()
        return loop is not None and manages(loop) and not _list_backed(primitive)

    for cls in _PRIMITIVES:
        _reactor.manage_at_construction(cls, made_on_a_managing_loop)


def _list_backed(primitive) -> bool:
    """A PriorityQueue or LifoQueue: its items are a list, which managing would make a tm.List,
    and heapq takes lists only. Left plain (docs/ASYNCIO.md)."""
    items = getattr(primitive, "_queue", None)  # Queue._init's (tm_asyncio._compat)
    return isinstance(primitive, asyncio.Queue) and type(items) is list


__all__ = ["install"]
