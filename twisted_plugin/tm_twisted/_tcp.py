"""Twisted's TCP classes for TMReactor, modelled on twisted.internet.tcp: Connection, Server,
Port, Client and Connector over the native stream transports (tm_twisted._native_stream).

Sockets are created, bound and connected here exactly as twisted.internet.tcp does it (the same
options, the same errors: CannotListenError, ConnectBindError, getConnectError(errno)); the
connected or listening descriptor is then adopted by the C++ reactor (tcp_adopt,
tcp_adopt_listener). A connection attempt is a selectable on IReactorFDSet until it completes.
buildProtocol of an accepted connection runs on the connection's strand, in the transaction after
the accept (the peer's address is known once the native transport is).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any

from twisted.internet import address, error, tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableDescriptor,
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

from tm import _reactor
from tm_twisted._compat import (
    ITLSTransport,
    _BaseBaseClient,
    _BaseTCPClient,
    _getrealname,
    _getsockname,
    _reservedFD,
    _resolveIPv6,
    _startTLS,
    _TLSClientMixin,
    _TLSConnectionMixin,
    _TLSServerMixin,
)
from tm_twisted._shared_variables import serves_one_at_a_time
from tm_twisted._native_stream import (
    NO_PRODUCER_LIMITS,
    NativeStream,
    runningCallback,
    sendWithoutNagle,
)

if platformType != "posix" or sys.platform == "cygwin":  # pragma: no cover
    raise ImportError("tm_twisted native TCP transports need a POSIX platform")


def _realAddress(addr):
    """A native address tuple as twisted.internet.tcp._getrealname gives it."""
    if addr is None:
        return None
    if len(addr) == 4 and "%" not in addr[0] and addr[3]:
        return _getrealname(addr)
    return tuple(addr) if len(addr) == 4 else tuple(addr[:2])


@implementer(
    ITLSTransport,
    ITCPTransport,
    ISystemHandle,
    IPushProducer,
    IConsumer,
    ITransport,
    IHalfCloseableDescriptor,
)
class Connection(_TLSConnectionMixin, NativeStream):
    """A native TCP connection: twisted.internet.tcp.Connection's interface."""

    def startTLS(self, ctx, normal=True) -> None:
        _startTLS(self, ctx, normal, NativeStream)

    # _newtls.ConnectionMixin routes these through the TLS layer once TLS is on, and to
    # FileDescriptor otherwise: here otherwise means the native transport.
    def write(self, data) -> None:
        if self.TLS:
            if self.connected:
                self.protocol.write(data)
        else:
            NativeStream.write(self, data)

    def writeSequence(self, iovec) -> None:
        if self.TLS:
            if self.connected:
                self.protocol.writeSequence(iovec)
        else:
            NativeStream.writeSequence(self, iovec)

    def loseConnection(self) -> None:
        if self.TLS:
            if self.connected and not self.disconnecting:
                self.protocol.loseConnection()
        else:
            NativeStream.loseConnection(self)

    def registerProducer(self, producer, streaming) -> None:
        if self.TLS:
            self.protocol.registerProducer(producer, streaming)
        else:
            NativeStream.registerProducer(self, producer, streaming)

    def unregisterProducer(self) -> None:
        if self.TLS:
            self.protocol.unregisterProducer()
        else:
            NativeStream.unregisterProducer(self)


class Server(_TLSServerMixin, Connection):
    """An accepted connection (twisted.internet.tcp.Server). The protocol is built when the native
    transport is connected, from the peer's address."""

    _addressType = address.IPv4Address

    # The listening Port; an AdoptedServer names itself while its protocol is built.
    server: Any

    def __init__(self, port: Port | None, sessionno: int, reactor) -> None:
        Connection.__init__(self, reactor)
        self.server = port
        self._oneAtATime = port is not None and port._tmOneAtATime
        self.sessionno = sessionno
        self.repstr = "<Uninitialized #%d>" % sessionno

    def __repr__(self) -> str:
        return self.repstr

    def _nativeConnected(self) -> None:
        # buildProtocol is part of the connection's first callback: what it asks to happen when
        # the callback returns (a port it stops) comes before what makeConnection asks for.
        self._enter()
        try:
            self._start()
        finally:
            self._leave()

    def _start(self) -> None:
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


