#!/usr/bin/env bash
# Builds tm._core from the working tree into a private build directory and lays out a package
# overlay, so that several engineers can test changes to the bindings side by side without
# reinstalling the project into the shared virtual environments.
#
#   scripts/dev_overlay.sh NAME gil|ft     -> prints the PYTHONPATH to use
#   PYTHONPATH=$(scripts/dev_overlay.sh me ft) .venv-ft/bin/python -m pytest tests/python
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?name} flavour=${2:?gil or ft}
python="$root/.venv-$flavour/bin/python"
dir="$root/build-dev-$name-$flavour"
mkdir -p "$dir"
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTM_BUILD_PYTHON=ON \
  -DTM_BUILD_TESTS=OFF -DTM_BUILD_BENCH=OFF -DPython_EXECUTABLE="$python" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >"$dir/configure.log" 2>&1 \
  || { cat "$dir/configure.log" >&2; exit 1; }
cmake --build "$dir" --target _core -j "${TM_JOBS:-2}" >"$dir/build.log" 2>&1 \
  || { tail -n 60 "$dir/build.log" >&2; exit 1; }
pkg="$dir/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$root/bindings/tm" "$pkg/" && cp "$dir"/bindings/_core*.so "$pkg/tm/"
echo "$pkg:$root/twisted_plugin:$root/asyncio_loop"
