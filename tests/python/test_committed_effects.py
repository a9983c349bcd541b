"""What a reactor callback does once it commits happens exactly once, whatever aborts its commit
suffers; abort injection reaches those aborts.

A Twisted callback is an irrevocable transaction: its body runs once. When its commit aborts
(a conflict-free update that meets the inevitable transaction's read, or an injected abort), only
its conflict-free operations are replayed, and every effect it registered (a native socket write,
a close, a timer, a Python on-commit hook) must still run, once, at the commit that happens.
"""

import socket
import sys
import threading
import time

import pytest
from twisted.internet import protocol

import tm
from tm_twisted import TMReactor
from tm_twisted import _native_stream
from twisted_helpers import run_bounded

pytestmark = pytest.mark.skipif(
    not _native_stream.available(), reason="tm._core has no native stream transports"
)

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


@pytest.fixture(autouse=True)
def _no_injection_after():
    yield
    tm.set_abort_injection(0.0)


def injected_aborts():
    return tm.stats()["aborts"]["injected"]


def recv_exactly(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    chunks, got = [], 0
    while got < n:
        data = sock.recv(n - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def counting_protocol(reactor, hits, hooks, log):
    """A protocol that bumps a shared tm.Counter and appends to a tm.Log (conflict-free updates),
    then writes, registers an on-commit hook and, on "bye", closes from a timer: each an effect a
    commit must not lose. The shared objects are closed over, not read from the (managed) factory,
    whose first read would make the callback inevitable and so immune to aborts."""

    class Counting(protocol.Protocol):
        def dataReceived(self, data):
            for line in data.split(b"\n"):
                if not line:
                    continue
                hits.add(1)
                log.append(line)
                self.transport.write(b"echo:" + line + b"\n")
                tm.on_commit(lambda: hooks.append(line))  # no transaction of its own
                if line == b"bye":
                    reactor.callLater(0, self.transport.loseConnection)

    return Counting


@pytest.mark.parametrize("workers", [1, 2])
def test_every_effect_of_a_callback_survives_injected_commit_aborts(workers):
    reactor = TMReactor(workers)
    hits, hooks, log = tm.Counter(), [], tm.Log()
    factory = protocol.Factory.forProtocol(counting_protocol(reactor, hits, hooks, log))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    clients, lines = 4, 50
    replies, errors = {}, []

    def client(i):
        try:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
                expected = b""
                for j in range(lines):
                    line = b"c%d-%d" % (i, j)
                    s.sendall(line + b"\n")
                    expected += b"echo:" + line + b"\n"
                    assert recv_exactly(s, len(b"echo:" + line + b"\n")) == (
                        b"echo:" + line + b"\n"
                    )
                s.sendall(b"bye\n")
                replies[i] = recv_exactly(s, len(b"echo:bye\n"))
                s.settimeout(10)
                assert s.recv(1) == b"", "the server's close after 'bye' never came"
        except BaseException as e:  # reported after the run
            errors.append(e)

    def drive():
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        reactor.callFromThread(reactor.stop)

    tm.reset_stats()
    tm.set_abort_injection(1.0, 20261204)  # every commit that can abort does, until escalation
    reactor.callWhenRunning(threading.Thread(target=drive, daemon=True).start)
    run_bounded(reactor, 90)
    injected = injected_aborts()
    tm.set_abort_injection(0.0)
    assert not errors, errors[0]
    assert all(replies[i] == b"echo:bye\n" for i in range(clients))
    total = clients * (lines + 1)
    assert int(hits) == total
    assert len(hooks) == total
    assert len(log) == total
    assert injected >= total, f"only {injected} injected aborts for {total} callbacks"


@pytest.mark.skipif(not FREE_THREADED, reason="needs two connections' callbacks at once")
def test_a_write_whose_commit_meets_the_inevitable_transaction_is_sent_once():
    """The reproduction of the lost write: connection A's callback reads `hits` (so it holds the
    inevitable token and has marked the counter) and waits; meanwhile connection B's callback adds
    to `hits` and writes. B's commit must abort (cause inevitable), wait, replay the add, and
    still send its echo once."""
    reactor = TMReactor(2)
    holding, release = threading.Event(), threading.Event()
    hits = tm.Counter()

    connected = threading.Semaphore(0)

    class Server(protocol.Protocol):
        def connectionMade(self):
            connected.release()

        def dataReceived(self, data):
            if data == b"hold":
                _ = int(hits)  # a read: this callback becomes inevitable
                holding.set()
                release.wait(10)
                self.transport.write(b"held")
            else:
                hits.add(1)
                self.transport.write(b"echo:" + data)

    factory = protocol.Factory.forProtocol(Server)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    result, errors = {}, []

    def drive():
        try:
            address = ("127.0.0.1", port.getHost().port)
            with (
                socket.create_connection(address, 10) as a,
                socket.create_connection(address, 10) as b,
            ):
                # Both connections accepted first: an accept that touches the managed factory
                # waits for A's token and would hold the second worker that B needs.
                for _ in range(2):
                    assert connected.acquire(timeout=10), "the server never accepted"
                a.sendall(b"hold")
                assert holding.wait(10), "the holding callback never ran"
                b.sendall(b"ping")
                # B's callback runs and its commit meets A's mark: wait for that abort (a loaded
                # machine can take long to schedule B), then let A finish.
                deadline = time.monotonic() + 10
                while tm.stats()["aborts"]["inevitable"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                release.set()
                result["a"] = recv_exactly(a, 4)
                result["b"] = recv_exactly(b, 9, timeout=5)
        except BaseException as e:
            errors.append(e)
        finally:
            release.set()
            reactor.callFromThread(reactor.stop)

    tm.reset_stats()
    reactor.callWhenRunning(threading.Thread(target=drive, daemon=True).start)
    run_bounded(reactor, 30)
    assert not errors, errors[0]
    assert result == {"a": b"held", "b": b"echo:ping"}
    assert int(hits) == 1
    assert tm.stats()["aborts"]["inevitable"] >= 1, "B's commit never met A's mark"


@pytest.mark.parametrize("workers", [1, 2])
def test_abort_injection_reaches_reactor_callbacks(workers):
    """Callbacks that do nothing but conflict-free updates and effects: each commit is a point
    where a real conflict can abort them, so injection at probability 1 must abort them all."""
    reactor = TMReactor(workers)
    hits = tm.Counter()
    calls = 200

    def bump(i):
        hits.add(1)
        if i == calls - 1:
            reactor.stop()

    tm.reset_stats()
    tm.set_abort_injection(1.0, 7)
    for i in range(calls):
        reactor.callLater(0, bump, i)
    run_bounded(reactor, 30)
    injected = injected_aborts()
    tm.set_abort_injection(0.0)
    assert int(hits) == calls
    assert injected >= calls


def test_an_atomic_block_keeps_its_hooks_across_injected_aborts():
    hits, ran = tm.Counter(), []
    tm.reset_stats()
    tm.set_abort_injection(1.0, 5)
    with tm.atomic():
        hits.add(1)
        tm.on_commit(lambda: ran.append("commit"))
        tm.on_abort(lambda: ran.append("abort"))
    injected = injected_aborts()
    tm.set_abort_injection(0.0)
    assert ran == ["commit"]
    assert int(hits) == 1
    assert injected >= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_delayed_call_made_in_an_abandoned_block_never_runs_nor_holds_up_shutdown(workers):
    # docs/GUARANTEES.md: a timer takes effect at the commit, never for an abandoned transaction.
    # A DelayedCall registered anyway also kept the reactor's shutdown waiting for it forever.
    reactor = TMReactor(workers)
    ran = []
    with pytest.raises(ValueError):
        with tm.atomic():
            reactor.callLater(0.01, ran.append, "abandoned")
            raise ValueError
    assert reactor.getDelayedCalls() == []

    def in_a_callback():
        with tm.atomic():  # nested in the callback's transaction, which commits
            reactor.callLater(0.01, ran.append, "committed")
        reactor.callLater(0.1, reactor.stop)

    reactor.callWhenRunning(lambda: reactor.callLater(0, in_a_callback))
    run_bounded(reactor, timeout=10)
    assert ran == ["committed"]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_asyncio_timer_made_in_an_abandoned_block_never_runs(workers):
    import tm_asyncio

    loop = tm_asyncio.EventLoop(workers=workers)
    ran = []
    try:
        with pytest.raises(ValueError):
            with tm.atomic():
                loop.call_later(0.01, ran.append, "abandoned")
                raise ValueError
        with tm.atomic():
            loop.call_later(0.02, ran.append, "committed")
        loop.call_later(0.1, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert ran == ["committed"]
