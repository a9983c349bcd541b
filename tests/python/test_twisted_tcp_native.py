"""TMReactor's native TCP transports (tm_twisted._tcp over tm._core's stream transports).

Echo, a chat server whose connections write to each other from their own strands (the case that
races on Twisted's Python transports with 2 workers), half-close, producers, abortConnection,
addresses, and Twisted's error reporting. The peers are blocking sockets on threads, so what
arrives on the wire is checked independently of the transports under test.
"""

import socket
import threading

import pytest
from twisted.internet import address, error, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IPushProducer
from twisted.python import log
from zope.interface import implementer

from tm_twisted import TMReactor
from tm_twisted import _native_stream, _tcp
from twisted_helpers import Echo, run_bounded

pytestmark = pytest.mark.skipif(
    not _native_stream.available(), reason="tm._core has no native stream transports"
)

WORKERS = [1, 2]

Reactor = TMReactor


def in_thread(reactor, fn):
    """Runs fn() on a thread, then stops the reactor; re-raises fn's exception after run()."""
    errors = []

    def body():
        try:
            fn()
        except BaseException as e:  # reported by check()
            errors.append(e)
        finally:
            reactor.callFromThread(reactor.stop)

    thread = threading.Thread(target=body, daemon=True)

    def check():
        thread.join(5)
        if errors:
            raise errors[0]

    reactor.callWhenRunning(thread.start)
    return check


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.mark.parametrize("workers", WORKERS)
def test_echo_between_native_client_and_server(workers):
    reactor = Reactor(workers)
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    messages = [b"message %d;" % i for i in range(200)]
    expected = b"".join(messages)
    seen = {}

    class Client(protocol.Protocol):
        def connectionMade(self):
            seen["transport"] = self.transport
            self.got = []
            self.transport.writeSequence(messages[:100])
            for m in messages[100:]:
                self.transport.write(m)

        def dataReceived(self, data):
            self.got.append(data)
            if sum(map(len, self.got)) >= len(expected):
                self.transport.loseConnection()

        def connectionLost(self, reason):
            seen["data"] = b"".join(self.got)
            seen["reason"] = reason
            reactor.stop()

    factory = protocol.ClientFactory.forProtocol(Client)
    reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
    run_bounded(reactor, timeout=20)
    assert isinstance(seen["transport"], _tcp.Client)
    assert seen["data"] == expected
    assert seen["reason"].check(error.ConnectionDone)


class ChatServer(protocol.Protocol):
    """Every complete line received is written to every other connection."""

    def connectionMade(self):
        self.buffer = b""
        with self.factory.lock:
            self.factory.users.append(self)
            ready = len(self.factory.users) == self.factory.expected
        if ready:
            self.factory.all_connected.set()

    def dataReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if not lines:
            return
        out = b"".join(line + b"\n" for line in lines)
        with self.factory.lock:
            others = [u for u in self.factory.users if u is not self]
        for other in others:
            other.transport.write(out)  # another connection's transport, from this strand


