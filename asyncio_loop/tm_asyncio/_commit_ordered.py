"""CommitOrderedSocketTransport: asyncio's socket transport, sending what a transaction wrote at its
commit (parallel mode).

In parallel mode a client connection made on the loop's strand (from ``main()``, a timer, a task
on the loop's strand) keeps asyncio's selector transport: its callbacks run on the loop's strand,
in order with the loop's other callbacks, as code around ``run_until_complete()`` expects
(docs/ASYNCIO.md). What a transaction writes to it is held until the transaction commits, as on
the native transports (DESIGN.md section 1): the bytes leave after the managed changes made before
them are visible to other strands, and an attempt that aborts (a restartable ``tm.atomic`` inside
a task) sends nothing. ``write_eof()`` and ``close()`` after held writes are held behind them, in
order; ``abort()`` drops them, as it drops asyncio's buffer. Outside a transaction (the code
between ``run_until_complete()`` calls, another thread) everything is asyncio's, at once.

The release runs at commit, outside the transaction, under the loop lock that the loop's own
callbacks hold while they run. Differences from asyncio's transport, all from sending at commit:
``pause_writing()`` comes at commit, when the held bytes reach asyncio's buffer, not inside the
``write()``; ``get_write_buffer_size()`` counts the held bytes too.
"""

from __future__ import annotations

from asyncio import selector_events

import tm

_EOF = object()  # write_eof(), held behind the writes before it
_CLOSE = object()  # close(), likewise


class CommitOrderedSocketTransport(selector_events._SelectorSocketTransport):
    """asyncio's socket transport whose writes inside a transaction are sent at its commit."""

    def __init__(self, *args, **kwargs) -> None:
        self._held: list = []  # bytes, _EOF and _CLOSE, in the order the transaction asked
        self._held_bytes = 0
        self._eof_held = self._close_held = False
        super().__init__(*args, **kwargs)

    def write(self, data) -> None:
        if not tm.in_transaction():
            return super().write(data)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        self._check_writable("write")
        if data:
            self._hold(bytes(data))

    def writelines(self, list_of_data) -> None:
        if not tm.in_transaction():
            return super().writelines(list_of_data)
        self._check_writable("writelines")
        data = b"".join(list_of_data)
        if data:
            self._hold(data)

    def write_eof(self) -> None:
        if not self._held:
            return super().write_eof()
        if not (self._closing or self._eof or self._eof_held):
            self._eof_held = True
            self._hold(_EOF)

    def close(self) -> None:
        if not self._held:
            return super().close()
        if not self._close_held:
            self._close_held = True
            self._hold(_CLOSE)

    def abort(self) -> None:
        self._drop_held()
        super().abort()

    def is_closing(self) -> bool:
        return self._closing or self._close_held

    def get_write_buffer_size(self) -> int:
        return super().get_write_buffer_size() + self._held_bytes

    # -- holding and releasing -------------------------------------------------------------------

    def _check_writable(self, method: str) -> None:
        if self._eof or self._eof_held:
            raise RuntimeError(f"Cannot call {method}() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError(f"unable to {method}; sendfile is in progress")

    def _hold(self, item) -> None:
        if not self._held:
            tm.on_commit(self._release_held)
            tm.on_abort(self._drop_held)
        self._held.append(item)
        if item is not _EOF and item is not _CLOSE:
            self._held_bytes += len(item)

    def _release_held(self) -> None:
        held = self._held
        self._drop_held()
        with self._loop._lock:
            for item in held:
                if item is _EOF:
                    super().write_eof()
                elif item is _CLOSE:
                    super().close()
                else:
                    super().write(item)

    def _drop_held(self) -> None:
        self._held = []
        self._held_bytes = 0
        self._eof_held = self._close_held = False


__all__ = ["CommitOrderedSocketTransport"]
