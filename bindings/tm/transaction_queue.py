"""PyPy-STM's ``transaction`` module, matched: TransactionQueue, hint_commit_soon, time."""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import operator
import os
import threading
import time as _time

from tm import _conflict_log, _core, _io, _shared_types

__all__ = ["TransactionQueue", "hint_commit_soon", "time"]


def hint_commit_soon():
    """A hint that the running transaction should commit soon. Transactions here end with their
    function, so there is nothing to do; kept for PyPy-STM compatibility."""
    return None


def time():
    """time.time() that never forces inevitability (it is not audited I/O); conflict-free."""
    return _time.time()


class TransactionQueue:
    """Functions to run as transactions on worker threads (PyPy-STM's ``TransactionQueue``).

    ``add(fn, *args, **kw)`` queues a restartable transaction; ``add_generator(gen)`` queues a
    generator, each step up to a ``yield`` running as one irrevocable transaction. ``run()`` runs
    everything (and what the transactions add) on ``workers`` threads; the first exception stops
    the run and is re-raised. Adds made inside a transaction take effect when it commits.
    """

    def __init__(self):
        self._pending = collections.deque()
        self._cond = threading.Condition()
        self._active = 0
        self._error = None
        self.worker_stats = []

    def _push(self, item):
        with self._cond:
            self._pending.append(item)
            self._cond.notify()

    def add(self, fn, /, *args, **kwargs):
        if not callable(fn):
            raise TypeError(f"TransactionQueue.add() expects a callable, got {fn!r}")
        item = (False, fn, args, kwargs)
        if _core.in_transaction():
            _core.on_commit(lambda: self._push(item))
        else:
            self._push(item)

    def add_generator(self, gen):
        if not isinstance(gen, collections.abc.Iterator):
            raise TypeError(f"TransactionQueue.add_generator() expects a generator, got {gen!r}")
        item = (True, gen, (), {})
        if _core.in_transaction():
            _core.on_commit(lambda: self._push(item))
        else:
            self._push(item)

    def _next(self):
        with self._cond:
            while True:
                if self._error is not None:
                    return None
                if self._pending:
                    self._active += 1
                    return self._pending.popleft()
                if self._active == 0:
                    self._cond.notify_all()
                    return None
                self._cond.wait()

    def _done(self):
        with self._cond:
            self._active -= 1
            if self._active == 0 and not self._pending:
                self._cond.notify_all()

    def _worker(self):
        # Under the conflict log, each worker's span and stats go to the report's timeline.
        span = (
            _conflict_log.worker_span()
            if _core.conflict_log_enabled()
            else contextlib.nullcontext()
        )
        with span:
            self._work()

    def _work(self):
        try:
            while (item := self._next()) is not None:
                is_gen, fn, args, kwargs = item
                try:
                    if is_gen:
                        alive = _core.run(_step, (fn,), None, True)
                        if alive:
                            self._push(item)
                    else:
                        _core.run(fn, args, kwargs, False)
                except BaseException as e:  # noqa: BLE001 - re-raised by run()
                    with self._cond:
                        if self._error is None:
                            self._error = e
                        self._cond.notify_all()
                finally:
                    self._done()
        finally:
            with self._cond:
                self.worker_stats.append(_core.stats(thread=True))

    def run(self, workers=None):
        """Runs the queued transactions and those they add, on ``workers`` threads (default: the
        CPU count, as with 0, PyPy-STM's "all segments"); returns when none is left. Re-raises the
        first exception."""
        n = 0 if workers is None else operator.index(workers)
        if n < 0:
            raise ValueError(f"TransactionQueue.run() needs workers >= 0, got {n}")
        n = n or os.cpu_count() or 1
        _io.install()
        _shared_types.immortalize_shared_objects(n)
        self._error = None
        self.worker_stats = []
        threads = [threading.Thread(target=self._worker, name=f"tm-worker-{i}") for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._error is not None:
            error, self._error = self._error, None
            self._pending.clear()
            raise error


_DONE = object()


def _step(gen):
    return next(gen, _DONE) is not _DONE
