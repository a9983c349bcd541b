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
import sys

import _load


def run(port: int, connections: int, size: int, seconds: float, warmup: float) -> dict:
    latencies, elapsed, errors, cpu_share = _load.selector_loop(
        port,
        connections,
        seconds,
        warmup,
        lambda rounds: _load.echo_message(rounds, size),
        _load.echo_answered,
    )
    return _load.summary(
        latencies, elapsed, errors, count="round_trips", rate="rtps", cpu_share=cpu_share
    )


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
