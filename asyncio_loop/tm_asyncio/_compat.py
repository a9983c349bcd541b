"""The private names of asyncio that tm_asyncio depends on, in one place.

asyncio promises nothing about these. The other modules of tm_asyncio import asyncio's private
module-level names (and the names of its modules that are not part of the ``asyncio`` namespace)
from here only, so a Python upgrade has one file to check: each name below, and the private
attributes and hooks listed at the end (which cannot be imported: they are attributes of asyncio's
classes that tm_asyncio's subclasses override or read). Written against CPython 3.11 and 3.13
(the GIL and free-threaded interpreters the project tests); each name exists in 3.11 to 3.14.

For the type checker (mypy, scripts/lint.sh) the private names are ``Any``: typeshed declares few
of them, and none of the private attributes that tm_asyncio's subclasses read and override (the
list at the end), so typed they would only report what this module already documents. The public
names (SSLProtocol, TransportSocket, the timeouts) keep their types.
"""

from __future__ import annotations

from typing import Any

from asyncio import (
    base_events,
    constants,
    events,
    futures,
    selector_events,
    sslproto,
    tasks,
    transports,
    trsock,
    unix_events,
)

# -- asyncio.unix_events --------------------------------------------------------------------------

# The base class of tm_asyncio's EventLoop: the Unix loop (signals, subprocesses, Unix sockets,
# sendfile) whose selector-based I/O EventLoop replaces with the reactor's (3.4+).
_UnixSelectorEventLoop: Any = unix_events._UnixSelectorEventLoop
# The transport of connect_read_pipe() (a subprocess's stdout and stderr), whose read
# tm_asyncio._reading replaces (3.4+).
_UnixReadPipeTransport: Any = unix_events._UnixReadPipeTransport  # type: ignore[attr-defined]

# -- asyncio.events -------------------------------------------------------------------------------

# The per-thread running loop, given to a reactor worker thread that runs the loop's callbacks
# (EventLoop._take_loop_thread_state); also exported as asyncio._get/_set_running_loop (3.7+).
_get_running_loop: Any = events._get_running_loop
_set_running_loop: Any = events._set_running_loop

# -- asyncio.tasks --------------------------------------------------------------------------------

# asyncio's pure-Python task, the base of ConnectionTask (its steps run on a connection's strand,
# which the C task cannot be told about) and a task type the loop recognizes beside asyncio.Task
# (3.4+).
_PyTask: Any = tasks._PyTask  # type: ignore[attr-defined]
# The pure-Python task's step (the name-mangled Task.__step), which a task scheduling its first
# step calls: the loop recognizes it to route the step to the task's strand (3.4+).
_PY_TASK_STEP: Any = tasks._PyTask._Task__step  # type: ignore[attr-defined]


def task_hooks() -> tuple:
    """asyncio.tasks._enter_task and _leave_task as they are now (3.7+): the pure-Python task's
    step calls them by their module-level names."""
    return tasks._enter_task, tasks._leave_task


def set_task_hooks(enter_task, leave_task) -> None:
    """Replaces asyncio.tasks._enter_task and _leave_task, so that the current task is known per
    thread for ConnectionTasks (tm_asyncio._tasks.install)."""
    tasks._enter_task, tasks._leave_task = enter_task, leave_task


# -- asyncio.futures ------------------------------------------------------------------------------

# Wakes create_connection's waiter once connection_made() has run, as asyncio's transports do
# (3.4+).
_set_result_unless_cancelled: Any = futures._set_result_unless_cancelled  # type: ignore[attr-defined]

# -- asyncio.base_events --------------------------------------------------------------------------

# TCP_NODELAY on a new connection's socket, as asyncio's socket transports set it (3.7+).
_set_nodelay: Any = base_events._set_nodelay  # type: ignore[attr-defined]

# -- asyncio.constants ----------------------------------------------------------------------------

# A native transport's _sendfile_compatible: loop.sendfile may use os.sendfile on its socket (3.7+).
_SendfileMode: Any = constants._SendfileMode
# The defaults of create_connection's and create_server's TLS timeouts (3.11+).
SSL_HANDSHAKE_TIMEOUT = constants.SSL_HANDSHAKE_TIMEOUT
SSL_SHUTDOWN_TIMEOUT = constants.SSL_SHUTDOWN_TIMEOUT

# -- asyncio.transports ---------------------------------------------------------------------------

