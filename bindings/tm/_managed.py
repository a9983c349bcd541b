"""Managed objects: an ordinary object whose attribute state the runtime makes transactional.

The reactors call ``manage`` on the factories they are given (DESIGN.md section 4), so that an
unmodified server's shared state (``self.factory.clients``, ``self.factory.count += 1``) is safe
when callbacks of different connections run at the same time on a free-threaded interpreter.

``manage(obj)`` moves the instance's attributes into a hidden ``tm.Object`` and switches the
instance to a subclass of its class (same name, same layout) whose attribute access goes through
that table; plain ``list``, ``dict`` and ``set`` values become ``tm.List``, ``tm.Dict`` and
``tm.Set`` when stored. What this protects, and what it does not, is in docs/MANAGED_STATE.md.

Lookup follows Python's order. Data descriptors of the class (properties) win. Methods and other
non-data descriptors are looked up on the class without touching the transactional table, so
calling a factory's method costs no shared access, unless an instance attribute of that name was
ever set (``factory.clientConnectionLost = ...``, common in tests): such names are remembered in a
per-object set that only grows, and then read from the table. Plain class-level values
(``protocol = Chat``, ``numPorts = 0``) are read from the table first, as Python reads the instance
first.
"""

from __future__ import annotations

import threading
from typing import Literal

from tm import _core
from tm._types import Dict, List, Object, Set

Mode = Literal["full", "containers"]

_STATE = "_tm_state"
_MISSING = object()
_object_getattribute = object.__getattribute__
_object_setattr = object.__setattr__
_object_delattr = object.__delattr__


class _Attributes(Object):
    """The transactional attribute table of one managed object."""

    __slots__ = ()


def as_managed_value(value: object) -> object:
    """value, with a plain list, dict or set replaced by its transactional counterpart."""
    kind = type(value)
    if kind is list:
        return List(value)
    if kind is dict:
        return Dict(value)
    if kind is set:
        return Set(value)
    return value


def _class_attribute(cls: type, name: str) -> object:
    for klass in cls.__mro__:
        found = klass.__dict__.get(name, _MISSING)
        if found is not _MISSING:
            return found
    return _MISSING


_SHADOWS = "_tm_shadows"


def _is_data_descriptor(found: object) -> bool:
    kind = type(found)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def _class_answers(self, name: str) -> bool:
    """True where the class, not the table, answers for name (Python's lookup order)."""
    if name[:2] == "__":
        return True
    found = _class_attribute(type(self), name)
    if found is _MISSING or not hasattr(type(found), "__get__"):
        return False  # not on the class, or a plain class-level value: the instance comes first
    if _is_data_descriptor(found):
        return True
    # A method: the class answers unless an instance attribute of that name was ever set.
    return name not in _object_getattribute(self, "__dict__").get(_SHADOWS, ())


def _getattribute(self, name: str):
    if not _class_answers(self, name):
        table = _object_getattribute(self, "__dict__").get(_STATE)
        if table is not None:
            value = getattr(table, name, _MISSING)
            if value is not _MISSING:
                return value
    return _object_getattribute(self, name)


def _setattr(self, name: str, value: object) -> None:
    if name[:2] == "__" or _is_data_descriptor(_class_attribute(type(self), name)):
        _object_setattr(self, name, value)
        return
    attributes = _object_getattribute(self, "__dict__")
    setattr(attributes[_STATE], name, as_managed_value(value))
    found = _class_attribute(type(self), name)
    if found is not _MISSING and hasattr(type(found), "__get__"):
        # Shadows a method from now on. The set only grows and is replaced whole, so a reader
        # sees the old or the new set, never a torn one.
        shadows = attributes.get(_SHADOWS, frozenset())
        if name not in shadows:
            attributes[_SHADOWS] = shadows | {name}


def _delattr(self, name: str) -> None:
    if name[:2] == "__" or _is_data_descriptor(_class_attribute(type(self), name)):
        _object_delattr(self, name)
        return
    try:
        delattr(_object_getattribute(self, "__dict__")[_STATE], name)
    except AttributeError:
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
        ) from None


_managed_classes: dict[type, type] = {}
_managed_classes_lock = threading.Lock()


def _managed_class(cls: type) -> type:
    with _managed_classes_lock:
        managed = _managed_classes.get(cls)
        if managed is None:
            namespace = {
                "__slots__": (),  # the same layout as cls, so that __class__ can be switched
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__getattribute__": _getattribute,
                "__setattr__": _setattr,
                "__delattr__": _delattr,
                "__tm_managed__": "full",
            }
            managed = type(cls)(cls.__name__, (cls,), namespace)
            # The same lookup in C: _getattribute and _setattr are the reference, and _setattr
            # still stores the values it converts (bindings/managed_object.cpp).
            _core.install_managed_access(managed, _setattr)
            _managed_classes[cls] = managed
        return managed


def manage(obj: object, mode: Mode = "full") -> object:
    """Makes obj's attribute state transactional and returns obj (see the module docstring).

    mode "full": every instance attribute lives in a transactional table and container values
    become tm containers. mode "containers": attributes stay plain; only the list, dict and set
    values obj holds now become tm containers (for objects whose other attributes are read on
    every request and written only at start-up, where a transactional read would serialise
    every request).

    A class may choose for its instances with ``__tm_manage__ = "full" | "containers" | "off"``.
    Raises TypeError for an object without a ``__dict__``. Idempotent.
    """
    cls = type(obj)
    requested = getattr(cls, "__tm_manage__", None)
    if requested is not None:
        mode = requested
    if mode == "off" or getattr(cls, "__tm_managed__", None) == "full":
        return obj
    try:
        attributes = _object_getattribute(obj, "__dict__")
    except AttributeError:
        raise TypeError(f"cannot manage {cls.__name__!r} objects: they have no __dict__") from None
    if mode == "containers":
        for name, value in list(attributes.items()):
            attributes[name] = as_managed_value(value)
        return obj
    if mode != "full":
        raise ValueError(f"unknown management mode {mode!r}")
    saved = dict(attributes)
    table = _Attributes()
    for name, value in saved.items():
        setattr(table, name, as_managed_value(value))
    managed = _managed_class(cls)
    shadows = frozenset(
        name for name in saved if hasattr(type(_class_attribute(cls, name)), "__get__")
    )
    attributes.clear()
    attributes[_STATE] = table
    if shadows:
        attributes[_SHADOWS] = shadows
    try:
        _object_setattr(obj, "__class__", managed)
    except TypeError:
        # A layout __class__ assignment refuses (a C base class): give the state back.
        attributes.clear()
        attributes.update(saved)
        raise
    return obj


def is_managed(obj: object) -> bool:
    """True when obj's attributes live in a transactional table (manage(obj) in full mode)."""
    return getattr(type(obj), "__tm_managed__", None) == "full"


__all__ = ["as_managed_value", "is_managed", "manage"]
