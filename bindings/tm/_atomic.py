"""tm.atomic, tm.snapshot and the small transaction helpers."""

from __future__ import annotations

import functools
import os

from tm import _core

# Conflict and inevitability sites name the user's line, not the tm package's own frames.
_core._set_internal_prefix(os.path.join(os.path.dirname(os.path.abspath(__file__)), ""))

__all__ = ["atomic", "snapshot", "run_atomic", "transactional"]


def run_atomic(fn, /, *args, **kwargs):
    """Runs fn(*args, **kwargs) as a restartable transaction (rerun on conflict)."""
    return _core.run(fn, args, kwargs, False)


class _Block:
    """``with tm.atomic():``: an irrevocable transaction (its block cannot be rerun)."""

    __slots__ = ()

    def __enter__(self):
        _core._begin_block()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, _core.TransactionAbort):
            if _core._end_block(False):  # top level: an irrevocable block cannot be rerun
                raise RuntimeError("tm: an irrevocable block was aborted") from exc
            return False  # nested in a restartable transaction: its boundary reruns it
        _core._end_block(exc_type is None)
        return False

    def __call__(self, fn):
        return atomic(fn)


def atomic(fn=None, /, *args, **kwargs):
    """Transactions, three ways.

    ``@tm.atomic`` makes a function restartable: each call runs as one transaction, rerun on
    conflict. ``tm.atomic(fn, *args, **kw)`` runs ``fn(*args, **kw)`` so (with no arguments,
    ``tm.atomic(fn)`` is the decorator: call ``tm.run_atomic(fn)``). ``with tm.atomic():`` runs
    its block as an irrevocable transaction: it becomes inevitable at its first shared managed
    access and is never rerun. Nested transactions are flattened into the outermost one.
    """
    if fn is None:
        return _Block()
    if args or kwargs:
        return _core.run(fn, args, kwargs, False)

    @functools.wraps(fn)
    def transaction(*a, **kw):
        return _core.run(fn, a, kw, False)

    transaction.__tm_atomic__ = True
    return transaction


transactional = atomic


class snapshot:
    """``with tm.snapshot():`` reads inside are never validated and never force inevitability
    (for caches and statistics: they may be stale, but each value read is one that was
    committed)."""

    __slots__ = ()

    def __enter__(self):
        _core._snapshot_enter()
        return self

    def __exit__(self, *exc):
        _core._snapshot_exit()
        return False
