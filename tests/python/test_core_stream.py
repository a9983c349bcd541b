"""tm._core stream transports (TCP v4/v6, Unix) driven by Python handler objects.

Each test runs a tm._core.Reactor bounded by a watchdog timer (a hang fails the test instead of
blocking the suite), then closes everything and drains the reactor. Handlers keep their
bookkeeping in plain objects guarded by a lock: with 2 workers their callbacks run on two
threads.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import sys
import tempfile
import threading
import weakref

import pytest

import tm
from tm import _core


def _has_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()


@pytest.fixture
def unraisable(monkeypatch):
    """Exceptions reported through sys.unraisablehook (handler exceptions go there)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    return seen


class Run:
    """A reactor with a bounded run() and a teardown that closes and drains everything."""

    def __init__(self, workers=1):
        self.reactor = _core.Reactor(workers)
        self.lock = threading.Lock()

    def run(self, start=None, timeout=10.0):
        r = self.reactor
        timed_out = []

        def watchdog():
            timed_out.append(True)
            r.stop()

        timer = r.call_at(_core.monotonic() + timeout, watchdog, fresh=True)
        if start is not None:
            r.post(start, fresh=True)
        r.run()
        timer.cancel()
        assert not timed_out, "the reactor run timed out"
        r.restart()

    def stop(self):
        self.reactor.stop()

    def close(self):
        r = self.reactor
        r.close_all()
        r.run()


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def run(request):
    harness = Run(request.param)
    yield harness
    harness.close()


@pytest.fixture
def run1():
    harness = Run(1)
    yield harness
    harness.close()


@pytest.fixture
def unix_path():
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "sock")


# ---- handlers ------------------------------------------------------------------------------------


class Echo:
    """Server side: echoes everything, records what happened."""

    def __init__(self, log=None):
        self.log = log if log is not None else []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.log.append(("made", _core.current_strand() == transport.strand))

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.log.append(("lost", exc))


class Client:
    """Sends `payload`, closes once as many bytes came back, stops the run when lost."""

    def __init__(self, run, payload, on_lost=None):
        self.run = run
        self.payload = payload
        self.received = b""
        self.lost = "not yet"
        self.transport = None
        self.on_lost = on_lost or run.stop
        self.strand_ok = None

    def connection_made(self, transport):
        self.transport = transport
        self.strand_ok = _core.current_strand() == transport.strand
        transport.write(self.payload)

    def data_received(self, data):
        self.received += data
        if len(self.received) >= len(self.payload):
            self.transport.close()

    def connection_lost(self, exc):
        self.lost = exc
        self.on_lost()


def listen(run, family, factory, unix_path=None, **options):
    if family == "unix":
        return _core.unix_listen(run.reactor, unix_path, factory, **options)
    host = "::1" if family == "v6" else "127.0.0.1"
    return _core.tcp_listen(run.reactor, host, 0, factory, **options)


def connect(run, family, listener, handler, unix_path=None):
    if family == "unix":
        return _core.unix_connect(run.reactor, unix_path, handler)
    host = "::1" if family == "v6" else "127.0.0.1"
    return _core.tcp_connect(run.reactor, host, listener.port, handler)


def run_connection(run, server_factory, client, family="v4", unix_path=None):
    """Listens with server_factory, connects client and runs until a handler stops the run.

    Returns the listener and the client's transport, for the tests that look at them.
    """
    listener = listen(run, family, server_factory, unix_path)
    transport = connect(run, family, listener, client, unix_path)
    run.run()
    return listener, transport


def adopt_socketpair(run, handler):
    """A plain socket, and the transport that handler gets on the other end of the pair."""
    peer, adopted = socket.socketpair()
    return peer, _core.unix_adopt(run.reactor, adopted.detach(), handler)


def send_and_read_to_close(run, peer, data):
    """Sends data and EOF from peer, runs until a handler stops the run, and returns all that peer
    reads until the reactor's end of the connection closes."""
    peer.sendall(data)
    peer.shutdown(socket.SHUT_WR)
    run.run()
    peer.settimeout(5)
    got = b""
    while chunk := peer.recv(65536):
        got += chunk
    peer.close()
    return got


FAMILIES = [
    "v4",
    pytest.param("v6", marks=pytest.mark.skipif(not HAS_IPV6, reason="no ::1")),
    "unix",
]


