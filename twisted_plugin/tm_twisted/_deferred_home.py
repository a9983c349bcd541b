"""A Deferred made in a callback fires on that callback's strand.

On epoll a Deferred is touched by one thread: whoever fires it runs its callbacks at once, and no
callback can be added meanwhile. With several workers on a free-threaded interpreter, a Deferred
that one connection's callback made (waiting for a line another connection will receive, for a
backend's reply, for a peer's message) may be fired by a callback of another strand while its own
strand adds callbacks to it. Twisted's `_runCallbacks` then ran on both strands at once: a
callback run twice or lost, `IndexError: pop from empty list` as the Deferred's result, and the
`inlineCallbacks` generator waiting on it never resumed. The callbacks, moreover, belong to the
strand that made the Deferred (its protocol, its generator), and ran on the firing one, beside
that strand's own events.

So with several workers a Deferred made inside a reactor callback remembers the callback's
strand, and `callback()`/`errback()` called on another strand is posted to that strand at the
firing transaction's commit, as a thread's `callFromThread` is posted to the reactor: the
callbacks run there, one at a time with the strand's events. What the firing side sees differs
from epoll only in timing: `d.called` stays false until the strand runs the firing, and a second
firing from another strand before then is dropped, as a program that checks `d.called` first
would have skipped it (a firing that finds the Deferred already fired on its own strand, by a
timeout or a cancel, is dropped the same way). Deferreds made outside callbacks, and every
Deferred at one worker or under the GIL, are Twisted's own.

A Deferred that both its maker and its firing touch while inevitable fires where it is fired, as
before: the two hold the token one after the other, so the maker had added its callbacks and
committed before the firing could start. That is how a Deferred handed out by a managed object
fires (`DeferredQueue.get`'s, `DeferredLock.acquire`'s: docs/TWISTED.md), and the firing strand
runs its callbacks at once, as on epoll: posted, a consumer's `get()` found thousands of items
waiting and drained them by recursion (`test_connections_share_a_deferred_queue`).
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet.defer import Deferred

from tm import is_inevitable
from tm._reactor import current_strand

# The reactor core whose workers run strands in parallel now, or None.
_running: Any = None

# Twisted's methods (a reload of this module finds its own in their place).
_twisted_init = getattr(Deferred.__init__, "_tm_twisted", Deferred.__init__)
_twisted_start = getattr(Deferred._startRunCallbacks, "_tm_twisted", Deferred._startRunCallbacks)


def _init(self, canceller=None):
    _twisted_init(self, canceller)
    core = _running
    if core is not None:
        strand = current_strand()
        if strand is not None:
            self._tmHome = (core, strand, is_inevitable())


def _start_run_callbacks(self, result):
    home = self._tmHome
    if home is not None and not self.called:
        core, strand, made_inevitable = home
        if core is _running and not strand.is_current():
            if made_inevitable and is_inevitable():
                # Both sides hold the token: the maker's transaction had committed (and added
                # its callbacks) before this one could take it.
                _twisted_start(self, result)
            elif not self._tmFiring:
                self._tmFiring = True
                core.post(functools.partial(_fire_at_home, self, result), strand=strand)
            return
    _twisted_start(self, result)


def _fire_at_home(d: Deferred, result: object) -> None:
    if d.called and not d._suppressAlreadyCalled:
        return  # fired on its own strand meanwhile (a timeout, a cancel): the first one won
    _twisted_start(d, result)


for _ours, _theirs in ((_init, _twisted_init), (_start_run_callbacks, _twisted_start)):
    functools.update_wrapper(_ours, _theirs)
    _ours._tm_twisted = _theirs  # type: ignore[attr-defined]


def running(core: Any, parallel: bool) -> None:
    """core's workers start running: Deferreds made in its callbacks get a home if parallel."""
    global _running
    if not parallel:
        return
    Deferred._tmHome = None
    Deferred._tmFiring = False
    Deferred.__init__ = _init
    Deferred._startRunCallbacks = _start_run_callbacks
    _running = core


def stopped(core: Any) -> None:
    """core's workers stopped: a Deferred of its strands fires where it is fired, as on epoll."""
    global _running
    if _running is core:
        _running = None


__all__ = ["running", "stopped"]
