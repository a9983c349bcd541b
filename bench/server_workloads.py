"""Server workloads (bench/workloads.py: a JSON API, a template page, a chat broadcast) on the stock
reactor or loop, on tm at --workers workers (default 1 and 2) and as --processes processes sharing
the port (default 2), beside the interpreter's ceiling: the same per-request work in plain threads
with no reactor, as many as each of those counts. One run.

Never a pass/fail test. The servers run on one interpreter (--python, default the free-threaded
venv), each in its own process; the load generator runs in another (--load-python, default the
GIL venv), closed loop: keep-alive HTTP connections, a thread each (bench/_load.py), shared among
--load-processes processes (default 1; more where one cannot keep many server workers busy), for
json and template; for chat, line-protocol clients on one selector, in rooms of --room-size, each
waiting for its own broadcast line before it sends the next. The ceiling runs the work of one
request (one broadcast for chat) in plain threads of the servers' interpreter
(bench/thread_scaling.py's units_per_second), without sockets, HTTP or Twisted: the most any
server could get from that work on this interpreter with that many threads.

    python bench/server_workloads.py [--workloads json template chat] [--servers twisted asyncio]
        [--workers 1 2] [--processes 2] [--seconds 3] [--connections 8] [--load-processes 1]
        [--python .venv-ft/bin/python] [--load-python .venv-gil/bin/python]
        [--out out/server_workloads]

Prints a table per unit (requests/s; chat: lines delivered/s) with the ratios measured side by side
and writes OUT.json. Processes are not run for chat: two processes would hold two disjoint sets
of rooms, a different program. Twisted leaves Nagle's algorithm on where asyncio turns it off, so
chat on Twisted runs twice: as written, and as `twisted+nodelay`, whose protocol calls
transport.setTcpNoDelay(True) (TM_BENCH_NODELAY=1).

Internal modes (what the driver starts): `serve`, `load-http`, `load-chat` and `ceiling`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import _load
import scaling
import workloads

ROOT = pathlib.Path(__file__).resolve().parent.parent
ME = str(pathlib.Path(__file__).resolve())
HTTP_WORKLOADS = ("json", "template")
WORKLOADS = ("json", "template", "chat")
SERVERS = ("twisted", "asyncio")
STOCK = {"twisted": "epoll", "twisted+nodelay": "epoll", "asyncio": "asyncio"}


# ---------------------------------------------------------------------------------------------
# serve


def serve_twisted(workload: str, kind: str, workers: int, port: int) -> None:
    if kind == "tm":
        import tm_twisted

        tm_twisted.install(workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    factory = workloads.chat_factory() if workload == "chat" else workloads.site()
    if kind == "reuseport":
        sock = scaling.reuse_port_socket(port)
        listening = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
        sock.close()
    else:
        listening = reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    print(f"listening on {listening.getHost().port}", flush=True)
    reactor.run()
    scaling.print_tm_stats(kind)


def serve_asyncio(workload: str, kind: str, workers: int, port: int) -> None:
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if workload == "chat":
            factory = workloads.asyncio_chat_factory(workloads.ChatRooms())
        else:
            factory = workloads.http_protocol_factory()
        server = await loop.create_server(
            factory, "127.0.0.1", port, backlog=1024, reuse_port=kind == "reuseport"
        )
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.close()

    if kind == "tm":
        import tm_asyncio

        def loop_factory():
            # Parallel mode, as bench/scaling.py: each connection on a strand of its own.
            return tm_asyncio.EventLoop(workers=workers, parallel=True)
    else:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    scaling.print_tm_stats(kind)


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="server_workloads.py serve")
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("server", choices=SERVERS)
    parser.add_argument("kind", choices=["stock", "tm", "reuseport"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    serve = serve_twisted if args.server == "twisted" else serve_asyncio
    serve(args.workload, args.kind, args.workers, args.port)
    return 0


# ---------------------------------------------------------------------------------------------
# load generators (run on --load-python)


def load_http_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="server_workloads.py load-http")
    parser.add_argument("workload", choices=HTTP_WORKLOADS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--first", type=int, default=0, help="number of the first connection")
    args = parser.parse_args(argv)
    first = args.first
    if args.workload == "json":
        orders = [workloads.make_order(n) for n in range(64)]  # built before the clock starts
        latencies, elapsed, errors = _load.http_threads(
            args.port,
            args.connections,
            args.seconds,
            lambda conn, i: "/api/order",
            timeout=30,
            nodelay=True,
            require_200=True,
            body=lambda conn, i: orders[((first + conn) * 7 + i) % len(orders)],
        )
    else:
        latencies, elapsed, errors = _load.http_threads(
            args.port,
            args.connections,
            args.seconds,
            lambda conn, i: f"/page?n={(first + conn) * 1000003 + i}",
            timeout=30,
            nodelay=True,
            require_200=True,
        )
    print(json.dumps(_load.detailed(latencies, elapsed, errors)))
    return 0


def load_chat(port: int, connections: int, room_size: int, seconds: float, warmup: float) -> dict:
    """Clients in rooms of room_size; each sends a line, waits for its own broadcast, sends the
    next. Counts every line delivered to any client (rate: lines/s) and each sender's round trip."""
    selector = selectors.DefaultSelector()
    clients = []
    for c in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = b"c%d" % c
        sock.sendall(b"JOIN %s room%d\n" % (name, c // room_size))
        clients.append(
            {
                "sock": sock,
                "name": name,
                "buf": b"",
                "seq": 0,
                "sent": 0.0,
                "joined": False,
                "expect": b"",
            }
        )
    for client in clients:  # every member is in its room before anyone speaks
        sock = client["sock"]
        while b"\n" not in client["buf"]:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection while joining")
            client["buf"] += chunk
        line, _, client["buf"] = client["buf"].partition(b"\n")
        if line != b"* joined":
            raise ConnectionError(f"join answered {line!r}")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, client)
    perf = time.perf_counter
    latencies: list[float] = []
    errors: list[str] = []
    delivered = 0
    messages_total = 0  # with the warm-up's: what the server's CPU time is divided by

    def send_next(client: dict) -> None:
        client["seq"] += 1
        text = b"m%d hello from the bench, how is everyone today?" % client["seq"]
        client["expect"] = client["name"] + b": " + text
        client["sent"] = perf()
        client["sock"].send(text + b"\n")

    started = perf()
    cpu_started = time.process_time()
    measure_from = started + warmup
    deadline = measure_from + seconds
    for client in clients:
        send_next(client)
    while perf() < deadline:
        for key, _ in selector.select(timeout=1.0):
            client = key.data
            try:
                chunk = client["sock"].recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
            except OSError as e:
                errors.append(repr(e))
                selector.unregister(client["sock"])
                continue
            lines = (client["buf"] + chunk).split(b"\n")
            client["buf"] = lines.pop()
            now = perf()
            if now >= measure_from and now < deadline:
                delivered += len(lines)
            for line in lines:
                if line == client["expect"]:
                    messages_total += 1
                    if measure_from <= now < deadline:
                        latencies.append(now - client["sent"])
                    send_next(client)
    cpu_share = (time.process_time() - cpu_started) / max(perf() - started, 1e-9)
    for client in clients:
        client["sock"].close()
    selector.close()
    result = _load.summary(
        latencies, seconds, errors, count="messages", rate="messages_per_s", cpu_share=cpu_share
    )
    result["delivered"] = delivered
    result["units_total"] = messages_total
    result["rps"] = delivered / seconds  # the rate the tables compare: lines delivered per second
    return result


def load_chat_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="server_workloads.py load-chat")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(
        json.dumps(
            load_chat(args.port, args.connections, args.room_size, args.seconds, args.warmup)
        )
    )
    return 0


