"""signal.signal() and signal.set_wakeup_fd() in a callback: Python lets only the main thread
make them, and the stock loops run every callback there; with several workers tm runs callbacks
on worker threads and hands those calls to the main thread (tm._main_thread)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from tm_twisted import TMReactor
from twisted_helpers import run_bounded


@pytest.fixture
def loop(each_loop):
    return each_loop


@pytest.fixture
def sigusr1():
    """SIGUSR1's handler, put back after the test."""
    previous = signal.getsignal(signal.SIGUSR1)
    yield previous
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.timeout(30)
def test_a_coroutine_installs_a_signal_handler_that_then_runs(loop, sigusr1):
    caught: list = []

    def handler(signum, frame):
        caught.append(signum)

    async def main():
        replaced = signal.signal(signal.SIGUSR1, handler)
        installed = signal.getsignal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR1)  # Python runs the handler on the main thread
        for _ in range(500):
            if caught:
                break
            await asyncio.sleep(0.01)
        return replaced, installed

    replaced, installed = loop.run_until_complete(main())
    assert replaced == sigusr1
    assert installed is handler
    assert caught == [signal.SIGUSR1]


@pytest.mark.timeout(30)
def test_a_coroutine_sets_the_wakeup_descriptor(loop):
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    async def main():
        previous = signal.set_wakeup_fd(write_end)
        return previous, signal.set_wakeup_fd(previous)

    try:
        _, set_by_the_coroutine = loop.run_until_complete(main())
    finally:
        os.close(read_end)
        os.close(write_end)
    assert set_by_the_coroutine == write_end


@pytest.mark.timeout(30)
def test_a_loop_on_another_thread_refuses_signal_handlers_as_asyncio_does(loop, sigusr1):
    outcome: list = []

    async def main():
        try:
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        except ValueError as error:
            outcome.append(error)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    thread.join(20)
    assert len(outcome) == 1 and "main thread" in str(outcome[0])
    assert signal.getsignal(signal.SIGUSR1) == sigusr1


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.timeout(30)
def test_a_delayed_call_installs_a_signal_handler(workers, sigusr1):
    reactor = TMReactor(workers=workers)
    outcome: list = []

    def handler(signum, frame):
        pass

    def install():
        try:
            outcome.append(signal.signal(signal.SIGUSR1, handler))
            outcome.append(signal.getsignal(signal.SIGUSR1))
        except BaseException as error:  # the test's failure, reported below
            outcome.append(error)
        finally:
            reactor.stop()

    reactor.callLater(0.01, install)
    run_bounded(reactor, 20)
    assert outcome == [sigusr1, handler]
