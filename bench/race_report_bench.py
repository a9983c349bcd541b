"""What tm's race reporter costs (tm.set_race_report; docs/MANAGED_STATE.md "Race reports"):
each mutation measured with the reporter off and on, side by side. Never a pass/fail test.

    PYTHONPATH=... .venv-ft/bin/python bench/race_report_bench.py [--repeat 7] [--ops 200000]

Rows (ns per mutation or per event, best of --repeat runs):
  - a module global (STORE_GLOBAL), a class attribute and a plain local dict that is not watched,
    outside any reactor callback (the watcher returns at once: no strand);
  - the same global and class attribute inside one reactor callback (strand set; the strand
    mutated that key last, so the reporter only looks its record up);
  - events alternating between two strands, each bumping one global (every mutation changes
    the key's strand: the reporter takes a traceback and compares), per event, the reactor's
    dispatch included; and the same events made inevitable (tm.inevitable()) before the bump,
    what making a callback inevitable at its mutation would add per event on one worker (the
    reporter does not do it: docs/MANAGED_STATE.md says why). With inevitable bumps no race is
    reported.
"""

from __future__ import annotations

import argparse
import sys
import time

import tm
from tm import _core

counter = 0


class Holder:
    count = 0


def bump_global(n):
    global counter
    t = time.perf_counter_ns()
    for i in range(n):
        counter = i
    return (time.perf_counter_ns() - t) / n


def bump_class(n):
    t = time.perf_counter_ns()
    for i in range(n):
        Holder.count = i
    return (time.perf_counter_ns() - t) / n


def bump_local_dict(n):
    d = {}
    t = time.perf_counter_ns()
    for i in range(n):
        d["k"] = i
    return (time.perf_counter_ns() - t) / n


def in_callback(fn, n):
    """fn(n) run inside one reactor callback (one worker: on this thread)."""
    reactor = _core.Reactor(1)
    out = []

    def body():
        out.append(fn(n))
        reactor.stop()

    reactor.post(body)
    reactor.run()
    return out[0]


def alternating_events(n, inevitable=False):
    """n events, alternating between two strands, each bumping the global once (after becoming
    inevitable, with inevitable=True): ns per event."""
    reactor = _core.Reactor(1)
    strands = [reactor.make_strand(), reactor.make_strand()]
    left = [n]

    def event():
        global counter
        if inevitable:
            tm.inevitable()
        counter += 1
        left[0] -= 1
        if left[0] == 0:
            reactor.stop()
        else:
            reactor.post(event, strand=strands[left[0] % 2])

    reactor.post(event, strand=strands[0])
    t = time.perf_counter_ns()
    reactor.run()
    return (time.perf_counter_ns() - t) / n


ROWS = [
    ("global, outside callbacks", lambda n: bump_global(n)),
    ("class attribute, outside callbacks", lambda n: bump_class(n)),
    ("unwatched local dict, outside callbacks", lambda n: bump_local_dict(n)),
    ("global, in one callback", lambda n: in_callback(bump_global, n)),
    ("class attribute, in one callback", lambda n: in_callback(bump_class, n)),
    ("unwatched local dict, in one callback", lambda n: in_callback(bump_local_dict, n)),
    ("event alternating strands (per event)", lambda n: alternating_events(max(1, n // 20))),
    (
        "  the same, inevitable before the bump",
        lambda n: alternating_events(max(1, n // 20), inevitable=True),
    ),
]


def measure(fn, ops, repeat, reporting):
    best = float("inf")
    for _ in range(repeat):
        tm.set_race_report(reporting)
        tm.reset_race_reports()
        best = min(best, fn(ops))
    tm.set_race_report(False)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]}{'' if gil else ' (free-threaded)'}")
    if not tm.race_report_available():
        print("the race reporter is unavailable here (no dict watchers before CPython 3.12)")
        return
    print(f"{'ns per mutation':<42}{'off':>10}{'on':>10}{'on/off':>9}")
    for name, fn in ROWS:
        # Interleaved, so that both columns share the machine's load.
        off = measure(fn, args.ops, args.repeat, False)
        on = measure(fn, args.ops, args.repeat, True)
        print(f"{name:<42}{off:>10.1f}{on:>10.1f}{on / off:>8.2f}x")


if __name__ == "__main__":
    main()
