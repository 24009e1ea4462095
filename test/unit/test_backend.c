/*
 * test_backend.c - the server's storage side: SipHash, the export backend
 * (operations, errors, confinement, handles, readdir), per-thread
 * credentials and the LMDB state.
 *
 * Every test works in a fresh directory under /tmp holding "export" (the
 * exported tree) and "outside" (what the export must never reach). The
 * credential and mount tests need root and say so when skipped.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "proto/wire_i.h"
#include "server/backend_i.h"
#include "server/creds_i.h"
#include "server/state_i.h"

static char tmp[PATH_MAX], expdir[PATH_MAX], outdir[PATH_MAX];
static struct dafs_export *ex;
static int root; /* O_PATH fd of the export root, from its handle */

static const uint8_t key1[16] = {1, 2,	3,  4,	5,  6,	7,  8,
				 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t key2[16] = {16, 15, 14, 13, 12, 11, 10, 9,
				 8,  7,	 6,  5,	 4,  3,	 2,  1};

/* ---- helpers ---- */

static void xpath(char *buf, const char *dir, const char *name)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s", dir, name);

	ck_assert(n > 0 && n < PATH_MAX);
}

static void put_file(const char *dir, const char *name, const char *data,
		     mode_t mode)
{
	char p[PATH_MAX];
	int fd;

	xpath(p, dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* The whole content of @dir/@name, or NULL if it does not exist. */
static char *get_file(const char *dir, const char *name)
{
	static char buf[4096];
	char p[PATH_MAX];
	ssize_t n;
	int fd;

	xpath(p, dir, name);
	fd = open(p, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	return buf;
}

static int exists(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	xpath(p, dir, name);
	return lstat(p, &st) == 0;
}

/* Look @name up in @dirfd and resolve its handle: an O_PATH fd. */
static int walk(int dirfd, const char *name)
{
	dafs_fh_t fh;
	int err = dafs_be_lookup(ex, dirfd, name, &fh, NULL);

	if (err)
		return err;
	return dafs_be_resolve(ex, &fh);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void open_export(const uint8_t *key)
{
	dafs_fh_t fh;

	ck_assert_int_eq(dafs_export_open("test", expdir, 1, key, &ex), 0);
	dafs_export_root(ex, &fh);
	root = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(root, 0);
}

static void close_export(void)
{
	if (root >= 0)
		close(root);
	root = -1;
	dafs_export_close(ex);
	ex = NULL;
}

/*
 * A failed check ends the test's child at once, without its teardown, so
 * each test case's tests work under one base directory that the runner
 * process removes after the case (an unchecked fixture).
 */
static char base[PATH_MAX];

static void base_setup(void)
{
	snprintf(base, sizeof(base), "/tmp/dafs-be-XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
}

static void base_teardown(void)
{
	nftw(base, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void setup(void)
{
	xpath(tmp, base, "t-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	xpath(expdir, tmp, "export");
	xpath(outdir, tmp, "outside");
	ck_assert_int_eq(mkdir(expdir, 0755), 0);
	ck_assert_int_eq(mkdir(outdir, 0755), 0);
	put_file(outdir, "secret", "outside data\n", 0644);
	open_export(key1);
}

static void teardown(void)
{
	dafs_creds_reset();
	if (ex)
		close_export();
	nftw(tmp, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int is_root_user(void)
{
	if (geteuid() == 0)
		return 1;
	fprintf(stderr, "# skipped: needs root\n");
	return 0;
}

/* ---- SipHash ---- */

START_TEST(siphash_vectors)
{
	/* From the SipHash paper and its reference vectors: key 00..0f,
	 * message 00..(n-1); the 64-bit output read little-endian. */
	static const struct {
		size_t n;
		uint64_t out;
	} v[] = {
		{0, 0x726fdb47dd0e0e31ull}, {1, 0x74f839c593dc67fdull},
		{2, 0x0d6c8009d9a94f5aull}, {7, 0xab0200f58b01d137ull},
		{8, 0x93f5f5799a932462ull}, {15, 0xa129ca6149be45e5ull},
	};
	uint8_t key[16], msg[16];
	size_t i;

	for (i = 0; i < 16; i++)
		key[i] = msg[i] = (uint8_t)i;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		ck_assert_uint_eq(dafs_siphash(key, msg, v[i].n), v[i].out);
	key[0] ^= 1;
	ck_assert_uint_ne(dafs_siphash(key, msg, 15), 0xa129ca6149be45e5ull);
}
END_TEST

/* ---- operations ---- */

START_TEST(create_read_write)
{
	char buf[64];
	dafs_fh_t fh, fh2;
	dafs_attr_t a, a2;
	int fd, f;

	/* A new file, exclusively, with the mode exactly as given. */
	fd = dafs_be_create(ex, root, "hello", DAFS_O_RDWR | DAFS_O_EXCL, 0640,
			    &fh, &a);
	ck_assert_int_ge(fd, 0);
	ck_assert(S_ISREG(a.mode));
	ck_assert_uint_eq(a.mode & 07777, 0640);
	ck_assert_uint_le(fh.len, DAFS_FH_MAX);
	ck_assert_int_eq(write(fd, "hello, world", 12), 12);
	close(fd);
	ck_assert_str_eq(get_file(expdir, "hello"), "hello, world");

	/* Exclusive again: EEXIST. Not exclusive: opens what is there. */
	ck_assert_int_eq(dafs_be_create(ex, root, "hello",
					DAFS_O_RDWR | DAFS_O_EXCL, 0600, NULL,
					NULL),
			 -EEXIST);
	fd = dafs_be_create(ex, root, "hello", DAFS_O_RDONLY, 0600, &fh2, &a2);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 12);
	close(fd);
	ck_assert_uint_eq(a2.ino, a.ino);
	ck_assert_mem_eq(fh2.data, fh.data, fh.len);

	/* Open by handle for reading and with append. */
	f = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(f, 0);
	fd = dafs_be_open(f, DAFS_O_WRONLY | DAFS_O_APPEND, &a2);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "!", 1), 1);
	close(fd);
	ck_assert_str_eq(get_file(expdir, "hello"), "hello, world!");
	fd = dafs_be_open(f, DAFS_O_RDONLY, &a2);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), 13);
	ck_assert_int_eq(write(fd, "x", 1), -1); /* opened read-only */
	close(fd);
	ck_assert_uint_eq(a2.size, 13);
	ck_assert_uint_ne(a2.change, a.change);

	/* O_TRUNC, on open and on create. */
	fd = dafs_be_open(f, DAFS_O_WRONLY | DAFS_O_TRUNC, &a2);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_uint_eq(a2.size, 0);
	put_file(expdir, "hello", "again", 0640);
	fd = dafs_be_create(ex, root, "hello", DAFS_O_WRONLY | DAFS_O_TRUNC,
			    0600, NULL, &a2);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_str_eq(get_file(expdir, "hello"), "");

	/* Bad flags and modes. */
	ck_assert_int_eq(dafs_be_open(f, 0x3, NULL), -EINVAL);
	ck_assert_int_eq(dafs_be_open(f, 0x8000, NULL), -EINVAL);
	ck_assert_int_eq(dafs_be_create(ex, root, "dir", DAFS_O_RDWR,
					S_IFDIR | 0755, NULL, NULL),
			 -EINVAL);
	close(f);
}
END_TEST

START_TEST(lookup_getattr)
{
	dafs_fh_t fh, rfh;
	dafs_attr_t a, ra;
	int d, f;

	ck_assert_int_eq(dafs_be_mkdir(ex, root, "d", 0750, &fh, &a), 0);
	ck_assert(S_ISDIR(a.mode));
	ck_assert_uint_eq(a.mode & 07777, 0750);
	put_file(expdir, "d/f", "12345", 0644);

	d = walk(root, "d");
	ck_assert_int_ge(d, 0);
	ck_assert_int_eq(dafs_be_lookup(ex, d, "f", &fh, &a), 0);
	ck_assert(S_ISREG(a.mode));
	ck_assert_uint_eq(a.size, 5);
	ck_assert_uint_eq(a.nlink, 1);
	f = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_getattr(f, &ra), 0);
	ck_assert_uint_eq(ra.ino, a.ino);
	ck_assert_uint_eq(ra.change, a.change);

	/* "." is the directory, ".." its parent. */
	ck_assert_int_eq(dafs_be_lookup(ex, d, ".", NULL, &a), 0);
	ck_assert_int_eq(dafs_be_getattr(d, &ra), 0);
	ck_assert_uint_eq(a.ino, ra.ino);
	ck_assert_int_eq(dafs_be_lookup(ex, d, "..", &fh, &a), 0);
	dafs_export_root(ex, &rfh);
	ck_assert_int_eq(dafs_be_getattr(root, &ra), 0);
	ck_assert_uint_eq(a.ino, ra.ino);
	ck_assert_uint_eq(fh.len, rfh.len);
	ck_assert_mem_eq(fh.data, rfh.data, fh.len);

	/* The errors a user sees. */
	ck_assert_int_eq(dafs_be_lookup(ex, d, "nope", &fh, &a), -ENOENT);
	ck_assert_int_eq(dafs_be_lookup(ex, f, "x", &fh, &a), -ENOTDIR);
	ck_assert_int_eq(dafs_be_lookup(ex, f, "..", &fh, &a), -ENOTDIR);
	ck_assert_int_eq(dafs_be_mkdir(ex, root, "d", 0755, NULL, NULL),
			 -EEXIST);
	ck_assert_int_eq(dafs_be_mkdir(ex, f, "x", 0755, NULL, NULL), -ENOTDIR);
	ck_assert_int_eq(dafs_be_open(d, DAFS_O_RDWR, NULL), -EISDIR);
	ck_assert_int_eq(
		dafs_be_create(ex, root, "d", DAFS_O_RDONLY, 0644, NULL, NULL),
		-EISDIR);
	close(f);
	close(d);
}
END_TEST

START_TEST(bad_names)
{
	char longname[DAFS_NAME_MAX + 2];
	const char *bad[] = {"",  "a/b", "/etc",  "../outside",
			     ".", "..",	 longname};
	size_t i;

	memset(longname, 'n', DAFS_NAME_MAX + 1);
	longname[DAFS_NAME_MAX + 1] = '\0';
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(dafs_be_create(ex, root, bad[i], DAFS_O_RDWR,
						0644, NULL, NULL),
				 -EINVAL);
		ck_assert_int_eq(
			dafs_be_mkdir(ex, root, bad[i], 0755, NULL, NULL),
			-EINVAL);
		ck_assert_int_eq(dafs_be_remove(root, bad[i]), -EINVAL);
		ck_assert_int_eq(dafs_be_rmdir(root, bad[i]), -EINVAL);
		ck_assert_int_eq(
			dafs_be_symlink(ex, root, bad[i], "t", NULL, NULL),
			-EINVAL);
		ck_assert_int_eq(dafs_be_rename(root, "x", root, bad[i], 0),
				 -EINVAL);
		if (i < 4 || i == 6)
			ck_assert_int_eq(
				dafs_be_lookup(ex, root, bad[i], NULL, NULL),
				-EINVAL);
	}
	/* 255 bytes is the longest name and works. */
	longname[DAFS_NAME_MAX] = '\0';
	ck_assert_int_eq(dafs_be_mkdir(ex, root, longname, 0755, NULL, NULL),
			 0);
	ck_assert(exists(expdir, longname));
}
END_TEST

START_TEST(setattr_ops)
{
	dafs_setattr_t sa;
	dafs_fh_t fh;
	dafs_attr_t a, b;
	int fd, f;

	fd = dafs_be_create(ex, root, "f", DAFS_O_RDWR, 0644, &fh, &a);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "0123456789", 10), 10);
	close(fd);
	f = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(f, 0);

	memset(&sa, 0, sizeof(sa));
	sa.mask = DAFS_SET_SIZE | DAFS_SET_MODE | DAFS_SET_UID | DAFS_SET_GID |
		  DAFS_SET_ATIME | DAFS_SET_MTIME;
	sa.size = 4;
	sa.mode = 0600;
	sa.uid = 1234;
	sa.gid = 4321;
	sa.atime.sec = 1000000000;
	sa.atime.nsec = 5;
	sa.mtime.sec = 1200000000;
	sa.mtime.nsec = 7;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, &b), 0);
	ck_assert_uint_eq(b.size, 4);
	ck_assert_uint_eq(b.mode & 07777, 0600);
	ck_assert(S_ISREG(b.mode));
	if (geteuid() == 0) {
		ck_assert_uint_eq(b.uid, 1234);
		ck_assert_uint_eq(b.gid, 4321);
	}
	ck_assert_int_eq(b.atime.sec, 1000000000);
	ck_assert_uint_eq(b.atime.nsec, 5);
	ck_assert_int_eq(b.mtime.sec, 1200000000);
	ck_assert_uint_eq(b.mtime.nsec, 7);
	ck_assert_uint_ne(b.change, a.change);

	/* Only mtime to now: atime stays. */
	sa.mask = DAFS_SET_MTIME_NOW;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, &a), 0);
	ck_assert_int_gt(a.mtime.sec, 1200000000);
	ck_assert_int_eq(a.atime.sec, 1000000000);
	ck_assert_uint_eq(a.atime.nsec, 5);
	ck_assert_str_eq(get_file(expdir, "f"), "0123");

	/* Growing fills with zeros. */
	sa.mask = DAFS_SET_SIZE;
	sa.size = 8;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, &a), 0);
	ck_assert_uint_eq(a.size, 8);

	sa.mask = DAFS_SET_MODE;
	sa.mode = 010000;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, NULL), -EINVAL);
	sa.mask = DAFS_SET_ATIME | DAFS_SET_ATIME_NOW;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, NULL), -EINVAL);
	sa.mask = 0x100;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, NULL), -EINVAL);

	/* A directory has no size to set. */
	sa.mask = DAFS_SET_SIZE;
	sa.size = 0;
	ck_assert_int_eq(dafs_be_setattr(root, &sa, NULL), -EISDIR);
	close(f);
}
END_TEST

