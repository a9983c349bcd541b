"""tm.Dict: the C++ transactional dict, with the rest of dict's protocol here."""

from __future__ import annotations

import collections.abc as _abc
import reprlib

from tm import _core
from tm._compound import one_transaction

__all__ = ["Dict"]

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

    @one_transaction
    def popitem(self):
        keys = self._items(0)
        if not keys:
            raise KeyError("popitem(): dictionary is empty")
        key = keys[-1]
        return key, self.pop(key)

    @one_transaction
    def setdefault(self, key, default=None):
        found = self.get(key, _MISSING)
        if found is _MISSING:
            self[key] = default
            return default
        return found

    @one_transaction
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

    __hash__ = None  # type: ignore[assignment]

    @reprlib.recursive_repr("{...}")  # a container that holds itself, as the builtin shows it
    def __repr__(self):
        return f"tm.Dict({dict(self._items(2))!r})"

    def __reduce__(self):
        return (type(self), (self._items(2),))

    def __copy__(self):
        return self.copy()


_abc.MutableMapping.register(Dict)
