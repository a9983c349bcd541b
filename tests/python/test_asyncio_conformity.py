"""tm_asyncio against asyncio's default loop: the same program, the same observable behaviour.

Each test runs one scenario on both loops (or checks tm_asyncio's result against what asyncio's
own code produces) for the things issue 18 found different: Ctrl-C and SystemExit, debug-mode
messages, contextvars in protocol callbacks, tasks a protocol starts itself in parallel mode.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tm
import tm_asyncio

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


def _child_environment(**extra: str) -> dict[str, str]:
    """The environment a child needs to import tm and tm_asyncio as this process does."""
    paths = [
        os.path.dirname(os.path.dirname(tm.__file__)),
        os.path.dirname(os.path.dirname(tm_asyncio.__file__)),
    ]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _outcome(script, loop: str, workers: int) -> tuple[int, str, str]:
    """The status, output and errors of `script loop` with TM_WORKERS=workers."""
    done = subprocess.run(
        [sys.executable, str(script), loop],
        env=_child_environment(TM_WORKERS=str(workers)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def _restore_sigint() -> None:
    # A test run as a background job inherits SIGINT ignored, and an ignored SIGINT stays ignored
    # across exec: the child must get the default disposition to see Ctrl-C at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- 1. Ctrl-C and SystemExit leave the loop as they leave asyncio's --------------------------

_IDLE_PROGRAM = textwrap.dedent(
    """
    import asyncio, functools, os, sys
    import tm_asyncio

    factory = tm_asyncio.new_event_loop if sys.argv[1] == "tm" else asyncio.new_event_loop
    mode = sys.argv[2]

    async def idle():
        print("READY", flush=True)
        await asyncio.sleep(100)

    async def stubborn():  # ignores the first Ctrl-C's cancellation: the second one raises
        print("READY", flush=True)
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            print("READY", flush=True)
        await asyncio.sleep(100)

    def run(main):  # asyncio.run(main, loop_factory=factory) from Python 3.12
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)

    if mode == "run":
        run(idle())
    elif mode == "run-twice":
        run(stubborn())
    else:  # run_forever with Python's own SIGINT handler
        loop = factory()
        loop.call_soon(functools.partial(print, "READY", flush=True))
        loop.run_forever()
    """
)


def _interrupt_idle_program(tmp_path, loop_name: str, mode: str, workers: int):
    """Runs the program on loop_name, Ctrl-C once READY (twice for run-twice); returns
    (exit status, stderr, the program's own frames in the traceback)."""
    script = tmp_path / "idle.py"
    script.write_text(_IDLE_PROGRAM)
    child = subprocess.Popen(
        [sys.executable, str(script), loop_name, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_environment(TM_WORKERS=str(workers)),
        preexec_fn=_restore_sigint,
    )
    try:
        for _ in range(2 if mode == "run-twice" else 1):
            assert child.stdout.readline() == "READY\n"
            time.sleep(0.3)  # idle in its sleep by then: the signal must not land in the task
            child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    frames = re.findall(rf'File "{re.escape(str(script))}", line \d+, in \S+', stderr)
    return child.returncode, stderr, frames


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode", ["run", "run-twice", "run_forever"])
def test_ctrl_c_on_an_idle_loop_ends_the_program_as_on_asyncio_s_loop(tmp_path, mode, workers):
    status, stderr, frames = _interrupt_idle_program(tmp_path, "default", mode, workers)
    assert status == -signal.SIGINT and stderr.endswith("KeyboardInterrupt\n"), stderr
    tm_status, tm_stderr, tm_frames = _interrupt_idle_program(tmp_path, "tm", mode, workers)
    assert "Exception ignored" not in tm_stderr
    assert (tm_status, tm_stderr.splitlines()[-1], tm_frames) == (
        status,
        stderr.splitlines()[-1],
        frames,
    ), tm_stderr


_EXIT_WITH_A_THREAD_CALLING_IN = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import tm_asyncio

    loop = (tm_asyncio.new_event_loop if sys.argv[1] == "tm" else asyncio.new_event_loop)()
    ran = threading.Event()

    def call_in():  # as asyncio's threaded child watcher does when a process exits late
        ran.wait()
        while True:
            loop.call_soon_threadsafe(int)

    async def main():
        threading.Thread(target=call_in, daemon=True).start()

    loop.run_until_complete(main())
    ran.set()
    time.sleep(0.05)
    print("exiting", flush=True)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_the_program_exits_while_a_daemon_thread_calls_into_the_loop(tmp_path, workers):
    """Interpreter shutdown ends a daemon thread that calls call_soon_threadsafe() (asyncio's
    threaded child watcher does when a process exits late), as it ends it on asyncio's loop;
    before 3.13 that thread was ended inside the reactor's binding, which aborted the whole
    process ("terminate called without an active exception", status -6)."""
    script = tmp_path / "exit_while_called.py"
    script.write_text(_EXIT_WITH_A_THREAD_CALLING_IN)
    outcomes = {}
    for loop in ("default", "tm"):
        for _ in range(3):  # the thread is inside the binding at shutdown in most runs
            outcomes.setdefault(loop, set()).add(_outcome(script, loop, workers))
    assert outcomes["default"] == {(0, "exiting\n", "")}
    assert outcomes["tm"] == outcomes["default"]


_LOOP_ON_A_THREAD = textwrap.dedent(
    """
    import asyncio, sys, threading
    import tm_asyncio

    factory = tm_asyncio.new_event_loop if sys.argv[1] == "tm" else asyncio.new_event_loop

    async def main():
        await asyncio.sleep(0.01)
        return 42

    def run():
        loop = factory()
        print("result", loop.run_until_complete(main()), flush=True)
        loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    print("joined", flush=True)
    """
)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_loop_run_by_a_thread_of_its_own_ends_with_it(tmp_path, workers):
    """A loop made and run by a thread that then ends, as a program runs a loop beside its main
    thread: with one worker that thread runs the callbacks, and once it had, the end of the thread
    was a fatal error ("PyGILState_Release: auto-releasing thread-state, but no thread-state for
    this thread", status -6 on 3.11)."""
    script = tmp_path / "loop_on_a_thread.py"
    script.write_text(_LOOP_ON_A_THREAD)
    outcomes = {loop: _outcome(script, loop, workers) for loop in ("default", "tm")}
    assert outcomes["default"] == (0, "result 42\njoined\n", "")
    assert outcomes["tm"] == outcomes["default"]


def _leaves_with(loop, schedule, exc_type) -> bool:
    """Whether run_forever() ends with exc_type raised by the callback schedule() arranges."""
    schedule(loop)
    try:
        loop.run_forever()
    except exc_type:
        return True
    return False


def _raise(exc_type):
    def callback(*_args):
        raise exc_type

    return callback


def _from_a_timer(exc_type):
    return lambda loop: loop.call_later(0.01, _raise(exc_type))


def _from_a_reader(exc_type):
    def schedule(loop):
        reader, writer = os.pipe()
        loop.add_reader(reader, _raise(exc_type))
        os.write(writer, b"x")
        loop.call_later(5, loop.stop)  # the control: the test fails instead of hanging

    return schedule


def _from_a_signal_handler(exc_type):
    def schedule(loop):
        loop.add_signal_handler(signal.SIGUSR1, _raise(exc_type))
        loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)

    return schedule


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize(
    "where", [_from_a_timer, _from_a_reader, _from_a_signal_handler], ids=lambda f: f.__name__
)
def test_system_exit_and_keyboard_interrupt_from_any_callback_leave_run_forever(
    where, exc_type, workers
):
    for loop in (asyncio.new_event_loop(), tm_asyncio.EventLoop(workers=workers)):
        try:
            assert _leaves_with(loop, where(exc_type), exc_type), type(loop)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_an_exception_in_a_reader_goes_to_the_exception_handler_as_on_asyncio_s_loop(workers):
    def observe(loop):
        contexts = []
        reader, writer = os.pipe()

        def read():
            os.read(reader, 1)
            loop.remove_reader(reader)
            loop.call_soon(loop.stop)
            raise ValueError("boom")

        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        loop.add_reader(reader, read)
        os.write(writer, b"x")
        loop.run_forever()
        os.close(reader)
        os.close(writer)
        loop.close()
        [context] = contexts
        return context["message"].split(" ")[:3], type(context["exception"]), sorted(context)

    assert observe(tm_asyncio.EventLoop(workers=workers)) == observe(asyncio.new_event_loop())


# -- 2. debug mode's messages name asyncio's classes --------------------------------------------

_LOOPS = {
    "1 worker": dict(workers=1),
    "2 workers": dict(workers=2, parallel=False),
    "parallel": dict(workers=2, parallel=True),
}


def _debug_messages(loop, caplog) -> list[str]:
    """What debug mode logs for a slow callback, a slow task step and a pending task destroyed."""
    import gc

    def slow():
        time.sleep(0.06)

    async def slow_step():
        time.sleep(0.06)

    async def forever():
        await asyncio.sleep(100)

    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    caplog.clear()
    with caplog.at_level("WARNING", logger="asyncio"):
        loop.call_soon(slow)
        loop.run_until_complete(slow_step())
        task = loop.create_task(forever())
        loop.run_until_complete(asyncio.sleep(0.01))
        shown = repr(task)
        loop.close()  # drops the timer that holds the task
        del task
        gc.collect()
    messages = [shown] + [record.getMessage() for record in caplog.records]
    # On a loaded machine another callback can be slow too: only the scenario's count.
    return [
        _comparable(message)
        for message in messages
        if not message.startswith("Executing") or "slow" in message
    ]


def _comparable(message: str) -> str:
    """message without what differs between two runs of one program: task numbers, durations,
    and the frames above the scenario in a source traceback (the test's own lines)."""
    message = re.sub(
        r"took \d\.\d+ seconds", "took N seconds", re.sub(r"Task-\d+", "Task-N", message)
    )
    # A destroyed task's coroutine may or may not have been finalized first (collection order).
    message = re.sub(r"\(\) (running at|done, defined at) \S+", "() <state>", message)
    lines = message.splitlines()
    if "source_traceback: Object created at (most recent call last):" in lines:
        start = lines.index("source_traceback: Object created at (most recent call last):") + 1
        frames = [i for i in range(start, len(lines)) if lines[i].startswith('  File "')]
        lines[start : frames[-1]] = []  # the innermost frame, where the task was created, stays
    return "\n".join(lines)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", list(_LOOPS))
def test_debug_mode_messages_are_asyncio_s(config, caplog):
    expected = _debug_messages(asyncio.new_event_loop(), caplog)
    assert any(m.startswith("Executing <Handle ") and "slow()" in m for m in expected), expected
    assert any(m.startswith("Task was destroyed but it is pending!") for m in expected), expected
    messages = _debug_messages(tm_asyncio.EventLoop(**_LOOPS[config]), caplog)
    if config == "parallel":
        # The one place that differs: a parallel loop's future is made by tm_asyncio's
        # create_future (asyncio's Future with a lock), so its "created at" names that line.
        internal = r"created at \S+/(asyncio/base_events|tm_asyncio/_loop)\.py:\d+"
        expected = [re.sub(internal, "created at <create_future>", m) for m in expected]
        messages = [re.sub(internal, "created at <create_future>", m) for m in messages]
    assert messages == expected


@pytest.mark.timeout(60)
def test_a_slow_step_of_a_connection_s_task_is_reported_as_a_task():
    # In parallel mode a stream handler's task is asyncio's pure-Python task on its connection's
    # strand: debug mode must name its slow step by the task, as asyncio's loop does.
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    async def handler(reader, writer):
        await reader.readline()
        time.sleep(0.06)
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi\n")
        await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    collect = Collect()
    logging.getLogger("asyncio").addHandler(collect)
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 15))
    finally:
        logging.getLogger("asyncio").removeHandler(collect)
        loop.close()
    slow = [m for m in messages if m.startswith("Executing") and "handler()" in m]
    assert slow and slow[0].startswith("Executing <Task "), messages


