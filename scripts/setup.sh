#!/usr/bin/env bash
# Sets up everything the project needs on a fresh Debian machine; quick when already set up.
#
#   1. Debian packages: Boost (Asio, header-only), GoogleTest, Google Benchmark, clang-format/-tidy.
#   2. A free-threaded CPython (scripts/ft_python.sh: found, or built once into the cache).
#   3. One virtual environment per interpreter: .venv-gil (the default python3, with the GIL) and
#      .venv-ft (free-threaded), each with Twisted, pytest, hypothesis, uvloop where it installs,
#      and this project, reinstalled only when its sources changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '== %s\n' "$*" >&2; }

debian_packages=(build-essential cmake ninja-build pkg-config dpkg-dev
                 libboost-dev libgtest-dev libgmock-dev libbenchmark-dev wrk
                 clang-format clang-tidy
                 libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev
                 libreadline-dev uuid-dev libncurses-dev libgdbm-dev)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

gil_python=${TM_GIL_PYTHON:-$(command -v python3)}
ft_python=$("$root/scripts/ft_python.sh")

python_packages=(pip "scikit-build-core>=0.10" "pybind11>=2.13" ninja "cmake>=3.20"
                 "twisted>=24.3" pyhamcrest pytest pytest-timeout hypothesis matplotlib)

# pip_quiet DIR ARGS...: pip install, without the noise of this machine's unused local indexes.
pip_quiet() {
  local dir=$1; shift
  "$dir/bin/python" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# make_venv DIR PYTHON: creates the venv and its dependencies once (a stamp records the list).
make_venv() {
  local dir=$1 python=$2 stamp="$1/.tm-deps"
  local wanted="${python_packages[*]} uvloop tls"
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then return; fi
  log "creating $dir with $("$python" -VV | head -n1)"
  "$python" -m venv --clear "$dir"
  # --prefer-binary: the newest sdist of some tools (hypothesis) needs a Rust toolchain and crates.
  pip_quiet "$dir" --prefer-binary --upgrade "${python_packages[@]}"
  # uvloop is a benchmark peer only: where it does not build, the benchmarks skip it.
  pip_quiet "$dir" --prefer-binary uvloop || log "uvloop does not install on $python: skipped"
  # TLS for Twisted: cryptography ships no wheel for every interpreter (none for 3.13t), and its
  # sources need a Rust toolchain and crates; without it Twisted's TLS tests skip.
  if pip_quiet "$dir" --only-binary :all: cryptography 2>/dev/null; then
    pip_quiet "$dir" --prefer-binary pyopenssl service-identity
  else
    log "cryptography has no wheel for $python: Twisted's TLS tests will skip there"
  fi
  echo "$wanted" >"$stamp"
}

# install_corpus_peers DIR: third-party asyncio frameworks the differential corpus runs unmodified
# (tests/python/asyncio_corpus). Apart from make_venv, so that adding one never rebuilds a venv.
corpus_peers=("aiohttp>=3.9" "uvicorn>=0.36" "starlette>=0.40" "websockets>=15" "tornado>=6.4" "sanic>=24.6")
install_corpus_peers() {
  local dir=$1 stamp="$1/.tm-corpus"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "${corpus_peers[*]}" ]]; then return; fi
  log "installing the corpus's frameworks into $dir: ${corpus_peers[*]}"
  pip_quiet "$dir" --prefer-binary "${corpus_peers[@]}" || return 1
  echo "${corpus_peers[*]}" >"$stamp"
}

# install_project DIR: (re)installs tm-reactor when any tracked or new source file changed.
install_project() {
  local dir=$1 stamp="$1/.tm-project"
  local digest
  digest=$(git ls-files -co --exclude-standard -- CMakeLists.txt pyproject.toml stm_core reactor \
             bindings twisted_plugin asyncio_loop | sort | xargs sha1sum | sha1sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then return; fi
  log "installing tm-reactor into $dir"
  pip_quiet "$dir" --no-build-isolation --no-deps . \
    || { log "building tm-reactor failed in $dir"; return 1; }
  echo "$digest" >"$stamp"
}

# make_tools_venv DIR: the Python linter (ruff) and type checker (mypy), apart from the two test
# environments so that upgrading them never rebuilds those.
make_tools_venv() {
  local dir=$1 stamp="$1/.tm-deps" wanted="ruff>=0.6 mypy>=1.10"
  if [[ -x "$dir/bin/ruff" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then return; fi
  log "creating $dir (ruff, mypy)"
  "$gil_python" -m venv --clear "$dir"
  # shellcheck disable=SC2086  # one argument per requirement
  pip_quiet "$dir" --prefer-binary $wanted
  echo "$wanted" >"$stamp"
}

make_venv "$root/.venv-gil" "$gil_python"
make_venv "$root/.venv-ft" "$ft_python"
install_corpus_peers "$root/.venv-gil"
install_corpus_peers "$root/.venv-ft"
install_project "$root/.venv-gil"
install_project "$root/.venv-ft"
make_tools_venv "$root/.venv-tools"
