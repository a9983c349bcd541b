"""Drives the servers in examples/ from the test process: starts one in a subprocess, runs many
concurrent clients against it (asyncio, on the stock loop of the test's interpreter) and returns
what each client observed, normalised so that runs under different runtimes can be compared.

Used by test_examples_differential.py.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import re
import signal
import subprocess
import threading

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


LISTENING = r"^listening on (\d+)$"  # the line the programs in examples/ print once they listen


class Server:
    """An example server in a subprocess, listening on a port it chose and announced in the first
    line of its output that matches `ready` (group 1: the port)."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], start_timeout: float, ready: str = LISTENING
    ) -> None:
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        # Both pipes are drained all along: twistd logs every request, and a full pipe would
        # stall the server under load.
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = re.compile(ready)
        self._port: list[int] = []
        self._announced = threading.Event()
        self._readers = [
            threading.Thread(target=self._drain, args=(pipe, lines), daemon=True)
            for pipe, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()
        if not self._announced.wait(start_timeout) or not self._port:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{self.errors()}")
        self.port = self._port[0]

    def _drain(self, pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)
            match = None if self._port else self._ready.search(line.rstrip("\n"))
            if match:
                self._port.append(int(match.group(1)))
                self._announced.set()
        self._announced.set()  # the server exited without announcing a port

    def errors(self) -> str:
        """Everything it wrote; twistd logs to stdout, the other programs to stderr."""
        return "".join(self.stderr) + "".join(self.stdout)

    def printed(self, prefix: str):
        """The JSON value the server printed after `prefix` on a line of its stdout, else None."""
        values = [
            json.loads(line[len(prefix) :]) for line in self.stdout if line.startswith(prefix)
        ]
        return values[-1] if values else None

    def stop(self, timeout: float) -> int:
        """SIGTERM, then waits for the server to exit; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode


def example_env(runtime_env: dict[str, str]) -> dict[str, str]:
    """The test's environment (the overlay's PYTHONPATH included) with examples/ on the path, for
    `twistd web --class=twisted_web_site.resource`, and the runtime's settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), env.get("PYTHONPATH")) if p)
    env.update(runtime_env)
    return env


# -- chat ---------------------------------------------------------------------------------------


def chat_text(sender: int, j: int) -> str:
    """The j-th message of the sender-th client; lengths vary so lines split across reads."""
    return f"message {j:04d} of {sender:02d} " + "x" * ((sender * 7 + j * 13) % 97)


async def _read_line(reader: asyncio.StreamReader, timeout: float) -> str:
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line:
        raise ConnectionError("server closed the connection")
    return line.rstrip(b"\r\n").decode()


async def _chat_client(port, name, index, clients, messages, everyone_in, stall) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(name.encode() + b"\r\n")
    welcome = await _read_line(reader, stall)
    expected_lines = (clients - 1) * messages
    received: dict[str, list[str]] = collections.defaultdict(list)
    notices: list[str] = []
    count = 0
    await everyone_in(welcome)
    writer.write(b"/who\r\n")

    async def send() -> None:
        for j in range(messages):
            writer.write(chat_text(index, j).encode() + b"\r\n")
            if j % 8 == 7:
                await writer.drain()
                await asyncio.sleep(0)
        await writer.drain()

    sender = asyncio.ensure_future(send())
    error = None
    phase = "receiving the others' messages and the /who reply"
    try:
        while count < expected_lines or not notices:
            line = await _read_line(reader, stall)
            if line.startswith("* "):
                notices.append(line)
            else:
                who, _, text = line.partition(": ")
                received[who].append(text)
                count += 1
        phase = "sending"
        await sender
        phase = "waiting for the server to close after /quit"
        writer.write(b"/quit\r\n")
        await writer.drain()
        tail = await asyncio.wait_for(reader.read(), stall)
        if tail:
            error = f"unexpected bytes after /quit: {tail[:200]!r}"
    except (asyncio.TimeoutError, ConnectionError) as e:
        error = (
            f"{type(e).__name__}: {e} while {phase}, after {count} of {expected_lines} "
            f"lines and {len(notices)} notices"
        )
        sender.cancel()
    finally:
        writer.close()
    return {"welcome": welcome, "notices": notices, "received": dict(received), "error": error}


async def _chat_admin(port: int, command: str, timeout: float) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(command.encode() + b"\r\n")
        reply = await _read_line(reader, timeout)
        # Leave as the chat clients do (/quit, then the server's close), so that the server's
        # handler has ended before the scenario stops the server: a handler still reading at
        # SIGTERM is cancelled, which asyncio 3.11's streams report as an error.
        writer.write(b"/quit\r\n")
        await asyncio.wait_for(reader.read(), timeout)
        return reply
    finally:
        writer.close()


