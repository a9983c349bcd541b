"""CPU time a Twisted server spends per response: the epoll reactor against the tm reactor, on
the servers and load generators of bench/twisted_bench.py. Never a pass/fail test.

    python bench/twisted_cpu.py [--python PY[=PYTHONPATH] ...] [--kind web|static|echo]
        [--configs epoll:1,tm:1] [--seconds 4] [--rounds 3]

On a machine whose cores other work shares, the rate a server reaches says more about that work
than about the server; what the server's process used per response does not: user and system
time from /proc/PID/stat, read before and after the load, over the responses served (round trips
for echo). The configurations run one after another in each round, so that a change of load hits
them alike; the table gives each configuration's median over the rounds and the ratio to the
first configuration of the same interpreter. Also per response: voluntary and involuntary context
switches of all the server's threads (/proc/PID/task/*/status).
"""

from __future__ import annotations

import argparse
import glob
import os
import pathlib
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import twisted_bench  # noqa: E402  (the servers, the static folder and the load generators)

TICK = os.sysconf("SC_CLK_TCK")


def process_times(pid: int) -> dict:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    voluntary = involuntary = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for line in pathlib.Path(status).read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
        except OSError:
            pass  # a thread that ended in between
    return {
        "user": int(fields[11]) / TICK,
        "system": int(fields[12]) / TICK,
        "voluntary": voluntary,
        "involuntary": involuntary,
    }


def measure(spec: str, kind: str, reactor: str, workers: int, args, scratch: str, static) -> dict:
    server = twisted_bench.Server(spec, reactor, workers, kind, scratch, static[0])
    try:
        info = server.wait_listening()
        expected = "TMReactor" if reactor == "tm" else "EPollReactor"
        if info["reactor"] != expected:
            raise RuntimeError(f"asked for {reactor}, the server runs {info}")
        before = process_times(server.process.pid)
        result = twisted_bench.load(kind, info["port"], args, static[1])
        after = process_times(server.process.pid)
        n = result.get("requests") or result.get("round_trips") or 0
        if not n:
            raise RuntimeError(f"no responses: {result}")
        per = {k: (after[k] - before[k]) / n for k in before}
        return {
            "rate": result["rate"],
            "cpu_us": (per["user"] + per["system"]) * 1e6,
            "user_us": per["user"] * 1e6,
            "system_us": per["system"] * 1e6,
            "voluntary": per["voluntary"],
            "involuntary": per["involuntary"],
        }
    finally:
        server.stop()


def describe(spec: str) -> str:
    python, pythonpath = twisted_bench.interpreter_of(spec)
    return f"{python} ({pythonpath.split(':')[0]})" if pythonpath else python


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", metavar="PY[=PYTHONPATH]")
    parser.add_argument("--load-python", default=str(twisted_bench.ROOT / ".venv-gil/bin/python"))
    parser.add_argument("--kind", choices=["echo", "web", "static"], default="web")
    parser.add_argument("--configs", default="epoll:1,tm:1", help="reactor:workers, ...")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--web-connections", type=int, default=8)
    parser.add_argument("--http-load", choices=["python", "wrk"], default="python")
    parser.add_argument("--echo-connections", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    pythons = args.python or [str(twisted_bench.ROOT / ".venv-ft/bin/python")]
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs.split(",")]
    print(
        f"# {args.kind}, {args.seconds:g} s a run, {args.rounds} rounds, commit "
        f"{twisted_bench.commit()}, {os.cpu_count()} cores, load average "
        f"{twisted_bench.loadavg()} at the start"
    )
    runs: dict[tuple[str, tuple[str, int]], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        static = twisted_bench.make_static_root(scratch)
        for _ in range(args.rounds):
            for spec in pythons:
                for config in configs:
                    r = measure(spec, args.kind, config[0], config[1], args, scratch, static)
                    runs.setdefault((spec, config), []).append(r)
    print(f"# load average {twisted_bench.loadavg()} at the end")
    print("| python | server | us CPU / response (user + system) | ratio | switches / response |")
    print("|---|---|---|---|---|")
    for spec in pythons:
        first = None
        for config in configs:
            rs = runs[(spec, config)]
            cpu = statistics.median(r["cpu_us"] for r in rs)
            user = statistics.median(r["user_us"] for r in rs)
            system = statistics.median(r["system_us"] for r in rs)
            first = first or cpu
            switches = statistics.median(r["voluntary"] + r["involuntary"] for r in rs)
            print(
                f"| {describe(spec)} | {twisted_bench.label(config)} "
                f"| {cpu:.0f} ({user:.0f} + {system:.0f}) | {cpu / first:.2f} | {switches:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