# ---------------------------------------------------------------------------------------------
# ceiling: the same work in plain threads (run on the servers' interpreter)


def ceiling_unit(workload: str, room_size: int):
    """(unit, what one unit counts as in the server's rate)."""
    if workload == "json":
        order = workloads.make_order(12345)
        return (lambda: workloads.json_api(order)), 1
    if workload == "template":
        return (lambda: workloads.template_page(12345)), 1
    local = threading.local()  # one room per thread, as each connection's strand holds its own

    def broadcast() -> None:
        rooms = getattr(local, "rooms", None)
        if rooms is None:
            rooms = local.rooms = workloads.ChatRooms()
            for _ in range(room_size):
                rooms.join("room", workloads.Sink())
        rooms.deliver("room", "c1", b"m1 hello from the bench, how is everyone today?")

    return broadcast, room_size


def ceiling_main(argv: list[str]) -> int:
    import thread_scaling

    parser = argparse.ArgumentParser(prog="server_workloads.py ceiling")
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument(
        "--warm",
        type=int,
        default=1,
        help="units run on the main thread first (compiled regexes, first allocations)",
    )
    parser.add_argument(
        "--immortal-values",
        action="store_true",
        help="first make the immutable values immortal, as tm does before a parallel run",
    )
    args = parser.parse_args(argv)
    unit, scale = ceiling_unit(args.workload, args.room_size)
    for _ in range(args.warm):
        unit()
    if args.immortal_values:
        from tm._shared_types import immortalize_values

        immortalize_values(max(args.threads))
    out = {}
    for n in args.threads:
        cpu = time.process_time()
        rate = thread_scaling.units_per_second(unit, n, args.seconds)
        cpu = time.process_time() - cpu
        out[str(n)] = rate * scale
        # CPU per unit of work (per request; chat: per message broadcast): what a busy machine
        # changes least. The main thread sleeps meanwhile.
        out[f"cpu_us_{n}"] = cpu / max(rate * args.seconds, 1) * 1e6
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------------
# the driver


