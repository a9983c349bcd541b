"""Classes of asyncio frameworks whose instances the connections of a server share, managed when
they are made on a parallel loop.

In parallel mode each connection's callbacks and handler task run on the connection's strand,
and a framework's per-connection object is safe as long as only that strand touches it. Some
frameworks hand their per-connection objects to every handler: the websockets library's
`broadcast(connections, message)`, the way its documentation writes a chat, queues a frame in
the sans-I/O `Protocol` of every connection and sends what each one has queued, from the
broadcasting handler's strand, while each connection's own strand parses frames and queues its
own replies in the same object. Its `data_to_send()` takes the queued frames and puts an empty
list in their place, so a frame queued in between was lost: a chat of 16 clients x 200 messages
on 2 workers on 3.13t delivered 3,189 to 3,198 of the 3,200 messages each client should have
seen, in 2 runs of 2 (tests/python/test_asyncio_differential.py).

An instance of a class listed here made while a parallel tm_asyncio loop runs is handed to
`tm.manage` when its `__init__` returns, as asyncio's primitives are
(tm_asyncio._shared_primitives): its attributes become transactional and its lists tm lists, so
a step that touches it becomes inevitable there and the steps using such objects run one at a
time, as on asyncio's one thread. For websockets that is every step of every connection's
handler: such a server is correct at several workers, and runs its WebSocket work one step at
a time. The modules are patched when the loop is made if they are imported, else when they are.
"""

from __future__ import annotations

from typing import Callable

from tm import _reactor
from tm_asyncio._compat import _get_running_loop

# module -> the classes of it whose instances connections share.
SHARED_CLASSES: dict[str, tuple[str, ...]] = {
    "websockets.protocol": ("Protocol",),
}


def install(manages: Callable[[object], bool]) -> None:
    """Patches the listed classes (once, now or when their module is imported): an instance is
    managed when manages(the running loop) is true."""
    _reactor.when_imported(sorted(SHARED_CLASSES), _patch_managing_when(manages))


_patches: dict[Callable[[object], bool], Callable] = {}


def _patch_managing_when(manages: Callable[[object], bool]) -> Callable:
    # One patch per rule, so that a second loop's install() finds it asked for already.
    patch = _patches.get(manages)
    if patch is None:

        def made_on_a_managing_loop(instance) -> bool:
            loop = _get_running_loop()
            return loop is not None and manages(loop)

        def patch(module) -> None:
            for name in SHARED_CLASSES.get(module.__name__, ()):
                cls = getattr(module, name, None)
                if isinstance(cls, type):
                    _reactor.manage_at_construction(cls, made_on_a_managing_loop)

        patch = _patches.setdefault(manages, patch)
    return patch


__all__ = ["SHARED_CLASSES", "install"]
