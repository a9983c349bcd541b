"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next request
when the previous response arrived, for a fixed time. Prints requests/s and latency percentiles.

    python bench/http_load.py --port 8080 --path /work --connections 8 --seconds 5
    python bench/http_load.py --port 8080 --path /a.bin /b.bin ...   # connections cycle through
"""

from __future__ import annotations

import argparse
import json
import sys

import _load


def run(port: int, paths: list[str], connections: int, seconds: float) -> dict:
    # Each connection starts at its own place in the list, so that they ask for different paths.
    latencies, elapsed, errors = _load.http_threads(
        port,
        connections,
        seconds,
        lambda conn, i: paths[(conn * 7 + i) % len(paths)],
        timeout=10,
        require_200=True,
    )
    return _load.summary(latencies, elapsed, errors)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", nargs="+", default=["/"])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.path, args.connections, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
