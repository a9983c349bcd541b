"""tm's race reporter (tm.set_race_report, tm.race_reports; docs/MANAGED_STATE.md "Race reports").

Two connections of a TMReactor with native TCP transports (and of the asyncio loop in parallel
mode) bump unmanaged shared state (a module global, a class attribute, a plain dict given to
tm.watch_races): each is reported with both sites. Managed state, mutations in inevitable
transactions, different keys and a single strand are not. The reporter is off by default, and TM_RACE_REPORT=1 turns it on in a program and prints the reports
at exit. It needs CPython 3.12+ (dict watchers): on 3.11 the tests that need it skip, and the
API's refusal is checked instead.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from twisted.internet import protocol

import tm
from tm import _core
from tm_twisted import TMReactor, _native_stream, _tcp
from twisted_helpers import run_bounded

needs_transports = pytest.mark.skipif(
    not _native_stream.available(), reason="tm._core has no native stream transports"
)

SOURCE = pathlib.Path(__file__).read_text().splitlines()


def line_of(marker):
    """The number of the line of this file that ends with the comment `# <marker>`."""
    (n,) = [i + 1 for i, line in enumerate(SOURCE) if line.rstrip().endswith(f"# {marker}")]
    return f"{pathlib.Path(__file__).name}:{n} "


# ---- unmanaged state the servers share ----

total = 0  # a module global
hits = {}  # a plain dict, watched by the test that uses it
counter = tm.Counter()  # managed: never reported


class Bumper(protocol.Protocol):
    """Bumps the shared state once per byte received, at a line of its own per connection (the
    first byte names it: a or b), and echoes the bytes."""

    count = 0  # a class attribute

    def dataReceived(self, data):
        global total
        for _ in data:
            if data.startswith(b"a"):
                total += 1  # site: global a
                Bumper.count += 1  # site: class a
                hits["n"] = hits.get("n", 0) + 1  # site: dict a
            else:
                total += 1  # site: global b
                Bumper.count += 1  # site: class b
                hits["n"] = hits.get("n", 0) + 1  # site: dict b
        self.transport.write(data)


class ManagedBumper(protocol.Protocol):
    """Touches only managed state, or mutates a global after its callback became inevitable."""

    def dataReceived(self, data):
        global total
        for _ in data:
            counter.add(1)
            self.factory.bumps += 1  # the factory is managed: the callback is inevitable now
            total += 1  # unmanaged, but every such mutation is inevitable: serialised
        self.transport.write(data)


def serve(reactor, factory, messages):
    """Serves factory on reactor; clients send each message in turn on a connection of its own
    (a blocking socket on a thread), each waiting for its echo; then stops the reactor."""
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    where = ("127.0.0.1", port.getHost().port)
    errors = []

    def clients():
        try:
            socks = [socket.create_connection(where, timeout=20) for _ in messages]
            for sock, message in zip(socks, messages):
                for _ in range(20):
                    sock.sendall(message)
                    got = b""
                    while len(got) < len(message):
                        chunk = sock.recv(65536)
                        assert chunk, "connection closed early"
                        got += chunk
            for sock in socks:
                sock.close()
        except BaseException as e:  # re-raised below, on the test's thread
            errors.append(e)
        finally:
            reactor.callFromThread(reactor.stop)

    thread = threading.Thread(target=clients, daemon=True)
    reactor.callWhenRunning(thread.start)
    run_bounded(reactor, timeout=60)
    thread.join(10)
    if errors:
        raise errors[0]


def top_frames(report):
    return {report.earlier.traceback[-1], report.later.traceback[-1]}


@needs_transports
@pytest.mark.parametrize("workers", [1, 2])  # strands, not timing, decide: 1 worker reports too
def test_two_connections_bumping_a_global_a_class_attribute_and_a_dict_are_reported(
    race_report, workers, monkeypatch
):
    # The reactor would run this factory's callbacks one at a time, inevitable, because its
    # protocol changes a module global (tm_twisted._shared_variables), and the reporter leaves
    # serialised changes alone: the race is what this test needs.
    monkeypatch.setattr(_tcp, "serves_one_at_a_time", lambda factory, reactor: False)
    tm.watch_races(hits, "dict hits")
    serve(TMReactor(workers), protocol.Factory.forProtocol(Bumper), [b"a" * 3, b"b" * 3])
    reports = race_report()
    by_object = {(r.object, r.key): r for r in reports}
    for key, kind in [
        ((f"module {__name__}", "total"), "global"),
        ((f"class {__name__}.Bumper", "count"), "class"),
        (("dict hits", "n"), "dict"),
    ]:
        assert key in by_object, (key, [str(r) for r in reports])
        report = by_object[key]
        assert report.earlier.strand != report.later.strand
        assert not (report.earlier.inevitable and report.later.inevitable)
        frames = top_frames(report)
        for side in "ab":
            site = line_of(f"site: {kind} {side}")
            assert any(f.rpartition("/")[2].startswith(site) for f in frames), (site, str(report))
        assert all(f.endswith(" Bumper.dataReceived") for f in frames), str(report)
    # str() of a report shows both tracebacks, outermost frame first
    text = str(by_object[(f"module {__name__}", "total")])
    assert "earlier mutation (strand" in text and "later mutation (strand" in text


@needs_transports
def test_managed_state_and_inevitable_mutations_are_not_reported(race_report):
    factory = protocol.Factory.forProtocol(ManagedBumper)
    factory.bumps = 0
    reactor = TMReactor(2)
    serve(reactor, factory, [b"a" * 3, b"b" * 3])
    assert factory.bumps == counter.value == 120
    assert race_report() == []


class OwnKey(protocol.Protocol):
    """Each connection bumps a key of its own (the first byte) of the watched dict."""

    def dataReceived(self, data):
        key = data[:1].decode()
        hits[key] = hits.get(key, 0) + 1
        self.transport.write(data)


@needs_transports
def test_different_keys_of_one_dict_are_not_reported(race_report):
    hits.clear()
    tm.watch_races(hits, "dict hits")
    serve(TMReactor(2), protocol.Factory.forProtocol(OwnKey), [b"a" * 3, b"b" * 3])
    assert hits == {"a": 20, "b": 20}
    assert race_report() == []


@needs_transports
def test_one_strand_is_not_reported(race_report):
    global total
    total = 0  # the main thread, outside callbacks: never compared
    serve(TMReactor(2), protocol.Factory.forProtocol(Bumper), [b"a" * 3])
    assert Bumper.count > 0
    assert race_report() == []


@needs_transports
def test_a_reactor_whose_events_share_one_strand_is_not_reported(race_report, monkeypatch):
    monkeypatch.setenv("TM_STRANDS", "one")
    reactor = TMReactor(2)
    assert reactor._core.one_strand
    serve(reactor, protocol.Factory.forProtocol(Bumper), [b"a" * 3, b"b" * 3])
    assert race_report() == []


def test_a_module_imported_inside_a_callback_is_not_a_race_with_later_use(
    race_report, tmp_path, monkeypatch
):
    (tmp_path / "race_report_imported.py").write_text("setting = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "race_report_imported", raising=False)
    reactor = _core.Reactor(1)
    a, b = reactor.make_strand(), reactor.make_strand()

    def first():  # strand a: the import runs the module's body, which binds `setting`
        import race_report_imported  # noqa: F401

        reactor.post(second, strand=b)

    def second():  # strand b: a later change of what the import set up
        sys.modules["race_report_imported"].setting = 2
        reactor.stop()

    reactor.post(first, strand=a)
    reactor.run()
    assert sys.modules["race_report_imported"].setting == 2
    assert race_report() == []


async def bump_per_read(reader, writer):
    global total
    while data := await reader.read(100):
        total += 1  # site: asyncio
        writer.write(data)
        await writer.drain()
    writer.close()


def test_asyncio_handlers_of_two_connections_are_reported(race_report):
    import asyncio

    from tm_asyncio import EventLoop

    async def main():
        server = await asyncio.start_server(bump_per_read, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(2):  # one connection after the other: strands, not timing, decide
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(5):
                writer.write(b"x")
                await writer.drain()
                assert await reader.read(1) == b"x"
            writer.close()
        server.close()

    asyncio.run(main(), loop_factory=lambda: EventLoop(workers=2, parallel=True))
    (report,) = [r for r in race_report() if r.key == "total"]
    site = line_of("site: asyncio")
    for side in (report.earlier, report.later):
        assert side.traceback[-1].rpartition("/")[2].startswith(site), str(report)
    assert report.earlier.strand != report.later.strand


@pytest.mark.no_race_check
def test_the_reporter_is_off_by_default():
    assert not tm.race_report_enabled()
    assert tm.race_reports() == []
    with pytest.raises(RuntimeError, match="the race reporter is off"):
        tm.watch_races({})


@pytest.mark.skipif(tm.race_report_available(), reason="this interpreter has dict watchers")
def test_without_dict_watchers_enabling_raises_a_clear_error():
    with pytest.raises(RuntimeError, match="needs dict watchers.*3.12"):
        tm.set_race_report(True)
    assert not tm.race_report_enabled()
    tm.set_race_report(False)  # turning it off is always allowed


CHILD = textwrap.dedent(
    """
    import tm
    from tm import _core

    total = 0

    def bump():
        global total
        total += 1

    print("enabled", tm.race_report_enabled(), flush=True)
    if tm.race_report_enabled():
        reactor = _core.Reactor(2)
        a, b = reactor.make_strand(), reactor.make_strand()
        reactor.post(bump, strand=a)
        reactor.post(lambda: reactor.post(bump, strand=b), strand=a)
        reactor.post(lambda: reactor.call_at(_core.monotonic() + 0.2, reactor.stop), strand=a)
        reactor.run()
    """
)


def run_child(env_value):
    """Runs CHILD in a fresh interpreter with TM_RACE_REPORT set to env_value (None: unset)."""
    env = dict(os.environ)
    env.pop("TM_RACE_REPORT", None)
    if env_value is not None:
        env["TM_RACE_REPORT"] = env_value
    # The child imports tm from where this process did (a development overlay or the venv).
    tm_parent = str(pathlib.Path(tm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tm_parent, env.get("PYTHONPATH")) if p)
    # The child relies on default signal dispositions (SIGPIPE, and SIGINT for Python's own
    # handler): restore_signals resets SIGPIPE; an ignored SIGINT would be inherited, so the
    # parent's is reset around the spawn.
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        restore_signals=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_environment_variable_off_by_default_in_a_program():
    child = run_child(None)
    assert child.returncode == 0, child.stderr
    assert "enabled False" in child.stdout
    assert "race" not in child.stderr


def test_environment_variable_turns_it_on_and_prints_the_reports_at_exit():
    child = run_child("1")
    assert child.returncode == 0, child.stderr
    if not tm.race_report_available():
        assert "enabled False" in child.stdout
        assert "no dict watchers" in child.stderr
        return
    assert "enabled True" in child.stdout
    assert "race on module __main__, key 'total'" in child.stderr, child.stderr
    assert child.stderr.count("<string>:9 bump") == 2, child.stderr
