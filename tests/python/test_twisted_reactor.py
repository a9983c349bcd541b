"""TMReactor runs real Twisted programs: TCP echo, delayed calls, calls from threads, shutdown.

Each test runs a fresh reactor in a subprocess-free way (TMReactor instances are independent) and
is bounded by a delayed stop, so a hang fails the test instead of blocking the suite.
"""

import gc
import io
import os
import signal
import socket
import sys
import threading
import time
import weakref

import pytest
from twisted.internet import defer, protocol

from tm_twisted import TMReactor
from twisted_helpers import Echo, run_bounded, run_with_clients

WORKERS = [1, 2]


@pytest.mark.parametrize("workers", WORKERS)
def test_tcp_echo_with_concurrent_clients(workers):
    reactor = TMReactor(workers)
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    received = {}

    def client(n):
        with socket.create_connection(address, timeout=5) as s:
            chunks = []
            for i in range(20):
                message = b"client %d message %d;" % (n, i)
                s.sendall(message)
                got = b""
                while len(got) < len(message):
                    got += s.recv(4096)
                chunks.append(got)
            received[n] = b"".join(chunks)

    run_with_clients(reactor, client, 8, timeout=10)
    assert sorted(received) == list(range(8))
    for n, data in received.items():
        assert data == b"".join(b"client %d message %d;" % (n, i) for i in range(20))


@pytest.mark.parametrize("workers", WORKERS)
def test_delayed_calls_run_in_time_order_and_cancel(workers):
    # Scheduled by one callback, so the calls share its strand, where the reactor keeps deadline
    # order (docs/REACTOR.md "Timers"); calls on different strands that come due at the same
    # poll (a loaded machine stalls the reactor) run in parallel with 2 workers.
    reactor = TMReactor(workers)
    order = []

    def schedule():
        for delay in (0.05, 0.01, 0.03):
            reactor.callLater(delay, order.append, delay)
        cancelled = reactor.callLater(0.02, order.append, "cancelled")
        cancelled.cancel()
        moved = reactor.callLater(1.0, order.append, "moved")
        moved.reset(0.04)
        reactor.callLater(0.2, reactor.stop)

    reactor.callWhenRunning(schedule)
    run_bounded(reactor, timeout=10)
    assert order == [0.01, 0.03, "moved", 0.05]
    assert reactor.getDelayedCalls() == []


@pytest.mark.parametrize("workers", WORKERS)
def test_many_delayed_calls_reset_delayed_and_cancelled_run_in_time_order(workers):
    # Moved, delayed and cancelled calls among many: the cancelled never run, the others run in
    # deadline order (one strand), none before its time.
    reactor = TMReactor(workers)
    ran = []
    expected = {}
    started = []

    def record(name):
        ran.append((name, reactor.seconds()))

    def schedule():
        started.append(reactor.seconds())
        calls = []
        for i in range(60):
            delay = 0.005 + (i * 37 % 60) / 1000
            calls.append((f"c{i}", reactor.callLater(delay, record, f"c{i}")))
        for i, (name, call) in enumerate(calls):
            if i % 3 == 0:
                call.cancel()
            elif i % 5 == 1:
                call.reset(0.002 + i / 10000)  # sooner
                expected[name] = call.getTime()
            elif i % 5 == 2:
                call.delay(0.02)  # later
                expected[name] = call.getTime()
            else:
                expected[name] = call.getTime()
        reactor.callLater(0.3, reactor.stop)

    reactor.callWhenRunning(lambda: reactor.callLater(0, schedule))
    run_bounded(reactor, timeout=10)
    names = [name for name, _ in ran]
    assert sorted(names) == sorted(expected)
    # With one strand the heap gives deadline order; no call runs before its time.
    assert names == sorted(names, key=lambda name: (expected[name], int(name[1:])))
    for name, at in ran:
        assert at >= expected[name] - 1e-3, (name, at, expected[name])
    assert reactor.getDelayedCalls() == []


