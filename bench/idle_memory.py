"""Memory per idle connection: a server holding N idle TCP connections (default 10,000) under the tm
Twisted reactor (1 and 2 workers), Twisted's epoll reactor, tm_asyncio (1 and 2 workers) and
asyncio's default loop, measured from the server process's /proc status. Never a pass/fail test.

    python bench/idle_memory.py [--connections 10000] [--python .venv-ft/bin/python]
        [--servers tm_twisted:1 tm_twisted:2 epoll tm_asyncio:1 tm_asyncio:2 asyncio]

For each server: start it (a protocol that keeps its transport and does nothing), open and close a
hundred connections twice to warm it, read VmRSS and the PSS of /proc/PID/smaps_rollup, open the N
connections (this process holds the client ends), wait until the server has accepted all of them
(its open descriptors) and its RSS has settled, read them again, and print the difference per
connection. The kernel's socket structures and buffers are not in a process's RSS: the difference
is the user-space cost of a connection (the reactor's and the interpreter's objects). The soft
RLIMIT_NOFILE is raised to the hard limit in both processes; where the hard limit is below what N
needs, the run uses what it allows and says so. Client sockets close with SO_LINGER 0 (no
TIME_WAIT), so that runs back to back do not run out of local ports.

Internal mode: `serve KIND WORKERS` (the server).
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ME = str(pathlib.Path(__file__).resolve())
KINDS = ("tm_twisted", "epoll", "tm_asyncio", "asyncio")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------------------------
# serve


def serve_twisted(kind: str, workers: int) -> None:
    if kind == "tm_twisted":
        import tm_twisted

        tm_twisted.install(workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import protocol, reactor

    class Idle(protocol.Protocol):
        pass  # Protocol.makeConnection keeps the transport

    factory = protocol.Factory.forProtocol(Idle)
    port = reactor.listenTCP(0, factory, backlog=1024, interface="127.0.0.1")
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()


def serve_asyncio(kind: str, workers: int) -> None:
    import asyncio

    class Idle(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=1024)
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    if kind == "tm_asyncio":
        import tm_asyncio

        def loop_factory():
            return tm_asyncio.EventLoop(workers=workers, parallel=workers > 1)
    else:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def serve_main(argv: list[str]) -> int:
    kind, workers = argv[0], int(argv[1])
    raise_nofile()
    if kind in ("tm_twisted", "epoll"):
        serve_twisted(kind, workers)
    else:
        serve_asyncio(kind, workers)
    return 0


# ---------------------------------------------------------------------------------------------
# the driver


def memory(pid: int) -> dict:
    """VmRSS and, where the kernel has smaps_rollup, Pss and its anonymous part, in bytes."""
    out = {}
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    out["rss"] = int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) * 1024
    try:
        rollup = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for field, key in (("Pss", "pss"), ("Pss_Anon", "pss_anon")):
        match = re.search(rf"^{field}:\s+(\d+) kB", rollup, re.M)
        if match:
            out[key] = int(match.group(1)) * 1024
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(condition, timeout: float, what: str, state=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}" + (f" ({state()})" if state else ""))
        time.sleep(0.05)


def settle(pid: int, seconds: float = 1.0, timeout: float = 10.0) -> dict:
    """Memory once RSS has moved less than 64 KiB over `seconds` (or after timeout)."""
    deadline = time.monotonic() + timeout
    last = memory(pid)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = memory(pid)
        if abs(now["rss"] - last["rss"]) < 64 * 1024:
            return now
        last = now
    return last


def connect(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socks.append(sock)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()
    socks.clear()


def drain(stream, tail: collections.deque) -> None:
    """Reads the server's output to its end, keeping the last lines. A server whose output nobody
    reads blocks once the pipe is full: an accept loop that logs each EMFILE retry stopped the
    server that way, closes and all."""
    for line in stream:
        tail.append(line)


def measure(python: str, kind: str, workers: int, connections: int, env: dict) -> dict:
    server = subprocess.Popen(
        [python, ME, "serve", kind, str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    socks: list[socket.socket] = []
    output: collections.deque = collections.deque(maxlen=40)
    try:
        line = server.stdout.readline()
        match = re.search(r"listening on (\d+)", line)
        if not match:
            raise RuntimeError(f"server did not start: {line}{server.stdout.read()[-2000:]}")
        threading.Thread(target=drain, args=(server.stdout, output), daemon=True).start()
        port, pid = int(match.group(1)), server.pid
        idle_fds = open_fds(pid)
        for _ in range(2):  # warm: the code paths of accepting and closing, the allocators' pools
            socks = connect(port, 100)
            wait_for(lambda: open_fds(pid) >= idle_fds + 100, 30, "the warm-up accepts")
            close_all(socks)
            # The tm reactors open a few descriptors of their own on first use: allow for them.
            wait_for(
                lambda: open_fds(pid) <= idle_fds + 8,
                30,
                "the warm-up closes",
                lambda: f"{open_fds(pid)} descriptors open, {idle_fds} before",
            )
        before = settle(pid)
        fds_before = open_fds(pid)
        started = time.monotonic()
        for batch in range(0, connections, 500):
            socks += connect(port, min(500, connections - batch))
            wait_for(lambda: open_fds(pid) >= fds_before + len(socks), 60, "the accepts")
        accept_s = time.monotonic() - started
        after = settle(pid)
        close_all(socks)
        wait_for(
            lambda: open_fds(pid) <= fds_before + 8,
            60,
            "the closes",
            lambda: f"{open_fds(pid)} descriptors open, {fds_before} before",
        )
        closed = settle(pid)
        if server.poll() is not None:
            raise RuntimeError("the server exited")
    except RuntimeError as e:
        if output:
            raise RuntimeError(f"{e}; the server's last output:\n{''.join(output)}") from e
        raise
    finally:
        close_all(socks)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    return {
        "before": before,
        "after": after,
        "closed": closed,
        "accept_s": accept_s,
        "per_connection": {k: (after[k] - before[k]) / connections for k in after},
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--python", default=str(ROOT / ".venv-ft" / "bin" / "python"))
    parser.add_argument("--pythonpath", default=None, help="prepended to the server's PYTHONPATH")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=[
            "tm_twisted:1",
            "tm_twisted:2",
            "epoll",
            "tm_asyncio:1",
            "tm_asyncio:2",
            "asyncio",
        ],
    )
    args = parser.parse_args(argv)
    limit = raise_nofile()
    connections = args.connections
    if limit != resource.RLIM_INFINITY and limit < connections + 400:
        connections = max(1, limit - 400)
        print(
            f"RLIMIT_NOFILE hard limit {limit}: {connections} connections instead of "
            f"{args.connections}"
        )
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (args.pythonpath, env.get("PYTHONPATH")) if p
        )
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    print(
        f"{connections} idle connections, server on {args.python} ({version}), commit {commit}, "
        f"RLIMIT_NOFILE {limit}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    head = [
        "server",
        "RSS before",
        "RSS with conns",
        "RSS per conn",
        "PSS per conn",
        "RSS after close",
        "accept s",
    ]
    rows = []
    for spec in args.servers:
        kind, _, workers = spec.partition(":")
        if kind not in KINDS:
            raise SystemExit(f"unknown server {kind!r} (one of {', '.join(KINDS)})")
        name = f"{kind} x{workers}" if workers else kind
        try:
            r = measure(args.python, kind, int(workers or 1), connections, env)
        except RuntimeError as e:
            print(f"  {name}: FAILED {e}", flush=True)
            continue
        per = r["per_connection"]
        cells = [
            name,
            f"{r['before']['rss'] / 2**20:.1f} MiB",
            f"{r['after']['rss'] / 2**20:.1f} MiB",
            f"{per['rss']:.0f} B",
            f"{per['pss']:.0f} B" if "pss" in per else "-",
            f"{r['closed']['rss'] / 2**20:.1f} MiB",
            f"{r['accept_s']:.1f}",
        ]
        rows.append(cells)
        print("  " + ", ".join(f"{h} {c}" for h, c in zip(head, cells)), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
