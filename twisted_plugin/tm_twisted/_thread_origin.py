"""Work a callback hands to a Twisted thread pool remembers the callback's strand.

On epoll every reactor callback runs on one thread, so what a pool thread gives back with
`callFromThread` (`deferToThread`'s result, twisted.web's WSGI response written and finished from
the application's thread) never runs while the connection's own callbacks do. TMReactor runs a
connection's callbacks on its strand, on any worker, and with several workers it ran a call from a
thread on the thread that called `run()`, in parallel with them: under `twistd web --wsgi` with 2
workers the response's `finish()` reset the HTTP channel while the next request's bytes were
being parsed on its strand ("'NoneType' object has no attribute 'dataReceived'", the connection
dropped).

`ThreadPool.callInThreadWithCallback` (under `callInThread`, `deferToThread`, WSGI) called in a
callback now runs its work and its result handler with that callback's strand noted on the pool
thread; TMReactor.callFromThread there posts the call to that strand, where it runs one at a time
with the connection's callbacks, as on epoll. Outside any callback nothing changes.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.python.threadpool import ThreadPool

from tm import _reactor

_origin = threading.local()


def origin_strand() -> Any:
    """The strand of the callback whose work this pool thread is doing, or None."""
    return getattr(_origin, "strand", None)


def _on_behalf_of(strand: Any, f: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_origin, "strand", None)
        _origin.strand = strand
        try:
            return f(*args, **kwargs)
        finally:
            _origin.strand = outer

    return run


# Twisted's method (a reload of this module finds its own in its place).
_twisted = getattr(
    ThreadPool.callInThreadWithCallback, "_tm_twisted", ThreadPool.callInThreadWithCallback
)


def _callInThreadWithCallback(self, onResult, func, *args, **kw):
    strand = _reactor.current_strand()
    if strand is not None:
        func = _on_behalf_of(strand, func)
        if onResult is not None:
            onResult = _on_behalf_of(strand, onResult)
    return _twisted(self, onResult, func, *args, **kw)


_callInThreadWithCallback._tm_twisted = _twisted  # type: ignore[attr-defined]
_callInThreadWithCallback.__doc__ = _twisted.__doc__
ThreadPool.callInThreadWithCallback = _callInThreadWithCallback

__all__ = ["origin_strand"]
