#!/usr/bin/env bash
# The scaling benchmarks (bench/scaling.py, bench/thread_scaling.py, bench/server_workloads.py) on a
# many-core machine lent without network.
#
#   scripts/device_scaling.sh pack           here: writes out/device-bundle.tar.gz (< 64 MiB)
#   scripts/device_scaling.sh run [BUNDLE]   there (or here, to check it): unpacks and runs
#
# The bundle carries everything the run needs, from HEAD (committed sources only):
#   - both interpreters, trimmed (no test suite, no static library): the free-threaded CPython
#     3.13t from ~/.cache/tm-reactor/python3.13t and the CPython 3.11 behind .venv-gil;
#   - the project's wheels built for each (pip wheel, a private build folder under out/);
#   - Twisted and its dependencies, copied from each venv (their files as the RECORD lists them);
#   - bench/ and examples/ of the same commit.
# `run` unpacks it into $TM_DEVICE_DIR (default: a temporary folder), installs each wheel by
# unzipping it beside those packages, and runs the steps named in TM_DEVICE_STEPS (default
# "scaling threads workloads"), in that order, each printing a UTC timestamp when it starts and
# ends; a step that fails is reported and the next one runs (the exit status says if any failed):
#   scaling    bench/scaling.py on both interpreters: stock, tm at TM_DEVICE_WORKERS (default
#              "1 2 4 8 16"; the GIL interpreter TM_DEVICE_GIL_WORKERS, default "1 2": with the
#              GIL only processes scale), TM_DEVICE_PROCESSES (default "2 8 16") processes
#              sharing the port; TM_DEVICE_SECONDS (default 3) per configuration.
#   threads    bench/thread_scaling.py on the free-threaded interpreter, TM_DEVICE_THREADS
#              (default "1 2 4 8 16") threads, TM_DEVICE_THREADS_SECONDS (default 1) a point.
#   workloads  bench/server_workloads.py, servers on the free-threaded interpreter: workloads
#              TM_DEVICE_WORKLOADS (default "json template chat"), tm at
#              TM_DEVICE_WORKLOADS_WORKERS (default: TM_DEVICE_WORKERS), processes
#              TM_DEVICE_WORKLOADS_PROCESSES (default: TM_DEVICE_PROCESSES),
#              TM_DEVICE_WORKLOADS_SECONDS (default 2) per configuration, the ceiling
#              TM_DEVICE_CEILING_SECONDS (default 1) per thread count.
# The load generators run on the free-threaded interpreter (their threads run in parallel):
# TM_DEVICE_LOAD_PROCESSES processes (default 4) sharing TM_DEVICE_CONNECTIONS keep-alive
# connections (default twice the cores, at least 8). Results go to $OUT if set (the device
# machine's return folder), else out/device-scaling/, two files a step: scaling.json/.txt,
# threads.json/.txt, workloads.json/.txt (and scaling.png where matplotlib imports: it is not
# carried; `bench/scaling.py plot scaling.json x.png` draws it afterwards here).
#
# On the lent machine: carry out/device-bundle.tar.gz and run
#   TM_DEVICE_LOAD_PROCESSES=4 scripts/device_scaling.sh run
# With the defaults on 16 cores, about 7 minutes: scaling 30 configurations (ft: 2 examples x 9,
# gil: 2 x 6) x (3 s + 1-2 s of start-up) = 2.5 min; threads 10 points x 1 s = 15 s; workloads
# 54 configurations (json, template: 2 servers x 9; chat: 3 rows x 6) x (2 s + 1-2 s) = 3-3.5 min,
# and its ceiling 3 x 5 x 1 s = 20 s. Lower the seconds, or drop a step, if the lease is shorter.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '== %s\n' "$*" >&2; }
bundle_default="$root/out/device-bundle.tar.gz"

