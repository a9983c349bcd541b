"""A closed-loop TCP echo load generator: N connections, each sending its next small message as
soon as the previous one has come back whole, for a fixed time. Prints one JSON object: round
trips per second and per-round-trip latency percentiles.

    python bench/echo_load.py --port PORT [--connections 32] [--size 64] [--seconds 5] [--warmup 0.5]

One thread and a selector (epoll) drive every connection, so the generator costs one core at most
however many connections there are. A round trip's latency runs from the send of a message to
the arrival of its last echoed byte, as this loop sees it (so it includes the time the loop takes
to get round to a ready connection). Each message carries its connection's round number and the
echo is compared with it, so a server that loses, reorders or mixes up bytes is counted as an
error rather than measured. Round trips completed during the warm-up are not counted.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


class Connection:
    __slots__ = ("sock", "expected", "received", "started", "rounds")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.expected = b""
        self.received = bytearray()
        self.started = 0.0
        self.rounds = 0


def message(rounds: int, size: int) -> bytes:
    head = b"%d:" % rounds
    return head + b"x" * max(0, size - len(head))


def run(port: int, connections: int, size: int, seconds: float, warmup: float) -> dict:
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

    def send_next(conn: Connection) -> None:
        conn.rounds += 1
        conn.expected = message(conn.rounds, size)
        conn.received.clear()
        conn.started = perf()
        # A message this small always fits in a fresh socket's send buffer; a short send would
        # mean the server stopped reading, which the run reports as an error.
        sent = conn.sock.send(conn.expected)
        if sent != len(conn.expected):
            raise ConnectionError(f"short send ({sent} of {len(conn.expected)} bytes)")

    started = perf()
    cpu_started = time.process_time()
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
                if len(conn.received) < len(conn.expected):
                    continue
                now = perf()
                if conn.received != conn.expected:
                    raise ValueError(f"echo differs from what was sent (round {conn.rounds})")
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
    # The generator's own CPU per wall second: near 1.0 means it, not the server, set the pace.
    cpu_share = (time.process_time() - cpu_started) / max(perf() - started, 1e-9)
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
        "load_cpu_share": round(cpu_share, 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="bytes per message")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.connections, args.size, args.seconds, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
