"""NativeStreamTransport: an asyncio transport over the C++ reactor's stream transport.

In the loop's parallel mode (docs/ASYNCIO.md, "Parallel mode") the TCP and Unix stream sockets a
server accepts are adopted by the C++ reactor instead of getting asyncio's selector transport. Such
a connection has a strand of its own: its protocol's callbacks run there, one at a time and in
order, and the callbacks of different connections run in parallel on a free-threaded interpreter.
A connection made from a connection's strand (a handler task opening a backend connection) is
adopted onto that same strand, so that the task and both transports it drives share it. What a
callback writes is queued on its transaction and sent at its commit.

asyncio's own protocols (streams, TLS, subprocess pipes, sendfile's fallback) hand data to futures
and tasks that run on the loop's strand; their callbacks run under the loop lock, as every
callback of the serial loop does. A user protocol's callbacks run without it: that is where the
parallelism comes from, and why state they share must be managed (docs/MANAGED_STATE.md).

Flow control is asyncio's for a connection's own callbacks and tasks: the write() that takes
the buffered bytes (committed and not sent, plus what the running callback wrote) above the
high-water mark calls the protocol's pause_writing() at once, so `while not paused:
transport.write(...)` ends; resume_writing() follows once the committed bytes fall to the
low-water mark; so does a write by a task of the loop's strand to a connection of asyncio's own
protocols (streams), whose flow control runs under the loop lock. A write from another strand (a
broadcast from another connection's handler) is counted once it commits, and the pause it causes
comes in a callback of the connection's own, so that the protocol's flow control runs on one
strand only.

write() after close() follows asyncio: the bytes are still sent while those written before the
close are (asyncio appends them to its buffer until it drains: a TLS protocol's close_notify,
written when the drain resumes it), and ignored when asyncio's buffer would have been empty at
close(): the committed bytes all handed to the kernel, and the running transaction's own writes
no more than the socket's send buffer holds (asyncio's write() hands the kernel what it takes at
once).
loop.sendfile() waits until every byte written before it has been sent, then hands the file to
os.sendfile() on the socket, as asyncio's transports do (write() raises until it is done).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import warnings
from asyncio import protocols

import tm
from tm import _reactor
from tm_asyncio._compat import (
    TransportSocket,
    _FlowControlMixin,
    _SendfileMode,
    _set_nodelay,
    _set_result_unless_cancelled,
)
from tm_asyncio._shared_objects import runs_locked
from tm_asyncio._tasks import (
    connection_strand,
    lock_rest_of_step,
    on_strand,
    running_connection_task,
)


# How often _sent() looks at the native write queue: from 0.5 ms, doubling, up to 20 ms.
_SENT_POLL_MIN = 0.0005
_SENT_POLL_MAX = 0.02


def runs_exclusively(protocol) -> bool:
    """Whether the protocol's callbacks must hold the loop lock: true for asyncio's own protocols,
    which complete futures and wake tasks that the loop's strand runs (a stream's waiter)."""
    return any(
        cls.__module__.startswith("asyncio.") and cls.__module__ != "asyncio.protocols"
        for cls in type(protocol).__mro__
    )


def adoptable(sock) -> bool:
    """Whether sock is a connected stream socket the C++ reactor can take over."""
    return sock.type == socket.SOCK_STREAM and sock.family in (
        socket.AF_INET,
        socket.AF_INET6,
        socket.AF_UNIX,
    )


class NativeStreamTransport(_FlowControlMixin):
    """asyncio.Transport over tm._reactor.StreamTransport; also the native transport's handler."""

    _protocol_paused: bool  # _FlowControlMixin's: the protocol was told to pause writing

    # loop.start_tls() swaps the protocol through set_protocol() with reading paused, which this
    # transport supports; loop.sendfile() takes the native path (EventLoop._sendfile_native).
    _start_tls_compatible = True
    _sendfile_compatible = _SendfileMode.TRY_NATIVE

    def __init__(
        self,
        loop,
        sock,
        protocol,
        waiter=None,
        extra=None,
        server=None,
        strand=None,
        locked=False,
    ) -> None:
        # _FlowControlMixin: asyncio.Transport with the write buffer limits and the
        # _protocol_paused flag that asyncio's sendfile fallback reads; the native transport does
        # the pausing (its pause_writing/resume_writing below).
        super().__init__(extra, loop)
        self._waiter = waiter
        self._server = server
        self._closing = False
        self._writes_dropped = False  # closed with nothing left to send: later writes ignored
        self._send_buffer: int | None = None  # SO_SNDBUF, read once when needed
        self._eof_written = False
        self._reading_paused = False
        self._uncommitted = 0  # bytes written by the running transaction, sent at its commit
        self._sendfile_in_progress = False
        self._lost = False
        # Set by abort() or a fatal error: what connection_lost() reports instead of the native
        # transport's own reason (asyncio reports None for abort(), the exception for an error).
        self._lost_reason: tuple[BaseException | None] | None = None
        # asyncio runs a transport's protocol callbacks in copies of the context current where
        # the transport was made (a server's accepting task, itself started in a copy of
        # create_server's caller's context; create_connection's caller's): connection_made() in
        # a copy of its own (a call_soon), the reading side (data_received, eof_received) in one
        # copy made once (its reader handle's), so what one of those sets, the next one sees.
        self._made_context = contextvars.copy_context()
        self._context = contextvars.copy_context()
        self._in_context = False
        # Made by a locked step (tm_asyncio._tasks.in_locked_step): its protocol is theirs, which
        # they reuse from other strands (a client session's pooled connections), so its
        # callbacks hold the loop lock too, as do those of a protocol every handler touches
        # (tm_asyncio._shared_objects).
        self._made_locked = locked
        self.set_protocol(protocol)
        self._extra.setdefault("sockname", _address(sock.getsockname))
        self._extra.setdefault("peername", _address(sock.getpeername))
        _set_nodelay(sock)
        self._sock_kind = (sock.family, sock.type, sock.proto)
        if server is not None:
            # A connection the server accepted: no one else holds its socket object, so the
            # reactor takes the descriptor itself, and get_extra_info("socket") makes a socket
            # object when asked (_socket()). Not one descriptor more per connection: a server
            # of N connections needs N descriptors under RLIMIT_NOFILE, as asyncio's does.
            self._sock = None
            fd = sock.detach()
        else:
            # The caller's socket (connect_accepted_socket, a connection it made) stays usable,
            # as asyncio's does (socket options set through it after the transport was made):
            # the reactor gets a descriptor of its own, and the socket is closed with the
            # connection.
            self._sock = sock
            self._extra["socket"] = TransportSocket(sock)
            fd = os.dup(sock.fileno())
        if server is not None:
            with loop._lock:
                _server_call(server._attach, self)
        adopt = _reactor.unix_adopt if sock.family == socket.AF_UNIX else _reactor.tcp_adopt
        try:
            # On `strand` when given (a connection made from another connection's strand),
            # else on a strand of its own.
            self._native = adopt(loop._core, fd, self, strand)
        except BaseException:
            os.close(fd)
            if server is not None:
                with loop._lock:
                    _server_call(server._detach, self)
            raise
        self._native.set_write_buffer_limits(self._high_water, self._low_water)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<NativeStreamTransport {state} fd={self._native.fileno()}>"

    def _socket(self) -> socket.socket:
        """The connection's socket object: the caller's, or for an accepted connection one made
        on first use over a duplicate of the reactor's descriptor (closed with the connection).
        Raises OSError once the connection is closed."""
        sock = self._sock
        if sock is not None:
            return sock
        fd = self._native.fileno()
        if fd < 0:
            raise OSError(9, "the connection is closed")
        sock = socket.socket(*self._sock_kind, fileno=os.dup(fd))
        with self._loop._lock:  # two strands asking at once keep the first one's
            if self._sock is None and not self._lost:
                self._sock = sock
                return sock
        sock.close()
        if self._sock is None:
            raise OSError(9, "the connection is closed")
        return self._sock

    def get_extra_info(self, name, default=None):
        if name == "socket" and "socket" not in self._extra:
            try:
                self._extra.setdefault("socket", TransportSocket(self._socket()))
            except OSError:
                return default
        return super().get_extra_info(name, default)

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)
        self._locked = self._made_locked or runs_locked(protocol)
        self._exclusive = self._locked or runs_exclusively(protocol)
        if self._locked:
            # Handed over by this connection's running callback, which may go on to feed the new
            # protocol (and so start its tasks): the rest of that callback runs locked too.
            lock_rest_of_step(self._loop._lock)

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._closing and not self._reading_paused

    def pause_reading(self) -> None:
        if self.is_reading():
            self._reading_paused = True
            self._native.pause_reading()

    def resume_reading(self) -> None:
        if not self._closing and self._reading_paused:
            self._reading_paused = False
            self._native.resume_reading()

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._sendfile_in_progress:
            raise RuntimeError("unable to write; sendfile is in progress")
        if data and not self._writes_dropped:
            self._native.write(data)
            if tm.in_transaction() and self._owns_flow_control():
                if not self._uncommitted:
                    tm.on_commit(self._committed)
                    tm.on_abort(self._discarded)
                self._uncommitted += len(data)
                self._maybe_pause_protocol()  # asyncio's: the buffered size includes these bytes

    def writelines(self, list_of_data) -> None:
        if self._sendfile_in_progress:
            raise RuntimeError("unable to writelines; sendfile is in progress")
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._native.shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self._closing:
            # asyncio's close() with an empty buffer makes later writes no-ops; with bytes still
            # buffered, those writes join them until the buffer drains (module docstring).
            self._writes_dropped = self._nothing_buffered()
            self._start_closing()
            self._native.close()

    def abort(self) -> None:
        if self._lost_reason is None:
            self._lost_reason = (None,)
        self._writes_dropped = True
        self._start_closing()
        self._native.abort(reset=False)

    def _force_close(self, exc) -> None:
        # asyncio's transports have it and SSLProtocol calls it: on a fatal TLS error (a failed
        # handshake), a handshake or shutdown timeout, and its transport's abort(). The
        # connection is dropped and connection_lost() gets exc, as abort() gives None.
        if self._lost:
            return
        if self._lost_reason is None:
            self._lost_reason = (exc,)
        self._start_closing()
        self._native.abort(reset=False)

    def _start_closing(self) -> None:
        self._closing = True
        if not self._lost and (connection_strand() is None or running_connection_task()):
            # Closed by a callback of the loop's strand or by a task's step (wherever it runs):
            # asyncio would run connection_lost() in the same iteration, so stop() waits for it.
            # A close in a callback of the connection itself (the peer's EOF, the protocol's own
            # close) is no more part of that iteration than the read that caused it: waiting for
            # it could swallow a stop() its connection_lost() makes for the next run_forever()
            # (test_events' test_connect_accepted_socket).
            self._loop._closing_transports.add(self)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._set_write_buffer_limits(high, low)  # asyncio's defaults and ValueError
        self._native.set_write_buffer_limits(self._high_water, self._low_water)

    def get_write_buffer_size(self) -> int:
        # What asyncio's transport would hold: also what this transaction wrote and has not sent.
        return self._native.write_buffer_size() + self._uncommitted

    def _nothing_buffered(self) -> bool:
        """Whether asyncio's buffer would be empty now (module docstring: write() after close())."""
        if self._native.write_buffer_size():
            return False
        if self._protocol_paused:
            # The drain's resume_writing() is on its way (the native buffer emptied on the
            # strand; its signal comes as the strand's next event). asyncio's transport calls it
            # before its buffer is empty, and what it writes then (a TLS protocol's close_notify)
            # is sent before the end: so later writes are still taken.
            return False
        if self._send_buffer is None:
            self._send_buffer = 0
            fd = self._native.fileno()
            if fd >= 0:  # a socket object over the reactor's descriptor, only to read it
                sock = socket.socket(*self._sock_kind, fileno=fd)
                try:
                    self._send_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                except OSError:
                    pass
                finally:
                    sock.detach()
        return self._uncommitted <= self._send_buffer

    def _owns_flow_control(self) -> bool:
        """Whether this callback may pause the protocol itself: one of the connection's own, or,
        for asyncio's own protocols (whose flow control runs under the loop lock), any callback
        holding the lock (a task of the loop's strand writing to a client connection)."""
        if self._exclusive and self._loop._lock._is_owned():
            return True
        strand = _reactor.current_strand()  # None outside callbacks; Strand == None raises
        return strand is not None and strand == self._native.strand

    def _committed(self) -> None:
        self._uncommitted = 0
        if self._protocol_paused and not self._lost:
            # Paused by write() for bytes the native transport had not counted: once the whole
            # commit is done, make sure a resume follows the drain.
            self._loop._core.post(self._resume_when_drained, self._native.strand)

    def _resume_when_drained(self) -> None:
        if self._protocol_paused and not self._lost and not self._native.resume_when_drained():
            self.resume_writing()  # drained already: no signal will come, give asyncio's

    def _discarded(self) -> None:
        self._uncommitted = 0

    async def _sendfile(self, file, offset: int, count: int | None) -> int:
        """loop.sendfile()'s native path, as asyncio's selector transports take it: reading
        paused, write() refused, and once every byte written before has been sent, the file goes
        to the socket through os.sendfile() (the loop's sock_sendfile, which waits for the socket
        to be writable on the loop's strand). The reactor keeps a descriptor of its own for the
        socket and sends nothing while the queue is empty and write() is refused."""
        if self._sendfile_in_progress:
            raise RuntimeError("Empty waiter is already set")
        self._sendfile_in_progress = True
        resume_reading = self.is_reading()
        self.pause_reading()
        try:
            await self._sent()
            return await self._loop.sock_sendfile(
                self._socket(), file, offset, count, fallback=False
            )
        finally:
            self._sendfile_in_progress = False
            if resume_reading:
                self.resume_reading()

    async def _sent(self) -> None:
        """Returns once everything written so far has reached the kernel. The native transport
        does not say when its queue empties, so this looks, at growing intervals (a sendfile
        waits for one round trip of the queue at most a few milliseconds longer)."""
        delay = 0.0
        while self.get_write_buffer_size():
            if self._lost or self._lost_reason is not None:
                raise ConnectionError("Connection is closed by peer")
            await asyncio.sleep(delay)
            delay = min(_SENT_POLL_MAX, delay * 2 or _SENT_POLL_MIN)

    # -- the native transport's handler: each runs as one transaction on the connection's strand --

    def connection_made(self, native) -> None:
        self._dispatch(self._connection_made, context=self._made_context)

    def _connection_made(self) -> None:
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "Exception in callback protocol.connection_made()")
        finally:
            if self._waiter is not None:
                # asyncio wakes the waiter (create_connection's) once connection_made() has run.
                self._loop.call_soon_threadsafe(_set_result_unless_cancelled, self._waiter, None)
                self._waiter = None

    def data_received(self, data: bytes) -> None:
        if not self._lost_reason:
            self._dispatch(self._data_received, data)

    def _data_received(self, data: bytes) -> None:
        try:
            if not self._buffered:
                self._protocol.data_received(data)
                return
            view = memoryview(data)
            while view:
                buffer = self._protocol.get_buffer(len(view))
                if not len(buffer):
                    raise RuntimeError("get_buffer() returned an empty buffer")
                n = min(len(buffer), len(view))
                memoryview(buffer)[:n] = view[:n]
                view = view[n:]
                self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def eof_received(self) -> bool:
        return self._dispatch(self._eof_received) is True

    def _eof_received(self) -> bool:
        try:
            keep_open = bool(self._protocol.eof_received())
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return False
        if not keep_open:
            # The native transport closes when this returns false, as asyncio's close() would.
            self._writes_dropped = self._nothing_buffered()
            self._start_closing()
        return keep_open

    def connection_lost(self, exc) -> None:
        # asyncio's is a call_soon from where the transport was closed, most often one of the
        # reading callbacks: a copy of their context.
        self._dispatch(self._connection_lost, exc, context=self._context.copy())

    def _connection_lost(self, exc) -> None:
        self._closing = self._lost = True
        if self._lost_reason is not None:
            exc = self._lost_reason[0]
        try:
            self._protocol.connection_lost(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            self._report(error, "Exception in callback protocol.connection_lost()")
        finally:
            # As asyncio's transports: the protocol goes (the C++ connection may keep this
            # handler a while longer, and the protocol must not live on through it).
            self._protocol = None
            with self._loop._lock:
                sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            server, self._server = self._server, None
            if server is not None:
                with self._loop._lock:
                    _server_call(server._detach, self)
            # Last: stop() waits for this transport until its whole connection_lost() is done,
            # the server's _detach() (which wakes Server.wait_closed()) included.
            self._loop._closing_transports.discard(self)

    def pause_writing(self) -> None:
        self._dispatch(self._flow_signal, True)

    def resume_writing(self) -> None:
        self._dispatch(self._flow_signal, False)

    def _flow_signal(self, pause: bool) -> None:
        # A pause write() gave already, or a resume of a protocol no longer paused, is not told
        # twice (asyncio's _maybe_pause_protocol / _maybe_resume_protocol).
        if pause == self._protocol_paused:
            return
        self._protocol_paused = pause
        self._call_flow_control("pause_writing" if pause else "resume_writing")

    def _call_flow_control(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # -- helpers --------------------------------------------------------------------------------

    def _dispatch(self, fn, *args, context=None):
        """fn(*args) as a callback of the loop: under its lock for asyncio's own protocols, in
        `context` (by default the reading side's). A task it creates runs on this connection's
        strand (tm_asyncio._tasks)."""
        with on_strand(self._native.strand, self._locked):
            return self._loop._run_callback(
                self._run_in_context,
                (context or self._context, fn, args),
                exclusive=self._exclusive,
            )

    def _run_in_context(self, context, fn, args):
        if self._in_context:
            # Called from inside another callback of this transport: already in its context,
            # which a thread cannot enter twice.
            return fn(*args)
        self._in_context = True
        try:
            return context.run(fn, *args)
        finally:
            self._in_context = False

    def _report(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # asyncio's _fatal_error: an OSError is the connection's end, anything else a bug to show;
        # either way the connection is dropped and connection_lost() gets the exception.
        if not isinstance(exc, OSError):
            self._report(exc, message)
        self._lost_reason = (exc,)
        self._start_closing()
        self._native.abort(reset=False)

    def __del__(self, _warn=warnings.warn) -> None:
        if getattr(self, "_native", None) is not None and not self._closing:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)


def _address(get):
    try:
        return get()
    except OSError:
        return None


def _server_call(method, transport) -> None:
    """Server._attach/_detach: without arguments before Python 3.13, with the transport since."""
    if method.__code__.co_argcount > 1:
        method(transport)
    else:
        method()


__all__ = ["NativeStreamTransport", "adoptable", "runs_exclusively"]
