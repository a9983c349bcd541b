#!/usr/bin/env bash
# The scaling benchmark (bench/scaling.py) on a many-core machine lent without network.
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
# unzipping it beside those packages, and runs bench/scaling.py for both interpreters with
# workers TM_DEVICE_WORKERS (default "1 2 4 8 16"), processes TM_DEVICE_PROCESSES (default
# "2 8 16"), TM_DEVICE_SECONDS per configuration (default 4). Results go to $OUT if set (the
# device machine's return folder), else out/device-scaling/: scaling.json, scaling.txt and, where
# matplotlib imports (it is not carried), scaling.png; `bench/scaling.py plot scaling.json x.png`
# draws it afterwards here.
#
# On the lent machine: carry out/device-bundle.tar.gz and run `scripts/device_scaling.sh run`
# (36 configurations of about 4 s plus server start-up: 3-5 minutes on 16 cores; set
# TM_DEVICE_SECONDS lower if the lease is short).
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

run() {
  local bundle=${1:-$bundle_default}
  local dir=${TM_DEVICE_DIR:-$(mktemp -d)}
  local results=${OUT:-$root/out/device-scaling}
  mkdir -p "$dir" "$results"
  log "unpacking $bundle into $dir"
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
  log "$(nproc) cores; commit $(cat "$dir/COMMIT"); results in $results"
  export TM_COMMIT
  TM_COMMIT=$(cat "$dir/COMMIT")
  # The load generator on the free-threaded interpreter: its threads run in parallel.
  # shellcheck disable=SC2086
  "$dir/python-ft/bin/python" "$dir/project/bench/scaling.py" "${args[@]}" \
    --load-python "$dir/python-ft/bin/python" --load-processes "${TM_DEVICE_LOAD_PROCESSES:-2}" \
    --workers ${TM_DEVICE_WORKERS:-1 2 4 8 16} --processes ${TM_DEVICE_PROCESSES:-2 8 16} \
    --seconds "${TM_DEVICE_SECONDS:-4}" --out "$results/scaling" 2>&1 | tee "$results/scaling.txt"
  [[ -n ${TM_DEVICE_DIR:-} ]] || rm -rf "$dir"
}

case ${1:-} in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack | run [BUNDLE]" >&2; exit 2 ;;
esac
