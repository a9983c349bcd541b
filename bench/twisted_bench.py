"""Twisted on the tm reactor against Twisted's epoll reactor: an echo Protocol (many connections,
small messages, round trips), a twisted.web hello-world (keep-alive GETs) and twisted.web's
static files (`twistd web --path`: keep-alive GETs of files from 1 KiB to 1 MiB), throughput and
p99 latency, tm with 1 and with 2 workers, on each interpreter given, in one run. Never a
pass/fail test: it prints what it measured.

    python bench/twisted_bench.py [--python PY[=PYTHONPATH] ...] [--load-python PY]
        [--kinds echo web static] [--workers 1 2] [--seconds 4] [--rounds 1] [--markdown]

Each server is `bench/twisted_servers.py` in a process of its own, run by the interpreter under
test (default: .venv-gil/bin/python and .venv-ft/bin/python); `PY=PYTHONPATH` runs it with that
PYTHONPATH (for example a scripts/dev_overlay.sh build). The load generators, bench/echo_load.py
(one thread, a selector, 32 connections, 64-byte messages) and bench/http_load.py (8 threads, one
keep-alive connection each, GET / or, for static, the files in turn; `--http-load wrk` uses wrk,
one thread in C, with bench/wrk_paths.lua instead), run in processes of their own on --load-python (default
.venv-gil/bin/python, the same for every server so that only the server changes). Everything
shares the machine's cores: on a small machine the load generator takes part of what the server
could use, which caps what 2 workers can show. For echo each line shows `load-cpu`, the generator's
CPU seconds per wall second: near 1.00 means the generator, not the server, set the pace.

With --rounds N every configuration runs N times, interleaved, and the table shows the median
rate and the median p99. Ratios are of rates: x2/x1 is tm with the last --workers count over tm
with the first, tm/epoll is tm over the epoll reactor on the same interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def interpreter_of(spec: str) -> tuple[str, str | None]:
    python, _, pythonpath = spec.partition("=")
    return python, (pythonpath or None)


class Server:
    """One bench/twisted_servers.py process, started and stopped around one load run."""

    def __init__(
        self, spec: str, reactor: str, workers: int, kind: str, scratch: str, root: str
    ) -> None:
        python, pythonpath = interpreter_of(spec)
        env = dict(os.environ)
        env.pop("TM_WORKERS", None)  # the worker count is the command line's, nothing else
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.port_file = os.path.join(scratch, f"port-{time.monotonic_ns()}.json")
        self.log = open(self.port_file + ".log", "w+")
        self.process = subprocess.Popen(
            [
                python,
                str(ROOT / "bench" / "twisted_servers.py"),
                "--reactor",
                reactor,
                "--workers",
                str(workers),
                "--kind",
                kind,
                "--port-file",
                self.port_file,
                "--root",
                root,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_listening(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    return json.load(f)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.output()[-2000:]}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# The static files: sizes from 1 KiB to 1 MiB, most of them small, as a site's assets are.
STATIC_SIZES = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20] * 2 + [2 << 10] * 8


def make_static_root(scratch: str) -> tuple[str, list[str]]:
    root = os.path.join(scratch, "static")
    os.makedirs(root, exist_ok=True)
    paths = []
    for i, size in enumerate(STATIC_SIZES):
        name = f"f{i:02d}-{size}.bin"
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))
        paths.append("/" + name)
    return root, paths


def load(kind: str, port: int, args, paths: list[str]) -> dict:
    if kind == "echo":
        command = [
            str(ROOT / "bench" / "echo_load.py"),
            "--port",
            str(port),
            "--connections",
            str(args.echo_connections),
            "--size",
            str(args.size),
            "--seconds",
            str(args.seconds),
        ]
    elif args.http_load == "wrk":
        return wrk_load(port, paths if kind == "static" else ["/"], args)
    else:
        command = [
            str(ROOT / "bench" / "http_load.py"),
            "--port",
            str(port),
            "--path",
            *(paths if kind == "static" else ["/"]),
            "--connections",
            str(args.web_connections),
            "--seconds",
            str(args.seconds),
        ]
    done = subprocess.run(
        [args.load_python, *command], capture_output=True, text=True, timeout=args.seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    result["rate"] = result["rtps"] if kind == "echo" else result["rps"]
    return result


def wrk_load(port: int, paths: list[str], args) -> dict:
    """wrk (one thread, epoll, C) instead of bench/http_load.py: on a small machine it leaves the
    server most of the cores that a Python generator's threads would take."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{args.web_connections}",
            f"-d{args.seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk_paths.lua"),
            f"http://127.0.0.1:{port}/",
            "--",
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=args.seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["load_cpu_share"] = cpu / result["seconds"]
    result["rate"] = result["rps"]
    return result