START_TEST(remove_rename_link)
{
	dafs_attr_t a;
	dafs_fh_t fh;
	int f, d;

	put_file(expdir, "a", "A", 0644);
	put_file(expdir, "b", "B", 0644);
	ck_assert_int_eq(dafs_be_mkdir(ex, root, "dir", 0755, &fh, NULL), 0);
	put_file(expdir, "dir/in", "in", 0644);
	d = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(d, 0);

	ck_assert_int_eq(dafs_be_remove(root, "nope"), -ENOENT);
	ck_assert_int_eq(dafs_be_remove(root, "dir"), -EISDIR);
	ck_assert_int_eq(dafs_be_rmdir(root, "a"), -ENOTDIR);
	ck_assert_int_eq(dafs_be_rmdir(root, "dir"), -ENOTEMPTY);
	ck_assert_int_eq(dafs_be_rmdir(root, "nope"), -ENOENT);

	/* rename: replace, no-replace, exchange, into a directory. */
	ck_assert_int_eq(
		dafs_be_rename(root, "a", root, "b", DAFS_RENAME_NOREPLACE),
		-EEXIST);
	ck_assert_int_eq(
		dafs_be_rename(root, "a", root, "b", DAFS_RENAME_EXCHANGE), 0);
	ck_assert_str_eq(get_file(expdir, "a"), "B");
	ck_assert_str_eq(get_file(expdir, "b"), "A");
	ck_assert_int_eq(dafs_be_rename(root, "a", root, "b", 0), 0);
	ck_assert(!exists(expdir, "a"));
	ck_assert_str_eq(get_file(expdir, "b"), "B");
	ck_assert_int_eq(dafs_be_rename(root, "b", d, "moved", 0), 0);
	ck_assert_str_eq(get_file(expdir, "dir/moved"), "B");
	ck_assert_int_eq(dafs_be_rename(root, "nope", root, "x", 0), -ENOENT);
	ck_assert_int_eq(dafs_be_rename(root, "dir", d, "x", 0), -EINVAL);
	ck_assert_int_eq(dafs_be_rename(d, "in", d, "moved", 3), -EINVAL);

	/* link: a second name, nlink 2. */
	ck_assert_int_eq(dafs_be_lookup(ex, d, "in", &fh, NULL), 0);
	f = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_link(f, root, "hard", &a), 0);
	ck_assert_uint_eq(a.nlink, 2);
	ck_assert_str_eq(get_file(expdir, "hard"), "in");
	ck_assert_int_eq(dafs_be_link(f, root, "hard", &a), -EEXIST);
	ck_assert_int_eq(dafs_be_link(d, root, "dirlink", &a), -EPERM);

	ck_assert_int_eq(dafs_be_remove(d, "in"), 0);
	ck_assert_int_eq(dafs_be_remove(d, "moved"), 0);
	ck_assert_int_eq(dafs_be_rmdir(root, "dir"), 0);
	ck_assert(!exists(expdir, "dir"));
	close(f);
	close(d);
}
END_TEST

