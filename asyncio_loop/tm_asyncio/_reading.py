"""asyncio's selector and read-pipe transports, receiving into a buffer of the thread that reads.

asyncio's socket, datagram and read-pipe transports read with ``recv(max_size)``,
``recvfrom(max_size)`` and ``os.read(fd, max_size)``, 256 KiB: every read allocates a 256 KiB
bytes object and shrinks it to what arrived. glibc's malloc serves a request that large with ``mmap()`` unless its arena has room
for it, which the main thread's heap usually has after start-up and a thread's arena, where the
reactor's workers run these callbacks, has not: there every read also paid an ``mmap``, a page
fault, an ``mremap`` and an ``munmap`` (with the TLB shootdown of a multi-threaded process), 15 us
against 2.5 for a 64-byte read on 3.11 (docs/BENCHMARKS.md, "Reads on a worker thread"). These
transports receive into a buffer of ``max_size`` bytes kept per thread and hand the protocol a
``bytes`` copy of what arrived, as uvloop does; the rest is asyncio's code. The free-threaded
interpreter allocates through mimalloc, where both ways cost the same.
"""

from __future__ import annotations

import os
import threading
from asyncio.log import logger

from tm_asyncio._compat import (
    _SelectorDatagramTransport,
    _SelectorSocketTransport,
    _UnixReadPipeTransport,
)

_per_thread = threading.local()


def _receive_buffer(size: int) -> memoryview | None:
    """This thread's buffer, or None when ``size`` is larger (a transport's own max_size): such a
    read allocates as asyncio's does."""
    try:
        view = _per_thread.view
    except AttributeError:
        view = _per_thread.view = memoryview(bytearray(_SelectorSocketTransport.max_size))
    return view if size <= len(view) else None


class SocketTransport(_SelectorSocketTransport):
    """asyncio's socket transport, receiving into the thread's buffer."""

    def _read_ready__data_received(self) -> None:
        # asyncio's method (3.11 to 3.14) but for the receive
        if self._conn_lost:
            return
        size = self.max_size
        view = _receive_buffer(size)
        try:
            if view is None:
                data = self._sock.recv(size)
            else:
                data = view[: self._sock.recv_into(view, size)].tobytes()
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return

        if not data:
            self._read_ready__on_eof()
            return

        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")


class DatagramTransport(_SelectorDatagramTransport):
    """asyncio's datagram transport, receiving into the thread's buffer."""

    def _read_ready(self) -> None:
        # asyncio's method (3.11 to 3.14) but for the receive
        if self._conn_lost:
            return
        size = self.max_size
        view = _receive_buffer(size)
        try:
            if view is None:
                data, addr = self._sock.recvfrom(size)
            else:
                received, addr = self._sock.recvfrom_into(view, size)
                data = view[:received].tobytes()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)


class ReadPipeTransport(_UnixReadPipeTransport):
    """asyncio's read-pipe transport (connect_read_pipe, a subprocess's output), receiving into
    the thread's buffer."""

    def _read_ready(self) -> None:
        # asyncio's method (3.11 to 3.14) but for the receive
        size = self.max_size
        view = _receive_buffer(size)
        try:
            if view is None:
                data = os.read(self._fileno, size)
            else:
                data = view[: os.readv(self._fileno, [view[:size]])].tobytes()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
        else:
            if data:
                self._protocol.data_received(data)
            else:
                if self._loop.get_debug():
                    logger.info("%r was closed by peer", self)
                self._closing = True
                self._loop._remove_reader(self._fileno)
                self._loop.call_soon(self._protocol.eof_received)
                self._loop.call_soon(self._call_connection_lost, None)


__all__ = ["DatagramTransport", "ReadPipeTransport", "SocketTransport"]
