"""Real Twisted applications, unmodified, under concurrent load: tm against `--reactor=epoll`.

Each application runs as a real `twistd -n` in a child process, with `--reactor=epoll` and with
`--reactor=tm` at TM_WORKERS=1 and 2, driven from this process by many concurrent clients over
loopback. What the clients observe must be what epoll's run gave them, byte for byte where the
protocol makes the bytes a function of the requests:

- `twistd dns` (twisted.names): an authoritative zone (`--pyzone`), a hosts file answered
  through the record cache (`--hosts-file --cache`) and, where port 53 can be bound on a loopback
  address, `--recursive` lookups forwarded to a second name server (`twistd dns --bindzone` on
  epoll). A, AAAA, MX, NS, SOA, TXT, CNAME and NXDOMAIN questions over UDP and TCP.
- `twistd words` (IRC): clients join one channel and each sends a run of messages; every client
  must see every other client's messages, each sender's in its order, and all of them in an order
  consistent with one serialization.
- `twistd web --path` serving an .rpy resource that streams a few MB through a push producer (bursts
  between timer pauses, paused and resumed by the transport) or a pull producer (stepped by
  Twisted's global Cooperator), chunked and with a Content-Length.
- `twistd -y` with an AMP service (twisted.protocols.amp): answers now, answers from a timer,
  declared errors, and tickets from a counter its factory keeps for every connection.

Every child starts in a session of its own with SIGINT and SIGTERM at their default dispositions
(twistd installs its handlers only there), with the test's PYTHONPATH (the tm plugin and, in
development, the overlay) and TM_WORKERS set; it is stopped with SIGTERM, and its log must hold
no traceback. The epoll run of each application is made once per test session and is what the tm
runs are compared with.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import http.client

import pytest
from twisted.names import dns

TWISTD = pathlib.Path(sys.executable).with_name("twistd")
# (reactor, TM_WORKERS): epoll ignores TM_WORKERS, but every child gets it set explicitly.
RUNTIMES = {"epoll": ("epoll", "1"), "tm-1": ("tm", "1"), "tm-2": ("tm", "2")}
START_TIMEOUT = 60  # interpreter start-up and Twisted's imports on a loaded 2-core machine
STOP_TIMEOUT = 30
STALL = 15  # a bound on each socket operation: a lost answer fails the test instead of hanging it


def default_signals() -> None:
    # A test runner started in the background has SIGINT ignored and a child inherits that;
    # twistd installs its SIGINT handler only where the disposition is the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def free_port(kinds=(socket.SOCK_STREAM,)) -> int:
    """A port of 127.0.0.1 free for every socket kind in `kinds` (DNS listens on both)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for kind in kinds:
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class Twistd:
    """A real `twistd -n` in a child process, its log (stdout and stderr) drained all along."""

    def __init__(self, runtime: str, args: list[str], cwd: pathlib.Path) -> None:
        reactor, workers = RUNTIMES[runtime]
        self.runtime = runtime
        env = dict(os.environ, TM_WORKERS=workers)  # PYTHONPATH (plugin, overlay) passes through
        env.pop("TM_STRANDS", None)
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(TWISTD), "-n", "--pidfile=", "--logfile=-",
             f"--reactor={reactor}", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=default_signals, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def wait_listening(self, port: int, host: str = "127.0.0.1") -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"twistd ({self.runtime}) did not listen on {port}:\n"
                                + self.log()[-4000:])
                time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM, then waits for the exit; returns the log, checked for tracebacks."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._reader.join(5)
            pytest.fail(f"twistd ({self.runtime}) did not stop on SIGTERM:\n"
                        + self.log()[-4000:])
        self._reader.join(5)
        log = self.log()
        assert "Traceback" not in log, f"twistd ({self.runtime}):\n" + log[-6000:]
        assert ("TMReactor" in log) == (RUNTIMES[self.runtime][0] == "tm"), log[-2000:]
        return log


