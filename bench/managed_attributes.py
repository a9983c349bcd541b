"""CPU time of an attribute access on a managed object (tm.manage, as the reactors manage every
protocol factory) against the same access on a plain object. Never a pass/fail test.

    python bench/managed_attributes.py [--python PY[=PYTHONPATH] ...] [--rounds 3]

Three accesses a Twisted protocol makes of its factory: reading a data attribute
(`factory.rooms`), looking up a method (`factory.deliver`) and rebinding an attribute
(`factory.messages = n`); each outside any transaction and inside one (`tm.atomic`, as in a
reactor callback). Each interpreter (or build: PY=PYTHONPATH) runs in a process of its own, one
after another per round; the table gives the medians over the rounds, ns per access, and the
managed access's ratio to the plain one of the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

N = 200_000
ACCESSES = ("get data", "get method", "set")


def _child() -> None:
    import tm

    class Factory:
        def __init__(self) -> None:
            self.rooms: dict = {}
            self.messages = 0

        def deliver(self) -> int:
            return 1

    def per_access(obj: Factory, n: int) -> dict[str, float]:
        cpu = time.process_time
        out = {}
        started = cpu()
        for _ in range(n):
            obj.rooms  # noqa: B018
        out["get data"] = (cpu() - started) / n * 1e9
        started = cpu()
        for _ in range(n):
            obj.deliver  # noqa: B018
        out["get method"] = (cpu() - started) / n * 1e9
        started = cpu()
        for i in range(n):
            obj.messages = i
        out["set"] = (cpu() - started) / n * 1e9
        return out

    plain, managed = Factory(), tm.manage(Factory())
    per_access(managed, 1000)  # warm-up
    result = {"plain": per_access(plain, N), "managed": per_access(managed, N)}
    with tm.atomic():
        result["managed, in tm.atomic"] = per_access(managed, N // 4)
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="PY or PY=PYTHONPATH (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    builds = args.python or [sys.executable]
    runs: dict[str, list[dict]] = {build: [] for build in builds}
    for _ in range(args.rounds):
        for build in builds:
            python, _, pythonpath = build.partition("=")
            env = dict(os.environ)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            out = subprocess.run(
                [python, os.path.abspath(__file__), "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[build].append(json.loads(out))
    print("| build | object | " + " | ".join(ACCESSES) + " |")
    print("|---|---|" + "---|" * len(ACCESSES))
    for build, results in runs.items():
        plain = {a: statistics.median(r["plain"][a] for r in results) for a in ACCESSES}
        for kind in results[0]:
            cells = []
            for access in ACCESSES:
                ns = statistics.median(r[kind][access] for r in results)
                cells.append(
                    f"{ns:,.0f}" + ("" if kind == "plain" else f" ({ns / plain[access]:.1f}x)")
                )
            print(f"| {build} | {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        sys.exit(main())
