"""Extension types made immortal before parallel workers share them (tm._shared_types).

Each check runs in a child interpreter: an immortal type stays immortal for the life of its
process, and the checks need types that no earlier test made immortal. `_csv`'s types stand for
any extension type: heap types from PyType_FromSpec, imported by nothing else here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Where the change applies: a free-threaded CPython 3.13 running without the GIL.
APPLIES = sys.version_info[:2] == (3, 13) and not getattr(sys, "_is_gil_enabled", lambda: True)()


def run_child(code: str, immortal_types_setting: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TM_IMMORTAL_TYPES"}
    if immortal_types_setting is not None:
        env["TM_IMMORTAL_TYPES"] = immortal_types_setting
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_owner_thread_makes_its_heap_types_immortal_and_leaves_the_others_alone():
    out = run_child(
        """
        import sys, threading
        from tm import _core
        import _csv

        def refcount_moves(t):
            before = sys.getrefcount(t)
            keep = [t() for _ in range(100)]
            return sys.getrefcount(t) != before

        mine = _csv.Dialect
        print(refcount_moves(mine))
        print(_core._immortalize_types([mine, int, mine]))  # int: static, immortal already
        print(refcount_moves(mine), _core._immortalize_types([mine]))

        imported_there = {}
        thread = threading.Thread(target=lambda: imported_there.update(m=__import__("_queue")))
        thread.start(); thread.join()
        print(_core._immortalize_types([imported_there["m"].SimpleQueue]))
        try:
            _core._immortalize_types([_csv.Dialect, 42])
        except TypeError as error:
            print("TypeError", error)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "True"  # a mortal type counts its instances' references
    if APPLIES:
        assert lines[1:4] == ["1", "False 0", "0"]  # once, then never again; not another thread's
    else:
        assert lines[1:4] == ["0", "True 0", "0"]  # nothing changes
    assert lines[4] == "TypeError immortalize_types() takes types, not int"


RUNS = {
    "twisted": """
        from tm_twisted import TMReactor
        reactor = TMReactor(WORKERS)
        reactor.callWhenRunning(reactor.stop)
        reactor.run()
    """,
    "asyncio": """
        import asyncio, tm_asyncio
        loop = tm_asyncio.EventLoop(workers=WORKERS)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    """,
    "transaction_queue": """
        import tm
        queue = tm.TransactionQueue()
        queue.add(lambda: None)
        queue.run(workers=WORKERS)
    """,
}


@pytest.mark.parametrize("runner", sorted(RUNS))
@pytest.mark.parametrize(
    "workers, setting, immortal",
    [(2, None, APPLIES), (1, None, False), (2, "0", False)],
    ids=["2-workers", "1-worker", "2-workers-turned-off"],
)
def test_a_parallel_run_makes_the_extension_types_immortal_first(
    runner, workers, setting, immortal
):
    run = textwrap.dedent(RUNS[runner])
    check = textwrap.dedent(
        """
        before = sys.getrefcount(_csv.Dialect)
        keep = [_csv.Dialect() for _ in range(100)]
        print(sys.getrefcount(_csv.Dialect) == before)
        """
    )
    code = f"import sys, _csv\nWORKERS = {workers}\n{run}{check}"
    assert run_child(code, setting) == str(immortal)
