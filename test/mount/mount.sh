#!/bin/bash
# mount.sh - dafs-fuse on a real mount over 127.0.0.1, black box: start a
# dafsd, mount its export with dafs-fuse, run ordinary programs on the
# mount and compare what they see with the same work done on a local
# directory (and with the export's files on the server's disk).
#
# Needs $DAFSD, $DAFS_FUSE and $FSOP (meson sets them). Skips (77) without
# /dev/fuse or fusermount3. Checks that need root (chown, the unprivileged
# user) are skipped, with a message, when not run as root.
# Cleans up on every exit: unmounts (fusermount3 -u, then umount -l), stops
# dafs-fuse and dafsd by PID, scans both logs for sanitizer reports.
set -u

# the lib's helpers: TAP lines, dafsd and dafs-fuse by PID, cleanup
: "${DAFSD:?DAFSD must name the dafsd binary}"
: "${DAFS_FUSE:?DAFS_FUSE must name the dafs-fuse binary}"
: "${FSOP:?FSOP must name the fsop helper}"
. "$(dirname "$0")/lib.sh"

require_fuse
mount_setup mount

# ---- start dafsd and mount ----

start_dafsd
# allow_other: the unprivileged user's checks go through this mount
if ! mount_fuse -o allow_other; then
	failures=1
	exit 1
fi
ok "mounted $url on $mnt"
same "fstype in /proc/mounts" "fuse.dafs" \
	"$(awk -v m="$mnt" '$2 == m {print $3}' /proc/mounts)"

# ---- small files: echo, cat, append ----

echo hello >"$mnt/hello"
same "cat what echo wrote" hello "$(cat "$mnt/hello")"
same "the server's disk holds it" hello "$(cat "$exp/hello")"
echo a >"$mnt/app"
echo b >>"$mnt/app"
same "echo >> appends" "$(printf 'a\nb')" "$(cat "$mnt/app")"
check "O_APPEND write at offset 0 lands at the end" "$FSOP" append "$mnt/app" c
same "... and the bytes are a, b, c" "$(printf 'a\nb\nc')" "$(cat "$mnt/app")"
printf 'x%.0s' $(seq 5000) >"$mnt/5k"
same "a 5000-byte file (beyond inline) reads back" 5000 "$(wc -c <"$mnt/5k")"
check "exclusive create of a new name" "$FSOP" create-excl "$mnt/excl"
same "exclusive create of an existing name" EEXIST \
	"$("$FSOP" create-excl "$mnt/excl")"
echo longer-content >"$mnt/trunc"
echo s >"$mnt/trunc"
same "> truncates (O_TRUNC)" s "$(cat "$mnt/trunc")"

head -c $((8 << 20)) /dev/urandom >"$tmp/direct"
dd if="$tmp/direct" of="$mnt/direct" bs=1M oflag=direct status=none
check "O_DIRECT write of 8 MiB" cmp "$tmp/direct" "$exp/direct"
check "O_DIRECT read of 8 MiB" \
	cmp "$tmp/direct" <(dd if="$mnt/direct" bs=1M iflag=direct status=none)
dd if="$tmp/direct" of="$mnt/direct" bs=4096 count=1 seek=3 skip=5 \
	oflag=direct conv=notrunc status=none
check "O_DIRECT 4 KiB write in place" cmp <(dd if="$tmp/direct" bs=4096 \
	count=1 skip=5 status=none) <(dd if="$mnt/direct" bs=4096 count=1 \
	skip=3 iflag=direct status=none)
rm -f "$mnt/direct"

# ---- a tree of small files and a large one: cp -a, compare ----

