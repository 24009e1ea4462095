/*
 * test_backend.c - the server's storage side: SipHash, the export backend
 * (operations, errors, confinement, handles, readdir), per-thread
 * credentials and the LMDB state.
 *
 * Every test works in a fresh directory under /tmp holding "export" (the
 * exported tree) and "outside" (what the export must never reach). The
 * credential and mount tests need root and say so when skipped. The table
 * tests run dafsd's side as user nobody, in a child process.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "proto/wire_i.h"
#include "server/backend_i.h"
#include "server/fdcache_i.h"
#include "server/creds_i.h"
#include "server/state_i.h"

static char tmp[PATH_MAX], expdir[PATH_MAX], outdir[PATH_MAX];
static struct dafs_state *state; /* in tmp/state, for the handle table */
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

	ck_assert_int_eq(dafs_export_open(state, "test", expdir, 1, key, &ex),
			 0);
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
	char sdir[PATH_MAX];

	xpath(tmp, base, "t-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	xpath(expdir, tmp, "export");
	xpath(outdir, tmp, "outside");
	xpath(sdir, tmp, "state");
	ck_assert_int_eq(mkdir(expdir, 0755), 0);
	ck_assert_int_eq(mkdir(outdir, 0755), 0);
	put_file(outdir, "secret", "outside data\n", 0644);
	ck_assert_int_eq(dafs_state_open(sdir, &state), 0);
	open_export(key1);
}

