"""The machinery of a native TCP transport: Twisted's transport behaviour over a
tm._reactor.StreamTransport, for the TCP classes of tm_twisted._tcp.

Twisted's own TCP transports (twisted.internet.tcp) keep their write buffer in Python and flush it
from doWrite; with several workers a callback of one connection writing to another connection
(a chat server) races with that connection's own doWrite. ``NativeStream`` keeps Twisted's
behaviour (the same attributes, the same reasons in connectionLost, the same log lines and error
handling) but hands the bytes to tm._reactor.StreamTransport, which is thread-safe and sends what a
transaction wrote at its commit, in commit order.

- Every handler method of the native transport runs on the connection's strand; protocol
  callbacks run inside ``log.callWithLogger(transport, ...)``, and an exception is logged with
  ``log.err`` and drops the connection with that exception as the reason, as the epoll reactor's
  doRead/doWrite handling does.
- A close or shutdown requested by the connection's own callback is issued when the callback
  returns, after its writes (the native transport drops writes that come after its close).
- Producers follow twisted.internet.abstract.FileDescriptor: a streaming producer is paused by the
  write() that makes more than ``bufferSize`` bytes pending (the native buffer plus the bytes of
  the running transaction, counted until it commits), and resumed (a pull producer asked for
  more) once everything has been handed to the kernel. The native transport reports a drain only
  when one was asked for (``resume_when_drained`` at the commit of the transaction that needs it):
  when FileDescriptor.doWrite's tail would act on the empty buffer (a pull producer, a paused
  one, a close waiting for the producer), never for a streaming producer that keeps up, so a
  response that fits the buffer costs no pause or drain transaction.

Known differences from twisted.internet.tcp: writeConnectionLost follows the shutdown request,
not its completion. Bytes written after loseConnection() are sent until the connection has
closed, from any strand, as Twisted sends them until its doWrite closes it: the native transport
takes the writes that commit before its close is carried out.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
from typing import Any, Callable

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python import failure, log

import tm
from tm import _reactor
from tm_twisted._compat import _LogOwner


def available() -> bool:
    """True when tm._reactor has the native stream transports tm_twisted's TCP needs."""
    return hasattr(_reactor, "tcp_adopt") and hasattr(_reactor, "tcp_adopt_listener")


# Native write buffer limits: the transport never pauses the writer by itself (Twisted's write
# never refuses bytes); the low mark 0 makes resume_when_drained() report the empty buffer.
NO_PRODUCER_LIMITS = (1 << 40, 0)


# Linux's TCP_INFO and TCP_CLOSE (include/net/tcp_states.h), for NativeStream._wasReset.
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_CLOSE = 7


def _dataMustBeBytes(obj) -> None:
    if not isinstance(obj, bytes):  # the same test and message as abstract.FileDescriptor
        raise TypeError("Data must be bytes")


# For writeSequence's test of every piece, made in C (map, isinstance) rather than by a Python
# call per piece: twisted.web writes a response's status line and headers as one sequence of two
# dozen pieces (2.4 us a response on 3.13t as calls, 0.6 us so). Never exhausted, it can be shared.
_BYTES = itertools.repeat(bytes)


# The NativeStream whose callback runs on this thread (its outermost _enter), for runningCallback.
_running = threading.local()


def runningCallback() -> NativeStream | None:
    """The native connection whose callback runs on this thread, or None outside one."""
    return getattr(_running, "stream", None)


def runsOneAtATime() -> bool:
    """Whether the callback running on this thread is one of a connection that runs its callbacks
    one at a time (tm_twisted._shared_variables), or a delayed call such a callback made: what it
    schedules shares what it shares (a resource finishing its response from a timer)."""
    stream = getattr(_running, "stream", None)
    if stream is not None and stream._oneAtATime:
        return True
    return getattr(_running, "oneAtATime", False)