awk -v root="$src/tree" 'BEGIN {
	srand(7);
	for (d = 0; d < 40; d++)
		system("mkdir -p " root "/d" d "/sub");
	for (i = 0; i < 2000; i++) {
		f = sprintf("%s/d%d/%sf%04d", root, i % 40,
			    (i % 3 == 0) ? "sub/" : "", i);
		n = int(rand() * 3000);
		s = "";
		for (j = 0; j < n; j += 16)
			s = s sprintf("%08x%08x", int(rand() * 2^31), i);
		printf "%s", s > f;
		close(f);
	}
}'
head -c $((64 << 20)) /dev/urandom >"$src/tree/big"
ln -s d1/f0001 "$src/tree/link"
ln "$src/tree/d2/f0002" "$src/tree/hardlink"
chmod 600 "$src/tree/d4/f0004"
chmod 700 "$src/tree/d4"
touch -d '2001-02-03 04:05:06.123456789' "$src/tree/d5/f0005"

cp -a "$src/tree" "$mnt/tree"
check "cp -a: cmp of the 64 MiB file" cmp "$src/tree/big" "$mnt/tree/big"
check "cp -a: diff -r of the tree" diff -r "$src/tree" "$mnt/tree"
check "cp -a: the server's disk has the same tree" diff -r "$src/tree" "$exp/tree"
meta() {
	(cd "$1" && find . -printf '%p %y %m %s %U %G %n %T@ %l\n' | sort)
}
same "cp -a: names, types, modes, sizes, owners, links, mtimes" \
	"$(meta "$src/tree")" "$(meta "$mnt/tree")"
same "find: 2000 small files, 81 directories, 2 links and big" 2084 \
	"$(find "$mnt/tree" | wc -l)"
same "stat: the hard link shares the inode number" \
	"$(stat -c %i "$mnt/tree/d2/f0002")" "$(stat -c %i "$mnt/tree/hardlink")"
same "inode numbers are the server's" \
	"$(stat -c %i "$exp/tree/big")" "$(stat -c %i "$mnt/tree/big")"
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
check "cmp of the 64 MiB file with the page cache dropped" \
	cmp "$src/tree/big" "$mnt/tree/big"

# ---- lookup counts: the inode table shrinks when the kernel forgets ----

# Drop the kernel's dentries and inodes and wait (up to 10 s) until the
# node table is down to at most 50: the kernel sends its FORGETs after the
# drop returns, and a loaded machine delivers them late.
forgotten() {
	n=
	t=0
	while [ $t -lt 20 ]; do
		sync
		echo 2 >/proc/sys/vm/drop_caches
		n=$(inodes)
		[ "${n:-99999}" -le 50 ] && break
		sleep 0.5
		t=$((t + 1))
	done
	echo "$n"
}
if [ "$(id -u)" -eq 0 ]; then
	ls -lR "$mnt/tree" >/dev/null
	n1=$(inodes)
	check "a walk of the tree holds its 2,084 nodes ($n1)" \
		test "${n1:-0}" -ge 2084
	n2=$(forgotten)
	check "forgotten by the kernel, freed here ($n2 left)" \
		test "${n2:-99999}" -le 50
	h1=$(heap)
	ls -lR "$mnt/tree" >/dev/null
	n3=$(forgotten)
	h2=$(heap)
	check "a second walk: freed again ($n3 left)" test "${n3:-99999}" -le 50
	# malloc's bytes in use, not RSS (arenas and threads' buffers move
	# it by megabytes): keeping the 2,084 nodes would add 270 KB. ASan
	# has its own allocator: no bound there.
	if grep -q -a -m1 __asan_init "$DAFS_FUSE"; then
		say "# skip the heap bound: dafs-fuse runs under ASan"
	else
		check "... with no growth of dafs-fuse's heap: $h1 -> $h2 bytes" \
			test "${h2:-999999999999}" -le $((${h1:-0} + 131072))
	fi
else
	say "# skip the forget checks: dropping caches needs root"
fi

# ---- tar out of and into the mount ----

