"""TMReactor: Twisted's reactor API over tm-reactor's C++ engine.

Every ready event (a descriptor readable or writable, a delayed call) runs as one transaction on
a worker thread of the C++ reactor, on a strand: the events of one strand run one at a time and in
order, those of different strands in parallel on a free-threaded interpreter. Each native TCP
connection and listening port has a strand of its own; Twisted's Python transports share one (see
__init__); a delayed call runs on the strand of the callback that made it; a call from another
thread runs in the reactor's thread (see callFromThread).

The class is plain Python holding the engine in ``self._core``: Twisted's test harness replaces a
reactor's ``__class__`` and ``__dict__``, which a C++ base class would not survive.

TCP (and TLS over it, through the memory BIO) runs on the C++ reactor's native stream transports
(tm_twisted._tcp over tm_twisted._native_stream, made by tm_twisted._tcp_reactor): thread-safe,
and what a transaction writes is sent at its commit. Twisted's own Python transports (UDP, Unix,
processes) run on this reactor through IReactorFDSet, which PosixReactorBase builds them on.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading

from twisted.internet import base, posixbase
from twisted.internet.interfaces import IReactorDaemonize, IReactorFDSet
from twisted.logger import Logger
from twisted.python import log, threadable
from zope.interface import implementer

import tm
from tm import _reactor
from tm._main_thread import call_on_main_thread, route_signal_calls
from tm_twisted import (
    _content_type,
    _cooperators,
    _deferred_home,
    _lock_reentry,
    _shared_objects,
)
from tm_twisted._compat import (
    _DEFAULT_DELAYED_CALL_LOGGING_HANDLER,
    _NO_FILEDESC,
    _ContinuousPolling,
    _threadCallHandler,
)
from tm_twisted._managed import manage_factory
from tm_twisted._native_stream import oneAtATime, runsOneAtATime
from tm_twisted._shared_caches import make_per_thread
from tm_twisted._tcp_reactor import NativeTCPMixin, isNative
from tm_twisted._thread_origin import origin_strand

_log = Logger()

# How a delayed call runs unless a connection that runs one callback at a time made it.
_ANY_AT_ONCE = contextlib.nullcontext()

# The shortest iterate(): long enough for its stop to be armed before it is due (see iterate).
_ITERATE_AT_LEAST = 0.001


@implementer(IReactorFDSet, IReactorDaemonize)
class TMReactor(NativeTCPMixin, posixbase.PosixReactorBase):
    """A Twisted reactor whose callbacks run as transactions on a pool of worker threads.

    @ivar _core: the C++ reactor (L{tm._reactor.Reactor}).
    @ivar _selectables: descriptor number -> the selectable registered for it.
    @ivar _watchers: descriptor number -> its L{tm._reactor.FdWatcher}; the watcher's strand is the
        selectable's strand.
    @ivar _reads, _writes: descriptor numbers with a reader or a writer registered.
    @ivar _registry: guards the four containers above; the reactor's own bookkeeping, which
        workers of different strands change concurrently.
    @ivar _delayedCalls: the L{DelayedCall}s scheduled and not yet run or cancelled. Changed by
        every callLater and cancel, it needs no lock: a set's add, discard and copy are each
        atomic, with the GIL and on a free-threaded interpreter alike.
    """

    _justStopped: bool  # ReactorBase's run state (set by stop(), read by the shutdown here)

    def __init__(self, workers: int | None = None) -> None:
        _reactor.abort_injection_from_environment()  # TM_ABORT_INJECTION, for differential tests
        # On a GIL interpreter every event shares one strand: the epoll reactor's order, since
        # the GIL would not let callbacks run in parallel anyway
        # (tm._reactor.one_strand_from_environment).
        self._core = _reactor.Reactor(
            _reactor.workers_from_environment() if workers is None else workers,
            one_strand=_reactor.one_strand_from_environment(),
        )
        self._registry = threading.RLock()
        self._selectables: dict[int, object] = {}
        self._watchers: dict[int, _reactor.FdWatcher] = {}
        self._reads: set[int] = set()
        self._writes: set[int] = set()
        self._delayedCalls: set[base.DelayedCall] = set()
        # Calls from other threads share one strand so they run in the order they were made;
        # the reactor's own control events (iterate's deadline) have another.
        self._threadCallStrand = self._core.make_strand()
        self._controlStrand = self._core.make_strand()
        # Twisted's Python transports (UDP, Unix, process pipes, stdio, any IReactorFDSet user) are
        # written for a reactor that runs one callback at a time, and they reach into one another:
        # a process's pipes and the SIGCHLD reaper all end the same ProcessProtocol, StandardIO's
        # reader and writer close one protocol, a Unix socket pair passes descriptors. They share
        # one strand, and so does shutdown (which disconnects them), so they keep that guarantee
        # among themselves while native TCP connections run in parallel (docs/TWISTED.md).
        self._pythonTransportStrand = self._core.make_strand()
        # The reactor's main strand: the Python transports and shutdown above, and the work of
        # Twisted's process-wide objects started outside any callback (a Cooperator task made
        # before run(): tm_twisted._cooperators).
        self._mainStrand = self._pythonTransportStrand
        # Descriptors epoll cannot watch (regular files) are polled, as the epoll reactor does.
        self._continuousPolling = _ContinuousPolling(self)
        # Work only the main thread may do (installing signal handlers), for run()'s tick.
        self._mainThreadCalls: list = []
        # Calls from other threads waiting for the thread that runs the reactor (several workers).
        self._threadCalls: collections.deque = collections.deque()
        # The thread running a round of those calls, or 0 (see _runThreadCalls). Every callLater
        # reads it: a plain attribute, 0 outside a round, is one load where a threading.local's
        # read costs about 100 ns on 3.13t.
        self._threadCallsRunOn = 0
        self._threadCallRoundWaits = False
        super().__init__()

    @property
    def workers(self) -> int:
        """The number of worker threads callbacks run on."""
        return self._core.workers

    # -- IReactorCore ---------------------------------------------------------------------------

    def installWaker(self) -> None:
        # Calls from threads are posted to the C++ reactor, which wakes itself: no self-pipe.
        self.waker = None

    def wakeUp(self) -> None:
        pass

    def mainLoop(self) -> None:
        make_per_thread(self.workers, _reactor.gil_enabled())
        _lock_reentry.install(self.workers, _reactor.gil_enabled())
        _content_type.install(self.workers, _reactor.gil_enabled())
        _cooperators.install()
        _shared_objects.install()
        _reactor.immortalize_shared_objects(self.workers)
        _reactor.complete_collections(self.workers)
        # With several workers signal.signal() in a callback runs on the main thread, as on epoll.
        end_routing = route_signal_calls(self._core.in_worker, self._callOnMainThread)
        parallel = self.workers > 1 and not self._core.one_strand and not _reactor.gil_enabled()
        _deferred_home.running(self._core, parallel)
        try:
            while self._started:
                if self._core.stopped:
                    self._core.restart()
                self._core.run(tick=self._tick)
        finally:
            _deferred_home.stopped(self._core)
            end_routing()
        self._runMainThreadCalls()
        _log.info("Main loop terminated.")

    def _tick(self) -> None:
        """What the thread that called run() does while the workers run (several workers)."""
        self._runMainThreadCalls()
        self._runThreadCalls()

    def _callOnMainThread(self, f):
        """f() run by the thread that runs the reactor, at its tick (a worker's call)."""
        return call_on_main_thread(self._postToMainThread, f)

    def _postToMainThread(self, f) -> None:
        with self._registry:
            self._mainThreadCalls.append(f)
        self._core.wake_caller()

    def _runMainThreadCalls(self) -> None:
        with self._registry:
            calls, self._mainThreadCalls = self._mainThreadCalls, []
        for f in calls:
            with _threadCallHandler:
                f()

    def _reallyStartRunning(self) -> None:
        # A "before startup" trigger that returns a Deferred finishes startup on a worker; the
        # signal handlers are then installed by the thread that runs the reactor, which is the only
        # one Python lets install them.
        if threading.get_ident() == threading.main_thread().ident:
            return super()._reallyStartRunning()
        self.running = True
        if self._installSignalHandlers:
            with self._registry:
                self._mainThreadCalls.append(self._signals.install)

    def stop(self) -> None:
        base.ReactorBase.stop(self)
        # The epoll reactor fires "shutdown" at the end of the iteration, after every delayed call
        # that was due by then: here, once the calls due now have run on their strands.
        now = self.seconds()
        due = [c for c in self._delayedCalls.copy() if c.time <= now]
        self._core.post(
            functools.partial(self._fireShutdown, due), strand=self._pythonTransportStrand
        )

    def _fireShutdown(self, due: list) -> None:
        if any(not (c.called or c.cancelled) for c in due):
            self._core.call_at(
                _reactor.monotonic() + 0.001,
                functools.partial(self._fireShutdown, due),
                strand=self._pythonTransportStrand,
            )
            return
        if self._justStopped:
            self._justStopped = False
            self.fireSystemEvent("shutdown")

    def crash(self) -> None:
        base.ReactorBase.crash(self)
        self._core.stop()

    def iterate(self, delay: float = 0.0) -> None:
        """Runs the events that are ready, waiting for them up to delay seconds."""
        if self._core.stopped:
            self._core.restart()
        # A stop already due would run before the reactor polls (timers due run first, as in
        # epoll's runUntilCurrent): one due in a millisecond comes after the poll, so what is
        # ready now runs, as epoll's doIteration(0) runs it.
        deadline = self._core.call_at(
            _reactor.monotonic() + max(delay, _ITERATE_AT_LEAST),
            self._core.stop,
            strand=self._controlStrand,
        )
        self._core.run(tick=self._tick)
        deadline.cancel()

    def doIteration(self, delay: float | None) -> None:
        raise NotImplementedError("TMReactor has no iterations: the C++ reactor drives it")

    # -- IReactorTime ---------------------------------------------------------------------------

    def callLater(self, delay, callable, *args, **kw) -> base.DelayedCall:
        # A call from a thread (run by the thread that called run(), outside any strand) keeps
        # its delayed calls on the calls' strand, ordered with the next round of calls.
        on = self._threadCallsRunOn
        strand = self._threadCallStrand if on and on == threading.get_ident() else None
        return self._callLaterOn(strand, delay, callable, *args, **kw)

    def _callLaterOn(self, strand, delay, callable, *args, **kw) -> base.DelayedCall:
        """callLater on strand (None: the calling callback's strand, or outside any callback the
        reactor's main strand)."""
        assert builtins_callable(callable), f"{callable} is not callable"
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        if strand is None and _reactor.current_strand() is None:
            # Made before run() or by a startup trigger: in one strand these calls run in
            # deadline order, as epoll runs them (a strand each ran them in no fixed order once
            # they came due together).
            strand = self._mainStrand
        call = base.DelayedCall(
            self.seconds() + delay,
            callable,
            args,
            kw,
            self._cancelCallLater,
            self._moveCallLaterSooner,
            seconds=self.seconds,
        )
        if runsOneAtATime():
            call._tmOneAtATime = True
        self._delayedCalls.add(call)
        call._tmTimer = self._core.call_at(
            _reactor.monotonic() + delay,
            functools.partial(self._runDelayedCall, call),
            strand=strand,
        )
        if tm.in_transaction() and not self._core.in_worker():
            # A tm.atomic block outside this reactor's callbacks (whose transactions always
            # commit): its timer is armed at the commit (docs/GUARANTEES.md), so an exception
            # that abandons the block leaves a call that never runs, which must not stay
            # registered (getDelayedCalls would list it, and stop() would wait for it forever).
            tm.on_abort(functools.partial(self._abandonCallLater, call))
        return call

    def _abandonCallLater(self, call: base.DelayedCall) -> None:
        self._delayedCalls.discard(call)
        call.cancelled = 1  # it will never run: active() says so
        call.__dict__.pop("_tmTimer", None)  # never armed; spent (see _runDelayedCall)

    def _runDelayedCall(self, call: base.DelayedCall) -> None:
        if call.cancelled or call.called:
            return
        if call.delayed_time > 0.0:
            # delay() pushed it back: re-arm for the new time, as runUntilCurrent re-pushes it.
            call.activate_delay()
            call._tmTimer.reschedule(self._monotonicTime(call))
            return
        self._delayedCalls.discard(call)
        # The native timer holds its callable, which holds the call: once spent (called or
        # cancelled) the call lets go of the timer, or the pair is a cycle through C++ that the
        # garbage collector cannot see, and every DelayedCall ever made stays alive (and the
        # free-threaded collector, which scans the whole heap, slows down with them).
        del call._tmTimer
        one_at_a_time = oneAtATime() if "_tmOneAtATime" in call.__dict__ else _ANY_AT_ONCE
        with one_at_a_time, _DEFAULT_DELAYED_CALL_LOGGING_HANDLER:
            call.called = 1
            call.func(*call.args, **call.kw)

    def _monotonicTime(self, call: base.DelayedCall) -> float:
        """call's time (reactor.seconds()) on the reactor's monotonic clock, which timers use."""
        return _reactor.monotonic() + max(0.0, call.time - self.seconds())

    def _cancelCallLater(self, call: base.DelayedCall) -> None:
        self._delayedCalls.discard(call)
        call.__dict__.pop("_tmTimer").cancel()  # spent: see _runDelayedCall

    def _moveCallLaterSooner(self, call: base.DelayedCall) -> None:
        call._tmTimer.reschedule(self._monotonicTime(call))

    def getDelayedCalls(self):
        return [c for c in self._delayedCalls.copy() if not (c.cancelled or c.called)]

    # -- IReactorThreads ------------------------------------------------------------------------

    def getThreadPool(self):
        # Made on first use; two strands asking at once would each make one, and the pool that
        # lost the race would never be stopped (its threads would keep the process alive).
        with self._registry:
            return super().getThreadPool()

    def callFromThread(self, f, *args, **kwargs) -> None:
        """Runs f(*args, **kwargs) in the reactor's thread, as a transaction, in call order.

        Twisted promises the thread that runs the reactor. With one worker that is the worker, and
        the calls run on a strand of their own; with more, the thread that called run() waits
        while the workers work, and it runs the calls with no callback running, each in an
        irrevocable transaction (docs/TWISTED.md). As in epoll's runUntilCurrent, a call made
        while the calls from threads run waits for the next round, after the delayed calls due by
        then (_runThreadCalls). A call from a thread pool's work that a callback started runs on
        that callback's strand.
        """
        assert builtins_callable(f), f"{f} is not callable"
        origin = origin_strand()
        if origin is not None:
            # Work a callback gave this pool thread: its calls back run on that callback's
            # strand, one at a time with the connection's events (tm_twisted._thread_origin).
            self._core.post(functools.partial(self._runThreadCall, f, args, kwargs), strand=origin)
            return
        self._threadCalls.append((f, args, kwargs))  # a deque: thread-safe append and popleft
        on = self._threadCallsRunOn
        if on and on == threading.get_ident():
            return  # the running round schedules the next one
        self._nextThreadCallRound()

    def _nextThreadCallRound(self) -> None:
        if self._core.workers == 1:
            self._core.post(self._runThreadCalls, strand=self._threadCallStrand)
        else:
            self._core.wake_caller()

    def _runThreadCalls(self) -> None:
        """One round: the calls queued when it starts (epoll's runUntilCurrent takes as many)."""
        if self._threadCallRoundWaits:
            return  # the calls made by the last round wait for its timer (below)
        calls = self._threadCalls
        if not calls:
            return
        self._threadCallsRunOn = threading.get_ident()
        try:
            if self._core.workers == 1:  # already a transaction on the calls' strand
                for _ in range(len(calls)):
                    self._runThreadCall(*calls.popleft())
            else:
                # Run as epoll runs them, between two callbacks: alone. A call from a thread
                # may touch any connection's protocol, whose callbacks run on the workers.
                with _reactor.exclusive(self._core, self._runMainThreadCalls):
                    for _ in range(len(calls)):
                        with tm.atomic():  # as a reactor callback: irrevocable
                            self._runThreadCall(*calls.popleft())
        finally:
            self._threadCallsRunOn = 0
        if calls:
            # Made by this round's calls: the next round is a timer due now on the calls'
            # strand, behind the delayed calls those calls scheduled for now (callLater(0)).
            # Until it fires no round runs, also not one that run()'s 50 ms tick or another
            # thread's call would start.
            self._threadCallRoundWaits = True
            self._core.call_at(
                _reactor.monotonic(), self._threadCallRoundDue, strand=self._threadCallStrand
            )

    def _threadCallRoundDue(self) -> None:
        self._threadCallRoundWaits = False
        self._nextThreadCallRound()

    @staticmethod
    def _runThreadCall(f, args, kwargs) -> None:
        with _threadCallHandler:
            f(*args, **kwargs)

    # -- IReactorFDSet --------------------------------------------------------------------------

    def _watcherFor(self, fd: int, selectable) -> _reactor.FdWatcher | None:
        """The watcher of fd, made on first use; None where epoll cannot watch fd."""
        watcher = self._watchers.get(fd)
        if watcher is None:
            try:
                watcher = self._core.watch_fd(fd, strand=self._pythonTransportStrand)
            except OSError:
                return None
            self._watchers[fd] = watcher
            self._selectables[fd] = selectable
        return watcher

    def _forget(self, fd: int) -> None:
        if fd not in self._reads and fd not in self._writes:
            self._selectables.pop(fd, None)
            watcher = self._watchers.pop(fd, None)
            if watcher is not None:
                watcher.release()

    def _fdOf(self, selectable) -> int:
        """The descriptor selectable was registered under, also after it closed (fileno -1)."""
        fd = selectable.fileno()
        if fd == -1:
            for registered, other in self._selectables.items():
                if other is selectable:
                    return registered
        return fd

    def _add(self, selectable, isRead: bool) -> None:
        """Watches selectable's descriptor for reading or writing (epollreactor's _add)."""
        registered = self._reads if isRead else self._writes
        with self._registry:
            fd = selectable.fileno()
            if fd in registered:
                return
            watcher = self._watcherFor(fd, selectable)
            if watcher is None:
                if isRead:
                    self._continuousPolling.addReader(selectable)
                else:
                    self._continuousPolling.addWriter(selectable)
                return
            registered.add(fd)
            ready = functools.partial(self._doReadOrWrite, selectable, isRead)
            if isRead:
                watcher.add_reader(ready)
            else:
                watcher.add_writer(ready)

    def _remove(self, selectable, isRead: bool) -> None:
        """The inverse of _add; the watcher goes once neither direction is watched."""
        registered = self._reads if isRead else self._writes
        with self._registry:
            if isRead and self._continuousPolling.isReading(selectable):
                self._continuousPolling.removeReader(selectable)
                return
            if not isRead and self._continuousPolling.isWriting(selectable):
                self._continuousPolling.removeWriter(selectable)
                return
            fd = self._fdOf(selectable)
            if fd not in registered:
                return
            registered.discard(fd)
            if isRead:
                self._watchers[fd].remove_reader()
            else:
                self._watchers[fd].remove_writer()
            self._forget(fd)

    def addReader(self, reader) -> None:
        if isNative(reader):  # a native transport: reading resumes
            reader.startReading()
        else:
            self._add(reader, isRead=True)

    def addWriter(self, writer) -> None:
        if not isNative(writer):  # a native transport writes by itself
            self._add(writer, isRead=False)

    def removeReader(self, reader) -> None:
        if isNative(reader):
            reader.stopReading()
        else:
            self._remove(reader, isRead=True)

    def removeWriter(self, writer) -> None:
        if not isNative(writer):
            self._remove(writer, isRead=False)

    def removeAll(self):
        with self._registry:
            return (
                self._removeAll(
                    [self._selectables[fd] for fd in self._reads],
                    [self._selectables[fd] for fd in self._writes],
                )
                + self._continuousPolling.removeAll()
                + self._tmNativeRemoveAll()
            )

    def getReaders(self):
        with self._registry:
            return [self._selectables[fd] for fd in self._reads] + (
                self._continuousPolling.getReaders() + self._tmNativeReaders()
            )

    def getWriters(self):
        with self._registry:
            return [self._selectables[fd] for fd in self._writes] + (
                self._continuousPolling.getWriters()
            )

    def _doReadOrWrite(self, selectable, isRead: bool) -> None:
        """One readiness event of selectable, as the epoll reactor handles it."""
        with self._registry:
            fd = self._fdOf(selectable)
            if fd not in (self._reads if isRead else self._writes) or (
                self._selectables.get(fd) is not selectable
            ):
                return  # removed after the event was queued
        log.callWithLogger(selectable, self._readOrWrite, selectable, isRead)

    def _readOrWrite(self, selectable, isRead: bool) -> None:
        try:
            if selectable.fileno() == -1:
                why = _NO_FILEDESC
            else:
                why = selectable.doRead() if isRead else selectable.doWrite()
        except BaseException as e:
            why = e
            log.err()
        if why:
            self._disconnectSelectable(selectable, why, isRead)

    # -- Managed factories (DESIGN.md section 4; docs/MANAGED_STATE.md) --------------------------

    def listenTCP(self, port, factory, backlog=50, interface=""):
        return super().listenTCP(port, manage_factory(factory), backlog, interface)

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        return super().connectTCP(host, port, manage_factory(factory), timeout, bindAddress)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        return super().listenSSL(port, manage_factory(factory), contextFactory, backlog, interface)

    def connectSSL(self, host, port, factory, contextFactory, timeout=30, bindAddress=None):
        return super().connectSSL(
            host, port, manage_factory(factory), contextFactory, timeout, bindAddress
        )

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        return super().listenUNIX(address, manage_factory(factory), backlog, mode, wantPID)

    def connectUNIX(self, address, factory, timeout=30, checkPID=0):
        return super().connectUNIX(address, manage_factory(factory), timeout, checkPID)

    def adoptStreamPort(self, fileDescriptor, addressFamily, factory):
        return super().adoptStreamPort(fileDescriptor, addressFamily, manage_factory(factory))

    def adoptStreamConnection(self, fileDescriptor, addressFamily, factory):
        return super().adoptStreamConnection(fileDescriptor, addressFamily, manage_factory(factory))

    # -- IReactorDaemonize ----------------------------------------------------------------------

    def beforeDaemonize(self) -> None:
        self._core.notify_fork("prepare")

    def afterDaemonize(self) -> None:
        self._core.notify_fork("child")


builtins_callable = callable


def _isInIOThread(original=threadable.isInIOThread) -> bool:
    """True in the thread that runs the reactor, and on every worker of a running TMReactor."""
    if original():
        return True
    return _reactor.current_strand() is not None


threadable.isInIOThread = _isInIOThread


def install(workers: int | None = None) -> TMReactor:
    """Installs TMReactor as the global reactor (twistd --reactor=tm calls this)."""
    from twisted.internet.main import installReactor

    reactor = TMReactor(workers)
    installReactor(reactor)
    _cooperators.install()
    _shared_objects.install()
    return reactor


__all__ = ["TMReactor", "install"]
