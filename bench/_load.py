"""What the load generators share: closed-loop connections on one selector (echo_load.py and
asyncio_load.py), closed-loop keep-alive HTTP connections on threads (http_load.py,
`scaling.py load` and `server_workloads.py load-http`), the summary of latencies they print, and
several generator processes sharing the connections, merged (run_processes).

The scripts import it as their neighbour (Python puts a script's folder first on sys.path), so
they keep running by path from anywhere, as twisted_bench.py, asyncio_bench.py and scaling.py start
them.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import threading
import time
from typing import Callable


def summary(
    latencies: list[float],
    elapsed: float,
    errors: list,
    *,
    count: str = "requests",
    rate: str = "rps",
    cpu_share: float | None = None,
) -> dict:
    """The figures a generator prints: count and rate of answers, latency percentiles, errors.

    Sorts latencies in place. count and rate name the first two figures (the echo generators
    count round trips); cpu_share, where given, stands before the errors as load_cpu_share.
    """
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0
        )

    result = {
        count: len(latencies),
        rate: len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }
    if cpu_share is not None:
        result["load_cpu_share"] = round(cpu_share, 2)
    result["errors"] = len(errors)
    result["first_error"] = errors[0] if errors else None
    return result


def detailed(latencies: list[float], elapsed: float, errors: list) -> dict:
    """summary() with what run_processes needs to merge it with other processes' results."""
    return dict(
        summary(latencies, elapsed, errors), latencies=latencies, elapsed=elapsed, all_errors=errors
    )


def run_processes(
    command: Callable[[int, int], list[str]],
    connections: int,
    processes: int,
    timeout: float | None = None,
) -> dict:
    """Shares connections among min(processes, connections) load generator processes and merges
    their results: command(first, count) starts one with connections first..first+count-1, which
    prints detailed() as one JSON line. The merged summary's rate is over the longest elapsed."""
    k = max(1, min(processes, connections))
    shares = [connections // k + (i < connections % k) for i in range(k)]
    procs = [
        subprocess.Popen(
            command(sum(shares[:i]), share),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, share in enumerate(shares)
    ]
    parts = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode:
                raise RuntimeError(f"load generator failed: {err[-2000:]}")
            parts.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = max(p["elapsed"] for p in parts)
    merged = summary(
        [x for p in parts for x in p["latencies"]],
        elapsed,
        [e for p in parts for e in p["all_errors"]],
    )
    return dict(merged, elapsed=elapsed)


class Connection:
    __slots__ = ("sock", "sent", "received", "started", "rounds")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = b""
        self.received = bytearray()
        self.started = 0.0
        self.rounds = 0


def selector_loop(
    port: int,
    connections: int,
    seconds: float,
    warmup: float,
    request: Callable[[int], bytes],
    answered: Callable[[Connection], bool],
) -> tuple[list[float], float, list[str], float]:
    """Runs connections to a local port closed-loop on one selector for warmup + seconds.

    request(rounds) is what a connection sends in its round `rounds` (from 1); answered(conn) is
    True once conn.received holds the whole answer to conn.sent, and raises ValueError where the
    answer is wrong. Returns the latencies of the round trips completed after the warm-up, the
    seconds they were measured over, the errors, and the generator's CPU seconds per wall second
    (near 1.0 means it, not the server, set the pace).
    """
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
        conn.sent = request(conn.rounds)
        conn.received.clear()
        conn.started = perf()
        # A request this small always fits in the socket's send buffer; a short send would mean
        # the server stopped reading, which the run reports as an error.
        sent = conn.sock.send(conn.sent)
        if sent != len(conn.sent):
            raise ConnectionError(f"short send ({sent} of {len(conn.sent)} bytes)")

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
                if not answered(conn):
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
    cpu_share = (time.process_time() - cpu_started) / max(perf() - started, 1e-9)
    for conn in conns:
        conn.sock.close()
    selector.close()
    return latencies, elapsed, errors, cpu_share


def echo_message(rounds: int, size: int) -> bytes:
    """size bytes that start with the round number, so a reordered or mixed-up echo shows."""
    head = b"%d:" % rounds
    return head + b"x" * max(0, size - len(head))


def echo_answered(conn: Connection) -> bool:
    if len(conn.received) < len(conn.sent):
        return False
    if conn.received != conn.sent:
        raise ValueError(f"echo differs from what was sent (round {conn.rounds})")
    return True


def http_threads(
    port: int,
    connections: int,
    seconds: float,
    target: Callable[[int, int], str],
    *,
    timeout: float,
    nodelay: bool = False,
    require_200: bool = False,
    body: Callable[[int, int], bytes] | None = None,
) -> tuple[list[float], float, list]:
    """Runs connections keep-alive HTTP/1.1 connections closed-loop, a thread each, for seconds.

    target(conn, i) is the path of the i-th request (from 1) of connection conn (from 0); timeout
    bounds the connect and each receive. Where body is given, each request is a POST of
    body(conn, i) (content-type application/json) instead of a GET. Returns the latencies, the
    seconds the run took and the errors (at most one a connection: an error ends its connection).
    """
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list = []

    def one_connection(conn: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                if nodelay:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffer = bytearray()
                i = 0
                while time.monotonic() < deadline:
                    i += 1
                    if body is None:
                        request = (
                            f"GET {target(conn, i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                        ).encode()
                    else:
                        payload = body(conn, i)
                        request = (
                            f"POST {target(conn, i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            f"Content-Type: application/json\r\n"
                            f"Content-Length: {len(payload)}\r\n\r\n"
                        ).encode() + payload
                    started = time.perf_counter()
                    s.sendall(request)
                    # The response's size once its head arrived: large bodies (static files)
                    # are then only appended to, not searched again.
                    needed = None
                    while True:
                        if needed is None:
                            head_end = buffer.find(b"\r\n\r\n")
                            if head_end >= 0:
                                head = bytes(buffer[:head_end]).lower()
                                if require_200 and not head.startswith(b"http/1.1 200"):
                                    raise ConnectionError(f"bad response: {head[:80]!r}")
                                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                                needed = head_end + 4 + length
                        if needed is not None and len(buffer) >= needed:
                            del buffer[:needed]
                            break
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("server closed the connection")
                        buffer += chunk
                    latencies.append(time.perf_counter() - started)
        except Exception as e:  # reported, never hidden: the run counts its errors
            errors.append(repr(e))

    threads = [threading.Thread(target=one_connection, args=(c,)) for c in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.monotonic() - started, errors
