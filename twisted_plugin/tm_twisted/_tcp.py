"""Native TCP transports for TMReactor: Twisted's IReactorTCP over tm._core's stream transports.

Twisted's own TCP transports (twisted.internet.tcp) keep their write buffer in Python and flush it
from doWrite; with several workers a callback of one connection writing to another connection
(a chat server) races with that connection's own doWrite. The classes here keep Twisted's
behaviour (the same attributes, the same reasons in connectionLost, the same log lines and error
handling) but hand the bytes to tm._core.StreamTransport, which is thread-safe and sends what a
transaction wrote at its commit, in commit order.

What stays in Python, and why:

- Sockets are created, bound and connected here exactly as twisted.internet.tcp does it (the same
  options, the same errors: CannotListenError, ConnectBindError, getConnectError(errno)); the
  connected or listening descriptor is then adopted by the C++ reactor (tcp_adopt,
  tcp_adopt_listener). A connection attempt is a selectable on IReactorFDSet until it completes.
- Every handler method of the native transport runs on the connection's strand; protocol
  callbacks run inside ``log.callWithLogger(transport, ...)``, and an exception is logged with
  ``log.err`` and drops the connection with that exception as the reason, as the epoll reactor's
  doRead/doWrite handling does.
- Producers follow twisted.internet.abstract.FileDescriptor: a streaming producer is paused by the
  write() that makes more than ``bufferSize`` bytes pending, and resumed (a pull producer asked for
  more) once everything has been handed to the kernel. While a producer is registered the native
  write buffer limits are (0, 0), so that the transport hears of every drain.
- The transports are listed by the reactor's getReaders()/removeAll() while reading (ports while
  listening), so that disconnectAll() at shutdown closes them as it closes Twisted's.

Known differences from twisted.internet.tcp: bytes written after loseConnection() from another
strand, once the close has reached the native transport, are dropped (in the same callback they
are sent: the close is issued after the transaction's writes); writeConnectionLost follows the
shutdown request, not its completion; buildProtocol of an accepted connection runs on the
connection's strand, in the transaction after the accept.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading

from twisted.internet import abstract, address, error, tcp
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IListeningPort,
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.python import failure, log, reflect
from twisted.python.runtime import platformType
from zope.interface import implementer

import tm
from tm import _core

try:
    from twisted.internet._newtls import (
        ClientMixin as _TLSClientMixin,
        ConnectionMixin as _TLSConnectionMixin,
        ServerMixin as _TLSServerMixin,
        startTLS as _startTLS,
    )
    from twisted.internet.interfaces import ITLSTransport
except ImportError:  # no pyOpenSSL: no startTLS, as twisted.internet.tcp
    from zope.interface import Interface as ITLSTransport  # type: ignore[assignment]

    _startTLS = None

    class _TLSConnectionMixin:  # type: ignore[no-redef]
        TLS = False

    class _TLSClientMixin:  # type: ignore[no-redef]
        pass

    class _TLSServerMixin:  # type: ignore[no-redef]
        pass


def available() -> bool:
    """True when tm._core has the native stream transports this module needs."""
    return hasattr(_core, "tcp_adopt") and hasattr(_core, "tcp_adopt_listener")


# Native write buffer limits: without a producer the transport ignores flow control (Twisted's
# write never refuses bytes); with one, (0, 0) reports every time the buffer empties.
_NO_PRODUCER_LIMITS = (1 << 40, 0)
_DRAIN_LIMITS = (0, 0)


# Linux's TCP_INFO and TCP_CLOSE (include/net/tcp_states.h), for _NativeStream._wasReset.
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_CLOSE = 7


def _dataMustBeBytes(obj) -> None:
    if not isinstance(obj, bytes):  # the same test and message as abstract.FileDescriptor
        raise TypeError("Data must be bytes")


def _realAddress(addr):
    """A native address tuple as twisted.internet.tcp._getrealname gives it."""
    if addr is None:
        return None
    if len(addr) == 4 and "%" not in addr[0] and addr[3]:
        return tcp._getrealname(addr)
    return tuple(addr) if len(addr) == 4 else tuple(addr[:2])


def _strand(transport):
    return transport._native.strand


class _NativeStream(abstract._LogOwner):
    """What a Twisted TCP transport does, over a tm._core.StreamTransport.

    The methods ``connection_made`` ... ``resume_writing`` are the native handler; each runs as
    one transaction on the connection's strand. The rest is Twisted's ITCPTransport.

    @ivar _native: the tm._core.StreamTransport, once adopted.
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
    protocol = None
    _native = None
    _pysock = None
    _paused = False
    _readClosed = False
    _heldEOF = False
    _heldLost = None
    _uncommitted = 0
    _drainWatch = False
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
    _deferred = ()

    def _enter(self) -> None:
        if self._depth == 0:
            self._dispatchThread = threading.get_ident()
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._dispatchThread = None
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
        native.set_write_buffer_limits(*_NO_PRODUCER_LIMITS)
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
        if not self._lost and self._drainWatch:
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

    def _count(self, n: int) -> None:
        """Keeps the bytes of the running transaction counted until it commits."""
        if tm.in_transaction():
            if not self._uncommitted:
                tm.on_commit(self._committed)
            self._uncommitted += n

    def _committed(self) -> None:
        self._uncommitted = 0

    def _pending(self) -> int:
        return self._native.write_buffer_size() + self._uncommitted

    def _maybePauseProducer(self) -> None:
        if self.producer is not None and self.streamingProducer and not self.producerPaused:
            if self._pending() > self.bufferSize:
                self.producerPaused = True
                self.producer.pauseProducing()

    def write(self, data: bytes) -> None:
        _dataMustBeBytes(data)
        if not self._writable():
            return
        if data:
            self._wrote = True
            self._native.write(data)
            self._count(len(data))
            self._maybePauseProducer()

    def writeSequence(self, iovec) -> None:
        for i in iovec:
            _dataMustBeBytes(i)
        if not self._writable() or not iovec:
            return
        data = b"".join(iovec)
        if data:
            self._wrote = True
            self._native.write(data)
            self._count(len(data))
        self._maybePauseProducer()

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

    def _watchDrain(self, on: bool) -> None:
        self._drainWatch = on
        if self._native is not None and not self._lost:
            self._native.set_write_buffer_limits(*(_DRAIN_LIMITS if on else _NO_PRODUCER_LIMITS))
            if on and self._native.write_buffer_size() and not self._uncommitted:
                # Bytes already queued under the old limits give no drain signal: look again.
                self._pollDrain()

    def _pollDrain(self) -> None:
        if self._lost or not self._drainWatch:
            return
        if self._native.write_buffer_size() == 0:
            self._post(self._drained)
        else:
            self.reactor._core.call_at(
                _core.monotonic() + 0.005,
                lambda: self._guard(self._pollDrain),
                strand=_strand(self),
            )

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
        self._watchDrain(True)
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None
        self._watchDrain(False)
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
            # else: closed once the producer is unregistered or the buffer drains (_drained)

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

    def getTcpNoDelay(self) -> bool:
        return bool(self._getOption(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def setTcpNoDelay(self, enabled) -> None:
        try:
            self._native.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(bool(enabled)))
        except OSError as e:  # as twisted.internet.tcp: an optimisation, never fatal
            log.err(e, "got error when setting TCP_NODELAY on TCP socket")

    def getTcpKeepAlive(self) -> bool:
        return bool(self._getOption(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def setTcpKeepAlive(self, enabled) -> None:
        self._native.set_option(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(bool(enabled)))

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

    def __init__(self, owner: _NativeStream, fd: int) -> None:
        dup = os.dup(fd)
        try:
            super().__init__(fileno=dup)
        except BaseException:
            os.close(dup)
            raise
        self._owner = owner

    def close(self) -> None:
        owner, self._owner = self.__dict__.get("_owner"), None
        super().close()
        if owner is not None and owner._pysock is self:
            owner._pysock = None
            owner._socketClosed()


@implementer(
    ITLSTransport,
    ITCPTransport,
    ISystemHandle,
    IPushProducer,
    IConsumer,
    ITransport,
    IHalfCloseableDescriptor,
)
class Connection(_TLSConnectionMixin, _NativeStream):
    """A native TCP connection: twisted.internet.tcp.Connection's interface."""

    def startTLS(self, ctx, normal=True) -> None:
        _startTLS(self, ctx, normal, _NativeStream)

    # _newtls.ConnectionMixin routes these through the TLS layer once TLS is on, and to
    # FileDescriptor otherwise: here otherwise means the native transport.
    def write(self, data) -> None:
        if self.TLS:
            if self.connected:
                self.protocol.write(data)
        else:
            _NativeStream.write(self, data)

    def writeSequence(self, iovec) -> None:
        if self.TLS:
            if self.connected:
                self.protocol.writeSequence(iovec)
        else:
            _NativeStream.writeSequence(self, iovec)

    def loseConnection(self) -> None:
        if self.TLS:
            if self.connected and not self.disconnecting:
                self.protocol.loseConnection()
        else:
            _NativeStream.loseConnection(self)

    def registerProducer(self, producer, streaming) -> None:
        if self.TLS:
            self.protocol.registerProducer(producer, streaming)
        else:
            _NativeStream.registerProducer(self, producer, streaming)

    def unregisterProducer(self) -> None:
        if self.TLS:
            self.protocol.unregisterProducer()
        else:
            _NativeStream.unregisterProducer(self)


class Server(_TLSServerMixin, Connection):
    """An accepted connection (twisted.internet.tcp.Server). The protocol is built when the native
    transport is connected, from the peer's address."""

    _addressType = address.IPv4Address

    def __init__(self, port: "Port", sessionno: int, reactor) -> None:
        Connection.__init__(self, reactor)
        self.server = port
        self.sessionno = sessionno
        self.repstr = "<Uninitialized #%d>" % sessionno

    def __repr__(self) -> str:
        return self.repstr

    def _nativeConnected(self) -> None:
        addr = _realAddress(self._native.peer_address())
        if addr is None:  # reset before it could be looked at: as if never accepted
            self._native.abort()
            self._lost = True
            return
        if len(addr) != 2:
            self._addressType = address.IPv6Address
            self.addressFamily = socket.AF_INET6
        self.client = addr
        self.hostname = addr[0]
        port = self.server
        protocol = log.callWithLogger(port, self._build, port, addr)
        if protocol is None:
            self._lost = True
            self._native.close()
            return
        self.protocol = protocol
        logPrefix = self._getLogPrefix(protocol)
        self.logstr = f"{logPrefix},{self.sessionno},{self.hostname}"
        self.repstr = "<{} #{} on {}>".format(
            protocol.__class__.__name__, self.sessionno, port._realPortNumber
        )
        self.connected = 1
        self._register()
        # tcp.Port.doRead: an exception from makeConnection is logged; the connection stays.
        log.callWithLogger(port, self._makeConnection, protocol)

    def _makeConnection(self, protocol) -> None:
        self._enter()
        try:
            protocol.makeConnection(self)
        except BaseException:
            log.deferr()
        finally:
            self._leave()

    def _build(self, port, addr):
        try:
            return port.factory.buildProtocol(self._addressType("TCP", *addr))
        except BaseException:
            log.deferr()  # as tcp.Port.doRead: the connection is dropped
            return None

    def getHost(self):
        return self._addressType("TCP", *_realAddress(self._native.local_address()))

    def getPeer(self):
        return self._addressType("TCP", *self.client)


class _AdoptedServer(Server):
    """A connection handed over by IReactorSocket.adoptStreamConnection."""

    def __init__(self, factory, localPort: int, reactor) -> None:
        Server.__init__(self, None, 0, reactor)
        self._factory = factory
        self._localPort = localPort

    def _nativeConnected(self) -> None:
        self.server = self  # _build reads .factory and logs under this object
        self.factory = self._factory
        self._realPortNumber = self._localPort
        peer = self._native.peer_address()
        if peer is not None:
            self.sessionno = peer[1]  # as tcp.Server._fromConnectedSocket
        Server._nativeConnected(self)
        self.server = None

    def logPrefix(self) -> str:
        if self.protocol is None:
            return reflect.qual(self._factory.__class__)
        return self.logstr


@implementer(IListeningPort)
class Port(tcp.Port):
    """A listening TCP port (twisted.internet.tcp.Port): the socket is made and bound here, as
    Twisted makes it, and accepted on by the C++ reactor."""

    _listener = None
    _reading = False
    _portSocket = None
    _accepting = None

    @property
    def socket(self):
        """A socket object on a duplicate of the listening descriptor (getsockopt and the like),
        closed with the port."""
        if self._portSocket is None:
            if self._listener is None or self._listener.fileno() < 0:
                raise AttributeError("socket")
            self._portSocket = socket.socket(fileno=os.dup(self._listener.fileno()))
        return self._portSocket

    @socket.setter
    def socket(self, value) -> None:
        self._portSocket = value

    @socket.deleter
    def socket(self) -> None:
        self._portSocket = None

    def startListening(self) -> None:
        tcp._reservedFD.reserve()
        skt = None
        if self._preexistingSocket is None:
            try:
                skt = self.createInternetSocket()
                if self.addressFamily == socket.AF_INET6:
                    addr = tcp._resolveIPv6(self.interface, self.port)
                else:
                    addr = (self.interface, self.port)
                skt.bind(addr)
            except OSError as le:
                if skt is not None:
                    skt.close()
                raise error.CannotListenError(self.interface, self.port, le)
            skt.listen(self.backlog)
        else:
            skt = self._preexistingSocket
            self._preexistingSocket = None
            self._shouldShutdown = False  # the socket may be shared: never shut it down
        self._realPortNumber = skt.getsockname()[1]
        self._sockname = tcp._getsockname(skt)
        log.msg("%s starting on %s" % (self._getLogPrefix(self.factory), self._realPortNumber))
        self.factory.doStart()
        self.connected = True
        self.numberAccepts = 100
        skt.setblocking(False)
        self._listener = _core.tcp_adopt_listener(
            self.reactor._core, skt.detach(), self._accept, on_error=self._acceptError
        )
        self._reading = True
        self.reactor._tmRememberNative(self)

    def _accept(self):
        """In the accept transaction, on the listener's strand: the connection's handler."""
        if self.disconnecting or not self.connected:
            return None
        s = self.sessionno
        self.sessionno = s + 1
        return Server(self, s, self.reactor)

    def _acceptError(self, exc: OSError) -> None:
        """On the listener's strand: accept failed (the C++ listener backs off and retries)."""
        log.callWithLogger(self, self._reportAcceptError, exc)

    def _reportAcceptError(self, exc: OSError) -> None:
        logger = self._logger
        listener = self._listener
        if self.disconnecting or listener is None:
            return
        if exc.errno == errno.EMFILE and tcp._reservedFD.available():
            # tcp._accept's recovery: free the reserved descriptor, accept and close the waiting
            # peers (so they are not left hanging), then reserve again.
            logger.info("EMFILE encountered; releasing reserved file descriptor.")
            with tcp._reservedFD:
                # A socket object on the listener's own descriptor: it opens no descriptor.
                listening = socket.socket(
                    self.addressFamily, self.socketType, fileno=listener.fileno()
                )
                try:
                    listening.setblocking(False)
                    while True:
                        try:
                            client, closedAddress = listening.accept()
                        except OSError:
                            break
                        client.close()
                        logger.info(
                            "EMFILE recovery: Closed socket from {address}", address=closedAddress
                        )
                finally:
                    listening.detach()
                logger.info("Re-reserving EMFILE recovery file descriptor.")
            return
        code = errno.errorcode.get(exc.errno, exc.errno) if exc.errno else exc
        logger.info("Could not accept new connection ({acceptError})", acceptError=code)

    def fileno(self) -> int:
        return self._listener.fileno() if self._listener is not None else -1

    def startReading(self) -> None:
        pass  # the C++ listener accepts while it is open

    def stopReading(self) -> None:
        self._reading = False
        self.reactor._tmForgetNative(self)

    def loseConnection(self, connDone=failure.Failure(error.ConnectionDone())):
        self.disconnecting = True
        self.stopReading()
        if self.connected:
            self._stopAccepting()
            from twisted.internet.task import deferLater

            self.deferred = deferLater(self.reactor, 0, self.connectionLost, connDone)
            return self.deferred

    stopListening = loseConnection

    def _stopAccepting(self) -> None:
        """No connection is accepted once stopListening returns. The C++ listener closes on its
        own strand, later; with several workers a peer could meanwhile still be accepted into
        the backlog (tcp.Port never accepts once its reader is removed). Shutting the listening
        socket down refuses new peers at once; an adopted socket, which may be shared, is only
        closed."""
        listener = self._listener
        if listener is None or self._accepting is False:
            return
        self._accepting = False
        fd = listener.fileno()
        if self._shouldShutdown and fd >= 0:
            # A socket object on the listener's own descriptor (it opens none), for shutdown().
            listening = socket.socket(self.addressFamily, self.socketType, fileno=fd)
            try:
                listening.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                listening.detach()
        listener.close()

    def connectionLost(self, reason) -> None:
        self._logConnectionLostMsg()
        self._realPortNumber = None
        self.disconnected = 1
        self.connected = False
        self.stopReading()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        sock, self._portSocket = self._portSocket, None
        if sock is not None:
            sock.close()
        try:
            self.factory.doStop()
        finally:
            self.disconnecting = False

    def getHost(self):
        return self._addressType("TCP", *self._sockname)


class Client(tcp._BaseTCPClient, tcp._BaseBaseClient, _TLSClientMixin, Connection):
    """An outgoing connection (twisted.internet.tcp.Client). Until it is connected it is a
    selectable on the reactor, connecting with connect_ex exactly as Twisted does; then the
    descriptor is adopted by the C++ reactor."""

    _commonConnection = _NativeStream
    _connectingSocket = None
    _adopted = None

    def _finishInit(self, whenDone, skt, err, reactor):
        _NativeStream.__init__(self, reactor)
        self._connectingSocket = skt
        if whenDone:
            reactor.callLater(0, whenDone)
        else:
            reactor.callLater(0, self.failIfNotConnected, err)

    @property
    def socket(self):
        if self._connectingSocket is not None:
            return self._connectingSocket
        return _NativeStream.socket.fget(self)

    @socket.setter
    def socket(self, value) -> None:
        self._pysock = value

    @socket.deleter
    def socket(self) -> None:
        self._connectingSocket = None

    def createInternetSocket(self):
        s = socket.socket(self.addressFamily, self.socketType)
        s.setblocking(False)
        return s

    def fileno(self) -> int:
        if self._connectingSocket is not None:
            return self._connectingSocket.fileno()
        return _NativeStream.fileno(self)

    def _stopReadingAndWriting(self) -> None:
        if self._connectingSocket is not None:
            self.reactor.removeReader(self)
            self.reactor.removeWriter(self)

    def _closeSocket(self, orderly) -> None:
        skt = self._connectingSocket
        if skt is None:
            if self._native is not None:
                self._native.abort()
            raise AttributeError("socket")  # as tcp: nothing left to collect
        try:
            skt.close()
        except OSError:
            pass

    def _collectSocketDetails(self) -> None:
        self._connectingSocket = None

    def doRead(self):
        return self.doConnect()

    def doWrite(self):
        return self.doConnect()

    def doConnect(self):
        """Twisted's BaseClient.doConnect, handing the connected socket to the C++ reactor."""
        if not hasattr(self, "connector") or self._connectingSocket is None:
            return
        skt = self._connectingSocket
        err = skt.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.ECONNRESET:
            # The handshake completed and the peer reset the connection before this event ran
            # (the accepting end can run first, on another worker). The connection existed, so,
            # as epoll would have had this event run first: connected, then lost (its first read
            # reports the reset, _wasReset). connect_ex again would start a new attempt.
            connectResult = 0
        elif err:
            self.failIfNotConnected(error.getConnectError((err, os.strerror(err))))
            return
        else:
            try:
                connectResult = skt.connect_ex(self.realAddress)
            except OSError as se:
                connectResult = se.args[0]
        if connectResult:
            if connectResult == tcp.EISCONN:
                pass
            elif connectResult in (tcp.EWOULDBLOCK, tcp.EINPROGRESS, tcp.EALREADY):
                self.reactor.addReader(self)
                self.reactor.addWriter(self)
                return
            else:
                self.failIfNotConnected(
                    error.getConnectError((connectResult, os.strerror(connectResult)))
                )
                return
        self.reactor.removeReader(self)
        self.reactor.removeWriter(self)
        self._connectingSocket = None
        self._adopted = _core.tcp_adopt(self.reactor._core, skt.detach(), self)

    def failIfNotConnected(self, err):
        if self.connected or self.disconnected or not hasattr(self, "connector"):
            return
        if self._adopted is not None:
            # Connected at the socket level but not yet told: give the connection up.
            self._lost = True
            self._adopted.abort()
            self.connector.connectionFailed(failure.Failure(err))
            del self.connector
            return
        tcp._BaseBaseClient.failIfNotConnected(self, err)

    def connection_made(self, native) -> None:
        self._native = native
        if self._lost or not hasattr(self, "connector"):
            native.abort()
            return
        native.set_write_buffer_limits(*_NO_PRODUCER_LIMITS)
        # As BaseClient.doConnect inside doWrite: an exception drops the connection.
        self._guard(self._connectDone)

    def connect_failed(self, exc) -> None:
        pass  # adopted sockets are connected already

    def _connectDone(self) -> None:
        self.protocol = self.connector.buildProtocol(self.getPeer())
        self.connected = 1
        logPrefix = self._getLogPrefix(self.protocol)
        self.logstr = "%s,client" % logPrefix
        if self.protocol is None:
            self.protocol = Protocol()
            self.loseConnection()
        else:
            self._register()
            self._guard(self.protocol.makeConnection, self)

    def connectionLost(self, reason) -> None:
        if not self.connected:
            if self._lost:
                return
            self.failIfNotConnected(error.ConnectError(string=reason))
        else:
            if self._lost:
                return
            _NativeStream.connectionLost(self, reason)
            self.connector.connectionLost(reason)

    def getHost(self):
        if self._native is not None and not self._lost:
            return self._addressType("TCP", *_realAddress(self._native.local_address()))
        return tcp._BaseTCPClient.getHost(self)

    def logPrefix(self) -> str:
        return self.logstr


class Connector(tcp.Connector):
    """IConnector for native clients (twisted.internet.tcp.Connector)."""

    def _makeTransport(self) -> Client:
        return Client(self.host, self.port, self.bindAddress, self, self.reactor)


class NativeTCPMixin:
    """IReactorTCP and IReactorSocket (stream, AF_INET/AF_INET6) on native transports: a base
    class of TMReactor, before PosixReactorBase, whose Python transports it falls back to when
    tm._core has no stream transports. IReactorSSL comes with it: PosixReactorBase's
    listenSSL/connectSSL wrap the factory in TLSMemoryBIOFactory and call listenTCP/connectTCP.
    The native transports and ports count as readers for getReaders/removeAll, so that
    disconnectAll closes them at shutdown as it closes Twisted's."""

    def _tmNativeSet(self) -> dict:
        native = self.__dict__.get("_tmNative")
        if native is None:
            with self._registry:
                native = self.__dict__.setdefault("_tmNative", {})
        return native

    def _tmRememberNative(self, selectable) -> None:
        with self._registry:
            self._tmNativeSet()[id(selectable)] = selectable

    def _tmForgetNative(self, selectable) -> None:
        with self._registry:
            self._tmNativeSet().pop(id(selectable), None)

    def _tmNativeReaders(self) -> list:
        with self._registry:
            return [s for s in self._tmNativeSet().values() if s._reading]

    def listenTCP(self, port, factory, backlog=50, interface=""):
        if not available():  # an older tm._core: Twisted's Python transports
            return super().listenTCP(port, factory, backlog, interface)
        p = Port(port, factory, backlog, interface, self)
        p.startListening()
        return p

    def connectTCP(self, host, port, factory, timeout=30.0, bindAddress=None):
        if not available():
            return super().connectTCP(host, port, factory, timeout, bindAddress)
        c = Connector(host, port, factory, timeout, bindAddress, self)
        c.connect()
        return c

    def adoptStreamPort(self, fileDescriptor, addressFamily, factory):
        if addressFamily not in (socket.AF_INET, socket.AF_INET6) or not available():
            return super().adoptStreamPort(fileDescriptor, addressFamily, factory)
        p = Port._fromListeningDescriptor(self, fileDescriptor, addressFamily, factory)
        p.startListening()
        return p

    def adoptStreamConnection(self, fileDescriptor, addressFamily, factory):
        if addressFamily not in (socket.AF_INET, socket.AF_INET6) or not available():
            return super().adoptStreamConnection(fileDescriptor, addressFamily, factory)
        if addressFamily not in self._supportedAddressFamilies:
            raise error.UnsupportedAddressFamily(addressFamily)
        skt = socket.fromfd(fileDescriptor, addressFamily, socket.SOCK_STREAM)
        localPort = skt.getsockname()[1]
        skt.setblocking(False)
        server = _AdoptedServer(factory, localPort, self)
        server.addressFamily = addressFamily
        _core.tcp_adopt(self._core, skt.detach(), server)
        return server

    # The native transports and ports are readers as far as Twisted can tell: TMReactor's
    # IReactorFDSet methods call these.

    def _tmNativeRemoveAll(self) -> list:
        """removeAll's share: the reading native transports and listening ports, no longer
        counted as readers (disconnectAll then calls their connectionLost)."""
        native = self._tmNativeReaders()
        for s in native:
            s.stopReading()
            self._tmForgetNative(s)
        return native


def isNative(selectable) -> bool:
    """Whether selectable is a native transport or port (not an IReactorFDSet selectable):
    addReader/removeReader on it resume/pause its reading."""
    return isinstance(selectable, (_NativeStream, Port)) and selectable._native_or_listener()


def _native_or_listener_stream(self) -> bool:
    return self._native is not None


def _native_or_listener_port(self) -> bool:
    return self._listener is not None


_NativeStream._native_or_listener = _native_or_listener_stream
Port._native_or_listener = _native_or_listener_port

if platformType != "posix" or sys.platform == "cygwin":  # pragma: no cover
    raise ImportError("tm_twisted native TCP transports need a POSIX platform")

__all__ = [
    "Client",
    "Connection",
    "Connector",
    "NativeTCPMixin",
    "Port",
    "Server",
    "available",
    "isNative",
]
