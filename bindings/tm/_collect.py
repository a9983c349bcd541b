"""gc.collect() in a reactor callback frees what it found dead before it returns (CPython 3.13t).

With the GIL off, CPython counts references with biased reference counting: when a thread other
than an object's owner (the thread that made it) drops the object's last reference, the object
is queued for its owner, which frees it the next time it runs Python code. A collection on a
worker that finds a cycle dead clears it there, and the objects of the cycle that the collector
does not track and another thread made (a ``select.epoll``, any object holding a descriptor, made
before run() by the thread that then calls it) wait in that thread's queue. The thread that
called run() runs Python only at its tick (every 50 ms), an idle worker only at its next event:
their descriptors stay open after ``gc.collect()`` returned, where with one thread (or the GIL)
they are closed. Twisted's ``assertPeerClosedOnEMFILE`` collects "to close dangling files", then
opens descriptors until EMFILE, and the late close freed one for the accept it expects to fail.

Each collection starts by merging every thread's queue and frees what reached zero, on the
collecting thread. So inside a reactor callback (on a worker) ``gc.collect()`` collects again
until a collection finds nothing (at most _MAX_ROUNDS in all): each one frees what the one before
queued for other threads, and a chain (a dead cycle holding a reactor made by another thread,
holding its ``select.epoll``) needs one more per link. Only explicit calls pay: the collections
CPython starts by itself do not go through ``gc.collect``.
"""

from __future__ import annotations

import gc

from tm._core import current_strand
from tm._environment import gil_enabled

_original_collect = gc.collect


_MAX_ROUNDS = 8


def _collect(generation: int = 2) -> int:
    """gc.collect, which on a reactor worker also frees what it queued for other threads."""
    found = last = _original_collect(generation)
    if current_strand() is not None:
        rounds = 1
        # The collection after one that found garbage frees what that one queued.
        while last > 0 and rounds < _MAX_ROUNDS:
            last = _original_collect(generation)
            rounds += 1
    return found


_collect.__doc__ = (_original_collect.__doc__ or "") + (
    "\n\nIn a tm reactor callback with the GIL off (tm._collect), it collects again until a "
    "collection finds nothing, so that what it found dead and other threads own is freed before "
    "it returns."
)


def complete_collections(workers: int) -> bool:
    """Before a run on `workers` threads with the GIL off: makes gc.collect() in a callback free
    what it found dead before it returns (see the module). Returns whether gc.collect is the
    wrapper now; idempotent."""
    if workers > 1 and not gil_enabled():
        gc.collect = _collect
    return gc.collect is _collect
