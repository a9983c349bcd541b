"""tm.atomic in its three forms, nesting, irrevocability, inevitability, retry, hooks, I/O."""

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import tm
from tm import _core


@pytest.fixture(autouse=True)
def _no_injection():
    yield
    tm.set_abort_injection(0)


def test_decorator_call_and_context_manager_forms():
    v = tm.Var(0)

    @tm.atomic
    def add(n):
        v.set(v.get() + n)
        return v.get()

    assert add(2) == 2
    assert tm.atomic(add, 3) == 5
    assert tm.run_atomic(lambda: v.get()) == 5
    with tm.atomic():
        assert tm.in_transaction() and _core.mode() == "irrevocable"
        v.set(v.get() * 10)
    assert v.get() == 50 and not tm.in_transaction()


def test_nested_transactions_are_flattened():
    v = tm.Var(0)
    seen = []

    @tm.atomic
    def inner():
        v.set(v.get() + 1)
        seen.append(_core.mode())

    @tm.atomic
    def outer():
        inner()
        with tm.atomic():
            inner()
        raise KeyError("undo everything")

    with pytest.raises(KeyError):
        outer()
    assert v.get() == 0 and seen == ["restartable", "restartable"]


def test_exception_abandons_managed_writes():
    d = tm.Dict(a=1)
    with pytest.raises(ZeroDivisionError):
        with tm.atomic():
            d["a"] = 2
            d["b"] = 3
            1 / 0
    assert d == {"a": 1}


def test_abort_signal_is_a_base_exception_that_user_code_cannot_swallow():
    assert issubclass(_core.TransactionAbort, BaseException)
    assert not issubclass(_core.TransactionAbort, Exception)
    v = tm.Var(0)
    attempts = []

    @tm.atomic
    def swallower():
        attempts.append(1)
        try:
            v.set(v.get() + 1)
            if len(attempts) == 1:
                tm.retry.__self__  # noqa: B018 - any attribute; then fake an abort below
                raise _core.TransactionAbort("read_write")
        except BaseException:  # noqa: BLE001 - a user who swallows everything
            pass

    # The swallowed signal still aborts the attempt at the boundary: the first attempt's write is
    # discarded and the function reruns.
    tm.set_abort_injection(0)
    swallower()
    assert v.get() == 1


def test_restartable_functions_under_injected_aborts_match_a_serial_run():
    def workload(d, lst, c):
        for i in range(60):
            tm.atomic(_step, d, lst, c, i)
        return dict(d.items()), list(lst), int(c)

    serial = workload(tm.Dict(), tm.List(), tm.Counter())
    tm.reset_stats()
    tm.set_abort_injection(0.5, seed=7)
    injected = workload(tm.Dict(), tm.List(), tm.Counter())
    tm.set_abort_injection(0)
    assert injected == serial
    assert tm.stats()["aborts"]["injected"] > 10


def _step(d, lst, c, i):
    d[i % 7] = d.get(i % 7, 0) + i
    lst.append(i)
    if len(lst) > 5:
        lst.pop(0)
    c.add(i)


def test_irrevocable_block_is_never_rerun_even_under_injection():
    c, log, s, v = tm.Counter(), tm.Log(), tm.Set(), tm.Var(0)
    tm.set_abort_injection(1.0, seed=3)
    runs = 0
    for i in range(30):
        with tm.atomic():
            runs += 1
            c.add(1)  # conflict-free: deferred, replayed if the commit aborts
            log.append(i)
            s.add(i % 5)
            assert not tm.is_inevitable()
            if i % 3 == 0:
                v.set(v.get() + 1)  # first shared access: inevitable from here
                assert tm.is_inevitable()
    tm.set_abort_injection(0)
    assert runs == 30 and c == 30 and list(log) == list(range(30)) and s == set(range(5))
    assert v.get() == 10


def test_irrevocable_call_form_is_never_rerun():
    v = tm.Var(0)
    runs = []

    def body():
        runs.append(1)
        tm.Counter().add(1)
        v.set(v.get() + 1)

    tm.set_abort_injection(1.0, seed=5)
    for _ in range(20):
        _core.run(body, (), None, True)
    tm.set_abort_injection(0)
    assert len(runs) == 20 and v.get() == 20


def test_conflict_free_operations_do_not_force_inevitability():
    c, log, q, s, v = tm.Counter(), tm.Log(), tm.Queue(), tm.Set(), tm.Var(1)
    with tm.atomic():
        c.add(2)
        log.append("x")
        q.put("y")
        s.add("z")
        with tm.snapshot():
            assert v.get() == 1  # deferred own adds are not visible to snapshot reads
        tm.on_commit(lambda: None)
        assert not tm.is_inevitable()
        assert c.get() == 2  # a validated read: inevitable now, own merges visible
        assert tm.is_inevitable()
    assert c == 2 and list(log) == ["x"] and q.get() == "y" and "z" in s


