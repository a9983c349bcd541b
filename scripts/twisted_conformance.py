"""Runs Twisted's own ReactorBuilder test modules against the tm reactor and a stock baseline.

    python scripts/twisted_conformance.py [--workers N] [--baseline FQPN] [--reactor FQPN]
                                          [--verbose] [MODULE ...]
    python scripts/twisted_conformance.py --global [--workers N] [--verbose] [MODULE ...]

ReactorBuilder.makeTestCaseClasses() builds one TestCase class per entry of
ReactorBuilder._reactors when a test module is imported, so the list is patched, before any of
the modules is imported, to hold the baseline (Twisted's epoll reactor by default) and the
reactor under test (tm_twisted.TMReactor): both run the same tests on the same machine in one run.
TM_WORKERS carries the worker count to TMReactor.

Prints pass, fail, error and skip counts per module for both, then each test that passes on the
baseline and not on the reactor under test. With more than one worker, a test listed in
KNOWN_MULTI_WORKER is printed as "known" with its reason instead of as a regression, and a listed
test that passes is printed as "known exception now passes" (so the list can shrink); with one
worker nothing is excused. Nothing is run again: an unlisted failure is a regression even if it
would pass on a second try, since a reactor that gives epoll's result only sometimes does not give
it (docs/CONFORMANCE.md). Exit status: 0 when no test outside that list passes on the baseline and not on the reactor
under test (docs/DESIGN.md section 2: every test that passes on the stock reactor passes
on tm), 1 otherwise.

--global runs Twisted's modules that test the global reactor (GLOBAL_MODULES) instead: each under
`trial --reactor=epoll` and `trial --reactor=tm` in child processes, compared test by test, with
the same rules (KNOWN_GLOBAL_MULTI_WORKER for more than one worker).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import unittest

MODULES = [
    "twisted.internet.test.test_core",
    "twisted.internet.test.test_time",
    "twisted.internet.test.test_threads",
    "twisted.internet.test.test_tcp",
    "twisted.internet.test.test_udp",
    "twisted.internet.test.test_unix",
    "twisted.internet.test.test_process",
    "twisted.internet.test.test_tls",
    "twisted.internet.test.test_newtls",
    "twisted.internet.test.test_fdset",
    "twisted.internet.test.test_socket",
    "twisted.internet.test.test_stdio",
]

# Tests skipped for the reactor under test, with the reason. Each is a test that Twisted itself
# skips for the epoll reactor, by class name, for a reason that holds for every epoll-based reactor.
KNOWN_SKIPS = {
    "test_lostFileDescriptor": "epoll forgets a closed descriptor without a notification, so no "
    "epoll-based reactor can detect it (Twisted skips it for EPollReactor)",
}

# Tests that pass on the baseline and may fail on tm when callbacks run on more than one worker,
# applied only when the worker count is above 1: test key (module.BuilderClass.method, as printed)
# -> (where it applies, why). ANY: every interpreter; GIL_OFF: only where the GIL is off (with the
# GIL, TMReactor runs every event on one strand, in epoll's order: docs/TWISTED.md).
# "timing-dependent" ones fail in some runs only. docs/CONFORMANCE.md keeps the same list, one row
# per entry. Remove an entry once runs report it as passing every time.
ANY, GIL_OFF = "any interpreter", "GIL off"
_TIMING = "timing-dependent with 2 workers: "

# Builders listed whole: with more than one worker their tests fail at random, one or another per
# run, for one shared reason. docs/CONFORMANCE.md lists them beside KNOWN_MULTI_WORKER. None is
# listed now: test_tcp's AbortConnectionTests was, for the connectionLost order between the two
# ends of an in-process connection, until those ends came to share a strand (LocalPeers).
KNOWN_MULTI_WORKER_BUILDERS: dict[str, tuple[str, str]] = {}

KNOWN_MULTI_WORKER = {
    # The test fails itself unless the connection is lost within 1 s of unregisterProducer; its
    # guard timer is never cancelled, so it fires if the reactor still runs 1 s after that.
    "twisted.internet.test.test_unix.UnixClientTestsBuilder.test_disconnectWhileProducing": (
        GIL_OFF,
        _TIMING + "the test's 1 s guard timer fired after connectionLost had fired its Deferred "
        "and called reactor.stop() (AlreadyCalledError): the reactor still ran 1 s after "
        "unregisterProducer, on a loaded machine",
    ),
}


# Modules whose tests use the global reactor (`from twisted.internet import reactor`), for --global.
GLOBAL_MODULES = [
    "twisted.test.test_internet",
    "twisted.test.test_tcp",
    "twisted.test.test_loopback",
    "twisted.test.test_udp",
    "twisted.test.test_unix",
    "twisted.test.test_threads",
    "twisted.test.test_threadpool",
    "twisted.test.test_adbapi",
    "twisted.test.test_policies",
    "twisted.test.test_defer",
    "twisted.test.test_ftp",
    "twisted.test.test_iutils",
    "twisted.test.test_socks",
    "twisted.test.test_amp",
    "twisted.spread.test.test_pb",
    "twisted.internet.test.test_endpoints",
    "twisted.web.test.test_http",
    "twisted.web.test.test_web",
    "twisted.web.test.test_static",
    "twisted.web.test.test_agent",
    "twisted.web.test.test_xmlrpc",
    "twisted.web.test.test_wsgi",
    "twisted.names.test.test_client",
    "twisted.names.test.test_server",
    "twisted.words.test.test_irc",
    "twisted.words.test.test_service",
]

# As KNOWN_MULTI_WORKER, for --global.
KNOWN_GLOBAL_MULTI_WORKER: dict[str, tuple[str, str]] = {}


def effective_workers() -> int:
    """The worker count TMReactor will use: TM_WORKERS, where 0 or unset means one per core."""
    workers = int(os.environ.get("TM_WORKERS", "0") or 0)
    return workers if workers > 0 else (os.cpu_count() or 1)


def reactor_of(test: unittest.TestCase) -> str:
    """The reactor class name a generated test class runs on (its name ends in _<Name>Tests)."""
    return type(test).__name__.rsplit("_", 1)[-1].removesuffix("Tests")


def test_key(test: unittest.TestCase) -> str:
    """The test's identity without its reactor: module, builder class and method."""
    method = getattr(test, "_testMethodName", None) or test.id().rsplit(".", 1)[-1]  # ErrorHolder
    return f"{type(test).__module__}.{type(test).__name__.rsplit('_', 1)[0]}.{method}"


