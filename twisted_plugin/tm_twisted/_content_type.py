"""twisted.web's parse of a request's Content-Type, remembered where workers run in parallel.

`twisted.web.http._parseContentType` (Twisted 26.10), called for every POST with a body, parses
the header through `email.message.EmailMessage`, and the standard library's
`email.headerregistry.HeaderRegistry` creates a new class for every header it parses. Creating a
class takes the free-threaded interpreter's type lock and invalidates its type cache: on 3.13t a
call costs about 80 us, and two threads calling it do 0.9x the work of one (docs/BENCHMARKS.md,
"Server workloads"), so a POST-heavy twisted.web server did not scale past one worker.

The answer is a function of the header's bytes alone (the default email policy, which nothing
here changes), so the replacement keeps the answers for up to `LIMIT` distinct headers and asks
Twisted's own function for any other: the same key for the same bytes, and the same exception
for a header that makes it raise (an exception is not remembered). Only with more than one worker
on an interpreter without the GIL, as tm_twisted._lock_reentry; at one worker nothing changes.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

# Distinct headers remembered; past it the memory starts again, so that a client sending a new
# header on every request costs a parse each, as on the stock reactor, and no unbounded memory.
LIMIT = 256

_stock: dict[str, Callable[[bytes], bytes]] = {}
_known: dict[bytes, bytes] = {}


def _parse_content_type(line: bytes) -> bytes:
    if type(line) is not bytes:  # a bytearray, or a subclass with an equality of its own
        return _stock["parse"](line)
    # Subscript, not dict.get: CPython 3.13t re-enters the dict's lock in get() when another
    # thread made the entry (tm_twisted._lock_reentry).
    try:
        return _known[line]
    except KeyError:
        pass
    key = _stock["parse"](line)
    if len(_known) >= LIMIT:
        _known.clear()
    _known[line] = key
    return key


def install(workers: int, gil_enabled: bool) -> list[str]:
    """Replaces the parse where workers run in parallel; returns what was replaced."""
    if workers <= 1 or gil_enabled:
        return []
    http: Any = sys.modules.get("twisted.web.http")
    stock = getattr(http, "_parseContentType", None)
    if stock is None or stock is _parse_content_type:
        return []
    _stock["parse"] = stock
    http._parseContentType = _parse_content_type
    return ["twisted.web.http._parseContentType"]


def uninstall() -> None:
    """Gives Twisted back its own parse (for tests)."""
    http: Any = sys.modules.get("twisted.web.http")
    if http is not None and getattr(http, "_parseContentType", None) is _parse_content_type:
        http._parseContentType = _stock["parse"]
    _known.clear()


__all__ = ["LIMIT", "install", "uninstall"]
