#!/usr/bin/env bash
# The main job: sets everything up, then runs a real server on the tm reactor under load and
# prints what it achieved.
#
# The server is examples/twisted_web_site.py (twisted.web: a shared tm.Counter of hits, a bounded
# cache read with tm.snapshot(), a page of about 1 ms of CPU work per request) started by
#   twistd -n --reactor=tm web --class=twisted_web_site.resource --listen tcp:0:interface=127.0.0.1
# on the free-threaded interpreter, with TM_WORKERS=1 and then 2, beside the same under
# --reactor=epoll. Each is loaded for TM_MAIN_SECONDS (default 5) by a load generator in its own
# process (GET /work?n=<unique>, so that every request misses the cache and does its work); at the
# end of each run /stats gives the hits and tm.stats(): commits, aborts by cause, time inevitable.
# Then the engine's own benchmarks. The full scaling table (both interpreters, SO_REUSEPORT
# processes, the asyncio example) is bench/scaling.py; docs/BENCHMARKS.md has the figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

echo "== tm.build_info() on the free-threaded interpreter"
"$root/.venv-ft/bin/python" -c 'import json, tm; print(json.dumps(tm.build_info()))'

echo "== twistd web under load: --reactor=epoll vs --reactor=tm ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
"$root/.venv-ft/bin/python" "$root/bench/main_job.py" \
  --python "ft=$root/.venv-ft/bin/python" --load-python "$root/.venv-gil/bin/python" \
  --workers 1 2 --seconds "${TM_MAIN_SECONDS:-5}"

build="$root/build/release"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "== the STM engine's benchmarks"
"$build/bench/cpp/stm_core/stm_bench" --benchmark_min_time=0.2
