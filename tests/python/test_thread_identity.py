"""A callback's thread, as Python shows it, is the thread that runs the loop (tm._thread_identity).

The stock loops run every callback on that thread: `threading.current_thread()` there is
`MainThread` under `asyncio.run()` or `twistd`, which logging's `%(threadName)s`, checks of
`current_thread() is main_thread()` and Twisted's `isInIOThread()` read. With several workers the
callbacks run on the reactor's threads, which showed as `Dummy-1`, `Dummy-2`, ... and stayed in
`threading.enumerate()` after the loop (on 3.11). Each test compares with the default loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading

import pytest
from twisted.internet import protocol
from twisted.python import threadable

from conftest import LOOP_FACTORIES
from tm_twisted import TMReactor
from twisted_helpers import run_bounded

CONNECTIONS = 8


@pytest.fixture
def loop(each_loop):
    return each_loop


@pytest.fixture
def thread_log():
    """A logger whose records print `%(threadName)s %(message)s` into a StringIO."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
    logger = logging.getLogger("tm-test-thread-identity")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


async def serve_and_record(seen: list, logger: logging.Logger) -> None:
    """An echo server and CONNECTIONS clients at once; every callback and coroutine records its
    thread and logs a line."""
    loop = asyncio.get_running_loop()

    def record(where: str) -> None:
        seen.append(threading.current_thread())
        logger.info(where)

    async def handle(reader, writer):
        record("handler")
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client(i: int) -> bytes:
        record("client")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * (i + 1))
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    loop.call_soon(record, "call_soon")
    timer_ran = loop.create_future()
    loop.call_later(0.001, lambda: (record("call_later"), timer_ran.set_result(None)))
    echoed = await asyncio.gather(*(client(i) for i in range(CONNECTIONS)))
    await timer_ran
    server.close()
    await server.wait_closed()
    assert echoed == [b"x" * (i + 1) for i in range(CONNECTIONS)]


@pytest.mark.timeout(30)
def test_callbacks_run_on_the_thread_that_runs_the_loop(loop, thread_log):
    logger, out = thread_log
    seen: list = []
    before = threading.enumerate()
    loop.run_until_complete(serve_and_record(seen, logger))
    assert len(seen) == 2 * CONNECTIONS + 2
    assert {t.name for t in seen} == {"MainThread"}
    assert all(t is threading.main_thread() for t in seen)
    assert set(out.getvalue().splitlines()) == {
        "MainThread call_soon",
        "MainThread call_later",
        "MainThread client",
        "MainThread handler",
    }
    # The workers are gone, and so are their entries: nothing left to reuse their identifiers.
    assert threading.enumerate() == before


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(LOOP_FACTORIES))
def test_a_loop_run_by_a_thread_of_its_own_shows_that_thread(kind, thread_log):
    logger, out = thread_log
    seen: list = []
    failures: list = []

    def run_loop() -> None:
        loop = LOOP_FACTORIES[kind]()
        try:
            loop.run_until_complete(serve_and_record(seen, logger))
        except BaseException as error:  # reported by the main thread's assertion below
            failures.append(error)
        finally:
            loop.close()

    runner = threading.Thread(target=run_loop, name="loop-runner")
    runner.start()
    runner.join()
    assert not failures
    assert seen and all(t is runner for t in seen)
    assert {line.split()[0] for line in out.getvalue().splitlines()} == {"loop-runner"}
    assert runner not in threading.enumerate()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("workers", [1, 2])
def test_twisted_callbacks_run_on_the_reactor_thread(workers):
    reactor = TMReactor(workers=workers)
    seen: list = []

    class Record(protocol.Protocol):
        def dataReceived(self, data):
            seen.append((threading.current_thread(), threadable.isInIOThread()))
            self.transport.write(data)

    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"ping")

        def dataReceived(self, data):
            seen.append((threading.current_thread(), threadable.isInIOThread()))
            self.transport.loseConnection()
            done.append(data)
            if len(done) == CONNECTIONS:
                reactor.stop()

    done: list = []
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Record), interface="127.0.0.1")
    factory = protocol.ClientFactory.forProtocol(Client)
    for _ in range(CONNECTIONS):
        reactor.callLater(0, reactor.connectTCP, "127.0.0.1", port.getHost().port, factory)
    before = threading.enumerate()
    run_bounded(reactor, 20)
    assert done == [b"ping"] * CONNECTIONS
    assert len(seen) == 2 * CONNECTIONS
    assert all(t is threading.main_thread() and io_thread for t, io_thread in seen)
    assert threading.enumerate() == before