# -- 3. contextvars reach protocol callbacks as on asyncio's loop --------------------------------

_request = contextvars.ContextVar("request", default="unset")


def _contexts_seen(loop) -> list[str]:
    """What a server protocol's callbacks, a stream handler and a client protocol see of a
    context variable set before create_server/create_connection, and of what they set."""
    seen: list[str] = []

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            seen.append(f"made {_request.get()}")
            _request.set("made")

        def data_received(self, data):
            seen.append(f"data {_request.get()}")
            _request.set("read")
            self.transport.write(data)

        def eof_received(self):
            seen.append(f"eof {_request.get()}")

        def connection_lost(self, exc):
            seen.append(f"lost {_request.get()}")

    class Client(asyncio.Protocol):
        def __init__(self):
            self.replies = asyncio.Queue()
            self.lost = loop.create_future()

        def connection_made(self, transport):
            seen.append(f"client made {_request.get()}")

        def data_received(self, data):
            seen.append(f"client data {_request.get()}")
            self.replies.put_nowait(data)

        def connection_lost(self, exc):
            self.lost.set_result(None)

    async def handler(reader, writer):
        seen.append(f"handler {_request.get()}")
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        _request.set("server")
        server = await loop.create_server(Server, "127.0.0.1", 0)
        streams = await asyncio.start_server(handler, "127.0.0.1", 0)
        _request.set("client")
        transport, client = await loop.create_connection(
            Client, "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        for chunk in (b"a", b"b"):  # two reads: the second sees what the first set
            transport.write(chunk)
            await client.replies.get()
        transport.write_eof()
        await client.lost
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", streams.sockets[0].getsockname()[1]
        )
        writer.write(b"line\n")
        await reader.read()
        writer.close()
        for s in (server, streams):
            s.close()
            await s.wait_closed()
        await asyncio.sleep(0.05)  # the server's connection_lost, wherever it runs

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 15))
    finally:
        loop.close()
    return seen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", list(_LOOPS))