START_TEST(symlink_mknod_statfs_xattr)
{
	char buf[64];
	dafs_statfs_t sf;
	dafs_attr_t a;
	dafs_fh_t fh;
	int s, f;

	ck_assert_int_eq(
		dafs_be_symlink(ex, root, "ln", "some/target", &fh, &a), 0);
	ck_assert(S_ISLNK(a.mode));
	s = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(dafs_be_readlink(s, buf, sizeof(buf)), 11);
	ck_assert_str_eq(buf, "some/target");
	ck_assert_int_eq(dafs_be_readlink(s, buf, 11), -ERANGE);
	ck_assert_int_eq(dafs_be_readlink(root, buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(dafs_be_symlink(ex, root, "ln", "x", NULL, NULL),
			 -EEXIST);
	ck_assert_int_eq(dafs_be_open(s, DAFS_O_RDONLY, NULL), -ELOOP);

	ck_assert_int_eq(
		dafs_be_mknod(ex, root, "fifo", S_IFIFO | 0600, 0, NULL, &a),
		0);
	ck_assert(S_ISFIFO(a.mode));
	ck_assert_int_eq(
		dafs_be_mknod(ex, root, "sock", S_IFSOCK | 0600, 0, &fh, &a),
		0);
	ck_assert(S_ISSOCK(a.mode));
	ck_assert_int_eq(
		dafs_be_mknod(ex, root, "dir", S_IFDIR | 0600, 0, NULL, NULL),
		-EINVAL);
	/* The server never opens a FIFO or socket for I/O (it would block). */
	f = walk(root, "fifo");
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_open(f, DAFS_O_RDONLY, NULL), -EINVAL);
	ck_assert_int_eq(dafs_be_create(ex, root, "fifo", DAFS_O_WRONLY, 0600,
					NULL, NULL),
			 -EINVAL);
	close(f);

	ck_assert_int_eq(dafs_be_statfs(root, &sf), 0);
	ck_assert_uint_gt(sf.blocks, 0);
	ck_assert_uint_gt(sf.bsize, 0);
	ck_assert_uint_eq(sf.namemax, 255);

	put_file(expdir, "x", "", 0644);
	f = walk(root, "x");
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_setxattr(f, "user.k", "val", 3, 0), 0);
	ck_assert_int_eq(dafs_be_setxattr(f, "user.k", "v", 1, XATTR_CREATE),
			 -EEXIST);
	ck_assert_int_eq(dafs_be_getxattr(f, "user.k", NULL, 0), 3);
	ck_assert_int_eq(dafs_be_getxattr(f, "user.k", buf, sizeof(buf)), 3);
	ck_assert_mem_eq(buf, "val", 3);
	ck_assert_int_eq(dafs_be_getxattr(f, "user.k", buf, 1), -ERANGE);
	ck_assert_int_eq(dafs_be_listxattr(f, buf, sizeof(buf)), 7);
	ck_assert_str_eq(buf, "user.k");
	ck_assert_int_eq(dafs_be_removexattr(f, "user.k"), 0);
	ck_assert_int_eq(dafs_be_getxattr(f, "user.k", buf, sizeof(buf)),
			 -ENODATA);
	/* A symlink's xattrs are its own, never its target's. */
	ck_assert_int_eq(dafs_be_getxattr(s, "user.k", buf, sizeof(buf)),
			 -ENODATA);
	close(f);
	close(s);
}
END_TEST

