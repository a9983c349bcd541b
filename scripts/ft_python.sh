#!/usr/bin/env bash
# Prints the path of a free-threaded CPython, building one into the cache the first time.
#
# Order of preference (DESIGN.md section 6):
#   1. $TM_FT_PYTHON, when set;
#   2. python3.14t or python3.13t on PATH;
#   3. a build cached in $TM_CACHE/python3.13t from an earlier run;
#   4. a fresh build from Debian's python3.13 source package, fetched through a private
#      sources list for the release that carries it (trixie), with --disable-gil.
# All build output goes to stderr so that stdout carries only the interpreter's path.
set -euo pipefail

cache="${TM_CACHE:-$HOME/.cache/tm-reactor}"
prefix="$cache/python3.13t"
source_release="${TM_FT_DEBIAN_RELEASE:-trixie}"

is_free_threaded() {
  "$1" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)' 2>/dev/null
}

if [[ -n "${TM_FT_PYTHON:-}" ]]; then
  is_free_threaded "$TM_FT_PYTHON" || { echo "TM_FT_PYTHON=$TM_FT_PYTHON is not a free-threaded CPython" >&2; exit 1; }
  echo "$TM_FT_PYTHON"; exit 0
fi
for candidate in python3.14t python3.13t; do
  if path=$(command -v "$candidate") && is_free_threaded "$path"; then echo "$path"; exit 0; fi
done
if [[ -x "$prefix/bin/python3.13t" ]] && is_free_threaded "$prefix/bin/python3.13t"; then
  echo "$prefix/bin/python3.13t"; exit 0
fi

exec 3>&1 1>&2   # everything below is build chatter: keep it off stdout
echo "== building a free-threaded CPython 3.13 into $prefix (about 10 minutes on 2 cores)"
work="$cache/build-python3.13t"
rm -rf "$work"; mkdir -p "$work/apt/lists/partial" "$work/src"

# A private apt configuration: the system's own mirror (read from its sources, never written
# here), the release that carries python3.13, source packages only. The system's lists are untouched.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[[ -n "$mirror" ]] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[[ -n "$mirror" ]] || { echo "cannot find the Debian mirror in the system's apt sources" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $mirror $source_release main" > "$work/apt/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "Dir::State::Lists=$work/apt/lists" -o "APT::Sandbox::User=root")
apt-get "${apt_private[@]}" update
(cd "$work/src" && apt-get "${apt_private[@]}" source --download-only python3.13)

# Build the pristine upstream tarball: Debian's patches target Debian's own layout.
orig=$(ls "$work"/src/python3.13_*.orig.tar.* | head -n1)
tar -C "$work/src" -xf "$orig"
srcdir=$(find "$work/src" -maxdepth 1 -type d -name 'Python-3.13*' | head -n1)
cd "$srcdir"
./configure --disable-gil --prefix="$prefix" --with-ensurepip=install >"$work/configure.log"
make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log"; exit 1; }
make install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log"; exit 1; }
rm -rf "$work"
is_free_threaded "$prefix/bin/python3.13t"
echo "$prefix/bin/python3.13t" >&3