# ---- echo and addresses --------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", FAMILIES)
def test_echo(run, family, unix_path, unraisable):
    server_log = []
    payload = bytes(range(256)) * 1000
    client = Client(run, payload)
    listener, transport = run_connection(run, lambda: Echo(server_log), client, family, unix_path)
    assert isinstance(transport, _core.StreamTransport)
    assert client.received == payload
    assert client.lost is None
    assert client.strand_ok
    assert client.transport is transport  # connection_made got the object tcp_connect returned
    assert transport.is_closing()
    assert transport.fileno() == -1
    assert transport.write_buffer_size() == 0
    transport.write(b"ignored after close")
    assert server_log[0] == ("made", True)
    listener.close()
    listener.close()  # idempotent
    assert not unraisable


@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", FAMILIES)
def test_addresses(run1, family, unix_path):
    run = run1
    seen = {}

    class Server(Echo):
        def connection_made(self, transport):
            super().connection_made(transport)
            seen["server"] = (transport.local_address(), transport.peer_address())

    class Probe(Client):
        def connection_made(self, transport):
            seen["client"] = (transport.local_address(), transport.peer_address())
            super().connection_made(transport)

    listener, _ = run_connection(run, Server, Probe(run, b"x"), family, unix_path)
    server_local, server_peer = seen["server"]
    client_local, client_peer = seen["client"]
    if family == "unix":
        assert listener.port == 0
        assert listener.local_address() == unix_path
        assert server_local == unix_path and client_peer == unix_path
        assert client_local == "" and server_peer == ""  # the client socket is unbound
    else:
        host = "::1" if family == "v6" else "127.0.0.1"
        expect = (host, listener.port) if family == "v4" else (host, listener.port, 0, 0)
        assert listener.local_address() == expect
        assert listener.port > 0
        assert server_local == expect and client_peer == expect
        assert client_local == server_peer
        assert client_local[0] == host and client_local[1] not in (0, listener.port)
        assert len(client_local) == len(expect)
    assert listener.fileno() >= 0
    listener.close()


@pytest.mark.timeout(30)
def test_handler_calls_run_on_the_connection_strand_in_order(run):
    calls = []

    class Recorder:
        def connection_made(self, t):
            self.t = t
            calls.append(("made", _core.current_strand() == t.strand))
            t.write(b"ping")

        def data_received(self, data):
            calls.append(("data", _core.current_strand() == self.t.strand))

        def eof_received(self):
            calls.append(("eof", _core.current_strand() == self.t.strand))
            return False

        def connection_lost(self, exc):
            calls.append(("lost", _core.current_strand() == self.t.strand))
            run.stop()

    class Once(Echo):
        def data_received(self, data):
            self.transport.write(data)
            self.transport.close()

    listener = listen(run, "v4", Once)
    t = connect(run, "v4", listener, Recorder())
    strand = t.strand
    assert isinstance(strand, _core.Strand) and strand.id != 0
    run.run()
    assert [c[0] for c in calls if c[0] != "data"] == ["made", "eof", "lost"]
    assert all(ok for _, ok in calls)
    assert t.strand == strand


def test_a_strand_is_a_plain_value_type():
    """Strands are made several times per event (current_strand(), a transport's strand): a plain
    CPython type, not a pybind11 class, whose instances would pass through pybind11's instance
    registry and its process-wide lock on a free-threaded interpreter."""
    reactor = _core.Reactor(1)
    a, b = reactor.make_strand(), reactor.make_strand()
    assert _core.Strand.__base__ is object and type(a) is _core.Strand
    assert a.id != b.id and a.id != 0
    assert a == a and a != b and not (a == b)
    assert hash(a) == hash(a.id) and len({a, b, a}) == 2
    assert a != None and not (a == None) and a != a.id  # noqa: E711
    assert repr(a) == f"<tm._core.Strand {a.id}>"
    with pytest.raises(TypeError):
        _core.Strand()
    with pytest.raises(TypeError):
        type("Sub", (_core.Strand,), {})
    with pytest.raises(TypeError):
        reactor.post(print, a.id)  # not a strand
    seen = []
    reactor.post(lambda: seen.append(_core.current_strand()), a)
    reactor.post(reactor.stop, a)
    reactor.run()
    assert seen == [a] and seen[0] is not a and _core.current_strand() is None