def test_a_delayed_call_cancelled_from_another_strand_never_runs():
    reactor = TMReactor(2)
    ran = []
    pending = []

    def on_first_strand():
        pending.append(reactor.callLater(0.05, ran.append, "cancelled"))
        reactor.callLater(0.1, ran.append, "kept")
        reactor.callLater(0, lambda: None)
        reactor.callLater(0.2, reactor.stop)

    def on_second_strand():
        pending.pop().cancel()

    reactor.callWhenRunning(lambda: reactor.callLater(0, on_first_strand))
    reactor.callWhenRunning(lambda: reactor.callLater(0.02, on_second_strand))
    run_bounded(reactor, timeout=10)
    assert ran == ["kept"]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_spent_delayed_call_is_freed(workers):
    # The native timer holds its callable, which holds the DelayedCall: a call that kept its
    # timer once called or cancelled was a cycle through C++ that gc cannot collect.
    reactor = TMReactor(workers)
    spent = []

    def first():
        cancelled = reactor.callLater(5.0, spent.append, "never")
        cancelled.cancel()
        spent.append(weakref.ref(cancelled))
        reactor.callLater(0.05, reactor.stop)

    spent.append(weakref.ref(reactor.callLater(0, first)))
    run_bounded(reactor, timeout=10)
    called, cancelled = spent
    gc.collect()
    assert called() is None
    assert cancelled() is None


@pytest.mark.parametrize("workers", WORKERS)
def test_calls_from_a_thread_keep_their_order(workers):
    reactor = TMReactor(workers)
    seen = []

    def producer():
        for i in range(500):
            reactor.callFromThread(seen.append, i)
        reactor.callFromThread(reactor.stop)

    reactor.callWhenRunning(threading.Thread(target=producer).start)
    run_bounded(reactor, timeout=10)
    assert seen == list(range(500))


@pytest.mark.parametrize("workers", WORKERS)
def test_calls_from_a_thread_run_in_the_reactor_thread_as_transactions(workers):
    # Twisted promises the thread that runs the reactor (Twisted's own test_callFromThread checks
    # it); with several workers that is the thread that called run(), which runs them as
    # transactions between its waits.
    import tm

    reactor = TMReactor(workers)
    seen = []

    def record():
        seen.append((threading.current_thread(), tm.in_transaction()))
        reactor.stop()

    reactor.callWhenRunning(reactor.callInThread, reactor.callFromThread, record)
    run_bounded(reactor, timeout=10)
    assert seen == [(threading.current_thread(), True)]