tar -C "$mnt" -cf "$tmp/out.tar" tree
tar -C "$src" -cf "$tmp/ref.tar" tree
same "tar c of the mount lists what tar c of the original lists" \
	"$(tar -tvf "$tmp/ref.tar" | sort)" "$(tar -tvf "$tmp/out.tar" | sort)"
mkdir "$mnt/untar"
tar -C "$mnt/untar" -xpf "$tmp/ref.tar"
check "tar x into the mount: diff -r" diff -r "$src/tree" "$mnt/untar/tree"
# tar keeps whole seconds
meta_s() {
	(cd "$1" && find . -printf '%p %y %m %s %U %G %n %Ts %l\n' | sort)
}
same "tar x into the mount: metadata" \
	"$(meta_s "$src/tree")" "$(meta_s "$mnt/untar/tree")"

# ---- directories: mkdir -p, rm -rf ----

mkdir -p "$mnt/a/b/c/d/e"
check "mkdir -p" test -d "$mnt/a/b/c/d/e"
rm -rf "$mnt/a" "$mnt/untar"
check "rm -rf" test ! -e "$mnt/a" -a ! -e "$mnt/untar" -a ! -e "$exp/a"
mkdir "$mnt/full"
touch "$mnt/full/x"
same "rmdir of a non-empty directory" "Directory not empty" \
	"$(rmdir "$mnt/full" 2>&1 | sed 's/.*: //')"

check "fstat of an open, unlinked file" "$FSOP" unlinked-fstat "$mnt/unl"

# ---- error paths, each as a local disk gives it ----

mkdir -p "$mnt/e/dir/sub" "$mnt/e/dir2/sub2"
echo f >"$mnt/e/file"
ln -s file "$mnt/e/sym"
long=$(printf 'n%.0s' $(seq 256))
# errno OP ARGS...: the errno name fsop reports ("" for success)
errno() { "$FSOP" "$@"; }
same "open of a missing name: ENOENT" ENOENT "$(errno open-w "$mnt/e/none")"
same "a file as a directory: ENOTDIR" ENOTDIR "$(errno open-w "$mnt/e/file/x")"
same "open of a directory for writing: EISDIR" EISDIR "$(errno open-w "$mnt/e/dir")"
same "mkdir of an existing name: EEXIST" EEXIST "$(errno mkdir "$mnt/e/file")"
same "a 256-byte name: ENAMETOOLONG" ENAMETOOLONG "$(errno mkdir "$mnt/e/$long")"
same "rmdir of a file: ENOTDIR" ENOTDIR "$(errno rmdir "$mnt/e/file")"
same "rmdir of a non-empty directory: ENOTEMPTY" ENOTEMPTY "$(errno rmdir "$mnt/e/dir")"
same "unlink of a directory: EISDIR" EISDIR "$(errno unlink "$mnt/e/dir")"
same "unlink of a missing name: ENOENT" ENOENT "$(errno unlink "$mnt/e/none")"
same "link onto an existing name: EEXIST" EEXIST "$(errno link "$mnt/e/file" "$mnt/e/sym")"
same "link of a directory: EPERM" EPERM "$(errno link "$mnt/e/dir" "$mnt/e/dl")"
same "symlink onto an existing name: EEXIST" EEXIST "$(errno symlink x "$mnt/e/file")"
same "readlink of a file: EINVAL" EINVAL "$(errno readlink "$mnt/e/file")"
same "rename of a file onto a directory: EISDIR" EISDIR "$(errno rename "$mnt/e/file" "$mnt/e/dir")"
same "rename of a directory onto a file: ENOTDIR" ENOTDIR "$(errno rename "$mnt/e/dir" "$mnt/e/file")"
same "rename onto a non-empty directory: ENOTEMPTY" ENOTEMPTY "$(errno rename "$mnt/e/dir2" "$mnt/e/dir")"
same "rename of a directory into itself: EINVAL" EINVAL "$(errno rename "$mnt/e/dir" "$mnt/e/dir/sub/x")"
same "truncate of a directory: EISDIR" EISDIR "$(errno truncate0 "$mnt/e/dir")"
same "getxattr of a missing name: ENODATA" ENODATA "$(errno getxattr "$mnt/e/file" user.none)"
same "removexattr of a missing name: ENODATA" ENODATA "$(errno removexattr "$mnt/e/file" user.none)"
same "setxattr XATTR_CREATE of a new name" "" "$(errno setxattr-create "$mnt/e/file" user.c)"
same "setxattr XATTR_CREATE of an existing name: EEXIST" EEXIST "$(errno setxattr-create "$mnt/e/file" user.c)"
rm -rf "$mnt/e"