class oneAtATime:
    """Runs a delayed call made by such a callback inevitable from its start, and marks this
    thread as running one for what it schedules in turn (runsOneAtATime)."""

    __slots__ = ("previous",)

    def __enter__(self) -> None:
        tm.inevitable()
        self.previous = getattr(_running, "oneAtATime", False)
        _running.oneAtATime = True

    def __exit__(self, *exc) -> None:
        _running.oneAtATime = self.previous


def _strand(transport):
    return transport._native.strand


def sendWithoutNagle(native) -> None:
    """Sets TCP_NODELAY on a new connection's socket, as asyncio's transports do.

    A native connection sends each commit's writes in one gathered write, and everything
    committed while a send is pending in the next: the coalescing of small writes that Nagle's
    algorithm exists for. What Nagle adds is holding a small segment while an earlier one is
    unacknowledged, and with a send per commit instead of one per loop iteration (epoll's), a
    peer that ACKs late (delayed ACK, 40 ms) stalls nearly every reply: Twisted's chat broadcast
    ran at 0.05 of epoll's rate with it, 0.62 without (docs/TWISTED.md, "Nagle's algorithm").
    getTcpNoDelay() still reports the program's setting; setTcpNoDelay(False) turns Nagle on."""
    try:
        native.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket after all, or already reset: nothing to hold back then