/* ---- confinement ---- */

START_TEST(root_dotdot_stays)
{
	dafs_fh_t rfh, fh;
	dafs_attr_t a, ra;
	int fd;

	dafs_export_root(ex, &rfh);
	ck_assert_int_eq(dafs_be_lookup(ex, root, "..", &fh, &a), 0);
	ck_assert_int_eq(dafs_be_getattr(root, &ra), 0);
	ck_assert_uint_eq(a.ino, ra.ino);
	ck_assert_uint_eq(fh.len, rfh.len);
	ck_assert_mem_eq(fh.data, rfh.data, fh.len);
	/* And again from there: still the root, "outside" never shows. */
	fd = walk(root, "..");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_lookup(ex, fd, "outside", &fh, &a), -ENOENT);
	ck_assert_int_eq(dafs_be_lookup(ex, fd, "..", &fh, &a), 0);
	ck_assert_uint_eq(a.ino, ra.ino);
	close(fd);
}
END_TEST

START_TEST(symlinks_do_not_escape)
{
	char target[PATH_MAX], passwd[4096];
	dafs_attr_t a;
	struct stat pw0, pw1;
	const char *names[] = {"abs", "rel", "loop1", "dangling", "pw"};
	size_t i;
	int fd, s;

	ck_assert_int_eq(stat("/etc/passwd", &pw0), 0);
	fd = open("/etc/passwd", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read(fd, passwd, sizeof(passwd) - 1), 0);
	close(fd);

	/* Symlinks a local user (or a client) could have made. */
	xpath(target, outdir, "secret");
	ck_assert_int_eq(symlinkat(target, root, "abs"), 0);
	ck_assert_int_eq(symlinkat("../outside/secret", root, "rel"), 0);
	ck_assert_int_eq(symlinkat("loop2", root, "loop1"), 0);
	ck_assert_int_eq(symlinkat("loop1", root, "loop2"), 0);
	ck_assert_int_eq(symlinkat("../outside/new", root, "dangling"), 0);
	ck_assert_int_eq(symlinkat("/etc/passwd", root, "pw"), 0);
	ck_assert_int_eq(symlinkat("../../outside", root, "updir"), 0);

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *n = names[i];

		/* Looked up, they are symlinks themselves. */
		ck_assert_int_eq(dafs_be_lookup(ex, root, n, NULL, &a), 0);
		ck_assert(S_ISLNK(a.mode));
		ck_assert_uint_lt(a.size, 200);

		/* Nothing writes or creates through them. */
		ck_assert_int_eq(dafs_be_create(ex, root, n,
						DAFS_O_WRONLY | DAFS_O_TRUNC,
						0666, NULL, NULL),
				 -ELOOP);
		ck_assert_int_eq(dafs_be_create(ex, root, n,
						DAFS_O_WRONLY | DAFS_O_EXCL,
						0666, NULL, NULL),
				 -EEXIST);
		ck_assert_int_eq(dafs_be_mkdir(ex, root, n, 0777, NULL, NULL),
				 -EEXIST);
		ck_assert_int_eq(dafs_be_mknod(ex, root, n, S_IFIFO | 0666, 0,
					       NULL, NULL),
				 -EEXIST);
		s = walk(root, n);
		ck_assert_int_ge(s, 0);
		ck_assert_int_eq(
			dafs_be_open(s, DAFS_O_RDWR | DAFS_O_TRUNC, NULL),
			-ELOOP);
		ck_assert_int_eq(dafs_be_open(s, DAFS_O_RDONLY, NULL), -ELOOP);
		/* Not a directory to look into, whatever it points at. */
		ck_assert_int_eq(dafs_be_lookup(ex, s, "passwd", NULL, NULL),
				 -ENOTDIR);
		close(s);
	}
	ck_assert_int_eq(dafs_be_lookup(ex, root, "updir", NULL, &a), 0);
	s = walk(root, "updir");
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(dafs_be_lookup(ex, s, "secret", NULL, NULL), -ENOTDIR);
	ck_assert_int_eq(dafs_be_create(ex, s, "planted", DAFS_O_WRONLY, 0666,
					NULL, NULL),
			 -ENOTDIR);
	close(s);

	/* Outside, nothing changed and nothing appeared. */
	ck_assert_str_eq(get_file(outdir, "secret"), "outside data\n");
	ck_assert(!exists(outdir, "new"));
	ck_assert(!exists(outdir, "planted"));
	ck_assert_int_eq(stat("/etc/passwd", &pw1), 0);
	ck_assert_int_eq(pw1.st_size, pw0.st_size);
	ck_assert_int_eq(pw1.st_mtim.tv_sec, pw0.st_mtim.tv_sec);
	ck_assert_int_eq(pw1.st_mtim.tv_nsec, pw0.st_mtim.tv_nsec);
	ck_assert_int_eq(pw1.st_mode, pw0.st_mode);
}
END_TEST

