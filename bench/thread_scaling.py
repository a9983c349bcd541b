"""The interpreter's own ceiling: the examples' CPU work in plain threads, no reactor, no tm.

Never a pass/fail test. Runs each workload in 1, 2, ... N threads for a fixed time and prints the
work done per second and its ratio to one thread. On a free-threaded CPython this is the most any
reactor can get from N workers for the same work; bench/scaling.py's tm figures are read against it.

    python bench/thread_scaling.py [--threads 1 2 4 8 16] [--seconds 1] [--json OUT.json]

Workloads:
  sha256     the /work page of examples/twisted_web_site.py: 2000 rounds of CPython's own SHA-256
             (each round makes one hash object: an instance of one type shared by every thread)
  arithmetic a loop over local integers (nothing shared between threads but the code object)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import threading
import time

try:
    from _sha2 import sha256
except ImportError:  # CPython 3.11
    from _sha256 import sha256


def sha256_unit() -> None:
    digest = b"/work?n=1"
    for _ in range(2000):
        digest = sha256(digest).digest()


def arithmetic_unit() -> None:
    total = 0
    for i in range(20000):
        total += i * i


WORKLOADS = {"sha256": sha256_unit, "arithmetic": arithmetic_unit}


def units_per_second(unit, threads: int, seconds: float) -> float:
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    done = [0] * threads

    def worker(index: int) -> None:
        start.wait()
        count = 0
        while not stop.is_set():
            unit()
            count += 1
        done[index] = count

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> int:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, 2, cpus}))
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--json", metavar="PATH", help="also writes the rates there")
    parser.add_argument(
        "--immortal-types",
        action="store_true",
        help="first make the extension types immortal, as tm does before a run with more than "
        "one worker (docs/TUNING.md, 'Extension types'); needs tm importable",
    )
    args = parser.parse_args()
    if args.immortal_types:
        from tm._shared_types import immortalize_extension_types

        changed = immortalize_extension_types(max(args.threads))
        print(f"extension types made immortal first: {changed}")
    results = {}
    gil = "GIL off" if sysconfig.get_config_var("Py_GIL_DISABLED") else "GIL"
    print(f"{cpus} cores, CPython {sys.version.split()[0]} ({gil}), {args.seconds} s per point")
    print(
        "| workload | "
        + " | ".join(f"{n} threads" for n in args.threads)
        + " | "
        + " | ".join(f"x{n}/x1" for n in args.threads[1:])
        + " |"
    )
    print("|---" * (2 * len(args.threads)) + "|")
    for name in args.workloads:
        rates = [units_per_second(WORKLOADS[name], n, args.seconds) for n in args.threads]
        results[name] = {str(n): rate for n, rate in zip(args.threads, rates)}
        print(
            f"| {name} | "
            + " | ".join(f"{r:.0f}/s" for r in rates)
            + " | "
            + " | ".join(f"{r / rates[0]:.2f}" for r in rates[1:])
            + " |",
            flush=True,
        )
    if args.json:
        data = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cores": cpus,
            "python": sys.version.split()[0],
            "gil": gil,
            "seconds": args.seconds,
            "threads": args.threads,
            "units_per_second": results,
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
