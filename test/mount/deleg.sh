#!/bin/bash
# deleg.sh - open delegations seen through two dafs-fuse mounts (two
# processes, two sessions) of one export: a change made on one is seen on
# the other after close and open; the reader's kernel cache is kept across
# opens while it holds a delegation and dropped when it is recalled; a
# write open on one mount recalls the other's delegation; a mount killed
# while holding a write delegation holds the other up for no longer than
# the lease (2 s here) and loses nothing it had written; deleg=off mounts
# get no delegations; dafs-verify through both mounts at once, one model,
# each operation through either mount (a file closed on one before it is
# opened on the other), finds no mismatch. Counters from the SIGUSR1
# statistics line and dafsstat.
#
# Needs $DAFSD and $DAFS_FUSE (meson sets them). Skips (77) without
# /dev/fuse.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

require_fuse
mount_setup deleg
say "TAP version 13"
# a 4 MiB tmpfs exported as "full" (root only), for a write-back error
full=
if [ "$(id -u)" = 0 ] && mkdir -p "$tmp/full" &&
	mount -t tmpfs -o size=4m dafs-test-full "$tmp/full" 2>/dev/null; then
	full=$tmp/full
fi
start_dafsd --lease-ms 2000 --recall-holdoff-ms 200 \
	${full:+--export "full=$full"}
mount_fuse || exit 1
mnt_a=$mnt
fuse_a=$fuse_pid
mnt_b=$tmp/mnt-b
mkdir -p "$mnt_b"
fuse_b=

# the second mount goes first at exit; lib.sh's cleanup does the rest
cleanup_b() {
	local rc=$?
	if awk -v m="$mnt_b" '$2 == m {f = 1} END {exit !f}' /proc/mounts; then
		fusermount3 -u "$mnt_b" 2>/dev/null || umount -l "$mnt_b"
	fi
	stop "$fuse_b"
	if [ -f "$tmp/fuse-b.log" ] && ! sanitizer_free "$tmp/fuse-b.log"; then
		say "# sanitizer report in $tmp/fuse-b.log:"
		sed 's/^/# /' "$tmp/fuse-b.log" | head -60
		failures=$((failures + 1))
	fi
	# detached now; gone once dafsd (which has files open in it) stops
	[ -n "$full" ] && umount -l "$full"
	cleanup "$rc"
}
trap cleanup_b EXIT

# mount_b [OPTION...]: the second dafs-fuse on $mnt_b
mount_b() {
	"$DAFS_FUSE" "$url" "$mnt_b" -f "$@" >"$tmp/fuse-b.log" 2>&1 &
	fuse_b=$!
	for _ in $(seq 100); do
		mountpoint -q "$mnt_b" && break
		kill -0 "$fuse_b" 2>/dev/null || break
		sleep 0.1
	done
	mountpoint -q "$mnt_b"
}
check "two mounts of $url" mount_b

stat_a() { stat_of "$fuse_a" "$tmp/fuse.log" "$1"; }
stat_b() { stat_of "$fuse_b" "$tmp/fuse-b.log" "$1"; }

section "close-to-open across mounts"
echo one >"$mnt_a/f"
same "written on A, read on B" one "$(cat "$mnt_b/f")"
echo two >"$mnt_b/f"
same "written on B, read on A" two "$(cat "$mnt_a/f")"
check "A's write delegation was recalled by B's open" \
	test "$(stat_a recalls)" -ge 1
same "A returned what was recalled" "$(stat_a recalls)" "$(stat_a returns)"

section "kernel cache kept under a delegation, dropped on recall"
head -c 1048576 /dev/urandom >"$exp/big"
sum_old=$(md5sum <"$exp/big")
# the first open is granted a read delegation; later opens keep the
# pages it read
same "A reads the file" "$sum_old" "$(md5sum <"$mnt_a/big")"
same "... again, from its cache" "$sum_old" "$(md5sum <"$mnt_a/big")"
check "A holds a delegation" test "$(stat_a 'delegations held')" -ge 1
recalls=$(stat_a recalls)
# B rewrites it (its write open recalls A's delegation) ...
head -c 1048576 /dev/urandom >"$src/big2"
sum_new=$(md5sum <"$src/big2")
cp "$src/big2" "$mnt_b/big"
same "... B rewrote it" "$sum_new" "$(md5sum <"$exp/big")"
check "... which recalled A's delegation" \
	test "$(stat_a recalls)" -gt "$recalls"
