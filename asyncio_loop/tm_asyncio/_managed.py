"""The shared object behind an asyncio protocol factory becomes managed (docs/MANAGED_STATE.md).

``loop.create_server(server.make_protocol, ...)`` shares ``server`` between every connection;
``functools.partial(Proto, state)`` shares ``state``. Those objects are handed to ``tm.manage`` so
their attribute state is transactional. A class or a closure exposes no shared object: the user
manages what it captures.
"""

from __future__ import annotations

import functools
import inspect

import tm


def _shared_objects(protocol_factory) -> list:
    if inspect.ismethod(protocol_factory):
        owner = protocol_factory.__self__
        return [] if isinstance(owner, type) else [owner]
    if isinstance(protocol_factory, functools.partial):
        candidates = [*protocol_factory.args, *protocol_factory.keywords.values()]
        return [c for c in candidates if not (isinstance(c, type) or callable(c))]
    return []


def manage_protocol_factory(protocol_factory):
    """protocol_factory, after managing the object(s) it shares between connections."""
    for shared in _shared_objects(protocol_factory):
        try:
            tm.manage(shared)
        except TypeError:
            pass  # no __dict__ to manage: it keeps its own state
    return protocol_factory


__all__ = ["manage_protocol_factory"]
