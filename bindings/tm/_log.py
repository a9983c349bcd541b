"""tm.Log: the C++ append-only log, with the rest of a read-only sequence's protocol here."""

from __future__ import annotations

import collections.abc as _abc
import reprlib

from tm import _core

__all__ = ["Log"]


class Log(_core.Log):
    """An append-only log (appends never conflict); a read-only sequence."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__()
        for x in items:
            self.append(x)

    def extend(self, items):
        for x in list(items):
            self.append(x)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._items()[index]
        return self._at(index)

    def __iter__(self):
        return iter(self._items())

    def __contains__(self, item):
        return item in self._items()

    # Sequence's own methods (register() lends none of them).
    def __reversed__(self):
        return reversed(self._items())

    def index(self, item, *args):
        return self._items().index(item, *args)

    def count(self, item):
        return self._items().count(item)

    def __eq__(self, other):
        if isinstance(other, (_core.Log, list)):
            return self._items() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @reprlib.recursive_repr("[...]")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.Log({self._items()!r})"

    def __reduce__(self):
        return (type(self), (self._items(),))

    def copy(self):
        return type(self)(self._items())


_abc.Sequence.register(Log)
