"""tm.atomic in its three forms, nesting, irrevocability, inevitability, retry, hooks, I/O."""

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