static void teardown(void)
{
	dafs_creds_reset();
	if (ex)
		close_export();
	dafs_state_close(state);
	state = NULL;
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

static int hook_calls, hook_rc;
static long long hook_seen;
static int hook_size(void *arg, int pfd);

/* hook_size; and at its first call, "hello" moved to "hello.bak" and
 * another file put at "hello" */
static int hook_move(void *arg, int pfd)
{
	char a[PATH_MAX + 16], b[PATH_MAX + 16];

	if (!hook_calls) {
		snprintf(a, sizeof(a), "%s/hello", expdir);
		snprintf(b, sizeof(b), "%s/hello.bak", expdir);
		ck_assert_int_eq(rename(a, b), 0);
		put_file(expdir, "hello", "other", 0640);
	}
	return hook_size(arg, pfd);
}

/* dafs_be_create_hook's hook for create_read_write: the size it finds */

static int hook_size(void *arg, int pfd)
{
	struct stat st;

	(void)arg;
	hook_calls++;
	hook_seen = fstat(pfd, &st) ? -1 : (long long)st.st_size;
	return hook_rc;
}

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

	/* The hook sees an existing file before the create truncates it
	 * (dafsd recalls delegations there); its error ends the create and
	 * leaves the file as it was; a new file never calls it. */
	put_file(expdir, "hello", "held data", 0640);
	hook_calls = 0;
	hook_rc = 0;
	fd = dafs_be_create_hook(ex, root, "hello",
				 DAFS_O_WRONLY | DAFS_O_TRUNC, 0600,
				 hook_size, NULL, NULL, &a2);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(hook_calls, 1);
	ck_assert_int_eq(hook_seen, 9); /* not yet truncated */
	ck_assert_uint_eq(a2.size, 0);
	ck_assert_str_eq(get_file(expdir, "hello"), "");
	put_file(expdir, "hello", "held data", 0640);
	hook_rc = -EAGAIN;
	ck_assert_int_eq(dafs_be_create_hook(ex, root, "hello",
					     DAFS_O_WRONLY | DAFS_O_TRUNC,
					     0600, hook_size, NULL, NULL,
					     NULL),
			 -EAGAIN);
	ck_assert_str_eq(get_file(expdir, "hello"), "held data");
	hook_calls = 0;
	fd = dafs_be_create_hook(ex, root, "new-one", DAFS_O_WRONLY, 0600,
				 hook_size, NULL, NULL, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(hook_calls, 0);
	/* the file renamed away, another put at the name, while the hook
	 * waited: the create looks again and truncates the one now there
	 * (after a hook call for it), never the one moved away */
	put_file(expdir, "hello", "held data", 0640);
	hook_calls = 0;
	hook_rc = 0;
	fd = dafs_be_create_hook(ex, root, "hello",
				 DAFS_O_WRONLY | DAFS_O_TRUNC, 0600,
				 hook_move, NULL, NULL, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(hook_calls, 2);
	ck_assert_int_eq(hook_seen, 5); /* "other", untruncated */
	ck_assert_str_eq(get_file(expdir, "hello.bak"), "held data");
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
	/* access through the O_PATH descriptor, with this process's
	 * credentials; mask bits beyond rwx refused */
	ck_assert_int_eq(dafs_be_access(f, R_OK | W_OK), 0);
	ck_assert_int_eq(dafs_be_access(d, R_OK | W_OK | X_OK), 0);
	ck_assert_int_eq(dafs_be_access(f, X_OK), -EACCES);
	ck_assert_int_eq(dafs_be_access(f, 8), -EINVAL);

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
	if (geteuid() != 0) /* giving files away needs CAP_CHOWN */
		sa.mask &= ~(DAFS_SET_UID | DAFS_SET_GID);
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
	ck_assert_int_eq(dafs_export_open(state, "other", expdir, 2, key1, &ex),
			 0);
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

/* Through the descriptor cache: a second request on a handle borrows the
 * descriptor of the first; a file removed (by a local user, not through
 * dafsd) is -ESTALE at once and leaves the cache; a renamed one is still
 * found. */
START_TEST(handle_cached)
{
	struct fdc_entry *r1, *r2;
	dafs_attr_t a1, a2;
	dafs_fh_t fh, dfh;
	bool have;
	char path[PATH_MAX];
	int fd, f1, f2;

	fd = dafs_be_create(ex, root, "kept", DAFS_O_RDWR, 0644, &fh, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	f1 = dafs_be_resolve_ref(ex, &fh, &r1, &a1, &have);
	ck_assert_int_ge(f1, 0);
	ck_assert(!have); /* resolved, not kept: no check, no attributes */
	/* the kept descriptor's check takes the attributes, as of now */
	xpath(path, expdir, "kept");
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "12345", 5), 5);
	close(fd);
	f2 = dafs_be_resolve_ref(ex, &fh, &r2, &a2, &have);
	ck_assert_int_eq(f2, f1);
	ck_assert_ptr_eq(r2, r1);
	ck_assert(have);
	ck_assert_int_eq(dafs_be_getattr(f2, &a1), 0);
	ck_assert_uint_eq(a2.size, 5);
	ck_assert_uint_eq(a2.ino, a1.ino);
	ck_assert_uint_eq(a2.mode, a1.mode);
	ck_assert_uint_eq(a2.nlink, 1);
	ck_assert_uint_eq(a2.change, a1.change);
	dafs_be_unref(ex, r2, f2);
	dafs_be_unref(ex, r1, f1);

	xpath(path, expdir, "kept");
	{
		char to[PATH_MAX];

		xpath(to, expdir, "moved");
		ck_assert_int_eq(rename(path, to), 0);
		f1 = dafs_be_resolve_ref(ex, &fh, &r1, NULL, NULL);
		ck_assert_int_ge(f1, 0);
		dafs_be_unref(ex, r1, f1);
		ck_assert_int_eq(unlink(to), 0);
	}
	ck_assert_int_eq(dafs_be_resolve_ref(ex, &fh, &r1, NULL, NULL), -ESTALE);
	ck_assert_ptr_null(r1);

	/* a directory: rmdir'd, stale too */
	ck_assert_int_eq(dafs_be_mkdir(ex, root, "dkept", 0755, &dfh, NULL), 0);
	f1 = dafs_be_resolve_ref(ex, &dfh, &r1, NULL, NULL);
	ck_assert_int_ge(f1, 0);
	dafs_be_unref(ex, r1, f1);
	xpath(path, expdir, "dkept");
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_int_eq(dafs_be_resolve_ref(ex, &dfh, &r1, NULL, NULL), -ESTALE);

	/* a forged handle never matches a kept one */
	fd = dafs_be_create(ex, root, "kept2", DAFS_O_RDWR, 0644, &fh, NULL);
	ck_assert_int_ge(fd, 0);
	close(fd);
	f1 = dafs_be_resolve_ref(ex, &fh, &r1, NULL, NULL);
	ck_assert_int_ge(f1, 0);
	fh.data[fh.len - 1] ^= 1;
	ck_assert_int_eq(dafs_be_resolve_ref(ex, &fh, &r2, NULL, NULL),
			 -DAFS_EBADHANDLE);
	dafs_be_unref(ex, r1, f1);
}
END_TEST

/* The cache alone, on descriptors of /dev/null: LRU order under the
 * count, age, a borrowed entry evicted (its descriptor stays open until
 * the put), a race of two adds, drop, flush. */
static int open_null(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

START_TEST(fdcache_rules)
{
	struct fdc_entry *e, *e2, *held;
	struct fdcache c;
	int fa, fb, fc, fd, f2;

	ck_assert_int_eq(fdc_init(&c, 2, 200), 0);
	ck_assert_int_eq(fdc_get(&c, "a", 1, &e), -ENOENT);
	fa = fdc_add(&c, "a", 1, open_null(), &e);
	ck_assert_ptr_nonnull(e);
	fdc_put(&c, e, fa);
	fb = fdc_add(&c, "b", 1, open_null(), &e);
	fdc_put(&c, e, fb);
	/* a used again: b is the least recent, and goes for c */
	ck_assert_int_eq(fdc_get(&c, "a", 1, &e), fa);
	fdc_put(&c, e, fa);
	fc = fdc_add(&c, "c", 1, open_null(), &e);
	fdc_put(&c, e, fc);
	ck_assert_uint_eq(fdc_count(&c), 2);
	ck_assert_int_eq(fdc_get(&c, "b", 1, &e), -ENOENT);
	ck_assert(!fd_open(fb));
	ck_assert_int_eq(fdc_get(&c, "a", 1, &e), fa);
	fdc_put(&c, e, fa);

	/* borrowed while evicted: still open until its put */
	ck_assert_int_eq(fdc_get(&c, "c", 1, &held), fc);
	fa = fdc_get(&c, "a", 1, &e);
	fdc_put(&c, e, fa);
	fd = fdc_add(&c, "d", 1, open_null(), &e);
	fdc_put(&c, e, fd);
	ck_assert_int_eq(fdc_get(&c, "c", 1, &e), -ENOENT);
	ck_assert(fd_open(fc));
	fdc_put(&c, held, fc);
	ck_assert(!fd_open(fc));

	/* two adds of one key: the second shares the first's descriptor
	 * and closes its own */
	f2 = open_null();
	fd = fdc_add(&c, "e", 1, open_null(), &e);
	ck_assert_int_eq(fdc_add(&c, "e", 1, f2, &e2), fd);
	ck_assert_ptr_eq(e2, e);
	ck_assert(!fd_open(f2));
	fdc_put(&c, e2, fd);
	/* dropped: gone from the table, closed at the last put */
	fdc_drop(&c, e);
	ck_assert_int_eq(fdc_get(&c, "e", 1, &e2), -ENOENT);
	ck_assert(fd_open(fd));
	fdc_put(&c, e, fd);
	ck_assert(!fd_open(fd));

	/* age: unused for longer than 200 ms, gone at the next look, or
	 * at the timer's sweep with no look at all */
	fa = fdc_add(&c, "f", 1, open_null(), &e);
	fdc_put(&c, e, fa);
	usleep(400 * 1000);
	ck_assert_int_eq(fdc_get(&c, "f", 1, &e), -ENOENT);
	ck_assert(!fd_open(fa));
	ck_assert_uint_eq(fdc_count(&c), 0);
	fa = fdc_add(&c, "f", 1, open_null(), &e);
	fdc_put(&c, e, fa);
	fdc_sweep(&c);
	ck_assert(fd_open(fa)); /* young yet */
	usleep(400 * 1000);
	fdc_sweep(&c);
	ck_assert(!fd_open(fa));
	ck_assert_uint_eq(fdc_count(&c), 0);

	/* flush closes what nobody borrows */
	fa = fdc_add(&c, "g", 1, open_null(), &e);
	fb = fdc_add(&c, "h", 1, open_null(), &e2);
	fdc_put(&c, e2, fb);
	fdc_flush(&c);
	ck_assert(!fd_open(fb));
	ck_assert(fd_open(fa));
	ck_assert_uint_eq(fdc_count(&c), 1);
	fdc_put(&c, e, fa);
	fdc_fini(&c);
	ck_assert(!fd_open(fa));

	/* off: nothing kept, the descriptor stays the caller's */
	ck_assert_int_eq(fdc_init(&c, 0, 200), 0);
	fd = open_null();
	ck_assert_int_eq(fdc_add(&c, "a", 1, fd, &e), fd);
	ck_assert_ptr_null(e);
	fdc_put(&c, e, fd);
	ck_assert(!fd_open(fd));
	fdc_fini(&c);
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

/* Whether the calling thread's effective capability set is empty. */
static int caps_effective_empty(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	ck_assert_int_eq(syscall(SYS_capget, &h, d), 0);
	return !d[0].effective && !d[1].effective;
}

START_TEST(creds_switch)
{
	/* a v2 file capability: cap_net_raw, permitted and effective */
	static const uint32_t fcap[5] = {0x02000001, 1u << 13, 0, 0, 0};
	int fcap_rc, trusted_rc;
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

	/* None of root's other capabilities either: with CAP_SETFCAP a user
	 * could give root's file capabilities (security.* is left to that
	 * check alone), with CAP_SYS_ADMIN write trusted.* */
	ck_assert(caps_effective_empty());
	fcap_rc = dafs_be_setxattr(sec, "security.capability", fcap,
				   sizeof(fcap), 0);
	trusted_rc = dafs_be_setxattr(sec, "trusted.dafs", "x", 1, 0);

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
	ck_assert(!caps_effective_empty());
	/* what root may set here (the file system has these attributes),
	 * nobody could not */
	if (!dafs_be_setxattr(sec, "security.capability", fcap, sizeof(fcap),
			      0)) {
		ck_assert_int_eq(fcap_rc, -EPERM);
		ck_assert_int_eq(dafs_be_removexattr(sec, "security.capability"),
				 0);
	}
	if (!dafs_be_setxattr(sec, "trusted.dafs", "y", 1, 0)) {
		ck_assert_int_eq(trusted_rc, -EPERM);
		ck_assert_int_eq(dafs_be_removexattr(sec, "trusted.dafs"), 0);
	}
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

/* A thread started while its creator runs as a user: it inherits that
 * user's credentials, which its first reset must undo. */
struct heir {
	const struct dafs_creds *none; /* nobody without groups */
	int grp;			/* the 0640 file of group 1234 */
	long fsuid, fsgid;
	int open_rc;
};

static void *heir_thread(void *arg)
{
	struct heir *h = arg;
	int fd;

	dafs_creds_reset();
	h->fsuid = syscall(SYS_setfsuid, -1);
	h->fsgid = syscall(SYS_setfsgid, -1);
	h->open_rc = dafs_creds_apply(h->none);
	if (!h->open_rc) {
		fd = dafs_be_open(h->grp, DAFS_O_RDONLY, NULL);
		h->open_rc = fd < 0 ? fd : 0;
		if (fd >= 0)
			close(fd);
	}
	dafs_creds_reset();
	return NULL;
}

/* Expect the open of @fd for reading to give @rc. */
static void open_gives(int fd, int rc)
{
	int f = dafs_be_open(fd, DAFS_O_RDONLY, NULL);

	if (f >= 0)
		close(f);
	ck_assert_int_eq(f < 0 ? f : 0, rc);
}

/*
 * A thread remembers the credentials it has so that switching to the same
 * ones again costs nothing: every switch must still land on exactly what
 * the request asked for, and a reset on the server's own ids.
 */
START_TEST(creds_cached)
{
	struct dafs_creds in1234 = {.uid = 65534, .gid = 65534, .ngroups = 1};
	struct dafs_creds none = {.uid = 65534, .gid = 65534};
	struct dafs_creds gid1234 = {.uid = 65534, .gid = 1234};
	struct heir h = {.none = &none};
	gid_t own[64], now[64];
	char p[PATH_MAX];
	int nown;
	pthread_t t;
	dafs_attr_t a;
	int grp, f;

	if (!is_root_user())
		return;
	in1234.groups[0] = 1234;
	put_file(expdir, "grp", "group 1234", 0640);
	xpath(p, expdir, "grp");
	ck_assert_int_eq(chown(p, 0, 1234), 0);
	grp = walk(root, "grp");
	ck_assert_int_ge(grp, 0);

	/* the group, then none: the groups left from the first count no more */
	nown = getgroups(64, own);
	ck_assert_int_ge(nown, 0);
	ck_assert_int_eq(dafs_creds_apply(&in1234), 0);
	open_gives(grp, 0);
	dafs_creds_reset();
	/* a reset gives the server its own groups back */
	ck_assert_int_eq(getgroups(64, now), nown);
	ck_assert(!memcmp(own, now, (size_t)nown * sizeof(*own)));
	ck_assert_int_eq(dafs_creds_apply(&none), 0);
	open_gives(grp, -EACCES);
	dafs_creds_reset();
	ck_assert_int_eq(dafs_creds_apply(&in1234), 0);
	open_gives(grp, 0);
	ck_assert_int_eq(dafs_creds_apply(&in1234), 0); /* again: no change */
	open_gives(grp, 0);
	dafs_creds_reset();

	/* the primary group, then another */
	ck_assert_int_eq(dafs_creds_apply(&gid1234), 0);
	open_gives(grp, 0);
	dafs_creds_reset();
	ck_assert_int_eq(dafs_creds_apply(&none), 0);
	open_gives(grp, -EACCES);
	ck_assert_int_eq(syscall(SYS_setfsgid, -1), 65534);

	/* a thread born as nobody in group 1234 */
	dafs_creds_reset();
	ck_assert_int_eq(dafs_creds_apply(&in1234), 0);
	h.grp = grp;
	ck_assert_int_eq(pthread_create(&t, NULL, heir_thread, &h), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(h.fsuid, 0);
	ck_assert_int_eq(h.fsgid, 0);
	ck_assert_int_eq(h.open_rc, -EACCES);

	/* after a reset the server's own ids create, whoever came before */
	dafs_creds_reset();
	ck_assert_int_eq(syscall(SYS_setfsuid, -1), 0);
	ck_assert_int_eq(syscall(SYS_setfsgid, -1), 0);
	f = dafs_be_create(ex, root, "own", DAFS_O_RDWR, 0600, NULL, &a);
	ck_assert_int_ge(f, 0);
	close(f);
	ck_assert_uint_eq(a.uid, 0);
	ck_assert_uint_eq(a.gid, 0);
	close(grp);
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
	/* with plus: this call's handles and inode numbers, checked after
	 * it (table handles are recorded when the call returns) */
	dafs_fh_t *fh;
	uint64_t *ino;
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
		if (e->attr.ino != e->ino || !S_ISREG(e->attr.mode) ||
		    e->type != S_IFREG)
			s->bad_plus++;
		s->fh[s->taken] = e->fh;
		s->ino[s->taken] = e->ino;
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
	dafs_attr_t a;
	int eof = 0, fd;

	memset(s, 0, sizeof(*s));
	s->hit = calloc(BIG, 1);
	ck_assert_ptr_nonnull(s->hit);
	s->plus = plus;
	if (plus) {
		s->fh = calloc(budget, sizeof(*s->fh));
		s->ino = calloc(budget, sizeof(*s->ino));
		ck_assert(s->fh && s->ino);
	}
	while (!eof) {
		s->budget = budget;
		s->taken = 0;
		ck_assert_int_eq(dafs_be_readdir(ex, dir, s->cookie, plus,
						 count_entry, s, &eof),
				 0);
		ck_assert(eof || s->taken == budget);
		ck_assert_uint_lt(++calls, 10 * BIG);
		for (i = 0; plus && i < s->taken; i++) {
			fd = dafs_be_resolve(ex, &s->fh[i]);
			if (fd < 0 || dafs_be_getattr(fd, &a) ||
			    a.ino != s->ino[i])
				s->bad_plus++;
			if (fd >= 0)
				close(fd);
		}
	}
	free(s->fh);
	free(s->ino);
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
	ck_assert_int_eq(dafs_export_open(st, "alpha", expdir, id, k1, &ex), 0);
	{
		dafs_fh_t fh;
		int fd;

		dafs_export_root(ex, &fh);
		dafs_export_close(ex);
		ck_assert_int_eq(dafs_state_handle_key(st, k2), 0);
		ck_assert_int_eq(
			dafs_export_open(st, "alpha", expdir, id, k2, &ex), 0);
		fd = dafs_be_resolve(ex, &fh);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	/* An export with table handles must close before its state. */
	dafs_export_close(ex);
	ex = NULL;
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
	ck_assert_int_eq(dafs_export_open(state, "x", p, 1, key1, &e), -ENOENT);
	xpath(p, outdir, "secret");
	ck_assert_int_eq(dafs_export_open(state, "x", p, 1, key1, &e),
			 -ENOTDIR);
	ck_assert_int_eq(dafs_export_open(state, "x", "/proc", 1, key1, &e),
			 -EOPNOTSUPP);
	ck_assert_str_eq(dafs_export_name(ex), "test");
}
END_TEST

/* ---- table handles: a server without CAP_DAC_READ_SEARCH ---- */

/*
 * These run in a child process that has become user nobody (as root; run
 * by another user, the child just is that user), over an export and a state
 * directory that nobody owns, as "dafsd run as a user" would. check's
 * asserts report to the runner and, without CK_FORK, jump back into it, so
 * the child checks with T() and T_EQ(): a failure says where and ends the
 * child with status 1, which the parent asserts on.
 */
#define NOBODY 65534
#define DEEP 36 /* levels of DEEP_NAME-byte names: beyond PATH_MAX */
#define DEEP_NAME 120
#define MANY 50
#define FAKE_INO (UINT64_MAX - 2) /* no file system hands these out */

static char tabbase[PATH_MAX], tabtmp[PATH_MAX], tabexp[PATH_MAX],
	tabstate[PATH_MAX];

__attribute__((noreturn, format(printf, 2, 3))) static void
tfail(int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "# table child, line %d: ", line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

#define T(c)                                                                   \
	do {                                                                   \
		if (!(c))                                                      \
			tfail(__LINE__, "%s", #c);                             \
	} while (0)
#define T_EQ(a, b)                                                             \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		if (a_ != b_)                                                  \
			tfail(__LINE__, "%s == %lld, want %lld (%s)", #a, a_,  \
			      b_, #b);                                         \
	} while (0)

/* Remove @name in @dfd and everything beneath, by fds: paths here can be
 * longer than PATH_MAX, which nftw cannot remove. */
static void rm_at(int dfd, const char *name)
{
	struct dirent *e;
	int fd, again;
	DIR *d;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0) {
		unlinkat(dfd, name, 0);
		return;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	do {
		again = 0;
		rewinddir(d);
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				rm_at(dirfd(d), e->d_name);
				again = 1;
			}
		}
	} while (again);
	closedir(d);
	unlinkat(dfd, name, AT_REMOVEDIR);
}

static void own(const char *p)
{
	if (geteuid() == 0)
		ck_assert_int_eq(chown(p, NOBODY, NOBODY), 0);
}

static void tab_base_setup(void)
{
	snprintf(tabbase, sizeof(tabbase), "/tmp/dafs-tab-XXXXXX");
	if (!mkdtemp(tabbase) ||
	    (geteuid() == 0 && chown(tabbase, NOBODY, NOBODY) < 0)) {
		perror(tabbase);
		exit(EXIT_FAILURE);
	}
}

static void tab_base_teardown(void)
{
	rm_at(AT_FDCWD, tabbase);
}

static void tab_setup(void)
{
	xpath(tabtmp, tabbase, "t-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tabtmp));
	own(tabtmp);
	xpath(tabexp, tabtmp, "export");
	xpath(tabstate, tabtmp, "state");
	ck_assert_int_eq(mkdir(tabexp, 0755), 0);
	ck_assert_int_eq(mkdir(tabstate, 0700), 0);
	own(tabexp);
	own(tabstate);
}

/* Run @fn in a child that is nobody, through and through. */
static void as_nobody(void (*fn)(void))
{
	int status;
	pid_t pid;

	fflush(NULL); /* nothing buffered twice */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (geteuid() == 0 &&
		    (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
		     setuid(NOBODY) < 0))
			tfail(__LINE__, "dropping privileges: %s",
			      strerror(errno));
		fn();
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "table child failed (status %#x), see its message",
		      status);
}

struct tab {
	struct dafs_state *st;
	struct dafs_export *ex;
	uint8_t key[16];
	uint16_t id;
	int root;
};

/* What dafsd does at startup, as an ordinary user. */
static void tab_open(struct tab *t)
{
	dafs_fh_t fh;

	T_EQ(dafs_state_open(tabstate, &t->st), 0);
	T_EQ(dafs_state_handle_key(t->st, t->key), 0);
	T_EQ(dafs_state_export_id(t->st, "tab", &t->id), 0);
	T_EQ(dafs_export_open(t->st, "tab", tabexp, t->id, t->key, &t->ex), 0);
	T_EQ(dafs_export_table(t->ex), 1);
	dafs_export_root(t->ex, &fh);
	T_EQ(fh.data[0], 2);
	t->root = dafs_be_resolve(t->ex, &fh);
	T(t->root >= 0);
}

static void tab_close(struct tab *t)
{
	close(t->root);
	dafs_export_close(t->ex);
	dafs_state_close(t->st);
}

/* @fh resolves to the object @a describes. */
static void same_as(struct tab *t, const dafs_fh_t *fh, const dafs_attr_t *a,
		    int line)
{
	dafs_attr_t b;
	int fd = dafs_be_resolve(t->ex, fh);

	if (fd < 0)
		tfail(line, "resolve: %d", fd);
	if (dafs_be_getattr(fd, &b))
		tfail(line, "getattr failed");
	close(fd);
	if (b.ino != a->ino || b.mode != a->mode || b.uid != a->uid ||
	    b.gid != a->gid || b.size != a->size)
		tfail(line,
		      "resolved to ino %llu mode %o, want ino %llu mode %o",
		      (unsigned long long)b.ino, b.mode,
		      (unsigned long long)a->ino, a->mode);
}
#define SAME(t, fh, a) same_as(t, fh, a, __LINE__)

/* A new MAC over a handle the test changed: a forgery only the key holder
 * could make, to reach the checks behind the MAC. */
static void remac(const uint8_t key[16], dafs_fh_t *fh)
{
	size_t n = fh->len - 8;
	uint64_t mac = dafs_siphash(key, fh->data, n);
	int i;

	for (i = 0; i < 8; i++)
		fh->data[n + i] = (uint8_t)(mac >> (8 * i));
}

static void deep_name(char *buf, int level)
{
	snprintf(buf, DEEP_NAME + 1, "%02d", level);
	memset(buf + 2, 'x', DEEP_NAME - 2);
	buf[DEEP_NAME] = '\0';
}

static void deep_fn(void)
{
	static dafs_fh_t fh[DEEP + 1];
	static dafs_attr_t a[DEEP + 1];
	char name[DEEP_NAME + 1], buf[32];
	dafs_fh_t lfh, sfh, nfh;
	dafs_attr_t la, sa, na;
	struct stat st;
	struct tab t;
	int d, nd, fd, io, i;

	tab_open(&t);
	/* The root resolves to the root, without a record. */
	T_EQ(stat(tabexp, &st), 0);
	T_EQ(dafs_be_getattr(t.root, &la), 0);
	T_EQ(la.ino, st.st_ino);

	/* mkdir down to a path longer than PATH_MAX, by handle each step. */
	d = fcntl(t.root, F_DUPFD_CLOEXEC, 0);
	T(d >= 0);
	for (i = 0; i < DEEP; i++) {
		deep_name(name, i);
		T_EQ(dafs_be_mkdir(t.ex, d, name, 0755, &fh[i], &a[i]), 0);
		T_EQ(fh[i].data[0], 2);
		nd = dafs_be_resolve(t.ex, &fh[i]);
		T(nd >= 0);
		close(d);
		d = nd;
	}
	fd = dafs_be_create(t.ex, d, "file", DAFS_O_RDWR | DAFS_O_EXCL, 0640,
			    &fh[DEEP], &a[DEEP]);
	T(fd >= 0);
	T_EQ(write(fd, "deep data", 9), 9);
	close(fd);
	T_EQ(dafs_be_symlink(t.ex, d, "link", "../../x", &sfh, &sa), 0);
	T_EQ(dafs_be_mknod(t.ex, d, "fifo", S_IFIFO | 0600, 0, &nfh, &na), 0);
	close(d);
	a[DEEP].size = 9;

	/* Every handle, resolved from scratch, is its object. */
	for (i = 0; i <= DEEP; i++)
		SAME(&t, &fh[i], &a[i]);
	SAME(&t, &sfh, &sa);
	SAME(&t, &nfh, &na);
	T(S_ISLNK(sa.mode) && S_ISFIFO(na.mode));

	/* Lookups from the root give the very same handles. */
	d = fcntl(t.root, F_DUPFD_CLOEXEC, 0);
	for (i = 0; i < DEEP; i++) {
		deep_name(name, i);
		T_EQ(dafs_be_lookup(t.ex, d, name, &lfh, &la), 0);
		T_EQ(lfh.len, fh[i].len);
		T(!memcmp(lfh.data, fh[i].data, lfh.len));
		T_EQ(la.ino, a[i].ino);
		nd = dafs_be_resolve(t.ex, &lfh);
		T(nd >= 0);
		close(d);
		d = nd;
	}
	close(d);

	/* The data, through the deepest file's handle. */
	fd = dafs_be_resolve(t.ex, &fh[DEEP]);
	T(fd >= 0);
	io = dafs_be_open(fd, DAFS_O_RDONLY, NULL);
	T(io >= 0);
	T_EQ(read(io, buf, sizeof(buf)), 9);
	T(!memcmp(buf, "deep data", 9));
	close(io);
	close(fd);
	tab_close(&t);
}

/* mkdir @name in @dirfd: its handle, attributes, and an fd from the handle. */
static int tmkdir(struct tab *t, int dirfd, const char *name, dafs_fh_t *fh,
		  dafs_attr_t *a)
{
	int fd;

	T_EQ(dafs_be_mkdir(t->ex, dirfd, name, 0755, fh, a), 0);
	fd = dafs_be_resolve(t->ex, fh);
	T(fd >= 0);
	return fd;
}

static void tcreate(struct tab *t, int dirfd, const char *name, dafs_fh_t *fh,
		    dafs_attr_t *a)
{
	int fd = dafs_be_create(t->ex, dirfd, name, DAFS_O_RDWR | DAFS_O_EXCL,
				0644, fh, a);

	T(fd >= 0);
	close(fd);
}

static void rename_fn(void)
{
	dafs_fh_t A, B, C, F, V, X, Y, TF, fh;
	dafs_attr_t a, b, c, f, v, x, y, tf, la;
	char p1[PATH_MAX], p2[PATH_MAX];
	int fa, fb, fc, fd;
	struct tab t;

	tab_open(&t);
	fa = tmkdir(&t, t.root, "a", &A, &a);
	fb = tmkdir(&t, fa, "b", &B, &b);
	fc = tmkdir(&t, fb, "c", &C, &c);
	tcreate(&t, fc, "f", &F, &f);
	close(fb);

	/* The top directory renamed: everything beneath it still resolves,
	 * through the parent links. */
	T_EQ(dafs_be_rename(t.root, "a", t.root, "z", 0), 0);
	SAME(&t, &A, &a);
	SAME(&t, &B, &b);
	SAME(&t, &C, &c);
	SAME(&t, &F, &f);
	/* A middle one, to another parent. */
	T_EQ(dafs_be_rename(fa, "b", t.root, "b2", 0), 0);
	SAME(&t, &B, &b);
	SAME(&t, &C, &c);
	SAME(&t, &F, &f);
	T_EQ(dafs_be_lookup(t.ex, t.root, "b2", &fh, NULL), 0);
	T(fh.len == B.len && !memcmp(fh.data, B.data, B.len));
	/* The file itself. */
	T_EQ(dafs_be_rename(fc, "f", t.root, "g", 0), 0);
	SAME(&t, &F, &f);
	close(fc);

	/* Renamed over another file: that one is gone, stale. */
	tcreate(&t, t.root, "victim", &V, &v);
	T_EQ(dafs_be_rename(t.root, "g", t.root, "victim", 0), 0);
	T_EQ(dafs_be_resolve(t.ex, &V), -ESTALE);
	SAME(&t, &F, &f);

	/* Exchanged: both follow. */
	tcreate(&t, t.root, "x", &X, &x);
	fd = tmkdir(&t, t.root, "y", &Y, &y);
	close(fd);
	T_EQ(dafs_be_rename(t.root, "x", t.root, "y", DAFS_RENAME_EXCHANGE), 0);
	SAME(&t, &X, &x);
	SAME(&t, &Y, &y);
	T_EQ(dafs_be_lookup(t.ex, t.root, "x", NULL, &la), 0);
	T_EQ(la.ino, y.ino);

	/* Linked into place, the temporary removed: the handle follows. */
	tcreate(&t, t.root, "tmpf", &TF, &tf);
	fd = dafs_be_resolve(t.ex, &TF);
	T(fd >= 0);
	T_EQ(dafs_be_link(fd, t.root, "final", NULL), 0);
	close(fd);
	T_EQ(dafs_be_remove(t.root, "tmpf"), 0);
	SAME(&t, &TF, &tf);

	/* Renamed by a local user, not through dafsd: stale, until a lookup
	 * records the new name. */
	xpath(p1, tabexp, "z");
	xpath(p2, tabexp, "zz");
	T_EQ(rename(p1, p2), 0);
	T_EQ(dafs_be_resolve(t.ex, &A), -ESTALE);
	T_EQ(dafs_be_lookup(t.ex, t.root, "zz", &fh, NULL), 0);
	SAME(&t, &A, &a);
	close(fa);
	tab_close(&t);
}

static void stale_fn(void)
{
	dafs_fh_t F, D, R1, R2, S1, O, bad;
	dafs_attr_t f, d, r1, r2, s1, o;
	struct dafs_table *tab;
	struct dafs_export *ex2;
	struct dafs_table_rec rec[2];
	char p[PATH_MAX], *path;
	unsigned i, bit;
	struct tab t;
	uint64_t rino;
	uint16_t id2;
	int fd;

	tab_open(&t);
	T_EQ(dafs_state_table_open(t.st, t.id, &tab), 0);
	T_EQ(dafs_be_getattr(t.root, &o), 0);
	rino = o.ino;
	/* Removed through dafsd: stale, and the record is gone too. */
	tcreate(&t, t.root, "f", &F, &f);
	T_EQ(dafs_state_table_path(tab, f.ino, rino, &path), 1);
	T(!strcmp(path, "f"));
	free(path);
	T_EQ(dafs_be_remove(t.root, "f"), 0);
	T_EQ(dafs_be_resolve(t.ex, &F), -ESTALE);
	T_EQ(dafs_state_table_path(tab, f.ino, rino, &path), -ENOENT);
	fd = tmkdir(&t, t.root, "d", &D, &d);
	close(fd);
	T_EQ(dafs_be_rmdir(t.root, "d"), 0);
	T_EQ(dafs_be_resolve(t.ex, &D), -ESTALE);
	T_EQ(dafs_state_table_path(tab, d.ino, rino, &path), -ENOENT);
	/* So is the record of a file renamed over. */
	tcreate(&t, t.root, "g", &F, &f);
	tcreate(&t, t.root, "h", &D, &d);
	T_EQ(dafs_be_rename(t.root, "g", t.root, "h", 0), 0);
	T_EQ(dafs_state_table_path(tab, d.ino, rino, &path), -ENOENT);
	T_EQ(dafs_state_table_path(tab, f.ino, rino, &path), 1);
	T(!strcmp(path, "h"));
	free(path);

	/* Replaced by a new file of the same name: the old handle is stale
	 * even where the inode number comes back (ext4 often reuses it at
	 * once), since the generation in the kernel handle differs. */
	tcreate(&t, t.root, "r", &R1, &r1);
	T_EQ(dafs_be_remove(t.root, "r"), 0);
	tcreate(&t, t.root, "r", &R2, &r2);
	T_EQ(dafs_be_resolve(t.ex, &R1), -ESTALE);
	SAME(&t, &R2, &r2);
	fprintf(stderr, "# table: replaced file %s its inode number\n",
		r1.ino == r2.ino ? "reused" : "did not reuse");
	/* The same, behind dafsd's back: the record still names "s". */
	tcreate(&t, t.root, "s", &S1, &s1);
	xpath(p, tabexp, "s");
	T_EQ(unlink(p), 0);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	T(fd >= 0);
	close(fd);
	T_EQ(dafs_be_resolve(t.ex, &S1), -ESTALE);

	/* Through the descriptor cache the same: a directory in use, then
	 * moved out of the export by a local user, is stale at once (the
	 * cache keeps nothing for table handles, whose walk confines). */
	{
		struct fdc_entry *ref;
		char out[PATH_MAX + 8];
		dafs_fh_t M;
		dafs_attr_t m;

		fd = tmkdir(&t, t.root, "mv", &M, &m);
		close(fd);
		fd = dafs_be_resolve_ref(t.ex, &M, &ref, NULL, NULL);
		T(fd >= 0);
		T(ref == NULL);
		dafs_be_unref(t.ex, ref, fd);
		xpath(p, tabexp, "mv");
		snprintf(out, sizeof(out), "%s.out", tabexp);
		T_EQ(rename(p, out), 0);
		T_EQ(dafs_be_resolve_ref(t.ex, &M, &ref, NULL, NULL), -ESTALE);
		T_EQ(rmdir(out), 0);
	}

	/* The reuse detector on its own: same number and record, another
	 * generation (the last kernel handle byte), a valid MAC. */
	bad = R2;
	bad.data[bad.len - 9] ^= 1;
	remac(t.key, &bad);
	T_EQ(dafs_be_resolve(t.ex, &bad), -ESTALE);
	/* Another recorded object's number under this kernel handle. */
	tcreate(&t, t.root, "other", &O, &o);
	bad = R2;
	for (i = 0; i < 8; i++)
		bad.data[3 + i] = (uint8_t)(o.ino >> (8 * i));
	remac(t.key, &bad);
	T_EQ(dafs_be_resolve(t.ex, &bad), -ESTALE);

	/* Forged without the key: every bit, the length, the export. */
	for (i = 0; i < R2.len; i++) {
		for (bit = 0; bit < 8; bit++) {
			bad = R2;
			bad.data[i] ^= (uint8_t)(1u << bit);
			T_EQ(dafs_be_resolve(t.ex, &bad), -DAFS_EBADHANDLE);
		}
	}
	bad = R2;
	bad.len--;
	T_EQ(dafs_be_resolve(t.ex, &bad), -DAFS_EBADHANDLE);
	bad.len += 2;
	T_EQ(dafs_be_resolve(t.ex, &bad), -DAFS_EBADHANDLE);
	bad.len = 0;
	T_EQ(dafs_be_resolve(t.ex, &bad), -DAFS_EBADHANDLE);
	T_EQ(dafs_state_export_id(t.st, "tab2", &id2), 0);
	T_EQ(dafs_export_open(t.st, "tab2", tabexp, id2, t.key, &ex2), 0);
	T_EQ(dafs_be_resolve(ex2, &R2), -DAFS_EBADHANDLE);
	dafs_export_close(ex2);

	/* A loop in the table ends in -ESTALE, not in a hang. */
	rec[0] = (struct dafs_table_rec){
		.ino = o.ino, .parent = FAKE_INO, .name = "l1"};
	rec[1] = (struct dafs_table_rec){
		.ino = FAKE_INO, .parent = o.ino, .name = "l2"};
	T_EQ(dafs_state_table_put(tab, rec, 2, 0), 0);
	T_EQ(dafs_be_resolve(t.ex, &O), -ESTALE);
	T_EQ(dafs_state_table_path(tab, o.ino, r2.ino, &path), -ELOOP);
	T_EQ(dafs_state_table_path(tab, FAKE_INO - 1, r2.ino, &path), -ENOENT);
	/* Names that are not one component are refused. */
	rec[0].name = "a/b";
	T_EQ(dafs_state_table_put(tab, rec, 1, 0), -EINVAL);
	rec[0].name = "..";
	T_EQ(dafs_state_table_put(tab, rec, 1, 0), -EINVAL);
	/* A lookup puts the record right again. */
	T_EQ(dafs_be_lookup(t.ex, t.root, "other", NULL, NULL), 0);
	T_EQ(dafs_be_resolve(t.ex, &O), -ESTALE); /* no handle asked */
	T_EQ(dafs_be_lookup(t.ex, t.root, "other", &bad, NULL), 0);
	SAME(&t, &O, &o);
	dafs_state_table_close(tab);
	tab_close(&t);
}

struct keep {
	dafs_fh_t fh[MANY];
	uint64_t ino[MANY];
	unsigned n;
};

static int keep_entry(void *arg, const struct dafs_be_dirent *e)
{
	struct keep *k = arg;

	if (k->n == MANY)
		return -ENOSPC;
	k->fh[k->n] = e->fh;
	k->ino[k->n++] = e->ino;
	return 0;
}

static void restart_fn(void)
{
	static struct keep k;
	dafs_fh_t R, K, F, rh;
	dafs_attr_t kk, f, a;
	char name[16], buf[16];
	unsigned i;
	int d, fd, io, eof;
	struct tab t;

	tab_open(&t);
	dafs_export_root(t.ex, &R);
	d = tmkdir(&t, t.root, "keep", &K, &kk);
	fd = dafs_be_create(t.ex, d, "f", DAFS_O_RDWR, 0600, &F, &f);
	T(fd >= 0);
	T_EQ(write(fd, "kept", 4), 4);
	close(fd);
	f.size = 4;
	close(d);
	/* Files made locally, handed out only by readdir with plus. */
	d = tmkdir(&t, t.root, "many", &K, &kk);
	for (i = 0; i < MANY; i++) {
		snprintf(name, sizeof(name), "m%02u", i);
		fd = openat(d, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		T(fd >= 0);
		close(fd);
	}
	T_EQ(dafs_be_readdir(t.ex, d, 0, 1, keep_entry, &k, &eof), 0);
	T_EQ(eof, 1);
	T_EQ(k.n, MANY);
	close(d);

	/* Restart: the export and the state closed and opened again. */
	tab_close(&t);
	tab_open(&t);
	dafs_export_root(t.ex, &rh);
	T(rh.len == R.len && !memcmp(rh.data, R.data, R.len));
	SAME(&t, &F, &f);
	for (i = 0; i < MANY; i++) {
		fd = dafs_be_resolve(t.ex, &k.fh[i]);
		T(fd >= 0);
		T_EQ(dafs_be_getattr(fd, &a), 0);
		T_EQ(a.ino, k.ino[i]);
		close(fd);
	}
	fd = dafs_be_resolve(t.ex, &F);
	io = dafs_be_open(fd, DAFS_O_RDONLY, NULL);
	T(io >= 0);
	T_EQ(read(io, buf, sizeof(buf)), 4);
	T(!memcmp(buf, "kept", 4));
	close(io);
	close(fd);
	tab_close(&t);
}

/* Handles passed between the runs below, through files; 0 or -1. */
static int fh_save(const char *name, const dafs_fh_t *fh)
{
	char p[PATH_MAX];
	FILE *f;
	int ok;

	if (snprintf(p, sizeof(p), "%s/%s", tabtmp, name) >= (int)sizeof(p))
		return -1;
	f = fopen(p, "w");
	if (!f)
		return -1;
	ok = fwrite(fh, sizeof(*fh), 1, f) == 1;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int fh_load(const char *name, dafs_fh_t *fh)
{
	char p[PATH_MAX];
	FILE *f;
	int ok;

	if (snprintf(p, sizeof(p), "%s/%s", tabtmp, name) >= (int)sizeof(p))
		return -1;
	f = fopen(p, "r");
	if (!f)
		return -1;
	ok = fread(fh, sizeof(*fh), 1, f) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

static void mode_user_fn(void)
{
	dafs_fh_t fh;
	dafs_attr_t a;
	struct tab t;

	tab_open(&t);
	tcreate(&t, t.root, "x", &fh, &a);
	T_EQ(fh_save("table.fh", &fh), 0);
	tab_close(&t);
}

static void mode_user_again_fn(void)
{
	dafs_fh_t fh;
	struct tab t;
	int fd;

	tab_open(&t);
	/* A kernel handle from the privileged run cannot be opened now. */
	T_EQ(fh_load("kernel.fh", &fh), 0);
	T_EQ(dafs_be_resolve(t.ex, &fh), -ESTALE);
	/* The table handle of the first run still can. */
	T_EQ(fh_load("table.fh", &fh), 0);
	fd = dafs_be_resolve(t.ex, &fh);
	T(fd >= 0);
	close(fd);
	tab_close(&t);
}

START_TEST(table_deep)
{
	as_nobody(deep_fn);
}
END_TEST

START_TEST(table_rename)
{
	as_nobody(rename_fn);
}
END_TEST

START_TEST(table_stale)
{
	as_nobody(stale_fn);
}
END_TEST

START_TEST(table_restart)
{
	as_nobody(restart_fn);
}
END_TEST

/* As root the export keeps kernel handles; handles of either kind made by
 * one run are answered sensibly by a run of the other kind. */
START_TEST(table_root_kernel)
{
	struct dafs_export *kex;
	struct dafs_state *st;
	uint8_t key[16];
	dafs_fh_t fh, rfh;
	dafs_attr_t a;
	struct stat sb;
	char p[PATH_MAX];
	uint16_t id;
	int fd;

	if (!is_root_user())
		return;
	as_nobody(mode_user_fn);

	ck_assert_int_eq(dafs_state_open(tabstate, &st), 0);
	ck_assert_int_eq(dafs_state_handle_key(st, key), 0);
	ck_assert_int_eq(dafs_state_export_id(st, "tab", &id), 0);
	ck_assert_int_eq(dafs_export_open(st, "tab", tabexp, id, key, &kex), 0);
	ck_assert_int_eq(dafs_export_table(kex), 0);
	dafs_export_root(kex, &rfh);
	ck_assert_uint_eq(rfh.data[0], 1);
	/* The unprivileged run's table handle carries the kernel handle. */
	ck_assert_int_eq(fh_load("table.fh", &fh), 0);
	ck_assert_uint_eq(fh.data[0], 2);
	fd = dafs_be_resolve(kex, &fh);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_getattr(fd, &a), 0);
	close(fd);
	xpath(p, tabexp, "x");
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_uint_eq(a.ino, sb.st_ino);
	/* Its own handles are kernel handles, which the next unprivileged
	 * run refuses as stale (it cannot open them). */
	fd = dafs_be_resolve(kex, &rfh);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dafs_be_lookup(kex, fd, "x", &fh, NULL), 0);
	close(fd);
	ck_assert_uint_eq(fh.data[0], 1);
	ck_assert_int_eq(fh_save("kernel.fh", &fh), 0);
	dafs_export_close(kex);
	dafs_state_close(st);
	as_nobody(mode_user_again_fn);
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
	tcase_add_test(tc, handle_cached);
	tcase_add_test(tc, fdcache_rules);
	tcase_add_test(tc, handle_survives_restart);
	suite_add_tcase(s, tc);

	tc = tcase_create("creds");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, creds_switch);
	tcase_add_test(tc, creds_cached);
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

	tc = tcase_create("table");
	tcase_add_unchecked_fixture(tc, tab_base_setup, tab_base_teardown);
	tcase_add_checked_fixture(tc, tab_setup, NULL);
	tcase_add_test(tc, table_deep);
	tcase_add_test(tc, table_rename);
	tcase_add_test(tc, table_stale);
	tcase_add_test(tc, table_restart);
	tcase_add_test(tc, table_root_kernel);
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
