"""Twisted classes whose instances the connections of a server share, managed at construction.

The reactor manages the factories it is given (tm_twisted._managed), but some Twisted services
keep their shared state in objects the factory only reaches: twisted.words' realm holds the users
and the channels (``InMemoryWordsRealm.users``, ``.groups``), each channel its members
(``Group.users``), each user the channels it joined (``User.groups``). A JOIN, PART, PRIVMSG to a
channel or logout of one connection iterates or changes them while other connections do the same;
with several workers on a free-threaded interpreter that gave ``dictionary changed size during
iteration`` and JOINs never answered (tests/python/test_twisted_differential.py, ``twistd words``).
Twisted's ``DeferredQueue``, ``DeferredLock`` and ``DeferredSemaphore`` are the same kind of
object when a program shares one between connections.

Instances of the classes listed here are handed to ``tm.manage`` when their ``__init__`` returns:
their attributes become transactional and their ``dict``/``list``/``set`` values tm containers,
so a callback that touches them becomes inevitable there (docs/MANAGED_STATE.md) and such
callbacks run one at a time, as on epoll. The classes are patched when the reactor is installed
if their module is imported, else when it is (an import hook), so that ``twistd words``, which
imports the service after installing the reactor, is covered. Instances made before that stay
plain. The audit that found them is docs/TWISTED.md ("Process-wide state").

Some classes keep their bookkeeping in plain attributes that the program's own code reads back:
``DeferredList`` (under ``gatherResults``) counts the Deferreds that fired and hands its result
list to the program's callbacks, and the Deferreds it gathers fire on their own connections'
strands. Rather than managing those instances (the program would get a ``tm.List`` for a
``list``), the methods listed in ``INEVITABLE_METHODS`` make their transaction inevitable first:
two of them never run at once, and what the program sees stays what epoll gives it.
"""

from __future__ import annotations

import functools

import tm
from tm import _reactor

# module -> the classes of it whose instances connections share.
SHARED_CLASSES: dict[str, tuple[str, ...]] = {
    "twisted.words.service": ("Group", "User", "InMemoryWordsRealm"),
    # How callbacks of several connections coordinate: one queue that connections put into and
    # a consumer empties lost items and wake-ups (tests/python/test_twisted_reactor.py).
    "twisted.internet.defer": ("DeferredLock", "DeferredSemaphore", "DeferredQueue"),
}

# module -> class -> the methods that change its state, each made inevitable before it runs.
INEVITABLE_METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    # The constructor adds its callbacks to Deferreds that may fire on other strands meanwhile.
    "twisted.internet.defer": {"DeferredList": ("__init__", "_cbDeferred")},
}

_MODULES = set(SHARED_CLASSES) | set(INEVITABLE_METHODS)


def _inevitable_first(cls: type, name: str) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def method(*args, **kwargs):
        tm.inevitable()
        return original(*args, **kwargs)

    setattr(cls, name, method)


def _patch(module) -> None:
    for name in SHARED_CLASSES.get(module.__name__, ()):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            _reactor.manage_at_construction(cls)
    for name, methods in INEVITABLE_METHODS.get(module.__name__, {}).items():
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            for method in methods:
                _inevitable_first(cls, method)


def install() -> None:
    """Patches the listed classes of the modules imported now, and of the others when they are."""
    _reactor.when_imported(sorted(_MODULES), _patch)


__all__ = ["INEVITABLE_METHODS", "SHARED_CLASSES", "install"]
