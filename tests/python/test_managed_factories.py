"""The reactors manage the factories they are given (docs/MANAGED_STATE.md)."""

import asyncio

import tm


async def _visit_then_close(server, messages):
    """One connection to server per message, which it sends (b"": none) before closing; then
    closes server."""
    port = server.sockets[0].getsockname()[1]
    for message in messages:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        if message:
            writer.write(message)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.05)
    server.close()
    await server.wait_closed()


def test_asyncio_loop_manages_the_object_behind_a_bound_method_factory():
    import tm_asyncio

    class Server:
        def __init__(self):
            self.clients = []

        def make_protocol(self):
            server = self

            class Proto(asyncio.Protocol):
                def connection_made(self, transport):
                    server.clients.append(transport.get_extra_info("peername"))
                    transport.close()

            return Proto()

    server = Server()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(server.make_protocol, "127.0.0.1", 0)
        await _visit_then_close(srv, [b""] * 3)

    tm_asyncio.run(main())
    assert tm.is_managed(server) and isinstance(server.clients, tm.List)
    assert len(server.clients) == 3


def test_asyncio_loop_manages_the_object_behind_a_start_server_handler():
    import tm_asyncio

    class Chat:
        def __init__(self):
            self.names = {}

        async def handle(self, reader, writer):
            self.names[await reader.readline()] = True
            writer.close()

    chat, plain = Chat(), Chat()

    async def main():
        for server in (chat, plain):
            # `plain` is reached through a lambda: a closure the loop cannot see into.
            handler = chat.handle if server is chat else (lambda r, w: plain.handle(r, w))
            srv = await asyncio.start_server(handler, "127.0.0.1", 0)
            await _visit_then_close(srv, [b"ann\n"])

    tm_asyncio.run(main())
    assert tm.is_managed(chat) and isinstance(chat.names, tm.Dict)
    assert dict(chat.names) == {b"ann\n": True}
    assert not tm.is_managed(plain) and plain.names == {b"ann\n": True}


def test_twisted_reactor_manages_the_factories_it_is_given():
    from twisted.internet import protocol

    from tm_twisted import TMReactor

    reactor = TMReactor(workers=1)
    factory = protocol.ServerFactory.forProtocol(protocol.Protocol)
    factory.peers = {}
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        assert tm.is_managed(factory) and isinstance(factory.peers, tm.Dict)
        assert factory.numPorts == 1  # doStart ran through the managed attributes
    finally:
        port.stopListening()


_WORDS_OBJECTS = """
import sys
from twisted.internet.main import installReactor
import tm_twisted
from tm_twisted._reactor import TMReactor
if sys.argv[1] == "install":
    tm_twisted.install(workers=1)  # as twistd does: the service is imported after
else:
    installReactor(TMReactor(1))  # the service is imported first; running the reactor patches
from twisted.words import iwords, service
import tm
if sys.argv[1] != "install":
    from twisted.internet import reactor
    reactor.callWhenRunning(reactor.stop)
    reactor.run()
realm = service.InMemoryWordsRealm("example.test")
group = service.Group("#room")
user = service.User("alice")
realm.addGroup(group)
print(tm.is_managed(realm), tm.is_managed(group), tm.is_managed(user))
print(type(realm.groups).__name__, type(group.users).__name__, type(user.groups).__name__)
print(iwords.IGroup.providedBy(group), type(group).__name__, realm.groups["#room"] is group)
"""


def _words_objects(how: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _WORDS_OBJECTS, how],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("\n")[:3]


def test_twisted_words_shared_objects_are_managed_when_made():
    for how in ("install", "run"):
        assert _words_objects(how) == [
            "True True True",
            "Dict Dict List",
            "True Group True",
        ], how
