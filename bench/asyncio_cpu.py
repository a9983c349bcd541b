"""CPU time asyncio loops spend per callback and per round trip, each loop in a process of its own:
the call_soon batch and chain of bench/asyncio_bench.py (200,000 callbacks, best of 3 after a
warm-up), timers (100,000 call_later() cancelled before they fire, as a keep-alive or wait_for()
timeout is, and a chain of 100,000 call_later(0) that each schedule the next) and an echo whose
clients run in the loop itself, over a Protocol and over streams (8 connections of 3,000 64-byte
round trips, no load generator). Never a pass/fail test.

    python bench/asyncio_cpu.py [--python PY[=PYTHONPATH] ...] [--loops default,tm-1] [--rounds 3]
                                [--workloads batch chain ... echo-streams]

On a machine whose cores other work shares, rates say more about that work than about the loop;
the process's CPU time (time.process_time) does not. Each round runs every interpreter (or build:
PY=PYTHONPATH) and loop one after another, so that a change of load hits them alike; the table
gives medians over the rounds and each loop's ratio to the default loop of the same interpreter.
Set GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=268435456 when
comparing builds under glibc: the default loop's transports read with recv(256 KiB), and where the
heap's layout sends that buffer to mmap every read costs system calls. tm_asyncio's transports
receive into a per-thread buffer (docs/BENCHMARKS.md, "Reads on a worker thread"); a process that
runs the echo alone (--workloads echo-proto echo-streams) shows what a fresh heap costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from asyncio_bench import _new_loop, call_soon_batch, call_soon_chain  # noqa: E402

N_CALLBACKS = 200_000
N_TIMERS = 100_000
CONNECTIONS, TRIPS = 8, 3_000


WORKLOADS = ("batch", "chain", "timeout", "timer-chain", "echo-proto", "echo-streams")
UNITS = {"echo-proto": "us", "echo-streams": "us"}


def _child(loop_name: str, workloads: list[str]) -> int:
    import asyncio

    loop = _new_loop(loop_name)
    asyncio.set_event_loop(loop)
    cpu = time.process_time

    def batch() -> float:
        return call_soon_batch(loop, N_CALLBACKS, cpu) / N_CALLBACKS * 1e9

    def chain() -> float:
        return call_soon_chain(loop, N_CALLBACKS, cpu) / N_CALLBACKS * 1e9

    def timeouts() -> float:
        # Armed and cancelled inside one callback; the loop then runs until what the
        # cancellations left behind (the default loop's heap entries) is done with.
        def arm_and_cancel():
            for _ in range(N_TIMERS):
                loop.call_later(60.0, print).cancel()
            loop.call_soon(loop.stop)

        started = cpu()
        loop.call_soon(arm_and_cancel)
        loop.run_forever()
        return (cpu() - started) / N_TIMERS * 1e9

    def timer_chain() -> float:
        left = [N_TIMERS]

        def tick():
            left[0] -= 1
            if left[0]:
                loop.call_later(0, tick)
            else:
                loop.stop()

        started = cpu()
        loop.call_soon(tick)
        loop.run_forever()
        return (cpu() - started) / N_TIMERS * 1e9

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def handle(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = b"x" * 64
        for _ in range(TRIPS):
            writer.write(message)
            got = 0
            while got < len(message):
                got += len(await reader.read(1024))
        writer.close()

    async def echo(kind: str) -> float:
        if kind == "proto":
            server = await loop.create_server(Echo, "127.0.0.1", 0)
        else:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        started = cpu()
        await asyncio.gather(*(client(port) for _ in range(CONNECTIONS)))
        elapsed = cpu() - started
        server.close()
        await server.wait_closed()
        return elapsed / (CONNECTIONS * TRIPS) * 1e6

    repeated = {"batch": batch, "chain": chain, "timeout": timeouts, "timer-chain": timer_chain}
    result = {}
    for name in workloads:
        if name in repeated:
            repeated[name]()  # warm-up
            result[name] = min(repeated[name]() for _ in range(3))
        else:
            result[name] = loop.run_until_complete(echo(name.split("-")[1]))
    loop.close()
    print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        return _child(sys.argv[2], sys.argv[3].split(","))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="PY or PY=PYTHONPATH (repeatable)")
    parser.add_argument("--loops", default="default,tm-1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=WORKLOADS,
        default=list(WORKLOADS),
        help="run in this order in each loop's process (default: all); the echo alone shows a "
        "fresh process's heap",
    )
    args = parser.parse_args()
    configs = []
    for spec in args.python or [sys.executable]:
        python, _, path = spec.partition("=")
        configs.append((spec, python, path))
    loops = args.loops.split(",")
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for spec, python, path in configs:
            env = dict(os.environ)
            if path:
                env["PYTHONPATH"] = path
            for loop_name in loops:
                out = subprocess.run(
                    [
                        python,
                        os.path.abspath(__file__),
                        "--child",
                        loop_name,
                        ",".join(args.workloads),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout
                runs.setdefault((spec, loop_name), []).append(json.loads(out.splitlines()[-1]))
    keys = args.workloads
    print(
        f"{'configuration':60} {'loop':8} "
        + " ".join(f"{k + ' ' + UNITS.get(k, 'ns'):>22}" for k in keys)
    )
    for spec, _, _ in configs:
        base = {
            k: statistics.median(r[k] for r in runs[(spec, "default")]) if "default" in loops else 0
            for k in keys
        }
        for loop_name in loops:
            cells = []
            for k in keys:
                value = statistics.median(r[k] for r in runs[(spec, loop_name)])
                ratio = base[k] / value if base[k] else float("nan")
                cells.append(f"{value:>13.1f} ({ratio:.2f}x)")
            print(f"{spec[-60:]:60} {loop_name:8} " + " ".join(f"{c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
