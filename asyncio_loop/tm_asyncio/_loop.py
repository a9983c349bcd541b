"""EventLoop: asyncio's Unix selector loop with its machinery routed to tm-reactor's C++ engine.

The class subclasses asyncio's own ``_UnixSelectorEventLoop``, so asyncio's socket transports,
servers, ``sock_*`` methods, pipes, subprocesses and signal handling keep working unchanged. What
changes is what drives them:

- ``call_soon``/``call_soon_threadsafe`` post the handle to the C++ reactor (``Reactor.post``;
  with one worker, the strand's ready queue, ``Reactor.ready_queue``, asyncio's ``_ready``
  deque); ``call_at``/``call_later`` arm a C++ timer (``Reactor.call_at``), which
  ``TimerHandle.cancel()`` cancels. Both run on the loop's strand, so they keep asyncio's FIFO
  order.
- ``add_reader``/``add_writer`` (and the private ``_add_reader`` the transports use) register with
  asyncio's selector as usual, which stays the registry of handles, and with one C++ ``FdWatcher``
  per descriptor, which wakes the reactor. asyncio's selector is never polled.
- ``run_forever`` runs ``Reactor.run()``; ``stop()`` posts a marker behind what is already queued.

Workers: ``TM_WORKERS`` picks the count; unset, it is 1, and then every callback runs on the
thread that called ``run_forever`` and the behaviour is asyncio's. With more workers, callbacks run
on worker threads but one at a time (a loop-wide lock), except in parallel mode (the default with
more than one worker on a free-threaded interpreter; ``parallel=`` or ``TM_ASYNCIO_PARALLEL=1|0``
decide otherwise), which adds the C++ reactor's stream transports: each TCP or Unix connection
gets a strand of its own, and a user protocol's callbacks run there without the loop lock, in
parallel with other connections' (tm_asyncio._transport).
"""

from __future__ import annotations

import asyncio
import asyncio.log
import functools
import heapq
import itertools
import math
import os
import selectors
import signal
import sys
import threading
import warnings
import weakref
from typing import Any, Callable
from asyncio import events

import tm
from tm import _reactor
from tm._main_thread import call_on_main_thread, route_signal_calls
from tm_asyncio._compat import (
    _PY_TASK_STEP,
    SSL_HANDSHAKE_TIMEOUT,
    SSL_SHUTDOWN_TIMEOUT,
    SSLProtocol,
    _get_running_loop,
    _PyTask,
    _set_running_loop,
    _UnixSelectorEventLoop,
)
from tm_asyncio._commit_ordered import CommitOrderedDatagramTransport, CommitOrderedSocketTransport
from tm_asyncio._managed import manage_protocol_factory
from tm_asyncio._reading import DatagramTransport, ReadPipeTransport, SocketTransport
from tm_asyncio._rebinding import shared_rebindings
from tm_asyncio import _shared_objects, _shared_primitives, _tasks
from tm_asyncio._transport import NativeStreamTransport, adoptable

_base_loop: Any = _UnixSelectorEventLoop
_READ = 1
_WRITE = 2
# How long stop() waits, at most, for connection strands to settle (parallel mode).
_CLOSE_WAIT = 0.1
# Reactor.post and Reactor.call_at take the strand positionally here: pybind11's keyword handling
# cost as much again as the post itself (docs/BENCHMARKS.md, call_soon).
# The loop whose per-thread state a reactor worker thread holds (EventLoop._as_loop_thread).
_worker_state = threading.local()


@_tasks.shown_as("Handle")
class _PostedHandle(events.Handle):
    """A call_soon handle that is itself what the reactor calls: no wrapper object per callback."""

    __slots__ = ()
    _loop: EventLoop  # Handle's (asyncio's private attribute: typeshed omits it)

    def __call__(self) -> None:
        loop = self._loop
        try:
            if not loop._serial or loop._debug:
                loop._run_handle(self)
            elif not self._cancelled:  # the serial loop's path, kept short: call_soon's cost
                try:
                    self._run()
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: leave run_forever
                    loop._leave_run(exc)
        finally:
            # As Handle._run and asyncio's _run_once do: a frame kept by an exception's traceback
            # (through f_back) must not keep the handle, and so the task or future it ran, alive.
            self = None  # type: ignore[assignment]  # noqa: PLW0642


def _fire_timers(loop_ref: weakref.ref) -> None:
    """The loop's native timer fired (EventLoop._run_timers). A weak reference: the timer's
    callable lives in C++, where the garbage collector cannot see a cycle back to the loop."""
    loop = loop_ref()
    if loop is not None:
        loop._run_timers()


def _run_ready(handle: Any) -> None:  # an events.Handle (typeshed omits its _loop)
    """Runs a handle of the serial loop's ready queue (EventLoop._post), as asyncio's _run_once
    runs one from its _ready deque."""
    try:
        if handle._cancelled:
            return
        loop = handle._loop
        if loop._debug:
            loop._invoke_handle(handle)
            return
        try:
            handle._run()
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: leave run_forever
            loop._leave_run(exc)
    finally:
        handle = None  # see _PostedHandle.__call__