async def _drive_chat(port: int, clients: int, messages: int, stall: float) -> dict:
    names = [f"user{i:02d}" for i in range(clients)]
    welcomed = 0
    all_in = asyncio.Event()

    async def everyone_in(welcome: str) -> None:
        # A barrier: nobody speaks until everyone has joined, so every message has every other
        # user as its audience on any runtime.
        nonlocal welcomed
        welcomed += 1
        if welcomed == clients:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), stall * 4)

    results = await asyncio.gather(
        *(
            _chat_client(port, n, i, clients, messages, everyone_in, stall)
            for i, n in enumerate(names)
        ),
        return_exceptions=True,
    )
    observed = {
        name: (r if isinstance(r, dict) else {"error": f"{type(r).__name__}: {r}"})
        for name, r in zip(names, results)
    }
    # Connections end asynchronously on the server: poll until every user has left.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stall
    try:
        while True:
            stats = json.loads((await _chat_admin(port, "/stats", stall))[len("* stats ") :])
            if not stats["users"] or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
    except (OSError, asyncio.TimeoutError, ValueError) as e:
        stats = f"/stats failed: {type(e).__name__}: {e}"
    return {"clients": observed, "stats": stats}


def drive_chat(port: int, clients: int, messages: int, stall: float) -> dict:
    """Runs the chat scenario; returns {"clients": {name: observation}, "stats": final /stats}."""
    return asyncio.run(_drive_chat(port, clients, messages, stall))


def expected_chat(clients: int, messages: int) -> dict:
    """What every client must observe, and the final shared state, on any correct runtime."""
    names = [f"user{i:02d}" for i in range(clients)]
    observed = {}
    for i, name in enumerate(names):
        observed[name] = {
            "welcome": f"* welcome {name}",
            "notices": ["* users " + " ".join(names)],
            "received": {
                other: [chat_text(k, j) for j in range(messages)]
                for k, other in enumerate(names)
                if other != name
            },
            "error": None,
        }
    stats = {
        "users": [],
        "sent_by": {n: messages for n in names},
        "messages": clients * messages,
        "joins": clients,
        "leaves": clients,
    }
    return {"clients": observed, "stats": stats}


# -- HTTP ---------------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader, timeout: float) -> tuple[str, dict, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    return status_line, headers, body


async def _http_client(port: int, index: int, requests: int, pipeline: int, stall: float) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    responses: list[list] = []
    error = None
    try:
        targets = http_targets(index, requests)
        for start in range(0, len(targets), pipeline):
            batch = targets[start : start + pipeline]
            writer.write(
                b"".join(f"GET {t} HTTP/1.1\r\nHost: test\r\n\r\n".encode() for t in batch)
            )
            await writer.drain()
            for _ in batch:
                status, headers, body = await _read_response(reader, stall)
                responses.append([status, headers.get("connection"), body.decode()])
        writer.write(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        status, headers, body = await _read_response(reader, stall)
        responses.append([status, headers.get("connection"), body.decode()])
        tail = await asyncio.wait_for(reader.read(), stall)
        if tail:
            error = f"bytes after connection: close: {tail[:200]!r}"
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        error = f"{type(e).__name__}: {e} after {len(responses)} responses"
    finally:
        writer.close()
    return {"responses": responses, "error": error}


SHARED_WORK = 8  # /work?shared=K for K below this: targets every client requests


def http_targets(index: int, requests: int) -> list[str]:
    """The request targets of client `index`: mostly /work, with a hello page and a 404 mixed in.
    One /work in five is one that other clients request at about the same time, so that a server
    with a cache (twisted_web_site) misses on it in several connections at once and fills it from
    several; the others are the client's own."""
    targets = []
    for j in range(requests):
        if j % 10 == 3:
            targets.append("/")
        elif j % 10 == 7:
            targets.append(f"/missing/{index}/{j}")
        elif j % 5 == 1:
            targets.append(f"/work?shared={(index + j) % SHARED_WORK}")
        else:
            targets.append(f"/work?client={index}&request={j}")
    return targets


async def _http_get(port: int, target: str, timeout: float) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status, _, body = await _read_response(reader, timeout)
        await asyncio.wait_for(reader.read(), timeout)  # the server's close: its handler ended
        return status, body
    finally:
        writer.close()


async def _drive_http(port: int, clients: int, requests: int, pipeline: int, stall: float):
    results = await asyncio.gather(
        *(_http_client(port, i, requests, pipeline, stall) for i in range(clients)),
        return_exceptions=True,
    )
    observed = {
        f"client{i:02d}": (r if isinstance(r, dict) else {"error": f"{type(r).__name__}: {r}"})
        for i, r in enumerate(results)
    }
    try:
        status, body = await _http_get(port, "/stats", stall)
        stats = json.loads(body) if status.endswith("200 OK") else status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        stats = f"/stats failed: {type(e).__name__}: {e}"
    return {"clients": observed, "stats": stats}


def drive_http(port: int, clients: int, requests: int, pipeline: int, stall: float) -> dict:
    """Runs the HTTP scenario; returns {"clients": {name: observation}, "stats": final /stats}."""
    return asyncio.run(_drive_http(port, clients, requests, pipeline, stall))
