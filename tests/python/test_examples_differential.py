"""Differential tests of the servers in examples/: each runs in a subprocess under the stock
reactor or loop and under tm with 2 workers and abort injection on (TM_ABORT_INJECTION), driven by
dozens of concurrent clients sending thousands of messages. Every run must give what the program
means on any runtime: each client's observations (per-connection order where the protocol defines
one; order across clients is free) and the final shared state. A tm run is also compared with the
stock run of the same example on the same interpreter.

Runtimes: "stock" (epoll reactor, asyncio's default loop), "tm" (2 workers, abort injection on:
the issue's setting) and "tm-noinject" (2 workers, no injection), which tells a failure caused by
abort injection from one caused by running on several workers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys

import pytest

import example_clients as ec

WORKERS = 2
ABORT_INJECTION = "0.05:20261126"
START_TIMEOUT = 60.0  # interpreter start-up and imports on a loaded 2-core machine
STALL = 10.0  # no progress for this long means a client waits for something that never comes

CHAT_CLIENTS, CHAT_MESSAGES = 24, 60  # 1440 messages, 33120 deliveries
HTTP_CLIENTS, HTTP_REQUESTS, HTTP_PIPELINE = 24, 40, 4  # 960 requests plus 24 closing ones
WORK_ROUNDS = 300

STOCK = {
    "twisted_chat": ["--reactor", "epoll"],
    "asyncio_chat": ["--loop", "default"],
    "asyncio_http_service": ["--loop", "default"],
}
TM = {
    "twisted_chat": ["--reactor", "tm", "--workers", str(WORKERS)],
    "asyncio_chat": ["--loop", "tm", "--workers", str(WORKERS)],
    "asyncio_http_service": ["--loop", "tm", "--workers", str(WORKERS)],
}

# A race hits some runs and not others: tm runs repeat the scenario (each in a fresh server) and
# every round must be right. Three rounds make a one-in-five pass of a racy run rare.
TM_ROUNDS = 3


@functools.cache
def observe(example: str, runtime: str, round_: int = 0) -> dict:
    """Runs the example's scenario once per (example, runtime, round) and test session."""
    args = [str(ec.EXAMPLES / f"{example}.py"), *(STOCK if runtime == "stock" else TM)[example]]
    env = {"TM_EXAMPLE_WORK_ROUNDS": str(WORK_ROUNDS), "TM_ABORT_INJECTION": "0"}
    if runtime != "stock":
        env["TM_WORKERS"] = str(WORKERS)
    if runtime in ("tm", "tm-parallel"):
        env["TM_ABORT_INJECTION"] = ABORT_INJECTION
    if runtime == "tm-parallel":  # asyncio: each connection on a strand of its own
        env["TM_ASYNCIO_PARALLEL"] = "1"
    server = ec.Server(args, ec.example_env(env), START_TIMEOUT)
    try:
        if example.endswith("chat"):
            observed = ec.drive_chat(server.port, CHAT_CLIENTS, CHAT_MESSAGES, STALL)
        else:
            observed = ec.drive_http(server.port, HTTP_CLIENTS, HTTP_REQUESTS, HTTP_PIPELINE,
                                     STALL)
    finally:
        status, final, out = server.stop(timeout=STALL * 2)
    observed["final_state"] = final
    observed["server_errors"] = _server_errors(server.errors())
    observed["exit"] = status
    return observed


def _server_errors(stderr: str) -> list[str]:
    """The server's stderr (its last 60 lines) where a line reports a failure (a traceback, a
    logged error), else nothing: the whole tail, so that a failure says where it came from."""
    lines = stderr.splitlines()
    if any("Traceback" in line or "Error" in line or "Unhandled" in line for line in lines):
        return lines[-60:]
    return []


def expected_http() -> dict:
    observed = {}
    for i in range(HTTP_CLIENTS):
        responses = []
        for target in ec.http_targets(i, HTTP_REQUESTS):
            if target == "/":
                responses.append(["HTTP/1.1 200 OK", None, "hello from asyncio\n"])
            elif target.startswith("/work"):
                digest = target.encode()
                for _ in range(WORK_ROUNDS):
                    digest = hashlib.sha256(digest).digest()
                responses.append(["HTTP/1.1 200 OK", None, digest.hex() + "\n"])
            else:
                responses.append(["HTTP/1.1 404 Not Found", None, "not found\n"])
        responses.append(["HTTP/1.1 200 OK", "close", "hello from asyncio\n"])
        observed[f"client{i:02d}"] = {"responses": responses, "error": None}
    per_client = ec.http_targets(0, HTTP_REQUESTS)
    hello = sum(t == "/" for t in per_client) + 1
    work = sum(t.startswith("/work") for t in per_client)
    other = len(per_client) + 1 - hello - work
    stats = {
        "connections": HTTP_CLIENTS + 1,
        "requests": HTTP_CLIENTS * (HTTP_REQUESTS + 1) + 1,
        "hits": {"/": HTTP_CLIENTS * hello, "/stats": 1, "/work": HTTP_CLIENTS * work,
                 "other": HTTP_CLIENTS * other},
    }
    return {"clients": observed, "stats": stats}


def expected(example: str) -> dict:
    if example.endswith("chat"):
        return ec.expected_chat(CHAT_CLIENTS, CHAT_MESSAGES)
    return expected_http()