class CountingResult(unittest.TestResult):
    """Records each test's outcome per reactor."""

    def __init__(self) -> None:
        super().__init__()
        # reactor name -> test key -> outcome; reactor name -> test key -> traceback text
        self.outcomes: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.details: dict[str, dict[str, str]] = collections.defaultdict(dict)
        # reactor name -> test key -> the test's id, which the loader takes to run it again
        self.ids: dict[str, dict[str, str]] = collections.defaultdict(dict)

    def startTest(self, test):
        super().startTest(test)
        reason = KNOWN_SKIPS.get(getattr(test, "_testMethodName", ""))
        if reason is not None and reactor_of(test) == "TMReactor":
            setattr(test, test._testMethodName, unittest.skip(reason)(lambda: None))

    def _record(self, test, outcome, err=None):
        key, reactor = test_key(test), reactor_of(test)
        self.ids[reactor][key] = test.id()
        previous = self.outcomes[reactor].get(key)
        # trial may report a test twice (a failure, then a logged error): the worst one counts.
        rank = {"pass": 0, "skip": 0, "xfail": 0, "fail": 1, "error": 2}
        if previous is None or rank[outcome] > rank[previous]:
            self.outcomes[reactor][key] = outcome
        if err is not None:
            self.details[reactor][key] = self._exc_info_to_string(err, test)

    def addSuccess(self, test):
        self._record(test, "pass")

    def addFailure(self, test, err):
        self._record(test, "fail", err)

    def addError(self, test, err):
        self._record(test, "error", err)

    def addSkip(self, test, reason):
        self._record(test, "skip")

    def addExpectedFailure(self, test, err):
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test):
        self._record(test, "fail")


def counts(outcomes: dict[str, str], module: str) -> collections.Counter:
    return collections.Counter(o for k, o in outcomes.items() if k.startswith(module + "."))


