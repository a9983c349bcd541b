"""The adapters' internal API: what tm_twisted and tm_asyncio use of the engine beyond ``tm``.

This module is the contract between the ``tm`` package and the two reactor adapters
(twisted_plugin/tm_twisted, asyncio_loop/tm_asyncio): the C++ reactor, its strands, timers,
descriptor watchers and native stream transports (from the extension ``tm._core``), and the
helpers both adapters share (the settings read from the environment, the extension types made
immortal before a parallel run, tm.manage's mode). The adapters import these from here and never
from ``tm._core`` or another private module, so the engine's modules can change behind it.

It is not for users: a program uses ``tm`` (docs/PYTHON_API.md) and an adapter's public
reactor or event loop. The adapters use ``tm``'s public API (``tm.manage``, ``tm.on_commit``,
``tm.in_transaction``, ...) as any program does; only what ``tm`` does not export is here.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import tm

from tm._core import (
    FdWatcher,
    Reactor,
    Strand,
    StreamListener,
    StreamTransport,
    Timer,
    current_strand,
    monotonic,
    ready_queue_idle,
    tcp_adopt,
    tcp_adopt_listener,
    unix_adopt,
)
from tm._collect import complete_collections
from tm._environment import (
    abort_injection_from_environment,
    gil_enabled,
    one_strand_from_environment,
    workers_from_environment,
)
from tm._managed import Mode
from tm._module_patches import when_imported
from tm._shared_types import immortalize_shared_objects

__all__ = [
    # The C++ reactor (tm._core): docs/REACTOR.md.
    "FdWatcher",
    "Reactor",
    "Strand",
    "StreamListener",
    "StreamTransport",
    "Timer",
    "current_strand",
    "monotonic",
    "ready_queue_idle",
    "tcp_adopt",
    "tcp_adopt_listener",
    "unix_adopt",
    # Settings from the environment (TM_WORKERS, TM_STRANDS, TM_ABORT_INJECTION, ...).
    "abort_injection_from_environment",
    "gil_enabled",
    "one_strand_from_environment",
    "workers_from_environment",
    # tm.manage's mode argument ("full" or "containers").
    "Mode",
    # Extension types and immutable values made immortal before a parallel run (CPython 3.13t).
    "immortalize_shared_objects",
    # gc.collect() in a callback frees what it found dead before it returns (CPython 3.13t).
    "complete_collections",
    # Python run by one thread with no callback of the reactor running.
    "exclusive",
    # A framework's class whose instances connections share: managed as they are made.
    "manage_at_construction",
    # A patch to a framework's module, applied now or once the module is imported.
    "when_imported",
]

# How long exclusive() waits for the callbacks running before it serves the calls they may be
# waiting for; such a call is rare (signal.signal() from a worker), a wait for one this long.
_EXCLUSIVE_SERVE_INTERVAL = 0.002


@contextlib.contextmanager
def exclusive(reactor: Reactor, serve: Callable[[], None]) -> Iterator[None]:
    """The block runs with no callback of reactor running: callbacks that arrive meanwhile wait,
    those already running finish first. For the thread that called run() (several workers),
    outside any callback. While it waits, serve() runs what that thread owes the callbacks
    running, which may be waiting for it (calls they made on the main thread)."""
    # Nested in this thread's own section (run()'s tick, served while run() waits to run SIGINT's
    # handlers alone): wait for the callbacks running too, but leave the gate to the outer one.
    nested = reactor.in_exclusive()
    if not nested:
        reactor.begin_exclusive()
    try:
        while not reactor.wait_exclusive(_EXCLUSIVE_SERVE_INTERVAL):
            serve()
        yield
    finally:
        if not nested:
            reactor.end_exclusive()


def manage_at_construction(cls: type, when: Callable[[object], bool] | None = None) -> None:
    """Replaces cls.__init__ so that each instance is handed to tm.manage as its __init__
    returns (if when(instance) is true, with when given): for a framework's classes whose
    instances the connections of a server share (a queue, a lock, a chat channel)."""
    original = cls.__init__  # type: ignore[misc]  # wrapping the class's own __init__ is the point

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if when is None or when(self):
            tm.manage(self)

    cls.__init__ = __init__  # type: ignore[misc]