@pytest.mark.parametrize("workers", WORKERS)
def test_chat_every_client_receives_every_other_clients_lines_in_order(workers):
    clients, lines = 4, 1000
    reactor = Reactor(workers)
    factory = protocol.Factory.forProtocol(ChatServer)
    factory.users, factory.lock = [], threading.Lock()
    factory.expected, factory.all_connected = clients, threading.Event()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    where = ("127.0.0.1", port.getHost().port)
    received = {}

    def chat():
        socks = [socket.create_connection(where, timeout=20) for _ in range(clients)]
        assert factory.all_connected.wait(10)

        def send(n, s):
            s.sendall(b"".join(b"%d:%d\n" % (n, i) for i in range(lines)))

        def receive(n, s):
            want = (clients - 1) * lines
            got, rest = [], b""
            while len(got) < want:
                data = s.recv(65536)
                if not data:
                    break
                rest += data
                *complete, rest = rest.split(b"\n")
                got.extend(complete)
            received[n] = got

        threads = [threading.Thread(target=send, args=(n, s)) for n, s in enumerate(socks)]
        threads += [threading.Thread(target=receive, args=(n, s)) for n, s in enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for s in socks:
            s.close()

    check = in_thread(reactor, chat)
    run_bounded(reactor, timeout=60)
    check()
    for n in range(clients):
        got = received[n]
        assert len(got) == (clients - 1) * lines, (n, len(got))
        by_sender = {}
        for line in got:
            sender, i = line.split(b":")
            by_sender.setdefault(int(sender), []).append(int(i))
        assert sorted(by_sender) == [m for m in range(clients) if m != n]
        for sender, numbers in by_sender.items():
            assert numbers == list(range(lines)), (n, sender)


@implementer(IHalfCloseableProtocol)
class HalfCloser(protocol.Protocol):
    def connectionMade(self):
        self.events = []
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    def readConnectionLost(self):
        self.events.append("read lost")
        self.transport.write(b"got " + self.data)
        self.transport.loseWriteConnection()

    def writeConnectionLost(self):
        self.events.append("write lost")
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.events.append(reason.type)
        self.factory.done.append(self)


@pytest.mark.parametrize("workers", WORKERS)
def test_half_close_both_ways(workers):
    reactor = Reactor(workers)
    factory = protocol.Factory.forProtocol(HalfCloser)
    factory.done = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    answer = {}

    def peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            s.sendall(b"hello")
            s.shutdown(socket.SHUT_WR)  # the server reads its end, still writes
            answer["data"] = recv_all(s)

    check = in_thread(reactor, peer)
    run_bounded(reactor, timeout=20)
    check()
    assert answer["data"] == b"got hello"
    (server,) = factory.done
    assert server.events == ["read lost", "write lost", error.ConnectionDone]


@pytest.mark.parametrize("workers", WORKERS)
def test_without_half_close_the_peers_shutdown_ends_the_connection(workers):
    reactor = Reactor(workers)
    reasons = []

    class Plain(protocol.Protocol):
        def connectionLost(self, reason):
            reasons.append(reason)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Plain), interface="127.0.0.1")

    def peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b""

    check = in_thread(reactor, peer)
    run_bounded(reactor, timeout=20)
    check()
    assert len(reasons) == 1 and reasons[0].check(error.ConnectionDone)


@implementer(IPushProducer)
class PushSource(protocol.Protocol):
    """Writes 64 KiB chunks while not paused, up to `total` bytes."""

    total = 4 * 1024 * 1024

    def connectionMade(self):
        self.sent = 0
        self.pauses = self.resumes = 0
        self.paused = False
        self.transport.registerProducer(self, True)
        self.produce()

    def produce(self):
        while not self.paused and self.sent < self.total:
            self.transport.write(b"x" * 65536)
            self.sent += 65536
        if self.sent >= self.total:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseProducing(self):
        self.pauses += 1
        self.paused = True

    def resumeProducing(self):
        self.resumes += 1
        self.paused = False
        self.produce()

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.factory.done.append(self)


@implementer(IPullProducer)
class PullSource(protocol.Protocol):
    """Writes one chunk per resumeProducing, `chunks` of them."""

    chunks = 300

    def connectionMade(self):
        self.calls = 0
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        self.calls += 1
        if self.calls > self.chunks:
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        self.transport.write(b"%06d" % self.calls + b"y" * 10000)

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.factory.done.append(self)


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("source", [PushSource, PullSource])
def test_producers_are_paused_and_resumed(workers, source):
    reactor = Reactor(workers)
    factory = protocol.Factory.forProtocol(source)
    factory.done = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    got = {}

    def slow_reader():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            threading.Event().wait(0.3)  # let the server's buffers fill
            got["data"] = recv_all(s)

    check = in_thread(reactor, slow_reader)
    run_bounded(reactor, timeout=60)
    check()
    (server,) = factory.done
    if source is PushSource:
        assert got["data"] == b"x" * PushSource.total
        # Each pause is followed by a resume, but for a last one after the last chunk.
        assert server.pauses >= 1 and server.pauses - 1 <= server.resumes <= server.pauses
    else:
        expected = b"".join(b"%06d" % i + b"y" * 10000 for i in range(1, PullSource.chunks + 1))
        assert got["data"] == expected
        assert server.calls == PullSource.chunks + 1


