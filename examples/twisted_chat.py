"""A line-based chat server on Twisted whose users live in its factory, unchanged on any reactor.

    python examples/twisted_chat.py [--reactor epoll|tm] [--workers N] [--port PORT]

It prints "listening on PORT" once it listens (--port 0 picks a free port), and on exit (SIGTERM
or SIGINT) "final state " followed by the factory's shared state as JSON, then on the tm reactor
"tm stats " followed by tm.stats() as JSON (commits, aborts by cause: what a differential test
checks its abort injection against). Twisted's log goes to stderr.

The protocol, one line each way, CRLF-terminated:
  first line      the user's name (letters, digits, "_" and "-"); the server answers
                  "* welcome NAME", or "* name taken" / "* bad name" and closes
  any other line  broadcast as "NAME: TEXT" to every other user
  /who            answers "* users NAME NAME ..." (sorted)
  /stats          answers "* stats JSON": the factory's shared state (also before a name is given,
                  so an admin client can read it without joining)
  /quit           closes the connection

The shared state is written as a Twisted user would write it: a plain dict of users (name ->
protocol), a plain dict of per-user message counts and plain int counters, all on the factory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from twisted.internet import protocol
from twisted.protocols.basic import LineReceiver

_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ChatProtocol(LineReceiver):
    def __init__(self) -> None:
        self.name: str | None = None

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.startswith("/"):
            self.command(text)
        elif self.name is None:
            self.join(text)
        else:
            self.factory.messages += 1
            self.factory.sentBy[self.name] = self.factory.sentBy.get(self.name, 0) + 1
            self.factory.broadcast(self, f"{self.name}: {text}".encode())

    def join(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            self.sendLine(b"* bad name")
            self.transport.loseConnection()
        elif name in self.factory.users:
            self.sendLine(b"* name taken")
            self.transport.loseConnection()
        else:
            self.name = name
            self.factory.users[name] = self
            self.factory.joins += 1
            self.sendLine(f"* welcome {name}".encode())

    def command(self, text: str) -> None:
        if text == "/who":
            self.sendLine(("* users " + " ".join(sorted(self.factory.users))).encode())
        elif text == "/stats":
            self.sendLine(b"* stats " + json.dumps(self.factory.state()).encode())
        elif text == "/quit":
            self.transport.loseConnection()
        else:
            self.sendLine(b"* unknown command")

    def connectionLost(self, reason=None) -> None:
        if self.name is not None and self.factory.users.get(self.name) is self:
            del self.factory.users[self.name]
            self.factory.leaves += 1


class ChatFactory(protocol.ServerFactory):
    protocol = ChatProtocol

    def __init__(self) -> None:
        self.users = {}
        self.sentBy = {}
        self.messages = 0
        self.joins = 0
        self.leaves = 0

    def broadcast(self, sender: ChatProtocol, line: bytes) -> None:
        for user in self.users.values():
            if user is not sender:
                user.sendLine(line)

    def state(self) -> dict:
        return {
            "users": sorted(self.users),
            "sent_by": dict(sorted(self.sentBy.items())),
            "messages": self.messages,
            "joins": self.joins,
            "leaves": self.leaves,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactor", choices=["epoll", "tm"], default="tm")
    parser.add_argument("--workers", type=int, default=0, help="tm workers (0: one per core)")
    parser.add_argument("--port", type=int, default=8023)
    args = parser.parse_args(argv)
    if args.reactor == "tm":
        import tm_twisted

        tm_twisted.install(args.workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    factory = ChatFactory()
    port = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()
    print("final state " + json.dumps(factory.state()), flush=True)
    if args.reactor == "tm":
        import tm

        print("tm stats " + json.dumps(tm.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
