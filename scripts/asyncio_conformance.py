#!/usr/bin/env python3
"""CPython's own asyncio tests (test.test_asyncio) on tm_asyncio's loop beside the default loop.

Each class below is one of CPython's concrete epoll/selector test classes; the tm variant is a
subclass whose loop factory returns tm_asyncio.new_event_loop(). Both run side by side, each class
in a child process with a time limit, on every interpreter given (by default the repository's
.venv-gil and .venv-ft). Prints pass/fail/error/skip per class for both loops and exits 1 only
when a test passes on the default loop and not on tm. An interpreter without the `test` package is
reported and skipped.

    scripts/asyncio_conformance.py [--workers N] [--python PATH ...] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# (module under test.test_asyncio, concrete class, how its loop is made)
CLASSES = [
    ("test_events", "EPollEventLoopTests", "create_event_loop"),
    ("test_sock_lowlevel", "EPollEventLoopTests", "create_event_loop"),
    ("test_sendfile", "EPollEventLoopTests", "create_event_loop"),
    ("test_subprocess", "SubprocessThreadedWatcherTests", "policy"),
    ("test_server", "SelectorStartServerTests", "new_loop"),
    ("test_buffered_proto", "BufferedProtocolSelectorTests", "new_loop"),
    ("test_sslproto", "SelectorStartTLSTests", "new_loop"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- child: runs one class on one loop, prints a JSON line ---------------------------------------


def _tm_class(cls, factory):
    import asyncio
    from unittest import mock

    import tm_asyncio

    if factory == "policy":
        # The watcher tests make their loop with the policy's new_event_loop() in setUp.
        def setUp(self):
            policy_type = type(asyncio.get_event_loop_policy())
            with mock.patch.object(policy_type, "new_event_loop", lambda p: tm_asyncio.new_event_loop()):
                cls.setUp(self)

        namespace = {"setUp": setUp}
    else:
        namespace = {factory: lambda self: tm_asyncio.new_event_loop()}
    return type("TM" + cls.__name__, (cls,), namespace)


def _child(module: str, name: str, factory: str, loop: str) -> int:
    import importlib
    import unittest

    mod = importlib.import_module(f"test.test_asyncio.{module}")
    cls = getattr(mod, name, None)
    if cls is None:
        print(json.dumps({"missing": True}))
        return 0
    if loop == "tm":
        cls = _tm_class(cls, factory)
    outcomes: dict[str, str] = {}

    class Result(unittest.TextTestResult):
        def addSuccess(self, test):
            super().addSuccess(test)
            outcomes[test._testMethodName] = "pass"

        def addFailure(self, test, err):
            super().addFailure(test, err)
            outcomes[test._testMethodName] = "fail"

        def addError(self, test, err):
            super().addError(test, err)
            outcomes[getattr(test, "_testMethodName", str(test))] = "error"

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            outcomes[test._testMethodName] = "skip"

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            outcomes[test._testMethodName] = "skip"

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            outcomes[test._testMethodName] = "fail"

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(cls)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=0, resultclass=Result)
    runner.run(suite)
    sys.stdout.flush()
    print("\n" + json.dumps({"outcomes": outcomes}))
    return 0


# -- parent -----------------------------------------------------------------------------------


def _run_class(python, module, name, factory, loop, workers, timeout, log):
    env = dict(os.environ, TM_WORKERS=str(workers), PYTHONWARNINGS="ignore")
    cmd = [python, os.path.abspath(__file__), "--child", module, name, factory, loop]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        log.write(f"==== {module}.{name} [{loop}]: timed out after {timeout}s\n")
        log.write((exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or ""))
        return None
    log.write(f"==== {module}.{name} [{loop}] rc={proc.returncode}\n{proc.stderr}\n")
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


def _interpreter(python, workers, timeout) -> int:
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0], 'free-threaded' if hasattr(sys, '_is_gil_enabled') and not sys._is_gil_enabled() else 'GIL')"],
                             capture_output=True, text=True).stdout.strip()
    print(f"\n== {python} ({version}), TM_WORKERS={workers}")
    probe = subprocess.run([python, "-c", "import test.test_asyncio.test_events"], capture_output=True)
    if probe.returncode != 0:
        print(f"   the `test` package (test.test_asyncio) is missing from {python}: skipped")
        return 0
    log_path = os.path.join(ROOT, "build", f"asyncio-conformance-{os.path.basename(os.path.dirname(os.path.dirname(python)))}-w{workers}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    regressions = []
    totals = {"default": {"pass": 0, "fail": 0, "error": 0, "skip": 0}, "tm": {"pass": 0, "fail": 0, "error": 0, "skip": 0}}
    print(f"   {'class':48s} {'default p/f/e/s':17s} {'tm p/f/e/s':17s} time")
    with open(log_path, "w") as log:
        for module, name, factory in CLASSES:
            started = time.monotonic()
            results = {}
            for loop in ("default", "tm"):
                results[loop] = _run_class(python, module, name, factory, loop, workers, timeout, log)
            if results["default"] and results["default"].get("missing"):
                print(f"   {module + '.' + name:48s} (not in this version)")
                continue
            outcomes = {loop: (r or {}).get("outcomes") for loop, r in results.items()}
            counts = {loop: (_counts(o) if o is not None else None) for loop, o in outcomes.items()}
            for loop in counts:
                if counts[loop]:
                    for k, v in counts[loop].items():
                        totals[loop][k] += v
            print(f"   {module + '.' + name:48s} {_fmt(counts['default'])} {_fmt(counts['tm'])} {time.monotonic() - started:.0f}s")
            if outcomes["default"] is None:
                continue
            for test, outcome in sorted(outcomes["default"].items()):
                if outcome == "pass" and (outcomes["tm"] or {}).get(test) != "pass":
                    regressions.append(f"{module}.{name}.{test}: {(outcomes['tm'] or {}).get(test, 'not run (timeout/crash)')}")
    print(f"   {'total':48s} {_fmt(totals['default'])} {_fmt(totals['tm'])}")
    print(f"   {len(regressions)} tests pass on the default loop and not on tm (details: {log_path})")
    for line in regressions:
        print(f"     {line}")
    return 1 if regressions else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:6])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per class and loop")
    parser.add_argument("--python", action="append", help="interpreters (default: .venv-gil, .venv-ft)")
    args = parser.parse_args()
    pythons = args.python or [os.path.join(ROOT, v, "bin", "python") for v in (".venv-gil", ".venv-ft")]
    rc = 0
    for python in pythons:
        if not os.path.exists(python):
            print(f"\n== {python}: not found, skipped")
            continue
        rc |= _interpreter(python, args.workers, args.timeout)
    return rc


if __name__ == "__main__":
    sys.exit(main())
