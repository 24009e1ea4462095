#!/bin/bash
# helper.sh - mount.fuse.dafs, the mount(8) helper: called as mount(8)
# calls it (fstab's own options dropped, the rest reaching dafs-fuse);
# "mount -t fuse.dafs" and an fstab line (a private fstab file given to
# mount -T, so /etc/fstab is never touched). mount(8) looks for helpers in
# /sbin only: where the helper is not installed there, the test puts a
# copy of the build's helper at /sbin/mount.fuse.dafs for its own run and
# removes it at exit (root only; otherwise those two checks are skipped).
#
# Needs $DAFSD, $DAFS_FUSE and $MOUNT_HELPER (meson sets them). Skips (77)
# without /dev/fuse.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

require_fuse
mount_setup helper
say "TAP version 13"
start_dafsd
echo "hello from the export" >"$exp/hello"
sbin_helper=
placed=0

cleanup_helper() {
	local rc=$?
	unmount
	[ $placed = 1 ] && rm -f "$sbin_helper"
	cleanup "$rc"
}
trap cleanup_helper EXIT

fstype() {
	awk -v m="$mnt" '$2 == m {print $3}' /proc/mounts
}

export DAFS_FUSE
section "the helper as mount(8) calls it"
"$MOUNT_HELPER" "$url" "$mnt" -o rw,noatime,_netdev,nofail,x-systemd.automount,attr_timeout=2 \
	>"$tmp/helper.out" 2>&1
rc=$?
same "mount.fuse.dafs URL DIR -o ... returns 0" 0 "$rc"
same "... mounted as fuse.dafs" fuse.dafs "$(fstype)"
same "... and the export reads" "hello from the export" "$(cat "$mnt/hello")"
check "... noatime reached the kernel mount" \
	grep -q "$mnt .*noatime" /proc/mounts
unmount
check "unmounted by fusermount3 -u" sh -c "! grep -q ' $mnt ' /proc/mounts"
"$MOUNT_HELPER" "$url" "$mnt" -o bogus_option=1 >"$tmp/bad.out" 2>&1
check "an unknown option fails the mount with a message" \
	test $? -ne 0 -a -s "$tmp/bad.out"
check "... and mounts nothing" sh -c "! grep -q ' $mnt ' /proc/mounts"

section "mount -t fuse.dafs and an fstab line"
sbin_helper=/sbin/mount.fuse.dafs
if [ -e "$sbin_helper" ]; then
	say "# $sbin_helper is installed: testing it"
elif [ "$(id -u)" = 0 ] && cp "$MOUNT_HELPER" "$sbin_helper" 2>/dev/null; then
	placed=1
	# the copy finds this build's dafs-fuse through $DAFS_FUSE
fi
if [ -e "$sbin_helper" ]; then
	mount -t fuse.dafs -o ro,attr_timeout=1 "$url" "$mnt" 2>"$tmp/mount.err"
	same "mount -t fuse.dafs URL DIR" 0 "$?"
	same "... reads" "hello from the export" "$(cat "$mnt/hello")"
	check "... ro reached the mount" sh -c "! touch '$mnt/new' 2>/dev/null"
	unmount
	printf '%s %s fuse.dafs _netdev,noauto,attr_timeout=2 0 0\n' \
		"$url" "$mnt" >"$tmp/fstab"
	mount -T "$tmp/fstab" "$mnt" 2>"$tmp/mount.err"
	same "mount -T FSTAB DIR with a fuse.dafs line" 0 "$?"
	same "... reads" "hello from the export" "$(cat "$mnt/hello")"
	unmount
else
	say "# skip mount -t and fstab: no $sbin_helper and not root"
fi
echo "1..$checks"
