"""The README's main job (scripts/main.sh): twistd web with the example site under load.

    twistd -n --reactor=R web --class=twisted_web_site.resource --listen tcp:0:interface=127.0.0.1

with R epoll, then tm at each of --workers (default 1 and 2, TM_WORKERS), on the last --python
(the free-threaded interpreter when both are given). Each run is loaded for --seconds by the load
generator in its own process (GET --path, `{n}` a per-request number so that every request misses
the site's cache and does its work); /stats (the hits, and tm.stats() under tm) is fetched at the
end of each run. Prints req/s (p99 ms) per run, then tm's scaling and tm against epoll.

    python bench/main_job.py [--python ft=.venv-ft/bin/python] [--load-python PYTHON]
        [--workers 1 2] [--seconds 5] [--connections 8]

Never a pass/fail test. The servers, the load generator and the figures' format are
bench/scaling.py's, imported as its neighbour.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import urllib.request

import scaling


def main_job(args, interps: list[scaling.Interpreter]) -> int:
    """twistd web with the example site: epoll, then tm at each of --workers."""
    interp = interps[-1]  # the free-threaded interpreter when both are given (gil, ft)
    twistd = str(pathlib.Path(interp.python).parent / "twistd")
    workers = args.workers
    print(
        f"twistd -n --reactor=R web --class=twisted_web_site.resource on {interp.version}, "
        f"GET {args.path} ({args.connections} connections, {args.seconds:g} s, load generator "
        f"in its own process), commit {scaling.commit()}, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    results = {}
    for reactor, n in [("epoll", 0)] + [("tm", w) for w in workers]:
        cmd = [
            interp.python,
            twistd,
            "-n",
            "--pidfile=",
            "--logfile=-",
            f"--reactor={reactor}",
            "web",
            "--class=twisted_web_site.resource",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ]
        env = interp.env({"TM_WORKERS": str(n)} if n else None)
        server, port = scaling.start_server(cmd, env, r"Site starting on (\d+)")
        try:
            r = scaling.run_load(args, port)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30) as response:
                r["stats"] = json.loads(response.read())
        finally:
            scaling.stop_server(server)
        name = "epoll" if reactor == "epoll" else f"tm x{n}"
        results[name] = r
        print(f"{name:8} {scaling.fmt(r)} req/s (p99 ms), {r['stats']['hits']} hits", flush=True)
        if "tm" in r["stats"]:
            print(f"         {scaling.stats_line(r['stats']['tm'])}")
    base = results.get(f"tm x{workers[0]}")
    for w in workers[1:]:
        print(f"scaling tm x{w} / tm x{workers[0]}: {results[f'tm x{w}']['rps'] / base['rps']:.2f}")
    print(
        f"tm x{workers[-1]} / epoll: {results[f'tm x{workers[-1]}']['rps'] / results['epoll']['rps']:.2f}"
    )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scaling.add_run_arguments(
        parser, "LABEL=PYTHON (repeatable); the servers run on the last one", [1, 2]
    )
    args = parser.parse_args(argv)
    return main_job(args, scaling.interpreters(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
