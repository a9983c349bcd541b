"""Scaling of the CPU-bound examples: tm at 1, 2 and all workers against the stock reactor or loop
and against N processes sharing the port with SO_REUSEPORT, on several interpreters, in one run.

Never a pass/fail test. The load generator runs in its own process (closed loop, keep-alive
connections; `{n}` in --path becomes a per-request number so that every request misses the
example's cache and does its CPU work). Prints a table with the ratios measured side by side, writes
the results as JSON and, where matplotlib imports (here or in one of the interpreters), a PNG.

    python bench/scaling.py [--python gil=.venv-gil/bin/python --python ft=.venv-ft/bin/python]
        [--pythonpath ft=DIR:DIR ...] [--examples twisted_web asyncio_http] [--workers 1 2 16]
        [--workers-for gil=1,2] [--processes 2 16] [--seconds 5] [--connections 8] [--out out/scaling]

Internal modes (what the driver starts): `serve` (a server process) and `load` (the load generator).
The README's main job (bench/main_job.py) and bench/server_workloads.py import this module for its
servers and load generator.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

import _load

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The CPU-bound examples: file in examples/, the stock server's name, the page that does the work.
EXAMPLE_FILES = {
    "twisted_web": ("twisted_web_site.py", "epoll"),
    "asyncio_http": ("asyncio_http_service.py", "asyncio"),
}


# ---------------------------------------------------------------------------------------------
# serve: one server process


def reuse_port_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def print_tm_stats(kind: str) -> None:
    if kind == "tm":
        import tm

        print("tm-stats " + json.dumps(tm.stats()), flush=True)


def serve_twisted_web(kind: str, workers: int, port: int) -> None:
    if kind == "tm":
        import tm_twisted

        tm_twisted.install(workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    import twisted_web_site

    if kind == "reuseport":
        # Each process listens on its own socket of the same port: the kernel spreads connections.
        sock = reuse_port_socket(port)
        listening = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, twisted_web_site.site())
        sock.close()  # adoptStreamPort duplicated it
    else:
        listening = reactor.listenTCP(port, twisted_web_site.site(), interface="127.0.0.1")
    print(f"listening on {listening.getHost().port}", flush=True)
    reactor.run()
    print_tm_stats(kind)


def serve_asyncio_http(kind: str, workers: int, port: int) -> None:
    import asyncio

    import asyncio_http_service as service

    if kind == "tm":
        import tm_asyncio

        def base():
            # Parallel mode: each connection on a strand of its own (docs/ASYNCIO.md); the serial
            # loop runs every callback under one lock and cannot scale.
            return tm_asyncio.EventLoop(workers=workers, parallel=True)
    else:
        base = asyncio.new_event_loop

    def loop_factory():
        loop = base()
        if kind == "reuseport":
            # The example calls loop.create_server(factory, host, port): add reuse_port=True.
            create_server = loop.create_server

            async def create_server_reusing_port(*args, **kwargs):
                kwargs["reuse_port"] = True
                return await create_server(*args, **kwargs)

            loop.create_server = create_server_reusing_port
        return loop

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(service.serve(port))
    print_tm_stats(kind)


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling.py serve")
    parser.add_argument("example", choices=sorted(EXAMPLE_FILES))
    parser.add_argument("kind", choices=["stock", "tm", "reuseport"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(EXAMPLES))
    {"twisted_web": serve_twisted_web, "asyncio_http": serve_asyncio_http}[args.example](
        args.kind, args.workers, args.port
    )
    return 0


# ---------------------------------------------------------------------------------------------
# load: the load generator


def load(port: int, path: str, connections: int, seconds: float, first: int = 0) -> dict:
    """The summary, with what run_load needs to merge it with other load processes' results."""
    return _load.detailed(
        *_load.http_threads(
            port,
            connections,
            seconds,
            lambda conn, i: path.replace("{n}", f"{first + conn}.{i}"),
            timeout=30,
            nodelay=True,
            require_200=True,
        )
    )


def load_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling.py load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/work?n={n}")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--first", type=int, default=0, help="number of the first connection")
    args = parser.parse_args(argv)
    print(json.dumps(load(args.port, args.path, args.connections, args.seconds, args.first)))
    return 0


# ---------------------------------------------------------------------------------------------
# the driver


