#!/bin/sh
# test.sh - the README's second command: install what is missing, build
# with gcc (warnings are errors) and with ASan+UBSan, and run every test in
# both builds. Exit status 0 only if all pass.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/deps.sh"

"$top/scripts/build.sh" build -Dwerror=true
"$top/scripts/build.sh" build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false -Dwerror=true

status=0
echo "== tests (gcc build) =="
meson test -C build --print-errorlogs || status=1
echo "== tests (ASan+UBSan build) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs --no-suite fuzz ||
	status=1
exit $status
