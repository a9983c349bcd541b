"""twisted.web's static files opened so that closing one does not spin on its own lock.

On a free-threaded CPython 3.13 (3.13.5 and 3.13.15 read), `BufferedReader.close()` holds the
reader's critical section and calls `self.flush()`, which takes the same critical section again.
The interpreter does not notice that the thread already holds it: `PyMutex_Lock` spins 40
`sched_yield` calls and then parks, and only parking, which detaches the thread state and so
releases the outer critical section, lets it through. Alone that is 40 cheap system calls per
file; with a second worker ready to run, every one of them is a context switch.
`twistd web --path` closes a file per response (`StaticProducer.stopProducing`): with two
workers the server made 70 context switches per static file against 7 with the reader below
(docs/TWISTED.md).

`BufferedReader.flush()` only calls `raw.flush()`; the reader below does that without taking the
reader's critical section, so `close()` no longer nests. Same bytes, same errors: a flush of a
closed file raises `ValueError` from the raw file, as it does through `BufferedReader.flush()`.
Only `static.File`'s own `openForReading` over `FilePath.open` is replaced (a subclass that opens
its files its own way keeps its way), only with more than one worker on an interpreter without
the GIL, and only if twisted.web.static is imported when the reactor starts running.
"""

from __future__ import annotations

import io
import sys
from typing import Any


class ReaderWithPlainFlush(io.BufferedReader):
    """A `BufferedReader` whose `flush()` is its raw file's, outside the reader's lock."""

    def flush(self) -> None:
        self.raw.flush()


# What install() replaced: static.File.openForReading, and FilePath.open that it calls.
_stock: dict[str, Any] = {}


def _open_for_reading(file) -> io.BufferedReader:
    if type(file).open is not _stock["open"]:
        return _stock["openForReading"](file)
    raw = io.FileIO(file.path, "r")
    # open()'s choice of buffer size, so that the reader reads as the stock one does.
    blksize = getattr(raw, "_blksize", 0)
    return ReaderWithPlainFlush(raw, blksize if blksize > 1 else io.DEFAULT_BUFFER_SIZE)


def install(workers: int, gil_enabled: bool) -> bool:
    """Makes `static.File` open its files with `ReaderWithPlainFlush`; True if it now does."""
    if workers <= 1 or gil_enabled:
        return False
    static = sys.modules.get("twisted.web.static")
    if static is None:
        return False
    if static.File.openForReading is _open_for_reading:
        return True
    from twisted.python.filepath import FilePath

    _stock.update(openForReading=static.File.openForReading, open=FilePath.open)
    static.File.openForReading = _open_for_reading
    return True


def uninstall() -> None:
    """Gives `static.File` back its own `openForReading` (for tests)."""
    static = sys.modules.get("twisted.web.static")
    if static is not None and static.File.openForReading is _open_for_reading:
        static.File.openForReading = _stock["openForReading"]


__all__ = ["ReaderWithPlainFlush", "install", "uninstall"]
