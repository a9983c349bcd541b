"""tm_asyncio against asyncio's default loop and uvloop, side by side in one run (a benchmark: it
never passes or fails).

    python bench/asyncio_bench.py [--python PATH ...] [--seconds 4] [--connections 16]
                                  [--repeat 1] [--callbacks 200000] [--only echo-proto,...]

For every interpreter given (by default the repository's .venv-gil and .venv-ft), every workload
and every loop (asyncio's default loop, uvloop where it imports under that interpreter, tm with 1
worker, tm with 2 workers), it starts a server in a process of its own under that interpreter,
drives it with bench/asyncio_load.py (another process, the first interpreter given, one thread),
and kills it. Workloads:

  echo-proto    echo with an asyncio.Protocol (data_received -> transport.write)
  echo-streams  echo with asyncio.start_server streams (read, write, await drain)
  cpu-streams   echo-streams whose handler first does CPU_WORK pure-Python additions per read
                (about 0.3 ms on the 2-core VM), where handlers running in parallel can pay
  http          a minimal HTTP/1.1 server on a Protocol: keep-alive GETs, a fixed 13-byte body

and, in a process per interpreter and loop, call_soon throughput in callbacks per second: `batch`
queues N callbacks then runs them (the call_soon calls are timed too); `chain` has each callback
call_soon the next. Loops of one workload run one after another, so they see the same machine;
with --repeat R the whole matrix runs R times and each figure is the median. The table gives each
loop's ratio to the default loop on the same interpreter.

Figures from a shared 2-core machine are noisy (client and server share the cores); say so
wherever they are quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ("echo-proto", "echo-streams", "cpu-streams", "http")
CPU_WORK = 10_000
LOOPS = ("default", "uvloop", "tm-1", "tm-2")
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Connection: keep-alive\r\n\r\nHello, world!"
)


# -- in the server process ---------------------------------------------------------------------


def _new_loop(name: str):
    import asyncio

    if name == "default":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    import tm_asyncio

    return tm_asyncio.EventLoop(workers=int(name.split("-")[1]))


def _gil_state() -> str:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is None:
        return "GIL"
    return "GIL (re-enabled)" if is_enabled() else "no GIL"


def _serve(workload: str, loop_name: str) -> int:
    import asyncio

    class EchoProtocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    class HttpProtocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = b""

        def data_received(self, data):
            buffer = self.buffer + data
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                # A GET has no body: the request ends with its head.
                buffer = buffer[end + 4 :]
                self.transport.write(HTTP_RESPONSE)
            self.buffer = buffer

    work = CPU_WORK if workload == "cpu-streams" else 0

    async def echo_stream(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                total = 0
                for i in range(work):  # interpreted work, what a free-threaded handler runs
                    total += i
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    loop = _new_loop(loop_name)
    asyncio.set_event_loop(loop)

    async def start():
        if workload in ("echo-streams", "cpu-streams"):
            return await asyncio.start_server(echo_stream, "127.0.0.1", 0)
        factory = EchoProtocol if workload == "echo-proto" else HttpProtocol
        return await loop.create_server(factory, "127.0.0.1", 0)

    server = loop.run_until_complete(start())
    port = server.sockets[0].getsockname()[1]
    print(
        json.dumps(
            {
                "port": port,
                "gil": _gil_state(),
                "loop": type(loop).__module__ + "." + type(loop).__name__,
            }
        ),
        flush=True,
    )
    loop.run_forever()  # until the parent kills the process
    return 0


def call_soon_batch(loop, n: int, clock) -> float:
    """Seconds on `clock` to call_soon n callbacks and run them (the calls included)."""
    count = [0]

    def callback():
        count[0] += 1

    started = clock()
    for _ in range(n):
        loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    elapsed = clock() - started
    assert count[0] == n, count
    return elapsed


def call_soon_chain(loop, n: int, clock) -> float:
    """Seconds on `clock` to run n callbacks, each of which call_soon's the next."""
    count = [0]

    def callback():
        count[0] += 1
        if count[0] < n:
            loop.call_soon(callback)
        else:
            loop.stop()

    started = clock()
    loop.call_soon(callback)
    loop.run_forever()
    elapsed = clock() - started
    assert count[0] == n, count
    return elapsed


def _call_soon(loop_name: str, n: int) -> int:
    """Prints call_soon throughput (callbacks/s) for a batch of n and a chain of n callbacks."""
    import asyncio

    loop = _new_loop(loop_name)
    asyncio.set_event_loop(loop)
    perf = time.perf_counter
    result = {"gil": _gil_state()}

    def batch() -> float:
        return n / call_soon_batch(loop, n, perf)

    def chain() -> float:
        return n / call_soon_chain(loop, n, perf)

    batch(), chain()  # warm-up (allocations, the reactor's first run)
    result["batch"] = max(batch() for _ in range(3))
    result["chain"] = max(chain() for _ in range(3))
    loop.close()
    print(json.dumps(result), flush=True)
    return 0


# -- in the parent ------------------------------------------------------------------------------


def _has_uvloop(python: str) -> bool:
    return subprocess.run([python, "-c", "import uvloop"], capture_output=True).returncode == 0


