"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next request
when the previous response arrived, for a fixed time. Prints requests/s and latency percentiles.

    python bench/http_load.py --port 8080 --path /work --connections 8 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time


def one_connection(port: int, path: str, deadline: float, latencies: list[float], errors: list):
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            buffer = b""
            while time.monotonic() < deadline:
                started = time.perf_counter()
                s.sendall(request)
                while True:
                    head_end = buffer.find(b"\r\n\r\n")
                    if head_end >= 0:
                        head = buffer[:head_end].lower()
                        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                        if len(buffer) >= head_end + 4 + length:
                            buffer = buffer[head_end + 4 + length :]
                            break
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    buffer += chunk
                latencies.append(time.perf_counter() - started)
    except Exception as e:  # reported, never hidden: the run counts its errors
        errors.append(repr(e))


def run(port: int, path: str, connections: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list = []
    threads = [
        threading.Thread(target=one_connection, args=(port, path, deadline, latencies, errors))
        for _ in range(connections)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.path, args.connections, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
