"""The conflict log and ``python -m tm.report``: two threads conflicting on a tm.Var produce a
report that names the conflicting lines of this file."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import tm

HERE = os.path.abspath(__file__)


def _line_of(fn, marker):
    import inspect

    lines, first = inspect.getsourcelines(fn)
    for i, text in enumerate(lines):
        if marker in text:
            return first + i
    raise AssertionError(marker)


def _conflicting_run():
    """Thread A reads v, waits while thread B commits a write to v, then writes: A's commit
    fails validation (a read-write conflict) and A reruns. Returns the two lines."""
    v = tm.Var(0)
    b_done = threading.Event()
    a_read = threading.Event()

    def a_body():
        x = v.get()  # READ-A
        a_read.set()
        b_done.wait(10)
        v.set(x + 1)  # WRITE-A

    def a():
        with tm.worker_span("A"):
            tm.run_atomic(a_body)

    def b():
        with tm.worker_span("B"):
            a_read.wait(10)
            tm.run_atomic(lambda: v.set(v.get() + 100))  # WRITE-B
            b_done.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert v.get() == 101
    return _conflicting_run_lines()


def _conflicting_run_lines():
    return {
        "a": {_line_of(_conflicting_run, "# READ-A"), _line_of(_conflicting_run, "# WRITE-A")},
        "b": _line_of(_conflicting_run, "# WRITE-B"),
    }


@pytest.fixture
def conflict_log():
    was = tm.conflict_log_enabled()
    tm.set_conflict_log(True)
    tm.reset_stats()
    yield
    tm.set_conflict_log(was)
    tm.reset_stats()


def _report(*args):
    return subprocess.run(
        [sys.executable, "-m", "tm.report", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_report_names_both_sides(conflict_log, tmp_path):
    lines = _conflicting_run()
    log = tm.write_report_log(tmp_path / "run.log")
    records = [json.loads(x) for x in open(log, encoding="utf-8")]
    assert records[0]["kind"] == "header" and records[0]["format"] == "tm-conflict-log"
    conflicts = [r for r in records if r["kind"] == "conflict"]
    assert conflicts, records
    assert {r["name"] for r in records if r["kind"] == "worker"} >= {"A", "B"}

    png = tmp_path / "chart.png"
    r = _report(log, "--png", str(png))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    a_sites = {f"{HERE}:{n}" for n in lines["a"]}
    b_site = f"{HERE}:{lines['b']}"
    assert any(f"aborted at   {s}" in out for s in a_sites), out
    assert f"conflicting  {b_site}" in out, out
    assert "inevitability:" in out and "workers:" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart: matplotlib does not import" in out
        assert not png.exists()
    else:
        assert f"chart: {png}" in out
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_env_var_writes_the_log_at_exit(tmp_path):
    log = tmp_path / "env.log"
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent("""
        import tm
        assert tm.conflict_log_enabled()
        q = tm.TransactionQueue()
        c = tm.Var(0)
        def bump():
            c.set(c.get() + 1)
        for _ in range(200):
            q.add(bump)
        q.run(workers=2)
        assert c.get() == 200
    """))
    env = dict(os.environ, TM_CONFLICT_LOG=str(log))
    r = subprocess.run([sys.executable, str(prog)], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(x)["kind"] for x in open(log, encoding="utf-8")]
    assert kinds[0] == "header" and "stats" in kinds
    assert kinds.count("worker") == 2  # TransactionQueue's workers record their spans
    r = _report(str(log), "--no-png")
    assert r.returncode == 0, r.stderr
    assert "commits" in r.stdout and "tm-worker-0" in r.stdout


def test_report_rejects_other_files(tmp_path):
    other = tmp_path / "x.log"
    other.write_text('{"hello": 1}\n')
    r = _report(str(other))
    assert r.returncode == 2 and "not a tm conflict log" in r.stderr
