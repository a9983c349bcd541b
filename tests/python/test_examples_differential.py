"""Differential tests of the servers in examples/: each runs in a subprocess under the stock
reactor or loop and under tm with 2 workers, driven by dozens of concurrent clients sending
thousands of messages. Every run must give what the program means on any runtime: each client's
observations (per-connection order where the protocol defines one; order across clients is free)
and the final shared state. A tm run is also compared with the stock run of the same example on
the same interpreter.

Runtimes: "stock" (epoll reactor, asyncio's default loop), "tm" (2 workers, abort injection on at
every point where a callback can abort, and from the second round on schedule noise: the stress
setting) and "tm-noinject" (2 workers, neither), which tells a failure caused by aborts or by the
schedule from one caused by running on several workers. Every tm run reads the server's
tm.stats() and checks that injection happened exactly when it was asked for: a test "with abort
injection" that injects nothing would test nothing.

Rounds: a race hits some runs and not others, so each tm runtime repeats the scenario in a fresh
server, each round with its own injection and noise seeds. TM_ROUNDS rounds always run (enough
for CI on 2 cores); TM_DIFFERENTIAL_SECONDS=S keeps starting rounds until a test has run S
seconds, for a longer stress run. The seeds derive from TM_DIFFERENTIAL_SEED, random unless set;
a failure names the seeds of its round.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import warnings

import pytest

import example_clients as ec

WORKERS = 2
# Abort injection aborts this fraction of transaction attempts where a real conflict could (a
# reactor callback's at its commit, which it then retries keeping its effects). High, so that
# every run injects tens to hundreds of aborts; below 1/2, so that a callback commits within a
# few attempts and runs stay short.
INJECTION = 0.3
# Schedule noise pauses this fraction of commits for up to 200 us at random (yield or sleep), so
# that the rounds explore interleavings the plain schedule rarely reaches.
NOISE = 0.2
SEED = int(os.environ.get("TM_DIFFERENTIAL_SEED") or random.randrange(1, 2**31))
TM_ROUNDS = 3  # three rounds make a one-in-five pass of a racy run rare
SOAK_SECONDS = float(os.environ.get("TM_DIFFERENTIAL_SECONDS", "0"))

START_TIMEOUT = 60.0  # interpreter start-up and imports on a loaded 2-core machine
STALL = 10.0  # no progress for this long means a client waits for something that never comes

CHAT_CLIENTS, CHAT_MESSAGES = 24, 60  # 1440 messages, 33120 deliveries
HTTP_CLIENTS, HTTP_REQUESTS, HTTP_PIPELINE = 24, 40, 4  # 960 requests plus 24 closing ones
WORK_ROUNDS = 300

# twisted_web_site runs as the README's main job runs it: under twistd, which logs to stdout
# ("Site starting on PORT" once it listens) and leaves its shared state at /stats.
TWISTD = [
    sys.executable,
    str(pathlib.Path(sys.executable).with_name("twistd")),
    "-n",
    "--pidfile=",
    "--logfile=-",
]
TWISTD_WEB = ["web", "--class=twisted_web_site.resource", "--listen", "tcp:0:interface=127.0.0.1"]


def command(example: str, runtime: str) -> tuple[list[str], str]:
    """The command line that serves `example` on `runtime`, and its "listening" line's pattern."""
    stock = runtime == "stock"
    if example == "twisted_web_site":
        reactor = "epoll" if stock else "tm"  # tm: TM_WORKERS workers
        return [*TWISTD, f"--reactor={reactor}", *TWISTD_WEB], r"Site starting on (\d+)"
    if example == "twisted_chat":
        runtime_args = ["--reactor", "epoll"] if stock else ["--reactor", "tm"]
    else:
        runtime_args = ["--loop", "default"] if stock else ["--loop", "tm"]
    if not stock:
        runtime_args += ["--workers", str(WORKERS)]
    return [
        sys.executable,
        str(ec.EXAMPLES / f"{example}.py"),
        *runtime_args,
        "--port",
        "0",
    ], ec.LISTENING


def settings(runtime: str, round_: int) -> dict[str, str]:
    """The environment that selects the runtime's workers, abort injection and schedule noise."""
    env = {
        "TM_EXAMPLE_WORK_ROUNDS": str(WORK_ROUNDS),
        "TM_ABORT_INJECTION": "0",
        "TM_SCHEDULE_NOISE": "0",
    }
    if runtime != "stock":
        env["TM_WORKERS"] = str(WORKERS)
    if injects(runtime):
        env["TM_ABORT_INJECTION"] = f"{INJECTION}:{SEED + round_}"
        if round_ > 0:  # round 0 keeps the plain schedule: a failure there is not the noise's
            env["TM_SCHEDULE_NOISE"] = f"{NOISE}:{SEED + round_}"
    if runtime == "tm-parallel":  # asyncio: each connection on a strand of its own
        env["TM_ASYNCIO_PARALLEL"] = "1"
    return env


