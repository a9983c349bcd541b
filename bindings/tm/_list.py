"""tm.List: the C++ transactional list, with the rest of list's protocol here."""

from __future__ import annotations

import collections.abc as _abc
import reprlib

from tm import _core
from tm._compound import one_transaction

__all__ = ["List"]


class List(_core.List):
    """A transactional list (one consistent vector; writers of one list conflict)."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__()
        if items:
            self._assign(list(items))

    @one_transaction
    def __setitem__(self, index, value):
        if isinstance(index, slice):
            items = self._items()
            items[index] = value
            self._assign(items)
        else:
            self._set(index, value)

    @one_transaction
    def __delitem__(self, index):
        if isinstance(index, slice):
            items = self._items()
            del items[index]
            self._assign(items)
        else:
            self._del(index)

    def __reversed__(self):
        return reversed(self._items())

    def __contains__(self, item):
        return item in self._items()

    def extend(self, items):
        self._extend(list(items))

    def __iadd__(self, items):
        self._extend(list(items))
        return self

    def __add__(self, other):
        if isinstance(other, (list, _core.List)):
            return type(self)(self._items() + list(other))
        return NotImplemented

    def __radd__(self, other):
        if isinstance(other, list):
            return other + self._items()
        return NotImplemented

    def __mul__(self, n):
        return type(self)(self._items() * n)

    __rmul__ = __mul__

    @one_transaction
    def __imul__(self, n):
        self._assign(self._items() * n)
        return self

    def index(self, item, *args):
        return self._items().index(item, *args)

    def count(self, item):
        return self._items().count(item)

    @one_transaction
    def remove(self, item):
        items = self._items()
        del self[items.index(item)]

    def clear(self):
        self._assign([])

    @one_transaction
    def reverse(self):
        items = self._items()
        items.reverse()
        self._assign(items)

    @one_transaction
    def sort(self, *, key=None, reverse=False):
        items = self._items()
        items.sort(key=key, reverse=reverse)
        self._assign(items)

    def copy(self):
        return type(self)(self._items())

    def __eq__(self, other):
        if isinstance(other, (list, _core.List)):
            return self._items() == (other if isinstance(other, list) else other._items())
        return NotImplemented

    def __lt__(self, other):
        return self._items() < list(other)

    def __le__(self, other):
        return self._items() <= list(other)

    def __gt__(self, other):
        return self._items() > list(other)

    def __ge__(self, other):
        return self._items() >= list(other)

    __hash__ = None  # type: ignore[assignment]

    @reprlib.recursive_repr("[...]")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.List({self._items()!r})"

    def __reduce__(self):
        return (type(self), (self._items(),))

    def __copy__(self):
        return self.copy()


_abc.MutableSequence.register(List)