def check(observed: dict, example: str) -> None:
    want = expected(example)
    failing = {name: _difference(got, want["clients"][name])
               for name, got in observed["clients"].items() if got != want["clients"][name]}
    assert not failing, (
        f"{len(failing)} of {len(want['clients'])} clients observed something else; first: "
        f"{next(iter(failing.items()))}; server errors: {observed['server_errors'][:10]}"
    )
    assert observed["stats"] == want["stats"], observed["server_errors"][:10]
    # After the last request nothing changes the state: the state printed at exit is the same.
    assert observed["final_state"] == want["stats"], observed["server_errors"][:10]
    assert observed["server_errors"] == []
    assert observed["exit"] == 0


def _difference(got: dict, want: dict) -> str:
    """A short description of how a client's observation differs from what it should be."""
    parts = []
    if got.get("error") != want["error"]:
        parts.append(f"error {got.get('error')!r}")
    for key in want:
        if key == "error" or got.get(key) == want[key]:
            continue
        if key == "received":
            for sender, texts in want[key].items():
                have = got.get(key, {}).get(sender, [])
                if have != texts:
                    missing = len(set(texts) - set(have))
                    in_order = [t for t in have if t in texts] == [t for t in texts if t in have]
                    parts.append(f"from {sender}: {len(have)} of {len(texts)} lines, {missing} "
                                 f"missing, {len(have) - len(set(have))} duplicated, in order: "
                                 f"{in_order}")
                    break
            extra = set(got.get(key, {})) - set(want[key])
            if extra:
                parts.append(f"lines from unknown senders {sorted(extra)[:3]}")
        elif key == "responses":
            have, need = got.get(key, []), want[key]
            bad = next((k for k, (h, n) in enumerate(zip(have, need)) if h != n), None)
            parts.append(f"{len(have)} of {len(need)} responses"
                         + (f", #{bad} is {have[bad]!r}, not {need[bad]!r}" if bad is not None
                            else ""))
        else:
            parts.append(f"{key} {got.get(key)!r}, not {want[key]!r}")
    return "; ".join(parts)


PARAMS = [
    pytest.param("twisted_chat", "stock", id="twisted_chat-epoll"),
    pytest.param("twisted_chat", "tm", id="twisted_chat-tm"),
    pytest.param("twisted_chat", "tm-noinject", id="twisted_chat-tm-noinject"),
    pytest.param("asyncio_chat", "stock", id="asyncio_chat-default"),
    pytest.param("asyncio_chat", "tm", id="asyncio_chat-tm"),
    pytest.param("asyncio_chat", "tm-noinject", id="asyncio_chat-tm-noinject"),
    pytest.param("asyncio_chat", "tm-parallel", id="asyncio_chat-tm-parallel"),
    pytest.param("asyncio_http_service", "stock", id="asyncio_http_service-default"),
    pytest.param("asyncio_http_service", "tm", id="asyncio_http_service-tm"),
    pytest.param("asyncio_http_service", "tm-noinject", id="asyncio_http_service-tm-noinject"),
    pytest.param("asyncio_http_service", "tm-parallel", id="asyncio_http_service-tm-parallel"),
]


@pytest.mark.parametrize(("example", "runtime"), PARAMS)
def test_example_under_load(example, runtime):
    for round_ in range(1 if runtime == "stock" else TM_ROUNDS):
        observed = observe(example, runtime, round_)
        check(observed, example)
        if runtime != "stock":
            # The differential comparison proper: tm gives what the stock runtime gives.
            stock = observe(example, "stock")
            assert {k: v for k, v in observed.items() if k != "server_errors"} == \
                {k: v for k, v in stock.items() if k != "server_errors"}


# -- TM_ABORT_INJECTION --------------------------------------------------------------------------


INJECTED_ABORTS = r"""
import asyncio, sys
runtime = sys.argv[1]
if runtime == "twisted":
    import tm_twisted
    tm_twisted.install(1)
else:
    import tm_asyncio
    tm_asyncio.new_event_loop().close()
import tm
cell = tm.Var(0)
tm.reset_stats()
def increment():
    cell.value = cell.value + 1
for _ in range(200):
    tm.run_atomic(increment)
print(cell.value, tm.stats()["aborts"]["injected"])
"""


@pytest.mark.parametrize("runtime", ["twisted", "asyncio"])
@pytest.mark.parametrize(("setting", "injected"), [("0.5:7", True), ("0", False), (None, False)])
def test_abort_injection_from_environment(runtime, setting, injected):
    env = dict(os.environ)
    env.pop("TM_ABORT_INJECTION", None)
    if setting is not None:
        env["TM_ABORT_INJECTION"] = setting
    out = subprocess.run([sys.executable, "-c", INJECTED_ABORTS, runtime], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    value, aborts = map(int, out.stdout.split())
    assert value == 200
    assert (aborts > 0) == injected


@pytest.mark.parametrize("setting", ["half", "0.5:seven", "1.5", "-0.1", "0.5:-1"])
def test_abort_injection_from_environment_rejects(monkeypatch, setting):
    import tm

    monkeypatch.setenv("TM_ABORT_INJECTION", setting)
    with pytest.raises(ValueError, match="TM_ABORT_INJECTION"):
        tm.abort_injection_from_environment()