# ... and A's next read sees the new bytes, not its old pages
same "A reads B's bytes" "$sum_new" "$(md5sum <"$mnt_a/big")"

section "opens served under a delegation (parked opens)"
sleep 1.2 # past the recall hold-offs above
# one open of each kind (append, read) made by the server first, then
# parked at their close
# the count of parked opens is the mount's: other files' may stay parked
# (a slower machine gets delegations back after their recall hold-off),
# so checks compare with what was parked before; theirs can only go
parked0=$(stat_a 'parked opens')
echo p0 >"$mnt_a/p"
echo p1 >>"$mnt_a/p"
cat "$mnt_a/p" >/dev/null
opens=$(stat_a 'local opens')
rpc_opens=$(stat_a 'rpc open')
for i in 2 3 4 5 6 7 8 9 10 11; do
	echo "p$i" >>"$mnt_a/p"
	cat "$mnt_a/p" >/dev/null
done
check "20 opens of a file A holds a write delegation of: served by A" \
	test "$(stat_a 'local opens')" -ge $((opens + 20))
check "... A's OPENs sent so far are counted (rpc open $rpc_opens)" \
	test "${rpc_opens:-0}" -ge 1
same "... none of the 20 an OPEN sent to the server" \
	"$rpc_opens" "$(stat_a 'rpc open')"
same "... its bytes on the server's disk" \
	"$(printf 'p%s\n' 0 1 2 3 4 5 6 7 8 9 10 11)" "$(cat "$exp/p")"
check "... an open is kept parked" \
	test "$(stat_a 'parked opens')" -gt "$parked0"
echo from-b >>"$mnt_b/p"
same "B appends (a recall)" \
	"$(printf 'p%s\n' 0 1 2 3 4 5 6 7 8 9 10 11; echo from-b)" \
	"$(cat "$exp/p")"
check "... A's parked opens closed with its delegation" \
	test "$(stat_a 'parked opens')" -le "$parked0"
same "... and A reads B's bytes" "from-b" "$(tail -1 "$mnt_a/p")"
sleep 1.2
echo again >>"$mnt_a/p"
cat "$mnt_a/p" >/dev/null
check "A parks again under a new delegation" \
	test "$(stat_a 'parked opens')" -gt "$parked0"
chmod 640 "$mnt_a/p"
check "a chmod on A closes them (who may open it changed)" \
	test "$(stat_a 'parked opens')" -le "$parked0"
