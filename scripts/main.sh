#!/usr/bin/env bash
# The main job: sets everything up, then runs the most complete demonstration the product has.
#
# Today that is the engine's own load: the STM and reactor benchmarks at 1 and 2 threads, and the
# extension's build report on both interpreters. It grows into a real twisted.web server on the
# tm reactor under load (issue 8).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

for venv in .venv-gil .venv-ft; do
  echo "== tm.build_info() on $venv"
  "$root/$venv/bin/python" -c 'import json, tm; print(json.dumps(tm.build_info(), indent=1))'
done

build="$root/build/release"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
for bench in "$build"/bench/cpp/*/*_bench; do
  [[ -x $bench ]] || continue
  echo "== $(basename "$bench")"
  "$bench" --benchmark_min_time=0.2s
done
