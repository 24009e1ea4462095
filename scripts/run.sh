#!/bin/sh
# run.sh [stop] - the README's first command: install what is missing,
# build, start dafsd on 127.0.0.1 exporting a default folder, mount it with
# dafs-fuse, and show it.
#
#   DAFS_EXPORT  folder to export   (default ~/.local/share/dafs/export)
#   DAFS_PORT    TCP port           (default 4820)
#   DAFS_MOUNT   mount point        (default ~/dafs-mnt)
#   ./scripts/run.sh stop           unmounts, and stops the dafs-fuse and
#                                   dafsd this script started (by PID)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}/dafs
export_dir=${DAFS_EXPORT:-$data/export}
state=$data/state
port=${DAFS_PORT:-4820}
pidfile=$data/dafsd.pid
log=$data/dafsd.log
url=tcp://127.0.0.1:$port/data
mnt=${DAFS_MOUNT:-$HOME/dafs-mnt}
fusepid=$data/dafs-fuse.pid
fuselog=$data/dafs-fuse.log

# mounted: is $mnt in /proc/mounts (without touching the mount itself,
# which hangs or fails when the server is gone)
mounted() {
	awk -v m="$mnt" '$2 == m {f = 1} END {exit !f}' /proc/mounts
}

unmount() {
	if mounted; then
		fusermount3 -u "$mnt" 2>/dev/null ||
			umount "$mnt" 2>/dev/null ||
			umount -l "$mnt" 2>/dev/null || true
		echo "dafs: unmounted $mnt"
	fi
	if [ -f "$fusepid" ] && kill -0 "$(cat "$fusepid")" 2>/dev/null; then
		# it exits by itself once unmounted; SIGTERM if it has not
		i=0
		while kill -0 "$(cat "$fusepid")" 2>/dev/null && [ $i -lt 30 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill "$(cat "$fusepid")" 2>/dev/null || true
		echo "dafs: stopped dafs-fuse (pid $(cat "$fusepid"))"
	fi
	rm -f "$fusepid"
}

stop() {
	unmount
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
else
	unmount
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

# mount it, unless this machine has no FUSE
mount_msg="not mounted: no /dev/fuse here"
if [ -c /dev/fuse ] && [ -x "$top/build/src/fuse/dafs-fuse" ]; then
	mkdir -p "$mnt"
	# -f under setsid: the PID is known, the log is a file, and closing
	# the terminal does not unmount
	setsid "$top/build/src/fuse/dafs-fuse" "$url" "$mnt" -f \
		>"$fuselog" 2>&1 </dev/null &
	echo $! >"$fusepid"
	i=0
	until mounted && mountpoint -q "$mnt"; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$(cat "$fusepid")" 2>/dev/null; then
			echo "dafs: dafs-fuse did not mount; its log ($fuselog):" >&2
			cat "$fuselog" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "dafs: dafs-fuse (pid $(cat "$fusepid")) mounts $url on $mnt"
	echo "dafs: ls -l $mnt:"
	ls -l "$mnt"
	mount_msg="$mnt   (any program: cp, cat, git ...)"
else
	[ -x "$top/build/src/fuse/dafs-fuse" ] ||
		mount_msg="not mounted: dafs-fuse was not built (no libfuse3-dev)"
	echo "dafs: listing of $url:"
	"$top/build/src/tools/dafs" ls -l "$url"
fi
cat <<MSG

  Mounted:  $mount_msg
  Use it:   build/src/tools/dafs get $url/README.txt -
            build/src/tools/dafs put FILE $url/FILE
  Logs:     $log
            $fuselog
  Stop:     ./scripts/run.sh stop      (unmounts $mnt, stops both)
MSG
