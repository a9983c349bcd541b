"""The delayed calls of each strand: a heap, and one native timer armed for the earliest.

A delayed call runs on the strand of the callback that made it (docs/TWISTED.md). A native timer
per call cost an allocation, a posted arming and a posted cancellation, and twisted.web cancels its
connection's idle timeout and makes a new one on every request. Here a strand's calls wait in a
heap of (deadline, entry, call), Twisted's own ``_pendingTimedCalls`` per strand, and one native
timer on that strand is armed for the earliest (``Timer.reschedule_earlier``: requests from
several threads commute). When it fires it takes every call due, as ``runUntilCurrent`` does,
each still run as a transaction of its own, and re-arms for the next. A cancelled or moved call's
entry stays until it comes up or until dead entries are half the heap. A strand whose heap empties
is forgotten when its timer fires, so that the strands of closed connections do not pile up: when
cancellations empty it, the timer is brought forward to at most ``RETIRE_AFTER`` from then
(twisted.web cancels a connection's 12-hour idle timeout when it closes), at most once a period
however often the heap empties.

Deadlines are on the reactor's monotonic clock, as the native timers' are: a call moved by
``reset()`` or ``delay()`` is placed at ``monotonic() + (call.time - reactor.seconds())``.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import threading
import weakref
from typing import Any, Callable

from twisted.internet import base

from tm import _reactor


# Seconds a strand's timer waits, at most, once cancellations emptied its heap: a new call within
# that time (twisted.web's next request) keeps the strand's timer; none, and the strand is
# forgotten.
RETIRE_AFTER = 1.0


class _Strand:
    """One strand's heap and timer; ``lock`` guards every field but ``strand``."""

    __slots__ = ("strand", "lock", "heap", "armed_for", "native", "dead", "retired")

    def __init__(self, strand: Any) -> None:
        self.strand = strand
        self.lock = threading.Lock()
        self.heap: list[tuple[float, int, base.DelayedCall]] = []
        self.armed_for = math.inf  # the deadline the native timer was last asked for
        self.native: _reactor.Timer | None = None
        self.dead = 0  # entries of cancelled, called or moved calls still in the heap
        self.retired = False  # forgotten by StrandTimers: a new one takes its place


def _fire(owner: weakref.ref, strand: Any) -> None:
    # The timer's callable lives in C++, where the garbage collector cannot see a cycle: it
    # holds neither the StrandTimers nor the state that holds the timer.
    timers = owner()
    if timers is not None:
        timers._fire(strand)


class StrandTimers:
    """Delayed calls by strand for one C++ reactor; ``run(call)`` runs a call that came due."""

    def __init__(self, core: Any, run: Callable[[base.DelayedCall], None]) -> None:
        self._core = core
        self._run = run
        self._lock = threading.Lock()  # guards _strands
        self._strands: dict[Any, _Strand] = {}
        self._entries = itertools.count()
        self._fire_ref = weakref.ref(self)

    def schedule(self, call: base.DelayedCall, deadline: float, strand: Any) -> None:
        """Runs call at deadline (monotonic) on strand. A call moved (``moved``) before this, at
        the commit that schedules it, goes where it was moved to."""
        deadline = call.__dict__.pop("_tmMovedTo", deadline)
        while True:
            state = self._strands.get(strand)  # a dict read is atomic; changes take _lock
            if state is None or state.retired:  # retired: read again under its lock below
                with self._lock:
                    state = self._strands.get(strand)
                    if state is None or state.retired:
                        state = self._strands[strand] = _Strand(strand)
            with state.lock:
                if state.retired:
                    continue
                self._push(state, deadline, call)
                return

    def moved(self, call: base.DelayedCall, deadline: float) -> None:
        """call's time changed (reset() sooner): its old entry is dead, a new one goes in."""
        state = call.__dict__.get("_tmStrand")
        if state is None:  # scheduled by a commit still to come (TMReactor._callLaterOn)
            call._tmMovedTo = deadline
            return
        with state.lock:
            if state.retired:  # its timer fired with the heap empty: the call is not in it
                return
            state.dead += 1
            self._push(state, deadline, call)

    def cancelled(self, call: base.DelayedCall) -> None:
        """call is being cancelled (DelayedCall.cancel() marks it after this)."""
        state = call.__dict__.pop("_tmStrand", None)
        if state is None:  # scheduled by a commit still to come, which will not schedule it now
            return
        with state.lock:
            state.dead += 1
            heap = state.heap
            if 2 * state.dead > len(heap):
                state.heap = [e for e in heap if e[2] is not call and self._live(e)]
                heapq.heapify(state.heap)
                state.dead = 0
            if not state.heap and state.native is not None:
                retire_at = _reactor.monotonic() + RETIRE_AFTER
                if state.armed_for > retire_at:
                    state.armed_for = retire_at
                    state.native.reschedule_earlier(retire_at)

    @staticmethod
    def _live(entry: tuple[float, int, base.DelayedCall]) -> bool:
        call = entry[2]
        return not (call.cancelled or call.called) and call._tmEntry == entry[1]

    def _push(self, state: _Strand, deadline: float, call: base.DelayedCall) -> None:
        # Under state.lock.
        entry = next(self._entries)
        call._tmStrand = state
        call._tmEntry = entry
        heapq.heappush(state.heap, (deadline, entry, call))
        if deadline < state.armed_for:
            state.armed_for = deadline
            if state.native is None:
                state.native = self._core.call_at(
                    deadline, functools.partial(_fire, self._fire_ref, state.strand), state.strand
                )
            else:
                state.native.reschedule_earlier(deadline)

    def _fire(self, strand: Any) -> None:
        """On strand: runs the calls due, in deadline order, and re-arms for the next."""
        state = self._strands.get(strand)
        if state is None:
            return
        due = []
        with state.lock:
            now = _reactor.monotonic()
            heap = state.heap
            while heap:
                deadline, _, call = heap[0]
                if not self._live(heap[0]):
                    state.dead = max(0, state.dead - 1)
                elif deadline > now:
                    break
                else:
                    due.append(call)
                heapq.heappop(heap)
            if heap:
                state.armed_for = heap[0][0]
                state.native.reschedule_earlier(state.armed_for)  # type: ignore[union-attr]
            else:
                state.armed_for = math.inf
                state.retired = True
                state.native = None
        if state.retired:
            with self._lock:
                if self._strands.get(state.strand) is state:
                    del self._strands[state.strand]
        if not due:
            return
        # Each call a transaction of its own, as each was a timer event of its own: the first
        # here, the others posted behind it, in deadline order.
        for call in due[1:]:
            self._core.post(functools.partial(self._run, call), state.strand)
        self._run(due[0])
