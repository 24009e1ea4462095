#!/bin/sh
# run-fuzz.sh SECONDS - fuzz the wire decoder (fuzz_wire.c) for SECONDS.
#
# Builds the target with clang's libFuzzer, ASan and UBSan into its own
# directory and fuzzes a copy of test/fuzz/corpus (the checked-in seeds are
# never modified). On a finding the run directory is kept with the crashing
# input and the command that reproduces it; on success it is removed unless
# FUZZ_KEEP=1 (its corpus/ then holds what the run discovered).
#
# Environment: CLANG (default clang), FUZZ_BUILD_DIR (default
# ${TMPDIR:-/tmp}/dafs-fuzz.UID), FUZZ_KEEP.
# Exit status: 0 clean; 77 (skip) when clang or its libFuzzer is missing;
# 1 on a finding or a build failure.
set -eu

usage() {
	echo "usage: run-fuzz.sh SECONDS" >&2
	exit 2
}
[ $# -eq 1 ] || usage
secs=$1
case $secs in '' | *[!0-9]*) usage ;; esac

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cc=${CLANG:-clang}
out=${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/dafs-fuzz.$(id -u)}
mkdir -p "$out"

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "run-fuzz.sh: SKIP: '$cc' not found; install clang (with" \
	     "libFuzzer) or set CLANG" >&2
	exit 77
fi
probe="$out/probe.$$"
printf '%s\n' 'int LLVMFuzzerTestOneInput(const unsigned char *d,' \
	'unsigned long n) { (void)d; (void)n; return 0; }' >"$probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" \
	>"$probe.log" 2>&1; then
	echo "run-fuzz.sh: SKIP: '$cc' cannot link -fsanitize=fuzzer" \
	     "(libFuzzer missing):" >&2
	sed 's/^/  /' "$probe.log" >&2
	rm -f "$probe" "$probe.c" "$probe.log"
	exit 77
fi
rm -f "$probe" "$probe.c" "$probe.log"

# Build to a private name and rename: concurrent runs share $out.
bin="$out/fuzz_wire"
"$cc" -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I"$src/include" -I"$src/src" \
	"$src/src/proto/wire.c" "$here/fuzz_wire.c" -o "$bin.$$"
mv -f "$bin.$$" "$bin"

run=$(mktemp -d "$out/run.XXXXXX")
mkdir "$run/corpus" "$run/crashes"
cp "$here"/corpus/* "$run/corpus/"
echo "run-fuzz.sh: fuzzing for ${secs}s in $run"
status=0
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	-max_len=8192 -print_final_stats=1 \
	-artifact_prefix="$run/crashes/" "$run/corpus" || status=$?

if [ "$status" -ne 0 ] || [ -n "$(ls "$run/crashes")" ]; then
	echo "run-fuzz.sh: FINDING (status $status); kept $run" >&2
	for f in "$run"/crashes/*; do
		[ -e "$f" ] && echo "  reproduce: $bin $f" >&2
	done
	exit 1
fi
if [ "${FUZZ_KEEP:-0}" = 1 ]; then
	echo "run-fuzz.sh: clean; corpus kept in $run/corpus"
else
	rm -rf "$run"
	echo "run-fuzz.sh: clean"
fi
