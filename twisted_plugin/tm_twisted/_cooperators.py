"""Twisted's global Cooperator, one per strand: each task runs where the code that made it runs.

`twisted.internet.task.cooperate` hands every iterator to one process-wide `Cooperator`, whose
tick (a `callLater`) steps all of them. twisted.web streams each static file that way: a pull
producer registered with a request becomes a task of that Cooperator
(`twisted.internet._producer_helpers._PullToPush`), which the connection's transport pauses and
resumes as its buffer fills and drains. Twisted assumes one reactor thread. With a strand per
connection running in parallel, the tick ran on the thread of whichever connection scheduled it,
stepping the other connections' producers (writing into their requests) while their own strands
paused, resumed and stopped those tasks: blocks sent out of order, tasks lost from the list
(`list.remove(x): x not in list`, `NotPaused`, `TaskFailed`), stalled downloads.

Here `task._theCooperator` (what `task.cooperate` and `task.coiterate` read at each call) is a
`StrandCooperators`: `cooperate()` gives the iterator to the Cooperator of the calling strand, whose
ticks are posted on that strand. A task made by a connection is therefore stepped, paused, resumed
and stopped on the connection's strand, one call at a time, as on epoll's one thread. A call to a
task from another strand (or from outside the reactor's callbacks) is posted to the task's strand,
and `cooperate()` outside any callback uses the reactor's main strand. With one strand (a GIL
interpreter, TM_STRANDS=one) there is one Cooperator, as in Twisted.
"""

from __future__ import annotations

import functools
import threading

from twisted.internet import task
from twisted.python import log

from tm import _reactor
from tm_twisted._compat import globalCooperator, setGlobalCooperator


class StrandCooperator(task.Cooperator):
    """A Cooperator whose ticks and task bookkeeping run on one strand of a TMReactor."""

    def __init__(self, reactor, strand: _reactor.Strand, owner: "StrandCooperators") -> None:
        super().__init__(scheduler=self._schedule)
        self._tmReactor = reactor
        self._tmStrand = strand
        self._tmOwner = owner
        # post(fn, strand=...) without a bound method's keyword handling: one per tick.
        self._tmPost = reactor._core.poster(strand)

    def _schedule(self, tick) -> "_PostedTick":
        # Twisted's scheduler is callLater(_EPSILON): due at once. A post on the strand runs as
        # soon, behind what the strand has queued, without a DelayedCall, the reactor's list of
        # them and a native timer: a static file's response is a tick per 64 KiB block.
        posted = _PostedTick(tick)
        self._tmPost(posted.run)
        return posted

    def _onStrand(self) -> bool:
        return _reactor.current_strand() == self._tmStrand  # None outside callbacks

    # CooperativeTask.pause/resume/stop and the end of a task come here; the tick iterates the
    # same list, so a call from another strand waits for this strand's turn.
    def _addTask(self, taskObj) -> None:
        if not self._onStrand():
            self._tmReactor._core.post(
                functools.partial(self._addTask, taskObj), strand=self._tmStrand
            )
            return
        super()._addTask(taskObj)

    def _removeTask(self, taskObj) -> None:
        if not self._onStrand():
            self._tmReactor._core.post(
                functools.partial(self._removeTask, taskObj), strand=self._tmStrand
            )
            return
        if taskObj in self._tasks:  # a posted removal may find the task already finished
            super()._removeTask(taskObj)
        self._tmOwner._forgetIfIdle(self)

    def _tick(self) -> None:
        super()._tick()
        self._tmOwner._forgetIfIdle(self)


class _PostedTick:
    """A Cooperator tick posted on its strand; cancel() (the Cooperator's, when its last task
    leaves or it stops) makes it do nothing. An exception is logged, as the reactor logs one
    from a delayed call."""

    __slots__ = ("_tick",)

    def __init__(self, tick) -> None:
        self._tick = tick

    def run(self) -> None:
        tick, self._tick = self._tick, None
        if tick is not None:
            try:
                tick()
            except BaseException:
                log.err(None, "Unhandled error in a Cooperator tick")

    def cancel(self) -> None:
        self._tick = None


class StrandCooperators:
    """Stands for Twisted's global Cooperator: `cooperate()` picks the calling strand's one.

    While the global reactor is not a TMReactor, Twisted's own Cooperator does the work.
    """

    def __init__(self, original: task.Cooperator) -> None:
        self._original = original
        self._lock = threading.Lock()
        self._byStrand: dict[tuple[int, _reactor.Strand], StrandCooperator] = {}

    def _cooperatorHere(self) -> task.Cooperator:
        from twisted.internet import reactor  # what Twisted's default scheduler uses

        mainStrand = getattr(reactor, "_mainStrand", None)
        if mainStrand is None:
            return self._original
        strand = _reactor.current_strand() or mainStrand
        key = (id(reactor), strand)
        with self._lock:
            # d[key], not d.get(key): on CPython 3.13t dict.get re-enters the dict's lock when
            # another thread made the dict or the value, and spins there (docs/TWISTED.md).
            if key in self._byStrand:
                return self._byStrand[key]
            cooperator = self._byStrand[key] = StrandCooperator(reactor, strand, self)
            return cooperator

    def _forgetIfIdle(self, cooperator: StrandCooperator) -> None:
        """Drops a Cooperator without tasks, so that closed connections leave none behind.

        A paused task keeps its Cooperator and resumes there; a later cooperate() on the strand
        makes a new one, on the same strand, so calls stay one at a time.
        """
        if cooperator._tasks or cooperator._delayedCall is not None:
            return
        key = (id(cooperator._tmReactor), cooperator._tmStrand)
        with self._lock:
            if key in self._byStrand and self._byStrand[key] is cooperator:
                del self._byStrand[key]

    def cooperate(self, iterator):
        return self._cooperatorHere().cooperate(iterator)

    def coiterate(self, iterator, doneDeferred=None):
        return self._cooperatorHere().coiterate(iterator, doneDeferred)

    def __len__(self) -> int:
        """How many strands have a Cooperator (for tests)."""
        with self._lock:
            return len(self._byStrand)


def install() -> None:
    """Makes `task.cooperate` and `task.coiterate` use a Cooperator per strand of the reactor."""
    if not isinstance(globalCooperator(), StrandCooperators):
        setGlobalCooperator(StrandCooperators(globalCooperator()))


__all__ = ["StrandCooperator", "StrandCooperators", "install"]
