"""Extension types made immortal before the reactor's workers share them (CPython 3.13t).

On a free-threaded 3.13, every instance made or freed on a thread that does not own its type
changes the type's shared reference count with an atomic add, so parallel workers making
instances of one extension type (a hash object, a socket, a ``functools.partial``) contend on one
cache line. CPython already makes the classes Python code defines immortal once a second thread
exists; this does the same for the extension types (``PyType_FromSpec``'s, pybind11's) that exist
when a parallel run starts. From 3.14 CPython counts type references per thread, and with the GIL
nothing runs in parallel: there it does nothing. docs/TUNING.md has the measurements.

``TM_IMMORTAL_TYPES=0`` turns it off (for measuring what it buys). An immortal type is never
freed: extension types live as long as their modules anyway.

The immutable values (str, bytes, int, float, complex, tuple, frozenset) that exist when a
parallel run starts are made immortal too: what a program builds before it serves and then reads
on every worker (a compiled template's node tuples and strings, a routing table) otherwise has its
reference counts changed with atomic adds from every worker, each a cache line bouncing between
cores. CPython 3.14 does this for code constants. ``TM_IMMORTAL_VALUES=0`` turns it off. Such a
value is never freed: a value alive at the start of the run that the program drops later stays in
memory (at most what was alive then, once per scan).
"""

from __future__ import annotations

import gc
import os
import sys

from tm import _core
from tm._environment import gil_enabled

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE
_TYPE_SUBCLASS = 1 << 31  # Py_TPFLAGS_TYPE_SUBCLASS: a type; no __class__ lookup, unlike isinstance
# How many modules were loaded at the last scan of each kind: a new scan only when imports
# brought new types and values.
_modules_at_last_scan = 0
_modules_at_last_value_scan = 0


def wanted(workers: int, switch: str = "TM_IMMORTAL_TYPES") -> bool:
    """Whether a run on `workers` threads should make objects immortal first (the extension
    types, or with switch="TM_IMMORTAL_VALUES" the immutable values)."""
    return (
        workers > 1
        and sys.version_info[:2] == (3, 13)
        and not gil_enabled()
        and os.environ.get(switch, "1") != "0"
    )


def immortalize_extension_types(workers: int, heap: list | None = None) -> int:
    """Before a run on `workers` threads: makes the heap types this thread owns immortal, where
    that pays (see wanted()). `heap`: gc.get_objects(), if the caller has it. Returns how many
    types it changed."""
    global _modules_at_last_scan
    if not wanted(workers) or len(sys.modules) == _modules_at_last_scan:
        return 0
    _modules_at_last_scan = len(sys.modules)
    types = [
        o
        for o in (gc.get_objects() if heap is None else heap)
        if type(o).__flags__ & _TYPE_SUBCLASS and o.__flags__ & _HEAPTYPE
    ]
    return _core._immortalize_types(types)


def immortalize_values(workers: int, heap: list | None = None) -> int:
    """Before a run on `workers` threads: makes the immutable values that exist now and that this
    thread owns immortal, where that pays (see wanted()). `heap`: gc.get_objects(), if the caller
    has it. Returns how many it changed."""
    global _modules_at_last_value_scan
    if not wanted(workers, "TM_IMMORTAL_VALUES") or len(sys.modules) == _modules_at_last_value_scan:
        return 0
    _modules_at_last_value_scan = len(sys.modules)
    # Tuples and frozensets are among the tracked objects; the other values are their referents.
    tracked = gc.get_objects() if heap is None else heap
    return _core._immortalize_values(tracked) + _core._immortalize_values(
        gc.get_referents(*tracked)
    )


def immortalize_shared_objects(workers: int) -> int:
    """Before a run on `workers` threads: both of the above, over one walk of the heap (on 3.13t
    gc.get_objects() stops every thread). Returns how many objects it changed."""
    modules = len(sys.modules)
    due = (wanted(workers) and modules != _modules_at_last_scan) or (
        wanted(workers, "TM_IMMORTAL_VALUES") and modules != _modules_at_last_value_scan
    )
    if not due:
        return 0
    heap = gc.get_objects()
    return immortalize_extension_types(workers, heap) + immortalize_values(workers, heap)