def run_threads(target, count: int, *args) -> list:
    """Runs target(index, *args) on `count` threads at once; their results in index order."""
    results: list = [None] * count
    errors: list = []

    def body(i: int) -> None:
        try:
            results[i] = target(i, *args)
        except BaseException as e:  # reported below, with the client's index
            errors.append((i, e))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client is stuck"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"client {i}: {e!r} ({len(errors)} clients failed)") from e
    return results


class Outcomes:
    """Runs an application's scenario once per runtime and test session (epoll's is the
    reference of the tm runs) and remembers what the clients observed."""

    def __init__(self, scenario) -> None:
        self._scenario = scenario
        self._seen: dict[str, object] = {}

    def __call__(self, runtime: str):
        if runtime not in self._seen:
            started = time.monotonic()
            self._seen[runtime] = self._scenario(runtime)
            print(f"{runtime}: {time.monotonic() - started:.1f} s")
        return self._seen[runtime]


# -- twistd dns ---------------------------------------------------------------------------------

ZONE = b"corpus.test"
PYZONE = """
zone = [
    SOA("corpus.test", mname="ns1.corpus.test", rname="hostmaster.corpus.test", serial=17,
        refresh="1H", retry="15M", expire="1W", minimum="1H", ttl="1H"),
    NS("corpus.test", "ns1.corpus.test"),
    NS("corpus.test", "ns2.corpus.test"),
    MX("corpus.test", 10, "mail.corpus.test"),
    MX("corpus.test", 20, "backup.corpus.test"),
    A("corpus.test", "192.0.2.1"),
    AAAA("corpus.test", "2001:db8::1"),
    TXT("corpus.test", b"v=corpus", b"a second string"),
    A("ns1.corpus.test", "192.0.2.53"),
    A("ns2.corpus.test", "192.0.2.54"),
    A("mail.corpus.test", "192.0.2.25"),
    A("backup.corpus.test", "192.0.2.26"),
    A("www.corpus.test", "192.0.2.80"),
    A("www.corpus.test", "192.0.2.81"),
    AAAA("www.corpus.test", "2001:db8::80"),
    CNAME("alias.corpus.test", "www.corpus.test"),
] + [A("h%02d.corpus.test" % i, "192.0.2.%d" % (100 + i), ttl=60 + i) for i in range(12)]
"""
HOSTS = "192.0.2.200 cached.hosts.test\n2001:db8::200 cached.hosts.test\n" \
        "198.51.100.7 other.hosts.test\n"
