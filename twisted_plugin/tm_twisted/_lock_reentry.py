"""Two Twisted calls that re-enter their own lock on a free-threaded CPython 3.13, done without.

CPython 3.13 (3.13.5 run, 3.13.15's source read) does not notice when a thread takes a critical
section that it already holds: `PyMutex_Lock` spins 40 `sched_yield` calls and then parks, and
only parking, which detaches the thread state and so releases the outer section, lets it through.
Alone that is 40 cheap system calls; with a second worker ready to run, each is a context switch.
CPython's main branch skips locking a mutex that the thread's top-most critical section holds.
twisted.web meets it twice per static file (`perf`, docs/TWISTED.md):

- `BufferedReader.close()` holds the reader's section and calls `self.flush()`, which takes it
  again; `static.File` closes a file per response. Here `static.File` opens its files as a
  `ReaderWithPlainFlush`, whose `flush()` is the raw file's `flush()` (all that
  `BufferedReader.flush()` does) without the reader's lock, unless a subclass or the instance
  has an `open` of its own.
- `dict.get` holds the dict's section, and its lookup takes it again the first time a thread
  other than the dict's creator reads it, or when a value's reference count belongs to another
  thread. `Headers.getRawHeaders` reads the request's header dict that way whenever a
  Cooperator tick runs on another worker than the request's parsing did. Here it reads the
  dict by subscript, which takes the section once.

Same bytes, same results, same errors. Only with more than one worker on an interpreter without
the GIL, and only for the modules already imported when the reactor starts running; at one
worker nothing changes, so that tm x1 and epoll pay the same.
"""

from __future__ import annotations

import io
import sys
from typing import Any


class ReaderWithPlainFlush(io.BufferedReader):
    """A `BufferedReader` whose `flush()` is its raw file's, outside the reader's lock."""

    def flush(self) -> None:
        self.raw.flush()


# What install() replaced: static.File.openForReading, FilePath.open that it calls, and
# Headers.getRawHeaders.
_stock: dict[str, Any] = {}


def _open_for_reading(file) -> io.BufferedReader:
    # A subclass, or an instance (Twisted's own tests do), that opens files its own way.
    if getattr(file.open, "__func__", None) is not _stock["open"]:
        return _stock["openForReading"](file)
    raw = io.FileIO(file.path, "r")
    # open()'s choice of buffer size, so that the reader reads as the stock one does.
    blksize = getattr(raw, "_blksize", 0)
    return ReaderWithPlainFlush(raw, blksize if blksize > 1 else io.DEFAULT_BUFFER_SIZE)


def _get_raw_headers(self, name, default=None):
    # Twisted's Headers.getRawHeaders (26.10), with d[k] for d.get(k, []).
    encoded = sys.modules["twisted.web.http_headers"]._nameEncoder.encode(name)
    try:
        values = self._rawHeaders[encoded]
    except KeyError:
        return default
    if not values:
        return default
    if isinstance(name, str):
        return [v.decode("utf8") for v in values]
    return values


# Names the stock getRawHeaders reads: the replacement stands for it only if they are the same
# (with "decode" from its list comprehension, a code object of its own before Python 3.12).
_GET_RAW_HEADERS_NAMES = {
    "_nameEncoder",
    "encode",
    "_rawHeaders",
    "get",
    "isinstance",
    "str",
    "decode",
}


def install(workers: int, gil_enabled: bool) -> list[str]:
    """Replaces the two calls where workers run in parallel; returns what was replaced."""
    if workers <= 1 or gil_enabled:
        return []
    replaced = []
    static = sys.modules.get("twisted.web.static")
    if static is not None and static.File.openForReading is not _open_for_reading:
        from twisted.python.filepath import FilePath

        _stock.update(openForReading=static.File.openForReading, open=FilePath.open)
        static.File.openForReading = _open_for_reading
        replaced.append("twisted.web.static.File.openForReading")
    http_headers = sys.modules.get("twisted.web.http_headers")
    if http_headers is not None:
        stock = http_headers.Headers.getRawHeaders
        names = set(stock.__code__.co_names) | {"decode"}
        if stock is not _get_raw_headers and names == _GET_RAW_HEADERS_NAMES:
            _stock.update(getRawHeaders=stock)
            http_headers.Headers.getRawHeaders = _get_raw_headers
            replaced.append("twisted.web.http_headers.Headers.getRawHeaders")
    return replaced


def uninstall() -> None:
    """Gives Twisted back its own calls (for tests)."""
    static = sys.modules.get("twisted.web.static")
    if static is not None and static.File.openForReading is _open_for_reading:
        static.File.openForReading = _stock["openForReading"]
    http_headers = sys.modules.get("twisted.web.http_headers")
    if http_headers is not None and http_headers.Headers.getRawHeaders is _get_raw_headers:
        http_headers.Headers.getRawHeaders = _stock["getRawHeaders"]


__all__ = ["ReaderWithPlainFlush", "install", "uninstall"]
