"""Extension types and immutable values made immortal before parallel workers share them
(tm._shared_types).

Each check runs in a child interpreter: an immortal object stays immortal for the life of its
process, and the checks need objects that no earlier test made immortal. `_csv`'s types stand for
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


def run_child(
    code: str, immortal_types_setting: str | None = None, switch: str = "TM_IMMORTAL_TYPES"
) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TM_IMMORTAL_TYPES", "TM_IMMORTAL_VALUES")
    }
    if immortal_types_setting is not None:
        env[switch] = immortal_types_setting
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


def test_the_owner_thread_makes_its_immutable_values_immortal_and_leaves_the_rest_alone():
    out = run_child(
        """
        import sys, threading
        from tm import _core

        def counted(o):
            before = sys.getrefcount(o)
            keep = [o] * 10
            return sys.getrefcount(o) != before

        s = "".join(["not", "interned"])
        b = bytes(range(10))
        big = int("1" * 30)
        inner_list = [1, 2]
        t = (s, inner_list, (b, big))
        fs = frozenset([("x".join(["a", "b"]),)])
        lst = ["".join(["only", "in a list"])]
        print(counted(s), counted(t), counted(b), counted(big))
        print(_core._immortalize_values([t, lst, fs, t]))
        print(counted(s), counted(t), counted(t[2]), counted(b), counted(big), counted(fs),
              counted(next(iter(fs))[0]), counted(lst), counted(inner_list), counted(lst[0]))
        made_there = {}
        thread = threading.Thread(
            target=lambda: made_there.update(v=("y".join(["c", "d"]), object())))
        thread.start(); thread.join()
        print(_core._immortalize_values([made_there["v"], made_there["v"][0]]))
        """
    )
    lines = out.splitlines()
    assert lines[0] == "True True True True"  # mortal values count their references
    if APPLIES:
        # t, s, (b, big), b, big, fs, its tuple and its string; lists and what only they hold
        # keep counting; another thread's values are that thread's to mark.
        assert lines[1:4] == [
            "8",
            "False False False False False False False True True True",
            "0",
        ]
    else:
        assert lines[1:4] == ["0", "True True True True True True True True True True", "0"]


@pytest.mark.parametrize("runner", sorted(RUNS))
@pytest.mark.parametrize(
    "workers, setting, immortal",
    [(2, None, APPLIES), (1, None, False), (2, "0", False)],
    ids=["2-workers", "1-worker", "2-workers-turned-off"],
)
def test_a_parallel_run_makes_the_values_that_exist_immortal_first(
    runner, workers, setting, immortal
):
    """A template compiled at import: its node tuples and strings, read by every worker."""
    run = textwrap.dedent(RUNS[runner])
    check = textwrap.dedent(
        """
        def counted(o):
            before = sys.getrefcount(o)
            keep = [o] * 10
            return sys.getrefcount(o) != before

        print(counted(TEMPLATE), counted(TEMPLATE[0][1]), counted(LATER), counted(MUTABLE))
        """
    )
    code = (
        f"import sys\nWORKERS = {workers}\n"
        'TEMPLATE = (("text", "".join(["<h1>", "title"])), ("var", "name"))\n'
        "MUTABLE = [1]\n"
        f"{run}"
        'LATER = ("".join(["made", "after"]),)\n'
        f"{check}"
    )
    expected = "False False True True" if immortal else "True True True True"
    assert run_child(code, setting, switch="TM_IMMORTAL_VALUES") == expected
