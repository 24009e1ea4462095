# lib.sh - helpers for the mount suite's scripts (sourced, not run): TAP
# lines, a dafsd and a dafs-fuse of the script's own started and stopped
# by PID, and a cleanup that runs on every exit.
#
# The script sets $DAFSD and $DAFS_FUSE, sources this file, calls
# require_fuse, mount_setup NAME, start_dafsd, mount_fuse. Everything
# lives under $tmp (removed at exit): $exp (the export), $state, $mnt,
# $src (local files to compare with).
#
# test/tools/cli.sh sources it too, for everything but the FUSE helpers
# (with nothing mounted, cleanup's unmount does nothing).

failures=0
checks=0
dafsd_pid=
fuse_pid=
tmp=

say() { printf '%s\n' "$*"; }

ok() {
	checks=$((checks + 1))
	say "ok $checks - $1"
}

not_ok() {
	checks=$((checks + 1))
	failures=$((failures + 1))
	say "not ok $checks - $1"
}

# check DESCRIPTION COMMAND...: run it, count a failure if it fails
check() {
	local what=$1
	shift
	if "$@"; then
		ok "$what"
	else
		not_ok "$what"
	fi
}

# same DESCRIPTION EXPECTED ACTUAL
same() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1 (expected '$2', got '$3')"
	fi
}

# now_ms: milliseconds of uptime (busybox's date has no %N)
now_ms() {
	awk '{printf "%d\n", $1 * 1000}' /proc/uptime
}

# elapsed: seconds since the script started, for the section headers
section() {
	say "# ---- $* (at ${SECONDS}s)"
}

require_fuse() {
	if [ ! -c /dev/fuse ]; then
		echo "SKIP: /dev/fuse is missing (no FUSE in this kernel or container)"
		exit 77
	fi
	if ! command -v fusermount3 >/dev/null; then
		echo "SKIP: fusermount3 is missing (Debian package fuse3)"
		exit 77
	fi
}

sanitizer_free() {
	! grep -E -q 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer' "$1"
}

# From /proc/mounts, not mountpoint(1): that stats the mount, which fails
# once the server is gone.
mounted() {
	awk -v m="$mnt" '$2 == m {found = 1} END {exit !found}' /proc/mounts
}

unmount() {
	if mounted; then
		fusermount3 -u "$mnt" 2>/dev/null ||
			{ sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } ||
			umount -l "$mnt" 2>/dev/null
	fi
}

# exit_status PID: wait up to 30 s for PID (a child of this shell) to
# exit; its status in $status ("hung" if it did not exit)
exit_status() {
	local i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$1" 2>/dev/null; then
		status=hung
		return
	fi
	wait "$1"
	status=$?
}

# stop PID: SIGTERM, wait up to 10 s, then SIGKILL
stop() {
	local pid=$1 i=0
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

# the EXIT trap: unmount, stop both daemons by PID, scan their logs,
# remove $tmp, exit 1 if any check failed or the script stopped early
# (set -u, a failed command it could not go on without): [STATUS] is the
# script's exit status, for traps that run commands first
cleanup() {
	local rc=${1:-$?}
	cd /
	if [ "$rc" -ne 0 ] && [ $failures -eq 0 ]; then
		say "not ok - the script stopped early, status $rc"
		failures=1
	fi
	[ -n "$tmp" ] || exit 1
	unmount
	stop "$fuse_pid"
	stop "$dafsd_pid"
	for log in "$tmp/dafsd.log" "$tmp/fuse.log"; do
		if [ -f "$log" ] && ! sanitizer_free "$log"; then
			say "# sanitizer report in $log:"
			sed 's/^/# /' "$log" | head -60
			failures=$((failures + 1))
		fi
	done
	rm -rf "$tmp"
	if [ $failures -ne 0 ]; then
		say "# $failures of $checks checks failed"
		exit 1
	fi
	say "# all $checks checks passed in ${SECONDS}s"
	exit 0
}

# mount_setup NAME: the directories under a new $tmp, and the traps
mount_setup() {
	tmp=$(mktemp -d "${DAFS_TEST_TMP:-/tmp}/dafs-$1.XXXXXX")
	# an unprivileged user must reach the mount point
	chmod 755 "$tmp"
	exp=$tmp/export
	state=$tmp/state
	mnt=$tmp/mnt
	src=$tmp/src
	mkdir -p "$exp" "$state" "$mnt" "$src"
	trap cleanup EXIT
	trap 'exit 1' INT TERM
}

# start_dafsd [OPTION...]: a dafsd exporting $exp as "data" on a free
# port of $DAFS_IT_LISTEN (default tcp://127.0.0.1; scripts/rdma-tests.sh
# sets an rdma:// address), with the options given; sets $dafsd_pid and
# $url, or exits
listen=${DAFS_IT_LISTEN:-tcp://127.0.0.1}
start_dafsd() {
	"$DAFSD" --export "data=$exp" --state-dir "$state" \
		--listen "$listen:0" --port-file "$tmp/port" "$@" \
		>"$tmp/dafsd.log" 2>&1 &
	dafsd_pid=$!
	for _ in $(seq 100); do
		[ -s "$tmp/port" ] && break
		sleep 0.1
	done
	if [ ! -s "$tmp/port" ]; then
		say "# dafsd did not start:"
		sed 's/^/# /' "$tmp/dafsd.log"
		failures=1
		exit 1
	fi
	url=$listen:$(cat "$tmp/port")/data
}

# mount_fuse [OPTION...]: dafs-fuse -f $url $mnt OPTION...; sets
# $fuse_pid; returns 1 (with the log) if it did not mount
mount_fuse() {
	"$DAFS_FUSE" "$url" "$mnt" -f "$@" >"$tmp/fuse.log" 2>&1 &
	fuse_pid=$!
	for _ in $(seq 100); do
		mountpoint -q "$mnt" && break
		kill -0 "$fuse_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! mountpoint -q "$mnt"; then
		say "# dafs-fuse did not mount:"
		sed 's/^/# /' "$tmp/fuse.log"
		return 1
	fi
}

# inodes: ask dafs-fuse (SIGUSR1) for its statistics line, print the
# inode count
inodes() {
	stat_of "$fuse_pid" "$tmp/fuse.log" inodes
}

# stat_of PID LOG FIELD: FIELD's number in the next statistics line that
# dafs-fuse PID writes to LOG (SIGUSR1; up to 5 s)
stat_of() {
	local before i=0
	before=$(grep -c 'inodes [0-9]' "$2")
	kill -USR1 "$1"
	while [ "$(grep -c 'inodes [0-9]' "$2")" -le "$before" ] &&
		[ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	grep -o "$3 [0-9]*" "$2" | tail -1 | awk '{print $NF}'
}

# heap: dafs-fuse's malloc bytes in use, from the statistics line that
# the last inodes call asked for
heap() {
	grep -o 'heap in use [0-9]*' "$tmp/fuse.log" | tail -1 |
		awk '{print $NF}'
}

# rss: dafs-fuse's resident set in kB
rss() {
	awk '/^VmRSS/ {print $2}' "/proc/$fuse_pid/status"
}
