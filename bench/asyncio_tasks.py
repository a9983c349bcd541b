"""Where tm_asyncio runs tasks in parallel and where not: the same CPU-bound coroutines started
from main() with asyncio.gather, and started by connections' handlers (asyncio.start_server), on
tm_asyncio with 1 and 2 workers (parallel mode with 2), beside asyncio's default loop. Never a
pass/fail test: it prints wall times and ratios measured side by side in one run.

    python bench/asyncio_tasks.py [--tasks 8] [--steps 20] [--hashes 4000]

Each task does --steps rounds of --hashes SHA-256 digests (a fixed amount of CPU work, so that
other load on the machine stretches every configuration alike), awaiting asyncio.sleep(0) between
rounds.
From main(), the tasks are the loop's (its strand, its lock: docs/ASYNCIO.md "Tasks"); from
handlers, each is its connection's task, on that connection's strand.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time


def work(hashes: int) -> None:
    data = b"x" * 256
    for _ in range(hashes):
        data = hashlib.sha256(data).digest() * 8


async def task_body(steps: int, hashes: int) -> None:
    for _ in range(steps):
        work(hashes)
        await asyncio.sleep(0)


async def from_main(tasks: int, steps: int, hashes: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(task_body(steps, hashes) for _ in range(tasks)))
    return time.perf_counter() - started


async def from_handlers(tasks: int, steps: int, hashes: int) -> float:
    async def handle(reader, writer):
        await reader.readline()
        await task_body(steps, hashes)
        writer.write(b"done\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(tasks)]
    started = time.perf_counter()
    for _, writer in clients:
        writer.write(b"go\n")
    for reader, writer in clients:
        await reader.readline()
        writer.close()
    elapsed = time.perf_counter() - started
    server.close()
    await server.wait_closed()
    return elapsed


def child(loop_name: str, workers: int, tasks: int, steps: int, hashes: int) -> None:
    factory = None
    if loop_name == "tm":
        import tm_asyncio

        factory = lambda: tm_asyncio.EventLoop(workers=workers, parallel=workers > 1)  # noqa: E731
    results = []
    for scenario in (from_main, from_handlers):
        results.append(asyncio.run(scenario(tasks, steps, hashes), loop_factory=factory))
    print(" ".join(f"{r:.4f}" for r in results))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hashes", type=int, default=4000)
    parser.add_argument("--child", nargs=2, metavar=("LOOP", "WORKERS"))
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.tasks, args.steps, args.hashes)
        return 0
    configs = [("asyncio", 1), ("tm", 1), ("tm", 2)]
    times = {}
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.tasks} tasks x "
        f"{args.steps} steps x {args.hashes} SHA-256 digests; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    for loop_name, workers in configs:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                loop_name,
                str(workers),
                "--tasks",
                str(args.tasks),
                "--steps",
                str(args.steps),
                "--hashes",
                str(args.hashes),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TM_WORKERS=str(workers)),
        ).stdout.split()
        times[(loop_name, workers)] = [float(v) for v in out]
    print(f"{'':14s} {'from main()':>12s} {'from handlers':>14s}")
    for (loop_name, workers), (main_s, handlers_s) in times.items():
        name = loop_name if loop_name == "asyncio" else f"tm x{workers}"
        print(f"{name:14s} {main_s:11.3f}s {handlers_s:13.3f}s")
    one, two = times[("tm", 1)], times[("tm", 2)]
    print(f"{'tm x1 / x2':14s} {one[0] / two[0]:11.2f}x {one[1] / two[1]:13.2f}x  (speed-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