cat "$mnt_a/p" >/dev/null
# the kernel forgets an unlinked file nobody holds open at once
rm "$mnt_a/p"
i=0
while [ "$(stat_a 'parked opens')" -gt "$parked0" ] && [ $i -lt 20 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "a removed file's parked open closed when A forgets it" \
	test "$(stat_a 'parked opens')" -le "$parked0"
check "... and nothing of it is left on the server's disk" \
	test ! -e "$exp/p"

section "a file made for writing serves its reads (wide opens)"
# postmark's fopen "w": O_WRONLY|O_CREAT|O_TRUNC asks the server for read
# access too, so the create's open, parked at close, serves the reads that
# follow; and a file just truncated or made has no security.capability, so
# the kernel's question before each write is answered by A from the first
rpc_opens=$(stat_a 'rpc open')
rpc_caps=$(stat_a 'rpc getxattr')
for i in 1 2 3; do echo "w$i"; done >"$mnt_a/w"
same "A reads back a file it made for writing" \
	"$(printf 'w%s\n' 1 2 3)" "$(cat "$mnt_a/w")"
same "... twice" "$(printf 'w%s\n' 1 2 3)" "$(cat "$mnt_a/w")"
same "... with no OPEN sent: its create's open serves the reads" \
	"$rpc_opens" "$(stat_a 'rpc open')"
same "... and no GETXATTR for its three writes" \
	"$rpc_caps" "$(stat_a 'rpc getxattr')"
same "... its bytes on the server's disk" \
	"$(printf 'w%s\n' 1 2 3)" "$(cat "$exp/w")"

section "attributes"
# without a delegation a mount's attributes are as old as attr_timeout
# (1 s) at most; with one, a change elsewhere recalls it and they are new
touch -d '2001-02-03 04:05:06' "$mnt_b/f"
sleep 1.2
same "a time set on B is seen on A within attr_timeout" \
	"2001-02-03 04:05:06" "$(stat -c %y "$mnt_a/f" | cut -c1-19)"
echo data >"$exp/g"
sleep 1.2 # past the recall hold-offs of the files above
cat "$mnt_a/g" >/dev/null
check "A holds a read delegation of g" test "$(stat_a 'delegations held')" -ge 1
same "A caches g's mode" 644 "$(stat -c %a "$mnt_a/g")"
chmod 600 "$mnt_b/g"
same "a mode set on B is seen on A at once (recall)" 600 \
	"$(stat -c %a "$mnt_a/g")"
sleep 1.2
cat "$mnt_a/g" >/dev/null
echo more >>"$mnt_b/g"
same "a size grown on B is seen on A at once (recall)" 10 \
	"$(stat -c %s "$mnt_a/g")"

section "small writes held under a write delegation"
sleep 1.2 # past the hold-offs above
held=$(stat_a 'writes held')
# 1,000 writes of 100 bytes through one descriptor; after fsync the
# server's disk has them while the file is still open; the rest of the
# bytes come at close
python3 - "$mnt_a/wb" "$exp/wb" >"$tmp/wb.out" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(1000):
    os.write(fd, bytes([48 + i % 10]) * 100)
os.fsync(fd)
print(os.path.getsize(sys.argv[2]))
for i in range(1000):
    os.write(fd, bytes([97 + i % 26]) * 100)
os.close(fd)
print(os.path.getsize(sys.argv[2]))
PY
same "fsync put the first 100,000 bytes on the server's disk" 100000 \
	"$(sed -n 1p "$tmp/wb.out")"
same "close put all 200,000 there" 200000 "$(sed -n 2p "$tmp/wb.out")"
check "... and most writes were held, not sent one by one" \
	test $(($(stat_a 'writes held') - held)) -ge 1900
python3 -c '
import sys
want = b"".join(bytes([48 + i % 10]) * 100 for i in range(1000)) + \
       b"".join(bytes([97 + i % 26]) * 100 for i in range(1000))
sys.exit(open(sys.argv[1], "rb").read() != want)' "$exp/wb"
check "... the bytes on the server's disk are the bytes written" test $? -eq 0
# writes held on A when B opens the file: B's open recalls A's
# delegation, A sends what it holds first, and B reads every byte
exec 8>>"$mnt_a/wb"
printf 'tail-held' >&8
same "B reads what A holds, through the recall" \
	"tail-held" "$(tail -c 9 "$mnt_b/wb")"
exec 8>&-

section "1 MiB writes sent behind under a write delegation"
sleep 1.2 # past the hold-offs above
behind=$(stat_a 'writes behind')
head -c $((32 << 20)) /dev/urandom >"$src/wbig"
# 24 writes of 1 MiB, answered before the server has them; fsync waits
# for them; 8 more, then B's open (a recall) must see all 32 MiB
python3 - "$src/wbig" "$mnt_a/wbig" "$exp/wbig" "$mnt_b/wbig" \
	>"$tmp/wbig.out" 2>&1 <<'PY'
import os, subprocess, sys
src, a, server, b = sys.argv[1:]
data = open(src, "rb").read()
fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(24):
    os.write(fd, data[i << 20:(i + 1) << 20])
os.fsync(fd)
print("fsync", open(server, "rb").read() == data[:24 << 20])
for i in range(24, 32):
    os.write(fd, data[i << 20:(i + 1) << 20])
print("recall", open(b, "rb").read() == data)
os.close(fd)
PY
same "fsync put 24 MiB written behind on the server's disk" \
	"fsync True" "$(sed -n 1p "$tmp/wbig.out")"
same "B's open, recalling A's delegation, reads all 32 MiB" \
	"recall True" "$(sed -n 2p "$tmp/wbig.out")"
check "... the server's file is the file written" cmp -s "$src/wbig" "$exp/wbig"
check "... and the writes went behind (dafsstat 'writes behind')" \
	test $(($(stat_a 'writes behind') - behind)) -ge 24
# overlapping writes behind: each waits for the one it overlaps, so the
# last one made is the one that stays
python3 - "$mnt_a/wover" "$exp/wover" <<'PY'
import os, sys
a, server = sys.argv[1:]
model = bytearray(3 << 20)
fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i, off in enumerate([0, 1 << 20, 0, 512 << 10, 4096, 2 << 20, 1 << 20]):
    chunk = bytes([65 + i]) * (1 << 20)
    os.pwrite(fd, chunk, off)
    model[off:off + len(chunk)] = chunk
os.close(fd)
sys.exit(open(server, "rb").read() != bytes(model))
PY
check "overlapping 1 MiB writes behind land in the order made" test $? -eq 0
# appends of 4 MiB: the server puts each write of an O_APPEND file at its
# end of file as it arrives, so none goes behind (two in flight could
# land in either order)
behind=$(stat_a 'writes behind')
python3 - "$mnt_a/wapp" "$exp/wapp" <<'PY'
import os, sys
a, server = sys.argv[1:]
model = bytearray()
for r in range(3):
    fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    for i in range(4):
        chunk = os.urandom((4 << 20) + 2040 * (i + 1))
        os.write(fd, chunk)
        model += chunk
    os.close(fd)
sys.exit(open(server, "rb").read() != bytes(model))
PY
check "O_APPEND writes of 4 MiB land in the order made" test $? -eq 0
same "... none of them went behind" 0 $(($(stat_a 'writes behind') - behind))
rm -f "$src/wbig" "$mnt_a/wapp"

section "file capabilities and the absence cached under a delegation"
# each write makes the kernel ask for security.capability (to drop it);
# under a delegation dafs-fuse answers "none" from what it learnt, and
# forgets that when the mount sets one or another client's setcap recalls
# the delegation. (The server's own write drops a capability too, so the
# end result below holds either way: these checks guard the result.)
if command -v setcap >/dev/null && command -v getcap >/dev/null; then
	sleep 1.2 # past the hold-offs above
	exec 9>"$mnt_a/capf"
	echo one >&9
	echo two >&9
	exec 9>&-
	setcap cap_net_raw+ep "$mnt_a/capf"
	check "setcap through A" sh -c "getcap '$exp/capf' | grep -q cap_net_raw"
	echo three >>"$mnt_a/capf"
	same "a write through A drops it" \
		"" "$(getcap "$exp/capf")"
	echo four >>"$mnt_a/capf"
	sleep 1.2
	exec 9>>"$mnt_a/capf"
	echo five >&9
	setcap cap_net_raw+ep "$mnt_b/capf"
	check "setcap through B, while A holds the file" \
		sh -c "getcap '$exp/capf' | grep -q cap_net_raw"
	echo six >&9
	exec 9>&-
	same "A's next write drops it" \
		"" "$(getcap "$exp/capf")"
else
	say "# skip file capabilities: setcap/getcap missing (libcap2-bin)"
fi

section "dafsstat"
"$DAFSSTAT" "$mnt_a" >"$tmp/stat.out" 2>&1
check "dafsstat reads A's statistics while mounted" \
	grep -q '^granted read [0-9]' "$tmp/stat.out"
check "... with the requests sent, by operation (rpc lookup)" \
	grep -q '^rpc lookup [1-9]' "$tmp/stat.out"
same "... the same recall count as SIGUSR1's line" "$(stat_a recalls)" \
	"$(awk '/^recalls / {print $2}' "$tmp/stat.out")"
check "... and fails clearly on a directory that is no mount" \
	sh -c '! "$1" "$2" 2>"$3" && grep -q "not a dafs-fuse mount" "$3"' \
	sh "$DAFSSTAT" "$exp" "$tmp/stat.err"

section "a mount killed while holding a write delegation"
exec 7>"$mnt_b/held"
echo "flushed" >&7
check "B holds a write delegation" test "$(stat_b 'granted write')" -ge 1
kill -9 "$fuse_b"
wait "$fuse_b" 2>/dev/null
exec 7>&-
fuse_b=
umount -l "$mnt_b" 2>/dev/null
t0=$(now_ms)
got=$(cat "$mnt_a/held")
ms=$(($(now_ms) - t0))
same "A reads what B wrote before it died" flushed "$got"
check "... after waiting ${ms} ms, no more than the lease and a second" \
	test "$ms" -le 3000

section "deleg=off"
check "B mounted again with -o deleg=off" mount_b -o deleg=off
cat "$mnt_b/f" >/dev/null
cat "$mnt_b/f" >/dev/null
same "no delegation granted to B" 0 "$(stat_b 'granted read')"

section "a write-back error reaches the writer"
if [ -n "$full" ]; then
	fusermount3 -u "$mnt_b"
	stop "$fuse_b"
	fuse_b=
	url_data=$url
	url=${url%/data}/full
	check "B mounted on a 4 MiB export" mount_b
	url=$url_data
	# 8 MiB into 4: the writes are answered before the server fails
	# them; the failure comes back on a later write or at close
	dd if=/dev/zero of="$mnt_b/f" bs=1M count=8 >"$tmp/full.out" 2>&1
	rc=$?
	sed 's/^/# /' "$tmp/full.out"
	check "dd fails" test "$rc" -ne 0
	check "... with ENOSPC" grep -q "No space left on device" "$tmp/full.out"
	check "... and B held writes behind" test "$(stat_b 'writes behind')" -ge 1
	check "what reached the server is zeros, as written" \
		cmp -s -n "$(stat -c %s "$full/f")" /dev/zero "$full/f"
	rm -f "$mnt_b/f"
	# the failure is also fsync's on another descriptor of the file
	# opened before it, once, as Linux reports it to every descriptor
	python3 - "$mnt_b/g" >"$tmp/full2.out" 2>&1 <<'PY'
import errno, os, sys
p = sys.argv[1]
fd1 = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
fd2 = os.open(p, os.O_WRONLY)
try:
    for i in range(8):
        os.write(fd1, bytes(1 << 20))
    print("writes: all answered")
except OSError as e:
    print("writes:", errno.errorcode[e.errno])
def fsync(fd):
    try:
        os.fsync(fd)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("fsync of the other descriptor:", fsync(fd2))
print("again:", fsync(fd2))
PY
	sed 's/^/# /' "$tmp/full2.out"
	same "... and on fsync of another descriptor of the file" \
		"fsync of the other descriptor: ENOSPC" \
		"$(grep '^fsync' "$tmp/full2.out")"
	same "... once" "again: ok" "$(grep '^again' "$tmp/full2.out")"
	rm -f "$mnt_b/g"
	# a close answered before its write-back (close_behind_us=0) cannot
	# report the failure: the next fsync of the file does, through a
	# descriptor opened after it, once
	fusermount3 -u "$mnt_b"
	stop "$fuse_b"
	url=${url%/data}/full
	check "B mounted on it again with -o close_behind_us=0" \
		mount_b -o close_behind_us=0
	url=$url_data
	dd if=/dev/zero of="$full/fill" bs=64k >/dev/null 2>&1
	python3 - "$mnt_b/h" >"$tmp/full3.out" 2>&1 <<'PY'
import errno, os, sys, time
p = sys.argv[1]
def do(what, f):
    try:
        f()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
do("writes", lambda: [os.write(fd, b"h" * 100) for i in range(10)])
do("close", lambda: os.close(fd))
time.sleep(2)  # the write-back has failed, and the release is done (the RDMA VM took longer than 0.5 s once)
fd = os.open(p, os.O_WRONLY)
do("fsync after", lambda: os.fsync(fd))
do("again", lambda: os.fsync(fd))
os.close(fd)
PY
	sed 's/^/# /' "$tmp/full3.out"
	same "the held writes fail on a full export after close answered" \
		"close ok" "$(grep '^close' "$tmp/full3.out")"
	same "... the fsync of a descriptor opened after reports it" \
		"fsync after ENOSPC" "$(grep '^fsync' "$tmp/full3.out")"
	same "... once" "again ok" "$(grep '^again' "$tmp/full3.out")"
	check "... and B answered that close first" \
		test "$(stat_b 'closes before write-back')" -ge 1
	rm -f "$mnt_b/h" "$full/fill"
	fusermount3 -u "$mnt_b"
	stop "$fuse_b"
	fuse_b=
else
	say "# skip write-back error: mounting a tmpfs needs root"
fi

section "attributes kept under a write delegation"
# the kernel asks for a file's attributes again after every write; under
# the write delegation A answers from what it keeps (the size its writes
# make, their time), and drops it as unlink, link, rename, truncation and
# write-back errors change what it cannot compute
sleep 1.2 # past the hold-offs above
cat >"$tmp/attrs.py" <<'PY'
import os, sys, time
a, server, phase = sys.argv[1:]
bad = []
def getattrs():
    """GETATTRs A sent to the server so far (dafsstat's line)"""
    line = os.getxattr(a, "dafs.stats").decode()
    return int(line.split("rpc getattr ")[1].split()[0]) \
        if "rpc getattr " in line else 0
def fnv(name):
    h = 2166136261
    for c in name.encode():
        h = ((h ^ c) * 16777619) & 0xffffffff
    return h
def want(what, got, expect):
    if got != expect:
        bad.append("%s: %r, not %r" % (what, got, expect))
p = os.path.join(a, "ak")
if phase == "loop":
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    size = 0
    for i in range(200):
        size += os.write(fd, b"x" * (100 + i))
        want("size after write %d" % i, os.fstat(fd).st_size, size)
    os.close(fd)
    want("stat's size", os.stat(p).st_size, size)
    print("mismatches:", len(bad), *bad[:6])
    sys.exit(0)
fd = os.open(p, os.O_RDWR)
size = os.fstat(fd).st_size
# a write past the end leaves a hole; one inside moves the mtime on
os.pwrite(fd, b"y", size + 100000)
size += 100001
want("size after a write past the end", os.fstat(fd).st_size, size)
m0 = os.fstat(fd).st_mtime_ns
time.sleep(0.05)
os.pwrite(fd, b"z", 10)
if os.fstat(fd).st_mtime_ns <= m0:
    bad.append("mtime did not move on with a write")
want("size after a write inside", os.fstat(fd).st_size, size)
# truncation, a second link, a rename, an unlink while open
os.ftruncate(fd, 5000)
want("size after ftruncate", os.fstat(fd).st_size, 5000)
os.pwrite(fd, b"w" * 10, 8000)
want("size after the next write", os.fstat(fd).st_size, 8010)
c0 = os.fstat(fd).st_ctime_ns
time.sleep(0.05)
os.rename(p, p + "3")
if os.fstat(fd).st_ctime_ns <= c0:
    bad.append("ctime did not move on with a rename")
os.close(fd)
os.unlink(p + "3")
# links: each change, then a write (the kernel asks for the attributes
# again after it), then fstat
q = os.path.join(a, "am")
fd = os.open(q, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
g0 = getattrs()
os.write(fd, b"a" * 100)
os.fstat(fd)
want("GETATTRs sent for a write and fstat of a new file", getattrs() - g0, 0)
os.link(q, q + "L")
os.write(fd, b"b")
want("links after link", os.fstat(fd).st_nlink, 2)
os.unlink(q + "L")
os.write(fd, b"c")
want("links after unlink of the second name", os.fstat(fd).st_nlink, 1)
os.unlink(q)
os.write(fd, b"d")
want("links after unlink while open", os.fstat(fd).st_nlink, 0)
want("size after unlink while open", os.fstat(fd).st_size, 103)
os.close(fd)
# two names that share their 32-bit FNV-1a hash, "liquid" and
# "costarring": a link under the second still counts
want("the two names' hashes", fnv("liquid"), fnv("costarring"))
q = os.path.join(a, "liquid")
fd = os.open(q, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
os.write(fd, b"a" * 10)
os.fstat(fd)
os.link(q, os.path.join(a, "costarring"))
os.write(fd, b"b")
want("links after link under a name of the same hash",
     os.fstat(fd).st_nlink, 2)
os.close(fd)
os.unlink(q)
os.unlink(os.path.join(a, "costarring"))
# an append lands where the server's end of file is, whatever offset
# the kernel sends (here 0, once O_APPEND is cleared by fcntl, which the
# daemon is not told of): the size is the server's
import fcntl
q = os.path.join(a, "an")
fd = os.open(q, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_TRUNC, 0o644)
os.write(fd, b"a" * 100)
fcntl.fcntl(fd, fcntl.F_SETFL, 0)
os.pwrite(fd, b"x", 0)
mine = os.fstat(fd).st_size
os.fsync(fd)
want("size after an append the kernel placed at 0", mine,
     os.stat(os.path.join(server, "an")).st_size)
want("... which is the server's 101", mine, 101)
want("... with the byte at the end", open(os.path.join(server, "an"),
     "rb").read(), b"a" * 100 + b"x")
os.close(fd)
os.unlink(q)
# the server's view matches A's once the bytes are there
q = os.path.join(a, "ak4")
fd = os.open(q, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(50):
    os.write(fd, b"%d," % i)
mine = os.fstat(fd).st_size
os.fsync(fd)
want("the server's size after fsync",
     os.stat(os.path.join(server, "ak4")).st_size, mine)
os.close(fd)
os.unlink(q)
print("mismatches:", len(bad), *bad[:6])
PY
getattrs=$(stat_a 'rpc getattr')
python3 "$tmp/attrs.py" "$mnt_a" "$exp" loop >"$tmp/attrs.out" 2>&1
sed 's/^/# /' "$tmp/attrs.out"
same "200 writes, each followed by fstat: the sizes written" \
	"mismatches: 0" "$(cat "$tmp/attrs.out")"
check "... answered by A, not the server (GETATTRs sent: $(($(stat_a 'rpc getattr') - getattrs)))" \
	test $(($(stat_a 'rpc getattr') - getattrs)) -le 10
python3 "$tmp/attrs.py" "$mnt_a" "$exp" more >"$tmp/attrs.out" 2>&1
sed 's/^/# /' "$tmp/attrs.out"
same "holes, truncation, links, rename, unlink while open, fsync" \
	"mismatches: 0" "$(cat "$tmp/attrs.out")"

section "close answered before its write-back (close_behind_us=0)"
# under its write delegation a mount may answer close before it sends what
# the descriptor held (as a local file system starts write-back at close);
# every later request that needs the bytes on the server waits for them:
# B's stat, A's open (a recall), and B's write through another descriptor
if mountpoint -q "$mnt_b"; then
	fusermount3 -u "$mnt_b"
	stop "$fuse_b"
	fuse_b=
fi
check "B mounted again with -o close_behind_us=0" \
	mount_b -o close_behind_us=0
early=$(stat_b 'closes before write-back')
python3 - "$mnt_b" "$mnt_a" "$exp" >"$tmp/early.out" 2>&1 <<'PY'
import os, sys
b, a, server = sys.argv[1:]
bad = []
for i in range(40):
    data = os.urandom(1000 + 97 * i)
    name = "early%d" % i
    fd = os.open(os.path.join(b, name), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for k in range(0, len(data), 100):
        os.write(fd, data[k:k + 100])
    os.close(fd)
    if os.stat(os.path.join(b, name)).st_size != len(data):
        bad.append("%s: B's stat" % name)
    # appended through a second descriptor right after the close
    fd = os.open(os.path.join(b, name), os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"tail")
    os.close(fd)
    data += b"tail"
    if open(os.path.join(a, name), "rb").read() != data:
        bad.append("%s: A's read" % name)
    if open(os.path.join(server, name), "rb").read() != data:
        bad.append("%s: the server's file" % name)
print("mismatches:", len(bad), *bad[:5])
PY
sed 's/^/# /' "$tmp/early.out"
same "40 files written on B, closed, then stat on B, appended on B, read on A" \
	"mismatches: 0" "$(cat "$tmp/early.out")"
check "... B answered closes before their write-back" \
	test $(($(stat_b 'closes before write-back') - early)) -ge 40
rm -f "$mnt_a"/early*

section "dafs-verify through both mounts"
# names and attributes without timeouts, so that what the test sees across
# mounts rests on delegations and close-to-open alone
if mountpoint -q "$mnt_b"; then
	fusermount3 -u "$mnt_b"
	stop "$fuse_b"
	fuse_b=
fi
fusermount3 -u "$mnt_a"
stop "$fuse_a"
fuse_pid=
# A answers closes before their write-back, B after: both ways meet
mount_fuse -o attr_timeout=0,entry_timeout=0,close_behind_us=0 || exit 1
fuse_a=$fuse_pid
check "both mounted again with attr_timeout=0,entry_timeout=0" \
	mount_b -o attr_timeout=0,entry_timeout=0
mkdir "$mnt_a/v"
seed=${DAFS_VERIFY_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
say "# dafs-verify seed $seed (DAFS_VERIFY_SEED=$seed replays it)"
ops=${DAFS_VERIFY_OPS:-50000}
"$DAFS_VERIFY" --seed "$seed" --ops "$ops" --peer "$mnt_b/v" "$mnt_a/v" \
	>"$tmp/verify.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp/verify.out" | grep -v '^#   [0-9a-f]' | head -40
same "$ops operations through two mounts, no mismatch" 0 "$rc"
check "... with recalls between the mounts" \
	test $(($(stat_a recalls) + $(stat_b recalls))) -ge 10
say "# writes behind during the run: A $(stat_a 'writes behind'), B $(stat_b 'writes behind')"
say "# closes before write-back: A $(stat_a 'closes before write-back'), B $(stat_b 'closes before write-back')"

echo "1..$checks"
