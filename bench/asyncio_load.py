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
import sys

import _load

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: asyncio_load\r\n\r\n"


def _http_answered(conn: _load.Connection) -> bool:
    """True once conn holds one whole response; raises on anything but a 200 with a length."""
    buffer = conn.received
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
    echo = mode == "echo"

    def request(rounds: int) -> bytes:
        return _load.echo_message(rounds, size) if echo else HTTP_REQUEST

    answered = _load.echo_answered if echo else _http_answered
    latencies, elapsed, errors, _ = _load.selector_loop(
        port, connections, seconds, warmup, request, answered
    )
    return _load.summary(latencies, elapsed, errors, count="round_trips", rate="rtps")


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