struct mounts {
	int mounts, others;
};

static int note_mounts(void *arg, const struct dafs_be_dirent *e)
{
	struct mounts *m = arg;

	if (!strcmp(e->name, "tmpfs") || !strcmp(e->name, "bind")) {
		if (e->fh.len == 0 && S_ISDIR(e->type))
			m->mounts++;
	} else if (e->fh.len > 0) {
		m->others++;
	}
	return 0;
}

/* A mount inside the export is not followed: exports do not cross mounts. */
START_TEST(mounts_not_crossed)
{
	char mnt[PATH_MAX], bind[PATH_MAX];
	const char *fork_env = getenv("CK_FORK");
	struct mounts m;
	dafs_fh_t fh;
	int fd, eof;

	if (!is_root_user())
		return;
	if (fork_env && !strcmp(fork_env, "no")) {
		fprintf(stderr, "# skipped: needs CK_FORK (private mounts)\n");
		return;
	}
	/* A private mount namespace: the mounts die with this test child. */
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "# skipped: no mount namespace: %s\n",
			strerror(errno));
		return;
	}
	xpath(mnt, expdir, "tmpfs");
	xpath(bind, expdir, "bind");
	ck_assert_int_eq(mkdir(mnt, 0755), 0);
	ck_assert_int_eq(mkdir(bind, 0755), 0);
	put_file(expdir, "plain", "", 0644);
	ck_assert_int_eq(mount("none", mnt, "tmpfs", 0, "size=1m"), 0);
	ck_assert_int_eq(mount(outdir, bind, NULL, MS_BIND, NULL), 0);
	/* Reopen the export inside the new namespace. */
	close_export();
	open_export(key1);

	ck_assert_int_eq(dafs_be_lookup(ex, root, "tmpfs", NULL, NULL), -EXDEV);
	ck_assert_int_eq(dafs_be_lookup(ex, root, "bind", NULL, NULL), -EXDEV);
	ck_assert_int_eq(
		dafs_be_create(ex, root, "bind", DAFS_O_RDWR, 0644, NULL, NULL),
		-EXDEV);
	/* No handle is minted for an object of another mount. */
	fd = open(mnt, O_PATH | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_handle(ex, fd, &fh), -EXDEV);
	close(fd);
	/* readdir lists the mount points, without handles. */
	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(dafs_be_readdir(ex, root, 0, 1, note_mounts, &m, &eof),
			 0);
	ck_assert_int_eq(eof, 1);
	ck_assert_int_eq(m.mounts, 2);
	ck_assert_int_eq(m.others, 1); /* "plain" has its handle */
	ck_assert_str_eq(get_file(outdir, "secret"), "outside data\n");
	close_export();
	ck_assert_int_eq(umount2(bind, 0), 0);
	ck_assert_int_eq(umount2(mnt, 0), 0);
}
END_TEST

/* ---- handles ---- */

START_TEST(handle_tamper)
{
	dafs_fh_t fh, bad;
	dafs_attr_t a;
	int fd, bit;
	unsigned i;

	put_file(expdir, "f", "data", 0644);
	ck_assert_int_eq(dafs_be_lookup(ex, root, "f", &fh, &a), 0);
	ck_assert_uint_gt(fh.len, 12);
	ck_assert_uint_le(fh.len, DAFS_FH_MAX);
	fd = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(fd, 0);
	close(fd);

	/* Any change to any byte is refused before the kernel sees it. */
	for (i = 0; i < fh.len; i++) {
		for (bit = 0; bit < 8; bit++) {
			bad = fh;
			bad.data[i] ^= (uint8_t)(1u << bit);
			ck_assert_int_eq(dafs_be_resolve(ex, &bad),
					 -DAFS_EBADHANDLE);
		}
	}
	/* Shorter, longer, empty, oversized. */
	bad = fh;
	bad.len--;
	ck_assert_int_eq(dafs_be_resolve(ex, &bad), -DAFS_EBADHANDLE);
	bad = fh;
	bad.len++;
	ck_assert_int_eq(dafs_be_resolve(ex, &bad), -DAFS_EBADHANDLE);
	bad.len = 0;
	ck_assert_int_eq(dafs_be_resolve(ex, &bad), -DAFS_EBADHANDLE);
	bad.len = DAFS_FH_MAX + 1;
	ck_assert_int_eq(dafs_be_resolve(ex, &bad), -DAFS_EBADHANDLE);

	/* The same key under another export id: not ours either. */
	close_export();
	ck_assert_int_eq(dafs_export_open("other", expdir, 2, key1, &ex), 0);
	root = -1;
	ck_assert_int_eq(dafs_be_resolve(ex, &fh), -DAFS_EBADHANDLE);
}
END_TEST

