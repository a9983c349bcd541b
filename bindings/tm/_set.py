"""tm.Set: the C++ transactional set, with the rest of set's protocol here."""

from __future__ import annotations

import collections.abc as _abc
import functools
import reprlib

from tm import _core
from tm._compound import one_transaction

__all__ = ["Set"]


def _sets_only(operator_method):
    """A set operator: with anything but a set it returns NotImplemented, so that, as for set,
    ``tm.Set() | [1]`` is a TypeError (the methods, such as union(), take any iterable)."""

    @functools.wraps(operator_method)
    def method(self, other):
        return operator_method(self, other) if isinstance(other, _abc.Set) else NotImplemented

    return method


class Set(_core.Set):
    """A transactional set; ``add`` is blind (never forces inevitability)."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__()
        for x in items:
            self.add(x)

    def remove(self, item):
        if not self._discard(item):
            raise KeyError(item)

    @one_transaction
    def pop(self):
        items = self._items()
        if not items:
            raise KeyError("pop from an empty set")
        self._discard(items[0])
        return items[0]

    @one_transaction
    def update(self, *others):
        for other in others:
            for x in list(other):
                self.add(x)

    @one_transaction
    def difference_update(self, *others):
        for other in others:
            for x in list(other):
                self._discard(x)

    @one_transaction
    def intersection_update(self, *others):
        keep = set(self._items()).intersection(*others)
        for x in self._items():
            if x not in keep:
                self._discard(x)

    @one_transaction
    def symmetric_difference_update(self, other):
        for x in set(other):
            if x in self:
                self._discard(x)
            else:
                self.add(x)

    def _as_set(self):
        return set(self._items())

    # Methods take any iterables, operators only sets (_sets_only, as set's do); a result of
    # either is a tm.Set.
    def union(self, *others):
        return type(self)(self._as_set().union(*others))

    def intersection(self, *others):
        return type(self)(self._as_set().intersection(*others))

    def difference(self, *others):
        return type(self)(self._as_set().difference(*others))

    def symmetric_difference(self, other):
        return type(self)(self._as_set().symmetric_difference(other))

    __or__ = _sets_only(union)
    __and__ = _sets_only(intersection)
    __sub__ = _sets_only(difference)
    __xor__ = _sets_only(symmetric_difference)

    # {1} | tm.Set(...) is a set and frozenset(...) & tm.Set(...) a frozenset: the left
    # operand's type, as `set | set-subclass` gives a set.
    @_sets_only
    def __ror__(self, other):
        return other | self._as_set()

    @_sets_only
    def __rand__(self, other):
        return other & self._as_set()

    @_sets_only
    def __rsub__(self, other):
        return other - self._as_set()

    @_sets_only
    def __rxor__(self, other):
        return other ^ self._as_set()

    @_sets_only
    def __ior__(self, other):
        self.update(other)
        return self

    @_sets_only
    def __isub__(self, other):
        self.difference_update(other)
        return self

    @_sets_only
    def __iand__(self, other):
        self.intersection_update(other)
        return self

    @_sets_only
    def __ixor__(self, other):
        self.symmetric_difference_update(other)
        return self

    def issubset(self, other):
        return self._as_set() <= set(other)

    def issuperset(self, other):
        return self._as_set() >= set(other)

    def isdisjoint(self, other):
        return self._as_set().isdisjoint(other)

    @_sets_only
    def __le__(self, other):
        return self._as_set() <= set(other)

    @_sets_only
    def __lt__(self, other):
        return self._as_set() < set(other)

    @_sets_only
    def __ge__(self, other):
        return self._as_set() >= set(other)

    @_sets_only
    def __gt__(self, other):
        return self._as_set() > set(other)

    def __eq__(self, other):
        if isinstance(other, (set, frozenset, _core.Set)):
            return self._as_set() == set(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def copy(self):
        return type(self)(self._items())

    @reprlib.recursive_repr("{...}")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.Set({self._as_set()!r})"

    def __reduce__(self):
        return (type(self), (self._items(),))

    def __copy__(self):
        return self.copy()


_abc.MutableSet.register(Set)