@implementer(IPushProducer)
class KeepingUp(Echo):
    """An echo that registers itself as a streaming producer for its whole life, as
    twisted.web's HTTPChannel does; its answers never fill the buffer."""

    def connectionMade(self):
        self.pauses = 0
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        self.pauses += 1

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.factory.done.append(self)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_streaming_producer_that_keeps_up_costs_no_drain_reports(workers, monkeypatch):
    # FileDescriptor.doWrite's tail does nothing for a streaming producer that is not paused:
    # the native transport is not asked to report those drains (a transaction each).
    drains = []
    drained = _native_stream.NativeStream._drained
    monkeypatch.setattr(
        _native_stream.NativeStream, "_drained", lambda self: (drains.append(1), drained(self))
    )
    reactor = Reactor(workers)
    factory = protocol.Factory.forProtocol(KeepingUp)
    factory.done = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def client():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            for i in range(50):
                message = b"request %d;" % i
                s.sendall(message)
                got = b""
                while len(got) < len(message):
                    got += s.recv(4096)
                assert got == message

    check = in_thread(reactor, client)
    run_bounded(reactor, timeout=30)
    check()
    (server,) = factory.done
    assert server.pauses == 0
    assert drains == []


@implementer(IPullProducer)
class PullThenClose(protocol.Protocol):
    """Registers a pull producer and closes at once: the producer is still asked for more (as
    FileDescriptor.doWrite's tail asks it), and the connection closes once it unregisters."""

    def connectionMade(self):
        self.calls = 0
        self.transport.registerProducer(self, False)
        self.transport.loseConnection()

    def resumeProducing(self):
        self.calls += 1
        if self.calls == 1:
            return  # registerProducer's call: nothing written, nothing pending
        self.transport.write(b"last words")
        self.transport.unregisterProducer()

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.factory.done.append(self)


@pytest.mark.parametrize("workers", WORKERS)
def test_lose_connection_resumes_a_pull_producer_with_nothing_pending(workers):
    reactor = Reactor(workers)
    factory = protocol.Factory.forProtocol(PullThenClose)
    factory.done = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    got = {}

    def client():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            got["data"] = recv_all(s)

    check = in_thread(reactor, client)
    run_bounded(reactor, timeout=30)
    check()
    (server,) = factory.done
    assert server.calls == 2
    assert got["data"] == b"last words"


@pytest.mark.parametrize("workers", WORKERS)
def test_bytes_written_after_lose_connection_in_the_same_callback_are_sent(workers):
    reactor = Reactor(workers)
    reasons = []

    class Closer(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"before ")
            self.transport.loseConnection()
            self.transport.writeSequence([b"after", b" close"])

        def connectionLost(self, reason):
            reasons.append(reason)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Closer), interface="127.0.0.1")
    got = {}

    def peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            got["data"] = recv_all(s)

    check = in_thread(reactor, peer)
    run_bounded(reactor, timeout=20)
    check()
    assert got["data"] == b"before after close"
    assert len(reasons) == 1 and reasons[0].check(error.ConnectionDone)


@pytest.mark.parametrize("workers", WORKERS)
def test_abort_connection_resets_and_reports_connection_aborted(workers):
    reactor = Reactor(workers)
    reasons = []

    class Aborter(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(b"never sent" * 1000)
            self.transport.abortConnection()
            self.transport.abortConnection()  # twice is harmless
            self.transport.write(b"after abort")

        def connectionLost(self, reason):
            reasons.append(reason)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Aborter), interface="127.0.0.1")
    outcome = {}

    def peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            s.sendall(b"go")
            try:
                outcome["data"] = recv_all(s)
            except ConnectionResetError:
                outcome["reset"] = True

    check = in_thread(reactor, peer)
    run_bounded(reactor, timeout=20)
    check()
    assert outcome == {"reset": True}
    assert len(reasons) == 1 and reasons[0].check(error.ConnectionAborted)


