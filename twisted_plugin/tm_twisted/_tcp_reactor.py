"""IReactorTCP and IReactorSocket on TMReactor: the reactor's side of the native TCP transports.

``NativeTCPMixin`` makes ports and connections of tm_twisted._tcp, and lists the reading native
transports and listening ports among the reactor's readers (getReaders, removeAll), so that
disconnectAll() at shutdown closes them as it closes Twisted's. ``isNative`` tells TMReactor's
IReactorFDSet methods which selectables are native: addReader/removeReader on one resume or pause
its reading instead of watching a descriptor.
"""

from __future__ import annotations

import socket
import threading

from twisted.internet import error

from tm import _reactor
from tm_twisted._native_stream import NativeStream, available
from tm_twisted._tcp import AdoptedServer, Connector, Port


class NativeTCPMixin:
    """IReactorTCP and IReactorSocket (stream, AF_INET/AF_INET6) on native transports: a base
    class of TMReactor, before PosixReactorBase, whose Python transports it falls back to when
    tm._core has no stream transports. IReactorSSL comes with it: PosixReactorBase's
    listenSSL/connectSSL wrap the factory in TLSMemoryBIOFactory and call listenTCP/connectTCP.
    The native transports and ports count as readers for getReaders/removeAll, so that
    disconnectAll closes them at shutdown as it closes Twisted's."""

    _registry: threading.RLock  # TMReactor's lock of its bookkeeping (TMReactor.__init__)

    def _tmNativeSet(self) -> dict:
        native = getattr(self, "_tmNative", None)  # not __dict__.get: see _cooperators
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
        server = AdoptedServer(factory, localPort, self)
        server.addressFamily = addressFamily
        _reactor.tcp_adopt(self._core, skt.detach(), server)
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
    return isinstance(selectable, (NativeStream, Port)) and selectable._isNative()


__all__ = ["NativeTCPMixin", "isNative"]