@pytest.mark.parametrize("workers", WORKERS)
def test_work_a_connection_gives_a_thread_pool_calls_back_on_its_strand(workers):
    # deferToThread's result (callFromThread from the pool's thread) and a call the work itself
    # makes run on the connection's strand, one at a time with its events, as on epoll's single
    # thread; with several workers they ran on the thread that called run(), beside them.
    from tm import _reactor
    from twisted.internet import threads

    reactor = TMReactor(workers)
    seen = []

    class Handoff(protocol.Protocol):
        def dataReceived(self, data):
            strand = _reactor.current_strand()

            def work():
                reactor.callFromThread(
                    lambda: seen.append(("call", strand, _reactor.current_strand()))
                )
                return data

            def answer(result):
                seen.append(("result", strand, _reactor.current_strand()))
                self.transport.write(result)

            threads.deferToThreadPool(reactor, reactor.getThreadPool(), work).addCallback(answer)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Handoff), interface="127.0.0.1")
    answers = []

    def clients():
        for n in range(4):
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as s:
                s.sendall(b"ping %d" % n)
                answers.append(s.recv(100))
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=clients).start()
    run_bounded(reactor, timeout=10)
    assert answers == [b"ping %d" % n for n in range(4)]
    assert sorted(kind for kind, _, _ in seen) == ["call"] * 4 + ["result"] * 4
    assert all(ran_on == origin for _, origin, ran_on in seen)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_sigint_handler_runs_after_the_callback_running(workers):
    # A SIGINT arrives during a 300 ms callback while a thread queues calls. With several workers
    # the thread that called run() runs Python's handler, which ran beside the callback (and,
    # under asyncio.Runner, freed a task's waiter in use); now it waits for the callback, serving
    # the thread's calls' rounds meanwhile without closing the gate twice.
    reactor = TMReactor(workers)
    events = []

    def busy():
        events.append("callback starts")
        start = time.monotonic()
        while time.monotonic() - start < 0.3:
            pass
        events.append("callback ends")

    def program_thread():
        time.sleep(0.1)  # inside busy()
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(20):
            reactor.callFromThread(events.append, "call")
            time.sleep(0.005)
        reactor.callFromThread(reactor.stop)

    previous = signal.signal(signal.SIGINT, lambda number, frame: events.append("handler"))
    try:
        reactor.callLater(0, busy)
        threading.Thread(target=program_thread).start()
        run_bounded(reactor, timeout=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert events.count("call") == 20 and events.count("handler") == 1
    handler, end = events.index("handler"), events.index("callback ends")
    if workers == 1:  # the callback runs on run()'s thread, and the handler inside it, as on epoll
        assert handler < end
    else:
        assert handler > end


@pytest.mark.parametrize("workers", WORKERS)
def test_a_call_from_a_program_thread_runs_between_callbacks(workers):
    # epoll runs a callFromThread between two callbacks, never during one. With several workers
    # the calls of a thread the program started itself (no callback gave it work) ran on the
    # thread that called run(), beside the connections' callbacks on the workers: a call that
    # touches a protocol saw it in the middle of an event and lost the event's updates.
    reactor = TMReactor(workers)
    protocols = []
    overlaps = []
    updates = []

    class Busy(protocol.Protocol):
        inside = False
        count = 0

        def connectionMade(self):
            protocols.append(self)

        def dataReceived(self, data):
            self.inside = True
            count = self.count
            until = time.perf_counter() + 0.002  # the callback's work, long enough to overlap
            while time.perf_counter() < until:
                pass
            self.count = count + 1
            self.inside = False
            self.transport.write(data)

    def from_thread():
        overlaps.extend(p for p in protocols if p.inside)
        updates.append(len(protocols))
        for p in protocols:
            p.count += 1

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Busy), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    done = threading.Event()

    def program_thread():
        while not done.is_set():
            reactor.callFromThread(from_thread)
            time.sleep(0.0005)

    def client(answers):
        with socket.create_connection(address, timeout=10) as s:
            for i in range(60):
                s.sendall(b"%03d" % i)
                got = b""
                while len(got) < 3:
                    got += s.recv(3 - len(got))
                answers.append(got)

    def drive():
        clients = [[] for _ in range(4)]
        threads = [threading.Thread(target=client, args=(a,)) for a in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ticker.join()
        reactor.callFromThread(reactor.stop)
        assert all(a == [b"%03d" % i for i in range(60)] for a in clients)

    ticker = threading.Thread(target=program_thread)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)  # with the GIL: switch threads within a callback's work
    try:
        ticker.start()
        threading.Thread(target=drive).start()
        run_bounded(reactor, timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert len(protocols) == 4 and len(updates) > 100
    assert overlaps == []
    # Every event's update and every call's survived: nothing ran in the middle of another.
    assert sum(p.count for p in protocols) == 4 * 60 + sum(updates)


@pytest.mark.parametrize("workers", WORKERS)
def test_connections_share_a_deferred_queue(workers):
    # Eight connections put what they read into one DeferredQueue that a consumer empties, and
    # answer once theirs are all taken. The queue's lists of items and waiters changed on two
    # strands at once lost items and wake-ups with 2 workers on 3.13t: the consumer stopped
    # (tm_twisted._shared_objects manages Twisted's DeferredQueue, DeferredLock and
    # DeferredSemaphore at construction).
    from twisted.protocols.basic import LineReceiver

    reactor = TMReactor(workers)
    publishers, count = 8, 1000
    taken = []
    shared = {}

    class Publisher(LineReceiver):
        def connectionMade(self):
            self.put = 0

        def lineReceived(self, line):
            if line == b"END":
                shared["queue"].put((self, None))
            else:
                self.put += 1
                shared["queue"].put((self, line))

    def consume(item):
        publisher, line = item
        if line is None:
            publisher.sendLine(b"put %d" % publisher.put)
            publisher.transport.loseConnection()
        else:
            taken.append(line)
        shared["queue"].get().addCallback(consume)

    def start():
        shared["queue"] = defer.DeferredQueue()  # made while the reactor runs
        shared["queue"].get().addCallback(consume)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Publisher), interface="127.0.0.1")
    replies = []

    def publish(i):
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
            s.sendall(b"".join(b"p%d m%d\r\n" % (i, k) for k in range(count)) + b"END\r\n")
            replies.append(s.makefile("rb").readline())

    reactor.callLater(0, start)
    run_with_clients(reactor, publish, publishers, timeout=30, start_after=0.05)
    assert replies == [b"put %d\r\n" % count] * publishers
    for i in range(publishers):
        assert [line for line in taken if line.startswith(b"p%d " % i)] == [
            b"p%d m%d" % (i, k) for k in range(count)
        ]


