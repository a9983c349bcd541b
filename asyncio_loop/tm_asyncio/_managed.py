"""The shared object behind an asyncio protocol factory becomes managed (docs/MANAGED_STATE.md).

``loop.create_server(server.make_protocol, ...)`` shares ``server`` between every connection;
``functools.partial(Proto, state)`` shares ``state``; ``asyncio.start_server(server.handle)``
shares ``server`` (its protocol factory is a closure over the handler). Those objects are handed
to ``tm.manage`` so their attribute state is transactional. A class or another closure exposes no
shared object: the user manages what it captures.
"""

from __future__ import annotations

import asyncio
import functools
import inspect

import tm


def _shared_objects(protocol_factory) -> list:
    connected_cb = start_server_callback(protocol_factory)
    if connected_cb is not None:
        return _shared_objects(connected_cb)
    if inspect.ismethod(protocol_factory):
        owner = protocol_factory.__self__
        return [] if isinstance(owner, type) else [owner]
    if isinstance(protocol_factory, functools.partial):
        candidates = [*protocol_factory.args, *protocol_factory.keywords.values()]
        return [
            c
            for c in candidates
            if not (isinstance(c, type) or callable(c) or isinstance(c, _ASYNCIO_MACHINERY))
        ]
    return []


# asyncio's own objects a factory may be given (``functools.partial(Proto, loop=loop)``, as
# aiohttp's client connector and older asyncio code pass the loop): the loop keeps them safe
# itself. Managed, every attribute the loop reads of itself became a transactional read, which
# made the reading callback inevitable, and, read under the loop's lock, waited for the token
# while the token's holder waited for the lock.
_ASYNCIO_MACHINERY = (asyncio.AbstractEventLoop, asyncio.Future, asyncio.BaseTransport)


def start_server_callback(protocol_factory):
    """The client_connected_cb behind asyncio.start_server's (or start_unix_server's) protocol
    factory, a closure over it; None for any other factory. Every connection's handler is that
    callback, so what it shares (a bound method's object, a partial's arguments) is what the
    connections share."""
    code = getattr(protocol_factory, "__code__", None)
    if (
        code is None
        or getattr(protocol_factory, "__module__", None) != "asyncio.streams"
        or "client_connected_cb" not in code.co_freevars
    ):
        return None
    cell = protocol_factory.__closure__[code.co_freevars.index("client_connected_cb")]
    return cell.cell_contents


def manage_protocol_factory(protocol_factory):
    """protocol_factory, after managing the object(s) it shares between connections."""
    for shared in _shared_objects(protocol_factory):
        try:
            tm.manage(shared)
        except TypeError:
            pass  # no __dict__ to manage: it keeps its own state
    return protocol_factory


__all__ = ["manage_protocol_factory", "start_server_callback"]
