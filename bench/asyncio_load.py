"""The load generator for bench/asyncio_bench.py: N closed-loop connections to a local server, each
sending its next request as soon as the previous answer has come back whole, for a fixed time.
Prints one JSON object: round trips per second and latency percentiles.

    python bench/asyncio_load.py --port PORT --mode echo|http [--connections 16] [--size 64]
                                 [--seconds 4] [--warmup 0.5]

One thread and a selector (epoll) drive every connection, so the generator costs one core at most
however many connections there are (it runs in its own process, never in the server's). A round
trip runs from the send of a request to the arrival of the last byte of its answer, as this loop
sees it. Echo messages carry their connection's round number and the echo is compared with what
was sent; HTTP answers must be `200` with a Content-Length, on a kept-alive connection. A server
that loses or mixes up bytes is counted as an error, not measured. Round trips completed during
the warm-up are not counted.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: asyncio_load\r\n\r\n"


class Connection:
    __slots__ = ("sock", "expected", "received", "started", "rounds")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.expected = b""
        self.received = bytearray()
        self.started = 0.0
        self.rounds = 0


def _echo_message(rounds: int, size: int) -> bytes:
    head = b"%d:" % rounds
    return head + b"x" * max(0, size - len(head))


def _http_complete(buffer: bytearray) -> bool:
    """True once buffer holds one whole response; raises on anything but a 200 with a length."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = bytes(buffer[:head_end]).lower()
    if not head.startswith(b"http/1.1 200"):
        raise ValueError(f"unexpected response {head[:40]!r}")
    try:
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    except (IndexError, ValueError):
        raise ValueError("response without Content-Length") from None
    total = head_end + 4 + length
    if len(buffer) > total:
        raise ValueError("more bytes than one response (pipelining was not asked for)")
    return len(buffer) == total


def run(port: int, mode: str, connections: int, size: int, seconds: float, warmup: float) -> dict:
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = Connection(sock)
        conns.append(conn)
        selector.register(sock, selectors.EVENT_READ, conn)

    latencies: list[float] = []
    errors: list[str] = []
    perf = time.perf_counter
    echo = mode == "echo"

    def send_next(conn: Connection) -> None:
        conn.rounds += 1
        request = _echo_message(conn.rounds, size) if echo else HTTP_REQUEST
        conn.expected = request
        conn.received.clear()
        conn.started = perf()
        # A request this small always fits in the socket's send buffer; a short send would mean
        # the server stopped reading, which the run reports as an error.
        sent = conn.sock.send(request)
        if sent != len(request):
            raise ConnectionError(f"short send ({sent} of {len(request)} bytes)")

    started = perf()
    measure_from = started + warmup
    deadline = measure_from + seconds
    active = len(conns)
    for conn in conns:
        send_next(conn)
    while active:
        for key, _ in selector.select(timeout=1.0):
            conn = key.data
            try:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                conn.received += chunk
                if echo:
                    if len(conn.received) < len(conn.expected):
                        continue
                    if conn.received != conn.expected:
                        raise ValueError(f"echo differs from what was sent (round {conn.rounds})")
                elif not _http_complete(conn.received):
                    continue
                now = perf()
                if now >= measure_from:
                    latencies.append(now - conn.started)
                if now < deadline:
                    send_next(conn)
                    continue
            except (OSError, ValueError) as e:  # reported, never hidden: the run counts errors
                errors.append(repr(e))
            selector.unregister(conn.sock)
            conn.sock.close()
            active -= 1
        if perf() > deadline + 10:  # a server that stopped answering: give up on the rest
            errors.append(f"{active} connections got no answer for 10 s")
            break
    elapsed = min(perf(), deadline) - measure_from
    for conn in conns:
        conn.sock.close()
    selector.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0

    return {
        "round_trips": len(latencies),
        "rtps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("echo", "http"), required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="bytes per echo message")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    result = run(args.port, args.mode, args.connections, args.size, args.seconds, args.warmup)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
