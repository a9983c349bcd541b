"""Tasks and futures that several strands share (parallel mode, docs/ASYNCIO.md).

A task created from a callback that runs on a native connection's strand (the handler task that
``start_server`` starts in ``connection_made``, a task a protocol starts, a task such a task
starts) is a ``ConnectionTask``: its steps and wakeups are posted to that strand and run without
the loop lock, so the handlers of different connections run in parallel, and a task runs in order
with its own transport's callbacks. Every other task stays on the loop's strand, under the lock.

Two things asyncio keeps per loop have to become per thread for that, because two steps of one
loop now run at once: the current task (asyncio's C tasks keep one per loop and refuse a second
one, so a ConnectionTask is asyncio's pure-Python task, whose ``_enter_task``/``_leave_task`` are
module globals replaced here for it alone; ``current_task()`` looks at this thread first), and the
done-callback lists of futures, which are not safe to change from two threads before Python 3.14
(every change, and the run of the callbacks, takes the loop lock).
"""

from __future__ import annotations

import asyncio
import threading
from asyncio import tasks

import tm
from tm_asyncio._compat import _PyTask, set_task_hooks, task_hooks

# .strand: the connection strand running here; .locked: whether what runs holds the loop lock
# for what it shares with other strands (in_locked_step); .held: the loop lock when the step took
# it on its way (lock_rest_of_step), to release when it ends; .task: its task
_local = threading.local()


def connection_strand():
    """The strand of the native connection whose callback or task step runs on this thread."""
    return getattr(_local, "strand", None)


def in_locked_step() -> bool:
    """Whether this thread runs, on a connection's strand, a step of a task that holds the loop
    lock (a task a protocol made itself: an aiohttp handler) or a callback of a connection such a
    step made. What it makes (tasks, connections) holds the lock too: it shares what the step
    shares with the other locked steps (aiohttp's client session and its pooled connections)."""
    return getattr(_local, "locked", False)


def running_connection_task() -> bool:
    """Whether this thread is running a step of a ConnectionTask."""
    return getattr(_local, "task", None) is not None


def lock_rest_of_step(lock) -> None:
    """Makes what is left of the unlocked step running here on a connection's strand a locked
    one: it takes `lock` (the loop lock) until the step ends, and what it makes from now on is
    locked too (in_locked_step). For a callback that hands its connection to a protocol that
    runs locked (tm_asyncio._shared_objects) and goes on to feed it: uvicorn's HTTP protocol
    switches to its WebSocket protocol and passes it the upgrade request, whose handling starts
    the WebSocket's handler task. The lock is taken inevitable first, in the order every holder
    of the loop lock takes the two (EventLoop._run_locked)."""
    if getattr(_local, "strand", None) is None or getattr(_local, "locked", False):
        return
    tm.inevitable()
    lock.acquire()
    _local.held = lock
    _local.locked = True


class on_strand:
    """Marks this thread as running a callback of `strand` (None: of the loop's strand), a locked
    one if `locked` (in_locked_step)."""

    __slots__ = ("strand", "locked", "previous")

    def __init__(self, strand, locked: bool = False) -> None:
        self.strand = strand
        self.locked = locked

    def __enter__(self) -> None:
        self.previous = (
            getattr(_local, "strand", None),
            getattr(_local, "locked", False),
            getattr(_local, "held", None),
        )
        _local.strand = self.strand
        _local.locked = self.locked
        _local.held = None

    def __exit__(self, *exc) -> None:
        held = _local.held
        _local.strand, _local.locked, _local.held = self.previous
        if held is not None:
            held.release()


def shown_as(name: str):
    """Gives a class asyncio's name for what it is, for reprs and messages: debug mode's
    "Executing <Task ...> took 0.2 seconds", "Task was destroyed but it is pending!", a
    future's "cb=[Task.task_wakeup()]" all print the class's name, and a program's output
    should not change with the loop. ``type(obj)`` still shows this module."""

    def rename(cls):
        cls.__name__ = cls.__qualname__ = name
        return cls

    return rename


class _LockedDoneCallbacks:
    """Done-callback changes and their run under the loop lock (mixed into a future class)."""

    def add_done_callback(self, fn, *, context=None):
        with self.get_loop()._lock:
            return super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn):
        with self.get_loop()._lock:
            return super().remove_done_callback(fn)

    def cancel(self, msg=None):
        with self.get_loop()._lock:
            return super().cancel(msg)


@shown_as("Future")
class LockedFuture(_LockedDoneCallbacks, asyncio.Future):
    """loop.create_future() in parallel mode: a user protocol's callback (on its connection's
    strand, without the loop lock) may complete it while a task on another strand awaits it.
    Awaiting goes through add_done_callback too (a subclass, not asyncio's exact type)."""

    def set_result(self, result):
        with self.get_loop()._lock:
            return super().set_result(result)

    def set_exception(self, exception):
        with self.get_loop()._lock:
            return super().set_exception(exception)


@shown_as("Task")
class ConnectionTask(_LockedDoneCallbacks, _PyTask):
    """A task whose steps run on a connection's strand, without the loop lock unless it was made
    by a step that held it."""

    def __init__(self, coro, *, loop, strand, locked=False, **kwargs) -> None:
        # Before __init__ schedules the first step (the loop routes it): where its steps run,
        # and whether they hold the loop lock there.
        self._tm_strand = strand
        self._tm_locked = locked
        super().__init__(coro, loop=loop, **kwargs)

    def _Future__schedule_callbacks(self):  # asyncio's Future.__schedule_callbacks
        with self._loop._lock:
            return super()._Future__schedule_callbacks()


@shown_as("Task")
class LoopTask(_LockedDoneCallbacks, asyncio.Task):
    """A task on the loop's strand (asyncio's C task) that a ConnectionTask may await: the
    awaiting adds its done callback from another thread, so that takes the loop lock."""


# -- the current task, per thread for ConnectionTasks -----------------------------------------

_c_enter_task, _c_leave_task = task_hooks()
_c_current_task = tasks.current_task


def _enter_task(loop, task):
    if not isinstance(task, ConnectionTask):
        return _c_enter_task(loop, task)
    current = getattr(_local, "task", None)
    if current is not None:
        raise RuntimeError(
            f"Cannot enter into task {task!r} while another task {current!r} is being executed."
        )
    _local.task = task


def _leave_task(loop, task):
    if not isinstance(task, ConnectionTask):
        return _c_leave_task(loop, task)
    current = getattr(_local, "task", None)
    if current is not task:
        raise RuntimeError(f"Leaving task {task!r} does not match the current task {current!r}.")
    _local.task = None


def current_task(loop=None):
    """asyncio.current_task(), which also knows the ConnectionTask running on this thread."""
    task = getattr(_local, "task", None)
    if task is not None and (loop is None or task._loop is loop):
        return task
    return _c_current_task(loop)


def install() -> None:
    """Replaces asyncio's current-task functions (once; other loops' tasks are unaffected)."""
    if task_hooks()[0] is _enter_task:
        return
    set_task_hooks(_enter_task, _leave_task)
    tasks.current_task = asyncio.current_task = current_task


__all__ = [
    "ConnectionTask",
    "LockedFuture",
    "LoopTask",
    "connection_strand",
    "in_locked_step",
    "lock_rest_of_step",
    "running_connection_task",
    "install",
    "on_strand",
    "shown_as",
]