# ---- renames ----

echo one >"$mnt/r1"
echo two >"$mnt/r2"
mv "$mnt/r1" "$mnt/r3"
check "mv: old name gone, new name there" test ! -e "$mnt/r1" -a -f "$mnt/r3"
mv "$mnt/r3" "$mnt/r2"
same "mv over an existing file" one "$(cat "$mnt/r2")"
check "... and the source name is gone" test ! -e "$mnt/r3"
echo three >"$mnt/r4"
same "rename RENAME_NOREPLACE onto an existing name" EEXIST \
	"$("$FSOP" rename-noreplace "$mnt/r4" "$mnt/r2")"
check "rename RENAME_EXCHANGE" "$FSOP" rename-exchange "$mnt/r4" "$mnt/r2"
same "... swapped both ways" "three one" "$(cat "$mnt/r2") $(cat "$mnt/r4")"
mkdir -p "$mnt/mvdir/inner"
mv "$mnt/mvdir" "$mnt/mvdir2"
check "mv of a directory" test -d "$mnt/mvdir2/inner" -a ! -e "$mnt/mvdir"

# ---- links ----

ln "$mnt/r2" "$mnt/r2link"
same "ln: two links" 2 "$(stat -c %h "$mnt/r2")"
same "ln: one inode" "$(stat -c %i "$mnt/r2")" "$(stat -c %i "$mnt/r2link")"
ln -s r2 "$mnt/r2sym"
same "ln -s: readlink" r2 "$(readlink "$mnt/r2sym")"
same "ln -s: followed" three "$(cat "$mnt/r2sym")"
same "ln -s: on the server's disk" r2 "$(readlink "$exp/r2sym")"
rm "$mnt/r2link"
same "rm of one link" 1 "$(stat -c %h "$mnt/r2")"

# ---- attributes ----

chmod 640 "$mnt/r2"
same "chmod" 640 "$(stat -c %a "$mnt/r2")"
same "chmod on the server's disk" 640 "$(stat -c %a "$exp/r2")"
chmod u+s,g+s "$mnt/r2"
same "chmod setuid, setgid" 6640 "$(stat -c %a "$mnt/r2")"
touch -d '2001-02-03 04:05:06.123456789' "$mnt/r2"
same "touch -d: mtime to the nanosecond" \
	"2001-02-03 04:05:06.123456789" "$(stat -c %y "$mnt/r2" | cut -c1-29)"
touch -m -d '2002-01-01 00:00:00' "$mnt/r2"
same "touch -m leaves atime alone (UTIME_OMIT)" \
	"2001-02-03 04:05:06.123456789" "$(stat -c %x "$mnt/r2" | cut -c1-29)"
same "... and sets mtime" "2002-01-01 00:00:00.000000000" \
	"$(stat -c %y "$mnt/r2" | cut -c1-29)"
touch "$mnt/r2"
now=$(date +%s)
t=$(stat -c %Y "$mnt/r2")
check "touch: mtime now (UTIME_NOW)" test $((now - t)) -le 5 -a $((now - t)) -ge -5
truncate -s 100000 "$mnt/r2"
same "truncate up" 100000 "$(stat -c %s "$mnt/r2")"
same "... the new bytes are zeros" 99994 \
	"$(tail -c +7 "$mnt/r2" | tr -d '\0' | wc -c | awk '{print 99994 - $1}')"
