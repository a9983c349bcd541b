"""asyncio's own transports, sending what a transaction wrote at its commit (parallel mode).

In parallel mode the transports asyncio makes on the loop's strand stay asyncio's: a client
connection made there (from ``main()``, a timer, a task on the loop's strand), a UDP endpoint.
Their callbacks run on the loop's strand, in
order with the loop's other callbacks, as code around ``run_until_complete()`` expects
(docs/ASYNCIO.md). What a transaction writes to them is held until it commits, as on the native
transports (DESIGN.md section 1): the bytes leave after the managed changes made before them are
visible to other strands, and an attempt that aborts (a restartable ``tm.run_atomic`` on another
thread) sends nothing. ``write_eof()`` and ``close()`` after held writes are held behind them, in
order; ``abort()`` drops them, as it drops asyncio's buffer. Outside a transaction (the code
between ``run_until_complete()`` calls, another thread) each is asyncio's transport, at once.
Invalid arguments go straight to asyncio's method, which raises as it always does.

Pipes (a subprocess's stdin) keep asyncio's transport as it is: a write's error (EPIPE) must reach
the ``drain()`` right after it (test_subprocess's ``test_stdin_broken_pipe``), and a write held to
commit would only fail after that ``drain()`` returned.

The release runs at commit, outside the transaction, under the loop lock that the loop's own
callbacks hold while they run. Flow control follows asyncio's: ``get_write_buffer_size()`` counts
the held bytes too, and a ``write()`` pauses the protocol at once where asyncio's certainly would
have: asyncio hands each write to the kernel and buffers only what it refuses, so once the held
bytes exceed the socket's send buffer by more than the high-water mark (``while True: write();
await drain()`` then yields, and its writes are sent). After the release ``resume_writing()``
follows as soon as asyncio's buffer is at the low-water mark, as asyncio's transport resumes a
protocol.
"""

from __future__ import annotations


import socket
from typing import Any

import tm
from tm_asyncio._reading import DatagramTransport, SocketTransport

_EOF = object()  # write_eof(), held behind the writes before it
_CLOSE = object()  # close(), likewise
_BYTES = (bytes, bytearray, memoryview)


class _Lost:
    """The connection_lost() asyncio's transport makes once its buffer drained, held behind the
    writes the same transaction made (CommitOrderedSocketTransport._call_connection_lost)."""

    __slots__ = ("exc",)

    def __init__(self, exc) -> None:
        self.exc = exc


# To the type checker the mixin has asyncio's transport behind it (untyped: tm_asyncio._compat), as
# it has in the classes below at run time.
_TransportBase: Any = object


class _HeldUntilCommit(_TransportBase):
    """The holding and releasing every transport here shares (a mixin before asyncio's class)."""

    def __init__(self, *args, **kwargs) -> None:
        self._held: list = []  # what the running transaction asked for, in order
        self._held_bytes = 0
        self._eof_held = self._close_held = False
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if not self._held:
            return super().close()
        if not self._close_held:
            self._close_held = True
            self._hold(_CLOSE)

    def abort(self) -> None:
        self._drop_held()
        super().abort()

    def is_closing(self) -> bool:
        return super().is_closing() or self._close_held

    def get_write_buffer_size(self) -> int:
        return super().get_write_buffer_size() + self._held_bytes

    def _hold(self, item, size: int = 0) -> None:
        if not self._held:
            tm.on_commit(self._release_held)
            tm.on_abort(self._drop_held)
        self._held.append(item)
        self._held_bytes += size

    def _release_held(self) -> None:
        held = self._held
        self._drop_held()
        loop = self._loop
        if loop is None:  # connection_lost() ran meanwhile: asyncio drops writes after it too
            return
        with loop._lock:
            for item in held:
                if item is _EOF:
                    super().write_eof()
                elif item is _CLOSE:
                    super().close()
                elif isinstance(item, _Lost):
                    # Closing already: with the held bytes sent, the connection ends now; with
                    # some of them buffered, asyncio's transport ends it once they are sent.
                    if not self._buffer:
                        super()._call_connection_lost(item.exc)
                else:
                    self._release(item)
            # Paused by write() for held bytes that asyncio's write() then sent at once: it gives
            # no resume for a buffer it never filled.
            if self._loop is not None:
                self._maybe_resume_protocol()

    def _release(self, item) -> None:
        super().write(item)

    def _drop_held(self) -> None:
        self._held = []
        self._held_bytes = 0
        self._eof_held = self._close_held = False


class CommitOrderedSocketTransport(_HeldUntilCommit, SocketTransport):
    """asyncio's socket transport (a loop-strand client connection in parallel mode):
    write(), writelines() and write_eof() held inside a transaction."""

    def write(self, data) -> None:
        if not tm.in_transaction() or not isinstance(data, _BYTES):
            return super().write(data)  # at once; asyncio's checks raise as they always do
        if self._eof_held:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._refuses_writes():
            return super().write(data)  # asyncio's write raises
        if data:
            self._hold(bytes(data), len(data))
            if self._held_bytes - self._send_buffer_size() > self._high_water:
                self._maybe_pause_protocol()

    def writelines(self, list_of_data) -> None:
        if not tm.in_transaction() or self._refuses_writes():
            return super().writelines(list_of_data)
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if not self._held:
            return super().write_eof()
        if not (self.is_closing() or self._eof_held):
            self._eof_held = True
            self._hold(_EOF)

    def _call_connection_lost(self, exc) -> None:
        # A closing transport whose buffer drains calls its protocol's resume_writing() and, if the
        # buffer is still empty after it, ends the connection at once. A resume_writing() that
        # writes (a TLS protocol's close_notify, held back while it was paused) has those bytes
        # held to the commit here, after asyncio's transport found its buffer empty: the end
        # waits behind them, or the bytes would be dropped (the peer of a TLS connection closing
        # with its backlog still queued never saw the close_notify, and waited for it).
        if self._held:
            self._hold(_Lost(exc))
            return
        super()._call_connection_lost(exc)

    def _send_buffer_size(self) -> int:
        size = getattr(self, "_tm_send_buffer", None)
        if size is None:
            try:
                size = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            except OSError:
                size = 0
            self._tm_send_buffer = size
        return size

    def _refuses_writes(self) -> bool:
        """Whether asyncio's write() raises now (after write_eof(), during a sendfile()): then the
        call goes to asyncio's at once."""
        return self._eof or self._empty_waiter is not None


class CommitOrderedDatagramTransport(_HeldUntilCommit, DatagramTransport):
    """asyncio's datagram transport (create_datagram_endpoint): sendto() held as writes are."""

    def sendto(self, data, addr=None) -> None:
        if (
            not tm.in_transaction()
            or not isinstance(data, _BYTES)
            or (self._address and addr not in (None, self._address))
        ):
            return super().sendto(data, addr)  # at once; asyncio's checks raise as they always do
        self._hold((bytes(data), addr), len(data))

    def _release(self, item) -> None:
        data, addr = item
        super().sendto(data, addr)


__all__ = [
    "CommitOrderedDatagramTransport",
    "CommitOrderedSocketTransport",
]
