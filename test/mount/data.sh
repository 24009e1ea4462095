#!/bin/bash
# data.sh - the mount suite's heavy half (meson test mount-data): a dafsd
# and a dafs-fuse of its own, and on the mount the work that moves a lot
# of data or touches many files, each compared byte for byte with the
# same data on a local disk (and on the server's disk):
#
#   dafs-verify, 100,000 random operations, beside a second run on other
#   files and a control run on a local directory with the same seed;
#   directory listings read after changes made since their opendir;
#   cp -a of a 1 GiB file; cp -a, diff -r and tar of 10,000 small files;
#   a C program built with make; postmark.
#
# Needs $DAFSD, $DAFS_FUSE, $DAFS_VERIFY and $FSOP (meson sets them). Skips (77)
# without /dev/fuse or fusermount3. $DAFS_VERIFY_SEED replays a verifier
# run (the seed is random otherwise, and printed).
set -u

: "${DAFSD:?DAFSD must name the dafsd binary}"
: "${DAFS_FUSE:?DAFS_FUSE must name the dafs-fuse binary}"
: "${DAFS_VERIFY:?DAFS_VERIFY must name the dafs-verify binary}"
: "${FSOP:?FSOP must name the fsop helper}"

. "$(dirname "$0")/lib.sh"
require_fuse
mount_setup data
start_dafsd
if ! mount_fuse; then
	failures=1
	exit 1
fi
ok "mounted $url on $mnt"

# ---- listings read after changes (found by dafs-verify) ----

# A directory opened, then a file in it grown, then the directory read:
# the listing must not take the kernel back to the old size. A name
# unlinked after opendir must not be found by stat once the directory is
# read, nor listed after rewinddir. Local disk first, as the control.
section "readdir after changes"
for where in "$src" "$mnt"; do
	mkdir "$where/rd"
	for i in $(seq 40); do
		echo "$i" >"$where/rd/n$i"
	done
	same "readdir after a write, $where: stat sees the new size" "" \
		"$("$FSOP" readdir-size "$where/rd" n7)"
	same "... a name unlinked after opendir: stat fails after readdir, and rewinddir drops it" "" \
		"$("$FSOP" readdir-unlink "$where/rd" n8)"
	rm -rf "$where/rd"
done

# ---- dafs-verify ----

