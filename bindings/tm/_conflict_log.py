"""The conflict/timeline log that ``python -m tm.report`` reads.

Format (version 2; version 1 lacked the ``inevitable`` records, and readers accept both): UTF-8
JSON lines, one object per line, each with a ``kind``:

- ``header`` (first line): ``format`` = "tm-conflict-log", ``version`` = 2, ``pid``, ``argv``,
  ``python``, ``free_threaded``, ``written_at`` (time.time()), ``conflict_log`` (whether
  accesses were tagged with file:line while the program ran).
- ``stats``: ``tm.stats()`` at the time of writing (every thread summed).
- ``conflict``: one per entry of ``tm.conflicts()``: ``site`` (file:line of the aborted side),
  ``other_site`` (file:line of the side that won), ``cell_name``, ``cell``, ``cause``, ``count``,
  ``seconds_lost``.
- ``inevitable``: one per entry of ``tm._core.inevitability_sites()``: ``site`` (file:line where
  transactions became inevitable; for an escalation, where the function is defined), ``cause``
  (``first_access``: the first shared read or write of an irrevocable block; ``io``: the audit
  hook, before unqueued I/O; ``explicit``: ``tm.inevitable()``; ``escalation``: rerun inevitable
  after repeated aborts), ``detail`` (``read``/``write``, the audit event, the abort count),
  ``count``, ``seconds_held`` (total time from becoming inevitable to the end of the transaction,
  the token held) and ``max_seconds_held``.
- ``worker``: one per span recorded by ``tm.worker_span()`` (TransactionQueue workers record
  theirs) and one per reactor worker thread that ran events while the conflict log was on
  (``tm._core.reactor_worker_spans()``: from its first event to its last): ``name``,
  ``thread_id``, ``start``/``end`` (time.monotonic() seconds) and ``stats``, that thread's
  ``tm.stats(thread=True)`` accumulated during the span.

Written by ``tm.write_report_log(path)``, or at interpreter exit to the path in the environment
variable ``TM_CONFLICT_LOG`` (which also turns the conflict log on when ``tm`` is imported).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time

from tm import _core

__all__ = ["worker_span", "worker_spans", "write_report_log", "ENV_VAR", "FORMAT", "VERSION"]

ENV_VAR = "TM_CONFLICT_LOG"
FORMAT = "tm-conflict-log"
VERSION = 2

_lock = threading.Lock()
_spans: list[dict] = []


def _minus(after, before):
    """after - before for (nested) stats dicts of numbers."""
    if isinstance(after, dict):
        return {k: _minus(v, before.get(k, 0)) for k, v in after.items()}
    return after - before


@contextlib.contextmanager
def worker_span(name=None):
    """``with tm.worker_span("name"):`` records this thread's work in the block (its start, end
    and the ``tm.stats(thread=True)`` it added) as one worker of the report's timeline."""
    thread = threading.current_thread()
    before = _core.stats(thread=True)
    start = time.monotonic()
    try:
        yield
    finally:
        end = time.monotonic()
        span = {
            "kind": "worker",
            "name": name or thread.name,
            "thread_id": threading.get_ident(),  # a worker presents itself as another thread
            "start": start,
            "end": end,
            "stats": _minus(_core.stats(thread=True), before),
        }
        with _lock:
            _spans.append(span)


def worker_spans():
    """The worker spans recorded so far (copies): those of tm.worker_span(), then the reactor
    workers'."""
    with _lock:
        spans = [dict(s) for s in _spans]
    return spans + [{"kind": "worker", **s} for s in _core.reactor_worker_spans()]


def _records():
    info = _core.build_info()
    yield {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "python": sys.version,
        "free_threaded": bool(info.get("free_threaded")),
        "written_at": time.time(),
        "conflict_log": _core.conflict_log_enabled(),
    }
    yield {"kind": "stats", **_core.stats()}
    for c in _core.conflicts():
        yield {"kind": "conflict", **c}
    for i in _core.inevitability_sites():
        yield {"kind": "inevitable", **i}
    yield from worker_spans()


def write_report_log(path):
    """Writes the conflict and inevitability sites, the statistics and the worker spans to ``path`` (JSON lines;
    see tm._conflict_log) for ``python -m tm.report path``. Returns the path."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in _records():
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _write_at_exit(path):
    try:
        write_report_log(path)
    except Exception as e:  # noqa: BLE001 - at exit, say why and go on
        print(f"tm: could not write the conflict log {path}: {e}", file=sys.__stderr__)


def install_from_env():
    """TM_CONFLICT_LOG=path: turns the conflict log on and writes it at exit."""
    path = os.environ.get(ENV_VAR)
    if path:
        _core.set_conflict_log(True)
        atexit.register(_write_at_exit, path)
