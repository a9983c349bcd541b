"""A line-based chat server on asyncio streams, unchanged on any event loop.

    python examples/asyncio_chat.py [--loop default|tm|uvloop] [--workers N] [--port PORT]

It prints "listening on PORT" once it listens (--port 0 picks a free port), and on SIGTERM or
SIGINT stops, printing "final state " followed by the server's shared state as JSON, then on the tm
loop "tm stats " followed by tm.stats() as JSON (commits, aborts by cause: what a differential test
checks its abort injection against).

The protocol is examples/twisted_chat.py's, one line each way, CRLF-terminated:
  first line      the user's name (letters, digits, "_" and "-"); the server answers
                  "* welcome NAME", or "* name taken" / "* bad name" and closes
  any other line  broadcast as "NAME: TEXT" to every other user
  /who            answers "* users NAME NAME ..." (sorted)
  /stats          answers "* stats JSON": the server's shared state (also before a name is given)
  /quit           closes the connection

The shared state is written as an asyncio user would write it: a plain dict of users (name ->
StreamWriter), a plain dict of per-user message counts and plain int counters on one object.
--workers sets the tm loop's worker count (default: TM_WORKERS, else 1).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import signal
import sys

_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ChatServer:
    def __init__(self) -> None:
        self.users: dict[str, asyncio.StreamWriter] = {}
        self.sent_by: dict[str, int] = {}
        self.messages = 0
        self.joins = 0
        self.leaves = 0

    def state(self) -> dict:
        return {
            "users": sorted(self.users),
            "sent_by": dict(sorted(self.sent_by.items())),
            "messages": self.messages,
            "joins": self.joins,
            "leaves": self.leaves,
        }

    def broadcast(self, sender: str, line: bytes) -> None:
        for name, writer in self.users.items():
            if name != sender:
                writer.write(line)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = None
        try:
            while line := await reader.readline():
                text = line.rstrip(b"\r\n").decode("utf-8", "replace")
                if text == "/who":
                    writer.write(("* users " + " ".join(sorted(self.users)) + "\r\n").encode())
                elif text == "/stats":
                    writer.write(b"* stats " + json.dumps(self.state()).encode() + b"\r\n")
                elif text == "/quit":
                    break
                elif text.startswith("/"):
                    writer.write(b"* unknown command\r\n")
                elif name is None:
                    if not _NAME.fullmatch(text):
                        writer.write(b"* bad name\r\n")
                        break
                    if text in self.users:
                        writer.write(b"* name taken\r\n")
                        break
                    name = text
                    self.users[name] = writer
                    self.joins += 1
                    writer.write(f"* welcome {name}\r\n".encode())
                else:
                    self.messages += 1
                    self.sent_by[name] = self.sent_by.get(name, 0) + 1
                    self.broadcast(name, f"{name}: {text}\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if name is not None and self.users.get(name) is writer:
                del self.users[name]
                self.leaves += 1
            writer.close()


async def serve(port: int) -> dict:
    chat = ChatServer()
    server = await asyncio.start_server(chat.handle, "127.0.0.1", port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    # Not Server.wait_closed(): since Python 3.12 it also waits for every client to leave.
    server.close()
    return chat.state()


def run(main, loop: str, workers: int | None):
    """Runs the coroutine main on the event loop the command line chose."""
    if loop == "tm":
        import tm_asyncio

        if workers is None:
            return tm_asyncio.run(main)
        factory = functools.partial(tm_asyncio.EventLoop, workers=workers)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["default", "tm", "uvloop"], default="tm")
    parser.add_argument("--workers", type=int, default=None, help="tm loop workers")
    parser.add_argument("--port", type=int, default=8024)
    args = parser.parse_args(argv)
    state = run(serve(args.port), args.loop, args.workers)
    print("final state " + json.dumps(state), flush=True)
    if args.loop == "tm":
        import tm

        print("tm stats " + json.dumps(tm.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