class Asker(protocol.Protocol):
    """A client that asks its echo server one message at a time: ask() returns a Deferred fired
    with the answer (`answered`); `finished` fires once the whole answer came, also when
    `answered` was cancelled."""

    def connectionMade(self):
        self.factory.connected.callback(self)

    def ask(self, message):
        self.answered, self.finished = defer.Deferred(), defer.Deferred()
        self.want, self.got = message, b""
        self.transport.write(message)
        return self.answered

    def dataReceived(self, data):
        self.got += data
        if len(self.got) == len(self.want):
            # The answer's callbacks may ask the next question at once, replacing both.
            answered, finished = self.answered, self.finished
            answered.callback(self.got)  # swallowed once race() cancelled it
            finished.callback(None)


@defer.inlineCallbacks
def connected_clients(reactor, port, client, count):
    """count connections of client (whose connectionMade fires factory.connected with itself)
    to port, made one after the other: their protocols."""
    clients = []
    for _ in range(count):
        factory = protocol.ClientFactory.forProtocol(client)
        factory.connected = defer.Deferred()
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        clients.append((yield factory.connected))
    return clients


@pytest.mark.parametrize("workers", WORKERS)
def test_gather_results_of_requests_on_many_connections(workers):
    # A client asks sixteen connections at once and waits for all the answers with
    # gatherResults, round after round, as a program fanning requests out over Agent would. Each
    # answer fires its Deferred on its own connection's strand, and DeferredList counted them in
    # plain attributes: with 2 workers on 3.13t two answers at once were counted as one (a hang)
    # or both callbacks saw the last (AlreadyCalledError), in 5 of 5 runs of 2,000 rounds
    # (tm_twisted._shared_objects makes DeferredList's bookkeeping inevitable first).
    reactor = TMReactor(workers)
    connections, rounds = 16, 400
    outcome = []

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")

    @defer.inlineCallbacks
    def fan_out():
        askers = yield connected_clients(reactor, port, Asker, connections)
        for r in range(rounds):
            messages = [b"%d.%d;" % (i, r) for i in range(connections)]
            answers = yield defer.gatherResults([a.ask(m) for a, m in zip(askers, messages)])
            if answers != messages:
                outcome.append(("round", r, answers))
        results = yield defer.DeferredList([a.ask(b"last") for a in askers])
        outcome.append(("list", type(results), results))
        for asker in askers:
            asker.transport.loseConnection()

    def stop(result):
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: fan_out().addBoth(stop))
    run_bounded(reactor, timeout=30)
    assert outcome == [("list", list, [(True, b"last")] * connections), None]


@pytest.mark.parametrize("workers", WORKERS)
def test_race_requests_on_many_connections(workers):
    # defer.race over one request to each of sixteen connections, round after round: the first
    # answer wins and the others are cancelled. race keeps its winner in a closure; the answers
    # fire on their connections' strands, and with 2 workers on 3.13t two of them won at once.
    # The Deferreds are made on the strand that runs the rounds, and fire there
    # (tm_twisted._deferred_home).
    reactor = TMReactor(workers)
    connections, rounds = 16, 300
    outcome = []

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")

    @defer.inlineCallbacks
    def rounds_of_races():
        askers = yield connected_clients(reactor, port, Asker, connections)
        for r in range(rounds):
            messages = [b"%d.%d;" % (i, r) for i in range(connections)]
            index, answer = yield defer.race([a.ask(m) for a, m in zip(askers, messages)])
            if answer != messages[index]:
                outcome.append(("round", r, index, answer))
            yield defer.gatherResults([a.finished for a in askers])
        for asker in askers:
            asker.transport.loseConnection()

    def stop(result):
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: rounds_of_races().addBoth(stop))
    run_bounded(reactor, timeout=30)
    assert outcome == [None]


