#!/usr/bin/env bash
# Checks the sources: ruff's linter and formatter (--check) over the Python (pyproject.toml's
# [tool.ruff]), mypy over the tm package
# ([tool.mypy]), clang-format (the root
# .clang-format) over all C++, bindings included, and clang-tidy (the root .clang-tidy) over the
# compile database of build/release. Pass files to check only those C++ files; --no-tidy skips
# clang-tidy (minutes per file on 2 cores: scripts/test.sh runs the rest).
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
[[ -f build/release/compile_commands.json ]] || cmake -S . -B build/release -G Ninja >/dev/null
mapfile -t units < <(printf '%s\n' "${files[@]}" | grep '\.cpp$' | grep -v '^bindings/' || true)
((${#units[@]})) && clang-tidy -p build/release --quiet "${units[@]}"
echo "lint: clean"