def injects(runtime: str) -> bool:
    return runtime in ("tm", "tm-parallel")


@pytest.fixture(scope="module", autouse=True)
def stop_signals_at_their_defaults():
    """The servers stop on SIGTERM (and a user's Ctrl-C). A child inherits an ignored disposition
    (CI may run the suite as a background job, where SIGINT is ignored on entry), so neither is
    ignored while the servers start: they begin with both at their defaults."""
    saved = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) == signal.SIG_IGN:
            saved[signum] = signal.SIG_IGN
            signal.signal(
                signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            )
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@functools.cache
def observe(example: str, runtime: str, round_: int = 0) -> dict:
    """Runs the example's scenario once per (example, runtime, round) and test session."""
    cmd, ready = command(example, runtime)
    env = settings(runtime, round_)
    server = ec.Server(cmd, ec.example_env(env), START_TIMEOUT, ready)
    try:
        if example.endswith("chat"):
            observed = ec.drive_chat(server.port, CHAT_CLIENTS, CHAT_MESSAGES, STALL)
        else:
            observed = ec.drive_http(server.port, HTTP_CLIENTS, HTTP_REQUESTS, HTTP_PIPELINE, STALL)
    finally:
        status = server.stop(timeout=STALL * 2)
    if example == "twisted_web_site":
        # /stats is the site's shared state, and on the tm reactor also tm.stats().
        stats = observed["stats"]
        observed["tm_stats"] = stats.pop("tm", None) if isinstance(stats, dict) else None
        observed["final_state"] = None  # twistd prints nothing at exit
    else:
        observed["tm_stats"] = server.printed("tm stats ")
        observed["final_state"] = server.printed("final state ")
    observed["server_errors"] = _server_errors(server.errors())
    observed["exit"] = status
    observed["settings"] = {k: v for k, v in env.items() if k.startswith("TM_")}
    return observed


def _server_errors(output: str) -> list[str]:
    """The server's output (its last 60 lines) where a line reports a failure (a traceback, a
    logged error), else nothing: the whole tail, so that a failure says where it came from."""
    lines = output.splitlines()
    if any("Traceback" in line or "Error" in line or "Unhandled" in line for line in lines):
        return lines[-60:]
    return []


def expected_http(example: str) -> dict:
    """What every client must observe, and the final shared state, on any correct runtime."""
    site = example == "twisted_web_site"
    hello = "hello from twisted.web\n" if site else "hello from asyncio\n"
    not_found = ["HTTP/1.1 404 Not Found", None, twisted_not_found() if site else "not found\n"]
    observed = {}
    for i in range(HTTP_CLIENTS):
        responses = []
        for target in ec.http_targets(i, HTTP_REQUESTS):
            if target == "/":
                responses.append(["HTTP/1.1 200 OK", None, hello])
            elif target.startswith("/work"):
                digest = target.encode()
                for _ in range(WORK_ROUNDS):
                    digest = hashlib.sha256(digest).digest()
                responses.append(["HTTP/1.1 200 OK", None, digest.hex() + "\n"])
            else:
                responses.append(not_found)
        responses.append(["HTTP/1.1 200 OK", "close", hello])
        observed[f"client{i:02d}"] = {"responses": responses, "error": None}
    targets = [t for i in range(HTTP_CLIENTS) for t in ec.http_targets(i, HTTP_REQUESTS)]
    hello_hits = sum(t == "/" for t in targets) + HTTP_CLIENTS  # and each client's closing one
    work = [t for t in targets if t.startswith("/work")]
    if site:
        # Hello and Work pages count hits, /stats and 404s do not; the cache holds one page per
        # distinct query (fewer than its bound), however many connections missed on it at once.
        stats = {"hits": hello_hits + len(work), "cache_entries": len(set(work))}
    else:
        stats = {
            "connections": HTTP_CLIENTS + 1,
            "requests": len(targets) + HTTP_CLIENTS + 1,
            "hits": {
                "/": hello_hits,
                "/stats": 1,
                "/work": len(work),
                "other": len(targets) - len(work) - hello_hits + HTTP_CLIENTS,
            },
        }
    return {"clients": observed, "stats": stats}


