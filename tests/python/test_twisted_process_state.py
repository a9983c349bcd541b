"""Twisted's process-wide objects under TMReactor: each is used where its owner runs.

`task.cooperate` gives an iterator to a Cooperator of the calling strand (tm_twisted._cooperators),
so a connection's cooperative task is stepped, paused and resumed on its own strand; a call from
another strand is carried out on the task's strand. The reactor's thread pool is made once.
docs/TWISTED.md "Process-wide state inside Twisted".
"""

import threading

import pytest
import twisted.internet
from twisted.internet import task

from tm import _core
from tm_twisted import TMReactor
from tm_twisted import _cooperators
from twisted_helpers import run_bounded


@pytest.fixture
def global_tm_reactor(monkeypatch):
    """A TMReactor that `from twisted.internet import reactor` returns, for this test only."""

    def make(workers):
        reactor = TMReactor(workers)
        monkeypatch.setattr(twisted.internet, "reactor", reactor, raising=False)
        monkeypatch.setattr(task, "_theCooperator", task._theCooperator)
        _cooperators.install()
        return reactor

    return make


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_steps_on_the_strand_that_made_it(global_tm_reactor, workers):
    reactor = global_tm_reactor(workers)
    # With the GIL (one strand) these are all the same strand.
    strands = [reactor._core.make_strand() for _ in range(4)]
    steps = [[] for _ in strands]  # the strand each step of task i ran on
    done = []

    def work(i):
        for _ in range(20):
            steps[i].append(_core.current_strand())
            yield None

    def start(i):
        task.coiterate(work(i)).addCallback(lambda _: done.append(i))

    for i, s in enumerate(strands):
        reactor._core.post(lambda i=i: start(i), strand=s)

    def check():
        if len(done) == len(strands):
            reactor.stop()
        else:
            reactor.callLater(0.01, check)

    reactor.callLater(0.01, check)
    run_bounded(reactor, timeout=10)
    for i, s in enumerate(strands):
        assert steps[i] == [s] * 20
    assert len(task._theCooperator) == 0  # idle Cooperators are dropped


def test_pause_and_resume_from_another_strand_run_on_the_tasks_strand(global_tm_reactor):
    reactor = global_tm_reactor(2)
    owner, other = reactor._core.make_strand(), reactor._core.make_strand()
    ran_on = []
    made = []

    def work():
        while True:
            ran_on.append(_core.current_strand())
            yield None

    def start():
        made.append(task.cooperate(work()))
        # Armed once the task exists: the other strand may run on the other worker at once.
        reactor._core.call_at(_core.monotonic() + 0.05, pause_then_resume, strand=other)

    def pause_then_resume():
        made[0].pause()
        made[0].resume()
        reactor.callLater(0.05, finish)

    def finish():
        made[0].stop()
        reactor.stop()

    reactor._core.post(start, strand=owner)
    run_bounded(reactor, timeout=10)
    assert ran_on and set(ran_on) == {owner}


def test_the_thread_pool_is_made_once():
    reactor = TMReactor(2)
    pools = []
    barrier = threading.Barrier(8)

    def get():
        barrier.wait()
        pools.append(reactor.getThreadPool())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in pools}) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_made_outside_callbacks_runs_on_the_main_strand(global_tm_reactor, workers):
    reactor = global_tm_reactor(workers)
    ran_on = []

    def work():
        for _ in range(5):
            ran_on.append(_core.current_strand())
            yield None

    task.coiterate(work()).addCallback(lambda _: reactor.stop())
    run_bounded(reactor, timeout=10)
    assert ran_on == [reactor._mainStrand] * 5


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tick_is_posted_and_stopping_the_cooperator_cancels_it(global_tm_reactor, workers):
    # A strand's Cooperator ticks by posts on its strand, not delayed calls; stop() (or the last
    # task leaving) cancels a tick not yet run, as cancelling Twisted's delayed call does.
    reactor = global_tm_reactor(workers)
    strand = reactor._core.make_strand()
    stepped = []
    seen = {}

    def work(name):
        while True:
            stepped.append(name)
            yield None

    def start():
        before = reactor.getDelayedCalls()  # run_bounded's guard
        task.cooperate(work("stopped"))
        cooperator = task._theCooperator._cooperatorHere()
        seen["pending"] = cooperator._delayedCall
        seen["new delayed calls"] = [c for c in reactor.getDelayedCalls() if c not in before]
        cooperator.stop()
        reactor.callLater(0.05, reactor.stop)

    reactor._core.post(start, strand=strand)
    run_bounded(reactor, timeout=10)
    assert isinstance(seen["pending"], _cooperators._PostedTick)
    assert seen["new delayed calls"] == []
    assert stepped == []