truncate -s 3 "$mnt/r2"
same "truncate down" thr "$(cat "$mnt/r2")"
check "ftruncate through an open file" "$FSOP" ftruncate "$mnt/r2" 1
same "... took effect" t "$(cat "$mnt/r2")"
if [ "$(id -u)" -eq 0 ]; then
	chown 65534:65534 "$mnt/r2"
	same "chown" "65534 65534" "$(stat -c '%u %g' "$mnt/r2")"
	same "chown on the server's disk" "65534 65534" \
		"$(stat -c '%u %g' "$exp/r2")"
else
	say "# skip chown: not root"
fi

# ---- special files ----

mkfifo "$mnt/fifo"
same "mkfifo" "fifo" "$(stat -c %F "$mnt/fifo")"
same "mkfifo on the server's disk" "fifo" "$(stat -c %F "$exp/fifo")"
rm "$mnt/fifo"
check "rm of a fifo" test ! -e "$mnt/fifo"

# ---- statfs ----

check "df of the mount" df "$mnt"
same "stat -f: the export's block count" \
	"$(stat -f -c %b "$exp")" "$(stat -f -c %b "$mnt")"

# ---- SEEK_DATA and SEEK_HOLE ----

# a file with data at 0 and 1 MiB and a hole between, through the mount
# and on a local file of the export's file system: the same answers
seeks() {
	python3 - "$1" <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
os.pwrite(fd, b"d" * 4096, 0)
os.pwrite(fd, b"d" * 4096, 1 << 20)
os.fsync(fd)
out = []
for w, name in ((os.SEEK_DATA, "data"), (os.SEEK_HOLE, "hole")):
    for off in (0, 4096, 65536, (1 << 20) - 1, (1 << 20) + 4095, 3 << 20):
        try:
            out.append("%s@%d=%d" % (name, off, os.lseek(fd, off, w)))
        except OSError as e:
            out.append("%s@%d=%s" % (name, off, errno.errorcode[e.errno]))
os.close(fd)
print(" ".join(out))
PY
}
same "lseek SEEK_DATA/SEEK_HOLE as on the export's file system" \
	"$(seeks "$exp/.seek-local")" "$(seeks "$mnt/seek")"
rm -f "$exp/.seek-local" "$mnt/seek"

# ---- extended attributes ----

if command -v setfattr >/dev/null && command -v getfattr >/dev/null; then
	setfattr -n user.colour -v blue "$mnt/hello"
	same "setfattr/getfattr" blue \
		"$(getfattr -n user.colour --only-values "$mnt/hello")"
	same "the server's disk has the xattr" blue \
		"$(getfattr -n user.colour --only-values "$exp/hello")"
	setfattr -n user.size -v "$(printf 'v%.0s' $(seq 3000))" "$mnt/hello"
	same "a 3000-byte value" 3000 \
		"$(getfattr -n user.size --only-values "$mnt/hello" | wc -c)"
	same "getfattr -d lists both" "user.colour user.size" \
		"$(getfattr -d "$mnt/hello" | grep -o '^user\.[a-z]*' | sort | tr '\n' ' ' | sed 's/ $//')"
	setfattr -x user.colour "$mnt/hello"
	same "setfattr -x removes" "" \
		"$(getfattr -n user.colour --only-values "$mnt/hello" 2>/dev/null)"
else
	say "# skip xattrs: setfattr/getfattr missing (Debian package attr)"
fi

# ---- git ----

if command -v git >/dev/null; then
	(
		cd "$mnt" && git init -q repo && cd repo &&
			echo 'int main(void) { return 0; }' >main.c &&
			git add main.c &&
			git -c user.name=t -c user.email=t@t commit -qm first &&
			echo more >>main.c &&
			git -c user.name=t -c user.email=t@t commit -qam second
	) >"$tmp/git.log" 2>&1
	same "git init/add/commit/log" "second first" \
		"$(cd "$mnt/repo" && git log --format=%s 2>>"$tmp/git.log" | tr '\n' ' ' | sed 's/ $//')"
	check "git fsck" git -C "$mnt/repo" fsck --no-progress