def test_inevitable_and_retry():
    with tm.atomic():
        tm.inevitable()
        assert tm.is_inevitable()
    with pytest.raises(RuntimeError):
        with tm.atomic():
            tm.retry()
    with pytest.raises(RuntimeError):
        tm.retry()

    q = tm.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(tm.run_atomic(q.get)))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # blocked in retry, with its thread state detached
    q.put("item")
    t.join(5)
    assert got == ["item"]


@pytest.mark.parametrize("wait", ["queue-get", "queue-join", "retry"])
def test_ctrl_c_interrupts_a_blocked_wait_on_the_main_thread(wait):
    # Like queue.Queue.get() and threading's waits: SIGINT's KeyboardInterrupt ends the wait.
    prog = textwrap.dedent("""
        import os, signal, sys, threading, time, tm
        started = time.monotonic()
        try:
            threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            if sys.argv[1] == "queue-get":
                tm.Queue().get()
            elif sys.argv[1] == "queue-join":
                q = tm.Queue()
                q.put(1)
                q.join()
            else:
                v = tm.Var(0)
                def wait():
                    if v.get() == 0:
                        tm.retry()
                tm.run_atomic(wait)
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - started:.2f} s")
    """)
    # Python turns SIGINT into KeyboardInterrupt only where SIGINT has its default disposition at
    # start-up; a test command run as a background job starts its children with SIGINT ignored.
    r = subprocess.run(
        [sys.executable, "-c", prog, wait],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        restore_signals=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert r.returncode == 0 and "interrupted after" in r.stdout, (r.stdout, r.stderr)


def test_hooks_run_on_commit_and_on_abort():
    events = []

    @tm.atomic
    def body(fail):
        tm.on_commit(lambda: events.append("commit"))
        tm.on_abort(lambda: events.append("abort"))
        tm.Var().set(1)
        if fail:
            raise ValueError

    with pytest.raises(ValueError):
        body(True)
    body(False)
    assert events == ["abort", "commit"]


def test_audit_hook_makes_io_inevitable(tmp_path):
    path = tmp_path / "f.txt"
    with tm.atomic():
        assert not tm.is_inevitable()
        with open(path, "w") as f:
            assert tm.is_inevitable()
            f.write("x")
    seen = []

    @tm.atomic
    def restartable():
        tm.Var(0).get()
        import os

        os.listdir(".")  # audited since 3.8 (time.sleep only from 3.12)
        seen.append(tm.is_inevitable())

    restartable()
    assert seen == [True]


def test_stdout_is_queued_until_commit_and_dropped_for_aborted_attempts():
    script = textwrap.dedent(
        """
        import sys, tm
        v = tm.Var(0)
        @tm.atomic
        def body(i):
            print("line", i)
            v.set(v.get() + 1)
            sys.stderr.write("err %d\\n" % i)
        tm.set_abort_injection(0.5, seed=11)
        for i in range(20):
            body(i)
        tm.set_abort_injection(0)
        with tm.atomic():
            print("in block")
            assert not tm.is_inevitable()
        print("aborts", tm.stats()["aborts"]["injected"] > 0)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:20] == [f"line {i}" for i in range(20)]
    assert lines[20:] == ["in block", "aborts True"]
    assert r.stderr.splitlines() == [f"err {i}" for i in range(20)]


def test_logging_is_queued_until_commit():
    import logging

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append((record.getMessage(), tm.in_transaction()))

    log = logging.getLogger("tm-test")
    log.addHandler(Collect())
    log.setLevel(logging.INFO)

    @tm.atomic
    def body():
        log.info("hello")
        assert records == []

    body()
    assert records == [("hello", False)]


def test_stats_and_conflict_sites():
    tm.reset_stats()
    tm.set_conflict_log(True)
    try:
        v = tm.Var(0)
        tm.set_abort_injection(0.5, seed=2)
        for _ in range(20):
            tm.run_atomic(lambda: v.set(v.get() + 1))
        tm.set_abort_injection(0)
    finally:
        tm.set_conflict_log(False)
    s = tm.stats()
    assert s["commits"] >= 20 and set(s["aborts"]) >= {"read_write", "write_write", "injected"}
    assert s["seconds_aborted"] >= 0 and "seconds_inevitable" in s
    assert isinstance(tm.conflicts(), list)
    assert tm.stats(thread=True)["commits"] >= 20


class _Rec(tm.Object):
    pass


def _every_type_workload():
    """Restartable transactions over every managed type; returns what they built."""
    d, lst, s, v, c = tm.Dict(), tm.List(), tm.Set(), tm.Var(0), tm.Counter()
    log, q, o = tm.Log(), tm.Queue(), _Rec()
    o.total = 0

    @tm.atomic
    def step(i):
        v.set(v.get() * 3 + i)
        s.add(i % 5)
        if i % 4 == 0:
            s.discard((i + 2) % 5)
        d[str(i % 6)] = d.get(str(i % 6), ()) + (i,)
        if i % 5 == 4 and str((i + 1) % 6) in d:
            del d[str((i + 1) % 6)]
        lst.insert(i % 3, i)
        if len(lst) > 6:
            lst.pop()
        o.total = o.total + i
        if i % 3 == 0:
            o.last = i
        log.append(i)
        q.put(i)
        if i % 2:
            q.get()
        c.add(i)
        return v.get()

    results = [step(i) for i in range(40)]
    return (
        results,
        dict(d.items()),
        list(lst),
        sorted(s),
        v.get(),
        int(c),
        list(log),
        [q.get_nowait() for _ in range(q.qsize())],
        o.__getstate__(),
    )


def test_every_type_under_injected_aborts_matches_a_serial_run():
    serial = _every_type_workload()
    tm.reset_stats()
    tm.set_abort_injection(0.5, seed=13)
    injected = _every_type_workload()
    tm.set_abort_injection(0)
    assert injected == serial
    assert tm.stats()["aborts"]["injected"] > 5


def test_transaction_queue_under_injected_aborts_matches_a_serial_run():
    def run(workers, p):
        c, d, seen = tm.Counter(), tm.Dict(), tm.Set()
        q = tm.TransactionQueue()

        def task(i):
            c.add(i)
            d[i % 7] = d.get(i % 7, 0) + i
            seen.add(i)
            if i < 20:
                q.add(task, i + 1000)

        for i in range(150):
            q.add(task, i)
        tm.set_abort_injection(p, seed=21)
        try:
            q.run(workers=workers)
        finally:
            tm.set_abort_injection(0)
        return int(c), dict(d.items()), sorted(seen)

    assert run(2, 0.3) == run(1, 0.0)


def test_generator_steps_are_never_rerun_under_injection():
    v = tm.Var(0)
    effects = []  # plain (unmanaged) state: a rerun step would append twice

    def gen(name):
        for i in range(10):
            effects.append((name, i))
            v.set(v.get() + 1)  # first shared access: inevitable from here
            yield

    q = tm.TransactionQueue()
    q.add_generator(gen("a"))
    q.add_generator(gen("b"))
    tm.set_abort_injection(1.0, seed=9)
    try:
        q.run(workers=2)
    finally:
        tm.set_abort_injection(0)
    assert sorted(effects) == sorted((n, i) for n in "ab" for i in range(10))
    assert v.get() == 20


def test_audited_io_in_a_restartable_function_happens_once_under_injection(tmp_path):
    path = tmp_path / "out.txt"
    v = tm.Var(0)
    runs = []

    @tm.atomic
    def body(i):
        runs.append(i)
        for _ in range(8):  # an injected abort strikes within an attempt's first 8 accesses
            v.get()
        v.set(v.get() + 1)
        with open(path, "a") as f:  # audited: the attempt turns inevitable before opening
            assert tm.is_inevitable()
            f.write(f"{i}\n")

    tm.set_abort_injection(1.0, seed=17)
    for i in range(10):
        body(i)
    tm.set_abort_injection(0)
    assert path.read_text().split() == [str(i) for i in range(10)]
    assert v.get() == 10 and len(runs) > 10  # attempts were rerun, the I/O was not


@pytest.mark.parametrize("event", ["socket", "os.remove", "subprocess", "os.mkdir"])
def test_audit_hook_makes_other_io_inevitable(event, tmp_path):
    import os
    import socket

    target = tmp_path / "x"
    target.write_text("x")
    with tm.atomic():
        assert not tm.is_inevitable()
        if event == "socket":
            socket.socket().close()
        elif event == "os.remove":
            os.remove(target)
        elif event == "subprocess":
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        else:
            os.mkdir(tmp_path / "d")
        assert tm.is_inevitable()


def test_output_of_a_failed_block_is_dropped():
    script = textwrap.dedent(
        """
        import sys, tm
        try:
            with tm.atomic():
                print("dropped")
                sys.stderr.write("dropped too\\n")
                raise KeyError
        except KeyError:
            pass
        with tm.atomic():
            print("kept")
            sys.stdout.flush()
        q = tm.TransactionQueue()
        c = tm.Counter()
        def item(i):
            c.add(1)
            print("item", i)
        for i in range(30):
            q.add(item, i)
        tm.set_abort_injection(0.5, seed=5)
        q.run(workers=2)
        tm.set_abort_injection(0)
        print("count", int(c))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "kept" and lines[-1] == "count 30" and r.stderr == ""
    assert sorted(lines[1:-1]) == sorted(f"item {i}" for i in range(30))  # each exactly once
