"""`twistd -n --reactor=tm web --path DIR`, unmodified, serves static files byte-exact under load.

twisted.web streams a static file through a pull producer that Twisted turns into a task of its
global `task.Cooperator` (`_producer_helpers._PullToPush`). With two workers on a free-threaded
interpreter, connections run in parallel; the Cooperator's tick must not run on one connection's
thread while other connections pause and resume their tasks on theirs (it did: 64 KiB blocks in the
wrong order, stalled downloads, `list.remove(x): x not in list` in the log). This test runs the real
twistd in a child process with 2 workers, 12 keep-alive clients and 40 files of 0-2 MB (full
bodies, single ranges, suffix ranges, an unsatisfiable range, HEAD, 404), and compares every
response byte for byte with the files and with the same workload on `--reactor=epoll`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

TWISTD = pathlib.Path(sys.executable).with_name("twistd")
CLIENTS = 12
# A bound on each socket operation: a stalled download fails the test instead of hanging it.
SOCKET_TIMEOUT = 15
# Sizes around twisted.web's 64 KiB block (static.StaticProducer.bufferSize) and up to 2 MB.
EDGE_SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 2 * 1024 * 1024]
FILES = 40
# The whole workload's bound: requests not started by then count as failed (epoll needs about 1 s).
WORKLOAD_SECONDS = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, bytes]:
    """40 files of 0-2 MB under a directory, name -> contents."""
    root = tmp_path_factory.mktemp("www")
    rng = random.Random(17)
    sizes = EDGE_SIZES + [rng.randrange(2 * 1024 * 1024) for _ in range(FILES - len(EDGE_SIZES))]
    files = {}
    for i, size in enumerate(sizes):
        name = f"f{i:02d}.bin"
        files[name] = rng.randbytes(size)
        (root / name).write_bytes(files[name])
    files["__root__"] = str(root).encode()
    return files


def jobs(files: dict[str, bytes]) -> list[tuple[str, str, dict[str, str], bytes | None, int]]:
    """(method, path, headers, expected body, expected status) for every request of the workload."""
    out = []
    for name, data in files.items():
        if name == "__root__":
            continue
        n = len(data)
        out.append(("GET", f"/{name}", {}, data, 200))
        out.append(("HEAD", f"/{name}", {}, b"", 200))
        if n >= 2:
            a, b = n // 3, n - n // 4
            out.append(("GET", f"/{name}", {"Range": f"bytes={a}-{b}"}, data[a : b + 1], 206))
            suffix = min(n, 70000)
            out.append(("GET", f"/{name}", {"Range": f"bytes=-{suffix}"}, data[-suffix:], 206))
        out.append(("GET", f"/{name}", {"Range": f"bytes={n + 10}-"}, None, 416))
    for i in range(8):
        out.append(("GET", f"/missing-{i}.bin", {}, None, 404))
    # Every file a second time, so that many large bodies stream at once.
    out += [j for j in out if j[0] == "GET" and not j[2] and j[4] == 200]
    random.Random(3).shuffle(out)
    return out


def run_client(port: int, work: list, results: list, index: int, deadline: float) -> None:
    """Runs work over one keep-alive connection; records (status, headers, body) or the error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    sock = None
    reconnects = -1
    for method, path, headers, _, _ in work:
        if time.monotonic() > deadline:
            results.append((index, method, path, headers, None, {}, b"not run: out of time"))
            continue
        try:
            conn.request(method, path, headers=headers)
            if conn.sock is not sock:
                sock, reconnects = conn.sock, reconnects + 1
            response = conn.getresponse()
            body = response.read()
            kept = {h: response.getheader(h) for h in ("Content-Length", "Content-Range")}
            results.append((index, method, path, headers, response.status, kept, body))
        except (OSError, http.client.HTTPException) as e:
            results.append((index, method, path, headers, None, {}, repr(e).encode()))
            conn.close()
    conn.close()
    results.append((index, "connections", "", {}, reconnects + 1, {}, b""))


def serve_and_load(reactor: str, root: str, tmp_path: pathlib.Path, work: list) -> tuple:
    """Starts twistd web with `reactor`, runs the workload; (results, seconds, server log)."""
    port = free_port()
    cwd = tmp_path / reactor
    cwd.mkdir()
    env = dict(os.environ, TM_WORKERS="2")  # PYTHONPATH (the plugin, the overlay) passes through
    env.pop("TM_STRANDS", None)

    def default_signals():
        # twistd installs its SIGINT handler only where SIGINT has its default disposition; a
        # test runner started in the background has it ignored, and the child inherits that.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    server = subprocess.Popen(
        [
            TWISTD,
            "-n",
            f"--reactor={reactor}",
            "web",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--path",
            root,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_signals,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60  # twistd imports Twisted first: slow on a busy machine
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"twistd --reactor={reactor} did not listen")
                time.sleep(0.1)
        results: list = []
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=run_client,
                args=(port, work[i::CLIENTS], results, i, started + WORKLOAD_SECONDS),
            )
            for i in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=WORKLOAD_SECONDS + 2 * SOCKET_TIMEOUT)
        elapsed = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), "a client is stuck"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    return results, elapsed, output


def check(results: list, work: list) -> list[str]:
    """The differences between the responses and the files, one line each."""
    expected = {}
    for method, path, headers, body, status in work:
        expected.setdefault((method, path, tuple(headers.items())), (body, status))
    problems = []
    for _, method, path, headers, status, kept, body in results:
        if method == "connections":
            continue
        want_body, want_status = expected[(method, path, tuple(headers.items()))]
        what = f"{method} {path} {headers or ''}"
        if status != want_status:
            problems.append(f"{what}: status {status}, want {want_status} ({body[:200]!r})")
        elif want_body is not None and body != want_body:
            kind = (
                "truncated"
                if len(body) < len(want_body)
                else "wrong bytes"
                if len(body) == len(want_body)
                else "too long"
            )
            problems.append(f"{what}: {kind}: {len(body)} bytes, want {len(want_body)}")
        elif (
            want_body is not None
            and method == "GET"
            and kept["Content-Length"] != str(len(want_body))
        ):
            problems.append(f"{what}: Content-Length {kept['Content-Length']}")
    return problems


def comparable(results: list) -> list:
    """The results without the order clients finished in: sortable, bodies as digests."""
    return sorted(
        (i, m, p, sorted(h.items()), s, sorted(k.items()), hashlib.sha256(b).hexdigest())
        for i, m, p, h, s, k, b in results
    )


def test_twistd_web_serves_static_files_byte_exact_with_two_workers(site, tmp_path):
    root = site["__root__"].decode()
    work = jobs(site)
    outcomes = {}
    for reactor in ("epoll", "tm"):
        results, elapsed, log = serve_and_load(reactor, root, tmp_path, work)
        outcomes[reactor] = results
        problems = check(results, work)
        print(
            f"{reactor}: {len(work)} requests in {elapsed:.1f} s "
            f"({len(work) / elapsed:.0f} req/s), {len(problems)} wrong"
        )
        assert not problems, (
            f"--reactor={reactor}:\n" + "\n".join(problems[:20]) + ("\n" + log[-4000:])
        )
        # A traceback in the log is Twisted reporting a fault, e.g. its Cooperator's
        # `list.remove(x): x not in list`, `NotPaused`, `TaskFailed`.
        assert "Traceback" not in log, log[-6000:]
        assert ("TMReactor" in log) == (reactor == "tm"), log[-2000:]
    # Same responses, and keep-alive as on epoll: each client used as many connections.
    assert comparable(outcomes["tm"]) == comparable(outcomes["epoll"])
