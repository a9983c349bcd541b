"""Runs Twisted's own ReactorBuilder test modules against one reactor and prints the counts.

    python scripts/twisted_conformance.py [--reactor FQPN] [--workers N] [MODULE ...]

ReactorBuilder.makeTestCaseClasses() builds one TestCase class per entry of
ReactorBuilder._reactors when a test module is imported, so the list is patched before any of
the modules is imported. The default reactor is tm_twisted.TMReactor; pass
twisted.internet.epollreactor.EPollReactor for the stock baseline on the same machine.
TM_WORKERS carries the worker count to TMReactor. Exit status: 0 when nothing failed.
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


# Tests skipped here, with the reason. Each is a test that Twisted itself skips for the epoll
# reactor, by class name, for a reason that holds for every epoll-based reactor.
KNOWN_SKIPS = {
    "test_lostFileDescriptor": "epoll forgets a closed descriptor without a notification, so no "
    "epoll-based reactor can detect it (Twisted skips it for EPollReactor)",
}


class CountingResult(unittest.TestResult):
    """Counts outcomes per module and keeps the failures' identities for the report."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.problems: list[tuple[str, str, str]] = []

    @staticmethod
    def _module(test: unittest.TestCase) -> str:
        return type(test).__module__

    def startTest(self, test):
        super().startTest(test)
        reason = KNOWN_SKIPS.get(getattr(test, "_testMethodName", ""))
        if reason is not None:
            setattr(test, test._testMethodName, unittest.skip(reason)(lambda: None))

    def addSuccess(self, test):
        self.counts[self._module(test)]["pass"] += 1

    def addFailure(self, test, err):
        self.counts[self._module(test)]["fail"] += 1
        self.problems.append(("FAIL", test.id(), self._exc_info_to_string(err, test)))

    def addError(self, test, err):
        self.counts[self._module(test)]["error"] += 1
        self.problems.append(("ERROR", test.id(), self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        self.counts[self._module(test)]["skip"] += 1

    def addExpectedFailure(self, test, err):
        self.counts[self._module(test)]["xfail"] += 1

    def addUnexpectedSuccess(self, test):
        self.counts[self._module(test)]["fail"] += 1
        self.problems.append(("UNEXPECTED SUCCESS", test.id(), ""))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactor", default="tm_twisted.TMReactor")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--verbose", action="store_true", help="print each failure's traceback")
    parser.add_argument("modules", nargs="*", default=MODULES)
    args = parser.parse_args(argv)
    if args.workers is not None:
        os.environ["TM_WORKERS"] = str(args.workers)

    from twisted.internet.test.reactormixins import ReactorBuilder

    ReactorBuilder._reactors = [args.reactor]
    from twisted.trial.runner import TestLoader

    # Trial's tests write into the working directory: give them a scratch one.
    os.chdir(tempfile.mkdtemp(prefix="tm-conformance-"))
    loader = TestLoader()
    result = CountingResult()
    started = time.monotonic()
    for name in args.modules:
        suite = loader.loadByName(name, recurse=True)
        suite.run(result)
    elapsed = time.monotonic() - started

    print(f"reactor {args.reactor}, workers {os.environ.get('TM_WORKERS', 'default')}, "
          f"python {sys.version.split()[0]}{' (free-threaded)' if not getattr(sys, '_is_gil_enabled', lambda: True)() else ''}")
    print(f"{'module':42} {'pass':>5} {'fail':>5} {'error':>5} {'skip':>5}")
    total = collections.Counter()
    for name in args.modules:
        c = result.counts.get(name, collections.Counter())
        total.update(c)
        print(f"{name:42} {c['pass']:5} {c['fail']:5} {c['error']:5} {c['skip']:5}")
    print(f"{'total':42} {total['pass']:5} {total['fail']:5} {total['error']:5} {total['skip']:5}"
          f"   ({elapsed:.0f} s)")
    for kind, test_id, text in dict.fromkeys(result.problems):
        print(f"{kind}: {test_id}")
        if args.verbose:
            print(text)
    return 0 if not (total["fail"] or total["error"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
