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
- `twistd web --path` serving an .rpy that is twisted.web's `ReverseProxyResource` in front of
  that streaming resource (on epoll): a client connection to the backend per request, whose
  response the proxy writes to the request as it arrives.
- `twistd web --wsgi` serving a WSGI application on Twisted's thread pool: bodies returned
  whole, yielded in chunks (each written by `blockingCallFromThread`), written through
  `start_response`'s `write`, and POSTed bodies read back.
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

from differential_helpers import Outcomes, default_signals, run_threads

TWISTD = pathlib.Path(sys.executable).with_name("twistd")
# (reactor, TM_WORKERS): epoll ignores TM_WORKERS, but every child gets it set explicitly.
RUNTIMES = {"epoll": ("epoll", "1"), "tm-1": ("tm", "1"), "tm-2": ("tm", "2")}
START_TIMEOUT = 60  # interpreter start-up and Twisted's imports on a loaded 2-core machine
STOP_TIMEOUT = 30
STALL = 15  # a bound on each socket operation: a lost answer fails the test instead of hanging it


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

    def __init__(
        self, runtime: str, args: list[str], cwd: pathlib.Path, path: tuple[str, ...] = ()
    ) -> None:
        reactor, workers = RUNTIMES[runtime]
        self.runtime = runtime
        env = dict(os.environ, TM_WORKERS=workers)  # PYTHONPATH (plugin, overlay) passes through
        if path:  # folders of the application's own modules, ahead of the rest
            env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")])
        env.pop("TM_STRANDS", None)
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(TWISTD),
                "-n",
                "--pidfile=",
                "--logfile=-",
                f"--reactor={reactor}",
                *args,
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=default_signals,
            start_new_session=True,
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
                    pytest.fail(
                        f"twistd ({self.runtime}) did not listen on {port}:\n" + self.log()[-4000:]
                    )
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
            pytest.fail(f"twistd ({self.runtime}) did not stop on SIGTERM:\n" + self.log()[-4000:])
        self._reader.join(5)
        log = self.log()
        assert "Traceback" not in log, f"twistd ({self.runtime}):\n" + log[-6000:]
        assert ("TMReactor" in log) == (RUNTIMES[self.runtime][0] == "tm"), log[-2000:]
        return log


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
HOSTS = (
    "192.0.2.200 cached.hosts.test\n2001:db8::200 cached.hosts.test\n"
    "198.51.100.7 other.hosts.test\n"
)
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
    ("www.corpus.test", dns.A),
    ("www.corpus.test", dns.AAAA),
    ("www.corpus.test", dns.MX),
    ("alias.corpus.test", dns.A),
    ("mail.corpus.test", dns.A),
    *[(f"h{i:02d}.corpus.test", dns.A) for i in range(12)],
    ("missing.corpus.test", dns.A),
    ("missing.corpus.test", dns.AAAA),
    ("deep.missing.corpus.test", dns.MX),
    ("cached.hosts.test", dns.A),
    ("cached.hosts.test", dns.AAAA),
    ("other.hosts.test", dns.A),
]
RECURSIVE_QUESTIONS = [
    ("www.upstream.test", dns.A),
    ("www.upstream.test", dns.AAAA),
    ("upstream.test", dns.MX),
    ("upstream.test", dns.SOA),
    ("missing.upstream.test", dns.A),
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
    server = Twistd(
        "epoll",
        ["dns", "--bindzone", str(root / "upstream.zone"), "--interface", UPSTREAM, "--port", "53"],
        root / "run",
    )
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
            batch = work[start : start + DNS_PIPELINE]
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
        assert ttl - slack <= r.ttl <= ttl, (
            f"{r}: ttl {r.ttl}, want at most {slack:.0f} s off {ttl}"
        )
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
    queries = [
        (qid, dns_query(qid, *questions[qid % len(questions)]))
        for qid in range(len(questions) * DNS_REPEATS * 2)
    ]
    random.Random(53).shuffle(queries)
    udp_work, tcp_work = queries[0::2], queries[1::2]

    def scenario(runtime: str) -> dict:
        port = free_port((socket.SOCK_STREAM, socket.SOCK_DGRAM))
        args = [
            "dns",
            "--interface",
            "127.0.0.1",
            "--port",
            str(port),
            "--pyzone",
            str(root / "corpus.py"),
            "--hosts-file",
            str(root / "hosts"),
            "--cache",
        ]
        if upstream:
            args += ["--recursive", "--resolv-conf", str(root / "resolv.conf")]
        server = Twistd(runtime, args, root / runtime)
        try:
            server.wait_listening(port)
            started = time.monotonic()
            # UDP and TCP clients at once: UDP runs on Twisted's Python transports, TCP on tm's
            # native ones, and both reach the same DNSServerFactory and its cache.
            results = run_threads(
                lambda i: (
                    udp_client(i, port, udp_work[i::DNS_CLIENTS])
                    if i < DNS_CLIENTS
                    else tcp_client(i, port, tcp_work[i - DNS_CLIENTS :: DNS_CLIENTS])
                ),
                2 * DNS_CLIENTS,
            )
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
        assert not wrong, (
            f"{len(wrong)} answers differ from epoll's, e.g. "
            f"{questions[wrong[0][1] % len(questions)]}: "
            f"{answers[wrong[0]]!r} != {reference[wrong[0]]!r}"
        )


# -- twistd words -------------------------------------------------------------------------------

IRC_CLIENTS, IRC_MESSAGES = 16, 40  # 640 messages, 9,600 deliveries
IRC_PASSWORD = "secret"
# `twistd words --group NAME` fails on Python 3 (words/tap.py calls str.decode), and without a
# group there is no channel to join (InMemoryWordsRealm does not create groups on request). So
# the tac builds the plugin's own service, from its own Options and makeService, and adds the
# group the option would have added.
WORDS_TAC = """
from twisted.application import service
from twisted.words import tap

options = tap.Options()
options.parseOptions({args!r})
options["groups"].append("room")
application = service.Application("words")
tap.makeService(options).setServiceParent(application)
"""


def irc_text(sender: int, j: int) -> str:
    """Lengths vary, so that lines split across reads."""
    return f"m{j:03d} of u{sender:02d} " + "x" * ((sender * 7 + j * 13) % 97)


def irc_client(i: int, port: int, everyone_in: threading.Barrier, progress: dict) -> dict:
    """Logs in as u<i>, joins #room, sends IRC_MESSAGES messages there once every client is in,
    and reads until it has every other client's; returns the PRIVMSG lines in arrival order and
    the members it learnt of (the NAMES reply and later JOINs)."""
    nick = f"u{i:02d}"
    with socket.create_connection(("127.0.0.1", port), timeout=STALL) as s:
        stream = s.makefile("rb")

        def lines():
            while line := stream.readline():
                progress[nick] = line.rstrip(b"\r\n").decode()
                yield progress[nick]
            raise ConnectionError("the server closed the connection")

        incoming = lines()
        s.sendall(f"PASS {IRC_PASSWORD}\r\nNICK {nick}\r\nUSER {nick} 0 * :client {i}\r\n".encode())
        while f" 001 {nick} " not in next(incoming):  # RPL_WELCOME: logged in
            pass
        s.sendall(b"JOIN #room\r\n")
        members = set()
        for line in incoming:
            words = line.split(" ")
            if words[1] == "353":  # RPL_NAMREPLY
                members.update(line.split(" :", 1)[1].split())
            elif words[1] == "366":  # RPL_ENDOFNAMES
                break
        progress[nick] = "in"
        everyone_in.wait(timeout=STALL)
        text = [f"PRIVMSG #room :{irc_text(i, j)}\r\n" for j in range(IRC_MESSAGES)]
        # Bursts of five lines, so that the server reads several messages at once.
        for start in range(0, IRC_MESSAGES, 5):
            s.sendall("".join(text[start : start + 5]).encode())
        received = []
        while len(received) < (IRC_CLIENTS - 1) * IRC_MESSAGES:
            line = next(incoming)
            words = line.split(" ")
            if words[1] == "PRIVMSG":
                received.append(line)
            elif words[1] == "JOIN":
                members.add(line[1:].split("!", 1)[0])
        s.sendall(b"QUIT :done\r\n")
    return {"received": received, "members": members}


@pytest.fixture(scope="module")
def words_outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")

    def scenario(runtime: str) -> list[dict]:
        port = free_port()
        users = ":".join(f"u{i:02d}:{IRC_PASSWORD}" for i in range(IRC_CLIENTS))
        tac = root / f"words-{runtime}.tac"
        tac.write_text(
            WORDS_TAC.format(
                args=[
                    "--irc-port",
                    f"tcp:{port}:interface=127.0.0.1",
                    "--auth",
                    f"memory:{users}",
                    "--hostname",
                    "corpus.test",
                ]
            )
        )
        server = Twistd(runtime, ["-y", str(tac)], root / runtime)
        try:
            server.wait_listening(port)
            everyone_in = threading.Barrier(IRC_CLIENTS)
            progress: dict[str, str] = {}  # each client's last line, for a failure's message
            try:
                return run_threads(irc_client, IRC_CLIENTS, port, everyone_in, progress)
            except AssertionError as e:
                raise AssertionError(f"{e}\nlast lines: {progress}\n{server.log()[-3000:]}")
        finally:
            server.stop()

    return Outcomes(scenario)


def one_serialization(sequences: list[list[str]]) -> list[str] | None:
    """An order of all the lines in which every sequence appears as a subsequence, or None."""
    after = collections.defaultdict(set)
    for seq in sequences:
        for a, b in zip(seq, seq[1:]):
            after[a].add(b)
    waiting_on = collections.Counter(b for successors in after.values() for b in successors)
    lines = {line for seq in sequences for line in seq}
    ready = [line for line in lines if not waiting_on[line]]
    order = []
    while ready:
        line = ready.pop()
        order.append(line)
        for b in after[line]:
            waiting_on[b] -= 1
            if not waiting_on[b]:
                ready.append(b)
    return order if len(order) == len(lines) else None


# twisted.words keeps a channel's members in a plain dict (`Group.users`) that every member's
# connection changes. With 2 workers on a free-threaded interpreter, connections joining or leaving
# at the same moment changed it in parallel ("dictionary changed size during iteration": a JOIN
# never answered; 6 of 7 runs on 3.13t) until tm_twisted managed twisted.words' shared objects
# (tm_twisted._shared_objects).
WORDS_RUNTIMES = ["epoll", "tm-1", "tm-2"]


@pytest.mark.parametrize("runtime", WORDS_RUNTIMES)
def test_twistd_words_channel_as_on_epoll(runtime, words_outcomes):
    clients = words_outcomes(runtime)
    everyone = {f"u{i:02d}" for i in range(IRC_CLIENTS)}
    for i, seen in enumerate(clients):
        assert seen["members"] == everyone, f"u{i:02d} knows of {sorted(seen['members'])}"
        by_sender = collections.defaultdict(list)
        for line in seen["received"]:
            prefix, _, _, text = line.split(" ", 3)
            by_sender[prefix[1:].split("!")[0]].append(text[1:])
        for j in range(IRC_CLIENTS):
            if j != i:
                want = [irc_text(j, k) for k in range(IRC_MESSAGES)]
                assert by_sender[f"u{j:02d}"] == want, f"u{i:02d} got u{j:02d}'s out of order"
    assert one_serialization([seen["received"] for seen in clients]) is not None, (
        "the clients saw the channel's messages in orders no one serialization gives"
    )
    if runtime != "epoll":
        reference = words_outcomes("epoll")
        for i, (seen, want) in enumerate(zip(clients, reference)):
            assert sorted(seen["received"]) == sorted(want["received"]), f"u{i:02d}'s lines"


# -- twistd web: a resource that streams through a producer -------------------------------------

BLOB_SEED, BLOB_SIZE = b"tm-reactor corpus", 4 << 20
# Run by twisted.web's ResourceScript for /stream.rpy: `cache()` keeps the resource in the site's
# registry after the first request, so the blob is made once per server.
STREAM_RPY = f'''
cache()

import hashlib

from twisted.internet import reactor
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.web import resource, server
from zope.interface import implementer

BLOB = hashlib.shake_256({BLOB_SEED!r}).digest({BLOB_SIZE})


@implementer(IPushProducer)
class PushSlice:
    """Writes bursts of four chunks, a 1 ms timer between bursts, for as long as the transport
    does not pause it."""

    def __init__(self, request, data, chunk):
        self.request, self.data, self.chunk = request, data, chunk
        self.pos, self.paused, self.stopped, self.call = 0, False, False, None
        request.registerProducer(self, True)
        self.call = reactor.callLater(0, self.burst)

    def burst(self):
        self.call = None
        for _ in range(4):
            if self.paused or self.stopped:
                return
            if self.pos >= len(self.data):
                self.stopped = True
                self.request.unregisterProducer()
                self.request.finish()
                return
            piece = self.data[self.pos:self.pos + self.chunk]
            self.pos += len(piece)
            self.request.write(piece)
        if self.call is None and not self.paused:
            self.call = reactor.callLater(0.001, self.burst)

    def pauseProducing(self):
        self.paused = True
        if self.call is not None:
            self.call.cancel()
            self.call = None

    def resumeProducing(self):
        self.paused = False
        if self.call is None and not self.stopped:
            self.call = reactor.callLater(0, self.burst)

    def stopProducing(self):
        self.stopped = True
        if self.call is not None:
            self.call.cancel()
            self.call = None


@implementer(IPullProducer)
class PullSlice:
    """A chunk each time it is asked for one: twisted.web steps it through task.cooperate."""

    def __init__(self, request, data, chunk):
        self.request, self.data, self.chunk, self.pos = request, data, chunk, 0
        request.registerProducer(self, False)

    def resumeProducing(self):
        if self.pos >= len(self.data):
            self.request.unregisterProducer()
            self.request.finish()
            return
        piece = self.data[self.pos:self.pos + self.chunk]
        self.pos += len(piece)
        self.request.write(piece)

    def stopProducing(self):
        pass


class Slices(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        kind = request.args[b"kind"][0]
        offset, size, chunk = (int(request.args[k][0]) for k in (b"offset", b"size", b"chunk"))
        data = BLOB[offset:offset + size]
        request.setHeader(b"content-type", b"application/octet-stream")
        if b"length" in request.args:
            request.setHeader(b"content-length", b"%d" % len(data))
        (PushSlice if kind == b"push" else PullSlice)(request, data, chunk)
        return server.NOT_DONE_YET


resource = Slices()
'''
STREAM_CLIENTS = 16
BLOB = hashlib.shake_256(BLOB_SEED).digest(BLOB_SIZE)


def stream_jobs() -> list[str]:
    """144 request paths: push and pull, with and without a Content-Length, 0 bytes to 3 MB."""
    rng = random.Random(23)
    sizes = [0, 1, 4095, 65536, 65537, 3 << 20] * 2
    sizes += [rng.randrange(200_000) for _ in range(72)]
    sizes += [rng.randrange(200_000, 2 << 20) for _ in range(144 - len(sizes))]
    paths = []
    for n, size in enumerate(sizes):
        offset = rng.randrange(BLOB_SIZE - size + 1)
        chunk = rng.choice([1000, 8192, 16384, 65536, 100_000])
        chunk = max(chunk, size // 256)  # at most a few hundred chunks: bounded in time
        kind = ("push", "pull")[n % 2]
        length = "&length=1" if n % 4 >= 2 else ""
        paths.append(f"/stream.rpy?kind={kind}&offset={offset}&size={size}&chunk={chunk}{length}")
    rng.shuffle(paths)
    return paths


def stream_client(i: int, port: int, paths: list[str]) -> list[tuple]:
    """GETs the paths over one keep-alive connection: (path, status, framing, body digest)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STALL)
    out = []
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            framing = (
                response.getheader("Content-Length"),
                response.getheader("Transfer-Encoding"),
            )
            out.append(
                (path, response.status, framing, len(body), hashlib.sha256(body).hexdigest())
            )
    finally:
        conn.close()
    return out


def web_path_args(port: int, folder: pathlib.Path) -> list[str]:
    """`twistd web` serving folder on 127.0.0.1:port."""
    return ["web", "--listen", f"tcp:{port}:interface=127.0.0.1", "--path", str(folder)]


def web_path_scenario(root: pathlib.Path, folder: str, paths: list[str]):
    """A scenario: `twistd web` on a runtime serving root/folder, STREAM_CLIENTS keep-alive
    clients GETting their share of paths (stream_client)."""

    def scenario(runtime: str) -> list:
        port = free_port()
        server = Twistd(runtime, web_path_args(port, root / folder), root / runtime)
        try:
            server.wait_listening(port)
            return run_threads(
                lambda i: stream_client(i, port, paths[i::STREAM_CLIENTS]), STREAM_CLIENTS
            )
        finally:
            server.stop()

    return scenario


@pytest.fixture(scope="module")
def stream_outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    (root / "www").mkdir()
    (root / "www" / "stream.rpy").write_text(STREAM_RPY)
    paths = stream_jobs()

    return Outcomes(web_path_scenario(root, "www", paths))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_twistd_web_producer_resource_as_on_epoll(runtime, stream_outcomes):
    clients = stream_outcomes(runtime)
    for responses in clients:
        for path, status, (length, encoding), size, digest in responses:
            query = dict(kv.split("=") for kv in path.split("?")[1].split("&"))
            offset, want = int(query["offset"]), int(query["size"])
            assert (status, size) == (200, want), path
            assert digest == hashlib.sha256(BLOB[offset : offset + want]).hexdigest(), path
            if "length" in query:
                assert (length, encoding) == (str(want), None), path
            else:
                assert (length, encoding) == (None, "chunked"), path
    if runtime != "epoll":
        assert clients == stream_outcomes("epoll")


# -- twistd web: a reverse proxy in front of that resource --------------------------------------

# twisted.web's ReverseProxyResource: each request opens a client connection to the backend (the
# streaming server above, on epoll), whose response parts the proxy writes to the request.
PROXY_RPY = """
from twisted.web import proxy

resource = proxy.ReverseProxyResource("127.0.0.1", {port}, b"/stream.rpy")
"""


@pytest.fixture(scope="module")
def proxy_outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    (root / "backend").mkdir()
    (root / "backend" / "stream.rpy").write_text(STREAM_RPY)
    backend_port = free_port()
    backend = Twistd("epoll", web_path_args(backend_port, root / "backend"), root / "backend-run")
    backend.wait_listening(backend_port)
    (root / "www").mkdir()
    (root / "www" / "proxy.rpy").write_text(PROXY_RPY.format(port=backend_port))
    paths = [path.replace("/stream.rpy", "/proxy.rpy") for path in stream_jobs()[::2]]

    yield Outcomes(web_path_scenario(root, "www", paths))
    backend.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_twistd_web_reverse_proxy_as_on_epoll(runtime, proxy_outcomes):
    clients = proxy_outcomes(runtime)
    for responses in clients:
        for path, status, _, size, digest in responses:
            query = dict(kv.split("=") for kv in path.split("?")[1].split("&"))
            offset, want = int(query["offset"]), int(query["size"])
            assert (status, size) == (200, want), path
            assert digest == hashlib.sha256(BLOB[offset : offset + want]).hexdigest(), path
    if runtime != "epoll":
        assert clients == proxy_outcomes("epoll")


# -- twistd -y: an AMP service ------------------------------------------------------------------

AMP_CLIENTS, AMP_CALLS, AMP_WINDOW = 16, 120, 8
AMP_TAC = """
from twisted.application import service, strports
from twisted.internet import defer, protocol, reactor
from twisted.protocols import amp


class Echo(amp.Command):
    arguments = [(b"text", amp.Unicode())]
    response = [(b"text", amp.Unicode())]


class Sum(amp.Command):
    arguments = [(b"a", amp.Integer()), (b"b", amp.Integer())]
    response = [(b"total", amp.Integer())]


class Later(amp.Command):
    arguments = [(b"ms", amp.Integer()), (b"text", amp.Unicode())]
    response = [(b"text", amp.Unicode())]


class Take(amp.Command):
    arguments = []
    response = [(b"ticket", amp.Integer())]


class Refused(Exception):
    pass


class Refuse(amp.Command):
    arguments = [(b"why", amp.Unicode())]
    response = []
    errors = {{Refused: b"REFUSED"}}


class Service(amp.AMP):
    @Echo.responder
    def echo(self, text):
        return {{"text": text}}

    @Sum.responder
    def sum(self, a, b):
        return {{"total": a + b}}

    @Later.responder
    def later(self, ms, text):
        d = defer.Deferred()
        reactor.callLater(ms / 1000, d.callback, {{"text": text[::-1]}})
        return d

    @Take.responder
    def take(self):
        self.factory.issued += 1  # one counter for every connection
        return {{"ticket": self.factory.issued}}

    @Refuse.responder
    def refuse(self, why):
        raise Refused(why)


class Tickets(protocol.ServerFactory):
    protocol = Service

    def __init__(self):
        self.issued = 0


application = service.Application("amp")
strports.service("tcp:{port}:interface=127.0.0.1", Tickets()).setServiceParent(application)
"""


def amp_box(fields: dict[bytes, bytes]) -> bytes:
    """AMP's wire form: a 16-bit length before each key and value, an empty key at the end."""
    return (
        b"".join(
            struct.pack("!H", len(k)) + k + struct.pack("!H", len(v)) + v for k, v in fields.items()
        )
        + b"\0\0"
    )


def read_amp_box(stream) -> dict[bytes, bytes]:
    """The next box's fields, in the order they came (amp_box() of them gives its bytes back)."""
    fields = {}
    while True:
        (n,) = struct.unpack("!H", stream.read(2))
        if n == 0:
            return fields
        key = stream.read(n)
        (length,) = struct.unpack("!H", stream.read(2))
        fields[key] = stream.read(length)
        assert len(key) == n and len(fields[key]) == length, "connection closed"


def amp_calls(i: int) -> list[tuple[dict[bytes, bytes], dict[bytes, bytes]]]:
    """Client i's calls, each with the answer fields it must get (a Take's ticket is None)."""
    rng = random.Random(i)
    calls = []
    for n in range(AMP_CALLS):
        tag = str(n + 1).encode()
        kind = rng.choice(["Echo", "Sum", "Later", "Take", "Refuse"])
        ask = {b"_command": kind.encode(), b"_ask": tag}
        if kind == "Echo":
            text = f"{i}:{n}:" + "é" * rng.randrange(20_000)
            ask[b"text"] = text.encode()
            want = {b"_answer": tag, b"text": text.encode()}
        elif kind == "Sum":
            a, b = rng.randrange(-(10**12), 10**12), rng.randrange(10**12)
            ask |= {b"a": str(a).encode(), b"b": str(b).encode()}
            want = {b"_answer": tag, b"total": str(a + b).encode()}
        elif kind == "Later":
            text = f"later {i}:{n}"
            ask |= {b"ms": str(rng.randrange(20)).encode(), b"text": text.encode()}
            want = {b"_answer": tag, b"text": text[::-1].encode()}
        elif kind == "Take":
            want = {b"_answer": tag, b"ticket": None}
        else:
            ask[b"why"] = f"no {n}".encode()
            want = {
                b"_error": tag,
                b"_error_code": b"REFUSED",
                b"_error_description": f"no {n}".encode(),
            }
        calls.append((ask, want))
    return calls


def amp_client(i: int, port: int) -> dict:
    """Makes client i's calls over one connection, AMP_WINDOW in flight at a time; returns each
    answer's bytes by tag (a ticket's number replaced by #) and the tickets."""
    calls = amp_calls(i)
    answers, tickets = {}, []
    with socket.create_connection(("127.0.0.1", port), timeout=STALL) as s:
        stream = s.makefile("rb")
        for start in range(0, len(calls), AMP_WINDOW):
            window = calls[start : start + AMP_WINDOW]
            s.sendall(b"".join(amp_box(ask) for ask, _ in window))
            for _ in window:
                fields = read_amp_box(stream)
                tag = fields.get(b"_answer", fields.get(b"_error"))
                want = calls[int(tag) - 1][1]
                if b"ticket" in want:
                    tickets.append(int(fields[b"ticket"]))
                    fields[b"ticket"] = None
                assert fields == want, f"call {tag!r}: {fields!r}, want {want!r}"
                if b"ticket" in want:
                    fields[b"ticket"] = b"#"  # which ticket a call gets depends on timing
                answers[tag] = amp_box(fields)
    return {"answers": answers, "tickets": tickets}


@pytest.fixture(scope="module")
def amp_outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("amp")

    def scenario(runtime: str) -> list[dict]:
        port = free_port()
        tac = root / f"amp-{runtime}.tac"
        tac.write_text(AMP_TAC.format(port=port))
        server = Twistd(runtime, ["-y", str(tac)], root / runtime)
        try:
            server.wait_listening(port)
            return run_threads(amp_client, AMP_CLIENTS, port)
        finally:
            server.stop()

    return Outcomes(scenario)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_twistd_amp_service_as_on_epoll(runtime, amp_outcomes):
    clients = amp_outcomes(runtime)
    # The factory's counter: every ticket issued once, to some connection, in each connection's
    # order of asking.
    tickets = [t for seen in clients for t in seen["tickets"]]
    assert sorted(tickets) == list(range(1, len(tickets) + 1))
    for seen in clients:
        assert seen["tickets"] == sorted(seen["tickets"])
    if runtime != "epoll":
        reference = amp_outcomes("epoll")
        for i, (seen, want) in enumerate(zip(clients, reference)):
            assert seen["answers"] == want["answers"], f"client {i}"


# -- twistd web --wsgi --------------------------------------------------------------------------

WSGI_CLIENTS, WSGI_REQUESTS = 12, 80
WSGI_APP = """
import hashlib


def body(n):
    return b"".join(hashlib.sha256(b"%d-%d" % (n, i)).hexdigest().encode() + b"\\n" for i in range(n))


def application(environ, start_response):
    kind, n = environ["PATH_INFO"].strip("/").split("/")
    n = int(n)
    if kind == "post":
        data = environ["wsgi.input"].read()
        answer = b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())
        start_response("200 OK", [("Content-Length", str(len(answer)))])
        return [answer]
    data = body(n)
    if kind == "whole":
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]
    if kind == "chunks":  # no length: chunked, a blockingCallFromThread per chunk
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (data[i:i + 4096] for i in range(0, len(data), 4096))
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(data[: len(data) // 2])
    return [data[len(data) // 2 :]]
"""


def wsgi_jobs(i: int) -> list[tuple[str, str, bytes]]:
    """Client i's requests: (method, path, body)."""
    rng = random.Random(100 + i)
    jobs = []
    for _ in range(WSGI_REQUESTS):
        # Mostly answers of a known length: the client may then send its next request before
        # the application's thread has called finish() (a call from a thread, not a write).
        kind = rng.choice(["whole"] * 4 + ["post"] * 3 + ["chunks", "write"])
        # Mostly short answers: the next request then arrives while the last one finishes.
        n = rng.randrange(1, 3000) if rng.random() < 0.2 else rng.randrange(1, 300)
        data = rng.randbytes(n * 7) if kind == "post" else b""
        jobs.append(("POST" if data else "GET", f"/{kind}/{n}", data))
    return jobs


def wsgi_client(i: int, port: int) -> list[tuple]:
    """Client i's requests over one keep-alive connection: (path, status, framing, digest)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STALL)
    out = []
    try:
        for method, path, data in wsgi_jobs(i):
            conn.request(method, path, body=data or None)
            response = conn.getresponse()
            body = response.read()
            framing = response.getheader("Content-Length") or response.getheader(
                "Transfer-Encoding"
            )
            out.append((path, response.status, framing, hashlib.sha256(body).hexdigest()))
    finally:
        conn.close()
    return out


@pytest.fixture(scope="module")
def wsgi_outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsgi")
    (root / "app").mkdir()
    (root / "app" / "wsgicorpus.py").write_text(WSGI_APP)

    def scenario(runtime: str) -> list:
        port = free_port()
        server = Twistd(
            runtime,
            [
                "web",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--wsgi",
                "wsgicorpus.application",
            ],
            root / runtime,
            path=(str(root / "app"),),
        )
        try:
            server.wait_listening(port)
            return run_threads(lambda i: wsgi_client(i, port), WSGI_CLIENTS)
        finally:
            server.stop()

    return Outcomes(scenario)


def wsgi_expected(method: str, path: str, data: bytes, app: dict) -> tuple:
    """(status, framing, digest) the application's code (app: WSGI_APP run) gives for one
    request."""
    kind, n = path.strip("/").split("/")
    if kind == "post":
        answer = b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())
        return 200, str(len(answer)), hashlib.sha256(answer).hexdigest()
    body = app["body"](int(n))
    framing = str(len(body)) if kind == "whole" else "chunked"
    return 200, framing, hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_twistd_web_wsgi_application_as_on_epoll(runtime, wsgi_outcomes):
    clients = wsgi_outcomes(runtime)
    app: dict = {}
    exec(WSGI_APP, app)
    for i, responses in enumerate(clients):
        want = [(job[1], *wsgi_expected(*job, app)) for job in wsgi_jobs(i)]
        assert responses == want, f"client {i}"
    if runtime != "epoll":
        assert clients == wsgi_outcomes("epoll")
