"""Side-by-side throughput of examples/twisted_web_site.py: the epoll reactor, and the tm reactor
at 1 and 2 (or more) workers, on one interpreter, in one run. The load generator runs in its own
process. Prints a table and the tm scaling ratio. Never a pass/fail test.

    python bench/twisted_web_scaling.py [--path /work] [--seconds 5] [--connections 8]
        [--workers 1 2] [--load-python PYTHON]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parent.parent


def serve_and_load(config: tuple[str, int], args) -> dict:
    reactor, workers = config
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "twisted_web_site.py"), "--reactor", reactor,
         "--workers", str(workers), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"server did not start: {line!r} {server.stderr.read()}")
        port = int(line.split()[-1])
        load = subprocess.run(
            [args.load_python, str(ROOT / "bench" / "http_load.py"), "--port", str(port),
             "--path", args.path, "--connections", str(args.connections),
             "--seconds", str(args.seconds)],
            capture_output=True, text=True, check=True,
        )
        return json.loads(load.stdout)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/work")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load-python", default=sys.executable)
    args = parser.parse_args(argv)

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    print(f"python {sys.version.split()[0]}{' free-threaded' if free_threaded else ''}, "
          f"{os.cpu_count()} cores, path {args.path}, {args.connections} connections, "
          f"{args.seconds:g} s each")
    configs = [("epoll", 0)] + [("tm", w) for w in args.workers]
    results = {}
    print(f"{'reactor':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for config in configs:
        r = serve_and_load(config, args)
        results[config] = r
        name = "epoll" if config[0] == "epoll" else f"tm x{config[1]}"
        print(f"{name:12} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7}"
              + (f"  ({r['first_error']})" if r["errors"] else ""), flush=True)
    base = results[("tm", args.workers[0])]["rps"]
    for w in args.workers[1:]:
        print(f"scaling tm x{w} / tm x{args.workers[0]}: {results[('tm', w)]['rps'] / base:.2f}")
    print(f"tm x{args.workers[-1]} / epoll: "
          f"{results[('tm', args.workers[-1])]['rps'] / results[('epoll', 0)]['rps']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
