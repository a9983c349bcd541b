#!/usr/bin/env bash
# Checks the sources; scripts/test.sh (and so CI) runs it first:
#   - ruff's linter and formatter (--check) over the Python (pyproject.toml's [tool.ruff]);
#   - mypy over the tm package and the two adapters (pyproject.toml's [tool.mypy]);
#   - clang-format (the root .clang-format) over all C++, bindings included;
#   - clang-tidy (the root .clang-tidy) over every C++ source, bindings, tests and benchmarks
#     included, TM_JOBS (default: the cores) files at a time, with the compile database of
#     build/tidy (configured here, never built: the extension, tests and benchmarks on, with
#     .venv-gil's Python or TM_TIDY_PYTHON).
#
#   scripts/lint.sh [--no-tidy] [FILE...]
#
# FILEs: check only those C++ files (clang-format, and clang-tidy on the .cpp among them; headers
# are checked through the sources that include them). --no-tidy skips clang-tidy, the slow part:
# about 13 minutes of CPU for the whole tree, most of it matching in Boost's, pybind11's and
# GoogleTest's headers. A source that clang-tidy found clean is not checked again until it, a
# file it includes, its flags, .clang-tidy or clang-tidy change (scripts/tidy_cache.py; the
# stamps are in build/tidy/clean); TM_TIDY_CACHE=0 checks every source.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tidy=1
if [[ ${1:-} == --no-tidy ]]; then tidy=0; shift; fi
if (($# == 0)); then
  ruff=${TM_RUFF:-$root/.venv-tools/bin/ruff}
  py=(bindings/tm twisted_plugin asyncio_loop tests examples bench scripts)
  "$ruff" check --quiet "${py[@]}"
  "$ruff" format --check --quiet "${py[@]}"
  mypy=${TM_MYPY:-$root/.venv-tools/bin/mypy}
  "$mypy" --no-error-summary
fi
mapfile -t files < <(if (($#)); then printf '%s\n' "$@"; else
  git ls-files -- 'stm_core/*.[ch]pp' 'reactor/*.[ch]pp' 'bindings/*.[ch]pp' 'tests/cpp/*.[ch]pp' 'bench/cpp/*.[ch]pp'; fi)
((${#files[@]})) || exit 0
clang-format --dry-run --Werror "${files[@]}"
((tidy)) || { echo "lint: clean (clang-tidy skipped)"; exit 0; }

mapfile -t units < <(printf '%s\n' "${files[@]}" | grep '\.cpp$' || true)
((${#units[@]})) || { echo "lint: clean"; exit 0; }
# Configuring is a few seconds, and keeps the database in step with the CMakeLists.
python=${TM_TIDY_PYTHON:-$root/.venv-gil/bin/python}
mkdir -p build
cmake -S . -B build/tidy -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTM_BUILD_PYTHON=ON \
  -DTM_BUILD_TESTS=ON -DTM_BUILD_BENCH=ON -DPython_EXECUTABLE="$python" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >build/tidy.configure.log 2>&1 \
  || { cat build/tidy.configure.log >&2; exit 1; }
started=$SECONDS
cache=()
[[ ${TM_TIDY_CACHE:-1} == 0 ]] && cache+=(--all)
(($#)) || cache+=(--prune)  # the whole tree: stamps no source has any more go
TM_JOBS=${TM_JOBS:-$(nproc)} python3 scripts/tidy_cache.py "${cache[@]}" build/tidy build/tidy/clean \
  "${units[@]}" >build/tidy/todo
todo=$(($(tr -cd '\0' <build/tidy/todo | wc -c) / 2))
# Every warning is an error (.clang-tidy's WarningsAsErrors): xargs fails if any file does. A file
# that passes gets its stamp.
status=0
xargs -0 -r -n 2 -P "${TM_JOBS:-$(nproc)}" \
  sh -c 'clang-tidy -p build/tidy --quiet "$1" && { [ "$2" = - ] || touch "$2"; }' tidy \
  <build/tidy/todo 2>&1 | sed '/^[0-9][0-9a-z ]* generated\.$/d' || status=$?
echo "lint: clang-tidy over $todo of ${#units[@]} files (the others unchanged since they" \
  "passed) in $((SECONDS - started)) s"
((status == 0)) || { echo "lint: clang-tidy found the problems above" >&2; exit 1; }
echo "lint: clean"