@pytest.mark.parametrize("workers", WORKERS)
def test_addresses_of_both_ends(workers):
    reactor = Reactor(workers)
    seen = {}

    class Server(protocol.Protocol):
        def connectionMade(self):
            seen["server"] = (self.transport.getHost(), self.transport.getPeer())
            self.transport.loseConnection()

    class Client(protocol.Protocol):
        def connectionMade(self):
            seen["client"] = (self.transport.getHost(), self.transport.getPeer())
            seen["nodelay"] = self.transport.getTcpNoDelay()
            self.transport.setTcpNoDelay(True)
            seen["nodelay after"] = self.transport.getTcpNoDelay()
            self.transport.setTcpKeepAlive(True)
            seen["keepalive"] = self.transport.getTcpKeepAlive()
            with pytest.raises(TypeError, match="Data must be bytes"):
                self.transport.write("text")
            with pytest.raises(TypeError, match="Data must be bytes"):
                self.transport.writeSequence([b"ok", "text"])
            with pytest.raises(TypeError, match="Data must be bytes"):
                self.transport.writeSequence([b"ok", bytearray(b"joinable, and still refused")])

        def connectionLost(self, reason):
            reactor.stop()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    listening = port.getHost()
    reactor.connectTCP("127.0.0.1", listening.port, protocol.ClientFactory.forProtocol(Client))
    run_bounded(reactor, timeout=20)
    server_host, server_peer = seen["server"]
    client_host, client_peer = seen["client"]
    assert listening == address.IPv4Address("TCP", "127.0.0.1", listening.port)
    assert server_host == client_peer == listening
    assert server_peer == client_host
    assert isinstance(client_host, address.IPv4Address) and client_host.host == "127.0.0.1"
    assert seen["nodelay after"] is True and seen["keepalive"] is True


@pytest.mark.parametrize("workers", WORKERS)
def test_both_ends_of_an_in_process_connection_run_on_one_strand(workers):
    """A program's client and its own server keep a single-threaded loop's order between them
    (one end's connectionLost cannot overtake the other end's events): one strand for the pair.
    A peer the reactor does not hold (a blocking socket here) leaves its connection a strand of
    its own."""
    from tm import _reactor

    reactor = Reactor(workers)
    strands = {}

    class Server(protocol.Protocol):
        def connectionMade(self):
            strands.setdefault("server", []).append(_reactor.current_strand())

    class Client(protocol.Protocol):
        def connectionMade(self):
            strands["client"] = _reactor.current_strand()
            self.transport.loseConnection()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")

    paired = threading.Event()

    def outside_peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5):
            paired.wait(10)  # connected while the pair is made

    thread = threading.Thread(target=outside_peer, daemon=True)
    thread.start()

    def wait_for_outside_peer():
        if len(strands.get("server", [])) < 1:
            reactor.callLater(0.01, wait_for_outside_peer)
            return
        reactor.connectTCP(
            "127.0.0.1", port.getHost().port, protocol.ClientFactory.forProtocol(Client)
        )
        wait_for_pair()

    def wait_for_pair():
        if len(strands.get("server", [])) < 2 or "client" not in strands:
            reactor.callLater(0.01, wait_for_pair)
            return
        paired.set()
        reactor.stop()

    reactor.callWhenRunning(wait_for_outside_peer)
    run_bounded(reactor, timeout=20)
    thread.join(5)
    outside_end, server_end = strands["server"]
    assert server_end == strands["client"]
    if not reactor._core.one_strand:
        assert outside_end != server_end