def _describe(python: str) -> str:
    return subprocess.run(
        [
            python,
            "-c",
            "import sys; print(sys.version.split()[0] + ('t' if hasattr(sys, '_is_gil_enabled') else ''))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()


def _run_server(python, workload, loop_name, args, client_python) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    server = subprocess.Popen(
        [python, os.path.abspath(__file__), "--serve", workload, loop_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        if not line:
            return {"error": "server did not start: " + server.stderr.read()[-300:]}
        info = json.loads(line)
        client = subprocess.run(
            [
                client_python,
                os.path.join(HERE, "asyncio_load.py"),
                "--port",
                str(info["port"]),
                "--mode",
                "http" if workload == "http" else "echo",
                "--connections",
                str(args.connections),
                "--seconds",
                str(args.seconds),
            ],
            capture_output=True,
            text=True,
            timeout=args.seconds + 60,
        )
        try:
            result = json.loads(client.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"error": "client failed: " + client.stderr[-300:]}
        result["gil"] = info["gil"]
        return result
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def _run_call_soon(python, loop_name, n) -> dict:
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--call-soon", loop_name, str(n)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": proc.stderr[-300:]}


def _median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if key in s and "error" not in s and not s.get("errors")]
    return statistics.median(values) if values else None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        return _serve(argv[1], argv[2])
    if argv[:1] == ["--call-soon"]:
        return _call_soon(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", action="append", help="server interpreters (default: .venv-gil, .venv-ft)"
    )
    parser.add_argument(
        "--client-python", help="the load generator's interpreter (default: the first --python)"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--callbacks", type=int, default=200_000, help="callbacks per call_soon run"
    )
    parser.add_argument(
        "--only", default=",".join(WORKLOADS + ("call_soon",)), help="comma-separated workloads"
    )
    args = parser.parse_args(argv)
    pythons = args.python or [
        os.path.join(ROOT, v, "bin", "python") for v in (".venv-gil", ".venv-ft")
    ]
    pythons = [p for p in pythons if os.path.exists(p)]
    client_python = args.client_python or pythons[0]
    only = args.only.split(",")

    loops = {p: [loop for loop in LOOPS if loop != "uvloop" or _has_uvloop(p)] for p in pythons}
    names = {p: _describe(p) for p in pythons}
    print(f"server interpreters: {', '.join(names[p] + ' (' + p + ')' for p in pythons)}")
    print(
        f"load generator: {client_python}, {args.connections} connections, {args.seconds:g} s measured per run, repeat {args.repeat}"
    )
    print(
        f"uvloop: {', '.join(names[p] + (' yes' if 'uvloop' in loops[p] else ' no') for p in pythons)}"
    )
    samples: dict[tuple, list[dict]] = {}
    started = time.monotonic()
    for _ in range(args.repeat):
        for python in pythons:
            for workload in WORKLOADS:
                if workload not in only:
                    continue
                for loop_name in loops[python]:
                    result = _run_server(python, workload, loop_name, args, client_python)
                    samples.setdefault((python, workload, loop_name), []).append(result)
                    status = result.get("error") or result.get("first_error") or ""
                    print(
                        f"  {names[python]:8s} {workload:13s} {loop_name:8s} {result.get('rtps', 0):9.0f} rt/s {status}",
                        file=sys.stderr,
                        flush=True,
                    )
            if "call_soon" in only:
                for loop_name in loops[python]:
                    result = _run_call_soon(python, loop_name, args.callbacks)
                    samples.setdefault((python, "call_soon", loop_name), []).append(result)
                    print(
                        f"  {names[python]:8s} call_soon     {loop_name:8s} {result}",
                        file=sys.stderr,
                        flush=True,
                    )

    print(
        f"\n(ran {time.monotonic() - started:.0f} s; figures are medians of {args.repeat} run(s))\n"
    )
    header = f"{'interpreter':12s} {'workload':13s} {'loop':8s} {'GIL':16s} {'round trips/s':>13s} {'p50 ms':>7s} {'p99 ms':>7s} {'vs default':>10s}"
    print(header)
    print("-" * len(header))
    for python in pythons:
        for workload in WORKLOADS:
            if workload not in only:
                continue
            base = _median(samples.get((python, workload, "default"), []), "rtps")
            for loop_name in loops[python]:
                runs = samples.get((python, workload, loop_name), [])
                rtps = _median(runs, "rtps")
                gil = runs[0].get("gil", "?") if runs else "?"
                if rtps is None:
                    why = next((r.get("error") or r.get("first_error") for r in runs), "no result")
                    print(
                        f"{names[python]:12s} {workload:13s} {loop_name:8s} {gil:16s} failed: {why}"
                    )
                    continue
                ratio = f"{rtps / base:.2f}x" if base else "-"
                print(
                    f"{names[python]:12s} {workload:13s} {loop_name:8s} {gil:16s} {rtps:13.0f} "
                    f"{_median(runs, 'p50_ms'):7.2f} {_median(runs, 'p99_ms'):7.2f} {ratio:>10s}"
                )
    if "call_soon" in only:
        header = f"{'interpreter':12s} {'call_soon':13s} {'loop':8s} {'GIL':16s} {'callbacks/s':>13s} {'vs default':>10s}"
        print("\n" + header)
        print("-" * len(header))
        for python in pythons:
            for kind in ("batch", "chain"):
                base = _median(samples.get((python, "call_soon", "default"), []), kind)
                for loop_name in loops[python]:
                    runs = samples.get((python, "call_soon", loop_name), [])
                    value = _median(runs, kind)
                    gil = runs[0].get("gil", "?") if runs else "?"
                    if value is None:
                        why = next((r.get("error") for r in runs), "no result")
                        print(
                            f"{names[python]:12s} {kind:13s} {loop_name:8s} {gil:16s} failed: {why}"
                        )
                        continue
                    ratio = f"{value / base:.2f}x" if base else "-"
                    print(
                        f"{names[python]:12s} {kind:13s} {loop_name:8s} {gil:16s} {value:13.0f} {ratio:>10s}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
