#!/bin/bash
# test.sh - the README's second command: install what is missing, build
# with gcc and with clang + ASan+UBSan (warnings are errors in both), and
# run every test in both builds. Exit status 0 only if all pass.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/deps.sh"

# gcc for the plain build, clang for the sanitized one: every run proves
# both compilers warning-free
"$top/scripts/build.sh" build -Dwerror=true
CC=clang "$top/scripts/build.sh" build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false -Dwerror=true

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== tests (gcc build) =="
meson test -C build --print-errorlogs | tee -a "$log" || status=1
echo "== tests (ASan+UBSan build) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs --no-suite fuzz |
	tee -a "$log" || status=1
# The verbs transport over a real RDMA device, or over Soft-RoCE in a VM
# (scripts/rdma-tests.sh; docs/transport-verbs.md). A step of its own, not
# a meson test: it may boot a VM that wants both cores for minutes, so it
# must not run beside the other tests, and it runs the gcc build's
# binaries only (no sanitizers under emulation). Counted as one test
# below; 77 = skipped (no device and no VM).
echo "== verbs transport (scripts/rdma-tests.sh) =="
rstatus=0
"$top/scripts/rdma-tests.sh" build 2>&1 | tee -a "$log" || rstatus=${PIPESTATUS[0]}
case $rstatus in
0) echo "Ok: 1" >>"$log" ;;
77) echo "Skipped: 1" >>"$log" ;;
*) echo "Fail: 1" >>"$log"; status=1 ;;
esac
# one closing line over both builds (meson prints a summary per build)
awk '/^Ok:/ {ok += $2} /^Fail:/ {f += $2} /^Timeout:/ {f += $2}
	/^Unexpected Pass:/ {f += $3} /^Skipped:/ {sk += $2}
	END {printf "tests: %d passed, %d failed, %d skipped\n", ok, f, sk}' "$log"
exit $status