@pytest.mark.parametrize("workers", WORKERS)
def test_sockets_run_without_nagle_until_the_program_asks_for_it(workers):
    """Both ends' sockets have TCP_NODELAY set (a commit's writes leave in one gathered write;
    Nagle's hold behind an unacknowledged segment stalled a chat broadcast 40 ms a message), while
    getTcpNoDelay() reports Twisted's default, False; setTcpNoDelay(False) turns Nagle on."""
    reactor = Reactor(workers)
    seen = {}

    def nodelay(transport) -> int:
        return transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    class Server(protocol.Protocol):
        def connectionMade(self):
            seen["server"] = (self.transport.getTcpNoDelay(), nodelay(self.transport))
            self.transport.setTcpNoDelay(False)
            seen["server off"] = (self.transport.getTcpNoDelay(), nodelay(self.transport))
            self.transport.setTcpNoDelay(True)
            seen["server on"] = (self.transport.getTcpNoDelay(), nodelay(self.transport))
            self.transport.loseConnection()

    class Client(protocol.Protocol):
        def connectionMade(self):
            seen["client"] = (self.transport.getTcpNoDelay(), nodelay(self.transport))

        def connectionLost(self, reason):
            reactor.stop()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    reactor.connectTCP("127.0.0.1", port.getHost().port, protocol.ClientFactory.forProtocol(Client))
    run_bounded(reactor, timeout=20)
    assert seen == {
        "server": (False, 1),
        "server off": (False, 0),
        "server on": (True, 1),
        "client": (False, 1),
    }


def test_ipv6_addresses():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    reactor = Reactor(1)
    seen = {}

    class Server(protocol.Protocol):
        def connectionMade(self):
            seen["peer"] = self.transport.getPeer()
            self.transport.loseConnection()

        def connectionLost(self, reason):
            reactor.stop()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="::1")
    reactor.connectTCP("::1", port.getHost().port, protocol.ClientFactory.forProtocol(Echo))
    run_bounded(reactor, timeout=20)
    assert port.getHost() == address.IPv6Address("TCP", "::1", port.getHost().port)
    assert isinstance(seen["peer"], address.IPv6Address) and seen["peer"].host == "::1"


def test_exception_in_data_received_is_logged_and_drops_the_connection():
    reactor = Reactor(1)
    reasons, logged = [], []

    class Broken(protocol.Protocol):
        def dataReceived(self, data):
            raise ZeroDivisionError("boom")

        def connectionLost(self, reason):
            reasons.append(reason)

    def observer(event):
        if event.get("isError") and event.get("failure") is not None:
            logged.append((event["failure"].type, event.get("system")))

    log.addObserver(observer)
    try:
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Broken), interface="127.0.0.1")
        closed = {}

        def peer():
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
                s.sendall(b"x")
                closed["data"] = recv_all(s)

        check = in_thread(reactor, peer)
        run_bounded(reactor, timeout=20)
        check()
    finally:
        log.removeObserver(observer)
    assert closed["data"] == b""
    assert len(reasons) == 1 and reasons[0].check(ZeroDivisionError)
    assert [t for t, _ in logged] == [ZeroDivisionError]
    assert logged[0][1].startswith("Broken,0,127.0.0.1")


def test_connection_refused_reaches_the_factory():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    reactor = Reactor(1)
    reasons = []

    class Factory(protocol.ClientFactory):
        protocol = Echo

        def clientConnectionFailed(self, connector, reason):
            reasons.append(reason)
            reactor.stop()

    reactor.connectTCP("127.0.0.1", free_port, Factory())
    run_bounded(reactor, timeout=20)
    assert len(reasons) == 1 and reasons[0].check(error.ConnectionRefusedError)