else
	say "# skip git: not installed"
fi

# ---- permissions as an unprivileged user ----

nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	echo secret >"$mnt/secret"
	chmod 600 "$mnt/secret"
	same "nobody: cat of a 0600 root file" "Permission denied" \
		"$(nobody cat "$mnt/secret" 2>&1 | sed 's/.*: //')"
	mkdir -m 755 "$mnt/rootdir"
	same "nobody: create in a root 0755 directory" "Permission denied" \
		"$(nobody touch "$mnt/rootdir/f" 2>&1 | sed 's/.*: //')"
	check "nobody: the file was not created" test ! -e "$exp/rootdir/f"
	same "nobody: mkdir in a root 0755 directory" "Permission denied" \
		"$(nobody mkdir "$mnt/rootdir/d" 2>&1 | sed 's/.*: //')"
	same "nobody: rm of a root file in a root directory" \
		"Permission denied" \
		"$(nobody rm -f "$mnt/secret" 2>&1 | sed 's/.*: //')"
	check "nobody: reads a 0644 file" nobody cat "$mnt/hello"
	mkdir -m 700 "$mnt/private"
	same "nobody: chdir into a root 0700 directory" EACCES \
		"$(nobody "$FSOP" chdir "$mnt/private")"
	same "nobody: ls of a root 0700 directory" "Permission denied" \
		"$(nobody ls "$mnt/private" 2>&1 | sed 's/.*: //')"
	check "nobody: test -w of a root file is false" nobody test ! -w "$mnt/hello"
	mkdir -m 1777 "$mnt/pub"
	same "nobody: creates a 0444 file and writes it, then an open for writing: EACCES" \
		EACCES "$(nobody "$FSOP" create-ro-then-write "$mnt/pub/ro")"
	same "... the file holds what its creator wrote" mine \
		"$(cat "$exp/pub/ro")"
	# made write-only by its owner: the open that made it (which a
	# delegation keeps for the next opens) serves no read of it
	nobody sh -c "umask 077; echo x >'$mnt/pub/wo'; chmod 200 '$mnt/pub/wo'"
	same "nobody: cat of the 0200 file it made" "Permission denied" \
		"$(nobody cat "$mnt/pub/wo" 2>&1 | sed 's/.*: //')"
	check "... but appends to it" nobody sh -c "echo y >>'$mnt/pub/wo'"
	same "... the server holds what it wrote" "$(printf 'x\ny\n')" \
		"$(cat "$exp/pub/wo")"
	# an open made before a chmod takes the access away is not kept
	# for later opens when it closes
	same "nobody: cat after its own chmod 200 while the file was open" \
		"Permission denied" \
		"$(nobody sh -c 'echo x >"$1"; exec 3<"$1"; chmod 200 "$1";
			exec 3<&-; cat "$1"' sh "$mnt/pub/held" 2>&1 |
			sed 's/.*: //')"
	nobody sh -c "echo mine >'$mnt/pub/n'"
	same "nobody: creates in a 1777 directory, as nobody" "65534 65534" \
		"$(stat -c '%u %g' "$exp/pub/n")"
	echo rootfile >"$mnt/pub/r"
	same "nobody: sticky directory protects root's file" \
		"Operation not permitted" \
		"$(nobody rm -f "$mnt/pub/r" 2>&1 | sed 's/.*: //')"
	same "nobody: chown to root" "Operation not permitted" \
		"$(nobody chown 0 "$mnt/pub/n" 2>&1 | sed 's/.*: //')"
	# a write by someone without CAP_FSETID clears the setuid bit, as
	# on a local disk: the write must reach the server as the writer
	echo x >"$mnt/pub/suid"
	chmod 4777 "$mnt/pub/suid"
	nobody sh -c "echo y >>'$mnt/pub/suid'"
	same "nobody: a write clears root's setuid bit" 777 \
		"$(stat -c %a "$exp/pub/suid")"
	# ... but without write access nobody may not clear it
	echo x >"$mnt/pub/suid2"
	chmod 4755 "$mnt/pub/suid2"
	same "nobody: chmod u-s of root's unwritable file" \
		"Operation not permitted" \
		"$(nobody chmod u-s "$mnt/pub/suid2" 2>&1 | sed 's/.*: //')"
	# ... nor where only an ACL takes write access away (mode 4777,
	# user nobody r-x): the server decides, not the mode bits
	echo x >"$exp/pub/suid3"
	chmod 4777 "$exp/pub/suid3"
	if "$FSOP" acl-read-only "$exp/pub/suid3" 65534 >/dev/null; then
		same "nobody: chmod u-s of root's file an ACL keeps it from writing" \
			"Operation not permitted" \
			"$(nobody chmod u-s "$mnt/pub/suid3" 2>&1 |
				sed 's/.*: //')"
		same "... the bit stays" 4777 "$(stat -c %a "$exp/pub/suid3")"
		# access(2) is the server's answer too: the mode bits say
		# anyone may write, the ACL says nobody may not
		same "nobody: test -w of a file an ACL keeps it from writing" \
			no "$(nobody sh -c "test -w '$mnt/pub/suid3' && echo yes ||
				echo no")"
		same "nobody: test -r of it" yes \
			"$(nobody sh -c "test -r '$mnt/pub/suid3' && echo yes ||
				echo no")"
	else
		say "# skip the ACL check: no POSIX ACLs on $exp"
	fi
	same "nobody: the setuid bit stays" 4755 \
		"$(stat -c %a "$exp/pub/suid2")"
