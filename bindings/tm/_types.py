"""The managed types: C++ cores from tm._core, with the rest of their builtin protocol here.

Compound methods run as one restartable transaction (flattened into the caller's if any), so
that, e.g., ``d.setdefault(k, v)`` is atomic even outside a transaction.
"""

from __future__ import annotations

import collections.abc as _abc
import functools
import operator
import reprlib

from tm import _core

__all__ = ["Var", "Counter", "Log", "Queue", "List", "Dict", "Set", "Object"]

Var = _core.Var
Object = _core.Object


def _tx(method):
    def run(*args, **kwargs):
        return _core.run(method, args, kwargs, False)

    run.__name__ = method.__name__
    run.__qualname__ = method.__qualname__
    run.__doc__ = method.__doc__
    return run


def _counted(value):
    return value.get() if isinstance(value, _core.Counter) else value


def _int_operator(op):
    """An operator of int applied to the counter's value (one read)."""
    return lambda self, other: op(self.get(), _counted(other))


def _int_operators(op):
    """The operator and its reflected form (``c + 1`` and ``1 + c``)."""
    return _int_operator(op), lambda self, other: op(_counted(other), self.get())


class Counter(_core.Counter):
    """A commutative counter: ``add`` (and ``+=``, ``-=``) never conflicts. Everything else
    reads its value and behaves as that int does: comparisons, arithmetic (giving plain
    numbers), ``int()``, ``float()``, ``bool()``, ``operator.index``."""

    __slots__ = ()

    __eq__ = _int_operator(operator.eq)
    __ne__ = _int_operator(operator.ne)
    __lt__ = _int_operator(operator.lt)
    __le__ = _int_operator(operator.le)
    __gt__ = _int_operator(operator.gt)
    __ge__ = _int_operator(operator.ge)
    __hash__ = None  # mutable, as a list is

    __add__, __radd__ = _int_operators(operator.add)
    __sub__, __rsub__ = _int_operators(operator.sub)
    __mul__, __rmul__ = _int_operators(operator.mul)
    __truediv__, __rtruediv__ = _int_operators(operator.truediv)
    __floordiv__, __rfloordiv__ = _int_operators(operator.floordiv)
    __mod__, __rmod__ = _int_operators(operator.mod)
    __divmod__, __rdivmod__ = _int_operators(divmod)
    __pow__, __rpow__ = _int_operators(operator.pow)
    __lshift__, __rlshift__ = _int_operators(operator.lshift)
    __rshift__, __rrshift__ = _int_operators(operator.rshift)
    __and__, __rand__ = _int_operators(operator.and_)
    __or__, __ror__ = _int_operators(operator.or_)
    __xor__, __rxor__ = _int_operators(operator.xor)

    def __neg__(self):
        return -self.get()

    def __abs__(self):
        return abs(self.get())

    def __invert__(self):
        return ~self.get()

    def __round__(self, ndigits=None):
        return round(self.get(), ndigits)

    def __index__(self):
        return self.get()

    __pos__ = __trunc__ = __floor__ = __ceil__ = __index__  # the value itself, an int

    def __float__(self):
        return float(self.get())

    def __bool__(self):
        return self.get() != 0

    def __format__(self, spec):
        return format(self.get(), spec)


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

    __hash__ = None

    @reprlib.recursive_repr("[...]")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.Log({self._items()!r})"

    def __reduce__(self):
        return (type(self), (self._items(),))

    def copy(self):
        return type(self)(self._items())


_abc.Sequence.register(Log)


class Queue(_core.Queue):
    """A FIFO queue with queue.Queue's interface.

    ``put`` on an unbounded queue (``maxsize <= 0``, the default) never conflicts; a bounded one
    reads the size first. A blocking ``get`` on an empty queue (or ``put`` on a full one) waits
    with ``tm.retry``, up to ``timeout`` seconds when one is given; ``join`` waits until every
    item put has been marked ``task_done``.
    """

    __slots__ = ()

    def put_nowait(self, item):
        self.put(item, False)


