"""A listening factory whose protocol rebinds or changes a variable every connection shares
(tm_twisted._shared_variables, tm._shared_variables).

A protocol that keeps its clients in a module-level set is correct on epoll, which runs one
callback at a time; with connections on strands of their own, a joining connection's add() ran
beside another's iteration of the set. The reactor reads the factory's code when it listens: such
a factory's connections run each callback inevitable from its start, one at a time, and a
RuntimeWarning says so; state kept on the factory (managed) needs no fallback.
"""

from __future__ import annotations

import socket
import warnings

import pytest
from twisted.internet import protocol
from twisted.protocols.basic import LineReceiver
from twisted.python import log
from twisted.web import resource, server

from tm import _reactor
from tm._shared_variables import shared_rebindings
from tm_twisted import TMReactor
from twisted_helpers import run_with_clients

CLIENTS: set = set()
CLIENTS_COUNT, SESSIONS, LINES = 12, 10, 20


class ModuleSetChat(LineReceiver):
    """Every line to every client of a module-level set."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        CLIENTS.add(self)

    def connectionLost(self, reason) -> None:
        CLIENTS.discard(self)

    def lineReceived(self, line: bytes) -> None:
        for client in CLIENTS:
            client.sendLine(line)


class FactorySetChat(LineReceiver):
    """The same with the clients on the factory, which the reactor manages."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.factory.clients.add(self)

    def connectionLost(self, reason) -> None:
        self.factory.clients.discard(self)

    def lineReceived(self, line: bytes) -> None:
        for client in self.factory.clients:
            client.sendLine(line)


class ChatFactory(protocol.Factory):
    def __init__(self, chat: type) -> None:
        self.protocol = chat
        self.clients: set = set()


def test_a_protocol_changing_a_module_level_set_is_found():
    (found,) = shared_rebindings(ChatFactory, ModuleSetChat)
    assert found.startswith("global CLIENTS in place (") and __file__ in found
    assert shared_rebindings(ChatFactory, FactorySetChat) == []


@pytest.fixture
def parallel_strands(monkeypatch):
    """The GIL build made to run strands in parallel too, to test the rule there."""
    monkeypatch.setattr(_reactor, "gil_enabled", lambda: False)


def churning_client(address, i: int, heard: dict) -> None:
    """Joins SESSIONS times while the others join, send and leave; in each session sends LINES
    lines and reads until it has heard all of its own."""
    sessions = []
    for s in range(SESSIONS):
        with socket.create_connection(address, timeout=20) as sock:
            lines = sock.makefile("rb")
            sock.sendall(b"".join(b"%d:%d:%d\n" % (i, s, n) for n in range(LINES)))
            own = []
            while len(own) < LINES and (line := lines.readline()):
                sender, session, n = map(int, line.split(b":"))
                if (sender, session) == (i, s):
                    own.append(n)
            sock.shutdown(socket.SHUT_WR)  # and read what the others still send until closed
            while lines.readline():
                pass
        sessions.append(own)
    heard[i] = sessions


def serve_churning_clients(reactor, factory) -> dict:
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    heard: dict = {}
    run_with_clients(reactor, lambda i: churning_client(address, i, heard), CLIENTS_COUNT, 60)
    return heard


def test_a_chat_on_a_module_level_set_runs_one_callback_at_a_time_and_says_so(parallel_strands):
    # At 2 workers on 3.13t, before: 3 and 11 of 16 clients of 15 sessions completed theirs,
    # "Set changed size during iteration" logged (the same chat as a program of its own).
    # With the GIL the reactor runs one strand (TM_STRANDS) unless told otherwise: nothing to
    # fall back from, and nothing said.
    reactor = TMReactor(2)
    logged: list[dict] = []
    log.addObserver(logged.append)
    try:
        if reactor._core.one_strand:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                heard = serve_churning_clients(reactor, ChatFactory(ModuleSetChat))
        else:
            with pytest.warns(RuntimeWarning, match=r"changes global CLIENTS in place \("):
                heard = serve_churning_clients(reactor, ChatFactory(ModuleSetChat))
    finally:
        log.removeObserver(logged.append)
    errors = [e for e in logged if e.get("isError")]
    assert not errors, errors[0]["failure"].getTraceback()
    assert heard == {i: [list(range(LINES))] * SESSIONS for i in range(CLIENTS_COUNT)}
    assert not CLIENTS


