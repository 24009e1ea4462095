#!/bin/bash
# fuse-compare.sh - dafs-fuse next to sshfs and a local pass-through FUSE
# file system, in one run, on the same workloads (issues 3 and 4):
#
#   columns: dafs-fuse -o deleg=on, dafs-fuse -o deleg=off (one dafsd on
#            127.0.0.1 each), sshfs over loopback (a private sshd on
#            127.0.0.1), bench/passthrough over a local directory (it
#            stands in for libfuse's example/passthrough);
#   rows:    sequential 1 MiB write of a SIZE_MB file (dd, conv=fsync),
#            to the disk and to tmpfs;
#            sequential 1 MiB read, server cache cold (drop_caches first)
#            and warm (only the mount's pages dropped, by fadvise);
#            re-read, warm, second open (nothing dropped: what the mount
#            keeps across opens);
#            4 KiB random read IOPS (fio, psync, one job, every block at
#            most once, RR_SECONDS at most);
#            postmark transactions per second (PM_FILES files,
#            PM_TX transactions);
#            create + stat + delete of META_FILES files (bench/meta-bench,
#            whole cycles per second).
#
# The file rows run on a backing directory on disk (BIG_DIR, default
# /var/tmp), so "cold" means read from the disk; the small-file rows on
# one on tmpfs (SMALL_DIR, default /dev/shm), so that the file systems
# compared, not the disk's journal, set the pace. Each column mounts each
# in turn.
#
# ROUNDS=N runs every column N times, round by round, each round starting
# with the next column, and reports the median of each figure.
#
# Environment (defaults are the issues' figures):
#   SIZE_MB=1024 PM_FILES=200 PM_TX=60000 META_FILES=10000 RR_SECONDS=15
#   ROUNDS=1                                  rounds (medians)
#   FS="dafs-on dafs-off sshfs passthrough"  the columns to run
#   DAFS_BUILD=build-release                  build directory (release)
#   BIG_DIR=/var/tmp SMALL_DIR=/dev/shm
#   FC_LOGS=DIR                  keep the daemons' logs and outputs there
# Quick run: SIZE_MB=256 PM_TX=10000 META_FILES=2000 RR_SECONDS=5 ./bench/fuse-compare.sh
#
# Needs root (drop_caches, the private sshd, the readahead of dafs-fuse)
# and /dev/fuse. Installs sshfs, openssh-server and fio if missing
# (scripts/deps.sh bench). A column that cannot be set up prints n/a and
# why; the others still run. Everything it starts is stopped by PID and
# every mount is unmounted on exit, failure included.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-1024}
PM_FILES=${PM_FILES:-200}
PM_TX=${PM_TX:-60000}
META_FILES=${META_FILES:-10000}
RR_SECONDS=${RR_SECONDS:-15}
ROUNDS=${ROUNDS:-1}
FS=${FS:-dafs-on dafs-off sshfs passthrough}
BIG_DIR=${BIG_DIR:-/var/tmp}
SMALL_DIR=${SMALL_DIR:-/dev/shm}
bdir=${DAFS_BUILD:-build-release}
case $bdir in /*) b=$bdir ;; *) b=$top/$bdir ;; esac

say() { printf '%s\n' "$*"; }
note() { printf '# %s\n' "$*" >&2; }
die() {
	printf 'fuse-compare: %s\n' "$*" >&2
	exit 1
}

[ -c /dev/fuse ] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (fuse3)"
[ "$(id -u)" -eq 0 ] || die "run as root (drop_caches, sshd, readahead)"

"$top/scripts/deps.sh" bench || note "scripts/deps.sh bench failed; going on"
if [ ! -f "$b/build.ninja" ]; then
	"$top/scripts/build.sh" "$b" -Dbuildtype=release || die "build failed"
else
	"$top/scripts/build.sh" "$b" || die "build failed"
fi
for p in src/server/dafsd src/fuse/dafs-fuse bench/passthrough \
	bench/meta-bench; do
	[ -x "$b/$p" ] || die "$b/$p was not built"
done
command -v fio >/dev/null || die "fio is missing (Debian package fio)"

# ---- state, and the cleanup that runs on every exit ----

big=$(mktemp -d "$BIG_DIR/fuse-compare.XXXXXX") || die "mktemp in $BIG_DIR"
small=$(mktemp -d "$SMALL_DIR/fuse-compare.XXXXXX") || {
	rm -rf "$big"
	die "mktemp in $SMALL_DIR"
}
work=$big/work # logs, keys, results, mount points
res=$work/res
mkdir -p "$work" "$res" "$big/data" "$small/data" "$work/mnt"
chmod 755 "$big" "$small" "$big/data" "$small/data"

server_pid= # dafsd, or the private sshd
fs_pid=     # dafs-fuse, sshfs or passthrough
mnt=$work/mnt
made_run_sshd=

mounted() {
	awk -v m="$mnt" '$2 == m {f = 1} END {exit !f}' /proc/mounts
}

unmount() {
	local i=0
	while mounted && [ $i -lt 20 ]; do
		fusermount3 -u "$mnt" 2>/dev/null && break
		sleep 0.5
		i=$((i + 1))
	done
	mounted && umount -l "$mnt" 2>/dev/null
	return 0
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

# the file system's daemon exits by itself once unmounted; else stopped
fs_down() {
	local i=0
	unmount
	if [ -n "$fs_pid" ]; then
		while kill -0 "$fs_pid" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		stop "$fs_pid"
	fi
	fs_pid=
}

cleanup() {
	cd /
	fs_down
	stop "$server_pid"
	server_pid=
	if [ -n "${FC_LOGS:-}" ]; then
		mkdir -p "$FC_LOGS" && cp -r "$work"/*.log "$work"/*.postmark \
			"$work"/*.meta "$res" "$FC_LOGS"/ 2>/dev/null
	fi
	[ -n "$made_run_sshd" ] && rmdir /run/sshd 2>/dev/null
	rm -rf "$big" "$small"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

wait_mount() {
	local i=0
	while [ $i -lt 100 ]; do
		mountpoint -q "$mnt" && return 0
		kill -0 "$fs_pid" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- the servers and mounts of each column ----

# dafsd exporting big/data as "big" and small/data as "small"
dafsd_up() {
	rm -rf "$work/dafs-state" "$work/port"
	mkdir -p "$work/dafs-state"
	"$b/src/server/dafsd" --export "big=$big/data" \
		--export "small=$small/data" --state-dir "$work/dafs-state" \
		--listen tcp://127.0.0.1:0 --port-file "$work/port" \
		>"$work/dafsd.log" 2>&1 &
	server_pid=$!
	local i=0
	while [ ! -s "$work/port" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -s "$work/port" ] || {
		reason="dafsd did not start: $(tail -1 "$work/dafsd.log")"
		return 1
	}
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# a private sshd on 127.0.0.1:$ssh_port, key-only, its own host key and
# config, sftp served in-process
sshd_up() {
	local d=$work/ssh i=0
	command -v sshfs >/dev/null || {
		reason="sshfs is not installed (Debian package sshfs)"
		return 1
	}
	[ -x /usr/sbin/sshd ] || {
		reason="sshd is not installed (Debian package openssh-server)"
		return 1
	}
	rm -rf "$d"
	mkdir -m 700 "$d"
	if ! ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" >/dev/null ||
		! ssh-keygen -q -t ed25519 -N '' -f "$d/id" >/dev/null; then
		reason="ssh-keygen failed"
		return 1
	fi
	cp "$d/id.pub" "$d/authorized_keys"
	ssh_port=$(free_port)
	cat >"$d/sshd_config" <<-EOF
		ListenAddress 127.0.0.1
		Port $ssh_port
		HostKey $d/host_key
		AuthorizedKeysFile $d/authorized_keys
		PidFile none
		UsePAM no
		StrictModes no
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitRootLogin prohibit-password
		Subsystem sftp internal-sftp
		LogLevel ERROR
	EOF
	# sshd wants its privilege separation directory
	if [ ! -d /run/sshd ]; then
		mkdir -m 755 /run/sshd && made_run_sshd=1
	fi
	/usr/sbin/sshd -f "$d/sshd_config" -D -e >"$work/sshd.log" 2>&1 &
	server_pid=$!
	while [ $i -lt 50 ]; do
		ssh -i "$d/id" -p "$ssh_port" -o BatchMode=yes \
			-o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
			"$(id -un)@127.0.0.1" true 2>/dev/null && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.2
		i=$((i + 1))
	done
	reason="sshd did not let us in: $(tail -1 "$work/sshd.log")"
	return 1
}

# mount COLUMN WHICH (big or small) on $mnt; $reason on failure
fs_up() {
	local col=$1 which=$2 dir
	if [ "$which" = big ]; then dir=$big/data; else dir=$small/data; fi
	case $col in
	dafs-on | dafs-off)
		"$b/src/fuse/dafs-fuse" \
			"tcp://127.0.0.1:$(cat "$work/port")/$which" "$mnt" -f \
			-o "deleg=${col#dafs-}" >"$work/$col.$which.log" 2>&1 &
		;;
	sshfs)
		sshfs -f "$(id -un)@127.0.0.1:$dir" "$mnt" \
			-o "IdentityFile=$work/ssh/id,Port=$ssh_port" \
			-o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null \
			-o BatchMode=yes >"$work/$col.$which.log" 2>&1 &
		;;
	passthrough)
		"$b/bench/passthrough" "$dir" "$mnt" -f \
			>"$work/$col.$which.log" 2>&1 &
		;;
	esac
	fs_pid=$!
	if ! wait_mount; then
		reason="$col did not mount: $(tail -1 "$work/$col.$which.log")"
		fs_down
		return 1
	fi
}

# ---- the workloads; each writes its figure to $res/COLUMN.ROW ----

put() { printf '%s\n' "$3" >"$res/$1.$2.$round"; }

# dd_mbs ARGS...: run dd, print MB/s (10^6 bytes) from its own count
dd_mbs() {
	dd "$@" 2>&1 | awk '/copied/ {printf "%.1f\n", $1 / $(NF-3) / 1e6}'
}

drop_all() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

rows_big() {
	local col=$1 f=$mnt/big
	rm -f "$f"
	put "$col" write "$(dd_mbs if=/dev/zero of="$f" bs=1M \
		count="$SIZE_MB" conv=fsync)"
	drop_all
	put "$col" cold "$(dd_mbs if="$f" of=/dev/null bs=1M)"
	# the server's copy stays cached; the mount's pages go
	dd if="$f" iflag=nocache count=0 2>/dev/null
	put "$col" warm "$(dd_mbs if="$f" of=/dev/null bs=1M)"
	put "$col" reread "$(dd_mbs if="$f" of=/dev/null bs=1M)"
	# fio drops the mount's pages first (invalidate=1); without
	# norandommap each block is read at most once
	fio --name=randread --filename="$f" --rw=randread --bs=4k \
		--size="${SIZE_MB}M" --ioengine=psync --invalidate=1 \
		--runtime="$RR_SECONDS" --randrepeat=1 --fallocate=none \
		--output-format=json --output="$work/fio.json" \
		>"$work/fio.log" 2>&1
	put "$col" randread "$(python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
print("%.0f" % j["jobs"][0]["read"]["iops"])' "$work/fio.json" 2>/dev/null)"
	rm -f "$f"
}

rows_small() {
	local col=$1 out
	# the same write, where the server's disk is not the limit
	put "$col" writeshm "$(dd_mbs if=/dev/zero of="$mnt/big" bs=1M \
		count="$SIZE_MB" conv=fsync)"
	rm -f "$mnt/big"
	if command -v postmark >/dev/null; then
		mkdir "$mnt/pm"
		printf '%s\n' "set location $mnt/pm" "set number $PM_FILES" \
			"set transactions $PM_TX" "set seed 42" run quit |
			postmark >"$work/$col.postmark" 2>&1
		put "$col" postmark "$(sed -n \
			's/.*seconds of transactions (\([0-9.]*\) per second).*/\1/p' \
			"$work/$col.postmark")"
		rm -rf "$mnt/pm"
	else
		put "$col" postmark "n/a"
	fi
	mkdir "$mnt/meta"
	out=$("$b/bench/meta-bench" "$mnt/meta" "$META_FILES") || out=
	say "$out" >"$work/$col.meta"
	put "$col" meta "$(say "$out" | awk '{print $NF}')"
	rm -rf "$mnt/meta"
}

