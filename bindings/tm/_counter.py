"""tm.Counter: the C++ commutative counter, with the rest of int's protocol here."""

from __future__ import annotations

import operator

from tm import _core

__all__ = ["Counter"]


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
    __hash__ = None  # type: ignore[assignment]  # mutable, as a list is

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