class _UnraisableHook:
    """Hands what escapes a loop callback called from C++ to the loop, as asyncio's loop sees it.

    The reactor reports an exception that escapes a Python callback through sys.unraisablehook.
    The loop's callbacks catch what they can, but a signal's handler runs at the first Python
    frame the reactor enters (Ctrl-C's KeyboardInterrupt, a handler's SystemExit), before any
    try block of that frame: only this hook sees it. KeyboardInterrupt and SystemExit leave
    run_forever(), as from asyncio's select(); any other exception goes to the loop's exception
    handler. Unraisable exceptions of anything else go to the hook that was there before.
    """

    def __init__(self, previous) -> None:
        self.previous = previous

    @classmethod
    def install(cls) -> _UnraisableHook:
        hook = cls(sys.unraisablehook)
        sys.unraisablehook = hook
        return hook

    def uninstall(self) -> None:
        # Only when still in place: a hook installed after this one (another loop's, a test
        # runner's) stays, and calls this one, which passes on what is not a loop's.
        if sys.unraisablehook is self:
            sys.unraisablehook = self.previous

    def __call__(self, unraisable) -> None:
        loop = _owning_loop(unraisable.object)
        if loop is None or loop._core is None or loop._thread_id is None:  # not running
            self.previous(unraisable)
            return
        exc = unraisable.exc_value
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            loop._leave_run(exc)
            return
        loop.call_exception_handler(
            {"message": f"Exception in callback {unraisable.object!r}", "exception": exc}
        )


def _format_handle(handle) -> str:
    """asyncio's base_events._format_handle, which names a task step by its task: also the step of
    a ConnectionTask, asyncio's pure-Python task, which that function does not know."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, (asyncio.Task, _PyTask)):
        return repr(owner)
    return str(handle)


def _owning_loop(callback) -> EventLoop | None:
    """The EventLoop a reactor callback belongs to: its handle's, its method's or its transport's."""
    if isinstance(callback, functools.partial):
        callback = callback.func
    owner = getattr(callback, "__self__", callback)
    if isinstance(owner, EventLoop):
        return owner
    loop = getattr(owner, "_loop", None)
    return loop if isinstance(loop, EventLoop) else None


