"""asyncio's subprocess start swaps the process's warning filters (3.12, 3.13): tm_asyncio makes
the step that starts a process inevitable first, so that handlers running in parallel start
processes one at a time and cannot print the deprecation asyncio silences (docs/ASYNCIO.md)."""

import subprocess
import sys

import pytest

import tm
import tm_asyncio
from differential_helpers import child_environment, default_signals
from tm_asyncio._loop import _base_loop

SWAPS_FILTERS = (3, 12) <= sys.version_info < (3, 14)

SCRIPT = r"""
import asyncio, sys
import tm_asyncio

async def main():
    async def run(i):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(input())", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(b"%d" % i)
        return int(out)

    async def handle(reader, writer):
        writer.write(b"%d\n" % await run(int(await reader.readline())))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"%d\n" % i)
        reply = int(await reader.readline())
        writer.close()
        return reply

    replies = await asyncio.gather(*(client(i) for i in range(24)))
    assert replies == list(range(24)), replies
    server.close()
    await server.wait_closed()
    print("ok")

loop = tm_asyncio.EventLoop(workers=2, parallel=True)
asyncio.set_event_loop(loop)
loop.run_until_complete(main())
loop.close()
"""


@pytest.mark.skipif(not SWAPS_FILTERS, reason="asyncio swaps no warning filters here")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_process_start_runs_in_an_inevitable_step(monkeypatch, workers):
    # The race itself needs thousands of starts to show (two threads swapping the filters print
    # the warning within 20,000 rounds on 3.13t): this checks the loop's side of the fix.
    seen = []

    async def start(self, *args, **kwargs):
        seen.append(tm.is_inevitable())
        return "transport"

    monkeypatch.setattr(_base_loop, "_make_subprocess_transport", start)
    loop = tm_asyncio.EventLoop(workers=workers)

    async def main():
        return await loop._make_subprocess_transport(None, [], False)

    try:
        assert loop.run_until_complete(main()) == "transport"
    finally:
        loop.close()
    assert seen == [True]


@pytest.mark.timeout(120)
def test_processes_started_by_parallel_handlers_print_nothing_but_their_output():
    env = child_environment("2", parallel=True)
    env.pop("PYTHONWARNINGS", None)  # the interpreter's default filters, which asyncio relies on
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            preexec_fn=default_signals,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