_TRIAL_OUTCOMES = {
    "[OK]": "pass",
    "[FAIL]": "fail",
    "[FAILURE]": "fail",
    "[ERROR]": "error",
    "[SKIPPED]": "skip",
    "[TODO]": "xfail",
    "[SUCCESS!?!]": "fail",
}


def run_trial(reactor: str, names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """`trial --reactor=reactor names` in a child process: test id -> outcome, and test id -> the
    report trial printed for it (the traceback of a failure or error)."""
    import subprocess

    trial = os.path.join(os.path.dirname(sys.executable), "trial")
    with tempfile.TemporaryDirectory(prefix="tm-conformance-") as scratch:
        out = subprocess.run(
            [trial, f"--reactor={reactor}", "--reporter=bwverbose", *names],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=1800,
        ).stdout
    rank = {"pass": 0, "skip": 0, "xfail": 0, "fail": 1, "error": 2}
    outcomes: dict[str, str] = {}
    for line in out.splitlines():
        test, sep, verdict = line.rpartition(" ... ")
        outcome = _TRIAL_OUTCOMES.get(verdict.strip())
        if sep and outcome and " " not in test:
            if rank[outcome] >= rank[outcomes.get(test, "pass")]:
                outcomes[test] = outcome
    # After the run trial prints one section per problem, between lines of "=", each ending with
    # the ids of the tests it concerns.
    reports: dict[str, str] = {}
    for section in out.split("=" * 79)[1:]:
        section = section.split("-" * 79)[0]  # the last one runs into the run's summary
        for line in reversed(section.strip().splitlines()):
            if line not in outcomes:
                break
            reports[line] = reports.get(line, "") + section.strip() + "\n"
    return outcomes, reports


def report_regressions(regressions: list[str], known: dict, ours: dict, details=lambda key: ""):
    """Prints each test that passes on the baseline and not on tm as known (with its reason) or as
    a REGRESSION, followed by `details(key)` when that is not empty; returns the unexplained ones."""
    for key in regressions:
        if key in known:
            print(f"known ({ours.get(key, 'not run')}): {key}: {known[key]}")
        else:
            print(f"REGRESSION ({ours.get(key, 'not run')}): {key}")
        if details(key):
            print(details(key))
    return [k for k in regressions if k not in known]


def main_global(modules: list[str], verbose: bool) -> int:
    """--global: the modules under trial with epoll and with tm, compared test by test."""
    gil_off = not getattr(sys, "_is_gil_enabled", lambda: True)()
    known = {
        key: f"{reason} [{where}]"
        for key, (where, reason) in KNOWN_GLOBAL_MULTI_WORKER.items()
        if effective_workers() > 1 and (where == ANY or gil_off)
    }
    started = time.monotonic()
    base, _ = run_trial("epoll", modules)
    ours, reports = run_trial("tm", modules)
    free = " (free-threaded, GIL off)" if gil_off else ""
    print(
        f"python {sys.version.split()[0]}{free}; trial --reactor=tm with "
        f"{os.environ.get('TM_WORKERS', 'default')} workers against --reactor=epoll; "
        f"{time.monotonic() - started:.0f} s"
    )
    print(f"{'module':36} {'pass':>5} {'fail':>5} {'error':>5} {'skip':>5}   epoll p/f/e/s")
    for name in modules:
        c, b = counts(ours, name), counts(base, name)
        print(
            f"{name:36} {c['pass']:5} {c['fail']:5} {c['error']:5} {c['skip']:5}   "
            f"{b['pass']}/{b['fail']}/{b['error']}/{b['skip']}"
        )
    regressions = sorted(k for k, o in base.items() if o == "pass" and ours.get(k) != "pass")
    unexplained = report_regressions(regressions, known, ours, lambda key: reports.get(key, ""))
    for key in sorted(k for k in known if ours.get(k) == "pass"):
        print(f"known exception now passes: {key}")
    print(
        f"{len(regressions)} tests pass on epoll and not on tm: "
        f"{len(regressions) - len(unexplained)} known multi-worker exceptions, "
        f"{len(unexplained)} regressions"
    )
    if verbose and unexplained:
        print("rerun with: trial --reactor=tm " + " ".join(unexplained))
    return 1 if unexplained else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactor", default="tm_twisted.TMReactor")
    parser.add_argument("--baseline", default="twisted.internet.epollreactor.EPollReactor")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--verbose", action="store_true", help="print each regression's traceback")
    parser.add_argument(
        "--global",
        dest="global_reactor",
        action="store_true",
        help="run GLOBAL_MODULES under trial --reactor=epoll and --reactor=tm",
    )
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args(argv)
    if args.workers is not None:
        os.environ["TM_WORKERS"] = str(args.workers)
    if args.global_reactor:
        return main_global(args.modules or GLOBAL_MODULES, args.verbose)
    args.modules = args.modules or MODULES

    from twisted.internet.test.reactormixins import ReactorBuilder

    ReactorBuilder._reactors = [args.baseline, args.reactor]
    from twisted.trial.runner import TestLoader

    # Trial's tests write into the working directory: give them a scratch one.
    os.chdir(tempfile.mkdtemp(prefix="tm-conformance-"))
    result = CountingResult()
    started = time.monotonic()
    for name in args.modules:
        TestLoader().loadByName(name, recurse=True).run(result)
    elapsed = time.monotonic() - started

    base_name = args.baseline.rsplit(".", 1)[-1]
    ours_name = args.reactor.rsplit(".", 1)[-1]
    base, ours = result.outcomes[base_name], result.outcomes[ours_name]
    free = "" if getattr(sys, "_is_gil_enabled", lambda: True)() else " (free-threaded, GIL off)"
    print(
        f"python {sys.version.split()[0]}{free}; {ours_name} with "
        f"{os.environ.get('TM_WORKERS', 'default')} workers against {base_name}; {elapsed:.0f} s"
    )
    header = f"{'module':36} {'pass':>5} {'fail':>5} {'error':>5} {'skip':>5}   {base_name} p/f/e/s"
    print(header)
    totals, base_totals = collections.Counter(), collections.Counter()
    for name in args.modules:
        c, b = counts(ours, name), counts(base, name)
        totals.update(c)
        base_totals.update(b)
        print(
            f"{name.removeprefix('twisted.internet.test.'):36} {c['pass']:5} {c['fail']:5} "
            f"{c['error']:5} {c['skip']:5}   {b['pass']}/{b['fail']}/{b['error']}/{b['skip']}"
        )
    print(
        f"{'total':36} {totals['pass']:5} {totals['fail']:5} {totals['error']:5} "
        f"{totals['skip']:5}   {base_totals['pass']}/{base_totals['fail']}/"
        f"{base_totals['error']}/{base_totals['skip']}"
    )
    gil_off = not getattr(sys, "_is_gil_enabled", lambda: True)()
    known = {
        key: f"{reason} [{where}]"
        for key, (where, reason) in KNOWN_MULTI_WORKER.items()
        if effective_workers() > 1 and (where == ANY or gil_off)
    }

    # Whole builders whose tests race with more than one worker as a class (not one by one).
    whole_builder = set()
    for prefix, (where, reason) in KNOWN_MULTI_WORKER_BUILDERS.items():
        if effective_workers() > 1 and (where == ANY or gil_off):
            for key in base:
                if key.startswith(prefix + ".") and key not in known:
                    known[key] = f"{reason} [{where}, whole builder]"
                    whole_builder.add(key)

    def ran(key: str) -> bool:
        return any(key.startswith(name + ".") for name in args.modules)

    def details(key: str) -> str:
        return result.details[ours_name].get(key, "") if args.verbose else ""

    regressions = sorted(k for k, o in base.items() if o == "pass" and ours.get(k) != "pass")
    unexplained = report_regressions(regressions, known, ours, details)
    now_passing = sorted(
        k for k in known if k not in whole_builder and ran(k) and ours.get(k) == "pass"
    )
    for key in now_passing:
        print(f"known exception now passes: {key}")
    listed_and_ran = sum(ran(k) for k in known if k not in whole_builder)
    print(
        f"{len(regressions)} tests pass on {base_name} and not on {ours_name}: "
        f"{len(regressions) - len(unexplained)} known multi-worker exceptions, "
        f"{len(unexplained)} regressions; {len(now_passing)} of {listed_and_ran} known "
        "exceptions passed"
    )
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