@functools.cache
def twisted_not_found() -> str:
    """The page twisted.web serves for a path no resource has (Twisted's own, version-specific)."""
    from twisted.web.resource import NoResource
    from twisted.web.test.requesthelper import DummyRequest

    with warnings.catch_warnings():  # NoResource is deprecated, but it is what the site serves
        warnings.simplefilter("ignore", DeprecationWarning)
        return NoResource().render(DummyRequest([b"missing"])).decode()


def expected(example: str) -> dict:
    if example.endswith("chat"):
        return ec.expected_chat(CHAT_CLIENTS, CHAT_MESSAGES)
    return expected_http(example)


def check(observed: dict, example: str) -> None:
    want = expected(example)
    context = f"settings {observed['settings']}; server errors: {observed['server_errors'][:10]}"
    failing = {
        name: _difference(got, want["clients"][name])
        for name, got in observed["clients"].items()
        if got != want["clients"][name]
    }
    assert not failing, (
        f"{len(failing)} of {len(want['clients'])} clients observed something else; first: "
        f"{next(iter(failing.items()))}; {context}"
    )
    assert observed["stats"] == want["stats"], context
    if example != "twisted_web_site":
        # After the last request nothing changes the state: the state printed at exit is the same.
        assert observed["final_state"] == want["stats"], context
    assert observed["server_errors"] == [], context
    # twistd ends a run stopped by a signal by re-raising that signal; the others exit 0.
    assert observed["exit"] == (-signal.SIGTERM if example == "twisted_web_site" else 0), context


def check_injection(observed: dict, runtime: str) -> int:
    """The injected aborts the tm run reports: some where the run claims injection, else none."""
    stats = observed["tm_stats"]
    assert stats is not None, f"the server reported no tm.stats(); {observed['settings']}"
    injected = stats["aborts"]["injected"]
    if injects(runtime):
        assert injected > 0, (
            f"abort injection claimed but no abort injected in "
            f"{stats['commits']} commits; settings {observed['settings']}"
        )
    else:
        assert injected == 0, observed["settings"]
    return injected


def comparable(observed: dict) -> dict:
    """What must be the same under every runtime: not the logs, statistics or settings."""
    return {k: v for k, v in observed.items() if k not in ("server_errors", "tm_stats", "settings")}


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
                    parts.append(
                        f"from {sender}: {len(have)} of {len(texts)} lines, {missing} "
                        f"missing, {len(have) - len(set(have))} duplicated, in order: "
                        f"{in_order}"
                    )
                    break
            extra = set(got.get(key, {})) - set(want[key])
            if extra:
                parts.append(f"lines from unknown senders {sorted(extra)[:3]}")
        elif key == "responses":
            have, need = got.get(key, []), want[key]
            bad = next((k for k, (h, n) in enumerate(zip(have, need)) if h != n), None)
            parts.append(
                f"{len(have)} of {len(need)} responses"
                + (f", #{bad} is {have[bad]!r}, not {need[bad]!r}" if bad is not None else "")
            )
        else:
            parts.append(f"{key} {got.get(key)!r}, not {want[key]!r}")
    return "; ".join(parts)


PARAMS = [
    pytest.param("twisted_chat", "stock", id="twisted_chat-epoll"),
    pytest.param("twisted_chat", "tm", id="twisted_chat-tm"),
    pytest.param("twisted_chat", "tm-noinject", id="twisted_chat-tm-noinject"),
    pytest.param("twisted_web_site", "stock", id="twisted_web_site-epoll"),
    pytest.param("twisted_web_site", "tm", id="twisted_web_site-tm"),
    pytest.param("twisted_web_site", "tm-noinject", id="twisted_web_site-tm-noinject"),
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
    started = time.monotonic()
    round_ = 0
    while round_ < (1 if runtime == "stock" else TM_ROUNDS) or (
        runtime != "stock" and time.monotonic() - started < SOAK_SECONDS
    ):
        observed = observe(example, runtime, round_)
        check(observed, example)
        if runtime != "stock":
            injected = check_injection(observed, runtime)
            print(
                f"round {round_}: {injected} injected aborts, "
                f"{observed['tm_stats']['commits']} commits; {observed['settings']}"
            )
            # The differential comparison proper: tm gives what the stock runtime gives.
            assert comparable(observed) == comparable(observe(example, "stock")), observed[
                "settings"
            ]
        round_ += 1


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
    out = subprocess.run(
        [sys.executable, "-c", INJECTED_ABORTS, runtime],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
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