class Interpreter:
    def __init__(self, label: str, python: str, pythonpath: str | None) -> None:
        self.label, self.python, self.pythonpath = label, python, pythonpath
        self.version = subprocess.run(
            [
                python,
                "-c",
                "import sys, sysconfig; print(sys.version.split()[0] + "
                "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        paths = [p for p in (self.pythonpath, str(EXAMPLES), env.get("PYTHONPATH")) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(extra or {})
        return env


def spawn_server(cmd: list[str], env: dict) -> subprocess.Popen:
    """A server process in a session of its own; await_port reads its output."""
    server = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    server.lines, server.reader = [], None
    return server


def await_port(server: subprocess.Popen, cmd: list[str], port_pattern: str) -> int:
    """The port in the server's first line that matches port_pattern (within 60 s)."""
    seen = server.lines
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(port_pattern, line)
        if match:
            # Keep reading its output (twistd logs every request): a full pipe would stall it.
            server.reader = threading.Thread(target=lambda: seen.extend(server.stdout), daemon=True)
            server.reader.start()
            return int(match.group(1))
    server.kill()
    raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{''.join(seen)[-3000:]}")


def start_server(cmd: list[str], env: dict, port_pattern: str) -> tuple[subprocess.Popen, int]:
    server = spawn_server(cmd, env)
    return server, await_port(server, cmd, port_pattern)


def start_servers(
    command: Callable[[int], list[str]], count: int, env: dict, port_pattern: str
) -> tuple[list[subprocess.Popen], int]:
    """count servers sharing one port (SO_REUSEPORT): command(0) binds a free port and prints it,
    command(port) starts each of the others on it, all at once (16 start-ups one after the other
    would take longer than the measurement)."""
    servers: list[subprocess.Popen] = []
    try:
        first, port = start_server(command(0), env, port_pattern)
        servers.append(first)
        servers += [spawn_server(command(port), env) for _ in range(count - 1)]
        for server in servers[1:]:
            await_port(server, command(port), port_pattern)
    except BaseException:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        raise
    return servers, port


def stop_servers(servers: list[subprocess.Popen]) -> list[str]:
    """SIGTERM to all, then the rest of each one's output (where `serve` prints tm-stats)."""
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if server.reader:
            server.reader.join(timeout=10)
    return ["".join(server.lines) for server in servers]


def stop_server(server: subprocess.Popen) -> str:
    return stop_servers([server])[0]


def run_load(args, port: int) -> dict:
    """The load generator: --load-processes processes sharing --connections, merged."""
    me = str(pathlib.Path(__file__).resolve())
    return _load.run_processes(
        lambda first, count: [
            args.load_python,
            me,
            "load",
            "--port",
            str(port),
            "--path",
            args.path,
            "--connections",
            str(count),
            "--seconds",
            str(args.seconds),
            "--first",
            str(first),
        ],
        args.connections,
        args.load_processes,
    )


def measure(args, interp: Interpreter, example: str, kind: str, n: int) -> dict:
    """One configuration: kind stock (1 process), tm (n workers) or reuseport (n processes)."""
    me = str(pathlib.Path(__file__).resolve())
    extra = {}
    result_log = None
    if args.conflict_log and kind == "tm":  # the log of this run, for python -m tm.report
        log = pathlib.Path(args.conflict_log) / f"{example}-{interp.label}-tm{n}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        extra["TM_CONFLICT_LOG"] = str(log)
        result_log = str(log)
    servers, port = start_servers(
        lambda port: [
            interp.python,
            me,
            "serve",
            example,
            kind,
            "--workers",
            str(n),
            "--port",
            str(port),
        ],
        n if kind == "reuseport" else 1,
        interp.env(extra),
        r"^listening on (\d+)",
    )
    try:
        result = run_load(args, port)
        dead = [s for s in servers if s.poll() is not None]
    finally:
        outputs = stop_servers(servers)
    if dead:
        raise RuntimeError("the server exited under load:\n" + "".join(dead[0].lines)[-1500:])
    for out in outputs:
        for line in out.splitlines():
            if line.startswith("tm-stats "):
                result["tm_stats"] = json.loads(line[len("tm-stats ") :])
    if result_log:
        result["conflict_log"] = result_log
    return result


def configurations(args, label: str) -> list[tuple[str, int]]:
    configs = [("stock", 1)]
    configs += [("tm", w) for w in args.workers_for.get(label, args.workers)]
    configs += [("reuseport", n) for n in args.processes]
    return configs


def config_name(example: str, kind: str, n: int) -> str:
    if kind == "stock":
        return EXAMPLE_FILES[example][1]
    return f"tm x{n}" if kind == "tm" else f"{n} procs"


def fmt(r: dict | None) -> str:
    if r is None:
        return "-"
    text = f"{r['rps']:.0f} ({r['p99_ms']:.1f})"
    return text + (f" [{r['errors']} errors]" if r["errors"] else "")


def ratio(results: dict, a: tuple, b: tuple) -> str:
    ra, rb = results.get(a), results.get(b)
    if not ra or not rb or not rb["rps"]:
        return "-"
    return f"{ra['rps'] / rb['rps']:.2f}"


def print_table(args, rows: list[dict]) -> None:
    workers, processes = args.workers, args.processes
    top = max(workers)
    head = (
        ["example", "interpreter", "stock"]
        + [f"tm x{w}" for w in workers]
        + [f"{n} procs" for n in processes]
        + [f"tm x{w}/x1" for w in workers if w != 1]
        + [f"tm x{n}/{n} procs" for n in processes if n in workers]
        + ["tm x1/stock", f"tm x{top}/stock"]
    )
    print()
    print("req/s (p99 ms); ratios of req/s measured side by side in this run")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        res = row["results"]
        cells = [row["example"], row["interpreter"], fmt(res.get(("stock", 1)))]
        cells += [fmt(res.get(("tm", w))) for w in workers]
        cells += [fmt(res.get(("reuseport", n))) for n in processes]
        cells += [ratio(res, ("tm", w), ("tm", 1)) for w in workers if w != 1]
        cells += [ratio(res, ("tm", n), ("reuseport", n)) for n in processes if n in workers]
        cells += [ratio(res, ("tm", 1), ("stock", 1)), ratio(res, ("tm", top), ("stock", 1))]
        print("| " + " | ".join(cells) + " |")
    print()
    print("tm statistics per run (from tm.stats() in the server at exit):")
    for row in rows:
        for (kind, n), r in row["results"].items():
            if kind == "tm" and r.get("tm_stats"):
                print(
                    f"  {row['example']:12} {row['interpreter']:8} tm x{n:<3} {stats_line(r['tm_stats'])}"
                )


def stats_line(s: dict) -> str:
    aborts = {k: v for k, v in s.get("aborts", {}).items() if v}
    return (
        f"commits {s.get('commits', 0)}, inevitable {s.get('inevitable_commits', 0)}, "
        f"aborts {s.get('total_aborts', 0)}{' ' + str(aborts) if aborts else ''}, "
        f"{s.get('seconds_inevitable', 0.0) * 1e3:.0f} ms inevitable, "
        f"{s.get('seconds_aborted', 0.0) * 1e3:.0f} ms lost to aborts"
    )


def plot(data: dict, png: str) -> bool:
    """Req/s against workers or processes, one panel per example; False if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    examples = sorted({row["example"] for row in data["rows"]})
    fig, axes = plt.subplots(1, len(examples), figsize=(6 * len(examples), 4.5), squeeze=False)
    for ax, example in zip(axes[0], examples):
        rows = [row for row in data["rows"] if row["example"] == example]
        for color, row in zip(("tab:blue", "tab:red", "tab:green", "tab:purple"), rows):
            res = {(r["kind"], r["n"]): r for r in row["results"]}
            stock = res.get(("stock", 1))
            for kind, style in (("tm", "o-"), ("reuseport", "s--")):
                points = sorted((n, r["rps"]) for (k, n), r in res.items() if k == kind)
                if kind == "reuseport" and stock:  # 1 process is the stock server
                    points = [(1, stock["rps"])] + points
                if points:
                    label = f"{row['interpreter']} {'tm workers' if kind == 'tm' else 'stock, N processes'}"
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        style,
                        color=color,
                        label=label,
                    )
        ax.set_title(f"{example}: {data['path']}")
        ax.set_xlabel("tm workers / processes (SO_REUSEPORT)")
        ax.set_xscale("log", base=2)
        ticks = sorted({r["n"] for row in rows for r in row["results"]} | {1})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_ylabel("requests/s")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{data['cores']} cores, commit {data['commit']}, {data['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return True


def plot_main(argv: list[str]) -> int:
    json_path, png = argv
    return 0 if plot(json.loads(pathlib.Path(json_path).read_text()), png) else 3


def write_outputs(args, data: dict, interps: list[Interpreter]) -> None:
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, png = str(out) + ".json", str(out) + ".png"
    pathlib.Path(json_path).write_text(json.dumps(data, indent=1))
    print(f"results: {json_path}")
    if plot(data, png):
        print(f"plot: {png}")
        return
    for interp in interps:  # matplotlib may import in one of the server interpreters
        done = subprocess.run(
            [interp.python, str(pathlib.Path(__file__).resolve()), "plot", json_path, png],
            capture_output=True,
            text=True,
            env=interp.env(),
        )
        if done.returncode == 0:
            print(f"plot: {png} (drawn by {interp.label})")
            return
    print("no plot: matplotlib does not import on any interpreter of this run")


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("TM_COMMIT", "unknown")


def parse_labelled(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        label, sep, rest = value.partition("=")
        if not sep:
            raise SystemExit(f"--{what} wants LABEL=VALUE, got {value!r}")
        out[label] = rest
    return out


def add_run_arguments(
    parser: argparse.ArgumentParser, python_help: str, workers: list[int]
) -> None:
    """The arguments of a run of servers under load that the driver here and bench/main_job.py
    share: the interpreters, worker counts, load and load generator."""
    cpus = os.cpu_count() or 1
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help=f"{python_help}; default gil and ft from the project's venvs",
    )
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        help="LABEL=PATH, prepended to PYTHONPATH for that interpreter's servers",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=workers)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=max(8, 2 * cpus))
    parser.add_argument("--path", default="/work?n={n}")
    parser.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="load generator processes (sharing the connections)",
    )
    parser.add_argument(
        "--load-python",
        default=None,
        help="the load generator's interpreter (default: the first --python)",
    )


def interpreters(args: argparse.Namespace) -> list[Interpreter]:
    """The interpreters add_run_arguments' --python and --pythonpath name (gil and ft from the
    project's venvs by default); sets args.load_python's default, the first of them."""
    pythons = parse_labelled(args.python, "python") or {
        "gil": str(ROOT / ".venv-gil" / "bin" / "python"),
        "ft": str(ROOT / ".venv-ft" / "bin" / "python"),
    }
    paths = parse_labelled(args.pythonpath, "pythonpath")
    interps = [Interpreter(label, py, paths.get(label)) for label, py in pythons.items()]
    args.load_python = args.load_python or interps[0].python
    return interps


def driver_main(argv: list[str]) -> int:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(
        parser,
        "LABEL=PYTHON, an interpreter that runs the servers (repeatable)",
        sorted({1, 2, cpus}),
    )
    parser.add_argument(
        "--examples", nargs="+", default=list(EXAMPLE_FILES), choices=list(EXAMPLE_FILES)
    )
    parser.add_argument(
        "--workers-for",
        action="append",
        default=[],
        metavar="LABEL=N,N...",
        help="that interpreter's tm worker counts, instead of --workers (gil=1,2: "
        "with the GIL only processes scale)",
    )
    parser.add_argument("--processes", type=int, nargs="*", default=sorted({2, cpus}))
    parser.add_argument(
        "--out", default=str(ROOT / "out" / "scaling"), help="writes OUT.json and OUT.png"
    )
    parser.add_argument(
        "--conflict-log",
        metavar="DIR",
        default=None,
        help="tm runs write TM_CONFLICT_LOG=DIR/EXAMPLE-LABEL-tmN.log (slower: "
        "a diagnostic mode) for python -m tm.report",
    )
    args = parser.parse_args(argv)

    interps = interpreters(args)
    args.workers_for = {
        label: [int(n) for n in counts.split(",")]
        for label, counts in parse_labelled(args.workers_for, "workers-for").items()
    }

    examples = []
    for example in args.examples:
        if (EXAMPLES / EXAMPLE_FILES[example][0]).exists():
            examples.append(example)
        else:
            print(f"skipped {example}: examples/{EXAMPLE_FILES[example][0]} does not exist")
    data = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "cores": cpus,
        "path": args.path,
        "seconds": args.seconds,
        "connections": args.connections,
        "rows": [],
    }
    print(
        f"{cpus} cores, commit {data['commit']}, {args.path}, {args.connections} connections, "
        f"{args.seconds:g} s per configuration, load generator on {args.load_python}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for interp in interps:
        for example in examples:
            results = {}
            for kind, n in configurations(args, interp.label):
                if (kind, n) in results:
                    continue
                try:
                    r = measure(args, interp, example, kind, n)
                except (RuntimeError, subprocess.CalledProcessError, json.JSONDecodeError) as e:
                    print(f"  {example} {interp.label} {config_name(example, kind, n)}: FAILED {e}")
                    continue
                results[(kind, n)] = r
                print(
                    f"  {example:12} {interp.label} ({interp.version}) "
                    f"{config_name(example, kind, n):10} {fmt(r)}",
                    flush=True,
                )
            rows.append(
                {
                    "example": example,
                    "interpreter": f"{interp.label} {interp.version}",
                    "results": results,
                }
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print_table(args, rows)
    data["rows"] = [
        {
            "example": row["example"],
            "interpreter": row["interpreter"],
            "results": [dict(r, kind=k, n=n) for (k, n), r in row["results"].items()],
        }
        for row in rows
    ]
    write_outputs(args, data, interps)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    return driver_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