def test_a_timer_is_a_plain_value_type_and_call_at_checks_its_arguments():
    """Twisted's callLater and asyncio's timers make a timer per call: a plain CPython type made
    by a builtin call_at, not a pybind11 class (py_timer.hpp). Inside a transaction arming and
    cancelling take effect at its commit, in order, and not at all if it is abandoned."""
    reactor = _core.Reactor(1)
    strand = reactor.make_strand()
    ran = []
    now = _core.monotonic()
    late = reactor.call_at(now + 3600, lambda: ran.append("late"), strand=strand)
    assert _core.Timer.__base__ is object and type(late) is _core.Timer
    assert late.pending and late.deadline == pytest.approx(now + 3600)
    with pytest.raises(TypeError):
        _core.Timer()
    with pytest.raises(TypeError):
        type("Sub", (_core.Timer,), {})
    for bad_call in (
        lambda: reactor.call_at(now),
        lambda: reactor.call_at(fn=print),
        lambda: reactor.call_at("soon", print),
        lambda: reactor.call_at(now, print, strand.id),
        lambda: reactor.call_at(now, print, when=now),
        lambda: reactor.call_at(now, print, later=True),
        lambda: reactor.call_at(now, print, None, False, 1),
        lambda: late.reschedule("soon"),
    ):
        with pytest.raises(TypeError):
            bad_call()
    moved = reactor.call_at(when=now + 3600, fn=lambda: ran.append("moved"), strand=strand)
    moved.reschedule(int(now))
    early = reactor.call_at(now + 3600, lambda: ran.append("early"), strand, False)
    early.reschedule_earlier(now + 0.01)
    early.reschedule_earlier(now + 7200)  # not sooner: stays armed for now + 0.01
    assert early.deadline == pytest.approx(now + 0.01)
    cancelled = reactor.call_at(now, lambda: ran.append("cancelled"), strand=strand)
    cancelled.cancel()
    cancelled.cancel()
    assert not cancelled.pending
    with tm.atomic():
        made_in_a_block = reactor.call_at(now, lambda: ran.append("block"), strand)
        assert not made_in_a_block.pending  # armed at the commit
        made_in_a_block.cancel()  # also at the commit, after the arming
    with pytest.raises(ValueError):
        with tm.atomic():
            abandoned = reactor.call_at(now, lambda: ran.append("abandoned"), strand)
            raise ValueError
    reactor.call_at(now + 0.2, reactor.stop, strand=strand)
    reactor.run()
    assert ran == ["moved", "early"]
    assert not (moved.pending or made_in_a_block.pending or abandoned.pending) and late.pending
    late.cancel()


# ---- writes and transactions ---------------------------------------------------------------------


class Sink:
    """Reads everything until the peer closes; stops the run when lost."""

    def __init__(self, run):
        self.run = run
        self.received = b""
        self.lost = "not yet"

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += data

    def connection_lost(self, exc):
        self.lost = exc
        self.run.stop()


@pytest.mark.timeout(30)
def test_writes_of_an_aborted_atomic_block_are_not_sent(run1):
    run = run1
    sink = Sink(run)
    peer, transport = adopt_socketpair(run, sink)

    class Boom(Exception):
        pass

    with tm.atomic():
        transport.write(b"one,")
    with pytest.raises(Boom):
        with tm.atomic():
            transport.write(b"LOST")
            raise Boom

    def restartable():
        transport.write(b"LOST AGAIN")
        raise Boom

    with pytest.raises(Boom):
        tm.run_atomic(restartable)
    transport.write(bytearray(b"two,"))  # outside a transaction: at once
    with tm.atomic():
        transport.write(memoryview(b"xthree,")[1:])
    with pytest.raises(TypeError):
        transport.write("not bytes")
    with pytest.raises(BufferError):
        transport.write(memoryview(b"abcdef")[::2])  # not contiguous
    # the sink's eof closes its side after the writes
    assert send_and_read_to_close(run, peer, b"hi") == b"one,two,three,"
    assert sink.received == b"hi"
    assert sink.lost is None


