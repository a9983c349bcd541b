"""gc.collect() in a callback on a worker frees the dead objects other threads own before it
returns (tm._collect): with the GIL off, biased reference counting queues them for their owner,
here the thread blocked in run(), which would close their descriptors only at its next tick."""

import gc
import os
import select

import pytest

from tm_twisted import TMReactor
from twisted_helpers import run_bounded


class Holder:
    pass


def _dead_cycle_holding_a_descriptor(links):
    """A cycle, made by this thread, that holds a select.epoll (an object the collector does not
    track) through `links` more objects, garbage once this returns; returns the descriptor.

    As an earlier test's reactor in Twisted's suite: a dead cycle holds the reactor, which holds
    its epoll; each link is one more collection before the epoll is freed (tm._collect)."""
    cycle = Holder()
    cycle.cycle = cycle
    holder = cycle
    for _ in range(links):
        holder.next = Holder()
        holder = holder.next
    holder.poller = select.epoll()
    return holder.poller.fileno()


def _is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("links", [0, 1, 3])
def test_collect_in_a_callback_closes_what_the_calling_thread_made(links):
    reactor = TMReactor(workers=2)
    gc.collect()
    fd = _dead_cycle_holding_a_descriptor(links)
    seen = []

    def collect():
        gc.collect()
        seen.append(_is_open(fd))
        reactor.stop()

    reactor.callLater(0, collect)
    # No automatic collection frees the cycle before the callback (its descriptor's number
    # could then belong to another descriptor by the check).
    gc.disable()
    try:
        run_bounded(reactor, 30)
    finally:
        gc.enable()
    assert seen == [False], "the descriptor was still open after gc.collect() returned"


def test_collect_keeps_its_result_and_signature():
    assert gc.collect() >= 0
    assert gc.collect(0) >= 0
    assert gc.collect(generation=2) >= 0
