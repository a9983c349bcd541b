"""The conflict log and ``python -m tm.report``: two threads conflicting on a tm.Var produce a
report that names the conflicting lines of this file."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

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
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
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
    # scripts/setup.sh installs matplotlib into both environments: the PNG must be there.
    assert f"chart: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_env_var_writes_the_log_at_exit(tmp_path):
    log = tmp_path / "env.log"
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent("""
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
    """)
    )
    env = dict(os.environ, TM_CONFLICT_LOG=str(log))
    r = subprocess.run(
        [sys.executable, str(prog)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(x)["kind"] for x in open(log, encoding="utf-8")]
    assert kinds[0] == "header" and "stats" in kinds
    assert kinds.count("worker") == 2  # TransactionQueue's workers record their spans
    r = _report(str(log), "--no-png")
    assert r.returncode == 0, r.stderr
    assert "commits" in r.stdout and "tm-worker-0" in r.stdout


def test_reactor_workers_record_their_spans(tmp_path):
    # The reactor's workers are C++ threads: the dispatcher records their spans, so a program on
    # the tm reactor (here the asyncio loop, 2 workers) gets its workers in the timeline.
    log = tmp_path / "reactor.log"
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent("""
        import asyncio, tm, tm_asyncio
        hits = tm.Counter()
        async def main():
            for _ in range(200):
                hits.add(1)
                await asyncio.sleep(0)
        loop = tm_asyncio.EventLoop(workers=2)
        loop.run_until_complete(main())
        loop.close()
        assert hits == 200
    """)
    )
    env = dict(os.environ, TM_CONFLICT_LOG=str(log))
    r = subprocess.run(
        [sys.executable, str(prog)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    workers = [
        rec for rec in map(json.loads, open(log, encoding="utf-8")) if rec["kind"] == "worker"
    ]
    assert workers and all(w["name"].startswith("reactor worker ") for w in workers), workers
    assert all(w["start"] <= w["end"] and w["thread_id"] for w in workers)
    assert sum(w["stats"]["commits"] for w in workers) >= 200  # each task step is a transaction
    r = _report(str(log), "--no-png")
    assert r.returncode == 0, r.stderr
    assert "reactor worker 0" in r.stdout


def test_report_rejects_other_files(tmp_path):
    other = tmp_path / "x.log"
    other.write_text('{"hello": 1}\n')
    r = _report(str(other))
    assert r.returncode == 2 and "not a tm conflict log" in r.stderr


def _inevitability_run():
    """One transaction per cause of inevitability; returns {cause: expected line}."""
    v = tm.Var(0)
    with tm.atomic():
        v.get()  # FIRST-ACCESS
        # 0.3 s: the costliest site even when a loaded machine stalls another block (once 0.11 s)
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:  # the token is held while this spins
            pass
    with tm.atomic():
        open(os.devnull).close()  # IO
    tm.run_atomic(lambda: tm.inevitable())  # EXPLICIT

    def escalating():  # ESCALATION
        return v.get() + 1

    was = tm.escalation_threshold()
    tm.set_escalation_threshold(2)
    tm.set_abort_injection(1.0, seed=3)  # every optimistic attempt aborts: the third is inevitable
    try:
        assert tm.run_atomic(escalating) == 1
    finally:
        tm.set_abort_injection(0.0)
        tm.set_escalation_threshold(was)
    d = tm.Dict(k=1)
    with tm.atomic():
        assert "k" in d  # DICT-CONTAINS (a method of tm.Dict written in Python)
    return {
        cause: _line_of(_inevitability_run, marker)
        for cause, marker in [
            ("first_access", "# FIRST-ACCESS"),
            ("io", "# IO"),
            ("explicit", "# EXPLICIT"),
            ("escalation", "# ESCALATION"),
            ("dict", "# DICT-CONTAINS"),
        ]
    }


def test_inevitability_sites_name_line_cause_and_time_held(conflict_log):
    lines = _inevitability_run()
    rows = tm.inevitability_sites()
    by_site = {(r["site"], r["cause"]): r for r in rows}
    for cause in ("first_access", "io", "explicit", "escalation"):
        assert (f"{HERE}:{lines[cause]}", cause) in by_site, (cause, rows)
    first = by_site[(f"{HERE}:{lines['first_access']}", "first_access")]
    assert first["detail"] == "read" and first["count"] == 1
    assert first["seconds_held"] >= 0.3 and first["max_seconds_held"] >= 0.3
    assert rows[0] is first  # the costliest (longest held) first
    assert by_site[(f"{HERE}:{lines['io']}", "io")]["detail"] == "open"
    assert by_site[(f"{HERE}:{lines['escalation']}", "escalation")]["detail"] == "after 2 aborts"
    # A managed type's Python method is not the site: the user's line is.
    assert (f"{HERE}:{lines['dict']}", "first_access") in by_site, rows
    assert not any("/tm/" in r["site"] for r in rows), rows
    tm.reset_stats()
    assert tm.inevitability_sites() == []


def test_no_inevitability_sites_without_the_conflict_log():
    was = tm.conflict_log_enabled()
    tm.set_conflict_log(False)
    tm.reset_stats()
    try:
        v = tm.Var(0)
        with tm.atomic():
            v.get()
        tm.run_atomic(tm.inevitable)
        assert tm.inevitability_sites() == []
        assert tm.stats()["inevitable_commits"] >= 2
    finally:
        tm.set_conflict_log(was)
        tm.reset_stats()


def test_report_prints_inevitability_sites(conflict_log, tmp_path):
    lines = _inevitability_run()
    log = tm.write_report_log(tmp_path / "inev.log")
    records = [json.loads(x) for x in open(log, encoding="utf-8")]
    assert records[0]["version"] == 2
    assert {r["cause"] for r in records if r["kind"] == "inevitable"} >= {
        "first_access",
        "io",
        "explicit",
        "escalation",
    }
    png = tmp_path / "inev.png"
    r = _report(log, "--png", str(png), "--top", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    head, _, sites = out.partition("costliest inevitability sites, by time the token was held")
    assert sites, out
    assert "(top 3 of 5)" in sites
    first = sites.splitlines()[1:3]
    assert "1 x first_access" in first[0] and "held" in first[0] and "read 1" in first[0], out
    assert first[1].strip() == f"at  {HERE}:{lines['first_access']}", out
    assert "no conflicts recorded" in head
    # scripts/setup.sh installs matplotlib into both environments: the PNG must be there.
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_reads_version_1_logs(tmp_path):
    # Logs written before inevitability sites existed have no "inevitable" records.
    log = tmp_path / "v1.log"
    log.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"kind": "header", "format": "tm-conflict-log", "version": 1, "conflict_log": True},
                {"kind": "stats", "commits": 3, "total_aborts": 0},
            ]
        )
        + "\n"
    )
    r = _report(str(log), "--no-png")
    assert r.returncode == 0, r.stderr
    assert "no inevitability sites recorded" in r.stdout and "3 commits" in r.stdout


def test_png_chart_code_with_a_stand_in_matplotlib(monkeypatch, tmp_path):
    # A recording stand-in for matplotlib checks what the chart draws (the three panels, the
    # inevitability sites' bars, the file), which the real PNG's bytes do not show.
    from unittest import mock

    from tm import report

    fig, axes = mock.MagicMock(), (mock.MagicMock(), mock.MagicMock(), mock.MagicMock())
    plt = mock.MagicMock()
    plt.subplots.return_value = (fig, axes)
    mpl = mock.MagicMock()
    mpl.pyplot = plt
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", plt)
    data = {
        "headers": [],
        "stats": [],
        "workers": [
            {
                "name": "w0",
                "start": 1.0,
                "end": 2.0,
                "stats": {
                    "commits": 3,
                    "total_aborts": 1,
                    "seconds_aborted": 0.1,
                    "seconds_inevitable": 0.2,
                },
            }
        ],
        "conflicts": [
            {
                "site": "/x/a.py:1",
                "other_site": "/x/b.py:2",
                "cause": "read_write",
                "count": 2,
                "seconds_lost": 0.004,
            }
        ],
        "inevitable": [
            {
                "site": "/x/a.py:9",
                "cause": "io",
                "detail": "open",
                "count": 1,
                "seconds_held": 0.003,
                "max_seconds_held": 0.003,
            },
            {
                "site": "/x/c.py:5",
                "cause": "first_access",
                "detail": "read",
                "count": 4,
                "seconds_held": 0.010,
                "max_seconds_held": 0.004,
            },
        ],
    }
    out = tmp_path / "chart.png"
    assert report.write_png(data, str(out)) == str(out)
    mpl.use.assert_called_once_with("Agg")
    fig.savefig.assert_called_once()
    assert fig.savefig.call_args.args[0] == str(out)
    ax1, ax2, ax3 = axes
    assert ax1.broken_barh.call_count == 3  # span, time lost, time inevitable
    assert ax2.barh.call_args.args[1] == [pytest.approx(4.0)]
    ranks, widths = ax3.barh.call_args.args[:2]
    assert list(ranks) == [0, 1] and widths == [pytest.approx(10.0), pytest.approx(3.0)]
    assert ax3.set_yticks.call_args.args[1] == ["c.py:5 (first_access)", "a.py:9 (io)"]


def test_report_says_plainly_when_matplotlib_is_missing(monkeypatch, tmp_path, capsys):
    from tm import report

    log = tmp_path / "m.log"
    log.write_text(
        json.dumps(
            {"kind": "header", "format": "tm-conflict-log", "version": 2, "conflict_log": True}
        )
        + "\n"
    )
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert report.main([str(log)]) == 0
    out = capsys.readouterr().out
    assert "no chart: matplotlib does not import on this interpreter" in out
    assert "no PNG timeline was written" in out
    assert not (tmp_path / "m.log.png").exists()