@pytest.mark.parametrize("workers", WORKERS)
def test_looping_calls_behind_their_schedule_leave_time_for_io(workers, monkeypatch):
    # Two LoopingCalls whose work (0.5 ms) takes longer than their interval (0.2 ms) are always
    # due. epoll runs them once per iteration and polls in between; in one strand (the GIL
    # interpreter's default, here TM_STRANDS=one) the timers' armings multiplied and the
    # sockets were read further apart every round: 200 echo round trips beside them took over
    # 20 s, where epoll takes well under one (reactor/src/timer.cpp).
    from twisted.internet import task

    monkeypatch.setenv("TM_STRANDS", "one")
    reactor = TMReactor(workers)
    outcome = []

    def behind():
        until = time.perf_counter() + 0.0005
        while time.perf_counter() < until:
            pass

    loops = [task.LoopingCall(behind) for _ in range(2)]

    class Pinger(protocol.Protocol):
        def connectionMade(self):
            self.left = 200
            self.transport.write(b"ping")

        def dataReceived(self, data):
            self.left -= 1
            if self.left:
                self.transport.write(b"ping")
            else:
                outcome.append("done")
                self.transport.loseConnection()
                reactor.stop()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")

    def start():
        for loop in loops:
            loop.clock = reactor
            loop.start(0.0002)
        client = protocol.ClientFactory.forProtocol(Pinger)
        reactor.connectTCP("127.0.0.1", port.getHost().port, client)

    reactor.callWhenRunning(start)
    run_bounded(reactor, timeout=10)
    assert outcome == ["done"]