class AdoptedServer(Server):
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
        if isinstance(peer, tuple):  # (host, port, ...), or None once reset
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

    _listener: _reactor.StreamListener | None = None
    _reading = False
    # Whether the factory's protocol changes what every connection shares (_shared_variables)
    _tmOneAtATime = False
    _preexistingSocket: socket.socket | None  # tcp.Port's: the socket adoptStreamPort was given
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
        self._tmOneAtATime = serves_one_at_a_time(self.factory, self.reactor)
        _reservedFD.reserve()
        skt = None
        if self._preexistingSocket is None:
            try:
                skt = self.createInternetSocket()
                if self.addressFamily == socket.AF_INET6:
                    addr = _resolveIPv6(self.interface, self.port)
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
        self._sockname = _getsockname(skt)
        log.msg("%s starting on %s" % (self._getLogPrefix(self.factory), self._realPortNumber))
        self.factory.doStart()
        self.connected = True
        self.numberAccepts = 100
        skt.setblocking(False)
        self._listener = _reactor.tcp_adopt_listener(
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
        if exc.errno == errno.EMFILE and _reservedFD.available():
            # tcp._accept's recovery: free the reserved descriptor, accept and close the waiting
            # peers (so they are not left hanging), then reserve again.
            logger.info("EMFILE encountered; releasing reserved file descriptor.")
            with _reservedFD:
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

    def _isNative(self) -> bool:
        """Whether the C++ reactor holds the listening descriptor."""
        return self._listener is not None

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
            stopper = runningCallback()
            if stopper is None:
                from twisted.internet.task import deferLater

                self.deferred = deferLater(self.reactor, 0, self.connectionLost, connDone)
            else:
                # tcp.Port defers connectionLost to the next reactor iteration, which runs before
                # any I/O this callback causes: a peer that sees this connection's close already
                # finds the port closed (test_tcp's test_closePortInProtocolFactory). A delayed
                # call would run on this strand while the peer's strand runs in parallel, so the
                # port closes as this connection's callback returns, before its close (queued
                # after this one) and before its writes leave (at the transaction's commit).
                done = Deferred()
                done.addCallback(lambda _: self.connectionLost(connDone))
                stopper._afterCallback(lambda: done.called or done.callback(None))
                self.deferred = done
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
        # Refuse peers now, as tcp.Port's close of its socket does: the native listener closes
        # on its own strand, later, and a connect made meanwhile (reactor.disconnectAll, or a
        # direct call as in test_directConnectionLostCall) would still be accepted.
        self._stopAccepting()
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


class Client(_BaseTCPClient, _BaseBaseClient, _TLSClientMixin, Connection):
    """An outgoing connection (twisted.internet.tcp.Client). Until it is connected it is a
    selectable on the reactor, connecting with connect_ex exactly as Twisted does; then the
    descriptor is adopted by the C++ reactor."""

    _commonConnection = NativeStream
    _connectingSocket = None
    _adopted = None

    def _finishInit(self, whenDone, skt, err, reactor):
        NativeStream.__init__(self, reactor)
        self._connectingSocket = skt
        if whenDone:
            reactor.callLater(0, whenDone)
        else:
            reactor.callLater(0, self.failIfNotConnected, err)

    @property
    def socket(self):
        if self._connectingSocket is not None:
            return self._connectingSocket
        return NativeStream.socket.fget(self)

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
        return NativeStream.fileno(self)

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
            if connectResult == errno.ECONNRESET:
                # The same reset, landed between the SO_ERROR read and connect_ex, which reports
                # (and consumes) it: connected, then lost.
                connectResult = 0
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
        self._adopted = _reactor.tcp_adopt(self.reactor._core, skt.detach(), self)

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
        _BaseBaseClient.failIfNotConnected(self, err)

    def connection_made(self, native) -> None:
        self._native = native
        if self._lost or not hasattr(self, "connector"):
            native.abort()
            return
        sendWithoutNagle(native)
        native.set_write_buffer_limits(*NO_PRODUCER_LIMITS)
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
            NativeStream.connectionLost(self, reason)
            self.connector.connectionLost(reason)

    def getHost(self):
        if self._native is not None and not self._lost:
            return self._addressType("TCP", *_realAddress(self._native.local_address()))
        return _BaseTCPClient.getHost(self)

    def logPrefix(self) -> str:
        return self.logstr


class Connector(tcp.Connector):
    """IConnector for native clients (twisted.internet.tcp.Connector)."""

    def _makeTransport(self) -> Client:
        # Twisted's _BaseTCPClient.__init__, first in Client's bases, takes these (to mypy,
        # Twisted's classes are untyped: it sees NativeStream's).
        return Client(self.host, self.port, self.bindAddress, self, self.reactor)  # type: ignore[call-arg]


__all__ = ["Client", "Connection", "Connector", "Port", "Server"]