def run_json(cmd: list[str], env: dict | None = None, timeout: float = 120) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def measure(args, interp, workload: str, row_server: str, kind: str, n: int) -> dict:
    server, _, variant = row_server.partition("+")
    env = interp.env({"TM_BENCH_NODELAY": "1" if variant == "nodelay" else "0"})
    servers, port = scaling.start_servers(
        lambda port: [
            interp.python,
            ME,
            "serve",
            workload,
            server,
            kind,
            "--workers",
            str(n),
            "--port",
            str(port),
        ],
        n if kind == "reuseport" else 1,
        env,
        r"^listening on (\d+)",
    )
    try:
        cpu_before = sum(cpu_seconds(s.pid) for s in servers)
        if workload == "chat":
            result = run_json(
                [
                    args.load_python,
                    ME,
                    "load-chat",
                    "--port",
                    str(port),
                    "--connections",
                    str(args.chat_connections),
                    "--room-size",
                    str(args.room_size),
                    "--seconds",
                    str(args.seconds),
                ],
                timeout=args.seconds + 120,
            )
        else:
            result = _load.run_processes(
                lambda first, count: [
                    args.load_python,
                    ME,
                    "load-http",
                    workload,
                    "--port",
                    str(port),
                    "--connections",
                    str(count),
                    "--seconds",
                    str(args.seconds),
                    "--first",
                    str(first),
                ],
                args.connections,
                args.load_processes,
                timeout=args.seconds + 120,
            )
            result["units_total"] = result["requests"]
        cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
        result["server_cpu_s"] = cpu
        result["cpu_us"] = cpu / max(result["units_total"], 1) * 1e6
        dead = [s for s in servers if s.poll() is not None]
    finally:
        outputs = scaling.stop_servers(servers)
    if dead:
        raise RuntimeError("the server exited under load:\n" + "".join(dead[0].lines)[-1500:])
    for out in outputs:
        for line in out.splitlines():
            if line.startswith("tm-stats "):
                result["tm_stats"] = json.loads(line[len("tm-stats ") :])
    return result


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, from /proc/PID/stat."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fmt(r: dict | None) -> str:
    if r is None:
        return "-"
    text = f"{r['rps']:.0f} ({r['p99_ms']:.1f})"
    return text + (f" [{r['errors']} errors]" if r["errors"] else "")


def ceiling_counts(workers: list[int], processes: list[int]) -> list[int]:
    """The thread counts of the ceiling: one for each count of workers or processes."""
    return sorted(set(workers) | set(processes))


