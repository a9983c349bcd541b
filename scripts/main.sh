#!/usr/bin/env bash
# The main job: sets everything up, then runs a real server on the tm reactor under load and
# prints what it achieved.
#
# The server is examples/twisted_web_site.py (twisted.web, a shared tm.Counter of hits, a page of
# about 1 ms of CPU work per request) on the free-threaded interpreter: under Twisted's epoll
# reactor, then under the tm reactor with 1 and with 2 workers, each loaded for a few seconds by a
# load generator in its own process. Then the engine's own benchmarks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

echo "== tm.build_info() on the free-threaded interpreter"
"$root/.venv-ft/bin/python" -c 'import json, tm; print(json.dumps(tm.build_info()))'

echo "== twisted.web under load: epoll reactor vs tm reactor ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
"$root/.venv-ft/bin/python" "$root/bench/twisted_web_scaling.py" --path /work \
  --seconds "${TM_MAIN_SECONDS:-5}" --load-python "$root/.venv-gil/bin/python"

build="$root/build/release"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "== the STM engine's benchmarks"
"$build/bench/cpp/stm_core/stm_bench" --benchmark_min_time=0.2