START_TEST(handle_stale)
{
	dafs_fh_t fh;
	int fd;

	fd = dafs_be_create(ex, root, "gone", DAFS_O_RDWR, 0644, &fh, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(dafs_be_remove(root, "gone"), 0);
	ck_assert_int_eq(dafs_be_resolve(ex, &fh), -ESTALE);

	ck_assert_int_eq(dafs_be_mkdir(ex, root, "dgone", 0755, &fh, NULL), 0);
	ck_assert_int_eq(dafs_be_rmdir(root, "dgone"), 0);
	ck_assert_int_eq(dafs_be_resolve(ex, &fh), -ESTALE);
}
END_TEST

START_TEST(handle_survives_restart)
{
	dafs_fh_t fh, rfh, rfh2;
	dafs_attr_t a, b;
	char buf[16];
	int f, fd;

	ck_assert_int_eq(dafs_be_mkdir(ex, root, "sub", 0755, NULL, NULL), 0);
	put_file(expdir, "sub/f", "persist", 0644);
	f = walk(root, "sub");
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_lookup(ex, f, "f", &fh, &a), 0);
	close(f);
	dafs_export_root(ex, &rfh);

	/* Server restart: same key, same id. */
	close_export();
	open_export(key1);
	dafs_export_root(ex, &rfh2);
	ck_assert_uint_eq(rfh.len, rfh2.len);
	ck_assert_mem_eq(rfh.data, rfh2.data, rfh.len);
	f = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(dafs_be_getattr(f, &b), 0);
	ck_assert_uint_eq(b.ino, a.ino);
	fd = dafs_be_open(f, DAFS_O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 7);
	ck_assert_mem_eq(buf, "persist", 7);
	close(fd);
	close(f);

	/* A new key: every old handle is refused. */
	close_export();
	open_export(key2);
	ck_assert_int_eq(dafs_be_resolve(ex, &fh), -DAFS_EBADHANDLE);
	ck_assert_int_eq(dafs_be_resolve(ex, &rfh), -DAFS_EBADHANDLE);
}
END_TEST

/* ---- credentials ---- */

struct other {
	int fd; /* the 0600 root file, O_PATH */
	pthread_barrier_t switched;
	long fsuid;
	int open_rc;
};

/* Started before the main thread switches, checks while it is switched. */
static void *other_thread(void *arg)
{
	struct other *o = arg;
	int fd;

	pthread_barrier_wait(&o->switched);
	o->fsuid = syscall(SYS_setfsuid, -1);
	fd = dafs_be_open(o->fd, DAFS_O_RDONLY, NULL);
	o->open_rc = fd < 0 ? fd : 0;
	if (fd >= 0)
		close(fd);
	return NULL;
}

START_TEST(creds_switch)
{
	struct dafs_creds nobody = {.uid = 65534, .gid = 65534};
	struct other o = {0};
	dafs_setattr_t sa;
	char p[PATH_MAX];
	pthread_t t;
	dafs_fh_t fh;
	dafs_attr_t a;
	int sec, dir, grp, opendir_fd, fd, f;

	if (!is_root_user())
		return;
	ck_assert(dafs_creds_can_switch());
	put_file(expdir, "secret", "root only", 0600);
	put_file(expdir, "grp", "group 1234", 0640);
	xpath(p, expdir, "grp");
	ck_assert_int_eq(chown(p, 0, 1234), 0);
	ck_assert_int_eq(dafs_be_mkdir(ex, root, "rootdir", 0755, &fh, NULL),
			 0);
	ck_assert_int_eq(dafs_be_mkdir(ex, root, "open", 0777, NULL, NULL), 0);

	/* Resolve with the server's own credentials, as handlers do. */
	dir = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(dir, 0);
	sec = walk(root, "secret");
	ck_assert_int_ge(sec, 0);
	grp = walk(root, "grp");
	ck_assert_int_ge(grp, 0);
	opendir_fd = walk(root, "open");
	ck_assert_int_ge(opendir_fd, 0);

	/*
	 * A thread inherits its creator's credentials, so the other thread
	 * is started first (as a handler pool is, with the server's own).
	 */
	o.fd = sec;
	ck_assert_int_eq(pthread_barrier_init(&o.switched, NULL, 2), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, other_thread, &o), 0);

	ck_assert_int_eq(dafs_creds_apply(&nobody), 0);
	ck_assert_int_eq(syscall(SYS_setfsuid, -1), 65534);
	pthread_barrier_wait(&o.switched);
	ck_assert_int_eq(dafs_be_open(sec, DAFS_O_RDONLY, NULL), -EACCES);
	ck_assert_int_eq(
		dafs_be_create(ex, dir, "x", DAFS_O_RDWR, 0644, NULL, NULL),
		-EACCES);
	ck_assert_int_eq(dafs_be_mkdir(ex, dir, "x", 0755, NULL, NULL),
			 -EACCES);
	ck_assert_int_eq(dafs_be_open(grp, DAFS_O_RDONLY, NULL), -EACCES);

	/* The other thread kept the server's credentials meanwhile. */
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	pthread_barrier_destroy(&o.switched);
	ck_assert_int_eq(o.fsuid, 0);
	ck_assert_int_eq(o.open_rc, 0);
	ck_assert_int_eq(syscall(SYS_setfsuid, -1), 65534);

	/* Handles resolve only with the server's credentials (the kernel
	 * wants CAP_DAC_READ_SEARCH); a lookup works as nobody. */
	ck_assert_int_eq(dafs_be_lookup(ex, root, "open", &fh, NULL), 0);
	ck_assert_int_eq(dafs_be_resolve(ex, &fh), -EPERM);

	/* What nobody creates, nobody owns. */
	f = dafs_be_create(ex, opendir_fd, "mine", DAFS_O_RDWR, 0600, NULL, &a);
	ck_assert_int_ge(f, 0);
	ck_assert_uint_eq(a.uid, 65534);
	ck_assert_uint_eq(a.gid, 65534);

	/* Device nodes need CAP_MKNOD, which the switch dropped. */
	ck_assert_int_eq(dafs_be_mknod(ex, opendir_fd, "null", S_IFCHR | 0666,
				       makedev(1, 3), NULL, NULL),
			 -EPERM);
	ck_assert(!exists(expdir, "open/null"));

	/* setattr: the owner may, others may not. */
	memset(&sa, 0, sizeof(sa));
	sa.mask = DAFS_SET_MODE;
	sa.mode = 0604;
	ck_assert_int_eq(dafs_be_setattr(f, &sa, &a), 0);
	ck_assert_uint_eq(a.mode & 07777, 0604);
	close(f);
	ck_assert_int_eq(dafs_be_setattr(sec, &sa, NULL), -EPERM);
	sa.mask = DAFS_SET_SIZE;
	sa.size = 0;
	ck_assert_int_eq(dafs_be_setattr(sec, &sa, NULL), -EACCES);
	sa.mask = DAFS_SET_UID;
	sa.uid = 65534;
	ck_assert_int_eq(dafs_be_setattr(sec, &sa, NULL), -EPERM);

	/* Supplementary groups count. */
	nobody.ngroups = 1;
	nobody.groups[0] = 1234;
	ck_assert_int_eq(dafs_creds_apply(&nobody), 0);
	fd = dafs_be_open(grp, DAFS_O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(dafs_be_open(sec, DAFS_O_RDONLY, NULL), -EACCES);

	nobody.ngroups = 33;
	ck_assert_int_eq(dafs_creds_apply(&nobody), -EINVAL);

	/* Back to root: everything works again; nobody changed nothing. */
	dafs_creds_reset();
	ck_assert_int_eq(syscall(SYS_setfsuid, -1), 0);
	ck_assert_str_eq(get_file(expdir, "secret"), "root only");
	ck_assert_int_eq(dafs_be_getattr(sec, &a), 0);
	ck_assert_uint_eq(a.mode & 07777, 0600);
	ck_assert_uint_eq(a.uid, 0);
	fd = dafs_be_open(sec, DAFS_O_RDONLY, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	fd = dafs_be_create(ex, dir, "x", DAFS_O_RDWR, 0644, NULL, &a);
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(a.uid, 0);
	close(fd);

	/* Root may make a device node, but the server never opens one: it
	 * would be the server's own /dev/null, not the client's. */
	ck_assert_int_eq(dafs_be_mknod(ex, dir, "null", S_IFCHR | 0666,
				       makedev(1, 3), &fh, &a),
			 0);
	ck_assert(S_ISCHR(a.mode));
	ck_assert_uint_eq(a.rdev, makedev(1, 3));
	fd = dafs_be_resolve(ex, &fh);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_open(fd, DAFS_O_RDWR, NULL), -EINVAL);
	close(fd);
	close(sec);
	close(grp);
	close(opendir_fd);
	close(dir);
}
END_TEST

