#!/usr/bin/env bash
# Checks the C++ sources: clang-format (the root .clang-format) and clang-tidy (the root
# .clang-tidy) over the compile database of build/release. Pass files to check only those.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mapfile -t files < <(if (($#)); then printf '%s\n' "$@"; else
  git ls-files -- 'stm_core/*.[ch]pp' 'reactor/*.[ch]pp' 'bindings/*.[ch]pp' 'tests/cpp/*.cpp' 'bench/cpp/*.cpp'; fi)
((${#files[@]})) || exit 0
clang-format --dry-run --Werror "${files[@]}"
[[ -f build/release/compile_commands.json ]] || cmake -S . -B build/release -G Ninja >/dev/null
mapfile -t units < <(printf '%s\n' "${files[@]}" | grep '\.cpp$' | grep -v '^bindings/' || true)
((${#units[@]})) && clang-tidy -p build/release --quiet "${units[@]}"
echo "lint: clean"