class List(_core.List):
    """A transactional list (one consistent vector; writers of one list conflict)."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__()
        if items:
            self._assign(list(items))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(self._items()[index])
        return self._get(index)

    @_tx
    def __setitem__(self, index, value):
        if isinstance(index, slice):
            items = self._items()
            items[index] = value
            self._assign(items)
        else:
            self._set(index, value)

    @_tx
    def __delitem__(self, index):
        if isinstance(index, slice):
            items = self._items()
            del items[index]
            self._assign(items)
        else:
            self._del(index)

    def __iter__(self):
        return iter(self._items())

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

    @_tx
    def __imul__(self, n):
        self._assign(self._items() * n)
        return self

    def index(self, item, *args):
        return self._items().index(item, *args)

    def count(self, item):
        return self._items().count(item)

    @_tx
    def remove(self, item):
        items = self._items()
        del self[items.index(item)]

    def clear(self):
        self._assign([])

    @_tx
    def reverse(self):
        items = self._items()
        items.reverse()
        self._assign(items)

    @_tx
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

    __hash__ = None

    @reprlib.recursive_repr("[...]")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.List({self._items()!r})"

    def __reduce__(self):
        return (type(self), (self._items(),))

    def __copy__(self):
        return self.copy()


_abc.MutableSequence.register(List)

_MISSING = object()


class Dict(_core.Dict):
    """A transactional dict (insertion-ordered; different keys rarely conflict).

    ``keys()``, ``values()`` and ``items()`` return views of a snapshot read in one consistent
    transaction (real ``dict`` views, with their set operations; unlike a dict's, they do not
    follow later changes).
    """

    __slots__ = ()

    def __init__(self, other=(), /, **kwargs):
        super().__init__()
        if other or kwargs:
            self.update(other, **kwargs)

    def __iter__(self):
        return iter(self._items(0))

    def __reversed__(self):
        return reversed(self._items(0))

    def keys(self):
        return dict.fromkeys(self._items(0)).keys()

    def values(self):
        return dict(self._items(2)).values()

    def items(self):
        return dict(self._items(2)).items()

    def pop(self, key, default=_MISSING):
        found, value = self._pop(key)
        if found:
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    @_tx
    def popitem(self):
        keys = self._items(0)
        if not keys:
            raise KeyError("popitem(): dictionary is empty")
        key = keys[-1]
        return key, self.pop(key)

    @_tx
    def setdefault(self, key, default=None):
        found = self.get(key, _MISSING)
        if found is _MISSING:
            self[key] = default
            return default
        return found

    @_tx
    def update(self, other=(), /, **kwargs):
        if isinstance(other, (_abc.Mapping, _core.Dict)):
            for k in list(other.keys()):
                self[k] = other[k]
        elif hasattr(other, "keys"):
            for k in list(other.keys()):
                self[k] = other[k]
        else:
            for k, v in other:
                self[k] = v
        for k, v in kwargs.items():
            self[k] = v

    def __ior__(self, other):
        self.update(other)
        return self

    def __or__(self, other):
        if not isinstance(other, (dict, _core.Dict)):
            return NotImplemented
        new = self.copy()
        new.update(other)
        return new

    def __ror__(self, other):
        if not isinstance(other, dict):
            return NotImplemented
        return other | dict(self._items(2))  # a dict, as dict | dict-subclass gives

    def copy(self):
        return type(self)(self._items(2))

    @classmethod
    def fromkeys(cls, keys, value=None):
        return cls((k, value) for k in keys)

    def __eq__(self, other):
        if isinstance(other, _core.Dict):
            other = dict(other._items(2))
        if isinstance(other, dict):
            return dict(self._items(2)) == other
        return NotImplemented

    __hash__ = None

    @reprlib.recursive_repr("{...}")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.Dict({dict(self._items(2))!r})"

    def __reduce__(self):
        return (type(self), (self._items(2),))

    def __copy__(self):
        return self.copy()


_abc.MutableMapping.register(Dict)


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

    def __iter__(self):
        return iter(self._items())

    def discard(self, item):
        self._discard(item)

    def remove(self, item):
        if not self._discard(item):
            raise KeyError(item)

    @_tx
    def pop(self):
        items = self._items()
        if not items:
            raise KeyError("pop from an empty set")
        self._discard(items[0])
        return items[0]

    @_tx
    def update(self, *others):
        for other in others:
            for x in list(other):
                self.add(x)

    @_tx
    def difference_update(self, *others):
        for other in others:
            for x in list(other):
                self._discard(x)

    @_tx
    def intersection_update(self, *others):
        keep = set(self._items()).intersection(*others)
        for x in self._items():
            if x not in keep:
                self._discard(x)

    @_tx
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

    __hash__ = None

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