/* ---- readdir ---- */

#define BIG 100000

struct seen {
	uint8_t *hit;
	unsigned budget; /* entries to accept in this call */
	unsigned taken;
	unsigned dups, strays;
	uint64_t cookie; /* of the last accepted entry */
	int plus;
	int bad_plus;
};

static int count_entry(void *arg, const struct dafs_be_dirent *e)
{
	struct seen *s = arg;
	unsigned long n;
	char *end;

	if (s->taken == s->budget)
		return 1; /* did not fit: the next call starts here */
	n = strtoul(e->name + 1, &end, 10);
	if (e->name[0] != 'f' || n >= BIG || *end)
		s->strays++;
	else if (s->hit[n]++)
		s->dups++;
	if (s->plus) {
		int fd = dafs_be_resolve(ex, &e->fh);
		dafs_attr_t a;

		if (fd < 0 || dafs_be_getattr(fd, &a) || a.ino != e->attr.ino ||
		    a.ino != e->ino || !S_ISREG(e->attr.mode) ||
		    e->type != S_IFREG)
			s->bad_plus++;
		if (fd >= 0)
			close(fd);
	} else if (e->type != S_IFREG) {
		s->bad_plus++;
	}
	s->taken++;
	s->cookie = e->cookie;
	return 0;
}

static int fail_entry(void *arg, const struct dafs_be_dirent *e)
{
	(void)arg, (void)e;
	return -EIO;
}

/* Read all of @dir in calls of @budget entries; returns the call count. */
static unsigned read_all(int dir, int plus, unsigned budget, unsigned total,
			 struct seen *s)
{
	unsigned calls = 0, i;
	int eof = 0;

	memset(s, 0, sizeof(*s));
	s->hit = calloc(BIG, 1);
	ck_assert_ptr_nonnull(s->hit);
	s->plus = plus;
	while (!eof) {
		s->budget = budget;
		s->taken = 0;
		ck_assert_int_eq(dafs_be_readdir(ex, dir, s->cookie, plus,
						 count_entry, s, &eof),
				 0);
		ck_assert(eof || s->taken == budget);
		ck_assert_uint_lt(++calls, 10 * BIG);
	}
	ck_assert_uint_eq(s->dups, 0);
	ck_assert_uint_eq(s->strays, 0);
	ck_assert_int_eq(s->bad_plus, 0);
	for (i = 0; i < total; i++)
		ck_assert_msg(s->hit[i] == 1, "f%06u missing", i);
	free(s->hit);
	return calls;
}

