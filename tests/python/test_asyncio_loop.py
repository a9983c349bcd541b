"""tm_asyncio.EventLoop against asyncio's default loop: every test body runs on both."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tm_asyncio


def _default_loop():
    return asyncio.new_event_loop()


def _tm_one_worker():
    # The serial loop (the default under the GIL; on a free-threaded interpreter the default is a
    # worker per core): asyncio's behaviour on one thread.
    return tm_asyncio.EventLoop(workers=1)


def _tm_two_workers():
    # Callbacks on two worker threads, one at a time (the loop's strand): asyncio's behaviour too.
    return tm_asyncio.EventLoop(workers=2, parallel=False)


def _tm_parallel():
    # Each stream connection on a strand of its own (native transports): docs/ASYNCIO.md.
    return tm_asyncio.EventLoop(workers=2, parallel=True)


@pytest.fixture(
    params=[
        _default_loop,
        tm_asyncio.new_event_loop,
        _tm_one_worker,
        _tm_two_workers,
        _tm_parallel,
    ],
    ids=["default", "tm", "tm-1-worker", "tm-2-workers", "tm-parallel"],
)
def loop(request):
    loop = request.param()
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    asyncio.set_event_loop(None)


def _run(loop, coro, timeout=10):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.mark.timeout(20)
def test_loop_type(loop):
    async def main():
        return asyncio.get_running_loop()

    assert _run(loop, main()) is loop


@pytest.mark.timeout(20)
def test_call_soon_order(loop):
    seen = []

    def record(i):
        seen.append(i)
        if i == 2:
            loop.call_soon(record, 5)
            loop.call_soon(loop.stop)

    for i in range(5):
        loop.call_soon(record, i)
    loop.run_forever()
    assert seen == [0, 1, 2, 3, 4, 5]


@pytest.mark.timeout(20)
def test_call_soon_cancel_and_context(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in context")
    seen = []
    handle = loop.call_soon(seen.append, "cancelled")
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    handle.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["in context", "unset"]


@pytest.mark.timeout(20)
def test_call_later_call_at_order_and_cancel(loop):
    seen = []
    now = loop.time()
    loop.call_later(0.06, seen.append, "later 0.06")
    loop.call_at(now + 0.02, seen.append, "at 0.02")
    cancelled = loop.call_later(0.04, seen.append, "cancelled")
    loop.call_later(0.01, seen.append, "later 0.01")
    timer = loop.call_at(now + 0.1, loop.stop)
    assert isinstance(timer, asyncio.TimerHandle)
    assert timer.when() == now + 0.1
    cancelled.cancel()
    assert cancelled.cancelled()
    loop.run_forever()
    assert seen == ["later 0.01", "at 0.02", "later 0.06"]
    assert loop.time() >= now + 0.1


@pytest.mark.timeout(20)
def test_time_is_monotonic(loop):
    import time

    assert abs(loop.time() - time.monotonic()) < 1.0


@pytest.mark.timeout(20)
def test_call_soon_threadsafe_from_thread(loop):
    seen = []

    def worker():
        for i in range(100):
            loop.call_soon_threadsafe(seen.append, i)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(threading.Thread(target=worker).start)
    loop.run_forever()
    assert seen == list(range(100))


@pytest.mark.timeout(20)
def test_tcp_echo_streams(loop):
    async def handle(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert isinstance(writer.transport, asyncio.Transport)
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        payload = b"x" * 200_000
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        received = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return received, payload

    received, payload = _run(loop, main())
    assert received == payload


@pytest.mark.timeout(20)
def test_create_task_gather(loop):
    async def square(i):
        await asyncio.sleep(0.01 * (5 - i))
        return i * i

    async def main():
        task = asyncio.create_task(square(7), name="seven")
        assert task.get_name() == "seven"
        results = await asyncio.gather(*(square(i) for i in range(5)))
        return results, await task

    assert _run(loop, main()) == ([0, 1, 4, 9, 16], 49)


@pytest.mark.timeout(20)
def test_run_in_executor(loop):
    async def main():
        caller = threading.get_ident()
        ident = await asyncio.get_running_loop().run_in_executor(None, threading.get_ident)
        return caller, ident, await asyncio.to_thread(sum, [1, 2, 3])

    caller, ident, total = _run(loop, main())
    assert ident != caller
    assert total == 6


@pytest.mark.timeout(20)
def test_exception_handler_called(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    assert loop.get_exception_handler() is not None

    def boom():
        raise ZeroDivisionError("boom")

    loop.call_soon(boom)
    loop.call_later(0.01, boom)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert len(contexts) == 2
    assert all(isinstance(c["exception"], ZeroDivisionError) for c in contexts)
    assert all("handle" in c for c in contexts)


@pytest.mark.timeout(20)
def test_keyboard_interrupt_leaves_run_forever(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.timeout(20)
def test_add_reader_writer(loop):
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    seen = []

    def on_writable():
        loop.remove_writer(a.fileno())
        a.send(b"ping")

    def on_readable():
        seen.append(b.recv(10))
        assert loop.remove_reader(b.fileno())
        loop.stop()

    loop.add_reader(b.fileno(), on_readable)
    loop.add_writer(a.fileno(), on_writable)
    try:
        loop.run_forever()
        assert seen == [b"ping"]
        assert not loop.remove_reader(b.fileno())
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(20)
def test_close(loop):
    loop.call_later(10, lambda: None)
    loop.call_soon(lambda: None)
    assert not loop.is_running()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    with pytest.raises(RuntimeError):
        loop.call_soon(lambda: None)
    with pytest.raises(RuntimeError):
        loop.run_forever()


@pytest.mark.timeout(20)
def test_close_while_running_raises(loop):
    async def main():
        with pytest.raises(RuntimeError):
            loop.close()

    _run(loop, main())


@pytest.mark.timeout(20)
def test_run_and_policy():
    async def main():
        return type(asyncio.get_running_loop())

    assert tm_asyncio.run(main()) is tm_asyncio.EventLoop
    policy = tm_asyncio.EventLoopPolicy()
    new = policy.new_event_loop()
    try:
        assert isinstance(new, tm_asyncio.EventLoop)
    finally:
        new.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_add_signal_handler_from_a_coroutine_on_a_worker(workers):
    """asyncio's usual SIGTERM handling works with several workers (handlers need the main thread)."""
    import os
    import signal

    import tm_asyncio

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "usr1")
        with pytest.raises(TypeError):  # raised to the caller, as the stock loop does
            loop.add_signal_handler(signal.SIGUSR1, main)
        os.kill(os.getpid(), signal.SIGUSR1)
        result = await asyncio.wait_for(got, 5)
        assert loop.remove_signal_handler(signal.SIGUSR1)
        return result

    loop = tm_asyncio.EventLoop(workers=workers)
    try:
        assert loop.run_until_complete(main()) == "usr1"
    finally:
        loop.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_asyncgens_finalizes_generators_first_iterated_on_a_worker(workers):
    """The loop's async-generator hooks are set on whichever thread runs a callback."""
    finalized = []

    async def numbers():
        try:
            for i in range(10):
                yield i
        finally:
            finalized.append("closed")

    async def main():
        generator = numbers()
        assert await generator.__anext__() == 0  # suspended, not exhausted
        return generator

    loop = tm_asyncio.EventLoop(workers=workers)
    try:
        generator = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert finalized == ["closed"]
        del generator
    finally:
        loop.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_hold_the_loops_thread_state_for_a_run_and_let_go_of_it_after(workers):
    """A worker keeps the running loop from its first callback on (not set again per callback);
    the workers live for one run, so a second run's see the loop too and a closed loop is freed."""
    import gc
    import weakref

    loop = tm_asyncio.EventLoop(workers=workers)
    seen = []

    def callback():
        seen.append((asyncio.get_running_loop(), threading.get_ident()))

    for _ in range(2):  # two runs: the second run's worker threads are new ones
        for _ in range(20):
            loop.call_soon(callback)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert len(seen) == 40 and all(running is loop for running, _ in seen)
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # not on the thread that ran run_forever, once it returned
    loop.close()
    ref = weakref.ref(loop)
    del loop, seen, callback
    gc.collect()
    assert ref() is None


