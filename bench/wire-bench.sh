#!/bin/sh
# wire-bench.sh [ROUNDS] - the figures of the wire issue, measured in one run
# and compared with references measured in the same run:
#
#   - dafs-bench sequential read and write MB/s of a 1 GiB file in the
#     server's page cache (the export is on tmpfs), depth 8, blocks 4 KiB,
#     64 KiB and 1 MiB, next to raw single-stream loopback TCP bandwidth;
#   - the round trip of a getattr next to a raw TCP ping-pong of the same
#     message sizes, both blocking (pingpong) and polling like dafs's own
#     completion wait (spinpong, the strict reference).
#
# Loopback figures on a shared 2-core machine swing by 2x between runs, so
# every figure is measured ROUNDS times (default 9), interleaved with its
# reference, and the median is reported. Starts one dafsd on 127.0.0.1 and
# stops it by PID.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-9}
b=$top/build
"$top/scripts/build.sh" build

shm=${DAFS_BENCH_DIR:-/dev/shm}
work=$(mktemp -d "$shm/dafs-bench.XXXXXX")
state=$(mktemp -d /tmp/dafs-bench-state.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work" "$state"
}
trap cleanup EXIT INT TERM

mkdir "$work/export"
"$b/src/server/dafsd" --export "data=$work/export" --state-dir "$state" \
	--listen tcp://127.0.0.1:0 --port-file "$state/port" \
	>"$state/log" 2>&1 &
pid=$!
i=0
while [ ! -s "$state/port" ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && { cat "$state/log"; exit 1; }
	sleep 0.05
done
url=tcp://127.0.0.1:$(cat "$state/port")/data

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

: >"$state/tcp" ; : >"$state/pp" ; : >"$state/sp"
for blk in 4K 64K 1M; do : >"$state/w$blk"; : >"$state/r$blk"; : >"$state/c$blk"; done
: >"$state/lat"

# the file is written once, so every round reads and overwrites a file
# that is already in the page cache
"$b/src/tools/dafs-bench" -w -b 1M -s 1G "$url/big" >/dev/null

r=0
while [ $r -lt "$rounds" ]; do
	r=$((r + 1))
	"$b/bench/tcp-baseline" stream 1024 1048576 | awk '{print $3}' >>"$state/tcp"
	for blk in 4K 64K 1M; do
		"$b/src/tools/dafs-bench" -rw -b $blk -s 1G --server-pid $pid \
			"$url/big" >"$state/out"
		awk '$1=="write" {print $3}' "$state/out" >>"$state/w$blk"
		awk '$1=="read" {print $3}' "$state/out" >>"$state/r$blk"
		awk '$1=="read" {print $5}' "$state/out" >>"$state/c$blk"
	done
	lat=$("$b/bench/dafs-lat" "$url/big" 20000)
	echo "$lat" | awk '{print $2}' >>"$state/lat"
	req=$(echo "$lat" | awk '{print $4}')
	rep=$(echo "$lat" | awk '{print $5}')
	"$b/bench/tcp-baseline" pingpong "$req" "$rep" 20000 |
		awk '{print $4}' >>"$state/pp"
	"$b/bench/tcp-baseline" spinpong "$req" "$rep" 20000 |
		awk '{print $4}' >>"$state/sp"
done

tcp=$(median <"$state/tcp")
echo "# wire bench: $rounds rounds, medians; 1 GiB file on tmpfs; depth 8"
printf '%-26s %10s %10s\n' figure value "vs ref"
printf '%-26s %10.1f %10s\n' "raw TCP stream MB/s" "$tcp" "ref"
for blk in 4K 64K 1M; do
	w=$(median <"$state/w$blk")
	rd=$(median <"$state/r$blk")
	c=$(median <"$state/c$blk")
	printf '%-26s %10.1f %9.0f%%\n' "dafs write $blk MB/s" "$w" \
		"$(echo "$w $tcp" | awk '{print 100*$1/$2}')"
	printf '%-26s %10.1f %9.0f%%\n' "dafs read $blk MB/s" "$rd" \
		"$(echo "$rd $tcp" | awk '{print 100*$1/$2}')"
	printf '%-26s %10.3f\n' "server CPU s/GB read $blk" "$c"
done
pp=$(median <"$state/pp")
sp=$(median <"$state/sp")
lat=$(median <"$state/lat")
printf '%-26s %10.1f %10s\n' "raw TCP ping-pong us" "$pp" "ref"
printf '%-26s %10.1f %10s\n' "raw TCP spin-pong us" "$sp" "ref"
printf '%-26s %10.1f %9.2fx %6.2fx\n' "dafs getattr us" "$lat" \
	"$(echo "$lat $pp" | awk '{print $1/$2}')" \
	"$(echo "$lat $sp" | awk '{print $1/$2}')"
