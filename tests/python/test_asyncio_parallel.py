"""tm_asyncio's parallel mode: stream connections on native transports, each on its own strand."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading

import pytest

import tm_asyncio
from tm_asyncio._transport import NativeStreamTransport

# Parallel callbacks need a free-threaded interpreter: on a GIL build the reactor runs Python
# callbacks one at a time (DESIGN.md section 6), which the barrier tests below then expect.
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


@pytest.fixture
def loop():
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    asyncio.set_event_loop(None)


def _run(loop, coro, timeout=15):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def _serve(loop, protocol_factory):
    server = await loop.create_server(protocol_factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask_two_clients(server, port):
    """Two clients each send a line and read one back; returns the replies, server closed."""
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _, writer in clients:
        writer.write(b"hello\n")
    replies = [await reader.readline() for reader, _ in clients]
    for _, writer in clients:
        writer.close()
    server.close()
    await server.wait_closed()
    return replies


class Recorder(asyncio.Protocol):
    """A client protocol that records what happens to it."""

    def __init__(self, loop) -> None:
        self.data = bytearray()
        self.lost = loop.create_future()
        self.eof = False
        self.events: list[str] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        self.data += data

    def eof_received(self):
        self.eof = True

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial-control"])
def test_two_connections_callbacks_run_at_the_same_time(parallel):
    # Both data_received() calls must be inside the barrier at once: only possible when the two
    # connections' callbacks run in parallel. The serial loop (same worker count) is the control
    # that shows the test can fail; so is a GIL interpreter.
    expect_parallel = parallel and FREE_THREADED
    loop = tm_asyncio.EventLoop(workers=2, parallel=parallel)
    barrier = threading.Barrier(2, timeout=2 if expect_parallel else 0.5)

    class Meet(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            try:
                barrier.wait()
                self.transport.write(b"met\n")
            except threading.BrokenBarrierError:
                self.transport.write(b"alone\n")

    async def main():
        return await _ask_two_clients(*await _serve(loop, Meet))

    try:
        replies = _run(loop, main())
    finally:
        loop.close()
    if expect_parallel:
        assert replies == [b"met\n", b"met\n"]
    else:
        assert b"alone\n" in replies


async def _accepted(loop, port, client_factory=asyncio.Protocol):
    """Connects a client; returns (client transport, the server's Recorder)."""
    transport, _ = await loop.create_connection(client_factory, "127.0.0.1", port)
    while not _Accepting.made:
        await asyncio.sleep(0.01)
    return transport, _Accepting.made.pop()


class _Accepting:
    made: list = []

    @classmethod
    def factory(cls, loop):
        def make():
            cls.made.append(Recorder(loop))
            return cls.made[-1]

        return make


@pytest.mark.timeout(30)
def test_native_transport_surface(loop):
    # Accepted connections get native transports (clients keep asyncio's own).
    async def main():
        server, port = await _serve(loop, _Accepting.factory(loop))
        client, proto = await _accepted(loop, port)
        assert not isinstance(client, NativeStreamTransport)
        while not hasattr(proto, "transport"):
            await asyncio.sleep(0.01)
        transport = proto.transport
        assert isinstance(transport, NativeStreamTransport)
        assert isinstance(transport, asyncio.Transport)
        assert transport.get_protocol() is proto
        assert transport.get_extra_info("peername") == client.get_extra_info("sockname")
        assert transport.get_extra_info("sockname") == ("127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_extra_info("missing", "default") == "default"
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        transport.set_write_buffer_limits(high=1000)
        assert transport.get_write_buffer_limits() == (250, 1000)
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(TypeError, match="bytes-like"):
            transport.write("text")
        assert transport.is_reading()
        transport.pause_reading()
        assert not transport.is_reading()
        transport.resume_reading()
        assert transport.is_reading()
        assert transport.can_write_eof()
        transport.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            transport.write(b"late")
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        assert transport.get_protocol() is None
        client.close()
        server.close()
        await server.wait_closed()

    _run(loop, main())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.timeout(30)
def test_an_accepted_connection_holds_one_descriptor(loop):
    # The reactor takes the accepted socket's descriptor: N connections cost a server N
    # descriptors under RLIMIT_NOFILE, as asyncio's (not 2N, which made a server of 10,000
    # connections fail its accepts at a limit of 20,000). The socket object
    # get_extra_info("socket") makes on demand is a descriptor of its own, closed with the
    # connection.
    count = 20

    def open_fds():
        # Each descriptor with what it refers to ("socket:[inode]"): descriptors of earlier tests
        # that close meanwhile, and numbers they free and this test's sockets reuse, do not count.
        fds = set()
        for name in os.listdir("/proc/self/fd"):
            try:
                fds.add((name, os.readlink(f"/proc/self/fd/{name}")))
            except OSError:  # closed since the listing (the listing's own descriptor, too)
                pass
        return fds

    async def main():
        server, port = await _serve(loop, _Accepting.factory(loop))
        before = open_fds()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        while len(_Accepting.made) < count:
            await asyncio.sleep(0.01)
        protos = list(_Accepting.made)
        _Accepting.made.clear()
        for proto in protos:
            while not hasattr(proto, "transport"):
                await asyncio.sleep(0.01)
        assert len(open_fds() - before) == 2 * count  # each client's end and the server's
        transport = protos[0].transport
        sock = transport.get_extra_info("socket")
        assert transport.get_extra_info("socket") is sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert len(open_fds() - before) == 2 * count + 1
        for client in clients:
            client.close()
        for proto in protos:
            assert await proto.lost is None
        assert transport.get_extra_info("socket", "gone") is sock  # asyncio's keeps it too
        assert sock.fileno() == -1
        assert not open_fds() - before
        server.close()
        await server.wait_closed()

    _run(loop, main())


@pytest.mark.timeout(30)
def test_abort_reports_none_and_a_failing_callback_reports_its_exception(loop):
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    class Failing(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            raise ZeroDivisionError("from data_received")

    async def main():
        server, port = await _serve(loop, Failing)
        transport, proto = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        transport.abort()
        assert await proto.lost is None
        # The server side's data_received raises: reported, and its connection is dropped.
        transport, proto = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        transport.write(b"boom")
        await proto.lost
        server.close()
        await server.wait_closed()

    _run(loop, main())
    assert [c["message"] for c in errors] == ["Fatal error: protocol.data_received() call failed."]
    assert isinstance(errors[0]["exception"], ZeroDivisionError)


@pytest.mark.timeout(30)
def test_flow_control_pauses_and_resumes_the_writer(loop):
    # The server's (native) transport writes to a client that stops reading for a while.
    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()  # the kernel buffers fill up
            loop.call_later(0.5, transport.resume_reading)

    async def main():
        server, port = await _serve(loop, _Accepting.factory(loop))
        client, proto = await _accepted(loop, port, Slow)
        while not hasattr(proto, "transport"):
            await asyncio.sleep(0.01)
        proto.transport.set_write_buffer_limits(high=64 * 1024)
        for _ in range(64):
            proto.transport.write(b"x" * 64 * 1024)
        for _ in range(200):
            if proto.events == ["pause", "resume"]:
                break
            await asyncio.sleep(0.05)
        client.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        return proto.events

    assert _run(loop, main()) == ["pause", "resume"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_write_that_passes_the_high_water_mark_pauses_the_protocol_at_once(workers):
    # asyncio's write() calls pause_writing() as the buffer passes the high-water mark, so a
    # protocol may write until paused inside one callback; resume_writing() follows the drain.
    # The native transport counts what the running callback wrote and has not committed.
    total = 4 << 20
    chunk = b"x" * 16384

    class Flood(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.paused, self.sent, self.events = transport, False, 0, []
            transport.set_write_buffer_limits(high=65536, low=16384)

        def data_received(self, data):
            self.fill()

        def fill(self):
            while not self.paused and self.sent < total:
                self.transport.write(chunk)
                self.sent += len(chunk)
            if self.sent >= total:
                self.transport.close()

        def pause_writing(self):
            self.events.append("pause")
            self.paused = True

        def resume_writing(self):
            self.events.append("resume")
            self.paused = False
            self.fill()

    made = []

    def factory():
        made.append(Flood())
        return made[-1]

    loop = tm_asyncio.EventLoop(workers=workers, parallel=workers > 1)
    try:

        async def main():
            server = await loop.create_server(factory, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"go")
            received = len(await reader.read())  # to the server's close
            writer.close()
            server.close()
            await server.wait_closed()
            return received

        received = _run(loop, main())
    finally:
        loop.close()
    assert isinstance(made[0].transport, NativeStreamTransport) == (workers > 1)
    assert received == total
    events = made[0].events
    assert events and events[0] == "pause", events
    assert events[::2] == ["pause"] * len(events[::2]), events  # alternating, pause first
    assert events[1::2] == ["resume"] * len(events[1::2]), events


@pytest.mark.timeout(30)
def test_buffered_protocol_gets_every_byte(loop):
    payload = bytes(range(256)) * 2000

    class Sink(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(1000)
            self.got = bytearray()
            self.done = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buffer

        def buffer_updated(self, nbytes):
            self.got += self.buffer[:nbytes]

        def eof_received(self):
            self.done.set_result(bytes(self.got))

    sinks = []

    def make_sink():
        sinks.append(Sink())
        return sinks[-1]

    async def main():
        server, port = await _serve(loop, make_sink)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        while not sinks:
            await asyncio.sleep(0.01)
        got = await sinks[0].done
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    assert _run(loop, main()) == payload


@pytest.mark.timeout(60)
def test_many_stream_clients_echo_in_parallel_mode(loop):
    # asyncio's own stream protocol runs under the loop lock; the clients' lines all come back.
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def client(port, n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(50):
            writer.write(b"%d:%d\n" % (n, i))
        got = [await reader.readline() for _ in range(50)]
        writer.close()
        await writer.wait_closed()
        return got == [b"%d:%d\n" % (n, i) for i in range(50)]

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        results = await asyncio.gather(*(client(port, n) for n in range(20)))
        server.close()
        await server.wait_closed()
        return results

    assert _run(loop, main()) == [True] * 20


@pytest.mark.timeout(30)
def test_a_protocol_callback_completes_a_future_a_task_awaits(loop):
    # connection_lost() runs on the connection's strand, without the loop lock; the future it
    # completes is a loop future, which takes the lock for the change.
    async def main():
        server, port = await _serve(loop, asyncio.Protocol)
        results = []
        for _ in range(20):
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), "127.0.0.1", port
            )
            transport.close()
            results.append(await proto.lost)
        server.close()
        await server.wait_closed()
        return results

    assert _run(loop, main()) == [None] * 20


def test_parallel_needs_more_than_one_worker():
    loop = tm_asyncio.EventLoop(workers=1, parallel=True)
    try:
        assert not loop.parallel
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("1", True), ("0", False), (None, FREE_THREADED)],
    ids=["on", "off", "unset-free-threaded-only"],
)
def test_parallel_default_from_environment(monkeypatch, setting, expected):
    if setting is None:
        monkeypatch.delenv("TM_ASYNCIO_PARALLEL", raising=False)
    else:
        monkeypatch.setenv("TM_ASYNCIO_PARALLEL", setting)
    loop = tm_asyncio.EventLoop(workers=2)
    try:
        assert loop.parallel is expected
    finally:
        loop.close()


# -- tasks on their connection's strand (default; TM_ASYNCIO_TASK_STRANDS=0 turns it off) ----------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "task_strands", [None, "1", "0"], ids=["default", "task-strands", "loop-strand-control"]
)
def test_two_stream_handlers_run_at_the_same_time(monkeypatch, task_strands):
    # With task strands, start_server's handler task runs on its connection's strand: two
    # handlers meet inside a barrier only if their steps run at once (without, they run on the
    # loop's strand one at a time: the control).
    if task_strands is None:
        monkeypatch.delenv("TM_ASYNCIO_TASK_STRANDS", raising=False)
    else:
        monkeypatch.setenv("TM_ASYNCIO_TASK_STRANDS", task_strands)
    expect_parallel = task_strands != "0" and FREE_THREADED
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    barrier = threading.Barrier(2, timeout=2 if expect_parallel else 0.5)
    tasks_seen = []

    async def handle(reader, writer):
        await reader.readline()
        tasks_seen.append(asyncio.current_task())
        try:
            barrier.wait()
            writer.write(b"met\n")
        except threading.BrokenBarrierError:
            writer.write(b"alone\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return await _ask_two_clients(server, server.sockets[0].getsockname()[1])

    try:
        replies = _run(loop, main())
    finally:
        loop.close()
    assert len(tasks_seen) == 2 and None not in tasks_seen and tasks_seen[0] is not tasks_seen[1]
    if expect_parallel:
        assert replies == [b"met\n", b"met\n"]
    else:
        assert b"alone\n" in replies


@pytest.mark.timeout(60)
def test_stream_handlers_share_managed_state_exactly(monkeypatch):
    # Many handler tasks in parallel count into one managed object: no update is lost.
    import tm

    monkeypatch.setenv("TM_ASYNCIO_TASK_STRANDS", "1")
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)

    class Counts:
        def __init__(self):
            self.lines = 0
            self.by_client = {}

    counts = tm.manage(Counts())

    async def handle(reader, writer):
        while line := await reader.readline():
            client = line.split(b":")[0].decode()
            counts.lines += 1
            counts.by_client[client] = counts.by_client.get(client, 0) + 1
            writer.write(b"ok\n")
        writer.close()

    async def client(port, n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(100):
            writer.write(b"%d:%d\n" % (n, i))
            assert await reader.readline() == b"ok\n"
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await asyncio.gather(*(client(port, n) for n in range(8)))
        server.close()
        await server.wait_closed()

    try:
        _run(loop, main())
    finally:
        loop.close()
    assert counts.lines == 800
    assert dict(counts.by_client) == {str(n): 100 for n in range(8)}


_LOCK_ORDER_SCENARIO = r"""
import asyncio, socket, threading
import tm, tm_asyncio

async def main():
    loop = asyncio.get_running_loop()
    loop_callback_holds_the_lock = threading.Event()
    handler_is_inevitable = threading.Event()

    def loop_callback():  # on the loop's strand: runs holding the loop lock
        loop_callback_holds_the_lock.set()
        handler_is_inevitable.wait(2)  # without the fix the handler is inevitable by now
        socket.socket().close()  # the audit hook makes this transaction inevitable

    async def handler(reader, writer):  # a task on the connection's strand
        loop_callback_holds_the_lock.wait(5)
        tm.inevitable()  # as at a first shared access
        handler_is_inevitable.set()
        fut = loop.create_future()
        loop.call_soon_threadsafe(fut.set_result, None)
        await fut  # add_done_callback takes the loop lock
        writer.write(b"done\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # From a plain thread, so that it is queued at once (a post made inside a callback waits
    # for that callback's commit) while the handler's first step is running.
    threading.Timer(0.3, loop.call_soon_threadsafe, args=(loop_callback,)).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    print((await reader.readline()).decode().strip(), flush=True)
    writer.close()
    server.close()

with asyncio.Runner(loop_factory=lambda: tm_asyncio.EventLoop(workers=2, parallel=True)) as r:
    r.run(main())
"""


def test_a_loop_callback_and_an_inevitable_task_step_do_not_deadlock_on_the_loop_lock():
    """A loop-strand callback that becomes inevitable while it holds the loop lock, against a
    connection task step that is inevitable and waits for that lock (seen in the chat example).
    Run in a child process: a deadlock there fails the test instead of hanging the suite."""
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOCK_ORDER_SCENARIO],
            capture_output=True,
            text=True,
            # A deadlock never ends; a loaded machine (CI's other jobs) can take tens of seconds
            # to start the child and run its three connections.
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the loop callback and the task step deadlocked")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"


class _SendsAFile(asyncio.Protocol):
    """A server protocol that answers a connection with a header, a file and a trailer."""

    def __init__(self, loop, path, outcome) -> None:
        self.loop, self.path, self.outcome = loop, path, outcome

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"header;")  # sent at this callback's commit, before the file
        self.loop.create_task(self.send())

    async def send(self) -> None:
        with open(self.path, "rb") as file:
            sending = self.loop.create_task(self.loop.sendfile(self.transport, file, 10, 3_000_000))
            await asyncio.sleep(0)
            try:
                self.transport.write(b"too early")
            except RuntimeError as error:
                self.outcome["write during sendfile"] = str(error)
            self.outcome["sent"] = await sending
            self.outcome["file position"] = file.tell()
        self.transport.write(b";trailer")
        self.transport.close()


@pytest.mark.timeout(60)
def test_sendfile_on_a_native_transport_uses_os_sendfile_in_order_with_writes(
    loop, tmp_path, monkeypatch
):
    # Big enough that the socket fills up and os.sendfile() must wait for it to drain.
    content = bytes(range(256)) * 16_000  # 4,096,000 bytes
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    calls = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args):
        calls.append(args[3])
        return real_sendfile(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    outcome: dict = {}

    async def main():
        server = await loop.create_server(lambda: _SendsAFile(loop, path, outcome), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        received = await reader.read()  # to EOF: the server closes after the trailer
        writer.close()
        server.close()
        await server.wait_closed()
        return received

    received = _run(loop, main(), timeout=45)
    assert received == b"header;" + content[10:3_000_010] + b";trailer"
    assert outcome == {
        "write during sendfile": "unable to write; sendfile is in progress",
        "sent": 3_000_000,
        "file position": 3_000_010,
    }
    assert calls  # the file went through os.sendfile(), not through write()


@pytest.mark.timeout(60)
def test_a_handler_s_backend_connection_runs_on_the_handler_s_strand(loop):
    """A proxy: each handler opens a connection to a backend and relays lines through it. The
    backend connection joins the handler's strand (so the task, its client's transport and its
    backend's transport run one at a time there), and every line comes back to its own client."""
    backend_strands = []

    async def echo_upper(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
        writer.close()

    async def relay(reader, writer):
        own = writer.transport
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        backend = backend_writer.transport
        backend_strands.append(
            (type(backend).__name__, backend._native.strand == own._native.strand)
            if isinstance(backend, NativeStreamTransport)
            else (type(backend).__name__, None)
        )
        while line := await reader.readline():
            backend_writer.write(line)
            await backend_writer.drain()
            writer.write(await backend_reader.readline())
            await writer.drain()
        backend_writer.close()
        writer.close()

    async def client(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        replies = []
        for i in range(20):
            writer.write(b"client %d line %d\n" % (n, i))
            replies.append(await reader.readline())
        writer.close()
        return replies

    async def main():
        nonlocal backend_port, proxy_port
        backend = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
        backend_port = backend.sockets[0].getsockname()[1]
        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        proxy_port = proxy.sockets[0].getsockname()[1]
        results = await asyncio.gather(*(client(n) for n in range(12)))
        for server in (proxy, backend):
            server.close()
            await server.wait_closed()
        return results

    backend_port = proxy_port = 0
    results = _run(loop, main(), timeout=45)
    for n, replies in enumerate(results):
        assert replies == [b"CLIENT %d LINE %d\n" % (n, i) for i in range(20)]
    assert backend_strands == [("NativeStreamTransport", True)] * 12


@pytest.mark.timeout(60)
def test_a_loop_strand_client_connection_sends_what_a_transaction_wrote_at_its_commit(loop):
    """A client connection made on the loop's strand keeps asyncio's transport; what a task step
    writes to it leaves when the step commits, behind the writes before it, and a close after
    them waits for them."""
    from tm_asyncio._commit_ordered import CommitOrderedSocketTransport

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer, _ = listener.accept()
        peer.setblocking(False)
        transport = writer.transport
        seen["transport"] = type(transport).__name__
        writer.write(b"first;")  # a task step: a transaction
        writer.write(b"second")
        seen["buffered"] = transport.get_write_buffer_size()
        try:
            seen["early"] = peer.recv(100)
        except BlockingIOError:
            seen["early"] = None  # nothing left before the step's commit
        writer.close()
        seen["closing"] = transport.is_closing()
        await asyncio.sleep(0.05)  # the step commits at this await
        peer.setblocking(True)
        peer.settimeout(5)
        received = b""
        while chunk := peer.recv(100):
            received += chunk
        seen["received"] = received
        peer.close()

    with listener:
        _run(loop, main())
    assert seen == {
        "transport": CommitOrderedSocketTransport.__name__,
        "buffered": 12,
        "early": None,
        "closing": True,
        "received": b"first;second",
    }


@pytest.mark.timeout(60)
def test_an_aborted_attempt_sends_nothing_and_abort_drops_held_writes(loop):
    """A restartable transaction on another thread writes to the transport and is aborted
    (injected aborts, every attempt, until the engine runs it inevitable): only the attempt that
    committed is sent. Then a task step writes and aborts the transport: nothing of it leaves."""
    import tm

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    attempts = []

    async def main():
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        peer, _ = listener.accept()
        peer.settimeout(5)
        counter = tm.Var(0)

        def restartable():
            attempts.append(len(attempts) + 1)
            writer.transport.write(b"attempt %d;" % attempts[-1])
            counter.value = counter.value + 1  # a managed access: where injected aborts strike

        def on_another_thread():
            tm.set_abort_injection(1.0, 3)
            try:
                tm.run_atomic(restartable)
            finally:
                tm.set_abort_injection(0.0)

        await loop.run_in_executor(None, on_another_thread)
        sent = b""
        while not sent.endswith(b";"):
            sent += peer.recv(100)
        writer.write(b"dropped")
        writer.transport.abort()
        await asyncio.sleep(0.05)
        rest = b""
        try:
            while chunk := peer.recv(100):
                rest += chunk
        except ConnectionResetError:
            pass
        peer.close()
        return sent, rest, counter.value

    with listener:
        sent, rest, count = _run(loop, main())
    assert len(attempts) > 1 and count == 1  # aborted attempts, one commit
    assert sent == b"attempt %d;" % attempts[-1]
    assert rest == b""


@pytest.mark.timeout(60)
def test_tls_connections_run_over_the_native_transports(loop):
    """TLS goes over the transports plain TCP gets: a server's TLS connections are native, on
    strands of their own, and a TLS echo round trip through them works."""
    from test.test_asyncio import utils as asyncio_test_utils

    server_transports = []

    async def echo(reader, writer):
        server_transports.append(writer.transport._ssl_protocol._transport)
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(
            echo, "127.0.0.1", 0, ssl=asyncio_test_utils.simple_server_sslcontext()
        )
        port = server.sockets[0].getsockname()[1]
        replies = []
        for n in range(3):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=asyncio_test_utils.simple_client_sslcontext()
            )
            writer.write(b"secret %d\n" % n)
            replies.append(await reader.readline())
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return replies

    assert _run(loop, main(), timeout=45) == [b"secret %d\n" % n for n in range(3)]
    assert [type(t).__name__ for t in server_transports] == ["NativeStreamTransport"] * 3
    assert len({t._native.strand.id for t in server_transports}) == 3


@pytest.mark.timeout(60)
def test_a_udp_endpoint_sends_what_a_transaction_sent_at_its_commit(loop):
    from tm_asyncio._commit_ordered import CommitOrderedDatagramTransport

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    seen = {}

    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=peer.getsockname()
        )
        seen["transport"] = type(transport).__name__
        transport.sendto(b"one")  # a task step: a transaction
        transport.sendto(b"two")
        with pytest.raises(ValueError):  # asyncio's check, at once
            transport.sendto(b"x", ("127.0.0.2", 9))
        try:
            seen["early"] = peer.recv(100)
        except BlockingIOError:
            seen["early"] = None
        await asyncio.sleep(0.05)  # the step commits at this await
        seen["received"] = [peer.recv(100), peer.recv(100)]
        transport.close()

    with peer:
        _run(loop, main())
    assert seen == {
        "transport": CommitOrderedDatagramTransport.__name__,
        "early": None,
        "received": [b"one", b"two"],
    }


class _TrailerOnResume(asyncio.Protocol):
    """Writes `size` bytes and closes at once (server side: on the first data; client side: the
    test does it), then writes TRAILER in the resume_writing() that the drain brings, as a TLS
    protocol writes the close_notify it held back while paused."""

    def __init__(self, loop, size=0):
        self.size = size
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(b"x" * self.size)
        self.transport.close()

    def resume_writing(self):
        self.transport.write(b"TRAILER")

    def connection_lost(self, exc):
        self.lost.get_loop().call_soon_threadsafe(self.lost.set_result, exc)


def _read_to_the_end(sock):
    sock.settimeout(20)
    received = b""
    while chunk := sock.recv(1 << 20):
        received += chunk
    return received


_BIG = 8 << 20  # more than loopback's socket buffers take: the close waits for the drain


@pytest.mark.timeout(60)
def test_a_closing_loop_strand_connection_sends_what_its_resume_writes(loop):
    """asyncio's transport (a loop-strand client in parallel mode) ends a closing connection once
    its buffer is empty after the drain's resume_writing(); what that resume writes is held to
    its commit, and the end waits for it (test_ssl's test_remote_shutdown_receives_trailing_data
    hung: the peer never got the close_notify)."""
    from tm_asyncio._commit_ordered import CommitOrderedSocketTransport

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def main():
        transport, protocol = await loop.create_connection(
            lambda: _TrailerOnResume(loop), "127.0.0.1", port
        )
        peer, _ = listener.accept()
        kind = type(transport).__name__
        transport.write(b"x" * _BIG)
        transport.close()
        with peer:
            received = await loop.run_in_executor(None, _read_to_the_end, peer)
        return kind, received, await protocol.lost

    with listener:
        kind, received, exc = _run(loop, main(), timeout=45)
    assert kind == CommitOrderedSocketTransport.__name__
    assert (len(received), received[-8:], exc) == (_BIG + 7, b"xTRAILER", None)


@pytest.mark.timeout(60)
def test_a_closing_native_connection_sends_what_its_resume_writes(loop):
    """A native transport closed with bytes still to send takes writes until they are sent, as
    asyncio's buffer does: the resume_writing() of the drain writes TRAILER after close(), and
    it arrives before the end of the stream (a TLS server's close_notify after the peer's)."""
    made = []

    def factory():
        made.append(_TrailerOnResume(loop, _BIG))
        return made[-1]

    async def main():
        server, port = await _serve(loop, factory)
        peer = socket.create_connection(("127.0.0.1", port))
        with peer:
            peer.sendall(b"go")
            await asyncio.sleep(0.2)  # the reply fills the buffers before the peer reads
            received = await loop.run_in_executor(None, _read_to_the_end, peer)
        while not made:
            await asyncio.sleep(0.01)
        exc = await made[0].lost
        server.close()
        await server.wait_closed()
        return type(made[0].transport).__name__, received, exc

    kind, received, exc = _run(loop, main(), timeout=45)
    assert kind == NativeStreamTransport.__name__
    assert (len(received), received[-8:], exc) == (_BIG + 7, b"xTRAILER", None)


@pytest.mark.timeout(60)
def test_a_write_after_closing_with_nothing_to_send_is_ignored(loop):
    """asyncio's close() with an empty buffer makes later writes no-ops; the native transport's
    too, though its close reaches the socket only at the commit."""

    class CloseThenWrite(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()
            transport.write(b"ignored")

    async def main():
        server, port = await _serve(loop, CloseThenWrite)
        peer = socket.create_connection(("127.0.0.1", port))
        with peer:
            received = await loop.run_in_executor(None, _read_to_the_end, peer)
        server.close()
        await server.wait_closed()
        return received

    assert _run(loop, main()) == b""


@pytest.mark.timeout(60)
def test_timers_made_and_cancelled_on_connection_strands(loop):
    """Handler tasks on connection strands arm and cancel timers while the loop's strand runs
    the due ones: every timer left armed fires once, a cancelled one never, and the cancelled
    ones leave the heap (asyncio's rule: once they are half of it) though no cancel came from
    the loop's strand."""
    fired: list[tuple[int, int]] = []
    per_connection, connections = 300, 6

    async def handle(reader, writer):
        n = int((await reader.readline()).decode())
        handles = [
            loop.call_later(0.001 * (i % 7), fired.append, (n, i)) for i in range(per_connection)
        ]
        for h in handles[1::2]:
            h.cancel()
        far = [loop.call_later(3600, fired.append, (n, -1)) for _ in range(per_connection)]
        for h in far:
            h.cancel()
        await asyncio.sleep(0.05)
        writer.write(b"done\n")
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def client(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"{n}\n".encode())
            line = await reader.readline()
            writer.close()
            return line

        replies = await asyncio.gather(*(client(n) for n in range(connections)))
        await asyncio.sleep(0.05)  # the last posted drop of cancelled handles
        server.close()
        await server.wait_closed()
        return replies

    replies = _run(loop, main())
    assert replies == [b"done\n"] * connections
    expected = {(n, i) for n in range(connections) for i in range(0, per_connection, 2)}
    assert sorted(fired) == sorted(expected)  # each once, none cancelled
    assert len(loop._timer_heap) < connections * per_connection  # cancelled ones dropped


def _publish(port: int, lines: list[bytes]) -> bytes:
    """A client thread's connection: sends lines and a half-close, returns the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(lines))
        sock.shutdown(socket.SHUT_WR)
        return sock.makefile("rb").read()


@pytest.mark.timeout(60)
def test_handlers_and_a_loop_task_share_an_asyncio_queue(loop):
    # Handlers of 8 connections put what they read into one asyncio.Queue made in main(); a task
    # of the loop's strand takes it out; each handler waits with queue.join() for its lines to be
    # taken. The queue's deque, getters and count changed from two threads at once lost items and
    # wake-ups: join() never returned (tm_asyncio._shared_primitives).
    publishers, count = 8, 200
    taken: list[bytes] = []

    async def main():
        queue = asyncio.Queue()

        async def consume():
            while True:
                taken.append(await queue.get())
                queue.task_done()

        async def handle(reader, writer):
            n = 0
            while line := await reader.readline():
                await queue.put(line)
                n += 1
            await queue.join()
            writer.write(b"put %d\n" % n)
            await writer.drain()
            writer.close()

        consumer = asyncio.create_task(consume())
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        replies = await asyncio.gather(
            *(
                asyncio.to_thread(_publish, port, [b"p%d m%d\n" % (i, k) for k in range(count)])
                for i in range(publishers)
            )
        )
        consumer.cancel()
        server.close()
        await server.wait_closed()
        return replies

    replies = _run(loop, main(), timeout=40)
    assert replies == [b"put %d\n" % count] * publishers
    for i in range(publishers):
        assert [line for line in taken if line.startswith(b"p%d " % i)] == [
            b"p%d m%d\n" % (i, k) for k in range(count)
        ]
    assert len(taken) == publishers * count


class HandedOver(asyncio.Protocol):
    """A protocol listed as one that runs locked (for the test below): its connection_made
    starts a task, which records whether its steps hold the loop lock."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        self.seen.append(("fed", tm_asyncio._tasks.in_locked_step()))
        asyncio.get_running_loop().create_task(self.reply(data))

    async def reply(self, data) -> None:
        self.seen.append(("task", tm_asyncio._tasks.in_locked_step()))
        self.transport.write(data.upper())


class Upgrading(asyncio.Protocol):
    """An HTTP server's protocol as uvicorn's: the callback that reads the upgrade request hands
    the connection to a new protocol and feeds it what came."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        self.seen.append(("before", tm_asyncio._tasks.in_locked_step()))
        protocol = HandedOver(self.seen)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(data)


@pytest.mark.timeout(30)
def test_a_callback_that_hands_its_connection_to_a_locked_protocol_runs_locked_from_there(
    loop, monkeypatch
):
    """The rest of the callback, and the task the new protocol starts in it, hold the loop lock
    as the protocol's own callbacks do (uvicorn's WebSocket protocols, which its HTTP protocol
    switches to in the callback that reads the upgrade request); the lock is let go when the
    callback ends, so the next connections are served."""
    from tm_asyncio import _shared_objects

    monkeypatch.setitem(_shared_objects.LOCKED_PROTOCOLS, __name__, ("HandedOver",))
    seen: list = []

    async def main():
        server, port = await _serve(loop, lambda: Upgrading(seen))
        replies = []
        for n in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"upgrade %d" % n)
            replies.append(await reader.readexactly(9))
            writer.close()
        server.close()
        await server.wait_closed()
        return replies

    assert _run(loop, main()) == [b"UPGRADE %d" % n for n in range(3)]
    assert seen == [("before", False), ("fed", True), ("task", True)] * 3