def _parallel(workers):
    """Whether a reactor of `workers` runs strands in parallel here (tm._reactor's rule)."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return workers > 1 and not gil and os.environ.get("TM_STRANDS") != "one"


@pytest.mark.parametrize("workers", WORKERS)
def test_a_deferred_fired_on_another_strand_runs_its_callbacks_on_its_own(workers):
    # Deferreds made in a callback of strand `home` and fired by callbacks of strand `other`:
    # with strands in parallel their callbacks run on `home` after the firing callback
    # (tm_twisted._deferred_home); otherwise inside it, as on epoll. A second firing from
    # `other` before `home` ran the first is dropped, as `if not d.called` would have skipped it;
    # a firing on `home` itself meanwhile wins.
    reactor = TMReactor(workers)
    core = reactor._core
    home, other = core.make_strand(), core.make_strand()
    parallel = _parallel(workers)
    fired_elsewhere = threading.Event()
    seen = []

    def on_home():
        one, two, three = defer.Deferred(), defer.Deferred(), defer.Deferred()
        one.addCallback(lambda r: seen.append(("one", r, home.is_current(), other.is_current())))
        two.addCallback(lambda r: seen.append(("two", r)))
        three.addCallback(lambda r: seen.append(("three", r)))
        core.post(lambda: fire(one, two, three), strand=other)
        if parallel:
            core.post(lambda: fire_here(three), strand=home)

    def fire(one, two, three):
        one.callback(1)
        seen.append(("after callback", one.called))
        two.callback("first")
        if not two.called:
            two.callback("second")
        if parallel:
            three.callback("other")
            fired_elsewhere.set()

    def fire_here(three):
        # Runs before the firing `other` posted here, which queues behind it.
        assert fired_elsewhere.wait(5)
        if not three.called:
            three.callback("home")

    core.post(on_home, strand=home)
    reactor.callLater(0.5, reactor.stop)
    run_bounded(reactor, timeout=10)
    if parallel:
        assert seen == [
            ("after callback", False),
            ("three", "home"),
            ("one", 1, True, False),
            ("two", "first"),
        ]
    else:  # inside the firing callback (on a GIL interpreter both strands are the one strand)
        assert seen == [("one", 1, home == other, True), ("after callback", True), ("two", "first")]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_generator_waits_for_lines_two_servers_push_unasked(workers):
    # An inlineCallbacks generator alternates between two connections, waiting each time for the
    # next line the server pushes unasked. The waiting Deferred is made on the strand that
    # resumed the generator and fired on the connection's strand: with 2 workers on 3.13t,
    # Twisted's _runCallbacks entered on both strands and the generator never resumed (3 of 3
    # runs of 5,000 rounds hung, IndexError as the Deferred's result).
    from twisted.internet import task
    from twisted.protocols.basic import LineReceiver

    reactor = TMReactor(workers)
    rounds, outcome = 3000, []

    class Pusher(protocol.Protocol):
        def connectionMade(self):
            self.n = 0
            self.pushing = task.LoopingCall(self.push)
            self.pushing.clock = reactor
            self.pushing.start(0.0002)

        def push(self):
            self.n += 1
            self.transport.write(b"%d\r\n" % self.n)

        def connectionLost(self, reason):
            if self.pushing.running:
                self.pushing.stop()

    class Puller(LineReceiver):
        def connectionMade(self):
            self.waiter, self.last = None, 0
            self.factory.connected.callback(self)

        def lineReceived(self, line):
            if self.waiter is not None:
                waiter, self.waiter = self.waiter, None
                waiter.callback(int(line))

        def next_line(self):
            # Called on the generator's strand; lineReceived may take the waiter at once.
            waiter = self.waiter = defer.Deferred()
            return waiter

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Pusher), interface="127.0.0.1")

    @defer.inlineCallbacks
    def alternate():
        pullers = yield connected_clients(reactor, port, Puller, 2)
        for _ in range(rounds):
            for puller in pullers:
                line = yield puller.next_line()
                if line <= puller.last:
                    outcome.append(("not increasing", puller.last, line))
                puller.last = line
        for puller in pullers:
            puller.transport.loseConnection()

    def stop(result):
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: alternate().addBoth(stop))
    run_bounded(reactor, timeout=30)
    assert outcome == [None]


@pytest.mark.parametrize("workers", WORKERS)
def test_iterate_runs_the_io_that_is_ready(workers):
    # epoll's iterate(0) polls once and runs what is ready; trial's clean-up relies on it (its
    # two iterate(0) calls let a server see its peer's close). A stop already due ran first.
    reactor = TMReactor(workers)
    received = []

    connected = []

    class Record(protocol.Protocol):
        def connectionMade(self):
            connected.append(self)

        def dataReceived(self, data):
            received.append(data)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Record), interface="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as s:
        for _ in range(500):
            reactor.iterate(0.01)  # accepts the connection
            if connected:
                break
        s.sendall(b"ready")
        time.sleep(0.05)  # the bytes are in the server socket's buffer
        reactor.iterate(0)
        assert received == [b"ready"]
    port.stopListening()
    reactor.iterate(0.05)


@pytest.mark.parametrize("workers", WORKERS)
def test_shutdown_triggers_wait_for_their_deferreds(workers):
    reactor = TMReactor(workers)
    events = []

    def before_shutdown():
        d = defer.Deferred()
        reactor.callLater(0.05, d.callback, None)
        d.addCallback(lambda _: events.append("before done"))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.addSystemEventTrigger("after", "shutdown", events.append, "after")
    reactor.callWhenRunning(reactor.stop)
    run_bounded(reactor, timeout=10)
    assert events == ["before done", "after"]


def test_exception_in_a_delayed_call_is_logged_and_the_loop_goes_on():
    from twisted.logger import globalLogPublisher

    reactor = TMReactor(2)
    failures = []

    def observer(event):
        if event.get("log_failure") is not None:
            failures.append(event["log_failure"].value)

    globalLogPublisher.addObserver(observer)
    try:
        reactor.callLater(0, lambda: 1 / 0)
        reactor.callLater(0.05, reactor.stop)
        run_bounded(reactor, timeout=10)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert len(failures) == 1 and isinstance(failures[0], ZeroDivisionError)


def test_workers_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TM_WORKERS", "3")
    assert TMReactor().workers == 3
    monkeypatch.setenv("TM_WORKERS", "many")
    with pytest.raises(ValueError, match="TM_WORKERS"):
        TMReactor()


def test_events_share_one_strand_exactly_where_the_gil_is_enabled(monkeypatch):
    monkeypatch.delenv("TM_STRANDS", raising=False)
    gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert TMReactor(2)._core.one_strand == gil_enabled
    monkeypatch.setenv("TM_STRANDS", "many")
    assert not TMReactor(2)._core.one_strand
    monkeypatch.setenv("TM_STRANDS", "one")
    assert TMReactor(2)._core.one_strand
    monkeypatch.setenv("TM_STRANDS", "two")
    with pytest.raises(ValueError, match="TM_STRANDS"):
        TMReactor(2)


def test_header_names_are_cached_per_worker_thread_where_workers_run_in_parallel(monkeypatch):
    """twisted.web's shared header-name cache takes a lock per lookup on a free-threaded 3.13:
    with parallel workers each thread gets its own, giving Twisted's results and errors."""
    from twisted.web import http, http_headers

    from tm_twisted import _shared_caches

    # A fresh shared cache in both modules (twisted.web.http imports it by name), restored after
    # the test: an earlier test's parallel reactor may already have replaced the process's one.
    shared = http_headers._NameEncoder()
    monkeypatch.setattr(http_headers, "_nameEncoder", shared)
    monkeypatch.setattr(http, "_nameEncoder", shared)
    assert _shared_caches.make_per_thread(workers=1, gil_enabled=False) == []
    assert _shared_caches.make_per_thread(workers=2, gil_enabled=True) == []
    assert http_headers._nameEncoder is shared
    assert _shared_caches.make_per_thread(workers=2, gil_enabled=False) == [
        "twisted.web.http._nameEncoder",
        "twisted.web.http_headers._nameEncoder",
    ]
    per_thread = http_headers._nameEncoder
    assert isinstance(per_thread, _shared_caches.PerThreadNameEncoder)
    assert http._nameEncoder is per_thread

    names = [b"content-type", "X-Forwarded-For", b"etag", "www-authenticate", b"Dnt", "te"]
    assert [per_thread.encode(n) for n in names] == [shared.encode(n) for n in names]
    with pytest.raises(http_headers.InvalidHeaderName):
        per_thread.encode(b"bad name")
    headers = http_headers.Headers()
    headers.setRawHeaders("content-type", [b"text/plain"])  # Twisted's own calls go through it
    assert headers.getRawHeaders(b"Content-Type") == [b"text/plain"]

    caches = []

    def cache_of_this_thread():
        per_thread.encode(b"content-length")
        caches.append(per_thread._local.encoder)

    threads = [threading.Thread(target=cache_of_this_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache_of_this_thread()
    assert len({id(cache) for cache in caches}) == 3


def test_two_twisted_calls_run_without_re_entering_their_lock_where_workers_run_in_parallel(
    tmp_path,
):
    """static.File's readers flush without the reader's lock and Headers.getRawHeaders reads by
    subscript where workers run in parallel (CPython 3.13t re-enters a held lock slowly): the
    same bytes, results and errors as Twisted's own calls; a static.File subclass or instance that
    opens its files its own way keeps its way."""
    from twisted.web import http_headers, static

    from tm_twisted import _lock_reentry

    content = bytes(range(256)) * 1000
    (tmp_path / "f.bin").write_bytes(content)
    _lock_reentry.uninstall()  # an earlier test's parallel reactor may have installed them
    stock_open, stock_get = static.File.openForReading, http_headers.Headers.getRawHeaders
    try:
        assert _lock_reentry.install(workers=1, gil_enabled=False) == []
        assert _lock_reentry.install(workers=2, gil_enabled=True) == []
        assert static.File.openForReading is stock_open
        assert _lock_reentry.install(workers=2, gil_enabled=False) == [
            "twisted.web.static.File.openForReading",
            "twisted.web.http_headers.Headers.getRawHeaders",
        ]
        assert _lock_reentry.install(workers=2, gil_enabled=False) == []  # once

        reader = static.File(str(tmp_path / "f.bin")).openForReading()
        assert type(reader) is _lock_reentry.ReaderWithPlainFlush
        with open(tmp_path / "f.bin", "rb") as expected:
            assert reader.raw.mode == expected.raw.mode == "rb"
            assert reader.read(1000) == expected.read(1000)
            assert reader.read(1 << 16) == expected.read(1 << 16)
            assert reader.read() == expected.read()
        reader.close()
        assert reader.closed and reader.raw.closed
        with pytest.raises(ValueError):
            reader.flush()
        with pytest.raises(ValueError):
            reader.read(1)
        with pytest.raises(FileNotFoundError):
            static.File(str(tmp_path / "missing")).openForReading()

        class OwnOpen(static.File):
            def open(self, mode="r"):
                return io.BytesIO(b"own")

        assert OwnOpen(str(tmp_path / "f.bin")).openForReading().read() == b"own"
        own = static.File(str(tmp_path / "f.bin"))
        own.open = lambda: io.BytesIO(b"instance")  # as Twisted's test_static does
        assert own.openForReading().read() == b"instance"

        headers = http_headers.Headers({b"Content-Type": [b"text/plain"], "X-Name": ["\u00e9"]})
        headers.setRawHeaders(b"x-empty", [])
        for name, default in [
            (b"content-type", None),
            ("Content-Type", None),
            (b"x-name", None),
            ("x-name", None),
            (b"missing", None),
            ("missing", ["d"]),
            (b"x-empty", b"d"),
        ]:
            got = headers.getRawHeaders(name, default)
            assert got == stock_get(headers, name, default), name
        assert headers.getRawHeaders(b"x-missing") is None
        with pytest.raises(http_headers.InvalidHeaderName):
            headers.getRawHeaders(b"bad name")
    finally:
        _lock_reentry.uninstall()
    assert static.File.openForReading is stock_open
    assert http_headers.Headers.getRawHeaders is stock_get


def test_twisted_web_remembers_content_types_where_workers_run_in_parallel(monkeypatch):
    """twisted.web's Content-Type parse (a class created per call by the standard library's
    email package) is remembered where workers run in parallel: the same keys and errors as
    Twisted's own parse, each distinct header parsed once, and no more than LIMIT kept."""
    from twisted.web import http

    from tm_twisted import _content_type

    _content_type.uninstall()  # an earlier test's parallel reactor may have installed it
    stock = http._parseContentType
    parsed = []

    def counting(line):
        parsed.append(line)
        return stock(line)

    monkeypatch.setattr(http, "_parseContentType", counting)
    try:
        assert _content_type.install(workers=1, gil_enabled=False) == []
        assert _content_type.install(workers=2, gil_enabled=True) == []
        assert http._parseContentType is counting
        assert _content_type.install(workers=2, gil_enabled=False) == [
            "twisted.web.http._parseContentType"
        ]
        assert _content_type.install(workers=2, gil_enabled=False) == []  # once
        headers = [
            b"application/x-www-form-urlencoded",
            b"Multipart/Form-Data; boundary=xyz",
            b"application/json; charset=utf-8",
            b"no slash",
            b"",
            b"\xff\xfe/\x00",
        ]
        for _ in range(3):
            for line in headers:
                assert http._parseContentType(line) == stock(line), line
        assert parsed == headers  # each parsed by Twisted's own function once
        assert http._parseContentType(bytearray(b"text/html")) == b"text/html"
        with pytest.raises(AttributeError):
            http._parseContentType(None)  # Twisted's own error: None has no decode
        assert len(parsed) == len(headers) + 2  # neither remembered

        del parsed[:]
        for i in range(_content_type.LIMIT + 10):
            assert http._parseContentType(b"text/x-%d" % i) == b"text/x-%d" % i
        assert http._parseContentType(b"text/x-0") == b"text/x-0"  # forgotten at LIMIT
        assert len(parsed) == _content_type.LIMIT + 11
        assert len(_content_type._known) <= _content_type.LIMIT
    finally:
        _content_type.uninstall()
    assert http._parseContentType is counting


def test_a_parallel_reactor_makes_the_header_name_cache_per_thread_when_it_runs(monkeypatch):
    from twisted.web import http, http_headers

    monkeypatch.setattr(http_headers, "_nameEncoder", http_headers._nameEncoder)
    monkeypatch.setattr(http, "_nameEncoder", http._nameEncoder)
    reactor = TMReactor(2)
    reactor.callWhenRunning(reactor.stop)
    run_bounded(reactor, timeout=10)
    parallel = reactor.workers > 1 and not getattr(sys, "_is_gil_enabled", lambda: True)()
    for module in (http_headers, http):
        assert (type(module._nameEncoder).__name__ == "PerThreadNameEncoder") == parallel
