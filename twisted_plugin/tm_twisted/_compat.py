"""The private names of Twisted that tm_twisted depends on, in one place.

Twisted promises nothing about these. The other modules of tm_twisted import Twisted's private
module-level names from here only, so a Twisted upgrade has one file to check: each name below,
and the private attributes and hooks listed at the end (which cannot be imported: they are
attributes of Twisted's classes that tm_twisted's subclasses override or read). Written against
Twisted 26.10.
"""

from __future__ import annotations

from twisted.internet import abstract, base, posixbase, task, tcp

# -- twisted.internet.base ------------------------------------------------------------------------

# A failing delayed call is reported through the stock reactors' handler: the same report.
_DEFAULT_DELAYED_CALL_LOGGING_HANDLER = base._DEFAULT_DELAYED_CALL_LOGGING_HANDLER
# A failing call from a thread likewise.
_threadCallHandler = base._threadCallHandler

# -- twisted.internet.posixbase -------------------------------------------------------------------

# Regular files, which epoll cannot watch, are polled as the epoll reactor polls them.
_ContinuousPolling = posixbase._ContinuousPolling
# The reason a selectable whose descriptor closed is disconnected with, as in epoll's doRead.
_NO_FILEDESC = posixbase._NO_FILEDESC

# -- twisted.internet.abstract --------------------------------------------------------------------

# Base of the native stream: logPrefix and _getLogPrefix, as Twisted's transports have them.
_LogOwner = abstract._LogOwner

# -- twisted.internet.tcp -------------------------------------------------------------------------

# An IPv6 address tuple as Twisted reports it (with the interface after the %).
_getrealname = tcp._getrealname
# A listening socket's address, as tcp.Port records it for getHost.
_getsockname = tcp._getsockname
# An IPv6 interface to bind to, resolved as tcp.Port resolves it.
_resolveIPv6 = tcp._resolveIPv6
# The descriptor tcp.Port reserves for EMFILE recovery (one per process, shared with Twisted's).
_reservedFD = tcp._reservedFD
# tcp.Client's connecting half (resolution, binding, failIfNotConnected), reused as it is.
_BaseBaseClient = tcp._BaseBaseClient
# tcp.Client's TCP part (its addresses and __init__), reused as it is.
_BaseTCPClient = tcp._BaseTCPClient

# -- twisted.internet._newtls ---------------------------------------------------------------------

try:
    # startTLS over any transport, and the mixins that route writes through the TLS layer once it
    # is on: Twisted's own TCP classes are built from the same three.
    from twisted.internet._newtls import (
        ClientMixin as _TLSClientMixin,
        ConnectionMixin as _TLSConnectionMixin,
        ServerMixin as _TLSServerMixin,
        startTLS as _startTLS,
    )
    from twisted.internet.interfaces import ITLSTransport
except ImportError:  # no pyOpenSSL: no startTLS, as twisted.internet.tcp
    from zope.interface import Interface as ITLSTransport

    _startTLS = None

    class _TLSConnectionMixin:  # type: ignore[no-redef]
        TLS = False

    class _TLSClientMixin:  # type: ignore[no-redef]
        pass

    class _TLSServerMixin:  # type: ignore[no-redef]
        pass


# -- twisted.internet.task ------------------------------------------------------------------------


def globalCooperator() -> object:
    """task._theCooperator, which task.cooperate and task.coiterate read at each call."""
    return task._theCooperator


def setGlobalCooperator(cooperator: object) -> None:
    """Replaces task._theCooperator: one Cooperator per strand (tm_twisted._cooperators)."""
    task._theCooperator = cooperator


# -- twisted.web.http_headers (looked up in sys.modules, never imported here) ---------------------

# The process-wide header-name cache, and its class, made per thread (tm_twisted._shared_caches).
NAME_ENCODER_ATTRIBUTE = "_nameEncoder"
NAME_ENCODER_CLASS = "_NameEncoder"


# -- Private attributes and hooks of Twisted's classes --------------------------------------------
#
# Overridden or read by tm_twisted's subclasses; check that each still exists and means the same.
#
# PosixReactorBase / ReactorBase (TMReactor, tm_twisted._reactor):
#   _started, _justStopped         mainLoop and stop() follow ReactorBase's run state.
#   _reallyStartRunning            overridden: finishing startup off the main thread.
#   _installSignalHandlers, _signals  signal handlers installed by the thread running run().
#   _removeAll, _disconnectSelectable removeAll() and a failed doRead/doWrite, as epoll does them.
#   _supportedAddressFamilies      adoptStreamConnection's check, as PosixReactorBase's.
# DelayedCall: delayed_time, activate_delay  a call pushed back by delay() is re-armed.
# task.Cooperator (StrandCooperator, tm_twisted._cooperators):
#   _addTask, _removeTask, _tick   overridden: task bookkeeping runs on the Cooperator's strand.
#   _tasks, _delayedCall           whether a Cooperator is idle and can be dropped.
# abstract.FileDescriptor: _tempDataBuffer  provided: Twisted's tests poll it (test_tcp).
# abstract._LogOwner: _getLogPrefix  the log prefix of a connection and of a port.
# tcp.Port (tm_twisted._tcp.Port):
#   _fromListeningDescriptor, _preexistingSocket  adoptStreamPort builds ports as Twisted does.
#   _shouldShutdown, _realPortNumber, _addressType, _logger, _logConnectionLostMsg
#                                  used as tcp.Port uses them, so logs and addresses are the same.
# tcp._BaseBaseClient hooks (tm_twisted._tcp.Client):
#   _commonConnection, _finishInit, _stopReadingAndWriting, _closeSocket, _collectSocketDetails
#                                  overridden: the connected socket is handed to the C++ reactor.
# tcp.Connector: _makeTransport    overridden: the native Client.

__all__ = [
    "ITLSTransport",
    "NAME_ENCODER_ATTRIBUTE",
    "NAME_ENCODER_CLASS",
    "_BaseBaseClient",
    "_BaseTCPClient",
    "_ContinuousPolling",
    "_DEFAULT_DELAYED_CALL_LOGGING_HANDLER",
    "_LogOwner",
    "_NO_FILEDESC",
    "_TLSClientMixin",
    "_TLSConnectionMixin",
    "_TLSServerMixin",
    "_getrealname",
    "_getsockname",
    "_reservedFD",
    "_resolveIPv6",
    "_startTLS",
    "_threadCallHandler",
    "globalCooperator",
    "setGlobalCooperator",
]