rows="write writeshm cold warm reread randread postmark meta"
label() {
	case $1 in
	write) echo "seq write 1 MiB, MB/s" ;;
	writeshm) echo "seq write 1 MiB, tmpfs, MB/s" ;;
	cold) echo "seq read, server cold, MB/s" ;;
	warm) echo "seq read, server warm, MB/s" ;;
	reread) echo "re-read, second open, MB/s" ;;
	randread) echo "random read 4 KiB, IOPS" ;;
	postmark) echo "postmark, transactions/s" ;;
	meta) echo "create+stat+delete, files/s" ;;
	esac
}

run_column() {
	local col=$1 which t0=$SECONDS
	reason=
	rm -f "$res/$col.reason"
	case $col in
	dafs-on | dafs-off) dafsd_up || return 1 ;;
	sshfs) sshd_up || return 1 ;;
	passthrough) ;;
	*)
		reason="unknown column"
		return 1
		;;
	esac
	for which in big small; do
		fs_up "$col" "$which" || return 1
		if [ $which = big ]; then rows_big "$col"; else rows_small "$col"; fi
		if [ "$col" != sshfs ] && [ "$col" != passthrough ]; then
			kill -USR1 "$fs_pid" 2>/dev/null
			sleep 0.2
		fi
		fs_down
	done
	stop "$server_pid"
	server_pid=
	note "round $round: $col done in $((SECONDS - t0)) s"
}

