"""An HTTP/1.1 service on asyncio protocols with a CPU-bound endpoint, unchanged on any event loop.

    python examples/asyncio_http_service.py [--loop default|tm|uvloop] [--workers N] [--port PORT]

It prints "listening on PORT" once it listens (--port 0 picks a free port), and on SIGTERM or
SIGINT stops, printing "final state " followed by the service's shared state as JSON, then on the tm
loop "tm stats " followed by tm.stats() as JSON (commits, aborts by cause: what a differential test
checks its abort injection against).

Pages (GET only; keep-alive unless the client sends "Connection: close" or speaks HTTP/1.0):
  /             a hello page
  /work?...     about 1 ms of CPU work (iterated SHA-256 of the request target), the page to scale;
                the body is the hex digest, so a client can check it
  /stats        the service's shared state, as JSON

The shared state is written as an asyncio user would write it: plain int counters and a plain dict
of hits per page on one service object that every connection's protocol shares. The protocol
factory is functools.partial(HttpProtocol, service), so the tm loop manages that object (its
attributes become transactional, the dict a tm.Dict): in the tm loop's parallel mode
(TM_ASYNCIO_PARALLEL=1) connections run at the same time and their counts stay exact.
TM_EXAMPLE_WORK_ROUNDS sets the SHA-256 rounds of /work (default 2000).
--workers sets the tm loop's worker count (default: TM_WORKERS, else 1).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys

try:  # CPython's own SHA-256 (hashlib's fallback): same digests as hashlib.sha256
    from _sha2 import sha256
except ImportError:  # CPython 3.11
    from _sha256 import sha256

# Not hashlib.sha256: through OpenSSL 3 each call takes and drops a reference on one process-wide
# object, which keeps two threads from scaling on a free-threaded interpreter (docs/TUNING.md).

WORK_ROUNDS = int(os.environ.get("TM_EXAMPLE_WORK_ROUNDS", "2000"))
MAX_HEAD = 64 * 1024


def work(target: bytes) -> bytes:
    digest = target
    for _ in range(WORK_ROUNDS):
        digest = sha256(digest).digest()
    return digest.hex().encode() + b"\n"


class Service:
    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.hits: dict[str, int] = {}

    def state(self) -> dict:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "hits": dict(sorted(self.hits.items())),
        }

    def respond(self, target: bytes) -> tuple[bytes, bytes, bytes]:
        """(status, content type, body) for a GET of target."""
        path = target.split(b"?", 1)[0].decode("latin-1")
        page = path if path in ("/", "/work", "/stats") else "other"
        # The CPU work before the shared counters: under tm a callback runs alone from its first
        # access to shared state on (docs/TUNING.md), so that access comes last.
        body = work(target) if page == "/work" else None
        self.requests += 1
        self.hits[page] = self.hits.get(page, 0) + 1
        if page == "/":
            return b"200 OK", b"text/plain", b"hello from asyncio\n"
        if page == "/work":
            return b"200 OK", b"text/plain", body
        if page == "/stats":
            return b"200 OK", b"application/json", json.dumps(self.state()).encode()
        return b"404 Not Found", b"text/plain", b"not found\n"


class HttpProtocol(asyncio.Protocol):
    def __init__(self, service: Service) -> None:
        self.service = service
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.service.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.request(head)
        if self.transport is not None and len(self.buffer) > MAX_HEAD:
            self.reply(b"431 Request Header Fields Too Large", b"text/plain", b"", keep_alive=False)

    def request(self, head: bytes) -> None:
        request_line, *header_lines = head.split(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.reply(b"400 Bad Request", b"text/plain", b"bad request\n", keep_alive=False)
            return
        method, target, version = parts
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip().lower()
        keep_alive = version == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        if method != b"GET" or headers.get(b"content-length", b"0") != b"0":
            self.reply(b"405 Method Not Allowed", b"text/plain", b"GET only\n", keep_alive=False)
            return
        status, content_type, body = self.service.respond(target)
        self.reply(status, content_type, body, keep_alive)

    def reply(self, status: bytes, content_type: bytes, body: bytes, keep_alive: bool) -> None:
        self.transport.write(
            b"HTTP/1.1 "
            + status
            + b"\r\ncontent-type: "
            + content_type
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + (b"" if keep_alive else b"\r\nconnection: close")
            + b"\r\n\r\n"
            + body
        )
        if not keep_alive:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc) -> None:
        self.transport = None


async def serve(port: int) -> dict:
    service = Service()
    loop = asyncio.get_running_loop()
    # A partial, not a lambda: it shows the loop the object every connection shares, which the tm
    # loop then manages (docs/MANAGED_STATE.md); the stock loop just calls it.
    server = await loop.create_server(functools.partial(HttpProtocol, service), "127.0.0.1", port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    # Not Server.wait_closed(): since Python 3.12 it also waits for every client to leave.
    server.close()
    return service.state()


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
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    state = run(serve(args.port), args.loop, args.workers)
    print("final state " + json.dumps(state), flush=True)
    if args.loop == "tm":
        import tm

        print("tm stats " + json.dumps(tm.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
