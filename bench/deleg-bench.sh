#!/bin/bash
# deleg-bench.sh - what delegations save, at several network round trips:
# postmark through dafs-fuse with delegations on and off, in one run, over
# dafsd on 127.0.0.1 with an emulated round trip (dafsd --delay-us: each
# request waits that long before it is handled), beside a local
# pass-through FUSE file system that lets the kernel cache as dafs-fuse
# does under a delegation (bench/passthrough --cached): the most a FUSE
# client can do on this machine without any network (docs/benchmarks.md).
#
#   columns: on      dafs-fuse -o deleg=on (the defaults)
#            on-cb   dafs-fuse -o deleg=on,close_behind_us=CB_US: close
#                    answered before its write-back once write-backs take
#                    CB_US or more (docs/delegations.md)
#            off     dafs-fuse -o deleg=off
#            local   bench/passthrough --cached over a local directory
#                    (measured with the first delay only: no network)
#   rows:    one per delay: the getattr round trip measured (dafs-lat),
#            postmark transactions/s of each column, and on/off,
#            on-cb/off, local/off.
#
# Environment:
#   DELAYS="0 100 200"  emulated round trips, us (0: loopback as it is)
#   ROUNDS=3            rounds, each starting with the next column; medians
#   PM_FILES=200 PM_TX=20000   postmark's files and transactions at delay
#                       0; at a delay D, PM_TX * 20 / (20 + D) (a run
#                       of a few seconds either way)
#   CB_US=50            on-cb's close_behind_us
#   DAFS_BUILD=build-release  SMALL_DIR=/dev/shm
#   DB_LOGS=DIR         keep the daemons' logs there
#
# Needs /dev/fuse and postmark (scripts/deps.sh bench installs it); run as
# root or as a user that may mount FUSE. Everything it starts is stopped by
# PID and every mount is unmounted on exit, failure included.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
DELAYS=${DELAYS:-0 100 200}
ROUNDS=${ROUNDS:-3}
PM_FILES=${PM_FILES:-200}
PM_TX=${PM_TX:-20000}
CB_US=${CB_US:-50}
SMALL_DIR=${SMALL_DIR:-/dev/shm}
bdir=${DAFS_BUILD:-build-release}
case $bdir in /*) b=$bdir ;; *) b=$top/$bdir ;; esac

die() {
	printf 'deleg-bench: %s\n' "$*" >&2
	exit 1
}

[ -c /dev/fuse ] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (fuse3)"
"$top/scripts/deps.sh" bench >&2 || printf '# deps.sh bench failed\n' >&2
command -v postmark >/dev/null || die "postmark is missing (Debian package)"
if [ ! -f "$b/build.ninja" ]; then
	"$top/scripts/build.sh" "$b" -Dbuildtype=release || die "build failed"
else
	"$top/scripts/build.sh" "$b" || die "build failed"
fi
for p in src/server/dafsd src/fuse/dafs-fuse bench/passthrough \
	bench/dafs-lat; do
	[ -x "$b/$p" ] || die "$b/$p was not built"
done

work=$(mktemp -d "$SMALL_DIR/deleg-bench.XXXXXX") || die "mktemp"
mnt=$work/mnt
mkdir -p "$mnt" "$work/data" "$work/local" "$work/res"
server_pid=
fs_pid=

mounted() {
	awk -v m="$mnt" '$2 == m {f = 1} END {exit !f}' /proc/mounts
}

# stop PID: SIGTERM, up to 10 s, then SIGKILL; reaps it (our child)
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
	return 0
}

fs_down() {
	local i=0
	while mounted && [ $i -lt 20 ]; do
		fusermount3 -u "$mnt" 2>/dev/null && break
		sleep 0.5
		i=$((i + 1))
	done
	mounted && umount -l "$mnt" 2>/dev/null
	stop "$fs_pid"
	fs_pid=
}

cleanup() {
	local rc=$?
	fs_down
	stop "$server_pid"
	if [ -n "${DB_LOGS:-}" ]; then
		mkdir -p "$DB_LOGS" && cp "$work"/*.log "$DB_LOGS"/ 2>/dev/null
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# server_up DELAY: a dafsd exporting $work/data as "data"
server_up() {
	stop "$server_pid"
	rm -f "$work/port"
	"$b/src/server/dafsd" --delay-us "$1" --export "data=$work/data" \
		--state-dir "$work/state" --listen tcp://127.0.0.1:0 \
		--port-file "$work/port" >"$work/dafsd.$1.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		[ -s "$work/port" ] && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.05
	done
	die "dafsd did not start: $(tail -1 "$work/dafsd.$1.log")"
}

# fs_up COLUMN DELAY: mount COLUMN on $mnt
fs_up() {
	local url=tcp://127.0.0.1:$(cat "$work/port")/data
	local cmd
	case $1 in
	on) cmd=("$b/src/fuse/dafs-fuse" "$url" "$mnt" -f -o deleg=on) ;;
	on-cb) cmd=("$b/src/fuse/dafs-fuse" "$url" "$mnt" -f
		-o "deleg=on,close_behind_us=$CB_US") ;;
	off) cmd=("$b/src/fuse/dafs-fuse" "$url" "$mnt" -f -o deleg=off) ;;
	local) cmd=("$b/bench/passthrough" "$work/local" "$mnt" -f --cached) ;;
	esac
	# started as a plain command, so that $! is the daemon itself
	"${cmd[@]}" >"$work/$1.$2.log" 2>&1 &
	fs_pid=$!
	for _ in $(seq 100); do
		mountpoint -q "$mnt" && return 0
		kill -0 "$fs_pid" 2>/dev/null || break
		sleep 0.1
	done
	die "$1 did not mount: $(tail -1 "$work/$1.$2.log")"
}

# postmark TX: transactions/s over the wall clock (postmark's own figure
# counts whole seconds)
pm() {
	local t0 t1
	mkdir "$mnt/pm"
	t0=$(date +%s.%N)
	printf '%s\n' "set location $mnt/pm" "set number $PM_FILES" \
		"set transactions $1" "set seed 42" run quit |
		postmark >"$work/pm.out" 2>&1 || die "postmark failed"
	t1=$(date +%s.%N)
	rm -rf "$mnt/pm"
	awk -v a="$t0" -v b="$t1" -v n="$1" 'BEGIN {printf "%.0f", n / (b - a)}'
}

median() {
	sort -n | awk '{v[NR] = $1} END {
		if (!NR) print "n/a"
		else if (NR % 2) print v[(NR + 1) / 2]
		else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

first=${DELAYS%% *}
for d in $DELAYS; do
	server_up "$d"
	touch "$work/data/lat"
	"$b/bench/dafs-lat" "tcp://127.0.0.1:$(cat "$work/port")/data/lat" \
		2000 | awk '{print $2}' >"$work/res/rtt.$d"
	tx=$((PM_TX * 20 / (20 + d)))
	cols="on on-cb off"
	[ "$d" = "$first" ] && cols="$cols local"
	set -- $cols
	n=$#
	for r in $(seq "$ROUNDS"); do
		for i in $(seq 0 $((n - 1))); do
			set -- $cols
			shift $(((i + r) % n))
			c=$1
			fs_up "$c" "$d"
			pm "$tx" >>"$work/res/$c.$d"
			echo >>"$work/res/$c.$d"
			fs_down
		done
	done
done

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "n/a" || b == "n/a" || b == 0) print "n/a"
		else printf "%.2fx\n", a / b}'
}
printf '# postmark %s files, %s transactions at delay 0, medians of %s rounds\n' \
	"$PM_FILES" "$PM_TX" "$ROUNDS"
printf '| delay us | getattr us | on tx/s | on-cb tx/s | off tx/s | local tx/s | on/off | on-cb/off | local/off |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for d in $DELAYS; do
	for c in on on-cb off local; do
		if [ -f "$work/res/$c.$d" ]; then
			eval "m_${c//-/_}=$(median <"$work/res/$c.$d")"
		else
			eval "m_${c//-/_}=n/a"
		fi
	done
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$d" \
		"$(cat "$work/res/rtt.$d")" "$m_on" "$m_on_cb" "$m_off" \
		"$m_local" "$(ratio "$m_on" "$m_off")" \
		"$(ratio "$m_on_cb" "$m_off")" "$(ratio "$m_local" "$m_off")"
done
