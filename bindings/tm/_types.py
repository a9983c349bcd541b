"""The managed types, one module each: C++ cores from tm._core, with the rest of their builtin
protocol in _counter.py, _log.py, _queue.py, _list.py, _dict.py and _set.py (their compound
methods run as one transaction: _compound.py). Var and Object are the C++ classes themselves.

tm/__init__.py and tm._managed import the types from here.
"""

from __future__ import annotations

from tm import _core
from tm._counter import Counter
from tm._dict import Dict
from tm._list import List
from tm._log import Log
from tm._queue import Queue
from tm._set import Set

__all__ = ["Var", "Counter", "Log", "Queue", "List", "Dict", "Set", "Object"]

Var = _core.Var
Object = _core.Object
