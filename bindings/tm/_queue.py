"""tm.Queue: the C++ FIFO queue, with the rest of queue.Queue's interface here."""

from __future__ import annotations

from tm import _core

__all__ = ["Queue"]


class Queue(_core.Queue):
    """A FIFO queue with queue.Queue's interface.

    ``put`` on an unbounded queue (``maxsize <= 0``, the default) never conflicts; a bounded one
    reads the size first. A blocking ``get`` on an empty queue (or ``put`` on a full one) waits
    with ``tm.retry``, up to ``timeout`` seconds when one is given; ``join`` waits until every
    item put has been marked ``task_done``.
    """

    __slots__ = ()

    def put_nowait(self, item):
        self.put(item, False)