def div(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def print_table(rows: list[dict], ceilings: dict, workers: list[int], processes: list[int]) -> None:
    counts = ceiling_counts(workers, processes)
    shared = [n for n in processes if n in workers]
    head = (
        ["workload", "server", "stock"]
        + [f"tm x{w}" for w in workers]
        + [f"{n} procs" for n in processes]
        + [f"ceiling {n} thr" for n in counts]
        + [f"tm x{w}/x1" for w in workers if w != 1 and 1 in workers]
        + [f"ceiling x{n}/x1" for n in counts if n != 1 and 1 in counts]
        + [f"tm x{n}/{n} procs" for n in shared]
        + (["tm x1/stock"] if 1 in workers else [])
        + [f"tm x{w}/ceiling {w}" for w in workers]
    )
    print()
    print(
        "json, template: requests/s (p99 ms); chat: lines delivered/s (p99 ms of a message's "
        "round trip); ceiling: the same work in plain threads, no reactor"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        res = row["results"]

        def rps(key):
            r = res.get(key)
            return r["rps"] if r else None

        c = ceilings.get(row["workload"], {})
        ceiling = {n: c.get(str(n)) for n in counts}
        cells = [row["workload"], row["server"], fmt(res.get(("stock", 1)))]
        cells += [fmt(res.get(("tm", w))) for w in workers]
        cells += [fmt(res.get(("reuseport", n))) for n in processes]
        cells += [f"{ceiling[n]:.0f}" if ceiling[n] else "-" for n in counts]
        cells += [div(rps(("tm", w)), rps(("tm", 1))) for w in workers if w != 1 and 1 in workers]
        cells += [div(ceiling[n], ceiling[1]) for n in counts if n != 1 and 1 in counts]
        cells += [div(rps(("tm", n)), rps(("reuseport", n))) for n in shared]
        cells += [div(rps(("tm", 1)), rps(("stock", 1)))] if 1 in workers else []
        cells += [div(rps(("tm", w)), ceiling[w]) for w in workers]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "server CPU per request (chat: per message broadcast to its room), us: the server "
        "processes' utime+stime over the load / the requests answered; ceiling: the threads' "
        "CPU / units of work. Less sensitive to a busy machine than the rates"
    )
    head = (
        ["workload", "server"]
        + [f"ceiling {n} thr" for n in counts]
        + ["stock"]
        + [f"tm x{w}" for w in workers]
        + [f"{n} procs" for n in processes]
        + [f"tm x{w} - ceiling {w}" for w in workers]
        + (["tm x1 - stock"] if 1 in workers else [])
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        res = row["results"]
        c = ceilings.get(row["workload"], {})

        def us(key):
            r = res.get(key)
            return r.get("cpu_us") if r else None

        def cell(v):
            return "-" if v is None else f"{v:.1f}" if v < 10 else f"{v:.0f}"

        def diff(a, b):
            return f"{a - b:+.0f}" if a is not None and b is not None else "-"

        cells = [row["workload"], row["server"]]
        cells += [cell(c.get(f"cpu_us_{n}")) for n in counts]
        cells += [cell(us(("stock", 1)))] + [cell(us(("tm", w))) for w in workers]
        cells += [cell(us(("reuseport", n))) for n in processes]
        cells += [diff(us(("tm", w)), c.get(f"cpu_us_{w}")) for w in workers]
        cells += [diff(us(("tm", 1)), us(("stock", 1)))] if 1 in workers else []
        print("| " + " | ".join(cells) + " |")
    print()
    print("tm statistics per run (tm.stats() in the server at exit):")
    for row in rows:
        for (kind, n), r in row["results"].items():
            if kind == "tm" and r.get("tm_stats"):
                print(
                    f"  {row['workload']:8} {row['server']:7} tm x{n} "
                    f"{scaling.stats_line(r['tm_stats'])}"
                )
    chat = [
        (row, k, r) for row in rows if row["workload"] == "chat" for k, r in row["results"].items()
    ]
    if chat:
        print(
            "chat load generator CPU share (near 1.0: the generator, not the server, set the "
            "pace):",
            ", ".join(
                f"{row['server']} {k[0]}{k[1]} {r.get('load_cpu_share')}" for row, k, r in chat
            ),
        )


def driver_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="tm worker counts, one configuration each",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[2],
        help="counts of stock processes sharing the port (json, template)",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        default=None,
        help="per thread count of the ceiling (default: --seconds, 2 at most)",
    )
    parser.add_argument("--connections", type=int, default=8, help="HTTP connections")
    parser.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="HTTP load generator processes, sharing the connections",
    )
    parser.add_argument("--chat-connections", type=int, default=16)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument(
        "--no-chat-nodelay",
        dest="chat_nodelay",
        action="store_false",
        help="skip the second Twisted chat row, whose server sets TCP_NODELAY",
    )
    parser.add_argument(
        "--python",
        default=str(ROOT / ".venv-ft" / "bin" / "python"),
        help="the servers' and the ceiling's interpreter",
    )
    parser.add_argument(
        "--pythonpath", default=None, help="prepended to PYTHONPATH for the servers (a dev overlay)"
    )
    parser.add_argument("--load-python", default=str(ROOT / ".venv-gil" / "bin" / "python"))
    parser.add_argument(
        "--out", default=str(ROOT / "out" / "server_workloads"), help="writes OUT.json"
    )
    args = parser.parse_args(argv)
    interp = scaling.Interpreter("servers", args.python, args.pythonpath)
    if args.ceiling_seconds is None:
        args.ceiling_seconds = min(args.seconds, 2.0)
    counts = ceiling_counts(args.workers, args.processes)
    print(
        f"{os.cpu_count()} cores, commit {scaling.commit()}, servers on {interp.version}, "
        f"tm workers {' '.join(map(str, args.workers))}, processes "
        f"{' '.join(map(str, args.processes)) or '-'}, load generator on {args.load_python} "
        f"({args.load_processes} processes for HTTP), {args.seconds:g} s per configuration, "
        f"{args.connections} HTTP connections, chat {args.chat_connections} clients in rooms of "
        f"{args.room_size}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    ceilings = {}
    for workload in args.workloads:
        try:
            ceilings[workload] = run_json(
                [
                    interp.python,
                    ME,
                    "ceiling",
                    workload,
                    "--threads",
                    *map(str, counts),
                    "--seconds",
                    str(args.ceiling_seconds),
                    "--room-size",
                    str(args.room_size),
                ],
                interp.env(),
                timeout=120 + len(counts) * args.ceiling_seconds,
            )
        except (RuntimeError, subprocess.SubprocessError, json.JSONDecodeError) as e:
            print(f"  {workload} ceiling: FAILED {e}")
            continue
        c = ceilings[workload]
        print(
            f"  {workload:8} ceiling "
            + ", ".join(
                f"{n} thread{'s' if n > 1 else ''} {c[str(n)]:.0f}/s ({c[f'cpu_us_{n}']:.1f} us CPU "
                f"a unit)"
                for n in counts
            ),
            flush=True,
        )
    rows = []
    for workload in args.workloads:
        servers = list(args.servers)
        if workload == "chat" and args.chat_nodelay and "twisted" in servers:
            servers.insert(servers.index("twisted") + 1, "twisted+nodelay")
        for server in servers:
            configs = [("stock", 1)] + [("tm", w) for w in args.workers]
            if workload != "chat":
                configs += [("reuseport", n) for n in args.processes]
            results = {}
            for kind, n in configs:
                name = (
                    STOCK[server]
                    if kind == "stock"
                    else (f"tm x{n}" if kind == "tm" else f"{n} procs")
                )
                try:
                    results[(kind, n)] = measure(args, interp, workload, server, kind, n)
                except (RuntimeError, subprocess.SubprocessError, json.JSONDecodeError) as e:
                    print(f"  {workload:8} {server:15} {name:8} FAILED {e}", flush=True)
                    continue
                r = results[(kind, n)]
                print(
                    f"  {workload:8} {server:15} {name:8} {fmt(r)}, {r['cpu_us']:.0f} us CPU a "
                    f"{'message' if workload == 'chat' else 'request'}",
                    flush=True,
                )
            rows.append({"workload": workload, "server": server, "results": results})
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print_table(rows, ceilings, args.workers, args.processes)
    out = pathlib.Path(args.out + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "commit": scaling.commit(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "interpreter": interp.version,
                "seconds": args.seconds,
                "ceiling_seconds": args.ceiling_seconds,
                "workers": args.workers,
                "processes": args.processes,
                "connections": args.connections,
                "load_processes": args.load_processes,
                "load_python": args.load_python,
                "ceilings": ceilings,
                "rows": [
                    {
                        "workload": r["workload"],
                        "server": r["server"],
                        "results": [dict(v, kind=k, n=n) for (k, n), v in r["results"].items()],
                    }
                    for r in rows
                ],
            },
            indent=1,
        )
    )
    print(f"results: {out}")
    return 0


def main(argv: list[str]) -> int:
    modes = {
        "serve": serve_main,
        "load-http": load_http_main,
        "load-chat": load_chat_main,
        "ceiling": ceiling_main,
    }
    if argv[:1] and argv[0] in modes:
        return modes[argv[0]](argv[1:])
    return driver_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
