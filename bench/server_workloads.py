"""Server workloads (bench/workloads.py: a JSON API, a template page, a chat broadcast) on the stock
reactor or loop, on tm at 1 and 2 workers and as 2 processes sharing the port, beside the
interpreter's ceiling: the same per-request work in 1 and 2 plain threads with no reactor. One run.

Never a pass/fail test. The servers run on one interpreter (--python, default the free-threaded
venv), each in its own process; the load generator runs in another (--load-python, default the
GIL venv), closed loop: keep-alive HTTP connections, a thread each (bench/_load.py), for json and
template; for chat, line-protocol clients on one selector, in rooms of --room-size, each waiting
for its own broadcast line before it sends the next. The ceiling runs the work of one request (one
broadcast for chat) in plain threads of the servers' interpreter (bench/thread_scaling.py's
units_per_second), without sockets, HTTP or Twisted: the most any server could get from that work
on this interpreter with 1 and 2 threads.

    python bench/server_workloads.py [--workloads json template chat] [--servers twisted asyncio]
        [--seconds 3] [--connections 8] [--python .venv-ft/bin/python]
        [--load-python .venv-gil/bin/python] [--out out/server_workloads]

Prints a table per unit (requests/s; chat: lines delivered/s) with the ratios measured side by side
and writes OUT.json. 2 processes are not run for chat: two processes would hold two disjoint sets
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
    args = parser.parse_args(argv)
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
            body=lambda conn, i: orders[(conn * 7 + i) % len(orders)],
        )
    else:
        latencies, elapsed, errors = _load.http_threads(
            args.port,
            args.connections,
            args.seconds,
            lambda conn, i: f"/page?n={conn * 1000003 + i}",
            timeout=30,
            nodelay=True,
            require_200=True,
        )
    print(json.dumps(dict(_load.summary(latencies, elapsed, errors), units_total=len(latencies))))
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
    args = parser.parse_args(argv)
    unit, scale = ceiling_unit(args.workload, args.room_size)
    unit()  # warm: compiled regexes, first allocations
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
    processes = n if kind == "reuseport" else 1
    servers = []
    port = 0
    try:
        for _ in range(processes):
            cmd = [
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
            ]
            proc, port = scaling.start_server(cmd, env, r"^listening on (\d+)")
            servers.append(proc)
        if workload == "chat":
            load = [
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
            ]
        else:
            load = [
                args.load_python,
                ME,
                "load-http",
                workload,
                "--port",
                str(port),
                "--connections",
                str(args.connections),
                "--seconds",
                str(args.seconds),
            ]
        cpu_before = sum(cpu_seconds(s.pid) for s in servers)
        result = run_json(load, timeout=args.seconds + 120)
        cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
        result["server_cpu_s"] = cpu
        result["cpu_us"] = cpu / max(result["units_total"], 1) * 1e6
        dead = [s for s in servers if s.poll() is not None]
    finally:
        outputs = [scaling.stop_server(s) for s in servers]
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


def div(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def print_table(rows: list[dict], ceilings: dict) -> None:
    head = [
        "workload",
        "server",
        "stock",
        "tm x1",
        "tm x2",
        "2 procs",
        "ceiling 1 thr",
        "ceiling 2 thr",
        "tm x2/x1",
        "ceiling x2/x1",
        "tm x2/2 procs",
        "tm x1/stock",
        "tm x1/ceiling 1",
        "tm x2/ceiling 2",
    ]
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
        c1, c2 = c.get("1"), c.get("2")
        cells = [
            row["workload"],
            row["server"],
            fmt(res.get(("stock", 1))),
            fmt(res.get(("tm", 1))),
            fmt(res.get(("tm", 2))),
            fmt(res.get(("reuseport", 2))),
            f"{c1:.0f}" if c1 else "-",
            f"{c2:.0f}" if c2 else "-",
            div(rps(("tm", 2)), rps(("tm", 1))),
            div(c2, c1),
            div(rps(("tm", 2)), rps(("reuseport", 2))),
            div(rps(("tm", 1)), rps(("stock", 1))),
            div(rps(("tm", 1)), c1),
            div(rps(("tm", 2)), c2),
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "server CPU per request (chat: per message broadcast to its room), us: the server "
        "processes' utime+stime over the load / the requests answered; ceiling: the threads' "
        "CPU / units of work. Less sensitive to a busy machine than the rates"
    )
    head = [
        "workload",
        "server",
        "ceiling 1 thr",
        "ceiling 2 thr",
        "stock",
        "tm x1",
        "tm x2",
        "2 procs",
        "tm x1 - ceiling 1",
        "tm x2 - ceiling 2",
        "tm x1 - stock",
    ]
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

        cells = [
            row["workload"],
            row["server"],
            cell(c.get("cpu_us_1")),
            cell(c.get("cpu_us_2")),
            cell(us(("stock", 1))),
            cell(us(("tm", 1))),
            cell(us(("tm", 2))),
            cell(us(("reuseport", 2))),
            diff(us(("tm", 1)), c.get("cpu_us_1")),
            diff(us(("tm", 2)), c.get("cpu_us_2")),
            diff(us(("tm", 1)), us(("stock", 1))),
        ]
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
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8, help="HTTP connections")
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
    print(
        f"{os.cpu_count()} cores, commit {scaling.commit()}, servers on {interp.version}, "
        f"load generator on {args.load_python}, {args.seconds:g} s per configuration, "
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
                    "1",
                    "2",
                    "--seconds",
                    str(min(args.seconds, 2.0)),
                    "--room-size",
                    str(args.room_size),
                ],
                interp.env(),
            )
        except (RuntimeError, subprocess.SubprocessError, json.JSONDecodeError) as e:
            print(f"  {workload} ceiling: FAILED {e}")
            continue
        c = ceilings[workload]
        print(
            f"  {workload:8} ceiling 1 thread {c['1']:.0f}/s ({c['cpu_us_1']:.1f} us CPU a "
            f"unit), 2 threads {c['2']:.0f}/s ({c['cpu_us_2']:.1f} us)",
            flush=True,
        )
    rows = []
    for workload in args.workloads:
        servers = list(args.servers)
        if workload == "chat" and args.chat_nodelay and "twisted" in servers:
            servers.insert(servers.index("twisted") + 1, "twisted+nodelay")
        for server in servers:
            configs = [("stock", 1), ("tm", 1), ("tm", 2)]
            if workload != "chat":
                configs.append(("reuseport", 2))
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
    print_table(rows, ceilings)
    out = pathlib.Path(args.out + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "commit": scaling.commit(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "interpreter": interp.version,
                "seconds": args.seconds,
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