section "dafs-verify"
seed=${DAFS_VERIFY_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
ops=100000
local_dir=$tmp/local
mkdir "$local_dir" "$mnt/verify"

# verify NAME ARGS...: run dafs-verify, its output in $tmp/NAME.out;
# prints the output on failure
verify() {
	local name=$1 rc
	shift
	"$DAFS_VERIFY" "$@" >"$tmp/$name.out" 2>&1
	rc=$?
	[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/$name.out" | head -60
	return $rc
}

# The verifier itself, on the local disk: a byte changed behind its back
# is caught and reported, and a seed replays the same operations.
"$DAFS_VERIFY" --seed 5 --ops 3000 --inject 500 --prefix inj \
	"$local_dir" >"$tmp/inject.out" 2>&1
same "dafs-verify: a byte changed behind its back fails the run" 1 $?
check "... reported with op, file, offset, expected and got bytes, seed" \
	grep -q -E '^dafs-verify: MISMATCH at op [0-9]+ .* of .*/inj-[0-9]+ at offset [0-9]+' \
	"$tmp/inject.out"
check "... and the seed" grep -q 'seed 5; replay: dafs-verify --seed 5' \
	"$tmp/inject.out"
rm -f "$local_dir"/inj-*
verify replay1 --seed 7 --ops 2000 -v --prefix r1 "$local_dir" &&
	verify replay2 --seed 7 --ops 2000 -v --prefix r2 "$local_dir"
same "dafs-verify -v logs 2,000 operations" 2000 \
	"$(grep -c '^op ' "$tmp/replay1.out")"
same "... and one seed replays the same operations" \
	"$(grep '^op ' "$tmp/replay1.out" | md5sum)" \
	"$(grep '^op ' "$tmp/replay2.out" | sed 's/ r2-/ r1-/g' | md5sum)"

# At the same time: the control, with the seed of the main run on a local
# directory; the main run on the mount; a second process on other files
# of the same directory of the mount.
say "# dafs-verify seed $seed (DAFS_VERIFY_SEED=$seed replays it)"
verify control --seed "$seed" --ops $ops "$local_dir" &
control=$!
verify second --seed $((seed + 1)) --ops 20000 --prefix w "$mnt/verify" &
second=$!
check "dafs-verify on the mount: $ops ops, seed $seed" \
	verify mount --seed "$seed" --ops $ops --prefix v "$mnt/verify"
say "# mount: $(grep 'no mismatch' "$tmp/mount.out")"
wait $second
same "... beside a second dafs-verify (prefix w, 20,000 ops, seed $((seed + 1)))" 0 $?
wait $control
same "dafs-verify on a local directory, the control: $ops ops, seed $seed" 0 $?
say "# local: $(grep 'no mismatch' "$tmp/control.out")"
same "both removed their files, on the server's disk too" "" \
	"$(ls -A "$mnt/verify" "$exp/verify" | grep -v -e '^$' -e ':$')"
check "dafs-fuse still serves the mount" kill -0 "$fuse_pid"
rm -rf "$local_dir" "$mnt/verify"

# ---- a 1 GiB file ----

section "1 GiB"
head -c 1G /dev/urandom >"$src/big"
cp -a "$src/big" "$mnt/big"
check "cp -a of a 1 GiB file: cmp" cmp "$src/big" "$mnt/big"
check "... the server's disk has the same bytes" cmp "$src/big" "$exp/big"
same "... size and mtime" "$(stat -c '%s %y' "$src/big")" \
	"$(stat -c '%s %y' "$mnt/big")"
# coreutils cp uses copy_file_range, which dafs-fuse has the server do
cp "$mnt/big" "$mnt/big.copy"
check "cp within the mount (copy_file_range): cmp" \
	cmp "$src/big" "$mnt/big.copy"
rm -f "$src/big" "$mnt/big" "$mnt/big.copy"
check "rm: gone from the server's disk" test ! -e "$exp/big" -a ! -e "$exp/big.copy"

# ---- 10,000 small files: cp -a, diff -r, tar ----

section "10,000 files"
# 100 directories with a subdirectory each, 10,000 files of 0-4,000
# bytes, a few symbolic links and modes, a timestamp with nanoseconds
awk -v root="$src/t10k" 'BEGIN {
	srand(11);
	for (d = 0; d < 100; d++)
		system("mkdir -p " root "/d" d "/s");
	for (i = 0; i < 10000; i++) {
		f = sprintf("%s/d%d/%sf%05d", root, i % 100,
			    (i % 4 == 0) ? "s/" : "", i);
		n = int(rand() * 4000);
		s = "";
		for (j = 0; j < n; j += 16)
			s = s sprintf("%08x%08x", int(rand() * 2^31), i);
		printf "%s", substr(s, 1, n) > f;
		close(f);
	}
}'
for i in 1 2 3; do
	ln -s "../d$i/f0000$i" "$src/t10k/d0/link$i"
done
chmod 600 "$src/t10k/d7/f00007"
chmod 750 "$src/t10k/d8"
touch -d '2001-02-03 04:05:06.123456789' "$src/t10k/d9/f00009"
meta() {
	(cd "$1" && find . -printf '%p %y %m %s %U %G %n %T@ %l\n' | sort)
}

cp -a "$src/t10k" "$mnt/t10k"
check "cp -a of 10,000 files: diff -r" diff -r "$src/t10k" "$mnt/t10k"
check "... the server's disk has the same tree" \
	diff -r "$src/t10k" "$exp/t10k"
same "... names, types, modes, sizes, owners, links, mtimes" \
	"$(meta "$src/t10k")" "$(meta "$mnt/t10k")"
same "... 10,000 files, 201 directories, 3 links" 10204 \
	"$(find "$mnt/t10k" | wc -l)"

# tar: extract into the mount, re-create from it, extract that locally
tar -C "$src" -cf "$tmp/t10k.tar" t10k
mkdir "$mnt/x" "$tmp/re"
check "tar x of 10,000 files into the mount" \
	tar -C "$mnt/x" -xpf "$tmp/t10k.tar"
check "tar c of them from the mount" tar -C "$mnt/x" -cf "$tmp/re.tar" t10k
same "... lists what the original archive lists" \
	"$(tar -tvf "$tmp/t10k.tar" | sort)" "$(tar -tvf "$tmp/re.tar" | sort)"
tar -C "$tmp/re" -xpf "$tmp/re.tar"
check "... and extracts to the same bytes: diff -r" \
	diff -r "$src/t10k" "$tmp/re/t10k"
rm -rf "$mnt/t10k" "$mnt/x" "$tmp/re" "$tmp/re.tar" "$tmp/t10k.tar"
check "rm -rf of both trees" test ! -e "$exp/t10k" -a ! -e "$exp/x"

# ---- make ----

section "make"
# write_project DIR: a Makefile and two .c files
write_project() {
	mkdir -p "$1"
	cat >"$1/Makefile" <<'EOF'
CFLAGS = -O2 -Wall -Werror

hello: main.o greet.o
	$(CC) -o $@ main.o greet.o

main.o: main.c greet.h
greet.o: greet.c greet.h

clean:
	rm -f hello main.o greet.o
EOF
	cat >"$1/greet.h" <<'EOF'
int greet(const char *who);
EOF
	cat >"$1/greet.c" <<'EOF'
#include <stdio.h>
#include "greet.h"

int greet(const char *who)
{
	return printf("hello, %s: %d\n", who, 6 * 7) < 0;
}
EOF
	cat >"$1/main.c" <<'EOF'
#include "greet.h"

int main(void)
{
	return greet("mount");
}
EOF
}
if command -v make >/dev/null && command -v cc >/dev/null; then
	write_project "$mnt/proj"
	write_project "$src/proj"
	check "make on the mount" make -s -C "$mnt/proj"
	same "... the program runs" "hello, mount: 42" "$("$mnt/proj/hello")"
	make -s -C "$src/proj"
	check "... the same binary as built on a local disk" \
		cmp "$src/proj/hello" "$mnt/proj/hello"
	check "make -q: up to date" make -q -C "$mnt/proj"
	touch "$mnt/proj/greet.c"
	check "make -q after touch greet.c: out of date" \
		test "$(make -q -C "$mnt/proj"; echo $?)" -eq 1
	same "make rebuilds greet.o and hello only" \
		"cc -O2 -Wall -Werror   -c -o greet.o greet.c|cc -o hello main.o greet.o" \
		"$(make --no-print-directory -C "$mnt/proj" | tr '\n' '|' | sed 's/|$//')"
	make -s -C "$mnt/proj" clean
	same "make clean leaves the sources" "Makefile greet.c greet.h main.c" \
		"$(ls "$mnt/proj" | tr '\n' ' ' | sed 's/ $//')"
	rm -rf "$mnt/proj"
else
	say "# skip make: make or cc missing"
fi

# ---- postmark ----

section "postmark"
if command -v postmark >/dev/null; then
	mkdir "$mnt/pm"
	printf '%s\n' "set location $mnt/pm" "set number 500" \
		"set transactions 5000" "set size 500 20000" \
		"set subdirectories 10" "set seed 42" run quit |
		postmark >"$tmp/postmark.out" 2>&1
	same "postmark: 5,000 transactions on 500 files complete" 0 $?
	check "... its report" grep -q 'seconds of transactions' \
		"$tmp/postmark.out"
	grep -E 'seconds (total|of transactions)' "$tmp/postmark.out" |
		sed 's/^[[:space:]]*/# postmark: /'
	same "... and it removed its files" "" "$(ls -A "$mnt/pm")"
	rmdir "$mnt/pm"
else
	say "# skip postmark: not installed (Debian package postmark)"
fi

# ---- the end: unmount cleanly ----

unmount
exit_status "$fuse_pid"
same "dafs-fuse exits 0 on fusermount3 -u" 0 "$status"
fuse_pid=
check "dafs-fuse log is free of sanitizer reports" sanitizer_free "$tmp/fuse.log"