@pytest.mark.parametrize("reset_seen_by", ["SO_ERROR", "connect_ex"])
def test_a_reset_before_the_connect_event_is_a_connection_made_then_lost(
    reset_seen_by, monkeypatch
):
    """The peer accepts and resets before the client's connect event runs (with 2 workers the
    accepting end can run first). The connection existed: the client's protocol is made, then
    loses its connection with ConnectionLost; the factory is not told the connect failed. The
    connect event sees the reset in its SO_ERROR read or, when the reset lands just after that
    read, in its connect_ex (a race a loaded machine hit)."""
    listening = socket.create_server(("127.0.0.1", 0))
    reset_sent = threading.Event()

    def accept_and_reset():
        accepted, _ = listening.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        accepted.close()
        reset_sent.set()

    # The connect event reads SO_ERROR first (tm_twisted's doConnect; the connect's first step
    # reads it too, before the attempt starts): it waits there for the peer's reset, which a
    # loopback close() has delivered by the time the flag is set.
    real_getsockopt = socket.socket.getsockopt
    so_error_reads = []

    def getsockopt(sock, level, name, *rest):
        if (level, name) != (socket.SOL_SOCKET, socket.SO_ERROR) or rest:
            return real_getsockopt(sock, level, name, *rest)
        so_error_reads.append(name)
        if len(so_error_reads) > 1:
            assert reset_sent.wait(5)
            if reset_seen_by == "connect_ex":
                return 0  # the reset lands after this read: connect_ex reports it
        return real_getsockopt(sock, level, name)

    monkeypatch.setattr(socket.socket, "getsockopt", getsockopt)
    threading.Thread(target=accept_and_reset, daemon=True).start()
    reactor = Reactor(1)
    outcome = []

    class Client(protocol.Protocol):
        def connectionMade(self):
            outcome.append("made")

        def connectionLost(self, reason):
            outcome.append(reason.type)
            reactor.stop()

    class Factory(protocol.ClientFactory):
        protocol = Client

        def clientConnectionFailed(self, connector, reason):
            outcome.append(reason.type)
            reactor.stop()

    reactor.callWhenRunning(reactor.connectTCP, "127.0.0.1", listening.getsockname()[1], Factory())
    run_bounded(reactor, timeout=20)
    listening.close()
    assert len(so_error_reads) == 2  # the connect's first step and its connect event
    assert outcome == ["made", error.ConnectionLost]


def test_stop_listening_closes_the_port_and_logs_it():
    reactor = Reactor(1)
    messages = []

    def observer(event):
        messages.append(" ".join(map(str, event.get("message", ()))))

    log.addObserver(observer)
    try:
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
        number = port.getHost().port
        assert port in reactor.getReaders()
        done = []
        reactor.callWhenRunning(
            lambda: port.stopListening().addCallback(done.append).addBoth(lambda _: reactor.stop())
        )
        run_bounded(reactor, timeout=20)
    finally:
        log.removeObserver(observer)
    assert done == [None] and port not in reactor.getReaders()
    assert any(m.endswith(f"starting on {number}") for m in messages)
    assert f"(TCP Port {number} Closed)" in messages
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", number), timeout=2).close()


@pytest.mark.parametrize("workers", WORKERS)
def test_a_port_stopped_by_a_connections_callback_is_closed_before_the_peer_sees_the_close(
    workers,
):
    """tcp.Port's stopListening defers connectionLost to the next reactor iteration, which runs
    before any I/O of the callback that stopped it: a peer that sees the connection's close finds
    the port closed (test_tcp's test_closePortInProtocolFactory). A delayed call due before the
    port's close holds the stopping connection's strand, so the peer, a thread, sees the close
    first unless the port closes as the callback returns."""
    import time

    reactor = Reactor(workers)
    stopped = []

    class CloseAtOnce(protocol.Protocol):
        def connectionMade(self):
            self.transport.loseConnection()

    class StopOnFirstConnection(protocol.Factory):
        protocol = CloseAtOnce

        def buildProtocol(self, addr):
            reactor.callLater(0, time.sleep, 0.5)
            stopped.append(port.stopListening())
            return protocol.Factory.buildProtocol(self, addr)

    port = reactor.listenTCP(0, StopOnFirstConnection(), interface="127.0.0.1")
    seen = {}

    def peer():
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            seen["data"] = recv_all(s)
            seen["port disconnected"] = bool(port.disconnected)

    check = in_thread(reactor, peer)
    run_bounded(reactor, timeout=20)
    check()
    assert seen == {"data": b"", "port disconnected": True}
    fired = []
    stopped[0].addCallback(fired.append)
    assert fired == [None]
