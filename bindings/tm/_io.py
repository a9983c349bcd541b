"""I/O inside transactions: queued until commit (stdout, stderr, logging), or made inevitable.

Writes to ``sys.stdout``/``sys.stderr`` made inside a transaction run as on-commit hooks, in commit
order, exactly once; an aborted or abandoned transaction writes nothing. ``logging`` records are
handled at commit the same way. The exception is a reactor callback that runs alone (one worker,
or every event on one strand): it is never rerun and never interleaved with another, so its output
is written at once, as on the stock loops (a flushed ``print`` before a blocking call shows before
it). Any other I/O that CPython audits
(``open``, sockets, subprocesses, ...) first makes the running transaction inevitable (an audit
hook in tm._core).
"""

from __future__ import annotations

import logging
import sys

from tm import _core

__all__ = ["install"]


def _must_queue() -> bool:
    """Whether output of the running code must wait for its transaction's commit: always in a
    transaction of the program's own (tm.atomic, TransactionQueue), whose output belongs to its
    commit; in a reactor callback only while callbacks of other strands run beside it."""
    if not _core.in_transaction():
        return False
    return _core.current_strand() is None or _core.callbacks_run_in_parallel()


class QueuedStream:
    """Wraps a text stream: inside a transaction, writes wait for the commit (_must_queue)."""

    def __init__(self, stream):
        self._tm_stream = stream

    def write(self, s):
        if _must_queue():
            stream = self._tm_stream
            _core.on_commit(lambda: stream.write(s))
            return len(s)
        return self._tm_stream.write(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if _must_queue():
            _core.on_commit(self._tm_stream.flush)
            return None
        return self._tm_stream.flush()

    def __getattr__(self, name):
        return getattr(self._tm_stream, name)


def _wrap(name):
    stream = getattr(sys, name)
    if stream is not None and not isinstance(stream, QueuedStream):
        setattr(sys, name, QueuedStream(stream))


_original_handle = logging.Logger.handle


def _handle(self, record):
    if _must_queue():
        _core.on_commit(lambda: _original_handle(self, record))
        return None
    return _original_handle(self, record)


def install():
    """Queues stdout, stderr and logging output of transactions; makes other I/O inevitable.
    Idempotent; called at import and by TransactionQueue.run (a test runner may have replaced
    the streams since)."""
    _wrap("stdout")
    _wrap("stderr")
    logging.Logger.handle = _handle
    _core._install_audit_hook()