@pytest.mark.timeout(30)
def test_a_large_bytes_write_is_held_until_sent_then_released(run):
    # A large bytes object is sent from the object itself (no copy): the transport holds a
    # reference until the kernel took its bytes, and lets go of it by the end of the next Python
    # event; an abandoned transaction's write lets go at once. A bytearray is copied: changing it
    # after write() changes nothing sent.
    sink = Sink(run)
    peer, transport = adopt_socketpair(run, sink)
    big = bytes(range(256)) * 16_000  # 4 MB: more than the socket pair buffers
    dropped = b"L" * 100_000
    big_refs, dropped_refs = sys.getrefcount(big), sys.getrefcount(dropped)

    class Boom(Exception):
        pass

    transport.write(big)  # outside a transaction: queued at once; nobody reads yet
    assert sys.getrefcount(big) == big_refs + 1
    with pytest.raises(Boom):
        with tm.atomic():
            transport.write(dropped)
            raise Boom
    assert sys.getrefcount(dropped) == dropped_refs
    mutable = bytearray(b"m" * 100_000)
    with tm.atomic():
        transport.write(mutable)
    mutable[:] = b"z" * 100_000
    transport.write(b"end")

    got = []
    reader = threading.Thread(target=lambda: got.append(read_to_close(peer)))
    reader.start()
    peer.shutdown(socket.SHUT_WR)  # the sink's eof closes its side once the writes are sent
    run.run()
    reader.join(10)
    assert got == [big + b"m" * 100_000 + b"end"]
    assert sink.lost is None
    assert sys.getrefcount(big) == big_refs


def read_to_close(peer):
    peer.settimeout(10)
    chunks = []
    while chunk := peer.recv(1 << 20):
        chunks.append(chunk)
    peer.close()
    return b"".join(chunks)


@pytest.mark.timeout(30)
def test_a_handler_exception_is_reported_and_its_writes_still_go(run1, unraisable):
    # Python callbacks are irrevocable transactions: an exception does not undo what the callback
    # already did (as with the stock loops); it is reported and the connection goes on.
    run = run1

    class Faulty(Sink):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"echo:" + data)
            raise ValueError("handler bug")

    sink = Faulty(run)
    peer, _ = adopt_socketpair(run, sink)
    assert send_and_read_to_close(run, peer, b"x") == b"echo:x"
    assert sink.lost is None
    assert len(unraisable) == 1 and isinstance(unraisable[0], ValueError)


@pytest.mark.timeout(30)
def test_adopted_tcp_connection_and_listener(run1):
    run = run1
    server_sock = socket.create_server(("127.0.0.1", 0))
    port = server_sock.getsockname()[1]
    listener = _core.tcp_adopt_listener(run.reactor, server_sock.detach(), Echo)
    assert listener.port == port
    assert listener.local_address() == ("127.0.0.1", port)
    plain = socket.create_connection(("127.0.0.1", port))
    client = Client(run, b"adopted" * 100)
    transport = _core.tcp_adopt(run.reactor, plain.detach(), client)
    run.run()
    assert client.received == b"adopted" * 100 and client.lost is None
    assert transport.fileno() == -1
    listener.close()


# ---- closing ---------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("keep_open", [True, False])
def test_half_close(run, keep_open):
    events = []

    class HalfServer(Echo):
        def eof_received(self):
            events.append("server eof")
            if keep_open:
                self.transport.write(b"late reply")
                self.transport.close()
            return keep_open

        def connection_lost(self, exc):
            events.append(("server lost", exc))

    class HalfClient(Sink):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"request")
            transport.shutdown_write()

        def eof_received(self):
            events.append("client eof")
            return False

    client = HalfClient(run)
    run_connection(run, HalfServer, client)
    assert client.received == (b"requestlate reply" if keep_open else b"request")
    assert client.lost is None
    assert "server eof" in events and "client eof" in events
    # the server's connection_lost may come after the client's stop: drain before looking
    run.reactor.close_all()
    run.reactor.run()
    assert ("server lost", None) in events


class _BadBool:
    def __bool__(self):
        raise ZeroDivisionError("no truth")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["raises", "bad truth value"])
def test_eof_received_failing_is_reported_and_closes(run1, unraisable, how):
    run = run1

    class BadEof(Sink):
        def eof_received(self):
            if how == "raises":
                raise KeyError("eof bug")
            return _BadBool()

    sink = BadEof(run)
    peer, _ = adopt_socketpair(run, sink)
    # closed as if eof_received() had returned False
    assert send_and_read_to_close(run, peer, b"bye") == b""
    assert sink.received == b"bye" and sink.lost is None
    expected = KeyError if how == "raises" else ZeroDivisionError
    assert len(unraisable) == 1 and isinstance(unraisable[0], expected)


