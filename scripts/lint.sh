#!/usr/bin/env bash
# Checks the sources; scripts/test.sh (and so CI) runs it with --tidy-clean:
#   - ruff's linter and formatter (--check) over the Python (pyproject.toml's [tool.ruff]);
#   - mypy over the tm package and the two adapters (pyproject.toml's [tool.mypy]);
#   - clang-format (the root .clang-format) over all C++, bindings included;
#   - clang-tidy (the root .clang-tidy) over every C++ source, bindings, tests and benchmarks
#     included, TM_JOBS (default: the cores) files at a time, with the compile database of
#     build/tidy (configured here, never built: the extension, tests and benchmarks on, with
#     .venv-gil's Python or TM_TIDY_PYTHON).
#
#   scripts/lint.sh [--no-tidy | --tidy-clean] [FILE...]
#
# FILEs: check only those C++ files (clang-format, and clang-tidy on the .cpp among them; headers
# are checked through the sources that include them). --no-tidy skips clang-tidy (the slow part:
# about 14 minutes of CPU for the whole tree, most of it matching in Boost's and pybind11's
# headers);
# --tidy-clean runs it over the sources of the folders in tidy_clean only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The folders whose sources clang-tidy is clean over: --tidy-clean checks only these (what
# scripts/test.sh runs until the whole tree is clean; a folder joins once it is).
tidy_clean=(stm_core/ tests/cpp/stm_core/ bench/cpp/stm_core/)
tidy=1
case ${1:-} in
  --no-tidy) tidy=0; shift ;;
  --tidy-clean) tidy=2; shift ;;
esac
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
if ((tidy == 2)); then
  mapfile -t units < <(printf '%s\n' "${units[@]}" | grep -E "^($(IFS='|'; echo "${tidy_clean[*]}"))" || true)
fi
((${#units[@]})) || { echo "lint: clean"; exit 0; }
# Configuring is a few seconds, and keeps the database in step with the CMakeLists.
python=${TM_TIDY_PYTHON:-$root/.venv-gil/bin/python}
mkdir -p build
cmake -S . -B build/tidy -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTM_BUILD_PYTHON=ON \
  -DTM_BUILD_TESTS=ON -DTM_BUILD_BENCH=ON -DPython_EXECUTABLE="$python" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >build/tidy.configure.log 2>&1 \
  || { cat build/tidy.configure.log >&2; exit 1; }
# Every warning is an error (.clang-tidy's WarningsAsErrors): xargs fails if any file does.
started=$SECONDS status=0
printf '%s\0' "${units[@]}" \
  | xargs -0 -n 1 -P "${TM_JOBS:-$(nproc)}" clang-tidy -p build/tidy --quiet 2>&1 \
  | sed '/^[0-9][0-9a-z ]* generated\.$/d' || status=$?
echo "lint: clang-tidy over ${#units[@]} files in $((SECONDS - started)) s"
((status == 0)) || { echo "lint: clang-tidy found the problems above" >&2; exit 1; }
echo "lint: clean"
