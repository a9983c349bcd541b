"""The managed types' compound methods: those that read and then write (``d.setdefault(k, v)``,
``lst.remove(x)``, ``s.pop()``) run as one restartable transaction, flattened into the caller's if
any, so that each is atomic even outside a transaction."""

from __future__ import annotations

from tm import _core


def one_transaction(method):
    """The method, each call run as one restartable transaction (rerun on conflict)."""

    def run(*args, **kwargs):
        return _core.run(method, args, kwargs, False)

    run.__name__ = method.__name__
    run.__qualname__ = method.__qualname__
    run.__doc__ = method.__doc__
    return run
