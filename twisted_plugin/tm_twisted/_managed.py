"""The factories TMReactor is given become managed objects (docs/MANAGED_STATE.md).

A protocol factory is the state an unmodified Twisted server shares between its connections
(``self.factory.clients``, ``self.factory.count += 1``). TMReactor hands every factory it is
given to ``tm.manage`` before Twisted sees it, so that state is transactional when callbacks of
different connections run at once.
"""

from __future__ import annotations

import tm
from tm import _reactor

# Factories whose attributes are read by every request and written only at start-up: a
# transactional read would make each request inevitable (one at a time), so only the containers
# they hold are made transactional. twisted.web's Site (an HTTPFactory) is one: its request path
# reads site.resource and site.displayTracebacks; its shared mutable state is the sessions dict.
_CONTAINERS_ONLY = frozenset({("twisted.web.http", "HTTPFactory")})


def _mode_for(factory: object) -> _reactor.Mode:
    for cls in type(factory).__mro__:
        if (cls.__module__, cls.__qualname__) in _CONTAINERS_ONLY:
            return "containers"
    return "full"


def manage_factory(factory):
    """factory, managed (with the factory it wraps, for WrappingFactory and TLS)."""
    try:
        wrapped = factory.wrappedFactory
    except AttributeError:
        pass
    else:
        manage_factory(wrapped)
    try:
        return tm.manage(factory, _mode_for(factory))
    except TypeError:
        return factory  # no __dict__ to manage: it keeps its own state (docs/MANAGED_STATE.md)


__all__ = ["manage_factory"]