HOSTS_TTL = 3600  # what twisted.names.hosts.Resolver gives its answers
# The upstream name server of the recursive lookups: any loopback address will do, and one that
# a local resolver does not hold (they take 127.0.0.53 or 127.0.0.1) leaves port 53 free.
UPSTREAM = "127.53.0.17"
UPSTREAM_TTL = 3000
BINDZONE = f"""$ORIGIN upstream.test.
$TTL {UPSTREAM_TTL}
@ IN SOA ns.upstream.test. hostmaster.upstream.test. 1 3600 900 604800 {UPSTREAM_TTL}
@ IN NS ns.upstream.test.
@ IN MX 5 mail.upstream.test.
ns IN A 198.51.100.53
mail IN A 198.51.100.25
www IN A 198.51.100.80
www IN AAAA 2001:db8:5::80
"""
DNS_QUESTIONS = [
    *[("corpus.test", t) for t in (dns.A, dns.AAAA, dns.MX, dns.NS, dns.SOA, dns.TXT)],
    ("www.corpus.test", dns.A), ("www.corpus.test", dns.AAAA), ("www.corpus.test", dns.MX),
    ("alias.corpus.test", dns.A), ("mail.corpus.test", dns.A),
    *[(f"h{i:02d}.corpus.test", dns.A) for i in range(12)],
    ("missing.corpus.test", dns.A), ("missing.corpus.test", dns.AAAA),
    ("deep.missing.corpus.test", dns.MX),
    ("cached.hosts.test", dns.A), ("cached.hosts.test", dns.AAAA), ("other.hosts.test", dns.A),
]
RECURSIVE_QUESTIONS = [
    ("www.upstream.test", dns.A), ("www.upstream.test", dns.AAAA), ("upstream.test", dns.MX),
    ("upstream.test", dns.SOA), ("missing.upstream.test", dns.A),
]
DNS_REPEATS = 5  # each question this often over each of UDP and TCP
DNS_CLIENTS = 8  # threads per transport
DNS_PIPELINE = 4  # TCP queries in flight on a connection


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A name server for upstream.test on UPSTREAM:53 (epoll), or None where port 53 cannot be
    bound (no privilege): the recursive questions are then left out."""
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((UPSTREAM, 53))
    except OSError as e:
        print(f"no recursive lookups: {UPSTREAM}:53: {e}")
        yield None
        return
    root = tmp_path_factory.mktemp("upstream")
    (root / "upstream.zone").write_text(BINDZONE)
    server = Twistd("epoll", ["dns", "--bindzone", str(root / "upstream.zone"),
                              "--interface", UPSTREAM, "--port", "53"], root / "run")
    server.wait_listening(53, UPSTREAM)
    yield UPSTREAM
    server.stop()


def dns_query(qid: int, name: str, qtype: int) -> bytes:
    message = dns.Message(id=qid, recDes=True)
    message.queries = [dns.Query(name, qtype, dns.IN)]
    return message.toStr()


def udp_client(i: int, port: int, work: list) -> dict[int, bytes]:
    """Asks each (id, query) over UDP, one at a time, resending a query lost on the way."""
    answers = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        for qid, query in work:
            for _attempt in range(STALL // 3):
                s.sendto(query, ("127.0.0.1", port))
                try:
                    while True:  # a late answer to an earlier attempt is skipped
                        data = s.recv(65536)
                        if data[:2] == query[:2]:
                            break
                except TimeoutError:
                    continue
                answers[qid] = data
                break
            else:
                raise AssertionError(f"no UDP answer to query {qid}")
    return answers


def tcp_client(i: int, port: int, work: list) -> dict[int, bytes]:
    """Asks the queries over one TCP connection, DNS_PIPELINE in flight at a time."""
    answers = {}
    with socket.create_connection(("127.0.0.1", port), timeout=STALL) as s:
        stream = s.makefile("rb")
        for start in range(0, len(work), DNS_PIPELINE):
            batch = work[start:start + DNS_PIPELINE]
            s.sendall(b"".join(struct.pack("!H", len(q)) + q for _, q in batch))
            for _ in batch:
                (length,) = struct.unpack("!H", stream.read(2))
                data = stream.read(length)
                assert len(data) == length, "connection closed"
                answers[struct.unpack("!H", data[:2])[0]] = data
    return answers


def dns_normalized(data: bytes, slack: float) -> bytes:
    """The answer with the TTLs of records from the cache set to 0, after checking them: anything
    else is kept byte for byte. A cached TTL counts down with the wall clock, and on any reactor
    it also loses up to a second per cache hit (DNSServerFactory caches every answer again, the
    cache's own included, and RRHeader truncates the fractional TTL), so it depends on how the
    queries of one question interleaved: `slack` bounds that. For the same reason the
    authoritative-answer flag is cleared: an upstream answer relayed as it came keeps the flag of
    its records, the same answer from the cache loses it (CacheResolver rebuilds the records)."""
    message = dns.Message()
    message.fromStr(data)
    records = message.answers + message.authority + message.additional
    cached = [r for r in records if not r.name.name.endswith(ZONE)]
    if not cached:
        return data
    for r in cached:
        ttl = HOSTS_TTL if r.name.name.endswith(b".hosts.test") else UPSTREAM_TTL
        assert ttl - slack <= r.ttl <= ttl, f"{r}: ttl {r.ttl}, want at most {slack:.0f} s off {ttl}"
        r.ttl = 0
    message.auth = False
    return message.toStr()


@pytest.fixture(scope="module")
def dns_outcomes(tmp_path_factory, upstream):
    root = tmp_path_factory.mktemp("dns")
    (root / "corpus.py").write_text(PYZONE)
    (root / "hosts").write_text(HOSTS)
    (root / "resolv.conf").write_text(f"nameserver {upstream}\n")
    questions = DNS_QUESTIONS + (RECURSIVE_QUESTIONS if upstream else [])
    # Query ids are the queries' indexes: the same on every runtime, so answers compare whole.
    queries = [(qid, dns_query(qid, *questions[qid % len(questions)]))
               for qid in range(len(questions) * DNS_REPEATS * 2)]
    random.Random(53).shuffle(queries)
    udp_work, tcp_work = queries[0::2], queries[1::2]

    def scenario(runtime: str) -> dict:
        port = free_port((socket.SOCK_STREAM, socket.SOCK_DGRAM))
        args = ["dns", "--interface", "127.0.0.1", "--port", str(port),
                "--pyzone", str(root / "corpus.py"), "--hosts-file", str(root / "hosts"),
                "--cache"]
        if upstream:
            args += ["--recursive", "--resolv-conf", str(root / "resolv.conf")]
        server = Twistd(runtime, args, root / runtime)
        try:
            server.wait_listening(port)
            started = time.monotonic()
            # UDP and TCP clients at once: UDP runs on Twisted's Python transports, TCP on tm's
            # native ones, and both reach the same DNSServerFactory and its cache.
            results = run_threads(
                lambda i: udp_client(i, port, udp_work[i::DNS_CLIENTS]) if i < DNS_CLIENTS
                else tcp_client(i, port, tcp_work[i - DNS_CLIENTS::DNS_CLIENTS]),
                2 * DNS_CLIENTS)
            elapsed = time.monotonic() - started
        finally:
            server.stop()
        answers = {}
        for i, result in enumerate(results):
            for qid, data in result.items():
                transport = "udp" if i < DNS_CLIENTS else "tcp"
                answers[(transport, qid)] = dns_normalized(data, elapsed + 2 + 2 * DNS_REPEATS)
        return answers

    outcomes = Outcomes(scenario)
    outcomes.questions = questions
    return outcomes


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_twistd_dns_answers_as_on_epoll(runtime, dns_outcomes):
    answers = dns_outcomes(runtime)
    questions = dns_outcomes.questions
    assert len(answers) == len(questions) * DNS_REPEATS * 2
    # One question, one answer: every repeat, over UDP and TCP alike, apart from the id.
    by_question = collections.defaultdict(set)
    for (_, qid), data in answers.items():
        by_question[questions[qid % len(questions)]].add(data[2:])
    differing = {q: len(a) for q, a in by_question.items() if len(a) != 1}
    assert not differing, f"different answers to one question: {differing}"
    outcome = {}
    for (name, qtype), (data,) in by_question.items():
        message = dns.Message()
        message.fromStr(b"\0\0" + data)
        outcome[(name, qtype)] = (message.rCode, sorted(str(r.payload) for r in message.answers))
    def answered(question, prefix: str) -> bool:
        rcode, records = outcome[question]
        return rcode == dns.OK and any(r.startswith(prefix) for r in records)

    assert answered(("corpus.test", dns.A), "<A address=192.0.2.1 ")
    assert answered(("alias.corpus.test", dns.A), "<CNAME name=www.corpus.test")
    assert answered(("alias.corpus.test", dns.A), "<A address=192.0.2.80 ")
    assert answered(("cached.hosts.test", dns.A), "<A address=192.0.2.200 ")
    assert outcome[("missing.corpus.test", dns.A)][0] == dns.ENAME
    if ("www.upstream.test", dns.A) in outcome:
        assert answered(("www.upstream.test", dns.A), "<A address=198.51.100.80 ")
    if runtime != "epoll":
        reference = dns_outcomes("epoll")
        wrong = sorted(k for k in answers if answers[k] != reference[k])
        assert not wrong, (f"{len(wrong)} answers differ from epoll's, e.g. "
                           f"{questions[wrong[0][1] % len(questions)]}: "
                           f"{answers[wrong[0]]!r} != {reference[wrong[0]]!r}")