# copy_dists PYTHON DEST NAME...: the installed files of NAME and of what it requires, recursively.
copy_dists() {
  local python=$1 dest=$2; shift 2
  "$python" - "$dest" "$@" <<'EOF'
import importlib.metadata as md, pathlib, re, shutil, sys
dest = pathlib.Path(sys.argv[1])
todo, seen = list(sys.argv[2:]), set()
while todo:
    name = re.split(r"[\s;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:  # a build-time requirement (setuptools) not installed: unneeded
        print(f"not installed, not carried: {name}", file=sys.stderr)
        continue
    for req in dist.requires or []:
        if "extra ==" not in req:  # only unconditional requirements (and platform markers)
            marker = req.split(";", 1)[1] if ";" in req else ""
            if "python_version" in marker or "sys_platform" in marker:
                from packaging.markers import Marker
                if not Marker(marker).evaluate():
                    continue
            todo.append(req)
    for f in dist.files or []:
        src = pathlib.Path(dist.locate_file(f))
        if f.parts[0].startswith("..") or "__pycache__" in f.parts or not src.is_file():
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
print(" ".join(sorted(seen)))
EOF
}

# strip_wheels DIR: the wheels' shared objects without their debug sections (RECORD rewritten);
# the code is unchanged, the wheel a quarter of its size.
strip_wheels() {
  python3 - "$1" <<'EOF2'
import base64, hashlib, pathlib, subprocess, sys, tempfile, zipfile
for wheel in pathlib.Path(sys.argv[1]).glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    out, record_name, rows = [], None, {}
    for info, data in entries:
        if info.filename.endswith(".so"):
            with tempfile.NamedTemporaryFile(suffix=".so") as tmp:
                tmp.write(data); tmp.flush()
                subprocess.run(["strip", "--strip-debug", tmp.name], check=True)
                data = pathlib.Path(tmp.name).read_bytes()
        if info.filename.endswith(".dist-info/RECORD"):
            record_name = info
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows[info.filename] = f"{info.filename},sha256={digest},{len(data)}"
        out.append((info, data))
    record = "\n".join(list(rows.values()) + [f"{record_name.filename},,"]) + "\n"
    out.append((record_name, record.encode()))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in out:
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
EOF2
}

# copy_python PREFIX DEST VERSION: a trimmed copy of the interpreter installed at PREFIX.
copy_python() {
  local prefix=$1 dest=$2 version=$3
  mkdir -p "$dest/bin" "$dest/lib"
  cp -L "$prefix/bin/python$version" "$dest/bin/"
  cp -a "$prefix"/lib/libpython*.so* "$dest/lib/" 2>/dev/null || true
  tar -C "$prefix/lib" -cf - \
    --exclude="python$version/test" --exclude="python$version/site-packages" \
    --exclude="python$version/config-*" --exclude="python$version/idlelib" \
    --exclude="python$version/tkinter" --exclude="python$version/turtledemo" \
    --exclude="python$version/ensurepip" --exclude="python$version/lib2to3" \
    --exclude="python$version/pydoc_data" --exclude="__pycache__" \
    --exclude="python$version/lib-dynload/_test*" \
    "python$version" | tar -C "$dest/lib" -xf -
  # Debug sections are most of the binaries' size and nothing the benchmark needs.
  find "$dest" -type f \( -name "*.so*" -o -path "*/bin/python*" \) -exec strip --strip-debug {} +
}

pack() {
  local out="$root/out" stage="$root/out/device-stage" src="$root/out/device-src"
  local commit
  commit=$(git rev-parse --short HEAD)
  rm -rf "$stage" "$src" && mkdir -p "$stage/wheels" "$src"
  git archive HEAD | tar -C "$src" -xf -
  for flavour in gil ft; do
    local venv="$root/.venv-$flavour" python prefix version
    python="$venv/bin/python"
    prefix=$("$python" -c 'import sys; print(sys.base_prefix)')
    version=$("$python" -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]}" + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')
    log "$flavour: CPython $version from $prefix"
    copy_python "$prefix" "$stage/python-$flavour" "$version"
    ln -s "python$version" "$stage/python-$flavour/bin/python"
    log "$flavour: Twisted and its dependencies from $venv"
    copy_dists "$python" "$stage/site-$flavour" twisted >&2
    # Twisted's own test suites are half its size and never imported by a server.
    find "$stage/site-$flavour/twisted" -type d -name test -prune -exec rm -rf {} +
    log "$flavour: building the tm-reactor wheel of $commit (a few minutes the first time)"
    # A build folder of its own, apart from setup.sh's, kept for the next pack.
    (cd "$src" && CMAKE_BUILD_PARALLEL_LEVEL=${TM_JOBS:-2} "$python" -m pip wheel -q \
       --no-build-isolation --no-deps -C "build-dir=$out/device-build/py-{wheel_tag}" \
       -w "$stage/wheels" . 2> >(grep -v "is ignored: it is neither" >&2))
  done
  strip_wheels "$stage/wheels"
  mkdir -p "$stage/project"
  cp -r "$src/bench" "$src/examples" "$src/scripts" "$stage/project/"
  echo "$commit" >"$stage/COMMIT"
  tar -C "$stage" -czf "$out/device-bundle.tar.gz" .
  rm -rf "$stage"
  local size
  size=$(stat -c %s "$out/device-bundle.tar.gz")
  log "out/device-bundle.tar.gz: $((size / 1024 / 1024)) MiB, commit $commit"
  if ((size >= 64 * 1024 * 1024)); then log "too large for the device (64 MiB)"; exit 1; fi
}

