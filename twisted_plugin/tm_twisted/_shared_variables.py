"""Listening factories whose protocols rebind or change a variable every connection shares.

A protocol that keeps its clients in a module-level set (added in connectionMade, discarded in
connectionLost, iterated in lineReceived to broadcast) or counts in a module global is correct on
epoll, which runs one callback at a time. With several workers on a free-threaded interpreter
each connection runs on its own strand: one connection's add() ran beside another's iteration
(``RuntimeError: Set changed size during iteration``, the connection dropped), and ``hits += 1``
loses updates. State on the factory is managed (docs/MANAGED_STATE.md); module globals are not.
So the reactor reads the code of a listening factory's class and of its protocol class, and
follows the factory's objects to the program's code they hold (a Site's resources, whose
render_GET counting in module globals lost updates: tm._shared_variables) when it listens, and a
factory found to rebind, or to change in place and read, such a variable gets connections whose
callbacks are inevitable from their start: they run one at a time, as on epoll, while other
factories' connections stay parallel, and so do the delayed calls those callbacks make. A
RuntimeWarning names the variable and where it is changed.
"""

from __future__ import annotations

import warnings

from tm import _reactor
from tm._shared_variables import shared_rebindings


def serves_one_at_a_time(factory, reactor) -> bool:
    """Whether the connections factory accepts on reactor must run their callbacks one at a time
    (said with a RuntimeWarning when so)."""
    if reactor.workers <= 1 or reactor._core.one_strand or _reactor.gil_enabled():
        return False
    found = shared_rebindings(factory, *_code_behind(factory))
    if not found:
        return False
    warnings.warn(
        f"tm_twisted: the protocol of {factory!r} rebinds or changes {', '.join(found)}, which "
        "every connection shares: its connections' callbacks run one at a time, not in parallel "
        "(keep it on the factory or in a tm type, docs/MANAGED_STATE.md)",
        RuntimeWarning,
        stacklevel=5,  # listenTCP's caller
    )
    return True


def _code_behind(factory) -> list:
    """The factory's class and its protocol class, and those of the factories it wraps."""
    found = []
    while factory is not None:
        found.append(type(factory))
        protocol = getattr(factory, "protocol", None)
        if isinstance(protocol, type):
            found.append(protocol)
        factory = getattr(factory, "wrappedFactory", None)
    return found


__all__ = ["serves_one_at_a_time"]