def test_a_chat_on_the_factory_stays_parallel(parallel_strands, recwarn):
    reactor = TMReactor(2)
    factory = ChatFactory(FactorySetChat)
    heard = serve_churning_clients(reactor, factory)
    assert heard == {i: [list(range(LINES))] * SESSIONS for i in range(CLIENTS_COUNT)}
    assert not [w for w in recwarn if "shares" in str(w.message)]


# A twisted.web resource counting in module globals: the Site (Twisted's) leads to it.
PAGE_HITS: dict = {}
pages_served = 0


class CountedPage(resource.Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        global pages_served
        PAGE_HITS[request.path] = PAGE_HITS.get(request.path, 0) + 1
        pages_served += 1
        return b"%d" % PAGE_HITS[request.path]


class CountedLater(resource.Resource):
    """CountedPage answering from a delayed call, as a resource that waits for something does."""

    isLeaf = True

    def __init__(self, reactor) -> None:
        super().__init__()
        self.reactor = reactor

    def render_GET(self, request):
        self.reactor.callLater(0, self.answer, request)
        return server.NOT_DONE_YET

    def answer(self, request) -> None:
        body = CountedPage.render_GET(self, request)
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()


def test_a_site_leads_to_its_resources_code():
    root = resource.Resource()
    root.putChild(b"count", CountedPage())
    found = shared_rebindings(server.Site(root))
    assert [what.split(" (")[0] for what in found] == [
        "global pages_served",
        "global PAGE_HITS in place",
    ]
    assert shared_rebindings(server.Site(resource.Resource())) == []


PAGE_CLIENTS, PAGE_REQUESTS = 8, 150


def ask_pages(address, bodies: dict, i: int) -> None:
    """PAGE_REQUESTS keep-alive GET /pN on one connection; the bodies."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = sock.makefile("rb")
        got = []
        for n in range(PAGE_REQUESTS):
            sock.sendall(b"GET /p%d HTTP/1.1\r\nHost: test\r\n\r\n" % (n % 3))
            length = None
            while (line := replies.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split()[1])
            got.append(int(replies.read(length)))
    bodies[i] = got


def serve_pages(reactor, page: resource.Resource) -> dict:
    port = reactor.listenTCP(0, server.Site(page), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    bodies: dict = {}
    run_with_clients(reactor, lambda i: ask_pages(address, bodies, i), PAGE_CLIENTS, 60)
    return bodies


@pytest.mark.parametrize("answering", ["at once", "from a delayed call"])
def test_a_site_counting_in_module_globals_runs_one_callback_at_a_time_and_says_so(
    parallel_strands, answering
):
    # At 2 workers on 3.13t, before: 8 clients x 1,500 requests counted 11,997 and 11,998 of
    # 12,000 in pages_served and 11,980 and 11,972 in PAGE_HITS (a program of its own). The
    # delayed calls such a connection's callbacks make run one at a time with them.
    global pages_served
    pages_served = 0
    PAGE_HITS.clear()
    reactor = TMReactor(2)
    page = CountedPage() if answering == "at once" else CountedLater(reactor)
    if reactor._core.one_strand:  # the GIL build: as the chat above
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bodies = serve_pages(reactor, page)
    else:
        with pytest.warns(RuntimeWarning, match=r"changes global pages_served \("):
            bodies = serve_pages(reactor, page)
    assert pages_served == PAGE_CLIENTS * PAGE_REQUESTS
    each = PAGE_CLIENTS * PAGE_REQUESTS // 3
    assert PAGE_HITS == {b"/p0": each, b"/p1": each, b"/p2": each}
    assert sorted(n for got in bodies.values() for n in got) == sorted(
        n for _ in range(3) for n in range(1, each + 1)
    )