else
	say "# skip unprivileged-user checks: not root or no setpriv"
fi

# ---- read-only mount ----

unmount
exit_status "$fuse_pid"
same "dafs-fuse exits 0 on fusermount3 -u" 0 "$status"
fuse_pid=
check "dafs-fuse log is free of sanitizer reports" sanitizer_free "$tmp/fuse.log"

mount_fuse -o ro
same "-o ro: reads" hello "$(cat "$mnt/hello" 2>&1)"
same "-o ro: writes fail with EROFS" "Read-only file system" \
	"$( (echo x >"$mnt/hello") 2>&1 | sed 's/.*: //')"
same "-o ro: creates fail with EROFS" "Read-only file system" \
	"$(touch "$mnt/new" 2>&1 | sed 's/.*: //')"
unmount
exit_status "$fuse_pid"
same "dafs-fuse -o ro exits 0 on fusermount3 -u" 0 "$status"
fuse_pid=

# ---- server loss: EIO in bounded time, and the mount still unmounts ----

mount_fuse -o server_timeout=2
same "mounted again: reads" hello "$(cat "$mnt/hello" 2>&1)"
kill -9 "$dafsd_pid"
wait "$dafsd_pid" 2>/dev/null
dafsd_pid=
start=$(date +%s)
same "server gone: ls fails with EIO" "Input/output error" \
	"$(timeout 60 ls "$mnt/tree" 2>&1 >/dev/null | sed 's/.*: //')"
took=$(($(date +%s) - start))
check "... within 2 x server_timeout and a margin (${took}s)" \
	test "$took" -le 10
same "... and so does a new name" "Input/output error" \
	"$(timeout 60 cat "$mnt/never-seen" 2>&1 | sed 's/.*: //')"
unmount
exit_status "$fuse_pid"
same "dafs-fuse exits 0 on fusermount3 -u with the server gone" 0 "$status"
fuse_pid=
check "not mounted any more" test "$(mounted; echo $?)" -ne 0