@pytest.mark.timeout(30)
def test_abort_drops_pending_writes_and_reports_connection_aborted(run):
    results = {}

    class Aborter(Echo):
        def data_received(self, data):
            self.transport.write(b"x" * 1_000_000)
            self.transport.abort()
            self.transport.write(b"after abort")

        def connection_lost(self, exc):
            results["server"] = exc

    class Watcher(Sink):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"go")

        def connection_lost(self, exc):
            results["client"] = exc
            if "server" in results:
                run.stop()
            else:
                run.reactor.call_at(_core.monotonic() + 0.2, run.stop)

    client = Watcher(run)
    run_connection(run, Aborter, client)
    assert isinstance(results["server"], ConnectionAbortedError)
    assert results["server"].errno == errno.ECONNABORTED
    # RST: the client sees a reset (or, if the RST won the race with nothing read, a reset too)
    assert isinstance(results["client"], OSError)
    assert len(client.received) < 1_000_000


@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", ["v4", "unix"])
def test_connect_failure(run1, family, unix_path):
    run = run1
    failures = []

    class Refused:
        def connection_made(self, t):
            failures.append("made?!")

        def data_received(self, data):
            pass

        def connection_lost(self, exc):
            failures.append(("lost?!", exc))

        def connect_failed(self, exc):
            failures.append(exc)
            run.stop()

    if family == "v4":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there now
        handler = Refused()
        _core.tcp_connect(run.reactor, "127.0.0.1", port, handler)
    else:
        handler = Refused()
        _core.unix_connect(run.reactor, unix_path, handler)  # no such socket
    ref = weakref.ref(handler)
    del handler
    run.run()
    assert len(failures) == 1
    expected = ConnectionRefusedError if family == "v4" else FileNotFoundError
    assert isinstance(failures[0], expected), failures
    gc.collect()
    assert ref() is None  # released after connect_failed


def test_synchronous_errors(run1, unix_path):
    run = run1
    with pytest.raises(OSError) as info:
        _core.tcp_connect(run.reactor, "not-an-address", 80, Echo())
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        _core.tcp_listen(run.reactor, "nonsense", 0, Echo)
    listener = _core.tcp_listen(run.reactor, "127.0.0.1", 0, Echo)
    with pytest.raises(OSError) as info:
        _core.tcp_listen(run.reactor, "127.0.0.1", listener.port, Echo)
    assert info.value.errno == errno.EADDRINUSE and isinstance(info.value, OSError)
    unix = _core.unix_listen(run.reactor, unix_path, Echo)
    with pytest.raises(OSError) as info:
        _core.unix_listen(run.reactor, unix_path, Echo)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(TypeError):
        _core.tcp_connect(run.reactor, "127.0.0.1", 1, object())  # not a handler
    with pytest.raises(ValueError):
        _core.tcp_connect(run.reactor, "127.0.0.1", 70000, Echo())
    with pytest.raises(TypeError):
        _core.tcp_connect(object(), "127.0.0.1", 1, Echo())
    with pytest.raises(OSError):
        _core.unix_adopt(run.reactor, -1, Echo())
    listener.close()
    unix.close()


@pytest.mark.timeout(30)
def test_listener_close_and_refusing_factory(run1):
    run = run1
    outcomes = []

    class Probe(Sink):
        def connection_lost(self, exc):
            outcomes.append(("lost", exc, self.received))
            run.stop()

        def connect_failed(self, exc):
            outcomes.append(("failed", exc))
            run.stop()

    refusing = _core.tcp_listen(run.reactor, "127.0.0.1", 0, lambda: None)
    connect(run, "v4", refusing, Probe(run))
    run.run()
    # a refused connection is closed at once: the client sees it end without data
    assert outcomes[0][0] == "lost" and outcomes[0][2] == b""
    closing = []

    def close_inside_a_transaction():
        refusing.close()
        closing.append(refusing.fileno())  # still open: the close happens at commit
        run.reactor.call_at(_core.monotonic() + 0.05, run.stop)

    run.run(close_inside_a_transaction)
    assert closing[0] >= 0
    assert refusing.fileno() == -1
    connect(run, "v4", refusing, Probe(run))
    run.run()
    assert outcomes[1][0] == "failed" and isinstance(outcomes[1][1], ConnectionRefusedError)


