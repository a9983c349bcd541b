#!/usr/bin/env python3
"""Lists the C++ units that clang-tidy has to check, skipping those it already found clean.

    scripts/tidy_cache.py [--all] [--prune] BUILD_DIR CACHE_DIR UNIT...

scripts/lint.sh runs it. A unit's key is a hash of everything clang-tidy's result depends on:
clang-tidy's version, the .clang-tidy files, the unit's compile command in BUILD_DIR's
compile_commands.json, and the path and content of every file the unit includes (listed by
clang-scan-deps, which preprocesses as clang-tidy does). lint.sh writes CACHE_DIR/KEY once
clang-tidy passes on the unit, so a unit whose key has a stamp would pass again and is skipped;
any change to a source, a header (the project's, Boost's, pybind11's), a flag or the checks gives
a new key. Prints "UNIT\\0STAMP\\0" for every unit to check, the units that include the most
first (the longest to check, so that the parallel runs end together); STAMP is "-" for a unit
that the compile database lacks. --all lists every unit (nothing skipped); --prune removes the
stamps of keys that none of the UNITs has (lint.sh passes it when it checks the whole tree).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys


def scan_deps(build_dir: str, jobs: str) -> dict[str, list[str]]:
    """Every source of the compile database -> the files it includes (itself first)."""
    out = subprocess.run(
        [
            # The clang-scan-deps of clang-tidy's own LLVM (Debian: /usr/lib/llvm-N/bin).
            os.path.join(
                os.path.dirname(os.path.realpath(shutil.which("clang-tidy") or "")),
                "clang-scan-deps",
            ),
            f"-compilation-database={build_dir}/compile_commands.json",
            f"-j={jobs}",
            "-format=make",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    deps: dict[str, list[str]] = {}
    for rule in out.replace("\\\n", " ").splitlines():
        if ":" not in rule:
            continue
        files = rule.split(":", 1)[1].split()
        if files:
            deps[os.path.realpath(files[0])] = [os.path.realpath(f) for f in files]
    return deps


def main() -> int:
    args = sys.argv[1:]
    check_all = "--all" in args
    prune = "--prune" in args
    build_dir, cache_dir, *units = [a for a in args if a not in ("--all", "--prune")]
    jobs = os.environ.get("TM_JOBS", str(os.cpu_count() or 1))
    with open(f"{build_dir}/compile_commands.json") as f:
        commands = {
            os.path.realpath(e["file"]): e.get("command") or e["arguments"] for e in json.load(f)
        }
    common = hashlib.sha256()
    common.update(subprocess.run(["clang-tidy", "--version"], capture_output=True).stdout)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "*.clang-tidy", ".clang-tidy"], capture_output=True
    )
    for config in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        with open(config, "rb") as f:
            common.update(config.encode() + b"\0" + f.read() + b"\0")
    deps = scan_deps(build_dir, jobs)
    digests: dict[str, bytes] = {}

    def digest(path: str) -> bytes:
        if path not in digests:
            with open(path, "rb") as f:
                digests[path] = hashlib.sha256(f.read()).digest()
        return digests[path]

    os.makedirs(cache_dir, exist_ok=True)
    keys = set()
    todo = []
    for unit in units:
        path = os.path.realpath(unit)
        if path not in deps or path not in commands:
            todo.append((0, unit, "-"))
            continue
        key = common.copy()
        key.update(json.dumps(commands[path]).encode())
        for dep in deps[path]:
            key.update(dep.encode() + b"\0" + (digest(dep) if os.path.exists(dep) else b"?"))
        keys.add(key.hexdigest())
        stamp = os.path.join(cache_dir, key.hexdigest())
        if check_all or not os.path.exists(stamp):
            todo.append((len(deps[path]), unit, stamp))
    for _, unit, stamp in sorted(todo, key=lambda t: -t[0]):
        sys.stdout.write(f"{unit}\0{stamp}\0")
    if prune:
        for old in set(os.listdir(cache_dir)) - keys:
            os.remove(os.path.join(cache_dir, old))
    return 0


if __name__ == "__main__":
    sys.exit(main())
