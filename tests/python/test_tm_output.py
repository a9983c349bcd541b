"""print() and logging inside reactor callbacks: written at once where a callback runs alone (one
worker, or one strand), held until the commit where callbacks run beside each other or may rerun.

A program that prints READY and then blocks must show READY, as on the stock loops."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()

TWISTED = """
    import sys
    from tm_twisted import TMReactor
    reactor = TMReactor({workers})
    def callback():
        print("READY", flush=True)
        line = sys.stdin.readline()  # blocks: the parent answers only after it has seen READY
        print("got", line.strip(), flush=True)
        reactor.stop()
    reactor.callLater(0, callback)
    reactor.run(installSignalHandlers=False)
"""

ASYNCIO = """
    import asyncio, sys
    import tm_asyncio
    async def main():
        print("READY", flush=True)
        line = sys.stdin.readline()  # blocks the loop, as a careless program does
        print("got", line.strip(), flush=True)
    with asyncio.Runner(loop_factory=tm_asyncio.new_event_loop) as runner:  # 3.11 has no
        runner.run(main())                                                  # run(loop_factory=)
"""


def run_interactive(script: str, env_extra: dict) -> list[str]:
    env = dict(os.environ, **env_extra)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # The child must not inherit an ignored SIGINT or SIGPIPE from a background job.
        restore_signals=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = _readline_within(child, 30)
        assert first == "READY\n", f"READY never showed before the callback blocked: {first!r}"
        child.stdin.write("go\n")
        child.stdin.flush()
        rest, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return [first.strip(), *rest.splitlines()]


def _readline_within(child, seconds):
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(child.stdout, selectors.EVENT_READ)
        if not sel.select(seconds):
            return ""
    return child.stdout.readline()


@pytest.mark.parametrize("workers", [1, 2])
def test_twisted_callback_output_is_written_at_once_when_callbacks_run_alone(workers):
    if workers == 2 and FREE_THREADED:
        # Two strands in parallel: output waits for the commit (the next test).
        env = {"TM_STRANDS": "one"}
    else:
        env = {}
    assert run_interactive(TWISTED.format(workers=workers), env) == ["READY", "got go"]


def test_asyncio_serial_loop_output_is_written_at_once():
    assert run_interactive(ASYNCIO, {"TM_WORKERS": "1"}) == ["READY", "got go"]


@pytest.mark.skipif(not FREE_THREADED, reason="callbacks run in parallel only without the GIL")
def test_output_waits_for_the_commit_where_callbacks_run_in_parallel():
    import threading

    import tm
    from tm import _io
    from tm_twisted import TMReactor

    reactor = TMReactor(2)
    seen = {}

    def callback():
        seen["queued"] = _io._must_queue()
        threading.Thread(target=lambda: reactor.callFromThread(reactor.stop)).start()

    reactor.callLater(0, callback)
    reactor.run(installSignalHandlers=False)
    assert seen == {"queued": True}
    assert not tm._core.callbacks_run_in_parallel()  # the run is over


def test_the_programs_own_transactions_queue_output():
    import tm
    from tm import _io

    seen = []
    tm.run_atomic(lambda: seen.append(_io._must_queue()))
    with tm.atomic():
        seen.append(_io._must_queue())
    assert seen == [True, True]