# Base of the native stream transport: write-buffer limits and the protocol's pause/resume
# calls, as asyncio's own transports have them (3.4+).
_FlowControlMixin: Any = transports._FlowControlMixin

# -- asyncio.selector_events ----------------------------------------------------------------------

# Bases of tm_asyncio's socket and datagram transports (tm_asyncio._reading: their reads;
# tm_asyncio._commit_ordered: writes held until the writing transaction commits) (3.4+).
_SelectorSocketTransport: Any = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
_SelectorDatagramTransport: Any = selector_events._SelectorDatagramTransport  # type: ignore[attr-defined]

# -- asyncio.sslproto -----------------------------------------------------------------------------

# TLS over a transport, as _make_ssl_transport builds it; its constructor takes
# ssl_shutdown_timeout from 3.11.
SSLProtocol = sslproto.SSLProtocol

# -- asyncio.trsock -------------------------------------------------------------------------------

# The socket a transport's get_extra_info("socket") returns: a restricted view, as asyncio's
# transports return it (3.8+).
TransportSocket = trsock.TransportSocket


# -- Private attributes and hooks of asyncio's classes --------------------------------------------
#
# Overridden or read by tm_asyncio's subclasses; check that each still exists and means the same.
#
# BaseEventLoop / _UnixSelectorEventLoop (EventLoop, tm_asyncio._loop):
#   _run_once, _process_events     overridden: the reactor runs the ready events.
#   _call_soon, _add_callback, _timer_handle_cancelled
#                                  overridden: callbacks and timers are posted to the reactor.
#   _add_reader, _remove_reader, _add_writer, _remove_writer
#                                  overridden: one reactor FdWatcher per descriptor.
#   _make_socket_transport, _make_datagram_transport, _make_ssl_transport,
#   _make_read_pipe_transport      overridden: native, reading and commit-ordered transports.
#   _check_thread                  overridden: a reactor worker thread may call the loop.
#   _make_subprocess_transport     wrapped (3.12, 3.13): its start, which swaps the warning
#                                  filters, one at a time (an inevitable transaction).
#   _sendfile_native               overridden: the native transport's sendfile.
#   _stopping, _thread_id, _debug, _clock_resolution, _selector, _current_handle,
#   _asyncgen_firstiter_hook, _asyncgen_finalizer_hook, _ensure_fd_no_transport
#                                  used as BaseEventLoop and the selector loop use them.
# Handle / TimerHandle: _callback, _context, _cancelled, _scheduled, _source_traceback
#                                  a handle is run and reported as asyncio runs and reports it.
# _PyTask / Future: _Task__step, _Future__schedule_callbacks, _loop
#                                  ConnectionTask's step and done callbacks (tm_asyncio._tasks).
# _FlowControlMixin: _protocol_paused, _high_water, _low_water, _maybe_pause_protocol,
#   _maybe_resume_protocol, _extra the native transport's flow control and extra info, as asyncio's.
# _SelectorSocketTransport / _SelectorDatagramTransport / _UnixReadPipeTransport:
#   _read_ready__data_received, _read_ready (the pipe's and the datagram transport's),
#   _read_ready__on_eof, max_size, _conn_lost, _sock, _fileno, _closing, _protocol, _fatal_error,
#   _call_connection_lost         the read tm_asyncio._reading replaces, the rest as asyncio's.
# SSLProtocol: _app_transport      what _make_ssl_transport returns, as asyncio's does.
#   It calls its transport's _force_close(exc): provided by the native transport.
# Server: _attach, _detach          a native transport counts in its server's connections
#                                  (without arguments before 3.13, with the transport since).
# BaseSelectorEventLoop._closing_transports  the native transport's close, as asyncio's.
# Queue._queue (what Queue._init makes: a deque; a list for PriorityQueue and LifoQueue)
#                                  read to leave list-backed queues plain
#                                  (tm_asyncio._shared_primitives).

__all__ = [
    "SSLProtocol",
    "SSL_HANDSHAKE_TIMEOUT",
    "SSL_SHUTDOWN_TIMEOUT",
    "TransportSocket",
    "_FlowControlMixin",
    "_PY_TASK_STEP",
    "_PyTask",
    "_SelectorDatagramTransport",
    "_SelectorSocketTransport",
    "_SendfileMode",
    "_UnixReadPipeTransport",
    "_UnixSelectorEventLoop",
    "_get_running_loop",
    "_set_nodelay",
    "_set_result_unless_cancelled",
    "_set_running_loop",
    "set_task_hooks",
    "task_hooks",
]