note "fuse-compare: $SIZE_MB MiB file in $big, small files in $small;" \
	"postmark $PM_FILES files $PM_TX transactions; $META_FILES files"
read -r -a cols <<<"$FS"
round=0
while [ $round -lt "$ROUNDS" ]; do
	round=$((round + 1))
	i=0
	while [ $i -lt ${#cols[@]} ]; do
		col=${cols[$(((i + round - 1) % ${#cols[@]}))]}
		i=$((i + 1))
		if ! run_column "$col"; then
			note "round $round: $col: n/a: $reason"
			say "round $round: $reason" >"$res/$col.reason"
			fs_down
			stop "$server_pid"
			server_pid=
		fi
	done
done

# ---- the table ----

# the median of a figure over the rounds that produced it, or n/a
val() {
	cat "$res/$1.$2".* 2>/dev/null | grep -E '^[0-9.]+$' | sort -n |
		awk '{v[NR] = $1} END {
			if (NR == 0) print "n/a";
			else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A/B with two decimals, or n/a
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
		else printf "%.2fx\n", a / b }'
}

say ""
say "# fuse-compare: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
	"$SIZE_MB MiB file, postmark $PM_FILES/$PM_TX, $META_FILES files," \
	"$ROUNDS round(s), medians"
say ""
say "| row | dafs deleg=on | dafs deleg=off | sshfs | passthrough |" \
	"on/sshfs | off/sshfs | on/pt | off/pt | on/off |"
say "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for r in $rows; do
	on=$(val dafs-on "$r")
	off=$(val dafs-off "$r")
	ss=$(val sshfs "$r")
	pt=$(val passthrough "$r")
	say "| $(label "$r") | $on | $off | $ss | $pt |" \
		"$(ratio "$on" "$ss") | $(ratio "$off" "$ss") |" \
		"$(ratio "$on" "$pt") | $(ratio "$off" "$pt") |" \
		"$(ratio "$on" "$off") |"
done
for col in $FS; do
	[ -f "$res/$col.reason" ] && say "" && say "$col: n/a: $(cat "$res/$col.reason")"
done

# ---- the targets ----

# target TEXT A B MIN: met/missed/n/a for A/B >= MIN
target() {
	local v
	v=$(awk -v a="$2" -v b="$3" -v m="$4" 'BEGIN {
		if (a == "n/a" || b == "n/a" || b + 0 == 0) { print "n/a"; exit }
		printf "%s (%.2fx)\n", (a / b >= m ? "met" : "MISSED"), a / b }')
	say "- $1: $v"
}

say ""
say "Targets (ratios of this run):"
for col in dafs-on dafs-off; do
	for r in $rows; do
		target "issue 3, $col >= 2x sshfs, $r" "$(val $col "$r")" \
			"$(val sshfs "$r")" 2
	done
	for r in cold warm; do
		target "issue 3, $col seq read $r >= 70% passthrough" \
			"$(val $col "$r")" "$(val passthrough "$r")" 0.7
	done
done
target "issue 4, re-read under a read delegation >= 90% passthrough" \
	"$(val dafs-on reread)" "$(val passthrough reread)" 0.9
target "issue 4, postmark deleg=on >= 2x deleg=off" \
	"$(val dafs-on postmark)" "$(val dafs-off postmark)" 2
