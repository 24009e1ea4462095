#!/bin/sh
# run.sh [stop] - the README's first command: install what is missing,
# build, start dafsd on 127.0.0.1 exporting a default folder, and show it.
#
#   DAFS_EXPORT  folder to export   (default ~/.local/share/dafs/export)
#   DAFS_PORT    TCP port           (default 4820)
#   ./scripts/run.sh stop           stops the dafsd this script started
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}/dafs
export_dir=${DAFS_EXPORT:-$data/export}
state=$data/state
port=${DAFS_PORT:-4820}
pidfile=$data/dafsd.pid
log=$data/dafsd.log
url=tcp://127.0.0.1:$port/data

stop() {
	if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		kill "$(cat "$pidfile")"
		# wait up to 5 s for a clean exit
		i=0
		while kill -0 "$(cat "$pidfile")" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		echo "dafs: stopped dafsd (pid $(cat "$pidfile"))"
	else
		echo "dafs: no dafsd started by this script is running"
	fi
	rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
	stop
	exit 0
fi

"$top/scripts/deps.sh"
"$top/scripts/build.sh" build

mkdir -p "$export_dir" "$state"
if [ -z "$(ls -A "$export_dir")" ]; then
	cat >"$export_dir/README.txt" <<TXT
This folder is exported by dafsd as "data" on $url.
Files you put here are visible to DAFS clients.
TXT
	mkdir -p "$export_dir/examples"
	echo "hello from dafs" >"$export_dir/examples/hello.txt"
fi

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "dafs: dafsd already running (pid $(cat "$pidfile")); restarting"
	stop
fi

"$top/build/src/server/dafsd" --export "data=$export_dir" \
	--state-dir "$state" --listen "tcp://127.0.0.1:$port" -v \
	>"$log" 2>&1 &
echo $! >"$pidfile"

# wait until it answers
i=0
until "$top/build/src/tools/dafs" stat "$url" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 50 ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		echo "dafs: dafsd did not start; its log ($log):" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.1
done

echo "dafs: dafsd (pid $(cat "$pidfile")) serves $export_dir as $url"
echo "dafs: listing of $url:"
"$top/build/src/tools/dafs" ls -l "$url"
cat <<MSG

  Use it:   build/src/tools/dafs get $url/README.txt -
            build/src/tools/dafs put FILE $url/FILE
  Log:      $log
  Stop:     ./scripts/run.sh stop      (or: kill $(cat "$pidfile"))
MSG