def test_protocol_callbacks_run_in_the_context_asyncio_gives_them(config):
    # Sorted: in parallel mode the server's callbacks run on strands of their own, so their
    # order against the client's may differ; each callback's own observation may not.
    expected = sorted(_contexts_seen(asyncio.new_event_loop()))
    assert {"made server", "data read", "client made client", "handler server"} <= set(expected)
    assert sorted(_contexts_seen(tm_asyncio.EventLoop(**_LOOPS[config]))) == expected


# -- 4. a protocol's own (eager) task in parallel mode -------------------------------------------


class _StartsItsOwnTask(asyncio.Protocol):
    """A server protocol that starts the task serving its connection itself, in
    connection_made, with asyncio.Task(..., eager_start=True) on 3.12+ as aiohttp's server does
    (bypassing loop.create_task); the task answers each line upper-cased."""

    strands: list = []  # (connection's strand, strand of each of the task's steps)

    def connection_made(self, transport):
        self.transport = transport
        self.lines = asyncio.Queue()
        self.buffer = b""
        self.strand = tm_asyncio._tasks.connection_strand()
        loop = asyncio.get_running_loop()
        if sys.version_info >= (3, 12):
            self.task = asyncio.Task(self.serve(), loop=loop, eager_start=True)
        else:
            self.task = asyncio.Task(self.serve(), loop=loop)

    def data_received(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.lines.put_nowait(line)

    def eof_received(self):
        self.lines.put_nowait(None)

    def connection_lost(self, exc):
        self.lines.put_nowait(None)

    async def serve(self):
        sum(range(20000))  # a first step with some work in it, as a request handler's setup
        while (line := await self.lines.get()) is not None:
            self.strands.append((self.strand, tm_asyncio._tasks.connection_strand()))
            await asyncio.sleep(0)
            self.transport.write(line.upper() + b"\n")
        self.transport.close()


async def _load(port: int, clients: int, requests: int) -> list[bytes]:
    async def client(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for j in range(requests):
            writer.write(b"req %d %d\n" % (i, j))
            replies.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return b"".join(replies)

    return await asyncio.gather(*(client(i) for i in range(clients)))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("run", range(4))
def test_a_protocol_s_own_eager_task_runs_on_its_connection_s_strand_under_load(run):
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    _StartsItsOwnTask.strands = []

    async def main():
        server = await loop.create_server(_StartsItsOwnTask, "127.0.0.1", 0)
        replies = await _load(server.sockets[0].getsockname()[1], clients=16, requests=50)
        server.close()
        await server.wait_closed()
        return replies

    try:
        replies = loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()
    assert replies == [b"".join(b"REQ %d %d\n" % (i, j) for j in range(50)) for i in range(16)]
    # Every step of every connection's task ran on that connection's strand.
    assert len(_StartsItsOwnTask.strands) == 16 * 50
    assert all(step is not None and step == made for made, step in _StartsItsOwnTask.strands)


@pytest.mark.parametrize("workers", [1, 2])
def test_timers_due_together_run_before_what_they_schedule(workers):
    # asyncio's iteration moves every due timer to the ready queue before running any of them:
    # two timers with one deadline both run before a callback the first one schedules (two
    # timeouts with one deadline both expire: CPython's test_timeouts.test_nested_timeouts).
    def order(loop):
        seen = []
        done = loop.create_future()

        def first():
            seen.append("first")
            loop.call_soon(seen.append, "scheduled by first")
            loop.call_soon(done.set_result, None)

        deadline = loop.time() + 0.05
        loop.call_at(deadline, first)
        loop.call_at(deadline, seen.append, "second")
        loop.run_until_complete(done)
        return seen

    expected = order(asyncio.new_event_loop())
    loop = tm_asyncio.EventLoop(workers=workers)
    try:
        assert order(loop) == expected == ["first", "second", "scheduled by first"]
    finally:
        loop.close()
