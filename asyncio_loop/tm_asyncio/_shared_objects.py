"""Frameworks whose per-connection objects every handler touches: in parallel mode their
connections' callbacks and tasks hold the loop lock.

In parallel mode each connection's callbacks and handler task run on the connection's strand,
and a framework's per-connection object is safe as long as only that strand touches it. The
websockets library hands its connections to every handler: `broadcast(connections, message)`,
the way its documentation writes a chat, queues a frame in the sans-I/O `Protocol` of every
connection and sends what each one has queued, from the broadcasting handler's strand, while
each connection's own strand parses frames and queues its own replies in the same object. Its
`data_to_send()` takes the queued frames and puts an empty list in their place, so a frame
queued in between was lost: a chat of 16 clients x 200 messages on 2 workers on 3.13t delivered
3,189 to 3,198 of the 3,200 messages each client should have seen, in 2 runs of 2. And the
collection a program keeps its connections in is its own plain state: with clients joining and
leaving while others broadcast, the chat's module-level `set` changed size under `broadcast()`'s
iteration (RuntimeError, the connection closed with 1011) in 2 runs of 2
(tests/python/test_asyncio_differential.py).

So a connection whose protocol is one of the classes listed here runs as one made by a locked
step (tm_asyncio._tasks.in_locked_step): its callbacks, the handler task its `connection_made`
starts and every task that task starts take the loop lock and run inevitable from their start,
one at a time, in the order asyncio's one thread would have run them. Such a server is correct
at several workers, and runs its WebSocket work one step at a time.
"""

from __future__ import annotations

import functools
import types

from tm._shared_variables import closure_contents

# module -> the protocol classes of it whose connections every handler may touch
LOCKED_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "websockets.asyncio.connection": ("Connection",),
    # the implementation before websockets 14, deprecated and still shipped: its broadcast()
    # writes every connection's frames from the sending handler
    "websockets.legacy.protocol": ("WebSocketCommonProtocol",),
    # uvicorn's WebSocket protocols (its legacy `ws="websockets"` one is the class above): an
    # ASGI application's handlers send to each other's connections through them
    "uvicorn.protocols.websockets.websockets_sansio_impl": ("WebSocketsSansIOProtocol",),
    "uvicorn.protocols.websockets.wsproto_impl": ("WSProtocol",),
}


def runs_locked(protocol) -> bool:
    """Whether protocol is (a subclass of) one of LOCKED_PROTOCOLS."""
    return _is_locked_class(type(protocol))


def makes_locked_protocols(protocol_factory) -> bool:
    """Whether protocol_factory is such a class, a functools.partial of one (websockets' legacy
    serve()) or a function that closes over one (websockets' serve(): its factory makes the
    connection class it was given): its connections' handlers run one step at a time already,
    so that what they share needs no other fallback (tm_asyncio._rebinding)."""
    while isinstance(protocol_factory, functools.partial):
        protocol_factory = protocol_factory.func
    if isinstance(protocol_factory, types.FunctionType):
        return any(
            isinstance(contents, type) and _is_locked_class(contents)
            for contents in closure_contents(protocol_factory)
        )
    return isinstance(protocol_factory, type) and _is_locked_class(protocol_factory)


def _is_locked_class(cls: type) -> bool:
    return any(
        base.__qualname__ in LOCKED_PROTOCOLS.get(base.__module__, ()) for base in cls.__mro__
    )


__all__ = ["LOCKED_PROTOCOLS", "makes_locked_protocols", "runs_locked"]