# step NAME COMMAND...: runs COMMAND, its output (with the step's start and end) to the terminal and
# to $results/NAME.txt; a failure is reported and recorded in $failed, never fatal.
step() {
  local name=$1 started
  shift
  started=$(date +%s)
  log "$name: start $(date -u '+%Y-%m-%d %H:%M:%S UTC')" 2>&1 | tee "$results/$name.txt" >&2
  local rc=0
  "$@" 2>&1 | tee -a "$results/$name.txt" || rc=$?
  log "$name: end $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(($(date +%s) - started)) s, exit $rc" \
    2>&1 | tee -a "$results/$name.txt" >&2
  ((rc == 0)) || failed+=("$name")
}

run() {
  local bundle=${1:-$bundle_default}
  local dir=${TM_DEVICE_DIR:-$(mktemp -d)}
  results=${OUT:-$root/out/device-scaling}
  failed=()
  mkdir -p "$dir" "$results"
  log "unpacking $bundle into $dir ($(date -u '+%H:%M:%S UTC'))"
  # The bundle carries no byte code: the first process to import a module writes its cache, which
  # every later server and load generator reads (without it, each start compiles Twisted and the
  # standard library again: about 1 s of CPU, several seconds a configuration).
  unset PYTHONDONTWRITEBYTECODE
  tar -C "$dir" -xzf "$bundle"
  local args=()
  for flavour in gil ft; do
    local python="$dir/python-$flavour/bin/python"
    # The GIL interpreter links its libpython from its own lib/ (its RUNPATH names the old prefix).
    export LD_LIBRARY_PATH="$dir/python-$flavour/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local tag
    tag=$("$python" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}" + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')
    for wheel in "$dir"/wheels/tm_reactor-*-"$tag"-*.whl; do
      "$python" -m zipfile -e "$wheel" "$dir/site-$flavour"
    done
    "$python" -c 'import sys; sys.path[:0] = [sys.argv[1]]; import tm, tm_twisted, tm_asyncio, twisted' \
      "$dir/site-$flavour" || { log "$flavour: the bundle does not import"; exit 1; }
    args+=(--python "$flavour=$python" --pythonpath "$flavour=$dir/site-$flavour")
  done
  local ft="$dir/python-ft/bin/python" bench="$dir/project/bench" cores
  cores=$(nproc)
  log "$cores cores; commit $(cat "$dir/COMMIT"); results in $results"
  export TM_COMMIT
  TM_COMMIT=$(cat "$dir/COMMIT")
  local workers=${TM_DEVICE_WORKERS:-1 2 4 8 16} processes=${TM_DEVICE_PROCESSES:-2 8 16}
  local gil_workers=${TM_DEVICE_GIL_WORKERS:-1 2}
  # The load generators on the free-threaded interpreter: their threads run in parallel.
  local load=(--load-python "$ft" --load-processes "${TM_DEVICE_LOAD_PROCESSES:-4}"
    --connections "${TM_DEVICE_CONNECTIONS:-$((cores * 2 > 8 ? cores * 2 : 8))}")
  for name in ${TM_DEVICE_STEPS:-scaling threads workloads}; do
    case $name in
      scaling)
        # shellcheck disable=SC2086
        step scaling "$ft" "$bench/scaling.py" "${args[@]}" "${load[@]}" \
          --workers $workers --workers-for "gil=${gil_workers// /,}" --processes $processes \
          --seconds "${TM_DEVICE_SECONDS:-3}" --out "$results/scaling" ;;
      threads)
        # shellcheck disable=SC2086
        step threads "$ft" "$bench/thread_scaling.py" --threads ${TM_DEVICE_THREADS:-1 2 4 8 16} \
          --seconds "${TM_DEVICE_THREADS_SECONDS:-1}" --json "$results/threads.json" ;;
      workloads)
        # shellcheck disable=SC2086
        step workloads "$ft" "$bench/server_workloads.py" --python "$ft" \
          --pythonpath "$dir/site-ft" "${load[@]}" \
          --workloads ${TM_DEVICE_WORKLOADS:-json template chat} \
          --workers ${TM_DEVICE_WORKLOADS_WORKERS:-$workers} \
          --processes ${TM_DEVICE_WORKLOADS_PROCESSES:-$processes} \
          --seconds "${TM_DEVICE_WORKLOADS_SECONDS:-2}" \
          --ceiling-seconds "${TM_DEVICE_CEILING_SECONDS:-1}" --out "$results/workloads" ;;
      *) log "unknown step $name (scaling, threads, workloads)"; failed+=("$name") ;;
    esac
  done
  [[ -n ${TM_DEVICE_DIR:-} ]] || rm -rf "$dir"
  log "done $(date -u '+%H:%M:%S UTC'); results in $results: $(cd "$results" && echo *)"
  if ((${#failed[@]})); then log "failed: ${failed[*]}"; exit 1; fi
}

case ${1:-} in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack | run [BUNDLE]" >&2; exit 2 ;;
esac
