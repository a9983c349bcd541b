"""How tm_asyncio's socket, datagram and read-pipe transports read (tm_asyncio._reading): into a
buffer of the reading thread, handing the protocol bytes, within the transport's max_size, as
asyncio's do."""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc

import pytest

import tm_asyncio


@pytest.fixture
def loop(each_loop):
    return each_loop


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list = []
        self.got = asyncio.Event()
        self.wanted = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data) -> None:
        self.chunks.append(data)
        if sum(map(len, self.chunks)) >= self.wanted:
            self.got.set()


async def _connected_pair(loop):
    """A server socket of our own and a client connection made by the loop (its transport)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    transport, protocol = await loop.create_connection(_Recorder, "127.0.0.1", port)
    peer, _ = listener.accept()
    listener.close()
    return transport, protocol, peer


class _PipeWriter:
    """The write end of a pipe, as the peer socket's sendall and close."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)


async def _connected_pipe(loop):
    """A pipe whose read end the loop reads (connect_read_pipe: its transport)."""
    read_fd, write_fd = os.pipe()
    transport, protocol = await loop.connect_read_pipe(_Recorder, os.fdopen(read_fd, "rb", 0))
    return transport, protocol, _PipeWriter(write_fd)


SOURCES = {"socket": _connected_pair, "pipe": _connected_pipe}


async def _receive(protocol, peer, payload: bytes) -> None:
    protocol.got.clear()
    protocol.wanted = sum(map(len, protocol.chunks)) + len(payload)
    if len(payload) > 32 * 1024:  # more than a pipe holds: written while the loop reads
        await asyncio.gather(asyncio.to_thread(peer.sendall, payload), protocol.got.wait())
    else:
        peer.sendall(payload)
    await asyncio.wait_for(protocol.got.wait(), 10)


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.timeout(30)
def test_a_stream_protocol_gets_bytes_within_max_size(loop, source):
    async def main():
        transport, protocol, peer = await SOURCES[source](loop)
        try:
            await _receive(protocol, peer, b"a" * 100)
            transport.max_size = 16  # asyncio reads at most max_size bytes a read
            await _receive(protocol, peer, b"b" * 100)
            transport.max_size = 1024 * 1024  # past the thread's buffer: asyncio's own read
            await _receive(protocol, peer, b"c" * 300_000)
        finally:
            transport.close()
            peer.close()
        return protocol.chunks

    chunks = loop.run_until_complete(main())
    assert all(type(chunk) is bytes for chunk in chunks)
    assert b"".join(chunks) == b"a" * 100 + b"b" * 100 + b"c" * 300_000
    first_b = next(i for i, chunk in enumerate(chunks) if chunk.startswith(b"b"))
    b_chunks = [chunk for chunk in chunks[first_b:] if chunk.startswith(b"b")]
    assert len(b_chunks) >= 100 // 16 and all(len(chunk) <= 16 for chunk in b_chunks)


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.timeout(30)
def test_small_reads_allocate_no_read_sized_buffer(source):
    """asyncio's recv(256 KiB) allocates 256 KiB a read (and, in a glibc thread arena, maps and
    unmaps it): the tm loop's reads allocate what arrived. One worker, so that every read runs on
    the thread whose buffer the first read made."""
    loop = tm_asyncio.EventLoop(workers=1)

    async def main():
        transport, protocol, peer = await SOURCES[source](loop)
        try:
            await _receive(protocol, peer, b"w" * 64)  # the reading thread's buffer now exists
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            for _ in range(50):
                await _receive(protocol, peer, b"x" * 64)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            transport.close()
            peer.close()
        return peak - base

    tracemalloc.start()
    try:
        growth = loop.run_until_complete(main())
    finally:
        tracemalloc.stop()
        loop.close()
        asyncio.set_event_loop(None)
    assert growth < 64 * 1024, f"the reads' peak allocation grew by {growth} bytes"


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list = []
        self.got = asyncio.Event()

    def datagram_received(self, data, addr) -> None:
        self.received.append((data, addr))
        self.got.set()


@pytest.mark.timeout(30)
def test_a_datagram_protocol_gets_bytes_and_the_sender(loop):
    async def main():
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, local_addr=("127.0.0.1", 0)
        )
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        sender_address = sender.getsockname()
        try:
            address = transport.get_extra_info("sockname")
            for payload in (b"one", b"", b"x" * 60_000):
                protocol.got.clear()
                sender.sendto(payload, address)
                await asyncio.wait_for(protocol.got.wait(), 10)
            transport.max_size = 8  # a datagram larger than max_size is cut to it, as asyncio's
            protocol.got.clear()
            sender.sendto(b"0123456789", address)
            await asyncio.wait_for(protocol.got.wait(), 10)
        finally:
            transport.close()
            sender.close()
        return protocol.received, sender_address

    received, sender_address = loop.run_until_complete(main())
    assert [data for data, _ in received] == [b"one", b"", b"x" * 60_000, b"01234567"]
    assert all(type(data) is bytes and addr == sender_address for data, addr in received)