@pytest.mark.timeout(20)
def test_callbacks_scheduled_by_callbacks_wait_for_ready_io(loop):
    """As asyncio's iteration: what a callback schedules runs after the I/O callbacks the next
    poll finds, so a callback that keeps rescheduling itself does not starve a ready reader (a
    ready queue drained until empty would run the whole chain first)."""
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    a.send(b"ready")
    count = [0]
    seen = []

    def chain():
        count[0] += 1
        if count[0] < 1000:
            loop.call_soon(chain)
        else:
            loop.stop()

    def on_readable():
        seen.append((b.recv(10), count[0]))
        loop.remove_reader(b.fileno())

    loop.add_reader(b.fileno(), on_readable)
    loop.call_soon(chain)
    try:
        loop.run_forever()
    finally:
        a.close()
        b.close()
    assert count[0] == 1000
    assert len(seen) == 1 and seen[0][0] == b"ready"
    assert seen[0][1] <= 3, seen  # asyncio's loop: 1, the first callback's iteration


@pytest.mark.timeout(20)
def test_callbacks_scheduled_by_callbacks_wait_for_due_timers(loop):
    """A due timer runs although callbacks keep scheduling callbacks (asyncio moves due timers to
    its ready queue at every iteration)."""
    count = [0]
    fired = []

    def chain():
        count[0] += 1
        if count[0] < 20000 and not fired:
            loop.call_soon(chain)
        else:
            loop.stop()

    loop.call_later(0.01, lambda: fired.append(count[0]))
    loop.call_soon(chain)
    loop.run_forever()
    assert fired and fired[0] < 20000