class NativeStream(_LogOwner):
    """What a Twisted TCP transport does, over a tm._reactor.StreamTransport.

    The methods ``connection_made`` ... ``resume_writing`` are the native handler; each runs as
    one transaction on the connection's strand. The rest is Twisted's ITCPTransport.

    @ivar _native: the tm._reactor.StreamTransport, once adopted.
    @ivar _paused: reading stopped by stopReading/pauseProducing.
    @ivar _held: data (and an end of stream) that reached a paused transport; delivered by
        resumeProducing, as a paused Twisted transport leaves them in the socket.
    @ivar _uncommitted: bytes written in the running transaction, not yet in the native buffer.
    """

    connected = 0
    disconnected = 0
    disconnecting = 0
    _writeDisconnecting = False
    _writeDisconnected = False
    _aborting = False
    _lost = False
    producer = None
    producerPaused = False
    streamingProducer = False
    bufferSize = 2**2**2**2
    logstr = "Uninitialized"
    addressFamily = socket.AF_INET
    protocol: Any = None  # the Twisted protocol, once built
    # The native transport from connection_made on; None before, where a call can come earlier.
    _native: _reactor.StreamTransport = None  # type: ignore[assignment]
    _pysock = None
    _paused = False
    _readClosed = False
    _heldEOF = False
    _heldLost = None
    _uncommitted = 0
    _hooked = False
    _drainWanted = False
    _wrote = False

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self._held: list[bytes] = []

    # -- running protocol code as the epoll reactor does -----------------------------------------

    def _guard(self, f, *args) -> None:
        """Runs f under this transport's log context; an exception is logged and drops the
        connection with it as the reason (epoll's doRead/doWrite handling)."""
        log.callWithLogger(self, self._guarded, f, *args)

    def _guarded(self, f, *args) -> None:
        self._enter()
        try:
            f(*args)
        except BaseException as e:
            log.err()
            self.connectionLost(failure.Failure(e))
        finally:
            self._leave()

    # A close or shutdown requested by the connection's own callback is issued when the callback
    # returns, after its writes: the native transport drops writes that come after its close,
    # while Twisted still sends bytes written after loseConnection() in the same callback.
    _depth = 0
    _dispatchThread = None
    _deferred: tuple[Callable[[], object], ...] = ()
    _outer: NativeStream | None = None  # the callback this one runs inside, on this thread

    # A connection of a factory whose protocol changes what every connection shares
    # (tm_twisted._shared_variables): each of its callbacks is inevitable from its start.
    _oneAtATime = False

    def _enter(self) -> None:
        if self._depth == 0:
            if self._oneAtATime:
                tm.inevitable()
            self._dispatchThread = threading.get_ident()
            self._outer = getattr(_running, "stream", None)
            _running.stream = self
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._dispatchThread = None
            _running.stream, self._outer = self._outer, None
            deferred, self._deferred = self._deferred, ()
            for f in deferred:
                f()

    def _afterCallback(self, f) -> None:
        """f() once the running callback of this connection returns; at once from elsewhere."""
        if self._depth and self._dispatchThread == threading.get_ident():
            self._deferred = self._deferred + (f,)
        else:
            f()

    def _closeNative(self) -> None:
        """Closes the native transport: orderly, unless abortConnection was called."""
        if self._aborting:
            self._native.abort()
        else:
            self._native.close()

    def _closeAfterWrites(self) -> None:
        """loseConnection's close: after the running transaction's writes, so that bytes written
        after loseConnection() in the same callback are still sent, as Twisted sends them (the
        native transport drops writes that come after its close in commit order)."""
        if self._aborting:
            self._closeNative()
        else:
            self._afterCallback(self._closeNative)

    def _post(self, f, *args) -> None:
        """Runs f(*args) later on this connection's strand, guarded."""
        self.reactor._core.post(lambda: self._guard(f, *args), strand=_strand(self))

    # -- the native handler ------------------------------------------------------------------------

    def connection_made(self, native) -> None:
        self._native = native
        sendWithoutNagle(native)
        native.set_write_buffer_limits(*NO_PRODUCER_LIMITS)
        self._nativeConnected()

    def data_received(self, data: bytes) -> None:
        if self._lost or self.disconnecting:
            return  # Twisted stops reading at loseConnection: these bytes are never read
        if self._paused or self._held:
            self._held.append(data)
            return
        self._guard(self.protocol.dataReceived, data)

    def eof_received(self) -> bool:
        if self._lost or self.disconnecting:
            return False
        if self._paused or self._held:
            self._heldEOF = True
            return True  # decided when reading resumes
        return self._readEOF()

    def connection_lost(self, exc) -> None:
        self._closeDup()
        if self._lost:
            return
        if self._aborting:
            reason = error.ConnectionAborted()
        elif exc is None:
            reason = error.ConnectionDone()
        else:
            reason = error.ConnectionLost()
        if (
            self._paused
            and self.connected
            and not (self.disconnecting or self._aborting)
            and not (exc is not None and self._wrote)
        ):
            # A paused transport is not told before it reads again: epoll does not look at its
            # descriptor. Unless it writes: epoll's doWrite meets the error (EPIPE, ECONNRESET)
            # and the connection is lost at once. The native transport holds read outcomes while
            # reading is paused, so a loss with an error on a transport that wrote is the write's.
            self._heldLost = reason
            return
        log.callWithLogger(self, self.connectionLost, failure.Failure(reason))

    def pause_writing(self) -> None:
        pass  # the producer is paused by write() itself, as FileDescriptor does

    def resume_writing(self) -> None:
        # Only after resume_when_drained() (_armDrain): the limits never pause the writer.
        if not self._lost:
            self._guard(self._drained)

    # -- reading: pauseProducing / resumeProducing -------------------------------------------------

    def _readEOF(self) -> bool:
        """The peer shut down its side: readConnectionLost for a half-closeable protocol, else
        the connection is done. Returns whether the connection stays open."""
        p = IHalfCloseableProtocol(self.protocol, None)
        if p is None:
            reason = error.ConnectionLost() if self._wasReset() else error.ConnectionDone()
            log.callWithLogger(self, self.connectionLost, failure.Failure(reason))
            return False
        self._readClosed = True

        def readConnectionLost() -> None:
            try:
                p.readConnectionLost()
            except BaseException:
                log.err()
                self.connectionLost(failure.Failure())

        log.callWithLogger(self, readConnectionLost)
        return not self._lost

    @property
    def _reading(self) -> bool:
        """What epoll would call "among the reactor's readers"."""
        return bool(self.connected) and not (
            self._lost or self._paused or self.disconnecting or self._readClosed
        )

    def _wasReset(self) -> bool:
        """Whether an end of stream is really a reset: a write that met the peer's RST consumes
        the socket's error, and the read that follows sees an end of stream where epoll's doRead
        would have seen ECONNRESET. The kernel's TCP state tells them apart (TCP_CLOSE after a
        reset, CLOSE_WAIT after a FIN); tcp_info's first byte is the state."""
        if _TCP_INFO is None:
            return False
        try:
            head = self._native.get_option(socket.IPPROTO_TCP, _TCP_INFO) & 0xFFFFFFFF
        except OSError:
            return False
        state = head & 0xFF if sys.byteorder == "little" else head >> 24
        return state == _TCP_CLOSE

    def _deliverHeld(self) -> None:
        """On the strand: what reached the transport while it was paused."""
        while self._held and not self._paused and not self._lost and not self.disconnecting:
            self.protocol.dataReceived(self._held.pop(0))
        if self._paused or self._lost or self._held or self.disconnecting:
            return
        if self._heldLost is not None:
            reason, self._heldLost = self._heldLost, None
            self.connectionLost(failure.Failure(reason))
        elif self._heldEOF:
            self._heldEOF = False
            if not self._readEOF() and not self._lost:
                self._closeNative()

    def startReading(self) -> None:
        if self._lost or self._native is None:
            return
        if self._paused:
            self._paused = False
            self._native.resume_reading()
        if self._held or self._heldEOF or self._heldLost is not None:
            self._post(self._deliverHeld)

    def stopReading(self) -> None:
        if self._paused or self._lost:
            return
        self._paused = True
        if self._native is not None:
            self._native.pause_reading()

    def resumeProducing(self) -> None:
        if self.connected and not self.disconnecting:
            self.startReading()

    def pauseProducing(self) -> None:
        self.stopReading()

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- writing -----------------------------------------------------------------------------------

    def _writable(self) -> bool:
        return bool(self.connected) and not (
            self._writeDisconnected or self._aborting or self._lost
        )

    def _hook(self) -> bool:
        """Hooks _committed to the running transaction's commit, once; False outside one."""
        if not tm.in_transaction():
            return False
        if not self._hooked:
            self._hooked = True
            tm.on_commit(self._committed)
        return True

    def _count(self, n: int) -> None:
        """Keeps the bytes of the running transaction counted until it commits."""
        if self._hook():
            self._uncommitted += n

    def _committed(self) -> None:
        self._hooked = False
        self._uncommitted = 0
        if self._drainWanted:
            self._drainWanted = False
            self._armDrain()

    def _pending(self) -> int:
        return self._native.write_buffer_size() + self._uncommitted

    def _maybePauseProducer(self) -> None:
        if self.producer is not None and self.streamingProducer and not self.producerPaused:
            if self._pending() > self.bufferSize:
                self.producerPaused = True
                self.producer.pauseProducing()

    def _needsDrain(self) -> bool:
        """Whether FileDescriptor.doWrite's tail would act once the buffer is empty: resume a
        pull or paused producer, or close a disconnecting transport past its producer."""
        return self.producer is not None and (
            not self.streamingProducer or self.producerPaused or bool(self.disconnecting)
        )

    def _wantDrain(self) -> None:
        """One _drained once everything written so far, the running transaction's bytes
        included, has reached the kernel."""
        if self._hook():
            self._drainWanted = True
        else:
            self._armDrain()

    def _armDrain(self) -> None:
        """After the commit: asks the native transport for resume_writing() at the empty buffer,
        or runs _drained at once (posted) when it is empty already."""
        if self._lost or self._native is None:
            return
        if not self._native.resume_when_drained():
            self._post(self._drained)
        # else resume_writing() follows (or connection_lost, when the transport is closing)

    def write(self, data: bytes) -> None:
        _dataMustBeBytes(data)
        if not self._writable():
            return
        if data:
            self._wrote = True
            self._native.write(data)
            self._count(len(data))
            self._maybePauseProducer()
            if self.producer is not None and self._needsDrain():
                self._wantDrain()

    def writeSequence(self, iovec) -> None:
        if not all(map(isinstance, iovec, _BYTES)):  # abstract.FileDescriptor's test and message
            raise TypeError("Data must be bytes")
        if not self._writable() or not iovec:
            return
        data = b"".join(iovec)
        if data:
            self._wrote = True
            self._native.write(data)
            self._count(len(data))
        self._maybePauseProducer()
        if data and self.producer is not None and self._needsDrain():
            self._wantDrain()

    @property
    def _tempDataBuffer(self) -> list:
        """Twisted's list of written chunks its transport has not yet handed to the kernel,
        which Twisted's own tests poll until it is empty. The native transport keeps those
        bytes in C++: one entry stands for them while any are pending."""
        if self._native is None or self._lost:
            return []
        return [b""] if self._pending() else []

    def _drained(self) -> None:
        """Everything written reached the kernel (abstract.FileDescriptor.doWrite's tail)."""
        if self.producer is not None and ((not self.streamingProducer) or self.producerPaused):
            self.producerPaused = False
            self.producer.resumeProducing()
        elif self.disconnecting and self.connected:
            self._closeAfterWrites()

    # -- the consumer: registerProducer ------------------------------------------------------------

    def registerProducer(self, producer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                "Cannot register producer %s, because producer %s was never "
                "unregistered." % (producer, self.producer)
            )
        if self.disconnected:
            producer.stopProducing()
            return
        self.producer = producer
        self.streamingProducer = streaming
        self.producerPaused = False
        if not streaming:
            producer.resumeProducing()
        if (
            self.producer is producer
            and self._native is not None
            and self._needsDrain()
            and self._pending()
        ):
            self._wantDrain()  # bytes written before: their drain resumes the producer

    def unregisterProducer(self) -> None:
        self.producer = None
        if self.connected and self.disconnecting:
            self._closeAfterWrites()

    def stopConsuming(self) -> None:
        self.unregisterProducer()
        self.loseConnection()

    # -- closing -----------------------------------------------------------------------------------

    def loseConnection(self) -> None:
        if self._aborting:
            return  # abortConnection wins, as in Twisted (its doWrite is gone)
        if self.connected and not self.disconnecting:
            if self._writeDisconnected:
                # The sending side is shut: nothing left to flush, done at once as in Twisted.
                self.stopReading()
                self.connectionLost(failure.Failure(error.ConnectionDone()))
                return
            self.stopReading()
            self.disconnecting = 1
            if self.producer is None or (self.streamingProducer and not self.producerPaused):
                self._closeAfterWrites()
            elif self._native is not None:
                # Closed once the producer is unregistered; the drain resumes it first, as
                # FileDescriptor's doWrite does (at once when nothing is pending).
                self._wantDrain()

    def loseWriteConnection(self) -> None:
        if not self.connected or self._writeDisconnecting or self._lost:
            return
        self._writeDisconnecting = True
        # After the callback's writes, as for loseConnection.
        self._afterCallback(self._native.shutdown_write)
        self._post(self._closeWriteConnection)

    def _closeWriteConnection(self) -> None:
        if self._lost:
            return
        self._writeDisconnected = True
        p = IHalfCloseableProtocol(self.protocol, None)
        if p:
            try:
                p.writeConnectionLost()
            except BaseException:
                f = failure.Failure()
                log.err()
                self.connectionLost(f)

    def readConnectionLost(self, reason) -> None:
        p = IHalfCloseableProtocol(self.protocol, None)
        if p:
            try:
                p.readConnectionLost()
            except BaseException:
                log.err()
                self.connectionLost(failure.Failure())
        else:
            self.connectionLost(reason)

    def writeConnectionLost(self, reason) -> None:
        self.connectionLost(reason)

    def abortConnection(self) -> None:
        if self.disconnected or self._aborting or self._lost:
            return
        self._aborting = True
        self.stopReading()
        if self._native is not None:
            self._native.abort()  # connection_lost follows: ConnectionAborted
        else:
            self.reactor.callLater(
                0, self.connectionLost, failure.Failure(error.ConnectionAborted())
            )

    def connectionLost(self, reason) -> None:
        """The connection is gone (told by the native transport, or by the reactor: an exception
        in a callback, disconnectAll). Runs once; closes the native transport."""
        if self._lost:
            return
        if self._oneAtATime:
            tm.inevitable()
        self._lost = True
        self.disconnected = 1
        self.connected = 0
        self.reactor._tmForgetNative(self)
        if self.producer is not None:
            producer, self.producer = self.producer, None
            producer.stopProducing()
        if self._native is not None:
            if reason.check(error.ConnectionAborted):
                self._aborting = True
            self._closeNative()
        self._closeDup()
        protocol = self.protocol
        try:
            del self.protocol
        except AttributeError:
            pass
        if protocol is not None:
            protocol.connectionLost(reason)

    # -- ITCPTransport -----------------------------------------------------------------------------

    def fileno(self) -> int:
        if self._native is not None:
            return self._native.fileno()
        return -1

    @property
    def socket(self):
        """A socket object for this connection (for getsockopt and the like): a duplicate of the
        native descriptor, closed with the connection."""
        if self._pysock is None:
            if self._native is None or self._lost:
                raise AttributeError("socket")
            fd = self._native.fileno()
            if fd < 0:
                raise AttributeError("socket")
            self._pysock = _TransportSocket(self, fd)
        return self._pysock

    @socket.setter
    def socket(self, value) -> None:
        self._pysock = value

    @socket.deleter
    def socket(self) -> None:
        self._pysock = None

    def _closeDup(self) -> None:
        sock, self._pysock = self._pysock, None
        if sock is not None:
            sock._owner = None
            try:
                sock.close()
            except OSError:
                pass

    def getHandle(self):
        return self.socket

    def logPrefix(self) -> str:
        return self.logstr

    def _getOption(self, level, name) -> int:
        return self._native.get_option(level, name)

    # What the program asked for with setTcpNoDelay(), and what getTcpNoDelay() reports: Nagle's
    # algorithm on, Twisted's default. The socket itself runs without it until the program turns
    # it on explicitly (sendWithoutNagle).
    _noDelay = False

    def getTcpNoDelay(self) -> bool:
        return self._noDelay

    def setTcpNoDelay(self, enabled) -> None:
        self._noDelay = bool(enabled)
        try:
            self._native.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(bool(enabled)))
        except OSError as e:  # as twisted.internet.tcp: an optimisation, never fatal
            log.err(e, "got error when setting TCP_NODELAY on TCP socket")

    def getTcpKeepAlive(self) -> bool:
        return bool(self._getOption(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def setTcpKeepAlive(self, enabled) -> None:
        self._native.set_option(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(bool(enabled)))

    def _isNative(self) -> bool:
        """Whether the C++ reactor holds the descriptor (a client still connecting is an
        IReactorFDSet selectable until then)."""
        return self._native is not None

    def _register(self) -> None:
        """Reading starts: the reactor lists the transport among its readers."""
        self.reactor._tmRememberNative(self)

    def _socketClosed(self) -> None:
        """Someone closed the descriptor under the transport (transport.socket.close(), after
        handing a copy to adoptStreamConnection): the transport lets it go without a word, as a
        Twisted transport removed from the reactor never notices."""
        if self._lost:
            return
        self._lost = True
        self.reactor._tmForgetNative(self)
        self._native.close()


class _TransportSocket(socket.socket):
    """transport.socket: a socket object on a duplicate of the native descriptor. Closing it
    closes the transport's descriptor too, as closing a Twisted transport's socket would."""

    def __init__(self, owner: NativeStream, fd: int) -> None:
        dup = os.dup(fd)
        try:
            super().__init__(fileno=dup)
        except BaseException:
            os.close(dup)
            raise
        self._owner: NativeStream | None = owner

    def close(self) -> None:
        owner, self._owner = self.__dict__.get("_owner"), None
        super().close()
        if owner is not None and owner._pysock is self:
            owner._pysock = None
            owner._socketClosed()


__all__ = ["NativeStream", "available", "runningCallback", "sendWithoutNagle"]
