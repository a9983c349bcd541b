"""Runs an asyncio program unchanged on the loop named by its first argument.

    python run.py default|tm PROGRAM.py [ARGS...]

The program calls asyncio.run() as any program does; for "tm" this runner installs
tm_asyncio's event loop policy first, so asyncio.run() makes a tm_asyncio loop (TM_WORKERS and
the other TM_* variables apply). Either way it prints the class of the loop asyncio.run() made,
so that a test can tell which loop served it. Nothing else of the program changes.
"""

import asyncio
import runpy
import sys

loop_name, program = sys.argv[1], sys.argv[2]
if loop_name == "tm":
    import tm_asyncio

    base = tm_asyncio.EventLoopPolicy
elif loop_name == "default":
    base = asyncio.DefaultEventLoopPolicy
else:
    raise SystemExit(f"unknown loop {loop_name!r}: default or tm")


class Policy(base):
    def new_event_loop(self):
        loop = super().new_event_loop()
        cls = type(loop)
        print(f"runner: loop {cls.__module__}.{cls.__qualname__}", flush=True)
        return loop


asyncio.set_event_loop_policy(Policy())
sys.argv = [program, *sys.argv[3:]]
runpy.run_path(program, run_name="__main__")
