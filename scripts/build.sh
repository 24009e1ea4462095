#!/bin/sh
# build.sh [DIR [MESON-OPTIONS...]] - configure (once) and build dafs.
# Quiet on success; the whole compiler output on failure.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" "$@" >/dev/null
fi
if ! ninja -C "$dir" >"$dir/ninja.log" 2>&1; then
	cat "$dir/ninja.log" >&2
	exit 1
fi
