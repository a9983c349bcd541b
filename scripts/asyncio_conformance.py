#!/usr/bin/env python3
"""CPython's own asyncio tests (test.test_asyncio) on tm_asyncio's loop beside the default loop.

Each class below is one of CPython's concrete epoll/selector test classes; the tm variant is a
subclass whose loop factory returns tm_asyncio.new_event_loop(). Whole modules ("module.*") run
every test case in them with the event loop policy (and asyncio.EventLoop) making tm loops. Both run side by side, each class
in a child process with a time limit, on every interpreter given (by default the repository's
.venv-gil and .venv-ft) and every worker count given (by default 1 and 2; TM_WORKERS in the child;
a count written "2p" runs the loop's parallel mode, TM_ASYNCIO_PARALLEL=1, where each stream
connection has a strand of its own). The default loop's run does not depend on the worker count,
so it runs once per interpreter.

Prints pass/fail/error/skip per class for both loops and exits 1 when a test passes on the default
loop and not on tm, unless KNOWN_EXCEPTIONS (KNOWN_PARALLEL in parallel mode) below names it
(printed with its reason), or when a tm run made no tm loop of the configuration asked for (the
factory was not used: nothing was checked). An interpreter without the
`test` package is reported and skipped.

    scripts/asyncio_conformance.py [--workers N|Np ...] [--python PATH ...] [--timeout S] [--only TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# (module under test.test_asyncio, concrete class, how its loop is made). Which mixins each covers:
#   test_events.EPollEventLoopTests: EventLoopTestsMixin, SubprocessTestsMixin, UnixEventLoopTestsMixin
#   test_sock_lowlevel.EPollEventLoopTests: BaseSockTestsMixin
#   test_sendfile.EPollEventLoopTests: SendfileMixin, SockSendfileMixin (on SendfileTestsBase)
#   test_subprocess.Subprocess*WatcherTests: SubprocessMixin with the threaded watcher and with the
#     pidfd watcher (the loop watches the pidfd with add_reader)
#   test_server: BaseStartServer (functional), and from 3.12 on TestServer2 (wait_closed,
#     close_clients, abort_clients) and UnixServerCleanupTests, which run under IsolatedAsyncioTestCase
#   test_buffered_proto.BufferedProtocolSelectorTests, test_sslproto.SelectorStartTLSTests: the
#     functional tests (the Proactor classes are Windows-only; SslProtoHandshakeTests use a mock loop)
#   test.test_asyncgen.AsyncGenAsyncioTest (outside test_asyncio): async generators on a loop, their
#     firstiter/finalizer hooks and shutdown_asyncgens (its setUp calls asyncio.new_event_loop())
CLASSES = [
    ("test_events", "EPollEventLoopTests", "create_event_loop"),
    ("test_sock_lowlevel", "EPollEventLoopTests", "create_event_loop"),
    ("test_sendfile", "EPollEventLoopTests", "create_event_loop"),
    ("test_subprocess", "SubprocessThreadedWatcherTests", "policy"),
    ("test_subprocess", "SubprocessPidfdWatcherTests", "policy"),
    ("test_server", "SelectorStartServerTests", "new_loop"),
    ("test_server", "TestServer2", "loop_factory"),
    ("test_server", "UnixServerCleanupTests", "loop_factory"),
    ("test_buffered_proto", "BufferedProtocolSelectorTests", "new_loop"),
    ("test_sslproto", "SelectorStartTLSTests", "new_loop"),
    ("test.test_asyncgen", "AsyncGenAsyncioTest", "asyncio_new_event_loop"),
]
# Whole modules (every TestCase in them, "*"), run with the event loop policy's new_event_loop()
# and asyncio.EventLoop (3.13's test_taskgroups names it as its loop_factory) making tm loops:
# what asyncio.run(), asyncio.Runner, IsolatedAsyncioTestCase and asyncio.new_event_loop() make.
# Their tests on test_utils.TestLoop (a loop with virtual time) or a mock loop build no real loop
# and run the same on both sides; a module whose tm run made no tm loop fails the run (nothing
# would have been checked). test_runners, test_futures and test_pep492 build none at all (their own
# policy's mock loop, TestLoop, a bare BaseEventLoop): not listed.
CLASSES += [
    (module, "*", "module")
    for module in (
        "test_streams",
        "test_ssl",
        "test_tasks",
        "test_taskgroups",
        "test_timeouts",
        "test_locks",
        "test_queues",
        "test_base_events",
        "test_waitfor",
        "test_eager_task_factory",
        "test_context",
    )
]

# Tests that may pass on the default loop and not on tm without failing the run, each with its
# reason (docs/CONFORMANCE.md repeats them). Keys: "module.Class.test_method".
KNOWN_EXCEPTIONS: dict[str, str] = {}
# Known with more than one worker only, serial or parallel.
_HELD_BY_THE_REACTOR = (
    "with 2 workers on 3.13t, under load (7 to 25 of 200-300 runs of the scenario): the Handle "
    "that ran the finished task's last step, and through it asyncio's TaskStepMethWrapper, the "
    "task and its exception group, outlive the step. Read from the Handle's reference-count "
    "fields: local count 1 on the worker that created it, shared count -1 flagged QUEUED. The "
    "other worker dropped the last reference, and free-threaded CPython's biased reference "
    "counting frees such an object only when its creating thread next runs Python, while that "
    "worker waits idle in the reactor (gc.collect() does not merge another thread's queue). On "
    "asyncio's loop one thread makes and drops every handle. Plan: keep a strand's events on the "
    "worker that ran its previous one (what the static-file profile in docs/BENCHMARKS.md also "
    "asks for), so that a loop-strand handle is dropped by the thread that made it"
)
_NOT_ACCEPTED_YET = (
    "timing-dependent with 2 workers on a busy machine: the listening socket's readiness comes "
    "from epoll, which the worker that is not running the loop's strand waits in, while the "
    "client's connect completes on the loop's strand at once (its watcher polls before it waits); "
    "when that worker gets no CPU, the client's whole exchange can run before the server accepts "
    "(traced: epoll_wait blocked 90 ms while the client connected, wrote and closed, and the "
    "listener was closed with the connection still in its accept queue). {}. With 1 worker the "
    "one thread polls epoll between callbacks, as asyncio's select() does. Plan: the loop's strand "
    "polls its listening sockets (a zero-timeout poll) before running a client's connect "
    "completion, so both come in the order asyncio's one select() gives them"
)
KNOWN_MULTI_WORKER: dict[str, str] = {
    "test_taskgroups.TestTaskGroup.test_exception_refcycles_parent_task": _HELD_BY_THE_REACTOR,
    "test_taskgroups.TestTaskGroup.test_exception_refcycles_parent_task_wr": _HELD_BY_THE_REACTOR,
    "test_taskgroups.TestEagerTaskTaskGroup.test_exception_refcycles_parent_task": _HELD_BY_THE_REACTOR,
    "test_taskgroups.TestEagerTaskTaskGroup.test_exception_refcycles_parent_task_wr": _HELD_BY_THE_REACTOR,
    "test_streams.StreamTests.test_open_connection_happy_eyeball_refcycles": _HELD_BY_THE_REACTOR,
    "test_streams.StreamTests.test_unhandled_exception": _NOT_ACCEPTED_YET.format(
        "The client connects, writes, closes and waits for its close, then main() closes the "
        "server; the handler never ran, so no 'Unhandled exception' message"
    ),
    "test_streams.StreamTests.test_unhandled_exceptions": _NOT_ACCEPTED_YET.format(
        "Its 3.11 name (test_unhandled_exception)"
    ),
    "test_server.TestServer2.test_wait_closed_basic": _NOT_ACCEPTED_YET.format(
        "The test counts sleep(0) iterations between open_connection() returning and srv.close(), "
        "expecting the server to have accepted the connection by then (3 of 8 and 1 of 8 runs of "
        "the class failed, serial and parallel; 0 of 8 with 1 worker)"
    ),
}
# The same for parallel mode (docs/ASYNCIO.md, "Parallel mode"), where a user protocol's callbacks
# run on their connection's strand, in parallel with the loop's other callbacks.
_LOST_ON_ITS_STRAND = (
    "timing-dependent in parallel mode: the test counts loop iterations (two sleep(0)) between "
    "{} and Server.wait_closed() finishing; an accepted connection's connection_lost() comes from "
    "its own strand, in parallel with the test's task, not in the loop's next iteration"
)
# Tests that hang (not merely fail) in parallel mode: skipped there so that the rest of their
# module runs, and listed in KNOWN_PARALLEL.
HANGS_PARALLEL: dict[str, str] = {}
# Whole modules not run in parallel mode, with the reason (none at present).
MODULES_HANGING_PARALLEL: dict[str, str] = {}
KNOWN_PARALLEL: dict[str, str] = {
    **HANGS_PARALLEL,
    "test_server.TestServer2.test_abort_clients": _LOST_ON_ITS_STRAND.format("abort_clients()"),
    "test_server.TestServer2.test_close_clients": _LOST_ON_ITS_STRAND.format("close_clients()"),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- child: runs one class on one loop, prints a JSON line ---------------------------------------


def _tm_class(cls, factory, made):
    """A subclass of cls whose loops are tm loops; each loop made is recorded in `made`."""
    import asyncio
    from unittest import mock

    import tm_asyncio

    def new_loop():
        loop = tm_asyncio.new_event_loop()
        made.append(
            (
                type(loop).__module__ + "." + type(loop).__qualname__,
                f"{loop.workers}{'p' if getattr(loop, 'parallel', False) else ''}",
            )
        )
        return loop

    if factory == "module":
        # Every policy's new_event_loop(): also after a test sets a new default policy.
        asyncio.events.BaseDefaultEventLoopPolicy.new_event_loop = lambda policy: new_loop()
        return cls
    if factory == "module_classes":
        # Before the module is imported: a class attribute `loop_factory = asyncio.EventLoop`
        # (3.13's test_taskgroups) then names this class, whose instances are tm loops.
        class EventLoop:
            def __new__(cls):
                return new_loop()

        asyncio.EventLoop = EventLoop
        return None
    if factory == "policy":
        # The watcher tests make their loop with the policy's new_event_loop() in setUp.
        def setUp(self):
            policy_type = type(asyncio.get_event_loop_policy())
            with mock.patch.object(policy_type, "new_event_loop", lambda p: new_loop()):
                cls.setUp(self)

        namespace = {"setUp": setUp}
    elif factory == "asyncio_new_event_loop":

        def setUp(self):
            with mock.patch.object(asyncio, "new_event_loop", new_loop):
                cls.setUp(self)

        namespace = {"setUp": setUp}
    elif factory == "loop_factory":
        # IsolatedAsyncioTestCase (3.13: its asyncio.Runner takes the class's loop_factory).
        namespace = {"loop_factory": staticmethod(new_loop)}
    else:
        namespace = {factory: lambda self: new_loop()}
    return type("TM" + cls.__name__, (cls,), namespace)


def _child(module: str, name: str, factory: str, loop: str) -> int:
    import importlib
    import unittest

    made: list[tuple[str, int]] = []
    if loop == "tm" and name == "*":
        _tm_class(None, "module_classes", made)
    try:
        mod = importlib.import_module(
            module if module.startswith("test.") else f"test.test_asyncio.{module}"
        )
    except ImportError:  # a module this version does not have
        print(json.dumps({"missing": True}))
        return 0
    cls = mod if name == "*" else getattr(mod, name, None)
    if cls is None:
        print(json.dumps({"missing": True}))
        return 0
    if factory == "loop_factory" and not hasattr(cls, "loop_factory"):
        # IsolatedAsyncioTestCase without a loop_factory hook (before 3.13): not run on either loop.
        print(json.dumps({"missing": True}))
        return 0
    if loop == "tm":
        cls = _tm_class(cls, factory, made)
        if os.environ.get("TM_ASYNCIO_PARALLEL") == "1":
            for test_key, reason in HANGS_PARALLEL.items():
                test_module, class_name, method = test_key.split(".")
                klass = getattr(mod, class_name, None) if test_module == module else None
                if klass is not None and hasattr(klass, method):
                    setattr(klass, method, unittest.skip(reason)(getattr(klass, method)))
    outcomes: dict[str, str] = {}

    def key(test) -> str:
        # A whole module's tests are told apart by their class too.
        method = getattr(test, "_testMethodName", str(test))
        return f"{type(test).__name__}.{method}" if name == "*" else method

    class Result(unittest.TextTestResult):
        def addSuccess(self, test):
            super().addSuccess(test)
            outcomes[key(test)] = "pass"

        def addFailure(self, test, err):
            super().addFailure(test, err)
            outcomes[key(test)] = "fail"

        def addError(self, test, err):
            super().addError(test, err)
            outcomes[key(test)] = "error"

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            outcomes[key(test)] = "skip"

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            outcomes[key(test)] = "skip"

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            outcomes[key(test)] = "fail"

    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromModule(cls) if name == "*" else loader.loadTestsFromTestCase(cls)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=0, resultclass=Result)
    runner.run(suite)
    sys.stdout.flush()
    loops = sorted({f"{kind} workers={workers}" for kind, workers in made})
    print("\n" + json.dumps({"outcomes": outcomes, "tm_loops": len(made), "loop_kinds": loops}))
    return 0


# -- parent -----------------------------------------------------------------------------------


def _run_class(python, module, name, factory, loop, workers, timeout, log):
    env = dict(
        os.environ,
        TM_WORKERS=workers.rstrip("p"),
        PYTHONWARNINGS="ignore",
        TM_ASYNCIO_PARALLEL="1" if workers.endswith("p") else "0",
    )
    cmd = [python, os.path.abspath(__file__), "--child", module, name, factory, loop]
    label = f"{module}.{name} [{loop}{', TM_WORKERS=' + str(workers) if loop == 'tm' else ''}]"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        log.write(f"==== {label}: timed out after {timeout}s\n")
        log.write(
            (exc.stderr or b"").decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else (exc.stderr or "")
        )
        return None
    log.write(f"==== {label} rc={proc.returncode}\n{proc.stderr}\n")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def _counts(outcomes):
    counts = {"pass": 0, "fail": 0, "error": 0, "skip": 0}
    for outcome in outcomes.values():
        counts[outcome] += 1
    return counts


def _fmt(counts):
    if counts is None:
        return "timeout/crash".ljust(17)
    return "{pass:4d} {fail:3d} {error:3d} {skip:3d}".format(**counts).ljust(17)


def _interpreter(python, workers_list, timeout, only=None) -> int:
    version = subprocess.run(
        [
            python,
            "-c",
            "import sys; print(sys.version.split()[0], 'free-threaded' if hasattr(sys, '_is_gil_enabled') and not sys._is_gil_enabled() else 'GIL')",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    probe = subprocess.run(
        [python, "-c", "import test.test_asyncio.test_events"], capture_output=True
    )
    if probe.returncode != 0:
        print(f"\n== {python} ({version})")
        print(f"   the `test` package (test.test_asyncio) is missing from {python}: skipped")
        return 0
    venv = os.path.basename(os.path.dirname(os.path.dirname(python)))
    default_results: dict[tuple[str, str], dict | None] = {}
    rc = 0
    for workers in workers_list:
        mode = ", parallel mode (TM_ASYNCIO_PARALLEL=1)" if workers.endswith("p") else ""
        print(
            f"\n== {python} ({version}), tm with TM_WORKERS={workers.rstrip('p')}{mode}", flush=True
        )
        log_path = os.path.join(ROOT, "build", f"asyncio-conformance-{venv}-w{workers}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        regressions, known, unchecked = [], [], []
        known_list = dict(KNOWN_PARALLEL if workers.endswith("p") else KNOWN_EXCEPTIONS)
        if workers.rstrip("p") != "1":
            known_list.update(KNOWN_MULTI_WORKER)
        totals = {loop: {"pass": 0, "fail": 0, "error": 0, "skip": 0} for loop in ("default", "tm")}
        started_all = time.monotonic()
        print(f"   {'class':50s} {'default p/f/e/s':17s} {'tm p/f/e/s':17s} time")
        with open(log_path, "w") as log:
            for module, name, factory in CLASSES:
                if only and not any(o in f"{module}.{name}" for o in only):
                    continue
                if workers.endswith("p") and module in MODULES_HANGING_PARALLEL:
                    print(
                        f"   {module + '.' + name:50s} not run in parallel mode: "
                        f"{MODULES_HANGING_PARALLEL[module]}",
                        flush=True,
                    )
                    continue
                started = time.monotonic()
                # The default loop does not read TM_WORKERS: one run per interpreter is enough.
                if (module, name) not in default_results:
                    default_results[(module, name)] = _run_class(
                        python, module, name, factory, "default", workers, timeout, log
                    )
                results = {"default": default_results[(module, name)]}
                if results["default"] and results["default"].get("missing"):
                    print(f"   {module + '.' + name:50s} (not in this version)")
                    continue
                results["tm"] = _run_class(
                    python, module, name, factory, "tm", workers, timeout, log
                )
                outcomes = {loop: (r or {}).get("outcomes") for loop, r in results.items()}
                counts = {
                    loop: (_counts(o) if o is not None else None) for loop, o in outcomes.items()
                }
                for loop in counts:
                    if counts[loop]:
                        for k, v in counts[loop].items():
                            totals[loop][k] += v
                print(
                    f"   {module + '.' + name:50s} {_fmt(counts['default'])} {_fmt(counts['tm'])} {time.monotonic() - started:.0f}s",
                    flush=True,
                )
                tm_result = results["tm"] or {}
                if outcomes["tm"] and tm_result.get("tm_loops", 0) == 0:
                    unchecked.append(f"{module}.{name}: the tm run made no tm loop")
                elif tm_result.get("loop_kinds") and tm_result["loop_kinds"] != [
                    f"tm_asyncio._loop.EventLoop workers={workers}"
                ]:
                    unchecked.append(
                        f"{module}.{name}: tm loops made were {tm_result['loop_kinds']}"
                    )
                if outcomes["default"] is None:
                    continue
                for test, outcome in sorted(outcomes["default"].items()):
                    if outcome == "pass" and (outcomes["tm"] or {}).get(test) != "pass":
                        key = f"{module}.{test}" if name == "*" else f"{module}.{name}.{test}"
                        got = (outcomes["tm"] or {}).get(test, "not run (timeout/crash)")
                        if key in known_list:
                            known.append(f"{key}: {got} (known: {known_list[key]})")
                        else:
                            regressions.append(f"{key}: {got}")
        print(
            f"   {'total':50s} {_fmt(totals['default'])} {_fmt(totals['tm'])} {time.monotonic() - started_all:.0f}s"
        )
        print(
            f"   {len(regressions)} tests pass on the default loop and not on tm (details: {log_path})"
        )
        for line in regressions:
            print(f"     {line}")
        print(f"   known exceptions listed: {len(known_list)}; seen in this run: {len(known)}")
        for key, reason in sorted(known_list.items()):
            print(f"     {key}: {reason}")
        for line in known:
            print(f"     seen: {line}")
        for line in unchecked:
            print(f"   NOT CHECKED: {line}")
        if regressions or unchecked:
            rc = 1
    return rc


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:6])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        nargs="+",
        default=["1", "2"],
        help="tm worker counts, 'Np' for N in parallel mode (default: 1 2)",
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds per class and loop")
    parser.add_argument(
        "--python", action="append", help="interpreters (default: .venv-gil, .venv-ft)"
    )
    parser.add_argument(
        "--only", action="append", help="run only the classes whose module.Class contains this"
    )
    args = parser.parse_args()
    pythons = args.python or [
        os.path.join(ROOT, v, "bin", "python") for v in (".venv-gil", ".venv-ft")
    ]
    rc = 0
    started = time.monotonic()
    for python in pythons:
        if not os.path.exists(python):
            print(f"\n== {python}: not found, skipped")
            continue
        rc |= _interpreter(python, args.workers, args.timeout, args.only)
    print(f"\nasyncio conformance: {'FAILED' if rc else 'ok'} in {time.monotonic() - started:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