def measure(
    spec: str,
    kind: str,
    reactor: str,
    workers: int,
    args,
    scratch: str,
    static: tuple[str, list[str]],
) -> dict:
    server = Server(spec, reactor, workers, kind, scratch, static[0])
    try:
        info = server.wait_listening()
        expected = "TMReactor" if reactor == "tm" else "EPollReactor"
        if info["reactor"] != expected or (reactor == "tm" and info["workers"] != workers):
            raise RuntimeError(f"asked for {reactor} x{workers}, the server runs {info}")
        result = load(kind, info["port"], args, static[1])
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited during the run: {server.output()[-2000:]}")
        result["server"] = info
        return result
    except Exception as e:  # one configuration failing is reported in the table, not fatal
        return {"failed": str(e)}
    finally:
        server.stop()


def label(config: tuple[str, int]) -> str:
    return "epoll" if config[0] == "epoll" else f"tm x{config[1]}"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def loadavg() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        action="append",
        metavar="PY[=PYTHONPATH]",
        help="an interpreter to run the servers (repeat; default both venvs)",
    )
    parser.add_argument("--load-python", default=str(ROOT / ".venv-gil" / "bin" / "python"))
    parser.add_argument(
        "--kinds", nargs="+", choices=["echo", "web", "static"], default=["echo", "web", "static"]
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=4.0, help="load per configuration")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--echo-connections", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="echo message bytes")
    parser.add_argument("--web-connections", type=int, default=8)
    parser.add_argument(
        "--http-load",
        choices=["python", "wrk"],
        default="python",
        help="web and static load generator: bench/http_load.py on --load-python, or wrk",
    )
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    pythons = args.python or [
        str(ROOT / ".venv-gil" / "bin" / "python"),
        str(ROOT / ".venv-ft" / "bin" / "python"),
    ]
    configs = [("epoll", 1)] + [("tm", w) for w in args.workers]

    started = time.monotonic()
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"{os.cpu_count()} cores, load average {loadavg()} at the start"
    )
    print(
        f"echo: {args.echo_connections} connections, {args.size}-byte messages; web: "
        f"{args.web_connections} keep-alive connections, GET / (static: {len(STATIC_SIZES)} files "
        f"of 1 KiB-1 MiB in turn); {args.seconds:g} s per "
        f"configuration, {args.rounds} round(s); load generator {args.load_python}"
        + (" (web and static: wrk -t1)" if args.http_load == "wrk" else ""),
        flush=True,
    )

    # (python, kind, config) -> the results of each round
    results: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="tm-twisted-bench-") as scratch:
        static = make_static_root(scratch)
        for round_ in range(args.rounds):
            for kind in args.kinds:
                for spec in pythons:
                    for config in configs:
                        r = measure(spec, kind, config[0], config[1], args, scratch, static)
                        results.setdefault((spec, kind, config), []).append(r)
                        where = interpreter_of(spec)[0]
                        if "failed" in r:
                            print(
                                f"  round {round_ + 1} {kind} {label(config)} on {where}: "
                                f"FAILED {r['failed']}",
                                flush=True,
                            )
                            continue
                        print(
                            f"  round {round_ + 1} {kind:6} {label(config):6} {r['rate']:9.0f}/s "
                            f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms "
                            f"errors {r['errors']}"
                            + (
                                f" load-cpu {r['load_cpu_share']:.2f}"
                                if "load_cpu_share" in r
                                else ""
                            )
                            + f"  python {r['server']['python']}"
                            f"{'t' if r['server']['free_threaded'] else ''} tm {r['server']['tm']}"
                            + (f" ({r['first_error']})" if r["errors"] else ""),
                            flush=True,
                        )

    def summary(spec, kind, config):
        ok = [r for r in results[(spec, kind, config)] if "failed" not in r]
        if not ok:
            return None
        return {
            "rate": statistics.median(r["rate"] for r in ok),
            "p99_ms": statistics.median(r["p99_ms"] for r in ok),
            "server": ok[0]["server"],
        }

    def ratio(a, b):
        return f"{a['rate'] / b['rate']:.2f}" if a and b and b["rate"] else "-"

    def cell(s):
        return f"{s['rate']:.0f} ({s['p99_ms']:.2f})" if s else "failed"

    first, last = ("tm", args.workers[0]), ("tm", args.workers[-1])
    heads = [label(c) + " /s (p99 ms)" for c in configs]
    ratio_heads = [f"{label(last)}/{label(first)}", f"{label(first)}/epoll", f"{label(last)}/epoll"]
    rows = []
    for kind in args.kinds:
        for spec in pythons:
            s = {c: summary(spec, kind, c) for c in configs}
            known = next((v for v in s.values() if v), None)
            name = interpreter_of(spec)[0]
            if known:
                info = known["server"]
                name = f"{info['python']}{'t' if info['free_threaded'] else ''}" + (
                    " (GIL off)" if info["free_threaded"] and not info["gil_enabled"] else ""
                )
            rows.append(
                [kind, name]
                + [cell(s[c]) for c in configs]
                + [
                    ratio(s[last], s[first]),
                    ratio(s[first], s[("epoll", 1)]),
                    ratio(s[last], s[("epoll", 1)]),
                ]
            )
    table = [["kind", "python"] + heads + ratio_heads] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for row in table:
        print(
            "  ".join(
                v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))
            )
        )
    if args.markdown:
        print()
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "---|" * len(table[0]))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    print(f"\n{time.monotonic() - started:.0f} s in all; load average {loadavg()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