class EventLoop(_base_loop):
    """An asyncio event loop whose callbacks run as transactions on tm-reactor's C++ reactor.

    ``workers`` defaults to ``TM_WORKERS`` or, unset, to one per core on a free-threaded
    interpreter and one under the GIL (the Twisted reactor's rule). With one worker it behaves as
    asyncio's default loop. With more workers, ``parallel`` (by default: ``TM_ASYNCIO_PARALLEL=1`` or ``0`` if set,
    else true on a free-threaded interpreter) gives each stream connection a strand of its own,
    shared with the tasks started from its callbacks (start_server's handler;
    ``TM_ASYNCIO_TASK_STRANDS=0`` keeps tasks on the loop's strand); otherwise callbacks run on
    the workers one at a time.
    """

    # The loop's own state in slots: asyncio's loop already keeps 24 to 26 attributes in the
    # instance's __dict__, and CPython shares a class's attribute keys among its instances only up
    # to 30 (SHARED_KEYS_MAX_SIZE). Past that the dict is a plain one, and every self.x of
    # asyncio's code and of this loop's (call_soon reads four) takes a slower lookup
    # (docs/BENCHMARKS.md). Two of asyncio's that this class assigns too are slots as well: mypy
    # (typeshed declares neither) requires it of a class with slots.
    __slots__ = (
        "_current_handle",
        "_stopping",
        "_closing_transports",
        "_core",
        "_fatal",
        "_io_pending",
        "_lock",
        "_main_thread_calls",
        "_main_thread_calls_lock",
        "_parallel",
        "_parallel_chosen",
        "_post",
        "_serial",
        "_serial_factories",
        "_strand",
        "_task_steps_lock",
        "_task_steps_queued",
        "_task_strands",
        "_timer_armed_for",
        "_timer_heap",
        "_timer_native",
        "_timer_order",
        "_timers_cancelled",
        "_watcher_strands",
        "_watchers",
        "_workers",
    )

    _current_handle: events.Handle | None  # BaseEventLoop's: the handle running (debug mode)

    if (3, 12) <= sys.version_info < (3, 14):

        def _make_subprocess_transport(self, *args, **kwargs):
            # asyncio 3.12 and 3.13 get the child watcher inside warnings.catch_warnings(), which
            # swaps the process's warning filters: two steps doing so at once on two workers
            # interleave the swaps and can print the DeprecationWarning it silences. The step
            # becomes inevitable first, as the process's start would make it anyway, so such
            # starts run one at a time up to their first await (docs/ASYNCIO.md).
            tm.inevitable()
            return super()._make_subprocess_transport(*args, **kwargs)

    def __init__(
        self, selector=None, *, workers: int | None = None, parallel: bool | None = None
    ) -> None:
        _reactor.abort_injection_from_environment()  # TM_ABORT_INJECTION, for differential tests
        # Unset TM_WORKERS: one worker per core on a free-threaded interpreter, one under the
        # GIL, as for twistd --reactor=tm (tm._reactor.workers_from_environment).
        self._core = _reactor.Reactor(
            _reactor.workers_from_environment() if workers is None else workers
        )
        self._strand = self._core.make_strand()
        self._workers = self._core.workers  # kept: close() drops the reactor
        self._serial = self._workers == 1
        # post(fn) to the loop's strand without a bound method's argument handling: one call per
        # call_soon (docs/BENCHMARKS.md, call_soon). The serial loop queues on the strand's ready
        # queue, asyncio's _ready deque: one Asio handler runs the callbacks ready when it starts,
        # each a transaction of its own, and those they schedule form the next batch, behind the
        # I/O and timers the strand got meanwhile.
        # The queue runs each as _run_ready(handle): _PostedHandle.__call__'s work without the
        # interpreter's lookup of __call__ per callback.
        self._post: Callable[[Any], None] = (
            self._core.ready_queue(self._strand, _run_ready)
            if self._serial
            else self._core.poster(self._strand)
        )
        # Chosen by the program, parallel mode stays on for a server that rebinds shared
        # variables (a warning says so); chosen here, such a server serves serially.
        self._parallel_chosen = parallel is not None or bool(os.environ.get("TM_ASYNCIO_PARALLEL"))
        if parallel is None:
            # TM_ASYNCIO_PARALLEL=1 or 0 decides; unset, parallel where it can pay: the GIL would
            # run the connections' callbacks one at a time anyway (DESIGN.md section 6).
            setting = os.environ.get("TM_ASYNCIO_PARALLEL", "")
            parallel = setting == "1" if setting else not _reactor.gil_enabled()
        self._parallel = parallel and not self._serial
        # Protocol factories of servers whose connections run on the loop's strand: their
        # handlers rebind a variable every connection shares (_serve_serially_if_rebinding).
        self._serial_factories: weakref.WeakSet = weakref.WeakSet()
        # Tasks started on a connection's strand (start_server's handler) run there too, so a
        # task and the transport it drives share a strand; TM_ASYNCIO_TASK_STRANDS=0 keeps every
        # task on the loop's strand (docs/ASYNCIO.md).
        self._task_strands = (
            self._parallel and os.environ.get("TM_ASYNCIO_TASK_STRANDS", "1") != "0"
        )
        if self._task_strands:
            _tasks.install()  # current_task() per thread for tasks on connection strands
        if self._parallel:  # asyncio.Queue, Lock, Event, ... made on it are managed
            _shared_primitives.install(_manages_primitives)
        # Held by every callback but a user protocol's in parallel mode, and by a locked future's
        # changes: the loop's callbacks run one at a time under it.
        self._lock = threading.RLock()
        self._watchers: dict[int, _reactor.FdWatcher] = {}
        # The connection strand of each descriptor registered from one (_watcher).
        self._watcher_strands: dict[int, Any] = {}
        # asyncio's timer heap, of (when, call order, TimerHandle): the order breaks ties, so
        # handles are never compared. One C++ timer on the loop's strand is armed for the
        # earliest (_timer_armed_for; reschedule_earlier); when it fires it takes every timer
        # due, as asyncio's iteration does. A cancelled handle stays until it comes up or, as in
        # asyncio, until cancelled ones are half the heap. The heap and _timer_armed_for belong
        # to the loop's strand: a call_at() from a connection's strand (a handler task's sleep)
        # posts its push there, without a lock per timer (about 0.1 us each on 3.13t). A cancel
        # may come from any strand; _timers_cancelled only decides when to rebuild the heap.
        self._timer_heap: list[tuple[float, int, events.TimerHandle]] = []
        self._timer_order = itertools.count()
        self._timer_armed_for = math.inf
        self._timers_cancelled = 0
        self._timer_native: _reactor.Timer | None = None  # made at the first call_at()
        self._fatal: BaseException | None = None
        self._io_pending: set[tuple[int, int]] = set()
        # Native transports closing whose connection_lost() has not run yet, and the steps of
        # tasks on connection strands queued or running (parallel mode): stop() waits for both.
        self._closing_transports: set[NativeStreamTransport] = set()
        self._task_steps_queued = 0
        self._task_steps_lock = threading.Lock()
        # Work only the main thread may do (installing signal handlers), for run()'s tick.
        self._main_thread_calls: list = []
        self._main_thread_calls_lock = threading.Lock()
        super().__init__(selector)

    @property
    def workers(self) -> int:
        """The number of worker threads callbacks run on."""
        return self._workers

    @property
    def parallel(self) -> bool:
        """Whether stream connections run on strands of their own (see the class docstring)."""
        return self._parallel

    # -- running --------------------------------------------------------------------------------

    def _run_once(self) -> None:
        """Runs the reactor until stop()'s marker (or an exception that must escape) stops it."""
        if self._core.stopped:
            self._core.restart()
        _reactor.immortalize_shared_objects(self._workers)
        _reactor.complete_collections(self._workers)
        wakeup = self._install_wakeup_fd()
        hook = _UnraisableHook.install()
        # With several workers signal.signal() in a callback runs on the main thread, as in asyncio.
        end_routing = route_signal_calls(self._core.in_worker, self._run_on_main_thread)
        try:
            self._core.run(tick=self._run_main_thread_calls)
        finally:
            end_routing()
            hook.uninstall()
            if wakeup is not None:
                signal.set_wakeup_fd(wakeup)
        fatal, self._fatal = self._fatal, None
        if fatal is not None:
            self._stopping = True
            try:
                raise fatal
            finally:
                fatal = None

    def _install_wakeup_fd(self) -> int | None:
        """Lets a signal wake the idle reactor so its Python handler runs (Ctrl-C while idle).

        asyncio's self-pipe is the wakeup descriptor; a signal makes it readable and its reader
        runs Python code, where the interpreter runs the pending handler. Returns the previous
        descriptor to restore, or None when nothing was changed.
        """
        if not self._serial or threading.get_ident() != threading.main_thread().ident:
            return None
        csock = getattr(self, "_csock", None)
        if csock is None:
            return None
        try:
            previous = signal.set_wakeup_fd(csock.fileno())
        except (ValueError, OSError):
            return None
        if previous != -1:
            # Somebody (add_signal_handler, another library) has one: keep theirs.
            signal.set_wakeup_fd(previous)
            return None
        return -1

    # -- signals: Python installs handlers from the main thread only ----------------------------

    def _run_main_thread_calls(self) -> None:
        with self._main_thread_calls_lock:
            calls, self._main_thread_calls = self._main_thread_calls, []
        for call in calls:
            call()

    def _on_main_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the main thread, which runs the reactor's tick while workers run callbacks.

        A coroutine on a worker calling add_signal_handler (asyncio's usual way to handle SIGTERM)
        gets the stock loop's result or exception, as if it had run on the main thread.
        """
        if (
            threading.get_ident() == threading.main_thread().ident
            or not self._core.in_worker()
            or self._thread_id != threading.main_thread().ident
        ):
            return fn(*args)  # here, or where the stock loop would run it (and fail the same way)
        return self._run_on_main_thread(functools.partial(fn, *args))

    def _run_on_main_thread(self, fn: Callable[[], Any]) -> Any:
        """fn() run by the main thread's tick (a worker's call, the loop running there)."""
        return call_on_main_thread(self._post_to_main_thread, fn)

    def _post_to_main_thread(self, call: Callable[[], None]) -> None:
        with self._main_thread_calls_lock:
            self._main_thread_calls.append(call)
        self._core.wake_caller()

    def add_signal_handler(self, sig, callback, *args):
        return self._on_main_thread(super().add_signal_handler, sig, callback, *args)

    def remove_signal_handler(self, sig):
        return self._on_main_thread(super().remove_signal_handler, sig)

    def _check_thread(self) -> None:
        # Debug mode's check: with several workers the loop's callbacks run on worker threads.
        if (
            not self._serial
            and self._thread_id is not None
            and self._core is not None
            and self._core.in_worker()
        ):
            return
        super()._check_thread()

    def stop(self) -> None:
        self._stopping = True
        if self._core is None:  # closed: asyncio's stop() only sets the flag then
            return
        # Behind everything already queued on the loop's strand, as asyncio finishes the
        # iteration under way.
        self._core.post(self._stop_marker, self._strand)

    def _stop_marker(self, deadline: float | None = None) -> None:
        if not self._stopping:
            return
        # asyncio finishes the iteration under way, and runs the connection_lost() of a
        # transport closed with nothing left to send in the iteration that closed it, so before
        # run_until_complete() returns. In parallel mode those run on connection strands, and a
        # native transport sends even a small last write at commit, after the close was asked
        # for: wait, a little, until no task step is queued there and no transport closed by the
        # loop or by a task is still closing.
        now = self.time()
        deadline = now + _CLOSE_WAIT if deadline is None else deadline
        if now < deadline and (self._task_steps_queued or self._closing_transports):
            self._core.call_at(
                now + 0.001, functools.partial(self._stop_marker, deadline), self._strand
            )
            return
        self._core.stop()

    def _run_handle(self, handle: events.Handle) -> None:
        """Runs one handle as asyncio's _run_once would; a reactor callback."""
        try:
            if handle._cancelled:
                return
            if self._serial:
                self._invoke_handle(handle)
                return
            self._run_locked(self._invoke_handle, handle)
        finally:
            handle = None  # type: ignore[assignment]  # see _PostedHandle.__call__

    def _run_locked(self, fn, *args):
        """fn(*args) as a loop thread, under the loop lock, its transaction made inevitable first.

        A task step on a connection strand can become inevitable (at its first shared access) and
        then wait for the loop lock (a locked future's add_done_callback). A callback that held
        the loop lock and only then became inevitable (it opened a socket: the audit hook) would
        wait for that step's token while holding the lock the step waits for: a deadlock, caught
        in the chat example's differential test (accept() on the loop strand against a handler's
        await). Taking the token first gives every holder of the lock one order: token, then lock.
        """
        tm.inevitable()
        try:
            with self._lock:
                return self._as_loop_thread(fn, *args)
        finally:
            fn = args = None  # see _PostedHandle.__call__

    def _as_loop_thread(self, fn, *args):
        """fn(*args) on a worker thread, which gets the loop thread's per-thread state for it.

        run_forever sets the running loop and the async-generator hooks (both per thread) on its
        own thread only: a worker thread needs them too, or async generators first iterated there
        escape shutdown_asyncgens() and are never finalized by the loop. The reactor's workers are
        threads of its own that live for one run and run nothing but this loop's callbacks, so a
        worker gets the state at its first callback and keeps it, as run_forever's thread does.
        """
        restore = self._take_loop_thread_state()
        try:
            return fn(*args)
        finally:
            fn = args = None  # see _PostedHandle.__call__
            if restore is not None:
                restore()

    def _take_loop_thread_state(self):
        """Gives this thread the loop thread's state; returns what undoes it, or None where the
        thread keeps it (a worker of the reactor)."""
        if getattr(_worker_state, "loop", None) is self:
            return None
        if self._core.in_worker():
            _set_running_loop(self)
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
            )
            _worker_state.loop = self
            return None
        previous = _get_running_loop()  # another thread: lend the state for this call
        hooks = sys.get_asyncgen_hooks()
        if previous is not self:
            _set_running_loop(self)
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )

        def restore():
            sys.set_asyncgen_hooks(*hooks)
            if previous is not self:
                _set_running_loop(previous)

        return restore

    def _run_callback(self, fn, args, *, exclusive: bool):
        """fn(*args) for a native transport (parallel mode): under the loop lock if exclusive.

        fn handles its own exceptions as asyncio's transports do; SystemExit and KeyboardInterrupt
        leave run_forever, as from any callback.
        """
        try:
            if not exclusive:
                return self._as_loop_thread(fn, *args)
            return self._run_locked(fn, *args)
        except BaseException as exc:
            self._leave_run(exc)
            return None

    def _leave_run(self, exc: BaseException) -> None:
        """A callback raised what must leave run_forever (SystemExit, KeyboardInterrupt)."""
        if self._fatal is None:
            self._fatal = exc
        self._core.stop()

    def _invoke_handle(self, handle: events.Handle) -> None:
        if handle._cancelled:
            return
        try:
            if self._debug:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    asyncio.log.logger.warning(
                        "Executing %s took %.3f seconds", _format_handle(handle), dt
                    )
            else:
                handle._run()
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: they leave run_forever
            self._leave_run(exc)
        finally:
            self._current_handle = None
            handle = None  # type: ignore[assignment]  # see _PostedHandle.__call__

    # -- scheduling -----------------------------------------------------------------------------

    def call_soon(self, callback, *args, context=None):
        # asyncio's call_soon with its _call_soon below inlined: a frame less per callback.
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        handle = _PostedHandle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        if self._task_strands:
            self._post_handle(handle, callback)
        else:  # the common case without a frame in between: call_soon's cost (docs/BENCHMARKS.md)
            self._post(handle)
        return handle

    def _call_soon(self, callback, args, context):
        handle = _PostedHandle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        if self._task_strands:
            self._post_handle(handle, callback)
        else:
            self._post(handle)
        return handle

    def _post_handle(self, handle, callback) -> None:
        """Queues handle on the loop's strand, or on its task's connection strand."""
        if self._task_strands:
            task = getattr(callback, "__self__", None)
            strand = getattr(task, "_tm_strand", None)
            locked = getattr(task, "_tm_locked", False)
            caller = _tasks.connection_strand()
            if strand is None and caller is not None:
                strand = self._adopt_task(task, callback)
                locked = True  # an adopted task's steps take the loop lock (_adopt_task)
                if strand is None and not isinstance(task, asyncio.Future):
                    # Anything but a task's step or wakeup, called from a connection's strand,
                    # stays there, under the loop lock: it must run in order with what that
                    # strand queues next, as in asyncio's one FIFO. base_subprocess's
                    # _connect_pipes (a handler's create_subprocess_exec) queues the protocol's
                    # connection_made and then wakes its creator, which reads proc.stdin and
                    # proc.stdout; on the loop's strand connection_made came after the wakeup
                    # and the Process kept None for both.
                    strand = caller
            if strand is not None:  # a step or wakeup of a task on a connection's strand
                with self._task_steps_lock:
                    self._task_steps_queued += 1
                self._core.post(
                    functools.partial(self._run_task_handle, handle, strand, locked), strand
                )
                return
        self._post(handle)

    def _adopt_task(self, task, callback):
        """The connection strand for the first step of a task made on it by other means than
        create_task (``asyncio.Task(coro, loop=loop)`` in a protocol's connection_made, as web
        servers do; a task factory's task), or None when callback is no such step.

        The task then runs on the strand of the connection that made it, in order with that
        connection's callbacks, as create_task's tasks do. Unlike theirs, its steps take the loop
        lock: it is asyncio's C task (or another task class), which keeps one current task per
        loop and refuses to enter a second at once (RuntimeError: Cannot enter into task ...).
        """
        if not isinstance(task, (asyncio.Task, _PyTask)) or task.get_loop() is not self:
            return None
        # Only a step: a wakeup (task_wakeup) of a loop-strand task that a connection's callback
        # woke stays where its task runs. A task's own steps after the first run where it runs,
        # so a step scheduled from a connection strand by a task without one is a first step.
        if type(callback).__name__ != "TaskStepMethWrapper" and (
            getattr(callback, "__func__", None) is not _PY_TASK_STEP
        ):
            return None
        strand = task._tm_strand = _tasks.connection_strand()
        task._tm_locked = True
        return strand

    def _run_task_handle(self, handle: events.Handle, strand, locked: bool) -> None:
        """A step of a task on a connection's strand: a ConnectionTask's without the loop lock,
        another task's (_adopt_task) under it."""
        try:
            if not handle._cancelled:
                with _tasks.on_strand(strand, locked):
                    if locked:
                        self._run_locked(self._invoke_handle, handle)
                    else:
                        self._as_loop_thread(self._invoke_handle, handle)
        finally:
            with self._task_steps_lock:
                self._task_steps_queued -= 1

    def is_running(self) -> bool:
        # asyncio's tasks made with eager_start (asyncio.Task(..., eager_start=True) in a
        # protocol's connection_made, as web servers do on 3.12+; eager_task_factory) run their
        # first step inside the constructor if the loop says it is running, and asyncio's C task
        # then swaps the loop's one current task, while a task on the loop's strand may be
        # running: "Cannot enter into task ... while another task ... is being executed", and a
        # server that hangs. So on a connection's strand the loop says it is not running (the
        # one place it says so), and such a task schedules its first step instead, which
        # _adopt_task keeps on this strand. Also under the loop lock (a step of such a task
        # making another, as aiohttp's request handlers are made), where running eagerly would
        # be safe: the task would never join the strand, its later steps running on the loop's
        # while what its first step registered (sock_connect's writer) stayed here.
        if (
            self._task_strands
            and _tasks.connection_strand() is not None
            and self._core is not None
            and self._core.in_worker()
        ):
            return False
        return super().is_running()

    def create_task(self, coro, **kwargs):
        if self._task_factory is not None or not self._task_strands:
            task = super().create_task(coro, **kwargs)
            # Debug mode's "created at" names the caller of create_task, as asyncio's: not this
            # frame (asyncio drops its own).
            traceback = getattr(task, "_source_traceback", None)
            if (
                traceback
                and traceback[-1].name == "create_task"
                and traceback[-1].filename == __file__
            ):
                del traceback[-1]
            try:
                return task
            finally:
                # As asyncio's create_task (gh-128552): an eager first step's exception keeps
                # this frame in its traceback, which must not keep the task.
                del task
        strand = _tasks.connection_strand()
        self._check_closed()
        name = kwargs.pop("name", None)
        locked = strand is not None and _tasks.in_locked_step()
        with self._lock:  # task registration is not safe from two threads before 3.14
            if strand is not None:
                task = _tasks.ConnectionTask(
                    coro, loop=self, strand=strand, locked=locked, **kwargs
                )
            else:
                task = _tasks.LoopTask(coro, loop=self, **kwargs)
        if name is not None:
            task.set_name(name)
        if task._source_traceback:
            del task._source_traceback[-1]
        try:
            return task
        finally:
            del task  # as above

    def _add_callback(self, handle) -> None:
        # asyncio's signal handling queues its handles here (the _ready deque, never drained).
        if handle._cancelled:
            return
        if self._serial:  # the ready queue runs handles (_run_ready)
            self._post(handle)
        else:
            self._post(functools.partial(self._run_handle, handle))

    def call_soon_threadsafe(self, callback, *args, context=None):
        """Like call_soon(), but thread-safe: the C++ reactor wakes itself, no self-pipe write."""
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = _PostedHandle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._post_handle(handle, callback)
        return handle

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = events.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        timer._scheduled = True
        if self._strand.is_current() or (self._thread_id is None and not tm.in_transaction()):
            self._push_timer(timer, when)  # on the loop's strand, or the loop is not running
        else:
            # From a connection's strand or another thread, or a tm.atomic block outside the
            # loop (which an exception abandons): the handle joins the heap on the loop's strand
            # after the commit, as a timer is armed (docs/GUARANTEES.md), and not if the
            # transaction is abandoned; the loop's timer could otherwise run it while the
            # transaction still runs.
            self._core.post(functools.partial(self._push_timer, timer, when), self._strand)
        return timer

    def _push_timer(self, timer: events.TimerHandle, when: float) -> None:
        if timer._cancelled:  # cancelled while its push was posted: counted, never in the heap
            self._timers_cancelled = max(self._timers_cancelled - 1, 0)
            return
        heapq.heappush(self._timer_heap, (when, next(self._timer_order), timer))
        if when < self._timer_armed_for:
            self._timer_armed_for = when
            native = self._timer_native  # _arm_timers(when) without its frame, once there is one
            if native is None:
                self._arm_timers(when)
            else:
                native.reschedule_earlier(when)

    def _arm_timers(self, when: float) -> None:
        """Arms the loop's native timer for when, unless it is armed for that or sooner."""
        native = self._timer_native
        if native is None:
            self._timer_native = self._core.call_at(
                when, functools.partial(_fire_timers, weakref.ref(self)), self._strand
            )
        else:
            native.reschedule_earlier(when)

    def _run_timers(self) -> None:
        """The native timer fired: every timer due by now runs, in the order of their deadlines,
        before anything they schedule (asyncio's _run_once). The serial loop queues them on its
        ready queue instead, behind the callbacks already ready: asyncio's iteration runs those
        first, and a timer armed after call_soon() must not overtake it because its deadline
        passed before the ready queue's next batch came up."""
        end = self.time() + self._clock_resolution
        due = []
        heap = self._timer_heap
        while heap:
            when, _, timer = heap[0]
            if timer._cancelled:
                self._timers_cancelled = max(self._timers_cancelled - 1, 0)
            elif when >= end:
                break
            else:
                due.append(timer)
            heapq.heappop(heap)
        next_when = heap[0][0] if heap else math.inf
        self._timer_armed_for = next_when
        if next_when != math.inf:
            self._arm_timers(next_when)
        try:
            if self._serial and len(due) == 1 and _reactor.ready_queue_idle(self._post):
                # Nothing ready waits: asyncio would run the timer now, and so does this event,
                # as the ready queue would run it.
                due[0]._scheduled = False  # type: ignore[attr-defined]  # asyncio's, private
                _run_ready(due[0])
                return
            for timer in due:
                timer._scheduled = False  # type: ignore[attr-defined]  # asyncio's, private
                if self._serial:
                    self._post(timer)  # _run_ready skips it if cancelled meanwhile
                else:
                    self._run_handle(timer)
        finally:
            due = timer = None  # type: ignore[assignment]  # see _PostedHandle.__call__

    def _timer_handle_cancelled(self, handle) -> None:
        # TimerHandle.cancel() calls this before it marks handle cancelled.
        if not handle._scheduled:  # it ran already, as asyncio's own check
            return
        # From another strand an update may be lost: the count only decides when to drop.
        cancelled = self._timers_cancelled = self._timers_cancelled + 1
        if cancelled > 64 and 2 * cancelled > len(self._timer_heap):
            if self._strand.is_current():
                self._drop_cancelled_timers(handle)
            elif cancelled % 64 == 0:  # the heap is the loop strand's: a post, not one a cancel
                self._core.post(self._drop_cancelled_timers, self._strand)

    def _drop_cancelled_timers(self, cancelling: events.TimerHandle | None = None) -> None:
        """On the loop's strand: drops the cancelled handles (and cancelling, which is being
        cancelled) from the heap once they are half of it, as asyncio does."""
        heap = self._timer_heap
        if self._timers_cancelled > 64 and 2 * self._timers_cancelled > len(heap):
            heap[:] = [e for e in heap if not (e[2]._cancelled or e[2] is cancelling)]
            heapq.heapify(heap)
            self._timers_cancelled = 0

    def time(self) -> float:
        return _reactor.monotonic()

    # -- descriptors ----------------------------------------------------------------------------

    def _watcher(self, fd: int) -> _reactor.FdWatcher:
        """fd's watcher, made on the strand of the callback that registers fd.

        A descriptor registered from a connection's strand (a handler task's subprocess pipes,
        its pidfd, a sock_* call) belongs to what that task reads: its callbacks run on the same
        strand, one at a time with the task's steps, as in asyncio's one thread. On the loop's
        strand, the pipes' data_received fed the StreamReader the task read at the same moment.
        """
        watcher = self._watchers.get(fd)
        if watcher is None:
            strand = _tasks.connection_strand() if self._task_strands else None
            watcher = self._core.watch_fd(fd, strand=self._strand if strand is None else strand)
            self._watchers[fd] = watcher
            if strand is not None:
                self._watcher_strands[fd] = strand
        return watcher

    def _sync_watcher(self, fd: int) -> None:
        """Makes fd's watcher match asyncio's selector registration of fd."""
        key = None
        if self._selector is not None:
            key = self._selector.get_map().get(fd)
        reader, writer = key.data if key is not None else (None, None)
        watcher = self._watchers.get(fd)
        if reader is None and writer is None:
            if watcher is not None:
                del self._watchers[fd]
                self._watcher_strands.pop(fd, None)
                watcher.release()
            return
        watcher = self._watcher(fd)
        # The serial loop runs the handle from the watcher's event itself (_io_ready); otherwise
        # the event queues it on the watcher's strand (_fd_ready).
        if self._serial:
            on_read = functools.partial(self._io_ready, fd, _READ)
            on_write = functools.partial(self._io_ready, fd, _WRITE)
        else:
            strand = self._watcher_strands.get(fd)
            on_read = functools.partial(self._fd_ready, fd, _READ, strand)
            on_write = functools.partial(self._fd_ready, fd, _WRITE, strand)
        if reader is not None and not watcher.has_reader:
            watcher.add_reader(on_read)
        elif reader is None and watcher.has_reader:
            watcher.remove_reader()
        if writer is not None and not watcher.has_writer:
            watcher.add_writer(on_write)
        elif writer is None and watcher.has_writer:
            watcher.remove_writer()

    def _io_ready(self, fd: int, event: int) -> None:
        """The serial loop's watcher event: runs fd's handle in this event, as asyncio's iteration
        runs the handles its poll found.

        With one worker the watcher's events are queued on the loop's strand, which is the one
        thread's FIFO, when the reactor sees the descriptor ready: behind the callbacks queued
        before, as asyncio runs the callbacks ready before a poll ahead of the I/O callbacks that
        poll found. Queuing the handle once more (_fd_ready) kept that order too, but cost a
        second transaction per event, and the watcher, polling again before the queued handle had
        read, fired a second time: one more transaction and a read that found nothing.
        """
        if self._stopping:
            # After stop() the readiness waits for the next run: the watcher is level-triggered.
            return
        selector = self._selector
        if selector is None:
            return
        try:  # the selectors module's own map: get_map().get(fd) costs three more calls
            key = selector._fd_to_key.get(fd)
        except AttributeError:  # a selector of another kind
            key = selector.get_map().get(fd)
        if key is None:
            return
        handle = key.data[event - 1]  # (reader, writer): _READ is 1, _WRITE is 2
        if handle is None:
            return
        try:
            if handle._cancelled:
                if event == _READ:
                    self._remove_reader(fd)
                else:
                    self._remove_writer(fd)
            elif self._debug:
                self._invoke_handle(handle)
            else:
                try:
                    handle._run()
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: leave run_forever
                    self._leave_run(exc)
        finally:
            handle = None  # see _PostedHandle.__call__

    def _fd_ready(self, fd: int, event: int, strand=None) -> None:
        """The watcher saw fd ready: queue its handle behind the callbacks already queued.

        asyncio runs the callbacks that were ready before a poll ahead of the I/O callbacks that
        poll found; posting the I/O callback to the watcher's strand (the loop's, or the
        connection's that registered fd) keeps that order. The watcher is level-triggered, so one
        queued run per descriptor and direction is enough.
        """
        key = (fd, event)
        if key in self._io_pending:
            return
        self._io_pending.add(key)
        if strand is None:
            self._post(functools.partial(self._run_io, fd, event))
            return
        with self._task_steps_lock:  # stop() waits for it, as for a task step there
            self._task_steps_queued += 1
        self._core.post(functools.partial(self._run_io_on, strand, fd, event), strand)

    def _run_io_on(self, strand, fd: int, event: int) -> None:
        """_run_io on a connection's strand: what its handle queues stays there (_post_handle)."""
        try:
            with _tasks.on_strand(strand):
                self._run_io(fd, event)
        finally:
            with self._task_steps_lock:
                self._task_steps_queued -= 1

    def _run_io(self, fd: int, event: int) -> None:
        self._io_pending.discard((fd, event))
        if self._selector is None or self._stopping:
            # After stop() the readiness waits for the next run: the watcher is level-triggered.
            return
        key = self._selector.get_map().get(fd)
        if key is None:
            return
        handle = key.data[0] if event == _READ else key.data[1]
        if handle is None:
            return
        if handle._cancelled:
            if event == _READ:
                self._remove_reader(fd)
            else:
                self._remove_writer(fd)
            return
        try:
            self._run_handle(handle)
        finally:
            handle = None  # see _PostedHandle.__call__

    @staticmethod
    def _fd_of(fd) -> int:
        return selectors._fileobj_to_fd(fd)  # type: ignore[attr-defined]  # selectors' private

    def _add_reader(self, fd, callback, *args):
        with self._lock:  # connection strands call it too (a handler's sock_* call, sendfile)
            handle = super()._add_reader(fd, callback, *args)
            self._sync_watcher(self._fd_of(fd))
            return handle

    def _remove_reader(self, fd):
        with self._lock:
            removed = super()._remove_reader(fd)
            if not self.is_closed():
                self._sync_watcher(self._fd_of(fd))
            return removed

    def _add_writer(self, fd, callback, *args):
        with self._lock:  # connection strands call it too (a handler's sock_* call, sendfile)
            handle = super()._add_writer(fd, callback, *args)
            self._sync_watcher(self._fd_of(fd))
            return handle

    def _remove_writer(self, fd):
        with self._lock:
            removed = super()._remove_writer(fd)
            if not self.is_closed():
                self._sync_watcher(self._fd_of(fd))
            return removed

    def _process_events(self, event_list) -> None:
        raise NotImplementedError("tm_asyncio.EventLoop never polls its selector")

    # -- parallel mode: native stream transports and futures several strands may share ----------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        # Connections a server accepts get a strand of their own: that is where the parallelism
        # is. A connection made from a connection's strand (a handler task opening a backend
        # connection) joins that strand: the task and both its transports then share one, and
        # the task's reads and writes need no lock against the loop's strand. Any other client
        # connection (create_connection, connect_accepted_socket from the loop's strand) keeps
        # asyncio's transport: its reads stay in order with the loop's own callbacks, as code
        # around run_until_complete(...) expects (test_events' test_connect_accepted_socket hung
        # in some runs when its reply and its end came on a strand of their own).
        if not self._parallel:  # asyncio's transport, receiving into the thread's buffer
            return SocketTransport(self, sock, protocol, waiter, extra, server)
        if adoptable(sock):
            if server is not None and not self._serves_serially(server):
                return NativeStreamTransport(self, sock, protocol, waiter, extra, server)
            strand = _tasks.connection_strand()
            if strand is not None:
                return NativeStreamTransport(
                    self,
                    sock,
                    protocol,
                    waiter,
                    extra,
                    strand=strand,
                    locked=_tasks.in_locked_step(),
                )
        # asyncio's transport, but what a transaction writes leaves at its commit
        return CommitOrderedSocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if self._parallel:  # asyncio's, what a transaction sends leaving at its commit
            return CommitOrderedDatagramTransport(self, sock, protocol, address, waiter, extra)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=SSL_SHUTDOWN_TIMEOUT,
    ):
        if not self._parallel:
            return super()._make_ssl_transport(
                rawsock,
                protocol,
                sslcontext,
                waiter,
                server_side=server_side,
                server_hostname=server_hostname,
                extra=extra,
                server=server,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        # asyncio's own, but the raw socket's transport comes from _make_socket_transport (asyncio
        # names its selector transport here): TLS runs over the same transports as plain TCP, a
        # server's connections and a handler's backend connections native on their strands.
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _sendfile_native(self, transp, file, offset, count):
        if isinstance(transp, NativeStreamTransport):
            return await transp._sendfile(file, offset, count)
        return await super()._sendfile_native(transp, file, offset, count)

    def create_future(self):
        if self._parallel:
            return _tasks.LockedFuture(loop=self)
        if self._debug:  # asyncio's own, so that a future's "created at" names asyncio's line
            return super().create_future()
        return asyncio.Future(loop=self)  # what asyncio's create_future() makes, without its frame

    # -- closing --------------------------------------------------------------------------------

    # -- Managed protocol factories (docs/MANAGED_STATE.md) -------------------------------------

    async def create_server(self, protocol_factory, *args, **kwargs):
        protocol_factory = manage_protocol_factory(protocol_factory)
        self._serve_serially_if_rebinding(protocol_factory)
        return await super().create_server(protocol_factory, *args, **kwargs)

    async def create_connection(self, protocol_factory, *args, **kwargs):
        return await super().create_connection(
            manage_protocol_factory(protocol_factory), *args, **kwargs
        )

    async def create_unix_server(self, protocol_factory, *args, **kwargs):
        protocol_factory = manage_protocol_factory(protocol_factory)
        self._serve_serially_if_rebinding(protocol_factory)
        return await super().create_unix_server(protocol_factory, *args, **kwargs)

    async def create_unix_connection(self, protocol_factory, *args, **kwargs):
        return await super().create_unix_connection(
            manage_protocol_factory(protocol_factory), *args, **kwargs
        )

    async def connect_accepted_socket(self, protocol_factory, *args, **kwargs):
        return await super().connect_accepted_socket(
            manage_protocol_factory(protocol_factory), *args, **kwargs
        )

    # -- Servers whose handlers rebind shared variables (tm_asyncio._rebinding) -----------------

    def _serve_serially_if_rebinding(self, protocol_factory) -> None:
        """In parallel mode, a server whose handlers rebind a module global or a variable of an
        enclosing function, which every connection shares, would lose updates (``hits += 1`` from
        two connections at once), and so would one whose handlers change a module global in place
        and read it (a set of connections added to and iterated): unless the program chose
        parallel mode itself, its connections run on the loop's strand, one callback at a time, as
        asyncio runs them. Either way a RuntimeWarning names what is changed and where."""
        if not self._parallel or _shared_objects.makes_locked_protocols(protocol_factory):
            return
        rebound = shared_rebindings(protocol_factory)
        if not rebound:
            return
        what = (
            f"tm_asyncio: the handlers of {protocol_factory!r} rebind or change "
            f"{', '.join(rebound)}, which every connection shares"
        )
        serial = not self._parallel_chosen
        if serial:
            try:
                self._serial_factories.add(protocol_factory)
            except TypeError:  # a callable without weak references: left in parallel mode
                serial = False
        if serial:
            consequence = (
                ": its connections run one callback at a time on the loop's strand, as on "
                "asyncio's loop, not in parallel (keep it in a tm type, docs/MANAGED_STATE.md; "
                "TM_ASYNCIO_PARALLEL=1 runs them in parallel anyway)"
            )
        else:
            consequence = (
                "; in parallel mode concurrent connections can lose updates to it (keep it in a "
                "tm type, docs/MANAGED_STATE.md)"
            )
        warnings.warn(what + consequence, RuntimeWarning, stacklevel=3)

    def _serves_serially(self, server) -> bool:
        return bool(self._serial_factories) and server._protocol_factory in self._serial_factories

    def close(self) -> None:
        if self._thread_id is not None:  # running (is_running() may say otherwise: above)
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        super().close()
        self._timer_heap = []
        self._timer_armed_for = math.inf
        self._timers_cancelled = 0
        native, self._timer_native = self._timer_native, None
        if native is not None:
            native.cancel()
        for watcher in list(self._watchers.values()):
            watcher.release()
        self._watchers.clear()
        self._watcher_strands.clear()
        # Callbacks still queued in the reactor (call_soon after stop(), a watcher's release) hold
        # the loop, and the loop holds the reactor: a cycle through C++ that the garbage collector
        # cannot see. asyncio's close() drops its ready queue; dropping the reactor does the same.
        self._core = self._strand = self._post = None  # type: ignore[assignment]


def _manages_primitives(loop) -> bool:
    """Whether asyncio's synchronization primitives made on loop are managed: in parallel mode
    (tm_asyncio._shared_primitives)."""
    return isinstance(loop, EventLoop) and loop._parallel