# ---- flow control -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_pause_and_resume_reading(run):
    events = []

    class Lazy(Echo):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.resumed = False
            transport.pause_reading()
            strand = transport.strand

            def resume():
                self.resumed = True
                events.append("resume")
                transport.resume_reading()

            run.reactor.call_at(_core.monotonic() + 0.3, resume, strand=strand)

        def data_received(self, data):
            events.append(("data", self.resumed))
            super().data_received(data)

    client = Client(run, b"hello")
    run_connection(run, Lazy, client)
    assert client.received == b"hello"
    assert events[0] == "resume"
    assert all(resumed for kind, resumed in events[1:])


@pytest.mark.timeout(60)
def test_water_marks(run):
    total = 8 * 1024 * 1024
    chunk = b"w" * 65536
    events = []

    class Producer(Echo):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.set_write_buffer_limits(high=256 * 1024, low=32 * 1024)
            for _ in range(total // len(chunk)):
                transport.write(chunk)

        def pause_writing(self):
            events.append(("pause", self.transport.write_buffer_size()))
            with gate:  # the slow side may not have paused yet: it then resumes itself
                state["resume wanted"] = True
                ready = state["paused"]
            if ready:
                peer[0].resume_reading()  # a call on another strand's transport

        def resume_writing(self):
            events.append(("resume", self.transport.write_buffer_size()))
            self.transport.close()

    # With 2 workers the producer's side can fill its buffer and pause before the slow side's
    # connection_made has run: a resume made then would come before the pause and be lost.
    gate = threading.Lock()
    state = {"paused": False, "resume wanted": False}

    class Slow(Sink):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()
            with gate:
                state["paused"] = True
                wanted = state["resume wanted"]
            if wanted:
                transport.resume_reading()

    peer = []
    listener = listen(run, "v4", Producer)
    slow = Slow(run)
    peer.append(connect(run, "v4", listener, slow))
    with pytest.raises(ValueError):
        peer[0].set_write_buffer_limits(high=1, low=2)
    run.run(timeout=30)
    assert len(slow.received) == total
    kinds = [k for k, _ in events]
    assert kinds == ["pause", "resume"], events
    assert events[0][1] > 256 * 1024
    assert events[1][1] <= 32 * 1024


# ---- options -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_socket_options(run1):
    run = run1
    seen = {}

    class Opt(Client):
        def connection_made(self, transport):
            transport.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seen["nodelay"] = transport.get_option(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            transport.set_option(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            seen["keepalive"] = transport.get_option(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            transport.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            seen["nodelay off"] = transport.get_option(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            try:
                transport.set_option(socket.SOL_SOCKET, 0x7FFF, 1)
            except OSError as e:
                seen["bad"] = e
            seen["fileno"] = transport.fileno()
            super().connection_made(transport)

    _, t = run_connection(run, Echo, Opt(run, b"x"))
    assert seen["nodelay"] != 0 and seen["keepalive"] != 0 and seen["nodelay off"] == 0
    assert isinstance(seen["bad"], OSError) and seen["bad"].errno in (
        errno.ENOPROTOOPT,
        errno.EINVAL,
    )
    assert seen["fileno"] > 2
    with pytest.raises(OSError) as info:
        t.get_option(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # closed
    assert info.value.errno == errno.EBADF


# ---- many connections on 2 workers ---------------------------------------------------------------


class AllLost:
    """Stops the run once each of n connections was lost (their callbacks run on any worker)."""

    def __init__(self, harness, n):
        self.harness = harness
        self.left = n
        self.lock = threading.Lock()

    def lost(self):
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.harness.stop()


def run_clients(harness, server_factory, clients, timeout):
    """Listens with server_factory, connects every client from inside the reactor and runs until
    a handler stops the run; the listener is closed after."""
    listener = listen(harness, "v4", server_factory)

    def start():
        for client in clients:
            connect(harness, "v4", listener, client)

    harness.run(start, timeout=timeout)
    listener.close()


@pytest.mark.timeout(60)
def test_cross_strand_writes_reach_exactly_their_connection():
    harness = Run(2)
    n, messages = 24, 50
    lock = threading.Lock()
    registry = {}  # client id -> the server transport of that client
    all_lost = AllLost(harness, n)

    class Relay:
        """Server side of client i: forwards i's messages to client i+1's connection."""

        def connection_made(self, transport):
            self.transport = transport
            self.buffer = b""
            self.ident = None

        def data_received(self, data):
            self.buffer += data
            while b";" in self.buffer:
                message, self.buffer = self.buffer.split(b";", 1)
                if message.startswith(b"hello "):
                    self.ident = int(message[6:])
                    with lock:
                        registry[self.ident] = self.transport
                        complete = len(registry) == n
                    if complete:  # the last one tells everybody: writes on n other strands
                        for t in registry.values():
                            t.write(b"go;")
                else:
                    target = registry[(self.ident + 1) % n]
                    target.write(message + b";")

        def connection_lost(self, exc):
            pass

    class Peer:
        def __init__(self, ident):
            self.ident = ident
            source = (ident - 1) % n
            self.expected = b"go;" + b"".join(b"%d:%d;" % (source, k) for k in range(messages))
            self.received = b""
            self.lost = "not yet"

        def connection_made(self, transport):
            self.transport = transport
            transport.write(b"hello %d;" % self.ident)

        def data_received(self, data):
            first = not self.received
            self.received += data
            if first and self.received.startswith(b"go;"):
                for k in range(messages):
                    self.transport.write(b"%d:%d;" % (self.ident, k))
            if len(self.received) >= len(self.expected):
                self.transport.close()

        def connection_lost(self, exc):
            self.lost = exc
            all_lost.lost()

    try:
        peers = [Peer(i) for i in range(n)]
        run_clients(harness, Relay, peers, timeout=40)
        for p in peers:
            assert p.received == p.expected, p.ident
            assert p.lost is None
    finally:
        registry.clear()
        harness.close()


@pytest.mark.timeout(60)
def test_large_writes_of_many_connections_on_two_workers():
    # Large bytes objects are sent without a copy and released by whichever worker's flush sent
    # them, while the other worker ends Python events: a release there must wait for a thread with
    # Python attached (one made by the end of an event that had just found nothing to release
    # crashed the free-threaded interpreter within seconds). Every reply arrives whole.
    harness = Run(2)
    n, rounds, size = 8, 1200, 16 * 1024
    all_lost = AllLost(harness, n)

    class Server:
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            for fill in data:  # a fresh object per reply, freed once sent
                self.transport.write(bytes([fill]) * size)

        def connection_lost(self, exc):
            pass

    class Asker:
        def __init__(self, ident):
            self.ident = ident
            self.asked = 0
            self.pending = b""
            self.good = 0
            self.lost = "not yet"

        def ask(self):
            self.asked += 1
            self.transport.write(bytes([(self.ident * rounds + self.asked) % 256]))

        def connection_made(self, transport):
            self.transport = transport
            self.ask()

        def data_received(self, data):
            self.pending += data
            if len(self.pending) < size:
                return
            fill = (self.ident * rounds + self.asked) % 256
            self.good += self.pending == bytes([fill]) * size
            self.pending = b""
            if self.asked < rounds:
                self.ask()
            else:
                self.transport.close()

        def connection_lost(self, exc):
            self.lost = exc
            all_lost.lost()

    try:
        askers = [Asker(i) for i in range(n)]
        run_clients(harness, Server, askers, timeout=50)
        assert [(a.good, a.lost) for a in askers] == [(rounds, None)] * n
    finally:
        harness.close()


# ---- lifetime --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_transports_and_handlers_are_freed_after_close(run):
    refs, server_refs = [], []

    class TrackedEcho(Echo):
        def connection_made(self, transport):
            server_refs.append(weakref.ref(transport))
            super().connection_made(transport)

    def factory():
        handler = TrackedEcho()
        server_refs.append(weakref.ref(handler))
        return handler

    class Tracked(Client):
        def connection_made(self, transport):
            refs.append(weakref.ref(transport))
            super().connection_made(transport)

    listener = listen(run, "v4", factory)
    count = [0]

    def lost():
        with run.lock:
            count[0] += 1
            if count[0] == 5:
                run.stop()

    clients = [Tracked(run, b"abc" * 10, on_lost=lost) for _ in range(5)]
    for c in clients:
        refs.append(weakref.ref(c))
        connect(run, "v4", listener, c)
    run.run()
    assert all(c.received == b"abc" * 10 for c in clients)
    assert len(server_refs) == 10 and len(refs) == 10
    del c
    clients.clear()
    listener.close()
    listener_ref = weakref.ref(listener)
    del listener
    run.reactor.close_all()
    run.reactor.run()
    gc.collect()
    alive = [r() for r in refs + server_refs if r() is not None]
    assert not alive, alive
    assert listener_ref() is None