@pytest.mark.timeout(20)
def test_a_timer_due_at_once_runs_after_the_callbacks_ready_before_it(loop):
    """A callback's call_soon() runs before its call_at() for a deadline already past: asyncio
    moves due timers behind what is ready (wait_for's timeout of 1e-6 must not cancel a task
    created just before it ahead of the task's first step)."""
    seen = []

    def schedule(round_):
        if round_ == 50:
            loop.stop()
            return
        loop.call_soon(seen.append, ("soon", round_))
        loop.call_at(loop.time(), seen.append, ("timer", round_))
        loop.call_later(0.002, schedule, round_ + 1)

    loop.call_soon(schedule, 0)
    loop.run_forever()
    assert seen == [(kind, n) for n in range(50) for kind in ("soon", "timer")]


@pytest.mark.timeout(20)
def test_call_soon_order_across_batches_and_stop(loop):
    """FIFO across what runs in one go and what callbacks schedule; stop() ends the run after the
    callbacks already ready, and those scheduled meanwhile run at the next one, in order."""
    seen = []

    def first():
        seen.append("first")
        loop.call_soon(seen.append, "scheduled by first")
        loop.call_soon(later)

    def later():
        seen.append("later")
        loop.call_soon(seen.append, "scheduled by later")

    loop.call_soon(first)
    loop.call_soon(seen.append, "second")
    loop.call_soon(seen.append, "third")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # The default loop stops once the callbacks ready at stop() have run; tm's stop() also lets
    # those queued before it was called run first. The order is the same either way.
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [
        "first",
        "second",
        "third",
        "scheduled by first",
        "later",
        "scheduled by later",
    ]


@pytest.mark.parametrize("schedule", ["call_soon", "call_later"])
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.timeout(20)
def test_a_callback_scheduled_in_an_aborted_transaction_never_runs(workers, schedule):
    """A callback scheduled in a transaction (call_soon, or a timer, which joins the loop's heap
    by a post at the commit) runs only if the transaction commits: not from a `with tm.atomic():`
    block an exception abandons, nor from the aborted attempts of a restartable transaction
    (injected aborts), and once from the attempt that commits."""
    import tm

    loop = tm_asyncio.EventLoop(workers=workers)
    seen = []
    attempts = []
    counter = tm.Var(0)

    def soon(fn, *args):
        if schedule == "call_soon":
            loop.call_soon(fn, *args)
        else:
            loop.call_later(0.001, fn, *args)

    def restartable():
        attempts.append(len(attempts) + 1)
        soon(seen.append, f"attempt {attempts[-1]}")
        counter.value = counter.value + 1  # a managed access: where injected aborts strike

    try:
        with pytest.raises(ValueError):
            with tm.atomic():
                soon(seen.append, "abandoned")
                raise ValueError
        with tm.atomic():
            soon(seen.append, "committed")
        tm.set_abort_injection(1.0, 3)
        try:
            tm.run_atomic(restartable)
        finally:
            tm.set_abort_injection(0.0)
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(attempts) > 1  # some attempts aborted
    assert seen == ["committed", f"attempt {attempts[-1]}"]


@pytest.mark.timeout(20)
def test_callbacks_after_one_that_leaves_run_forever_wait_for_the_next_run(loop):
    """A callback's KeyboardInterrupt leaves run_forever at once: the callbacks ready after it
    (on tm, the rest of the batch) run at the next run, in order, before those queued since."""
    if isinstance(loop, tm_asyncio.EventLoop) and loop.workers > 1:
        # Asio's strand runs the handlers it has taken for a turn even after the reactor stops.
        pytest.skip("with several workers the callbacks queued behind it still run")
    seen = []

    def interrupt():
        seen.append("interrupt")
        raise KeyboardInterrupt

    for name in ("a", "interrupt", "b", "c"):
        loop.call_soon(
            interrupt if name == "interrupt" else seen.append,
            *([] if name == "interrupt" else [name]),
        )
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert seen == ["a", "interrupt"]
    loop.call_soon(seen.append, "d")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["a", "interrupt", "b", "c", "d"]