START_TEST(readdir_big)
{
	struct seen s;
	char name[16], first[16];
	unsigned i;
	int d, fd;

	ck_assert_int_eq(dafs_be_mkdir(ex, root, "big", 0755, NULL, NULL), 0);
	d = walk(root, "big");
	ck_assert_int_ge(d, 0);
	/*
	 * 100,000 names for two inodes (ext4 caps links at 65,000): what
	 * readdir sees is the same, and linking is ten times faster here
	 * than allocating 100,000 inodes.
	 */
	for (i = 0; i < BIG; i++) {
		snprintf(name, sizeof(name), "f%06u", i);
		if (i % (BIG / 2) == 0) {
			fd = openat(d, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
			ck_assert_int_ge(fd, 0);
			close(fd);
			snprintf(first, sizeof(first), "%s", name);
			continue;
		}
		ck_assert_int_eq(linkat(d, first, d, name, 0), 0);
	}
	/* Many resumed calls, none losing or repeating an entry. */
	ck_assert_uint_ge(read_all(d, 0, 997, BIG, &s), BIG / 997);
	close(d);
}
END_TEST

START_TEST(readdir_plus)
{
	struct seen s;
	char name[16];
	unsigned i;
	int d, fd, eof;

	ck_assert_int_eq(dafs_be_mkdir(ex, root, "small", 0755, NULL, NULL), 0);
	d = walk(root, "small");
	ck_assert_int_ge(d, 0);

	/* Empty: eof at once, nothing emitted ("." and ".." skipped). */
	memset(&s, 0, sizeof(s));
	s.budget = 10;
	ck_assert_int_eq(dafs_be_readdir(ex, d, 0, 1, count_entry, &s, &eof),
			 0);
	ck_assert_int_eq(eof, 1);
	ck_assert_uint_eq(s.taken, 0);

	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "f%06u", i);
		fd = openat(d, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	ck_assert_uint_ge(read_all(d, 1, 7, 500, &s), 500 / 7);

	/* A callback error ends the call with that error. */
	ck_assert_int_eq(dafs_be_readdir(ex, d, 0, 0, fail_entry, NULL, &eof),
			 -EIO);
	ck_assert_int_eq(eof, 0);
	fd = walk(d, "f000000");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_readdir(ex, fd, 0, 0, count_entry, &s, &eof),
			 -ENOTDIR);
	close(fd);
	close(d);
}
END_TEST

/* ---- state ---- */

START_TEST(state_persists)
{
	char dir[PATH_MAX];
	struct dafs_state *st;
	uint8_t k1[16], k2[16], zero[16] = {0};
	uint16_t id;
	struct stat sb;

	xpath(dir, tmp, "state");
	ck_assert_int_eq(dafs_state_open(dir, &st), 0);
	ck_assert_int_eq(stat(dir, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0700);
	ck_assert_int_eq(dafs_state_handle_key(st, k1), 0);
	ck_assert(memcmp(k1, zero, 16) != 0);
	ck_assert_int_eq(dafs_state_handle_key(st, k2), 0);
	ck_assert_mem_eq(k1, k2, 16);
	ck_assert_int_eq(dafs_state_export_id(st, "alpha", &id), 0);
	ck_assert_uint_eq(id, 1);
	ck_assert_int_eq(dafs_state_export_id(st, "beta", &id), 0);
	ck_assert_uint_eq(id, 2);
	ck_assert_int_eq(dafs_state_export_id(st, "alpha", &id), 0);
	ck_assert_uint_eq(id, 1);
	ck_assert_int_eq(dafs_state_export_id(st, "", &id), -EINVAL);
	dafs_state_close(st);

	/* Restart: same key, same ids, the next new name gets 3. */
	ck_assert_int_eq(dafs_state_open(dir, &st), 0);
	ck_assert_int_eq(dafs_state_handle_key(st, k2), 0);
	ck_assert_mem_eq(k1, k2, 16);
	ck_assert_int_eq(dafs_state_export_id(st, "beta", &id), 0);
	ck_assert_uint_eq(id, 2);
	ck_assert_int_eq(dafs_state_export_id(st, "gamma", &id), 0);
	ck_assert_uint_eq(id, 3);
	ck_assert_int_eq(dafs_state_export_id(st, "alpha", &id), 0);
	ck_assert_uint_eq(id, 1);

	/* The persisted key makes handles that survive a restart. */
	close_export();
	ck_assert_int_eq(dafs_export_open("alpha", expdir, id, k1, &ex), 0);
	{
		dafs_fh_t fh;
		int fd;

		dafs_export_root(ex, &fh);
		dafs_export_close(ex);
		ck_assert_int_eq(dafs_state_handle_key(st, k2), 0);
		ck_assert_int_eq(dafs_export_open("alpha", expdir, id, k2, &ex),
				 0);
		fd = dafs_be_resolve(ex, &fh);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	dafs_state_close(st);

	/* A state directory that is not a directory. */
	put_file(tmp, "notdir", "", 0600);
	xpath(dir, tmp, "notdir");
	ck_assert_int_eq(dafs_state_open(dir, &st), -ENOTDIR);
}
END_TEST

START_TEST(export_open_errors)
{
	struct dafs_export *e;
	char p[PATH_MAX];

	xpath(p, tmp, "missing");
	ck_assert_int_eq(dafs_export_open("x", p, 1, key1, &e), -ENOENT);
	xpath(p, outdir, "secret");
	ck_assert_int_eq(dafs_export_open("x", p, 1, key1, &e), -ENOTDIR);
	ck_assert_int_eq(dafs_export_open("x", "/proc", 1, key1, &e),
			 -EOPNOTSUPP);
	ck_assert_str_eq(dafs_export_name(ex), "test");
}
END_TEST

static Suite *backend_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc;

	tc = tcase_create("siphash");
	tcase_add_test(tc, siphash_vectors);
	suite_add_tcase(s, tc);

	tc = tcase_create("ops");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_read_write);
	tcase_add_test(tc, lookup_getattr);
	tcase_add_test(tc, bad_names);
	tcase_add_test(tc, setattr_ops);
	tcase_add_test(tc, remove_rename_link);
	tcase_add_test(tc, symlink_mknod_statfs_xattr);
	tcase_add_test(tc, export_open_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("confinement");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, root_dotdot_stays);
	tcase_add_test(tc, symlinks_do_not_escape);
	tcase_add_test(tc, mounts_not_crossed);
	suite_add_tcase(s, tc);

	tc = tcase_create("handles");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, handle_tamper);
	tcase_add_test(tc, handle_stale);
	tcase_add_test(tc, handle_survives_restart);
	suite_add_tcase(s, tc);

	tc = tcase_create("creds");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, creds_switch);
	suite_add_tcase(s, tc);

	tc = tcase_create("readdir");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	/* Creating and removing 100,000 files; generous for sanitizers. */
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, readdir_big);
	tcase_add_test(tc, readdir_plus);
	suite_add_tcase(s, tc);

	tc = tcase_create("state");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, state_persists);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(backend_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
