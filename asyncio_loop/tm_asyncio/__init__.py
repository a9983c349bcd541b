"""tm_asyncio: the asyncio event loop of tm-reactor."""

from __future__ import annotations

import asyncio as __asyncio

from ._loop import EventLoop

__all__ = ("EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run")


def new_event_loop() -> EventLoop:
    """A new tm_asyncio event loop."""
    return EventLoop()


def run(main, *, debug=None):
    """Runs the coroutine main on a new tm_asyncio loop, as asyncio.run does."""
    with __asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


class EventLoopPolicy(__asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making tm_asyncio loops."""

    _loop_factory = EventLoop

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {id(self):#x}>"


def install() -> None:
    """Makes tm_asyncio's policy asyncio's event loop policy."""
    __asyncio.set_event_loop_policy(EventLoopPolicy())
