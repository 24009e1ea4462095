/*
 * test_dafs.c - integration tests: a real dafsd and libdafs over
 * 127.0.0.1. Every test starts its own daemon on a fresh export (see
 * harness.h), talks to it only through the public API (and two test hooks
 * of libdafs), and checks what a user would notice: the bytes, the error
 * codes, and the files as they are on the local disk of the export.
 *
 * One TCase per area; run one with CK_RUN_CASE=<name> (docs/testing.md).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "harness.h"

/* libdafs test hooks (src/client/client_i.h): drop the connection right
 * after the next request is sent; count reconnections. */
void dafs__test_drop_after_send(dafs_session_t *s);
uint64_t dafs__test_reconnects(dafs_session_t *s);

#define KiB 1024u
#define MiB (1024u * 1024u)

/* The daemon and session of the running test (each test is a process). */
static struct it_daemon D;
static dafs_session_t *S;
static dafs_fh_t ROOT;

/* ---- assertions: OK and EXPECT, in harness.h ---- */

/* ---- data patterns and checksums ---- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The bytes of a file filled with pattern @seed, at offsets [off, off +
 * len): a function of the offset, so any range can be checked alone. */
static void fill(void *buf, size_t len, uint64_t seed, uint64_t off)
{
	uint8_t *p = buf;
	uint64_t w;
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		w = mix64(seed ^ ((off + i) >> 3));
		p[i] = (uint8_t)(w >> (((off + i) & 7) * 8));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		w = mix64(seed ^ ((off + i) >> 3));
		memcpy(p + i, &w, 8); /* little-endian machine */
	}
	for (; i < len; i++) {
		w = mix64(seed ^ ((off + i) >> 3));
		p[i] = (uint8_t)(w >> (((off + i) & 7) * 8));
	}
}

static uint64_t fnv1a(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* ---- the local side of the export ---- */

static const char *lpath(char *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *lpath(char *buf, const char *fmt, ...)
{
	char rel[PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	ck_assert_int_eq(it_join(buf, PATH_MAX, D.export_dir, rel), 0);
	return buf;
}

static void lwrite(const char *rel, const void *data, size_t len, mode_t mode)
{
	char p[PATH_MAX];
	int fd = open(lpath(p, "%s", rel), O_WRONLY | O_CREAT | O_TRUNC, mode);

	ck_assert_msg(fd >= 0, "open %s: %s", p, strerror(errno));
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* The whole local file (malloc'd, *len its size). */
static uint8_t *lread(const char *rel, size_t *len)
{
	char p[PATH_MAX];
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	ssize_t n;
	int fd = open(lpath(p, "%s", rel), O_RDONLY);

	ck_assert_msg(fd >= 0, "open %s: %s", p, strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = xmalloc((size_t)st.st_size);
	while (done < (size_t)st.st_size) {
		n = read(fd, buf + done, (size_t)st.st_size - done);
		ck_assert_int_gt(n, 0);
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return buf;
}

static int lexists(const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	return lstat(lpath(p, "%s", rel), &st) == 0;
}

static struct stat lstat_of(const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	ck_assert_msg(lstat(lpath(p, "%s", rel), &st) == 0, "lstat %s: %s", p,
		      strerror(errno));
	return st;
}

static void lmkdir(const char *rel, mode_t mode)
{
	char p[PATH_MAX];

	ck_assert_int_eq(mkdir(lpath(p, "%s", rel), mode), 0);
	ck_assert_int_eq(chmod(p, mode), 0);
}

/* The local file equals @want, by size and checksum. */
static void lcheck(const char *rel, const void *want, size_t len)
{
	size_t n;
	uint8_t *got = lread(rel, &n);

	ck_assert_msg(n == len, "%s: %zu bytes on disk, expected %zu", rel, n,
		      len);
	ck_assert_msg(fnv1a(got, n) == fnv1a(want, len) &&
			      !memcmp(got, want, len),
		      "%s: content on disk differs", rel);
	free(got);
}

static int fh_eq(const dafs_fh_t *a, const dafs_fh_t *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

/* ---- fixtures ---- */

static dafs_session_t *session(const dafs_session_opts_t *o)
{
	dafs_session_t *s = NULL;

	OK(dafs_session_open(D.url, o, &s));
	ck_assert_ptr_nonnull(s);
	return s;
}

static void start(void)
{
	int rc;

	umask(022);
	rc = it_daemon_init(&D, "d");
	ck_assert_msg(rc == 0, "daemon dirs: %s", strerror(-rc));
	rc = it_daemon_start(&D);
	ck_assert_msg(rc == 0, "dafsd did not start: %s", strerror(-rc));
	S = session(NULL);
	OK(dafs_root(S, &ROOT));
}

/* Stop the daemon (it must exit 0 on SIGTERM) and check its log for
 * sanitizer reports; clean up before asserting, so nothing is left. */
static void stop(void)
{
	char why[640];

	if (S)
		dafs_session_close(S);
	S = NULL;
	ck_assert_msg(!it_daemon_end(&D, why, sizeof(why)), "%s", why);
}

/*
 * The open id of a closed file. The API never hands one out (dafs_close
 * frees the file), yet a client that raced its own close would send one;
 * this mirrors struct dafs_file of src/client/client_i.h, checked against
 * the real object before it is trusted.
 */
struct file_mirror {
	dafs_session_t *s;
	uint64_t open_id;
	int flags;
	dafs_fh_t fh;
	int deleg;
	uint64_t deleg_id;
	int cached;
	/* the write-back state after: zeros are "off" */
	_Alignas(16) unsigned char wb[512];
};

static void mirror_file(dafs_file_t *f, struct file_mirror *m)
{
	ck_assert_msg((const char *)dafs_file_fh(f) ==
			      (const char *)f +
				      offsetof(struct file_mirror, fh),
		      "struct dafs_file changed: update file_mirror");
	memset(m, 0, sizeof(*m));
	memcpy(m, f, offsetof(struct file_mirror, wb));
	ck_assert_msg(m->s == S && m->cached == 0 && m->deleg == 0,
		      "struct dafs_file changed: update file_mirror");
}

/* ---- 1. metadata operations ---- */

START_TEST(test_lookup_getattr)
{
	char longname[DAFS_NAME_MAX + 2];
	dafs_fh_t fh, dfh, fh2;
	dafs_attr_t a, a2;
	struct stat st;

	lwrite("f", "hello", 5, 0644);
	lmkdir("d", 0755);
	lwrite("d/g", "x", 1, 0600);

	OK(dafs_lookup(S, &ROOT, "f", &fh, &a));
	st = lstat_of("f");
	ck_assert(S_ISREG(a.mode));
	ck_assert_uint_eq(a.size, 5);
	ck_assert_uint_eq(a.ino, st.st_ino);
	ck_assert_uint_eq(a.mode, st.st_mode);
	ck_assert_uint_eq(a.nlink, 1);
	ck_assert_uint_eq(a.uid, st.st_uid);
	ck_assert_uint_eq(a.gid, st.st_gid);
	ck_assert_int_eq(a.mtime.sec, st.st_mtim.tv_sec);
	ck_assert_uint_eq(a.mtime.nsec, (uint32_t)st.st_mtim.tv_nsec);

	OK(dafs_getattr(S, &fh, &a2));
	ck_assert_uint_eq(a2.ino, a.ino);
	ck_assert_uint_eq(a2.size, 5);
	ck_assert_uint_eq(a2.blocks, (uint64_t)st.st_blocks);

	OK(dafs_getattr(S, &ROOT, &a));
	ck_assert(S_ISDIR(a.mode));
	ck_assert_uint_eq(a.ino, lstat_of(".").st_ino);

	EXPECT(dafs_lookup(S, &ROOT, "missing", &fh2, NULL), -ENOENT);
	EXPECT(dafs_lookup(S, &fh, "x", &fh2, NULL), -ENOTDIR);

	OK(dafs_lookup(S, &ROOT, "d", &dfh, &a));
	ck_assert(S_ISDIR(a.mode));
	OK(dafs_lookup(S, &dfh, "g", NULL, &a2));
	ck_assert_uint_eq(a2.ino, lstat_of("d/g").st_ino);
	ck_assert_uint_eq(a2.mode & 07777, 0600);
	OK(dafs_lookup(S, &dfh, ".", NULL, &a2));
	ck_assert_uint_eq(a2.ino, a.ino);
	OK(dafs_lookup(S, &dfh, "..", NULL, &a2));
	ck_assert_uint_eq(a2.ino, lstat_of(".").st_ino);

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	EXPECT(dafs_lookup(S, &ROOT, longname, NULL, NULL), -ENAMETOOLONG);
	EXPECT(dafs_lookup(S, &ROOT, "", NULL, NULL), -EINVAL);
}
END_TEST

/* The session's count of requests of operation @name; -1 if no such
 * operation is listed. */
static long long op_count(const char *name)
{
	const char *n;
	uint64_t c;
	unsigned i;

	for (i = 0; !dafs_op_count(S, i, &n, &c); i++)
		if (!strcmp(n, name))
			return (long long)c;
	return -1;
}

/* Every request sent is counted once, under its operation. */
START_TEST(test_op_count)
{
	long long getattrs, lookups, opens, closes;
	const char *name;
	dafs_file_t *f;
	unsigned i, n;
	dafs_fh_t fh;
	uint64_t c;

	for (n = 0; !dafs_op_count(S, n, &name, &c); n++)
		ck_assert(name && *name);
	ck_assert_uint_ge(n, 30); /* LOOKUP ... LOCKT */
	EXPECT(dafs_op_count(S, n, &name, &c), -ENOENT);
	ck_assert_int_eq(op_count("CB_RECALL"), -1); /* the server's */

	lwrite("f", "hello", 5, 0644);
	getattrs = op_count("GETATTR");
	lookups = op_count("LOOKUP");
	opens = op_count("OPEN");
	closes = op_count("CLOSE");
	ck_assert(getattrs >= 0 && lookups >= 0 && opens >= 0 && closes >= 0);
	OK(dafs_lookup(S, &ROOT, "f", &fh, NULL));
	EXPECT(dafs_lookup(S, &ROOT, "missing", NULL, NULL), -ENOENT);
	for (i = 0; i < 3; i++)
		OK(dafs_getattr(S, &fh, NULL));
	OK(dafs_open(S, &fh, O_RDONLY, &f));
	OK(dafs_close(f));
	ck_assert_int_eq(op_count("LOOKUP"), lookups + 2);
	ck_assert_int_eq(op_count("GETATTR"), getattrs + 3);
	ck_assert_int_eq(op_count("OPEN"), opens + 1);
	ck_assert_int_eq(op_count("CLOSE"), closes + 1);
}
END_TEST

START_TEST(test_setattr)
{
	uint8_t data[100], *got;
	dafs_setattr_t sa;
	struct timespec t0, t1;
	dafs_fh_t fh;
	dafs_attr_t a;
	struct stat st;
	size_t n, i;

	fill(data, sizeof(data), 1, 0);
	lwrite("s", data, sizeof(data), 0644);
	OK(dafs_lookup(S, &ROOT, "s", &fh, NULL));

	memset(&sa, 0, sizeof(sa));
	sa.mask = DAFS_SET_MODE;
	sa.mode = 0600;
	OK(dafs_setattr(S, &fh, &sa, &a));
	ck_assert_uint_eq(a.mode, S_IFREG | 0600);
	ck_assert_uint_eq(lstat_of("s").st_mode, S_IFREG | 0600);

	sa.mask = DAFS_SET_UID | DAFS_SET_GID;
	sa.uid = 1234;
	sa.gid = 5678;
	if (geteuid() == 0) {
		OK(dafs_setattr(S, &fh, &sa, &a));
		st = lstat_of("s");
		ck_assert_uint_eq(st.st_uid, 1234);
		ck_assert_uint_eq(st.st_gid, 5678);
		ck_assert_uint_eq(a.uid, 1234);
		ck_assert_uint_eq(a.gid, 5678);
	} else {
		EXPECT(dafs_setattr(S, &fh, &sa, &a), -EPERM);
	}

	/* grow: old bytes kept, the rest reads as zeros */
	sa.mask = DAFS_SET_SIZE;
	sa.size = 300;
	OK(dafs_setattr(S, &fh, &sa, &a));
	ck_assert_uint_eq(a.size, 300);
	got = lread("s", &n);
	ck_assert_uint_eq(n, 300);
	ck_assert(!memcmp(got, data, 100));
	for (i = 100; i < 300; i++)
		ck_assert_uint_eq(got[i], 0);
	free(got);
	/* shrink */
	sa.size = 50;
	OK(dafs_setattr(S, &fh, &sa, &a));
	ck_assert_uint_eq(a.size, 50);
	lcheck("s", data, 50);

	/* explicit times, to the nanosecond */
	sa.mask = DAFS_SET_ATIME | DAFS_SET_MTIME;
	sa.atime.sec = 1000000000;
	sa.atime.nsec = 123456789;
	sa.mtime.sec = 1234567890;
	sa.mtime.nsec = 987654321;
	OK(dafs_setattr(S, &fh, &sa, &a));
	st = lstat_of("s");
	ck_assert_int_eq(st.st_atim.tv_sec, 1000000000);
	ck_assert_int_eq(st.st_atim.tv_nsec, 123456789);
	ck_assert_int_eq(st.st_mtim.tv_sec, 1234567890);
	ck_assert_int_eq(st.st_mtim.tv_nsec, 987654321);
	ck_assert_int_eq(a.mtime.sec, 1234567890);
	ck_assert_uint_eq(a.mtime.nsec, 987654321);

	/* the server's "now" */
	clock_gettime(CLOCK_REALTIME, &t0);
	sa.mask = DAFS_SET_ATIME_NOW | DAFS_SET_MTIME_NOW;
	OK(dafs_setattr(S, &fh, &sa, &a));
	clock_gettime(CLOCK_REALTIME, &t1);
	st = lstat_of("s");
	ck_assert_int_ge(st.st_mtim.tv_sec, t0.tv_sec - 1);
	ck_assert_int_le(st.st_mtim.tv_sec, t1.tv_sec + 1);
	ck_assert_int_ge(st.st_atim.tv_sec, t0.tv_sec - 1);
	ck_assert_int_le(st.st_atim.tv_sec, t1.tv_sec + 1);

	/* contradictory and malformed requests change nothing */
	sa.mask = DAFS_SET_MTIME | DAFS_SET_MTIME_NOW;
	EXPECT(dafs_setattr(S, &fh, &sa, NULL), -EINVAL);
	sa.mask = DAFS_SET_MTIME;
	sa.mtime.nsec = 1000000000u;
	EXPECT(dafs_setattr(S, &fh, &sa, NULL), -EINVAL);
	ck_assert_uint_eq(lstat_of("s").st_size, 50);
	ck_assert_uint_eq(lstat_of("s").st_mode, S_IFREG | 0600);
}
END_TEST

START_TEST(test_create)
{
	dafs_file_t *f;
	dafs_fh_t fh, fh2;
	dafs_attr_t a;
	char buf[16];

	OK(dafs_create(S, &ROOT, "c", O_RDWR, 0640, &f, &fh, &a));
	ck_assert(S_ISREG(a.mode));
	ck_assert_uint_eq(a.mode & 07777, 0640);
	ck_assert_uint_eq(a.size, 0);
	ck_assert(fh_eq(dafs_file_fh(f), &fh));
	ck_assert_uint_eq(lstat_of("c").st_mode, S_IFREG | 0640);
	ck_assert_uint_eq(lstat_of("c").st_ino, a.ino);
	EXPECT(dafs_write(f, "abc", 3, 0, NULL), 3);
	OK(dafs_close(f));
	lcheck("c", "abc", 3);

	/* exclusive on an existing name */
	f = NULL;
	EXPECT(dafs_create(S, &ROOT, "c", O_RDWR | O_EXCL, 0640, &f, NULL,
			   NULL),
	       -EEXIST);
	ck_assert_ptr_null(f);
	lcheck("c", "abc", 3);

	/* non-exclusive: opens what is there, same handle, data kept */
	OK(dafs_create(S, &ROOT, "c", O_RDWR | O_CREAT, 0600, &f, &fh2, &a));
	ck_assert(fh_eq(&fh, &fh2));
	ck_assert_uint_eq(a.size, 3);
	EXPECT(dafs_read(f, buf, sizeof(buf), 0, NULL), 3);
	ck_assert(!memcmp(buf, "abc", 3));
	OK(dafs_close(f));
	ck_assert_uint_eq(lstat_of("c").st_mode & 07777, 0640);

	/* O_TRUNC empties it */
	OK(dafs_create(S, &ROOT, "c", O_WRONLY | O_TRUNC, 0640, &f, NULL, &a));
	ck_assert_uint_eq(a.size, 0);
	OK(dafs_close(f));
	ck_assert_uint_eq(lstat_of("c").st_size, 0);

	/* O_EXCL on a new name works */
	OK(dafs_create(S, &ROOT, "c2", O_WRONLY | O_EXCL, 0600, &f, NULL,
		       NULL));
	OK(dafs_close(f));
	ck_assert(lexists("c2"));

	/* not in a file, not over a directory */
	EXPECT(dafs_create(S, &fh, "x", O_RDWR, 0600, &f, NULL, NULL),
	       -ENOTDIR);
	lmkdir("dir", 0755);
	EXPECT(dafs_create(S, &ROOT, "dir", O_RDWR, 0600, &f, NULL, NULL),
	       -EISDIR);
}
END_TEST

START_TEST(test_mkdir_mknod)
{
	dafs_fh_t fh, fh2;
	dafs_attr_t a;
	dafs_file_t *f = NULL;
	char p[PATH_MAX];
	int hold;

	OK(dafs_mkdir(S, &ROOT, "m", 0750, &fh, &a));
	ck_assert_uint_eq(a.mode, S_IFDIR | 0750);
	ck_assert_uint_eq(lstat_of("m").st_mode, S_IFDIR | 0750);
	ck_assert_uint_eq(lstat_of("m").st_ino, a.ino);
	OK(dafs_lookup(S, &ROOT, "m", &fh2, NULL));
	ck_assert(fh_eq(&fh, &fh2));
	EXPECT(dafs_mkdir(S, &ROOT, "m", 0750, NULL, NULL), -EEXIST);
	/* nested */
	OK(dafs_mkdir(S, &fh, "n", 0700, NULL, NULL));
	ck_assert(S_ISDIR(lstat_of("m/n").st_mode));

	OK(dafs_mknod(S, &ROOT, "fifo", S_IFIFO | 0640, 0, &fh, &a));
	ck_assert_uint_eq(a.mode, S_IFIFO | 0640);
	ck_assert(S_ISFIFO(lstat_of("fifo").st_mode));
	OK(dafs_getattr(S, &fh, &a));
	ck_assert(S_ISFIFO(a.mode));

	OK(dafs_mknod(S, &ROOT, "sock", S_IFSOCK | 0600, 0, &fh2, &a));
	ck_assert_uint_eq(a.mode, S_IFSOCK | 0600);
	ck_assert(S_ISSOCK(lstat_of("sock").st_mode));
	EXPECT(dafs_mknod(S, &ROOT, "sock", S_IFSOCK | 0600, 0, NULL, NULL),
	       -EEXIST);

	/*
	 * The server does not open FIFOs (a handler would block on them;
	 * the backend documents -EINVAL). A local O_RDWR opener keeps a
	 * server that did open them from blocking this test.
	 */
	hold = open(lpath(p, "fifo"), O_RDWR | O_NONBLOCK);
	ck_assert_int_ge(hold, 0);
	EXPECT(dafs_open(S, &fh, O_RDONLY, &f), -EINVAL);
	close(hold);
	EXPECT(dafs_open(S, &fh2, O_RDONLY, &f), -EINVAL);
}
END_TEST

START_TEST(test_symlink_link)
{
	const char *target = "target/of/link";
	char buf[64], p[PATH_MAX];
	dafs_fh_t sl, orig, fh;
	dafs_attr_t a;
	ssize_t n;

	OK(dafs_symlink(S, &ROOT, "sl", target, &sl, &a));
	ck_assert(S_ISLNK(a.mode));
	ck_assert_uint_eq(a.size, strlen(target));
	n = readlink(lpath(p, "sl"), buf, sizeof(buf));
	ck_assert_int_eq(n, (ssize_t)strlen(target));
	ck_assert(!memcmp(buf, target, (size_t)n));

	memset(buf, 'X', sizeof(buf));
	EXPECT(dafs_readlink(S, &sl, buf, sizeof(buf)), strlen(target));
	ck_assert_str_eq(buf, target);
	/* room for the target but not its NUL */
	EXPECT(dafs_readlink(S, &sl, buf, strlen(target)), -ERANGE);
	EXPECT(dafs_readlink(S, &sl, buf, strlen(target) + 1), strlen(target));
	ck_assert_str_eq(buf, target);
	EXPECT(dafs_symlink(S, &ROOT, "sl", "other", NULL, NULL), -EEXIST);
	/* a symlink is not a file to read */
	EXPECT(dafs_readlink(S, &ROOT, buf, sizeof(buf)), -EINVAL);

	lwrite("orig", "data", 4, 0644);
	OK(dafs_lookup(S, &ROOT, "orig", &orig, NULL));
	OK(dafs_link(S, &orig, &ROOT, "hard", &a));
	ck_assert_uint_eq(a.nlink, 2);
	ck_assert_uint_eq(lstat_of("hard").st_ino, lstat_of("orig").st_ino);
	ck_assert_uint_eq(lstat_of("orig").st_nlink, 2);
	lcheck("hard", "data", 4);
	OK(dafs_lookup(S, &ROOT, "hard", &fh, &a));
	ck_assert_uint_eq(a.nlink, 2);
	EXPECT(dafs_link(S, &orig, &ROOT, "hard", NULL), -EEXIST);
	OK(dafs_remove(S, &ROOT, "orig"));
	OK(dafs_getattr(S, &fh, &a));
	ck_assert_uint_eq(a.nlink, 1);
}
END_TEST

START_TEST(test_remove_rmdir)
{
	char p[PATH_MAX];
	int kerr;

	lwrite("file", "1", 1, 0644);
	lmkdir("dir", 0755);
	lmkdir("full", 0755);
	lwrite("full/inner", "2", 1, 0644);
	lmkdir("empty", 0755);
	lmkdir("kernel", 0755);

	EXPECT(dafs_remove(S, &ROOT, "nofile"), -ENOENT);
	/* a directory: whatever the kernel says locally (EISDIR on Linux) */
	ck_assert_int_ne(unlink(lpath(p, "kernel")), 0);
	kerr = errno;
	ck_assert(kerr == EISDIR || kerr == EPERM);
	EXPECT(dafs_remove(S, &ROOT, "dir"), -kerr);
	ck_assert(lexists("dir"));

	OK(dafs_remove(S, &ROOT, "file"));
	ck_assert(!lexists("file"));
	EXPECT(dafs_remove(S, &ROOT, "file"), -ENOENT);

	EXPECT(dafs_rmdir(S, &ROOT, "full"), -ENOTEMPTY);
	ck_assert(lexists("full/inner"));
	lwrite("plain", "3", 1, 0644);
	EXPECT(dafs_rmdir(S, &ROOT, "plain"), -ENOTDIR);
	ck_assert(lexists("plain"));
	EXPECT(dafs_rmdir(S, &ROOT, "nodir"), -ENOENT);
	OK(dafs_rmdir(S, &ROOT, "empty"));
	ck_assert(!lexists("empty"));
	EXPECT(dafs_rmdir(S, &ROOT, ".."), -EINVAL);
	EXPECT(dafs_remove(S, &ROOT, "."), -EINVAL);
}
END_TEST

START_TEST(test_rename)
{
	dafs_fh_t sub;

	lwrite("r1", "AAAA", 4, 0644);
	OK(dafs_rename(S, &ROOT, "r1", &ROOT, "r2", 0));
	ck_assert(!lexists("r1"));
	lcheck("r2", "AAAA", 4);

	/* replaces an existing target */
	lwrite("r3", "BB", 2, 0644);
	OK(dafs_rename(S, &ROOT, "r2", &ROOT, "r3", 0));
	ck_assert(!lexists("r2"));
	lcheck("r3", "AAAA", 4);

	/* NOREPLACE refuses, and changes nothing */
	lwrite("r4", "CCC", 3, 0644);
	EXPECT(dafs_rename(S, &ROOT, "r3", &ROOT, "r4", DAFS_RENAME_NOREPLACE),
	       -EEXIST);
	lcheck("r3", "AAAA", 4);
	lcheck("r4", "CCC", 3);
	OK(dafs_rename(S, &ROOT, "r4", &ROOT, "r5", DAFS_RENAME_NOREPLACE));
	lcheck("r5", "CCC", 3);

	/* EXCHANGE swaps */
	OK(dafs_rename(S, &ROOT, "r3", &ROOT, "r5", DAFS_RENAME_EXCHANGE));
	lcheck("r3", "CCC", 3);
	lcheck("r5", "AAAA", 4);
	EXPECT(dafs_rename(S, &ROOT, "r3", &ROOT, "none", DAFS_RENAME_EXCHANGE),
	       -ENOENT);

	/* across directories */
	OK(dafs_mkdir(S, &ROOT, "sub", 0755, &sub, NULL));
	OK(dafs_rename(S, &ROOT, "r5", &sub, "moved", 0));
	ck_assert(!lexists("r5"));
	lcheck("sub/moved", "AAAA", 4);

	EXPECT(dafs_rename(S, &ROOT, "ghost", &ROOT, "x", 0), -ENOENT);
	EXPECT(dafs_rename(S, &ROOT, "r3", &ROOT, "x",
			   DAFS_RENAME_NOREPLACE | DAFS_RENAME_EXCHANGE),
	       -EINVAL);
	/* a directory into itself */
	EXPECT(dafs_rename(S, &ROOT, "sub", &sub, "loop", 0), -EINVAL);
}
END_TEST

/* readdir collection: names (and types) in order of delivery */
#define RD_MAX 256
struct rd_list {
	int n, stop_after;
	char name[RD_MAX][64];
	uint32_t type[RD_MAX];
	uint64_t cookie[RD_MAX], ino[RD_MAX];
	int plus_ok;
	dafs_fh_t fh[RD_MAX];
	dafs_attr_t attr[RD_MAX];
};

static int rd_collect(void *arg, const dafs_dirent_t *e)
{
	struct rd_list *l = arg;

	if (l->n < RD_MAX) {
		snprintf(l->name[l->n], sizeof(l->name[0]), "%s", e->name);
		l->type[l->n] = e->type;
		l->cookie[l->n] = e->cookie;
		l->ino[l->n] = e->ino;
		if (e->fh && e->attr) {
			l->fh[l->n] = *e->fh;
			l->attr[l->n] = *e->attr;
		} else {
			l->plus_ok = 0;
		}
	}
	l->n++;
	return l->stop_after && l->n % l->stop_after == 0;
}

static int rd_find(const struct rd_list *l, const char *name)
{
	int i, at = -1;

	for (i = 0; i < l->n && i < RD_MAX; i++)
		if (!strcmp(l->name[i], name)) {
			ck_assert_msg(at < 0, "%s listed twice", name);
			at = i;
		}
	return at;
}

/* Read a whole directory into @l, resuming until eof. */
static void rd_all(const dafs_fh_t *dir, int plus, struct rd_list *l)
{
	uint64_t cookie = 0;
	int eof = 0, rc, calls = 0;

	while (!eof) {
		rc = dafs_readdir(S, dir, &cookie, plus, rd_collect, l, &eof);
		ck_assert_msg(rc >= 0, "readdir: %s", dafs_strerror(rc));
		ck_assert_int_lt(++calls, 1000);
	}
}

START_TEST(test_readdir)
{
	static struct rd_list all, plus, parts, tail;
	char name[32], rel[96], p[PATH_MAX];
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t cookie;
	int i, eof, rc, at;

	lmkdir("rd", 0755);
	for (i = 0; i < 50; i++) {
		uint8_t data[64];

		snprintf(name, sizeof(name), "rd/file%03d", i);
		fill(data, (size_t)i, (uint64_t)i, 0);
		lwrite(name, data, (size_t)i, 0644);
	}
	lmkdir("rd/sub1", 0755);
	lmkdir("rd/sub2", 0700);
	ck_assert_int_eq(symlink("file000", lpath(p, "rd/link")), 0);
	ck_assert_int_eq(mkfifo(lpath(p, "rd/fifo"), 0644), 0);
	OK(dafs_lookup(S, &ROOT, "rd", &dir, NULL));

	/* names and types, without attributes */
	memset(&all, 0, sizeof(all));
	rd_all(&dir, 0, &all);
	ck_assert_int_eq(all.n, 54);
	for (i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "file%03d", i);
		at = rd_find(&all, name);
		ck_assert_msg(at >= 0, "%s not listed", name);
		ck_assert_uint_eq(all.type[at], S_IFREG);
		snprintf(rel, sizeof(rel), "rd/%s", name);
		ck_assert_uint_eq(all.ino[at], lstat_of(rel).st_ino);
	}
	ck_assert_uint_eq(all.type[rd_find(&all, "sub1")], S_IFDIR);
	ck_assert_uint_eq(all.type[rd_find(&all, "sub2")], S_IFDIR);
	ck_assert_uint_eq(all.type[rd_find(&all, "link")], S_IFLNK);
	ck_assert_uint_eq(all.type[rd_find(&all, "fifo")], S_IFIFO);
	ck_assert_int_lt(rd_find(&all, "."), 0);
	ck_assert_int_lt(rd_find(&all, ".."), 0);

	/* with plus: handles and attributes that match the disk */
	memset(&plus, 0, sizeof(plus));
	plus.plus_ok = 1;
	rd_all(&dir, 1, &plus);
	ck_assert_int_eq(plus.n, 54);
	ck_assert_msg(plus.plus_ok, "readdir plus gave no fh/attr");
	for (i = 0; i < plus.n; i++) {
		struct stat st;

		snprintf(rel, sizeof(rel), "rd/%s", plus.name[i]);
		st = lstat_of(rel);

		ck_assert_uint_eq(plus.attr[i].ino, st.st_ino);
		ck_assert_uint_eq(plus.attr[i].size, (uint64_t)st.st_size);
		ck_assert_uint_eq(plus.attr[i].mode, st.st_mode);
		ck_assert_uint_eq(plus.type[i], st.st_mode & S_IFMT);
		OK(dafs_getattr(S, &plus.fh[i], &a));
		ck_assert_uint_eq(a.ino, st.st_ino);
	}

	/* stopping early and resuming from the returned cookie: every
	 * entry once, none lost */
	memset(&parts, 0, sizeof(parts));
	parts.stop_after = 7;
	cookie = 0;
	eof = 0;
	for (i = 0; !eof && i < 100; i++) {
		rc = dafs_readdir(S, &dir, &cookie, 0, rd_collect, &parts,
				  &eof);
		ck_assert_int_ge(rc, 0);
		ck_assert_int_le(rc, 7);
	}
	ck_assert_int_ge(i, 8);
	ck_assert_int_eq(parts.n, 54);
	for (i = 0; i < all.n; i++)
		ck_assert_msg(rd_find(&parts, all.name[i]) >= 0,
			      "%s lost when resuming", all.name[i]);

	/* a cookie handed out with an entry resumes right after it */
	memset(&tail, 0, sizeof(tail));
	cookie = all.cookie[9];
	eof = 0;
	while (!eof)
		ck_assert_int_ge(dafs_readdir(S, &dir, &cookie, 0, rd_collect,
					      &tail, &eof),
				 0);
	ck_assert_int_eq(tail.n, all.n - 10);
	for (i = 0; i < tail.n; i++)
		ck_assert_str_eq(tail.name[i], all.name[10 + i]);

	OK(dafs_lookup(S, &dir, "file001", &fh, NULL));
	cookie = 0;
	EXPECT(dafs_readdir(S, &fh, &cookie, 0, rd_collect, &tail, &eof),
	       -ENOTDIR);
}
END_TEST

START_TEST(test_statfs)
{
	dafs_statfs_t st;
	struct statvfs vs;

	OK(dafs_statfs(S, &ROOT, &st));
	ck_assert_int_eq(statvfs(D.export_dir, &vs), 0);
	ck_assert_uint_eq(st.bsize, vs.f_bsize);
	ck_assert_uint_eq(st.frsize, vs.f_frsize);
	ck_assert_uint_eq(st.blocks, vs.f_blocks);
	ck_assert_uint_eq(st.namemax, vs.f_namemax);
	ck_assert_uint_eq(st.files, vs.f_files);
	ck_assert_uint_gt(st.blocks, 0);
	ck_assert_uint_le(st.bfree, st.blocks);
	ck_assert_uint_le(st.bavail, st.bfree);
	ck_assert_uint_le(st.ffree, st.files);
	ck_assert_uint_eq(st.namemax, 255);
}
END_TEST

START_TEST(test_open_close)
{
	struct file_mirror stale;
	dafs_file_t *f, *g;
	dafs_fh_t fh, dfh;
	char buf[8];

	lwrite("o", "0123456789", 10, 0644);
	lmkdir("od", 0755);
	OK(dafs_lookup(S, &ROOT, "o", &fh, NULL));
	OK(dafs_lookup(S, &ROOT, "od", &dfh, NULL));

	OK(dafs_open(S, &fh, O_RDWR, &f));
	ck_assert(fh_eq(dafs_file_fh(f), &fh));
	EXPECT(dafs_read(f, buf, 4, 3, NULL), 4);
	ck_assert(!memcmp(buf, "3456", 4));
	EXPECT(dafs_write(f, "ab", 2, 0, NULL), 2);
	OK(dafs_commit(f, 0));
	OK(dafs_commit(f, 1));
	lcheck("o", "ab23456789", 10);

	/* the server forgets a closed open id */
	mirror_file(f, &stale);
	OK(dafs_close(f));
	EXPECT(dafs_read((dafs_file_t *)&stale, buf, 4, 0, NULL),
	       -DAFS_EBADOPEN);
	EXPECT(dafs_write((dafs_file_t *)&stale, "zz", 2, 0, NULL),
	       -DAFS_EBADOPEN);
	EXPECT(dafs_commit((dafs_file_t *)&stale, 0), -DAFS_EBADOPEN);
	lcheck("o", "ab23456789", 10);

	/* two opens of one file are independent */
	OK(dafs_open(S, &fh, O_RDONLY, &f));
	OK(dafs_open(S, &fh, O_RDONLY, &g));
	OK(dafs_close(f));
	EXPECT(dafs_read(g, buf, 2, 0, NULL), 2);
	OK(dafs_close(g));

	/* directories open for reading only; not at all with O_TRUNC */
	OK(dafs_open(S, &dfh, O_RDONLY, &f));
	OK(dafs_close(f));
	EXPECT(dafs_open(S, &dfh, O_RDWR, &f), -EISDIR);
	EXPECT(dafs_open(S, &fh, O_WRONLY | O_RDWR, &f), -EINVAL);
	/* O_TRUNC on open */
	OK(dafs_open(S, &fh, O_WRONLY | O_TRUNC, &f));
	OK(dafs_close(f));
	ck_assert_uint_eq(lstat_of("o").st_size, 0);
}
END_TEST

START_TEST(test_fallocate_copy)
{
	const size_t slen = 300000;
	uint8_t *src = xmalloc(slen), *got;
	dafs_file_t *f, *sf, *df;
	dafs_fh_t fh;
	struct stat st;
	size_t n;
	int rc;

	OK(dafs_create(S, &ROOT, "fa", O_RDWR, 0644, &f, &fh, NULL));
	rc = dafs_fallocate(f, 0, 0, MiB);
	if (rc == -EOPNOTSUPP) {
		fprintf(stderr, "# fallocate unsupported on %s\n",
			D.export_dir);
	} else {
		OK(rc);
		st = lstat_of("fa");
		ck_assert_int_eq(st.st_size, MiB);
		ck_assert_int_ge(st.st_blocks, MiB / 512);
		OK(dafs_fallocate(f, FALLOC_FL_KEEP_SIZE, MiB, MiB));
		st = lstat_of("fa");
		ck_assert_int_eq(st.st_size, MiB);
		ck_assert_int_ge(st.st_blocks, 2 * MiB / 512);
		/* a hole punched keeps the size and reads zeros */
		OK(dafs_fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  0, 4096));
		ck_assert_int_eq(lstat_of("fa").st_size, MiB);
		EXPECT(dafs_fallocate(f, 0, 0, 0), -EINVAL);
	}
	OK(dafs_close(f));

	fill(src, slen, 42, 0);
	lwrite("src", src, slen, 0644);
	OK(dafs_lookup(S, &ROOT, "src", &fh, NULL));
	OK(dafs_open(S, &fh, O_RDONLY, &sf));
	OK(dafs_create(S, &ROOT, "dst", O_RDWR, 0644, &df, NULL, NULL));
	EXPECT(dafs_copy_range(sf, 1000, df, 0, 200000), 200000);
	lcheck("dst", src + 1000, 200000);
	/* past the source's end: short */
	EXPECT(dafs_copy_range(sf, slen - 100, df, 200000, 5000), 100);
	got = lread("dst", &n);
	ck_assert_uint_eq(n, 200100);
	ck_assert(!memcmp(got + 200000, src + slen - 100, 100));
	free(got);
	/* into a read-only open */
	EXPECT(dafs_copy_range(df, 0, sf, 0, 10), -EBADF);
	OK(dafs_close(sf));
	OK(dafs_close(df));
	free(src);
}
END_TEST

/* SEEK_DATA and SEEK_HOLE answered by the server's file, compared with
 * lseek(2) on the same file of the export; ENXIO past the end. */
START_TEST(test_lseek)
{
	static const int64_t offs[] = {0, 4095, 4096, 65536, 1048575,
				       1048576, 1052672, 2097151};
	char path[PATH_MAX], buf[4096];
	dafs_file_t *f;
	dafs_fh_t fh;
	size_t i;
	int fd, w;

	memset(buf, 'd', sizeof(buf));
	OK(dafs_create(S, &ROOT, "sparse", O_RDWR, 0644, &f, &fh, NULL));
	EXPECT(dafs_write(f, buf, sizeof(buf), 0, NULL), sizeof(buf));
	EXPECT(dafs_write(f, buf, sizeof(buf), MiB, NULL), sizeof(buf));
	OK(dafs_commit(f, 0));
	ck_assert_int_eq(it_join(path, sizeof(path), D.export_dir, "sparse"),
			 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	for (w = SEEK_DATA; w <= SEEK_HOLE; w++)
		for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			off_t want = lseek(fd, offs[i], w);
			int err = errno;
			int64_t got = dafs_lseek(f, (uint64_t)offs[i], w);

			ck_assert_msg(want < 0 ? got == -err : got == want,
				      "%s from %lld: %lld, lseek says %lld",
				      w == SEEK_DATA ? "SEEK_DATA"
						     : "SEEK_HOLE",
				      (long long)offs[i], (long long)got,
				      (long long)want);
		}
	/* past the end, and bad arguments */
	EXPECT(dafs_lseek(f, 3 * MiB, SEEK_DATA), -ENXIO);
	EXPECT(dafs_lseek(f, 3 * MiB, SEEK_HOLE), -ENXIO);
	EXPECT(dafs_lseek(f, 0, SEEK_SET), -EINVAL);
	close(fd);
	OK(dafs_close(f));
}
END_TEST

START_TEST(test_xattr)
{
	char buf[256], p[PATH_MAX];
	dafs_fh_t fh;
	ssize_t n;

	lwrite("xa", "x", 1, 0644);
	if (setxattr(lpath(p, "xa"), "user.probe", "1", 1, 0) &&
	    errno == EOPNOTSUPP) {
		fprintf(stderr, "# SKIP xattr: %s has no user.* xattrs\n",
			D.export_dir);
		return;
	}
	ck_assert_int_eq(removexattr(p, "user.probe"), 0);
	OK(dafs_lookup(S, &ROOT, "xa", &fh, NULL));

	OK(dafs_setxattr(S, &fh, "user.color", "blue", 4, 0));
	n = getxattr(p, "user.color", buf, sizeof(buf));
	ck_assert_int_eq(n, 4);
	ck_assert(!memcmp(buf, "blue", 4));

	EXPECT(dafs_getxattr(S, &fh, "user.color", NULL, 0), 4);
	EXPECT(dafs_getxattr(S, &fh, "user.color", buf, sizeof(buf)), 4);
	ck_assert(!memcmp(buf, "blue", 4));
	EXPECT(dafs_getxattr(S, &fh, "user.color", buf, 2), -ERANGE);
	EXPECT(dafs_getxattr(S, &fh, "user.none", buf, sizeof(buf)), -ENODATA);

	EXPECT(dafs_setxattr(S, &fh, "user.color", "red", 3, XATTR_CREATE),
	       -EEXIST);
	EXPECT(dafs_setxattr(S, &fh, "user.none", "red", 3, XATTR_REPLACE),
	       -ENODATA);
	OK(dafs_setxattr(S, &fh, "user.color", "green", 5, XATTR_REPLACE));
	ck_assert_int_eq(getxattr(p, "user.color", buf, sizeof(buf)), 5);
	ck_assert(!memcmp(buf, "green", 5));
	/* an empty value is a value */
	OK(dafs_setxattr(S, &fh, "user.empty", "", 0, 0));
	EXPECT(dafs_getxattr(S, &fh, "user.empty", NULL, 0), 0);

	n = dafs_listxattr(S, &fh, NULL, 0);
	ck_assert_int_eq(n, listxattr(p, NULL, 0));
	ck_assert_int_ge(n, (ssize_t)sizeof("user.color") +
				    (ssize_t)sizeof("user.empty"));
	EXPECT(dafs_listxattr(S, &fh, buf, sizeof(buf)), n);
	{
		int color = 0, empty = 0;
		ssize_t i = 0;

		while (i < n) {
			color |= !strcmp(buf + i, "user.color");
			empty |= !strcmp(buf + i, "user.empty");
			i += (ssize_t)strlen(buf + i) + 1;
		}
		ck_assert(color && empty);
	}
	EXPECT(dafs_listxattr(S, &fh, buf, 3), -ERANGE);

	OK(dafs_removexattr(S, &fh, "user.color"));
	EXPECT(dafs_getxattr(S, &fh, "user.color", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_lt(getxattr(p, "user.color", buf, sizeof(buf)), 0);
	ck_assert_int_eq(errno, ENODATA);
	EXPECT(dafs_removexattr(S, &fh, "user.color"), -ENODATA);
}
END_TEST

/* ---- 2. synchronous I/O ---- */

/*
 * One size, one buffer kind: write a new file, check it on disk, read it
 * back. @mem: register the buffers (else the library does it per I/O, or
 * sends inline).
 */
static void io_round(size_t size, int registered, uint64_t seed)
{
	uint8_t *wbuf = xmalloc(size), *rbuf = xmalloc(size + 100);
	dafs_mem_t *wm = NULL, *rm = NULL;
	dafs_file_t *f;
	char name[64];

	snprintf(name, sizeof(name), "io_%zu_%d", size, registered);
	fill(wbuf, size, seed, 0);
	if (registered) {
		OK(dafs_mem_register(S, wbuf, size, &wm));
		OK(dafs_mem_register(S, rbuf, size + 100, &rm));
	}
	OK(dafs_create(S, &ROOT, name, O_RDWR | O_EXCL, 0644, &f, NULL, NULL));
	EXPECT(dafs_write(f, wbuf, size, 0, wm), size);
	lcheck(name, wbuf, size);

	memset(rbuf, 0xee, size + 100);
	EXPECT(dafs_read(f, rbuf, size, 0, rm), size);
	ck_assert_msg(!memcmp(rbuf, wbuf, size), "%s: read back differs", name);
	/* asking for more than there is: short, exact bytes */
	memset(rbuf, 0xee, size + 100);
	EXPECT(dafs_read(f, rbuf, size + 100 > 4096 ? 4096 : size + 100,
			 size > 10 ? size - 10 : 0, rm),
	       size > 10 ? 10 : size);
	ck_assert(!memcmp(rbuf, wbuf + (size > 10 ? size - 10 : 0),
			  size > 10 ? 10 : size));
	/* at and past the end: nothing */
	EXPECT(dafs_read(f, rbuf, 100, size, rm), 0);
	EXPECT(dafs_read(f, rbuf, 100, size + 12345, rm), 0);
	OK(dafs_close(f));
	if (registered) {
		OK(dafs_mem_deregister(wm));
		OK(dafs_mem_deregister(rm));
	}
	free(wbuf);
	free(rbuf);
}

START_TEST(test_sync_io)
{
	static const uint32_t methods[] = {DAFS_WRITE_GATHER,
					   DAFS_WRITE_RDMA_READ};
	dafs_session_opts_t o;
	dafs_session_info_t info;
	size_t sizes[4];
	int i, reg;

	/* this loop iteration's write method, on a session of its own */
	dafs_session_close(S);
	S = NULL;
	memset(&o, 0, sizeof(o));
	o.write_method = methods[_i];
	S = session(&o);
	OK(dafs_root(S, &ROOT));
	OK(dafs_session_query(S, &info));
	ck_assert_uint_eq(info.write_method, methods[_i]);
	ck_assert_str_eq(info.transport, it_scheme());
	ck_assert_uint_gt(info.inline_max, 0);
	ck_assert_uint_ge(info.max_io, MiB);
	ck_assert_uint_gt(info.credits, 0);
	/* one registered send buffer per request in flight */
	ck_assert_uint_eq(info.desc_set_size, info.credits);

	sizes[0] = 1;
	sizes[1] = 4 * KiB;
	sizes[2] = info.inline_max + 1;
	sizes[3] = MiB;
	for (i = 0; i < 4; i++)
		for (reg = 0; reg < 2; reg++)
			io_round(sizes[i], reg, (uint64_t)(i * 2 + reg));
}
END_TEST

START_TEST(test_io_edges)
{
	dafs_session_info_t info;
	uint8_t *big, *back, *got;
	dafs_mem_t *m;
	dafs_file_t *f, *ro, *wo;
	dafs_fh_t fh;
	char buf[64];
	size_t n, i;

	OK(dafs_session_query(S, &info));
	big = xmalloc(info.max_io + 8192);
	back = xmalloc(info.max_io + 8192);
	fill(big, info.max_io + 8192, 7, 0);

	/* a write past the end leaves a hole of zeros */
	OK(dafs_create(S, &ROOT, "hole", O_RDWR, 0644, &f, &fh, NULL));
	EXPECT(dafs_write(f, "head", 4, 0, NULL), 4);
	EXPECT(dafs_write(f, "tail", 4, 10000, NULL), 4);
	got = lread("hole", &n);
	ck_assert_uint_eq(n, 10004);
	ck_assert(!memcmp(got, "head", 4) && !memcmp(got + 10000, "tail", 4));
	for (i = 4; i < 10000; i++)
		ck_assert_uint_eq(got[i], 0);
	free(got);
	memset(back, 0xee, 10004);
	EXPECT(dafs_read(f, back, 10004, 0, NULL), 10004);
	for (i = 4; i < 10000; i++)
		ck_assert_uint_eq(back[i], 0);
	ck_assert(!memcmp(back + 10000, "tail", 4));
	OK(dafs_close(f));

	/* O_APPEND writes land at the end, whatever the offset */
	lwrite("app", "12345", 5, 0644);
	OK(dafs_lookup(S, &ROOT, "app", &fh, NULL));
	OK(dafs_open(S, &fh, O_WRONLY | O_APPEND, &f));
	EXPECT(dafs_write(f, "XYZ", 3, 0, NULL), 3);
	EXPECT(dafs_write(f, big, info.inline_max + 1, 1, NULL),
	       info.inline_max + 1);
	OK(dafs_close(f));
	got = lread("app", &n);
	ck_assert_uint_eq(n, 8 + info.inline_max + 1);
	ck_assert(!memcmp(got, "12345XYZ", 8));
	ck_assert(!memcmp(got + 8, big, info.inline_max + 1));
	free(got);

	/* wrong open modes */
	OK(dafs_open(S, &fh, O_RDONLY, &ro));
	OK(dafs_open(S, &fh, O_WRONLY, &wo));
	EXPECT(dafs_write(ro, "no", 2, 0, NULL), -EBADF);
	EXPECT(dafs_write(ro, big, info.inline_max + 1, 0, NULL), -EBADF);
	EXPECT(dafs_read(wo, buf, sizeof(buf), 0, NULL), -EBADF);
	ck_assert_uint_eq(lstat_of("app").st_size, 8 + info.inline_max + 1);

	/* more than max_io at once; a buffer outside its registration */
	EXPECT(dafs_read(ro, back, info.max_io + 1, 0, NULL), -EINVAL);
	OK(dafs_mem_register(S, back, 8192, &m));
	EXPECT(dafs_read(ro, back + 4096, 8192, 0, m), -EINVAL);
	/* a sub-range of a registration is fine */
	memset(back, 0, 8192);
	EXPECT(dafs_read(ro, back + 100, 4097, 0, m), 4097);
	got = lread("app", &n);
	ck_assert(!memcmp(back + 100, got, 4097));
	free(got);
	OK(dafs_mem_deregister(m));
	EXPECT(dafs_mem_register(S, back, 0, &m), -EINVAL);
	OK(dafs_close(ro));
	OK(dafs_close(wo));

	/* a large direct write at an unaligned offset, via a registration */
	OK(dafs_mem_register(S, big, info.max_io + 8192, &m));
	OK(dafs_create(S, &ROOT, "odd", O_RDWR, 0644, &f, NULL, NULL));
	EXPECT(dafs_write(f, big + 3, info.max_io, 777, m), info.max_io);
	EXPECT(dafs_read(f, back, info.max_io, 777, NULL), info.max_io);
	ck_assert(!memcmp(back, big + 3, info.max_io));
	OK(dafs_close(f));
	OK(dafs_mem_deregister(m));
	got = lread("odd", &n);
	ck_assert_uint_eq(n, 777 + info.max_io);
	ck_assert(!memcmp(got + 777, big + 3, info.max_io));
	free(got);
	free(big);
	free(back);
}
END_TEST

/* ---- 3. asynchronous and batch I/O ---- */

#define PIPE_DEPTH 8
#define PIPE_CHUNK (256u * KiB)
#define PIPE_FILE (64u * MiB)

struct pipe_slot {
	uint64_t off; /* UINT64_MAX when idle */
	uint8_t *buf;
};

/*
 * Keep PIPE_DEPTH requests of PIPE_CHUNK in flight over the whole file,
 * reaping alternately with dafs_cg_wait and dafs_cg_poll. Reads are checked
 * against the pattern as they complete.
 */
static void pipeline(dafs_file_t *f, int write, uint8_t *mem_base,
		     dafs_mem_t *m, dafs_cg_t *cg, uint64_t seed)
{
	struct pipe_slot slot[PIPE_DEPTH];
	dafs_completion_t c[PIPE_DEPTH];
	uint8_t *want = xmalloc(PIPE_CHUNK);
	uint64_t next = 0, done = 0;
	int i, k, got, inflight = 0, turn = 0;

	for (i = 0; i < PIPE_DEPTH; i++) {
		slot[i].off = UINT64_MAX;
		slot[i].buf = mem_base + (size_t)i * PIPE_CHUNK;
	}
	while (done < PIPE_FILE) {
		for (i = 0; i < PIPE_DEPTH && next < PIPE_FILE; i++) {
			if (slot[i].off != UINT64_MAX)
				continue;
			slot[i].off = next;
			if (write) {
				fill(slot[i].buf, PIPE_CHUNK, seed, next);
				OK(dafs_write_async(f, slot[i].buf, PIPE_CHUNK,
						    next, m, cg, &slot[i]));
			} else {
				memset(slot[i].buf, 0, PIPE_CHUNK);
				OK(dafs_read_async(f, slot[i].buf, PIPE_CHUNK,
						   next, m, cg, &slot[i]));
			}
			next += PIPE_CHUNK;
			inflight++;
		}
		if (turn++ & 1) {
			got = dafs_cg_poll(cg, c, PIPE_DEPTH);
			ck_assert_int_ge(got, 0);
			if (!got)
				continue;
		} else {
			got = dafs_cg_wait(cg, c, PIPE_DEPTH, 10000);
			ck_assert_msg(got > 0, "cg_wait: %d (%s)", got,
				      dafs_strerror(got));
		}
		for (k = 0; k < got; k++) {
			struct pipe_slot *sl = c[k].ctx;

			ck_assert_msg(sl >= slot && sl < slot + PIPE_DEPTH &&
					      sl->off != UINT64_MAX,
				      "completion with a foreign ctx %p",
				      c[k].ctx);
			ck_assert_msg(c[k].result == PIPE_CHUNK,
				      "%s at %llu: %lld (%s)",
				      write ? "write" : "read",
				      (unsigned long long)sl->off,
				      (long long)c[k].result,
				      dafs_strerror((int)c[k].result));
			if (!write) {
				fill(want, PIPE_CHUNK, seed, sl->off);
				ck_assert_msg(
					!memcmp(want, sl->buf, PIPE_CHUNK),
					"read at %llu: wrong bytes",
					(unsigned long long)sl->off);
			}
			sl->off = UINT64_MAX;
			done += PIPE_CHUNK;
			inflight--;
		}
	}
	ck_assert_int_eq(inflight, 0);
	free(want);
}

START_TEST(test_async_pipeline)
{
	const uint64_t seed = 0xa5a5;
	uint8_t *mem = xmalloc((size_t)PIPE_DEPTH * PIPE_CHUNK);
	uint8_t *chunk = xmalloc(PIPE_CHUNK), *want = xmalloc(PIPE_CHUNK);
	dafs_completion_t c[4];
	dafs_mem_t *m;
	dafs_cg_t *cg;
	dafs_file_t *f;
	char p[PATH_MAX];
	uint64_t off, hl = 0, hw = 0;
	ssize_t n;
	int fd;

	OK(dafs_cg_new(S, &cg));
	EXPECT(dafs_cg_wait(cg, c, 4, 100), -ENOENT);
	EXPECT(dafs_cg_poll(cg, c, 4), 0);
	OK(dafs_mem_register(S, mem, (size_t)PIPE_DEPTH * PIPE_CHUNK, &m));
	OK(dafs_create(S, &ROOT, "big", O_RDWR, 0644, &f, NULL, NULL));

	pipeline(f, 1, mem, m, cg, seed);
	ck_assert_int_eq(lstat_of("big").st_size, PIPE_FILE);
	/* the disk agrees, chunk by chunk, and as a whole */
	fd = open(lpath(p, "big"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	for (off = 0; off < PIPE_FILE; off += PIPE_CHUNK) {
		n = pread(fd, chunk, PIPE_CHUNK, (off_t)off);
		ck_assert_int_eq(n, PIPE_CHUNK);
		fill(want, PIPE_CHUNK, seed, off);
		ck_assert_msg(!memcmp(chunk, want, PIPE_CHUNK),
			      "disk differs at %llu", (unsigned long long)off);
		hl ^= mix64(fnv1a(chunk, PIPE_CHUNK) + off);
		hw ^= mix64(fnv1a(want, PIPE_CHUNK) + off);
	}
	close(fd);
	ck_assert(hl == hw);

	pipeline(f, 0, mem, m, cg, seed);
	EXPECT(dafs_cg_wait(cg, c, 4, 100), -ENOENT);

	/* unregistered buffers and ctx values, reaped one at a time */
	memset(chunk, 0, PIPE_CHUNK);
	OK(dafs_read_async(f, chunk, PIPE_CHUNK, PIPE_FILE - 1000, NULL, cg,
			   (void *)0x1234));
	OK(dafs_read_async(f, want, 100, 0, NULL, cg, (void *)0x5678));
	EXPECT(dafs_cg_free(cg), -EBUSY);
	{
		int seen1 = 0, seen2 = 0, got = 0;

		while (got < 2) {
			int r = dafs_cg_wait(cg, c, 1, 10000);

			ck_assert_int_eq(r, 1);
			got++;
			if (c[0].ctx == (void *)0x1234) {
				ck_assert_int_eq(c[0].result, 1000);
				seen1++;
			} else {
				ck_assert_ptr_eq(c[0].ctx, (void *)0x5678);
				ck_assert_int_eq(c[0].result, 100);
				seen2++;
			}
		}
		ck_assert(seen1 == 1 && seen2 == 1);
	}
	fill(mem, 1000, seed, PIPE_FILE - 1000);
	ck_assert(!memcmp(chunk, mem, 1000));
	fill(mem, 100, seed, 0);
	ck_assert(!memcmp(want, mem, 100));
	EXPECT(dafs_cg_wait(cg, c, 4, 0), -ENOENT);

	/* a registration with I/O in flight cannot go away under it;
	 * completions are only processed when someone polls, so the read is
	 * still outstanding here */
	OK(dafs_read_async(f, mem, PIPE_CHUNK, 0, m, cg, NULL));
	EXPECT(dafs_mem_deregister(m), -EBUSY);
	EXPECT(dafs_cg_wait(cg, c, 4, 10000), 1);
	ck_assert_int_eq(c[0].result, PIPE_CHUNK);

	OK(dafs_close(f));
	OK(dafs_mem_deregister(m));
	OK(dafs_cg_free(cg));
	free(mem);
	free(chunk);
	free(want);
}
END_TEST

static dafs_iodesc_t iod(dafs_file_t *f, int write, void *buf, size_t len,
			 uint64_t off, dafs_mem_t *mem, uintptr_t ctx)
{
	dafs_iodesc_t d = {
		.file = f,
		.write = write,
		.buf = buf,
		.len = (uint32_t)len,
		.off = off,
		.mem = mem,
		.ctx = (void *)ctx,
	};

	return d;
}

/* The @n completions of a batch whose ctx values are 0 .. @n-1: each
 * exactly once, its result in @res[ctx]. */
static void batch_results(dafs_cg_t *cg, int n, int64_t *res)
{
	dafs_completion_t c[DAFS_BATCH_MAX];
	int seen[DAFS_BATCH_MAX] = {0};
	int i, k, got = 0;

	while (got < n) {
		k = dafs_cg_wait(cg, c, n - got, 10000);
		ck_assert_msg(k > 0, "cg_wait: %d", k);
		for (i = 0; i < k; i++) {
			uintptr_t x = (uintptr_t)c[i].ctx;

			ck_assert_uint_lt(x, (uintptr_t)n);
			ck_assert_int_eq(seen[x]++, 0);
			res[x] = c[i].result;
		}
		got += k;
	}
}

/* A batch whose inline reads outgrow the reply: every descriptor runs,
 * the writes are done and reported done, and only the reads whose data no
 * longer fits fail, alone, with EMSGSIZE. (The whole batch used to fail
 * after its writes were made.) */
START_TEST(test_batch_room)
{
	enum { NW = 16, NR = 32, B = 4096 };
	static uint8_t wbuf[NW][B], rbuf[NR][B];
	uint8_t *src = xmalloc(NR * B), *want = xmalloc(NW * B);
	dafs_iodesc_t io[NW + NR];
	int64_t res[NW + NR];
	dafs_file_t *in, *out;
	int i, rc, fit = 0;
	dafs_fh_t fh;
	dafs_cg_t *cg;

	fill(src, NR * B, 7, 0);
	lwrite("broom", src, NR * B, 0644);
	OK(dafs_lookup(S, &ROOT, "broom", &fh, NULL));
	OK(dafs_open(S, &fh, O_RDONLY, &in));
	OK(dafs_create(S, &ROOT, "broom.out", O_RDWR, 0644, &out, NULL, NULL));
	OK(dafs_cg_new(S, &cg));
	for (i = 0; i < NW; i++) {
		fill(wbuf[i], B, 100 + i, 0);
		memcpy(want + (size_t)i * B, wbuf[i], B);
		io[i] = iod(out, 1, wbuf[i], B, (uint64_t)i * B, NULL, i);
	}
	for (i = 0; i < NR; i++)
		io[NW + i] = iod(in, 0, rbuf[i], B, (uint64_t)i * B, NULL,
				 NW + i);
	OK(dafs_batch_io(S, io, NW + NR, cg));
	batch_results(cg, NW + NR, res);
	for (i = 0; i < NW; i++)
		EXPECT(res[i], B);
	lcheck("broom.out", want, NW * B);
	/* the reads in order: those that fit, then the rest refused */
	for (i = 0; i < NR; i++) {
		if (res[NW + i] == B) {
			ck_assert_int_eq(fit, i);
			ck_assert(!memcmp(rbuf[i], src + (size_t)i * B, B));
			fit++;
		} else {
			EXPECT(res[NW + i], -EMSGSIZE);
		}
	}
	/* 128 KiB of reply: most fit, not all */
	ck_assert_int_gt(fit, NR / 2);
	ck_assert_int_lt(fit, NR);

	/* a batch too big to send (32 inline writes: 128 KiB and more)
	 * fails here, and the slot it took is as it was: the requests after
	 * it are in sequence (they used to get DAFS_ESEQ, every one) */
	for (i = 0; i < 32; i++)
		io[i] = iod(out, 1, rbuf[i], B, (uint64_t)i * B, NULL, i);
	rc = dafs_batch_io(S, io, 32, cg);
	ck_assert_msg(rc == -E2BIG || rc == -EINVAL, "batch: %s",
		      dafs_strerror(rc));
	for (i = 0; i < 8; i++)
		OK(dafs_getattr(S, &ROOT, NULL));
	OK(dafs_close(in));
	OK(dafs_close(out));
	dafs_cg_free(cg);
	free(src);
	free(want);
}
END_TEST

START_TEST(test_batch)
{
	enum { NB = 8 };
	const size_t big = 512 * KiB, bigw = 300 * KiB;
	uint8_t *src = xmalloc(2 * MiB), *rbig, *wbig, small[200], tiny[100];
	uint8_t eofbuf[16], wobuf[16], stalebuf[16], *got;
	dafs_iodesc_t io[NB];
	dafs_completion_t c[NB];
	struct file_mirror stale;
	dafs_mem_t *mr, *mw;
	dafs_file_t *rw, *bo, *wo, *tmp;
	dafs_fh_t fh;
	dafs_cg_t *cg;
	int64_t res[NB];
	size_t len;

	fill(src, 2 * MiB, 99, 0);
	lwrite("bsrc", src, 2 * MiB, 0644);
	lwrite("wonly", "secret", 6, 0644);
	rbig = xmalloc(big);
	wbig = xmalloc(bigw);
	fill(wbig, bigw, 123, 0);
	fill(small, sizeof(small), 321, 0);
	OK(dafs_mem_register(S, rbig, big, &mr));
	OK(dafs_mem_register(S, wbig, bigw, &mw));

	OK(dafs_lookup(S, &ROOT, "bsrc", &fh, NULL));
	OK(dafs_open(S, &fh, O_RDONLY, &rw));
	OK(dafs_create(S, &ROOT, "bout", O_RDWR, 0644, &bo, NULL, NULL));
	OK(dafs_lookup(S, &ROOT, "wonly", &fh, NULL));
	OK(dafs_open(S, &fh, O_WRONLY, &wo));
	OK(dafs_open(S, &fh, O_RDONLY, &tmp));
	mirror_file(tmp, &stale);
	OK(dafs_close(tmp));
	OK(dafs_cg_new(S, &cg));

	memset(io, 0, sizeof(io));
	/* 0: small inline read */
	io[0] = iod(rw, 0, tiny, sizeof(tiny), 10, NULL, 0);
	/* 1: large registered read */
	io[1] = iod(rw, 0, rbig, big, 4096, mr, 1);
	/* 2: small inline write */
	io[2] = iod(bo, 1, small, sizeof(small), 0, NULL, 2);
	/* 3: large registered write after it */
	io[3] = iod(bo, 1, wbig, bigw, 4096, mw, 3);
	/* 4: a read on a write-only open fails alone */
	io[4] = iod(wo, 0, wobuf, sizeof(wobuf), 0, NULL, 4);
	/* 5: a closed open id fails alone */
	io[5] = iod((dafs_file_t *)&stale, 0, stalebuf, sizeof(stalebuf), 0,
		    NULL, 5);
	/* 6: a read at the end of the file */
	io[6] = iod(rw, 0, eofbuf, sizeof(eofbuf), 2 * MiB, NULL, 6);
	/* 7: a write on a read-only open fails alone */
	io[7] = iod(rw, 1, small, 10, 0, NULL, 7);

	EXPECT(dafs_batch_io(S, io, 0, cg), -EINVAL);
	EXPECT(dafs_batch_io(S, io, DAFS_BATCH_MAX + 1, cg), -EINVAL);
	OK(dafs_batch_io(S, io, NB, cg));
	batch_results(cg, NB, res);
	EXPECT(res[0], sizeof(tiny));
	ck_assert(!memcmp(tiny, src + 10, sizeof(tiny)));
	EXPECT(res[1], big);
	ck_assert(!memcmp(rbig, src + 4096, big));
	EXPECT(res[2], sizeof(small));
	EXPECT(res[3], bigw);
	EXPECT(res[4], -EBADF);
	EXPECT(res[5], -DAFS_EBADOPEN);
	EXPECT(res[6], 0);
	EXPECT(res[7], -EBADF);
	got = lread("bout", &len);
	ck_assert_uint_eq(len, 4096 + bigw);
	ck_assert(!memcmp(got, small, sizeof(small)));
	ck_assert(!memcmp(got + 4096, wbig, bigw));
	free(got);
	lcheck("wonly", "secret", 6);
	lcheck("bsrc", src, 2 * MiB);
	EXPECT(dafs_cg_wait(cg, c, NB, 0), -ENOENT);

	OK(dafs_cg_free(cg));
	OK(dafs_close(rw));
	OK(dafs_close(bo));
	OK(dafs_close(wo));
	OK(dafs_mem_deregister(mr));
	OK(dafs_mem_deregister(mw));
	free(src);
	free(rbig);
	free(wbig);
}
END_TEST

/* @len bytes of 0xee, as set before a read: nothing landed there (one
 * check for the whole range: a passing check costs check a message). */
static int untouched(const uint8_t *p, size_t len)
{
	while (len && *p == 0xee)
		p++, len--;
	return !len;
}

/*
 * Direct reads where the server cannot send from the file, or sends less
 * than asked: O_DIRECT opens (read through the I/O buffer, so alignment
 * errors are this read's own), a directory, and batch reads across and
 * past the end. Bytes past the count are never touched.
 */
START_TEST(test_read_direct_edges)
{
	const size_t size = 256 * KiB + 100, cap = 512 * KiB;
	uint8_t *data = xmalloc(size), *buf;
	dafs_iodesc_t io[3];
	dafs_completion_t c[3];
	int64_t res[3];
	dafs_file_t *f, *d;
	dafs_fh_t fh;
	dafs_mem_t *m;
	dafs_cg_t *cg;
	int i, n, got = 0;

	fill(data, size, 31, 0);
	lwrite("od", data, size, 0644);
	buf = aligned_alloc(4096, cap);
	ck_assert_ptr_nonnull(buf);
	OK(dafs_mem_register(S, buf, cap, &m));
	OK(dafs_lookup(S, &ROOT, "od", &fh, NULL));

	/* O_DIRECT: aligned, then short at the end, then past it */
	OK(dafs_open(S, &fh, O_RDONLY | O_DIRECT, &f));
	memset(buf, 0xee, cap);
	EXPECT(dafs_read(f, buf, 128 * KiB, 64 * KiB, m), 128 * KiB);
	ck_assert(!memcmp(buf, data + 64 * KiB, 128 * KiB));
	memset(buf, 0xee, cap);
	EXPECT(dafs_read(f, buf, 128 * KiB, 192 * KiB, m), 64 * KiB + 100);
	ck_assert(!memcmp(buf, data + 192 * KiB, 64 * KiB + 100));
	ck_assert(untouched(buf + 64 * KiB + 100, 64 * KiB - 100));
	EXPECT(dafs_read(f, buf, 64 * KiB, 512 * KiB, m), 0);
	/* misaligned: the kernel refuses it, and only this read fails */
	EXPECT(dafs_read(f, buf, 64 * KiB, 1, m), -EINVAL);
	memset(buf, 0xee, cap);
	EXPECT(dafs_read(f, buf, 64 * KiB, 0, m), 64 * KiB);
	ck_assert(!memcmp(buf, data, 64 * KiB));
	/* inline (small) reads of an O_DIRECT file: aligned works, an
	 * unaligned offset is the kernel's EINVAL, as on a local disk */
	memset(buf, 0xee, cap);
	EXPECT(dafs_read(f, buf, 4 * KiB, 8 * KiB, NULL), 4 * KiB);
	ck_assert(!memcmp(buf, data + 8 * KiB, 4 * KiB));
	EXPECT(dafs_read(f, buf, 4 * KiB, 100, NULL), -EINVAL);
	OK(dafs_close(f));

	/* O_DIRECT writes, inline (4 KiB) and gathered (64 KiB): the data
	 * arrives in message buffers and must reach the disk all the same */
	OK(dafs_open(S, &fh, O_RDWR | O_DIRECT, &f));
	fill(buf, 64 * KiB, 77, 0);
	EXPECT(dafs_write(f, buf, 4 * KiB, 0, NULL), 4 * KiB);
	EXPECT(dafs_write(f, buf, 64 * KiB, 64 * KiB, NULL), 64 * KiB);
	EXPECT(dafs_write(f, buf, 4 * KiB, 3, NULL), -EINVAL);
	OK(dafs_close(f));
	{
		size_t n2;
		uint8_t *back = lread("od", &n2);

		ck_assert_uint_eq(n2, size);
		ck_assert(!memcmp(back, buf, 4 * KiB));
		ck_assert(!memcmp(back + 4 * KiB, data + 4 * KiB, 60 * KiB));
		ck_assert(!memcmp(back + 64 * KiB, buf, 64 * KiB));
		free(back);
		memcpy(data, buf, 4 * KiB);
		memcpy(data + 64 * KiB, buf, 64 * KiB);
	}

	/* a directory reads as it always did */
	OK(dafs_open(S, &ROOT, O_RDONLY, &d));
	EXPECT(dafs_read(d, buf, 64 * KiB, 0, m), -EISDIR);
	OK(dafs_close(d));

	/* batch: across the end (short), past it (nothing), a plain one */
	OK(dafs_open(S, &fh, O_RDONLY, &f));
	OK(dafs_cg_new(S, &cg));
	memset(buf, 0xee, cap);
	io[0] = iod(f, 0, buf, 128 * KiB, size - 1000, m, 0);
	io[1] = iod(f, 0, buf + 128 * KiB, 64 * KiB, size + 1, m, 1);
	io[2] = iod(f, 0, buf + 256 * KiB, 200 * KiB, 5, m, 2);
	OK(dafs_batch_io(S, io, 3, cg));
	while (got < 3) {
		n = dafs_cg_wait(cg, c, 3, 10000);
		ck_assert_msg(n > 0, "cg_wait: %d", n);
		for (i = 0; i < n; i++)
			res[(uintptr_t)c[i].ctx] = c[i].result;
		got += n;
	}
	EXPECT(res[0], 1000);
	ck_assert(!memcmp(buf, data + size - 1000, 1000));
	ck_assert(untouched(buf + 1000, 256 * KiB - 1000));
	EXPECT(res[1], 0);
	EXPECT(res[2], 200 * KiB);
	ck_assert(!memcmp(buf + 256 * KiB, data + 5, 200 * KiB));
	OK(dafs_cg_free(cg));
	OK(dafs_close(f));

	OK(dafs_mem_deregister(m));
	free(buf);
	free(data);
}
END_TEST

/* Cuts the file short and writes it back, over and over. */
struct cutter {
	char path[PATH_MAX];
	const uint8_t *data;
	size_t size;
	atomic_int stop;
	unsigned cuts;
};

static void *cutter_main(void *arg)
{
	struct cutter *c = arg;
	int fd = open(c->path, O_WRONLY);
	size_t cut;

	if (fd < 0)
		return NULL;
	while (!atomic_load(&c->stop)) {
		cut = (size_t)(mix64(c->cuts++) % c->size);
		if (ftruncate(fd, (off_t)cut) ||
		    pwrite(fd, c->data + cut, c->size - cut, (off_t)cut) !=
			    (ssize_t)(c->size - cut))
			break;
	}
	close(fd);
	return NULL;
}

/*
 * Direct reads racing truncation on the server's side: the server sizes
 * each read before sending it, so a file cut meanwhile gives zeros in
 * place of the bytes it lost. Every byte that arrives is the file's or a
 * zero, never anything else, nothing lands past the count, and the
 * connection never breaks.
 */
START_TEST(test_read_truncate_race)
{
	const size_t size = 4 * MiB, len = MiB;
	uint8_t *data = xmalloc(size), *buf = xmalloc(len);
	uint64_t end, reconnects, off;
	struct cutter c;
	unsigned reads = 0, zeros = 0;
	dafs_file_t *f;
	dafs_fh_t fh;
	dafs_mem_t *m;
	pthread_t t;
	ssize_t n;
	size_t i;

	fill(data, size, 77, 0);
	lwrite("race", data, size, 0644);
	memset(&c, 0, sizeof(c));
	lpath(c.path, "race");
	c.data = data;
	c.size = size;
	OK(dafs_mem_register(S, buf, len, &m));
	OK(dafs_lookup(S, &ROOT, "race", &fh, NULL));
	OK(dafs_open(S, &fh, O_RDONLY, &f));
	reconnects = dafs__test_reconnects(S);

	ck_assert_int_eq(pthread_create(&t, NULL, cutter_main, &c), 0);
	end = it_now_ms() + 2000;
	while (it_now_ms() < end) {
		off = mix64(reads) % (size - len / 2);
		memset(buf, 0xee, len);
		n = dafs_read(f, buf, len, off, m);
		ck_assert_msg(n >= 0 && (size_t)n <= len, "read: %zd", n);
		/* plain loops, one check each: a passing check costs check a
		 * message to its runner */
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] == data[off + i])
				continue;
			if (buf[i])
				break;
			zeros++;
		}
		ck_assert_msg(
			i == (size_t)n,
			"read %u at %llu: byte %zu is 0x%02x, file 0x%02x",
			reads, (unsigned long long)off, i, buf[i],
			data[off + i]);
		while (i < len && buf[i] == 0xee)
			i++;
		ck_assert_msg(i == len,
			      "read %u: byte %zu past the count written", reads,
			      i);
		reads++;
	}
	atomic_store(&c.stop, 1);
	pthread_join(t, NULL);
	ck_assert_uint_gt(c.cuts, 0);
	fprintf(stderr, "# %u reads, %u cuts, %u zero bytes\n", reads, c.cuts,
		zeros);

	/* the file whole again, and the same connection reads it right */
	n = dafs_read(f, buf, len, size - len, m);
	EXPECT(n, len);
	ck_assert(!memcmp(buf, data + size - len, len));
	ck_assert_uint_eq(dafs__test_reconnects(S), reconnects);
	OK(dafs_close(f));
	OK(dafs_mem_deregister(m));
	free(buf);
	free(data);
}
END_TEST

/* ---- 4. exactly-once through the reply cache ---- */

/* How many entries of the root are named @name (by a local scan). */
static int lcount(const char *name)
{
	struct dirent *e;
	DIR *d = opendir(D.export_dir);
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += !strcmp(e->d_name, name);
	closedir(d);
	return n;
}

START_TEST(test_replay_create)
{
	uint64_t before = dafs__test_reconnects(S);
	dafs_file_t *f = NULL;
	dafs_attr_t a;
	dafs_fh_t fh;

	dafs__test_drop_after_send(S);
	OK(dafs_create(S, &ROOT, "once", O_RDWR | O_EXCL, 0644, &f, &fh, &a));
	ck_assert_uint_eq(dafs__test_reconnects(S), before + 1);
	ck_assert_int_eq(lcount("once"), 1);
	ck_assert_uint_eq(lstat_of("once").st_ino, a.ino);
	/* the open the replayed reply named is the live one */
	EXPECT(dafs_write(f, "abc", 3, 0, NULL), 3);
	OK(dafs_close(f));
	lcheck("once", "abc", 3);
	/* and the session goes on, callback channel included */
	OK(dafs_getattr(S, &fh, &a));
	OK(dafs_callback_probe(S));
	EXPECT(dafs_create(S, &ROOT, "once", O_RDWR | O_EXCL, 0644, &f, NULL,
			   NULL),
	       -EEXIST);
}
END_TEST

START_TEST(test_replay_rename)
{
	uint64_t before = dafs__test_reconnects(S);

	lwrite("from", "moved", 5, 0644);
	dafs__test_drop_after_send(S);
	OK(dafs_rename(S, &ROOT, "from", &ROOT, "to", 0));
	ck_assert_uint_eq(dafs__test_reconnects(S), before + 1);
	ck_assert(!lexists("from"));
	lcheck("to", "moved", 5);
	ck_assert_int_eq(lcount("to"), 1);
	OK(dafs_lookup(S, &ROOT, "to", NULL, NULL));
}
END_TEST

START_TEST(test_replay_remove)
{
	uint64_t before = dafs__test_reconnects(S);

	lwrite("gone", "x", 1, 0644);
	dafs__test_drop_after_send(S);
	OK(dafs_remove(S, &ROOT, "gone"));
	ck_assert_uint_eq(dafs__test_reconnects(S), before + 1);
	ck_assert(!lexists("gone"));
	EXPECT(dafs_lookup(S, &ROOT, "gone", NULL, NULL), -ENOENT);
	/* twice in a row */
	lwrite("gone2", "x", 1, 0644);
	dafs__test_drop_after_send(S);
	OK(dafs_remove(S, &ROOT, "gone2"));
	ck_assert_uint_eq(dafs__test_reconnects(S), before + 2);
	ck_assert(!lexists("gone2"));
}
END_TEST

/* ---- 5. callback channel ---- */

START_TEST(test_callback)
{
	dafs_session_t *s2;
	int i;

	for (i = 0; i < 5; i++)
		OK(dafs_callback_probe(S));
	/* each session has its own channel */
	s2 = session(NULL);
	OK(dafs_callback_probe(s2));
	OK(dafs_callback_probe(S));
	dafs_session_close(s2);
}
END_TEST

/* ---- 6. confinement ---- */

/* @dir/@name does not exist on the local disk. */
static void absent(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	ck_assert_int_eq(it_join(p, sizeof(p), dir, name), 0);
	ck_assert_msg(lstat(p, &st) && errno == ENOENT, "%s exists", p);
}

START_TEST(test_confinement)
{
	char name[64], p[PATH_MAX];
	dafs_fh_t fh, etc, up, sub, bad;
	dafs_attr_t a, ra;
	dafs_file_t *f = NULL;
	unsigned i;
	int rc;

	snprintf(name, sizeof(name), "dafs-it-escape-%d", (int)getpid());
	OK(dafs_getattr(S, &ROOT, &ra));

	/* ".." of the root is the root */
	OK(dafs_lookup(S, &ROOT, "..", &fh, &a));
	ck_assert_uint_eq(a.ino, ra.ino);
	ck_assert_uint_eq(a.ino, lstat_of(".").st_ino);
	OK(dafs_lookup(S, &fh, "..", NULL, &a));
	ck_assert_uint_eq(a.ino, ra.ino);
	OK(dafs_mkdir(S, &ROOT, "sub", 0755, &sub, NULL));
	OK(dafs_lookup(S, &sub, "..", NULL, &a));
	ck_assert_uint_eq(a.ino, ra.ino);

	/* symlinks leading out are symlinks, never directories */
	ck_assert_int_eq(symlink("/etc", lpath(p, "etc")), 0);
	ck_assert_int_eq(symlink("../../..", lpath(p, "up")), 0);
	OK(dafs_lookup(S, &ROOT, "etc", &etc, &a));
	ck_assert(S_ISLNK(a.mode));
	OK(dafs_lookup(S, &ROOT, "up", &up, &a));
	ck_assert(S_ISLNK(a.mode));
	EXPECT(dafs_readlink(S, &etc, p, sizeof(p)), 4);
	ck_assert_str_eq(p, "/etc");

	rc = dafs_create(S, &etc, name, O_RDWR, 0644, &f, NULL, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "create via /etc: %s",
		      dafs_strerror(rc));
	rc = dafs_mkdir(S, &etc, name, 0755, NULL, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "mkdir via /etc: %s",
		      dafs_strerror(rc));
	rc = dafs_lookup(S, &etc, "passwd", &fh, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "lookup via /etc: %s",
		      dafs_strerror(rc));
	rc = dafs_create(S, &up, name, O_RDWR, 0644, &f, NULL, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "create via up: %s",
		      dafs_strerror(rc));
	rc = dafs_mkdir(S, &up, name, 0755, NULL, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "mkdir via up: %s",
		      dafs_strerror(rc));
	rc = dafs_symlink(S, &up, name, "x", NULL, NULL);
	ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "symlink via up: %s",
		      dafs_strerror(rc));
	/* nor are they files to open (that would read /etc/passwd) */
	ck_assert_int_eq(symlink("/etc/passwd", lpath(p, "pw")), 0);
	OK(dafs_lookup(S, &ROOT, "pw", &fh, NULL));
	EXPECT(dafs_open(S, &fh, O_RDONLY, &f), -ELOOP);
	EXPECT(dafs_create(S, &ROOT, "pw", O_RDWR, 0644, &f, NULL, NULL),
	       -ELOOP);
	EXPECT(dafs_getxattr(S, &etc, "user.x", NULL, 0), -ENODATA);

	/* names are single components */
	EXPECT(dafs_lookup(S, &ROOT, "sub/..", NULL, NULL), -EINVAL);
	EXPECT(dafs_lookup(S, &ROOT, "../etc", NULL, NULL), -EINVAL);
	EXPECT(dafs_create(S, &ROOT, "../escape", O_RDWR, 0644, &f, NULL, NULL),
	       -EINVAL);
	EXPECT(dafs_mkdir(S, &ROOT, "sub/x", 0755, NULL, NULL), -EINVAL);
	EXPECT(dafs_mknod(S, &ROOT, "../fifo", S_IFIFO | 0644, 0, NULL, NULL),
	       -EINVAL);
	EXPECT(dafs_symlink(S, &ROOT, "a/b", "x", NULL, NULL), -EINVAL);
	lwrite("mine", "m", 1, 0644);
	EXPECT(dafs_rename(S, &ROOT, "mine", &ROOT, "../stolen", 0), -EINVAL);
	OK(dafs_lookup(S, &ROOT, "mine", &fh, NULL));
	EXPECT(dafs_link(S, &fh, &ROOT, "../linked", NULL), -EINVAL);
	EXPECT(dafs_create(S, &ROOT, "..", O_RDWR, 0644, &f, NULL, NULL),
	       -EINVAL);
	EXPECT(dafs_mkdir(S, &ROOT, ".", 0755, NULL, NULL), -EINVAL);

	/* nothing appeared outside the export */
	absent("/etc", name);
	absent("", name);
	absent(D.dir, name);
	absent(D.dir, "escape");
	absent(D.dir, "stolen");
	absent(D.dir, "linked");
	absent(D.dir, "fifo");
	lcheck("mine", "m", 1);

	/* a handle with any one byte changed is refused */
	OK(dafs_lookup(S, &ROOT, "mine", &fh, NULL));
	ck_assert_uint_gt(fh.len, 8);
	for (i = 0; i < fh.len; i++) {
		bad = fh;
		bad.data[i] ^= 0x01;
		EXPECT(dafs_getattr(S, &bad, &a), -DAFS_EBADHANDLE);
		bad.data[i] ^= 0x81;
		EXPECT(dafs_open(S, &bad, O_RDONLY, &f), -DAFS_EBADHANDLE);
	}
	bad = fh;
	bad.len--;
	EXPECT(dafs_getattr(S, &bad, &a), -DAFS_EBADHANDLE);
	memset(&bad, 0, sizeof(bad));
	EXPECT(dafs_getattr(S, &bad, &a), -DAFS_EBADHANDLE);
	bad = ROOT;
	bad.data[bad.len / 2] ^= 0x40;
	EXPECT(dafs_create(S, &bad, "via-bad", O_RDWR, 0644, &f, NULL, NULL),
	       -DAFS_EBADHANDLE);
	ck_assert(!lexists("via-bad"));
	/* the good one still works */
	OK(dafs_getattr(S, &fh, &a));
}
END_TEST

/* ---- 7. handles survive a restart ---- */

START_TEST(test_restart)
{
	const size_t len = 100000;
	uint8_t *data = xmalloc(len), *back = xmalloc(len);
	dafs_fh_t fh, dfh, root2;
	dafs_attr_t a, a2;
	dafs_file_t *f;
	char p[PATH_MAX];
	uint16_t port1 = D.port;

	fill(data, len, 5, 0);
	OK(dafs_create(S, &ROOT, "persist", O_RDWR, 0644, &f, &fh, &a));
	EXPECT(dafs_write(f, data, len, 0, NULL), len);
	OK(dafs_close(f));
	OK(dafs_mkdir(S, &ROOT, "pdir", 0755, &dfh, NULL));
	lwrite("doomed", "d", 1, 0644);
	OK(dafs_lookup(S, &ROOT, "doomed", &root2, NULL));

	dafs_session_close(S);
	S = NULL;
	ck_assert_int_eq(it_daemon_stop(&D, 20000), 0);
	ck_assert_int_eq(it_daemon_start(&D), 0);
	fprintf(stderr, "# restarted dafsd: port %u -> %u\n", port1, D.port);
	S = session(NULL);

	OK(dafs_getattr(S, &fh, &a2));
	ck_assert_uint_eq(a2.ino, a.ino);
	ck_assert_uint_eq(a2.size, len);
	OK(dafs_open(S, &fh, O_RDONLY, &f));
	EXPECT(dafs_read(f, back, len, 0, NULL), len);
	ck_assert(!memcmp(back, data, len));
	OK(dafs_close(f));
	OK(dafs_create(S, &dfh, "child", O_RDWR, 0644, &f, NULL, NULL));
	OK(dafs_close(f));
	ck_assert(lexists("pdir/child"));
	{
		dafs_fh_t r;

		OK(dafs_root(S, &r));
		ck_assert(fh_eq(&r, &ROOT));
	}
	/* an object gone while the server was down: stale, not foreign */
	ck_assert_int_eq(unlink(lpath(p, "doomed")), 0);
	EXPECT(dafs_getattr(S, &root2, &a2), -ESTALE);
	free(data);
	free(back);
}
END_TEST

/*
 * The server goes away for good: the session gives up after its timeout,
 * says so from then on (sticky), and closes cleanly.
 */
START_TEST(test_server_gone)
{
	dafs_session_opts_t o;
	dafs_session_t *s2;
	dafs_file_t *f;
	dafs_attr_t a;
	int rc;

	/* the fixture's session would wait out its 30 s default */
	dafs_session_close(S);
	S = NULL;
	memset(&o, 0, sizeof(o));
	o.timeout_ms = 1500;
	s2 = session(&o);
	OK(dafs_getattr(s2, &ROOT, &a));
	OK(dafs_create(s2, &ROOT, "held", O_RDWR, 0644, &f, NULL, NULL));
	ck_assert_int_eq(it_daemon_stop(&D, 20000), 0);

	rc = dafs_getattr(s2, &ROOT, &a);
	ck_assert_msg(rc == -DAFS_EBROKEN || rc == -ETIMEDOUT,
		      "getattr with the server gone: %s", dafs_strerror(rc));
	EXPECT(dafs_getattr(s2, &ROOT, &a), -DAFS_EBROKEN);
	EXPECT(dafs_write(f, "x", 1, 0, NULL), -DAFS_EBROKEN);
	EXPECT(dafs_close(f), -DAFS_EBROKEN);
	dafs_session_close(s2);
}
END_TEST

/* Wait until every thread of @pid is stopped (a SIGSTOP is delivered to
 * each thread on its own, some time after kill() returns). */
static void wait_stopped(pid_t pid)
{
	char path[64], line[512];
	int tries, all, tid;
	DIR *d;
	FILE *fp;

	for (tries = 0; tries < 5000; tries++) {
		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		d = opendir(path);
		ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
		all = 1;
		for (struct dirent *e; all && (e = readdir(d));) {
			char *p;

			if ((tid = atoi(e->d_name)) <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/stat",
				 (int)pid, tid);
			fp = fopen(path, "r");
			if (!fp)
				continue; /* the thread is gone */
			p = fgets(line, sizeof(line), fp) ? strrchr(line, ')')
							  : NULL;
			fclose(fp);
			if (p && p[1] == ' ' && p[2] != 'T' && p[2] != 't')
				all = 0;
		}
		closedir(d);
		if (all)
			return;
		usleep(1000);
	}
	ck_abort_msg("dafsd %d did not stop", (int)pid);
}

/*
 * Asynchronous I/O out when the server goes for good: every read, write and
 * batch element submitted completes once, with -DAFS_EBROKEN; none is left
 * outstanding (before, the group never saw them: -DAFS_EBROKEN from
 * dafs_cg_wait, and dafs_cg_free refused with -EBUSY for ever).
 */
START_TEST(test_server_gone_async)
{
	static char buf[6][4096];
	dafs_session_opts_t o;
	dafs_completion_t c[16];
	dafs_iodesc_t io[2];
	dafs_session_t *s2;
	dafs_file_t *f;
	dafs_cg_t *cg;
	int seen[6] = {0}, got = 0, i, n;

	dafs_session_close(S);
	S = NULL;
	memset(&o, 0, sizeof(o));
	o.timeout_ms = 1500;
	s2 = session(&o);
	OK(dafs_create(s2, &ROOT, "async-held", O_RDWR, 0644, &f, NULL,
		       NULL));
	EXPECT(dafs_write(f, buf[0], sizeof(buf[0]), 0, NULL),
	       (ssize_t)sizeof(buf[0]));
	OK(dafs_cg_new(s2, &cg));
	/* stopped, the server takes the requests into its socket and never
	 * answers them */
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	wait_stopped(D.pid);
	for (i = 0; i < 4; i++) {
		if (i % 2)
			OK(dafs_write_async(f, buf[i], sizeof(buf[i]), 0,
					    NULL, cg, &seen[i]));
		else
			OK(dafs_read_async(f, buf[i], sizeof(buf[i]), 0,
					   NULL, cg, &seen[i]));
	}
	for (i = 0; i < 2; i++) {
		memset(&io[i], 0, sizeof(io[i]));
		io[i].file = f;
		io[i].write = i;
		io[i].buf = buf[4 + i];
		io[i].len = sizeof(buf[4 + i]);
		io[i].ctx = &seen[4 + i];
	}
	OK(dafs_batch_io(s2, io, 2, cg));
	ck_assert_int_eq(kill(D.pid, SIGKILL), 0);
	it_daemon_stop(&D, 20000);

	while (got < 6) {
		n = dafs_cg_wait(cg, c, 16, 10000);
		ck_assert_msg(n > 0, "dafs_cg_wait after %d of 6: %s", got,
			      n ? dafs_strerror(n) : "timed out");
		for (i = 0; i < n; i++) {
			ck_assert_int_eq(c[i].result, -DAFS_EBROKEN);
			(*(int *)c[i].ctx)++;
		}
		got += n;
	}
	for (i = 0; i < 6; i++)
		ck_assert_msg(seen[i] == 1, "I/O %d completed %d times", i,
			      seen[i]);
	EXPECT(dafs_cg_wait(cg, c, 16, 0), -ENOENT);
	OK(dafs_cg_free(cg));
	EXPECT(dafs_close(f), -DAFS_EBROKEN);
	dafs_session_close(s2);

	/* a session closed while its server is stopped with a read out:
	 * the read completes (-ECANCELED) and its group can be freed (it
	 * said -EBUSY for ever before) */
	ck_assert_int_eq(it_daemon_start(&D), 0);
	s2 = session(&o);
	OK(dafs_root(s2, &ROOT));
	OK(dafs_create(s2, &ROOT, "async-held", O_RDWR, 0644, &f, NULL,
		       NULL));
	OK(dafs_cg_new(s2, &cg));
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	wait_stopped(D.pid);
	OK(dafs_read_async(f, buf[0], sizeof(buf[0]), 0, NULL, cg, NULL));
	/* the file goes (its close times out against the stopped server),
	 * the read stays out */
	EXPECT(dafs_close(f), -ETIMEDOUT);
	dafs_session_close(s2);
	OK(dafs_cg_free(cg));
	ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
}
END_TEST

/* SIGCONT a stopped dafsd after a while, from a thread. */
struct cont_later {
	pid_t pid;
	int ms;
};

static void *cont_later_main(void *arg)
{
	struct cont_later *c = arg;

	usleep((useconds_t)c->ms * 1000);
	kill(c->pid, SIGCONT);
	return NULL;
}

/*
 * A direct read (the server's RDMA WRITE into registered memory) and a
 * write by the server's RDMA READ that time out while the server is
 * stopped; it acts on them when it goes on, after the caller has reused
 * its buffer. The buffer keeps its new bytes and the file never gets them:
 * the session breaks the request's connection and waits for it to go
 * before the call returns, and the slot comes back. (Before, the late RDMA WRITE landed in the
 * reused buffer, and the late RDMA READ wrote its new bytes to the file.)
 */
START_TEST(test_timeout_fence)
{
	enum { LEN = 65536 };
	struct cont_later cl = {D.pid, 1500};
	dafs_session_opts_t o;
	dafs_session_t *s2;
	dafs_file_t *f;
	dafs_mem_t *m;
	dafs_attr_t a;
	pthread_t t;
	uint8_t *buf, *back;
	size_t n, i, bad;

	memset(&o, 0, sizeof(o));
	o.timeout_ms = 1000;
	o.write_method = DAFS_WRITE_RDMA_READ;
	/* two slots: each request given up on must give its slot back (a
	 * NULL in its place on the new connection), or the calls after
	 * the second find none */
	o.credits = 2;
	s2 = session(&o);
	buf = xmalloc(LEN);
	OK(dafs_mem_register(s2, buf, LEN, &m));
	memset(buf, 'A', LEN);
	OK(dafs_create(s2, &ROOT, "fence", O_RDWR, 0644, &f, NULL, NULL));
	EXPECT(dafs_write(f, buf, LEN, 0, m), LEN);

	/* a read given up on, its buffer reused */
	memset(buf, 0, LEN);
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	wait_stopped(D.pid);
	ck_assert_int_eq(pthread_create(&t, NULL, cont_later_main, &cl), 0);
	n = (size_t)dafs_read(f, buf, LEN, 0, m);
	memset(buf, 'B', LEN);
	pthread_join(t, NULL);
	ck_assert_int_eq((ssize_t)n, -ETIMEDOUT);
	usleep(500000); /* the server has gone on by now */
	for (i = 0, bad = 0; i < LEN; i++)
		bad += buf[i] != 'B';
	ck_assert_msg(!bad, "%zu bytes of the reused buffer overwritten by "
		      "a read given up on", bad);
	OK(dafs_getattr(s2, &ROOT, &a)); /* over a new connection */

	/* a write given up on, its buffer reused */
	memset(buf, 'C', LEN);
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	wait_stopped(D.pid);
	ck_assert_int_eq(pthread_create(&t, NULL, cont_later_main, &cl), 0);
	n = (size_t)dafs_write(f, buf, LEN, 0, m);
	memset(buf, 'D', LEN);
	pthread_join(t, NULL);
	ck_assert_int_eq((ssize_t)n, -ETIMEDOUT);
	usleep(500000);
	for (i = 0; i < 4; i++)
		OK(dafs_getattr(s2, &ROOT, &a));
	back = lread("fence", &n);
	ck_assert_uint_eq(n, LEN);
	for (i = 0, bad = 0; i < LEN; i++)
		bad += back[i] == 'D';
	ck_assert_msg(!bad, "%zu bytes of the reused buffer written to the "
		      "file by a write given up on", bad);
	free(back);
	OK(dafs_close(f));
	OK(dafs_mem_deregister(m));
	free(buf);
	dafs_session_close(s2);
}
END_TEST

/* ---- 8. credentials ---- */

struct cred_thread {
	dafs_fh_t fh;
	int rc;
};

/* A thread that never switched uses the session's default (root). */
static void *cred_other(void *arg)
{
	struct cred_thread *t = arg;
	dafs_file_t *f;

	t->rc = dafs_open(S, &t->fh, O_RDONLY, &f);
	if (!t->rc)
		t->rc = dafs_close(f);
	return NULL;
}

/* An access ACL for a regular file: owner rw-, user @uid r--, group
 * ---, mask r--, other --- (system.posix_acl_access, little-endian). */
static int acl_user_read(const char *rel, uint32_t uid)
{
	static const uint16_t tags[5] = {0x01, 0x02, 0x04, 0x10, 0x20};
	static const uint16_t perms[5] = {6, 4, 0, 4, 0};
	uint8_t acl[4 + 5 * 8], *p = acl + 4;
	char path[PATH_MAX];
	uint32_t id;
	int i;

	memcpy(acl, &(uint32_t){2}, 4);
	for (i = 0; i < 5; i++, p += 8) {
		id = tags[i] == 0x02 ? uid : 0xffffffffu;
		memcpy(p, &tags[i], 2);
		memcpy(p + 2, &perms[i], 2);
		memcpy(p + 4, &id, 4);
	}
	return setxattr(lpath(path, "%s", rel), "system.posix_acl_access", acl,
			sizeof(acl), 0);
}

/*
 * ACCESS as user @id (current) and as root: the server's kernel decides,
 * ACLs included. @secret is root's 0600 file, @rootdir root's 0755
 * directory, @pub a 0777 one.
 */
static void access_checks(const dafs_fh_t *secret, const dafs_fh_t *rootdir,
			  const dafs_fh_t *pub, uint32_t id)
{
	char path[PATH_MAX];

	EXPECT(dafs_access(S, secret, R_OK), -EACCES);
	EXPECT(dafs_access(S, secret, W_OK), -EACCES);
	OK(dafs_access(S, secret, F_OK));
	OK(dafs_access(S, pub, R_OK | W_OK | X_OK));
	OK(dafs_access(S, rootdir, R_OK | X_OK));
	EXPECT(dafs_access(S, rootdir, W_OK), -EACCES);
	EXPECT(dafs_access(S, secret, 8), -EINVAL);
	if (acl_user_read("secret", 65534) == 0) {
		/* the mode bits still say 0640 (the mask): no read for
		 * nobody by them, yet the ACL grants it */
		OK(dafs_access(S, secret, R_OK));
		EXPECT(dafs_access(S, secret, R_OK | W_OK), -EACCES);
		ck_assert_int_eq(removexattr(lpath(path, "secret"),
					     "system.posix_acl_access"),
				 0);
		ck_assert_int_eq(chmod(path, 0600), 0);
		EXPECT(dafs_access(S, secret, R_OK), -EACCES);
	} else {
		fprintf(stderr, "# SKIP access ACL: no POSIX ACLs here (%s)\n",
			strerror(errno));
	}
	OK(dafs_cred_use(S, 0));
	OK(dafs_access(S, secret, R_OK | W_OK));
	/* root executes only what has an execute bit */
	EXPECT(dafs_access(S, secret, X_OK), -EACCES);
	OK(dafs_access(S, rootdir, W_OK | X_OK));
	OK(dafs_cred_use(S, id));
}

START_TEST(test_creds)
{
	struct cred_thread t;
	dafs_fh_t secret, rootdir, pub;
	dafs_file_t *f = NULL;
	pthread_t th;
	uint32_t id = 0;
	char buf[16], buf2[PATH_MAX];

	if (geteuid() != 0) {
		fprintf(stderr, "# SKIP creds: needs root to act as "
				"another user\n");
		return;
	}
	lwrite("secret", "top secret", 10, 0600);
	lmkdir("rootdir", 0755);
	lmkdir("pub", 0777);
	OK(dafs_lookup(S, &ROOT, "secret", &secret, NULL));
	OK(dafs_lookup(S, &ROOT, "rootdir", &rootdir, NULL));
	OK(dafs_lookup(S, &ROOT, "pub", &pub, NULL));

	OK(dafs_cred_register(S, 65534, 65534, 0, NULL, &id));
	ck_assert_uint_ne(id, 0);
	EXPECT(dafs_open(S, &secret, O_RDONLY, &f), -EACCES);
	EXPECT(dafs_create(S, &rootdir, "x", O_RDWR, 0644, &f, NULL, NULL),
	       -EACCES);
	EXPECT(dafs_mkdir(S, &rootdir, "y", 0755, NULL, NULL), -EACCES);
	EXPECT(dafs_remove(S, &ROOT, "secret"), -EACCES);
	ck_assert(!lexists("rootdir/x") && !lexists("rootdir/y"));
	ck_assert(lexists("secret"));
	/* where nobody may write, what it creates is nobody's */
	OK(dafs_create(S, &pub, "n", O_RDWR, 0644, &f, NULL, NULL));
	OK(dafs_close(f));
	ck_assert_uint_eq(lstat_of("pub/n").st_uid, 65534);
	ck_assert_uint_eq(lstat_of("pub/n").st_gid, 65534);

	/* credentials are per thread: another thread is still root */
	t.fh = secret;
	t.rc = -1;
	ck_assert_int_eq(pthread_create(&th, NULL, cred_other, &t), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	OK(t.rc);
	EXPECT(dafs_open(S, &secret, O_RDONLY, &f), -EACCES);

	/* back to the default */
	OK(dafs_cred_use(S, 0));
	OK(dafs_open(S, &secret, O_RDONLY, &f));
	EXPECT(dafs_read(f, buf, sizeof(buf), 0, NULL), 10);
	ck_assert(!memcmp(buf, "top secret", 10));
	OK(dafs_close(f));
	OK(dafs_create(S, &rootdir, "x", O_RDWR, 0644, &f, NULL, NULL));
	OK(dafs_close(f));
	ck_assert_uint_eq(lstat_of("rootdir/x").st_uid, 0);
	/* and to nobody again by id */
	OK(dafs_cred_use(S, id));
	EXPECT(dafs_open(S, &secret, O_RDONLY, &f), -EACCES);
	access_checks(&secret, &rootdir, &pub, id);
	/* per session: another session opened (it registers and uses its
	 * own default) and chosen on changes nothing on this one */
	{
		dafs_session_t *s2 = session(NULL);

		OK(dafs_cred_use(s2, 0));
		OK(dafs_getattr(s2, &ROOT, NULL));
		EXPECT(dafs_open(S, &secret, O_RDONLY, &f), -EACCES);
		dafs_session_close(s2);
		EXPECT(dafs_open(S, &secret, O_RDONLY, &f), -EACCES);
	}

	/* writes run as the writer too: nobody's write to a world-writable
	 * setuid file of root's clears the bit, as it would locally (a write
	 * with root's CAP_FSETID would keep it) */
	lwrite("suid", "x", 1, 0777);
	ck_assert_int_eq(chmod(lpath(buf2, "suid"), 04777), 0);
	ck_assert_uint_eq(lstat_of("suid").st_mode & 07777, 04777);
	{
		dafs_fh_t fh;

		OK(dafs_lookup(S, &ROOT, "suid", &fh, NULL));
		OK(dafs_open(S, &fh, O_WRONLY, &f));
		EXPECT(dafs_write(f, "y", 1, 0, NULL), 1);
		OK(dafs_close(f));
	}
	ck_assert_uint_eq(lstat_of("suid").st_mode & 07777, 0777);

	/* nobody has none of root's other capabilities on the server either:
	 * no file capability on root's file (CAP_SETFCAP), no trusted.*
	 * (CAP_SYS_ADMIN); root may, where the file system keeps them */
	{
		static const uint32_t fcap[5] = {0x02000001, 1u << 13, 0, 0,
						 0};
		int fcap_rc, trusted_rc;

		fcap_rc = dafs_setxattr(S, &secret, "security.capability",
					fcap, sizeof(fcap), 0);
		trusted_rc = dafs_setxattr(S, &secret, "trusted.dafs", "x", 1,
					   0);
		ck_assert_int_ne(fcap_rc, 0);
		ck_assert_int_ne(trusted_rc, 0);
		OK(dafs_cred_use(S, 0));
		if (!dafs_setxattr(S, &secret, "security.capability", fcap,
				   sizeof(fcap), 0)) {
			ck_assert_int_eq(fcap_rc, -EPERM);
			OK(dafs_removexattr(S, &secret,
					    "security.capability"));
		}
		if (!dafs_setxattr(S, &secret, "trusted.dafs", "y", 1, 0)) {
			ck_assert_int_eq(trusted_rc, -EPERM);
			OK(dafs_removexattr(S, &secret, "trusted.dafs"));
		}
	}
	OK(dafs_cred_use(S, 0));
}
END_TEST

/* ---- 9. concurrency ---- */

#define NTHREADS 8

struct worker {
	int id;
	dafs_fh_t dir;
	uint64_t deadline_ms;
	int iters;
	char err[256];
};

static int rd_count(void *arg, const dafs_dirent_t *e)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

#define WFAIL(w, ...)                                                          \
	do {                                                                   \
		snprintf((w)->err, sizeof((w)->err), __VA_ARGS__);             \
		goto out;                                                      \
	} while (0)

/* Create, write, read back, stat, rename, list, truncate, remove: the
 * results checked here, reported to the main thread in ->err. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const size_t maxlen = 200 * KiB;
	uint8_t *wbuf = malloc(maxlen), *rbuf = malloc(maxlen);
	char a[32], b[32];
	dafs_file_t *f = NULL;
	dafs_setattr_t sa;
	dafs_fh_t fh, fh2;
	dafs_attr_t at;
	uint64_t cookie;
	ssize_t n;
	size_t len;
	int rc, eof, cnt;

	if (!wbuf || !rbuf)
		WFAIL(w, "out of memory");
	while (it_now_ms() < w->deadline_ms) {
		int i = w->iters;

		snprintf(a, sizeof(a), "f%d", i);
		snprintf(b, sizeof(b), "g%d", i);
		/* sizes cross the inline limit both ways */
		len = 1 + mix64((uint64_t)(w->id * 100000 + i)) % maxlen;
		fill(wbuf, len, (uint64_t)w->id << 32 | (uint64_t)i, 0);
		rc = dafs_create(S, &w->dir, a, O_RDWR | O_EXCL, 0644, &f, &fh,
				 NULL);
		if (rc)
			WFAIL(w, "create %s: %s", a, dafs_strerror(rc));
		n = dafs_write(f, wbuf, len, 0, NULL);
		if (n != (ssize_t)len)
			WFAIL(w, "write %zu: %zd", len, n);
		n = dafs_read(f, rbuf, maxlen, 0, NULL);
		if (n != (ssize_t)len || memcmp(rbuf, wbuf, len))
			WFAIL(w, "read back %zu: %zd", len, n);
		rc = dafs_close(f);
		f = NULL;
		if (rc)
			WFAIL(w, "close: %s", dafs_strerror(rc));
		rc = dafs_getattr(S, &fh, &at);
		if (rc || at.size != len)
			WFAIL(w, "getattr: %s size %llu", dafs_strerror(rc),
			      (unsigned long long)at.size);
		rc = dafs_rename(S, &w->dir, a, &w->dir, b,
				 DAFS_RENAME_NOREPLACE);
		if (rc)
			WFAIL(w, "rename: %s", dafs_strerror(rc));
		rc = dafs_lookup(S, &w->dir, b, &fh2, &at);
		if (rc || at.size != len)
			WFAIL(w, "lookup %s: %s", b, dafs_strerror(rc));
		cnt = 0;
		cookie = 0;
		eof = 0;
		while (!eof) {
			rc = dafs_readdir(S, &w->dir, &cookie, i & 1, rd_count,
					  &cnt, &eof);
			if (rc < 0)
				WFAIL(w, "readdir: %s", dafs_strerror(rc));
		}
		if (cnt != 1)
			WFAIL(w, "readdir: %d entries, expected 1", cnt);
		memset(&sa, 0, sizeof(sa));
		sa.mask = DAFS_SET_SIZE;
		sa.size = len / 2;
		rc = dafs_setattr(S, &fh2, &sa, &at);
		if (rc || at.size != len / 2)
			WFAIL(w, "truncate: %s", dafs_strerror(rc));
		rc = dafs_remove(S, &w->dir, b);
		if (rc)
			WFAIL(w, "remove: %s", dafs_strerror(rc));
		rc = dafs_lookup(S, &w->dir, b, NULL, NULL);
		if (rc != -ENOENT)
			WFAIL(w, "lookup after remove: %s", dafs_strerror(rc));
		w->iters++;
	}
out:
	if (f)
		dafs_close(f);
	free(wbuf);
	free(rbuf);
	return NULL;
}

START_TEST(test_threads)
{
	static struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	char name[16];
	int i, total = 0;

	for (i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		snprintf(name, sizeof(name), "t%d", i);
		OK(dafs_mkdir(S, &ROOT, name, 0755, &w[i].dir, NULL));
		w[i].deadline_ms = it_now_ms() + 2500;
	}
	for (i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	for (i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	for (i = 0; i < NTHREADS; i++) {
		ck_assert_msg(!w[i].err[0], "thread %d, iteration %d: %s", i,
			      w[i].iters, w[i].err);
		ck_assert_msg(w[i].iters > 0, "thread %d did nothing", i);
		total += w[i].iters;
		/* every thread left its directory empty */
		snprintf(name, sizeof(name), "t%d", i);
		ck_assert_int_eq(lstat_of(name).st_nlink, 2);
	}
	fprintf(stderr, "# %d threads: %d iterations\n", NTHREADS, total);
}
END_TEST

struct slow_open {
	dafs_fh_t fh;
	atomic_int done;
	int rc;
};

static void *slow_open_main(void *arg)
{
	struct slow_open *so = arg;
	dafs_file_t *f;

	so->rc = dafs_open(S, &so->fh, O_RDONLY, &f);
	if (!so->rc)
		so->rc = dafs_close(f);
	atomic_store(&so->done, 1);
	return NULL;
}

/* Handler threads of dafsd @pid (named "dafsd-handler"). */
static int handlers_of(pid_t pid)
{
	char path[96], comm[32];
	struct dirent *e;
	int n = 0;
	FILE *f;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm",
			 (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* gone meanwhile */
		if (fgets(comm, sizeof(comm), f) &&
		    !strcmp(comm, "dafsd-handler\n"))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

/*
 * Slow requests do not hold up fast ones. The server refuses to open
 * FIFOs (see test_mkdir_mknod), so a slow request is an open that the
 * kernel itself holds: this process takes a write lease on the file, and
 * the server's open(2) blocks in the lease break until the lease goes.
 * F_GETLEASE tells when the server's open is waiting. Two of them take
 * both handlers of the pool's minimum, so the fast requests need a handler
 * the pool grows; once the slow ones are done it shrinks back, a handler
 * leaving for every 5 s that one stayed idle.
 */
START_TEST(test_slow_request)
{
	struct slow_open so[2];
	struct sigaction sa, old;
	char p[PATH_MAX], name[16];
	dafs_fh_t other;
	dafs_attr_t a;
	pthread_t th[2];
	uint64_t until;
	int lfd[2], i, k, lease, base, grown, now;

	/* a pool of 2 to start with, whatever the CPUs (the default) */
	dafs_session_close(S);
	S = NULL;
	ck_assert_int_eq(it_daemon_stop(&D, 20000), 0);
	D.extra[0] = "--threads";
	D.extra[1] = "2:16";
	D.extra[2] = NULL;
	ck_assert_int_eq(it_daemon_start(&D), 0);
	S = session(NULL);
	OK(dafs_root(S, &ROOT));

	lwrite("other", "fast", 4, 0644);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN; /* the lease break notice */
	sigaction(SIGIO, &sa, &old);
	/* 2, unless a stall of the machine grew it: then back to 2 */
	until = it_now_ms() + 30000;
	while ((base = handlers_of(D.pid)) != 2 && it_now_ms() < until)
		usleep(100000);
	ck_assert_int_eq(base, 2);
	for (k = 0; k < 2; k++) {
		snprintf(name, sizeof(name), "leased%d", k);
		lwrite(name, "lease", 5, 0644);
		memset(&so[k], 0, sizeof(so[k]));
		OK(dafs_lookup(S, &ROOT, name, &so[k].fh, NULL));
		lfd[k] = open(lpath(p, "%s", name), O_RDONLY);
		ck_assert_int_ge(lfd[k], 0);
		if (fcntl(lfd[k], F_SETLEASE, F_WRLCK)) {
			fprintf(stderr, "# SKIP slow request: no lease on %s: "
				"%s\n", p, strerror(errno));
			while (k >= 0)
				close(lfd[k--]);
			sigaction(SIGIO, &old, NULL);
			return;
		}
	}
	for (k = 0; k < 2; k++) {
		ck_assert_int_eq(
			pthread_create(&th[k], NULL, slow_open_main, &so[k]), 0);
		/* wait until the server's open breaks the lease, i.e.
		 * blocks */
		until = it_now_ms() + 15000;
		while ((lease = fcntl(lfd[k], F_GETLEASE)) == F_WRLCK &&
		       it_now_ms() < until && !atomic_load(&so[k].done))
			usleep(2000);
		ck_assert_msg(!atomic_load(&so[k].done),
			      "the open finished under a lease: %s",
			      dafs_strerror(so[k].rc));
		ck_assert_msg(lease != F_WRLCK,
			      "the server's open never arrived");
	}

	/* meanwhile, fast requests of the same session complete */
	for (i = 0; i < 50; i++) {
		OK(dafs_getattr(S, &ROOT, &a));
		OK(dafs_lookup(S, &ROOT, "other", &other, &a));
		ck_assert_uint_eq(a.size, 4);
	}
	OK(dafs_callback_probe(S));
	for (k = 0; k < 2; k++)
		ck_assert_msg(!atomic_load(&so[k].done),
			      "slow open %d was not held up after all", k);
	grown = handlers_of(D.pid);
	ck_assert_msg(grown > base, "dafsd has %d handlers, as before the "
		      "slow opens", grown);

	/* release them: the opens go through */
	for (k = 0; k < 2; k++) {
		ck_assert_int_eq(fcntl(lfd[k], F_SETLEASE, F_UNLCK), 0);
		ck_assert_int_eq(pthread_join(th[k], NULL), 0);
		OK(so[k].rc);
		close(lfd[k]);
	}
	sigaction(SIGIO, &old, NULL);

	/* and the pool shrinks back: a handler every 5 s that one stayed
	 * idle */
	until = it_now_ms() + 30000;
	while ((now = handlers_of(D.pid)) > base && it_now_ms() < until)
		usleep(100000);
	ck_assert_msg(now == base, "dafsd has %d handlers 30 s after the "
		      "slow requests (%d before, %d with them)", now, base,
		      grown);
	OK(dafs_getattr(S, &ROOT, &a));
}
END_TEST

/* ---- 10. robustness against garbage on the wire ---- */

/* Transport frames (docs/transport-tcp.md): 32-byte little-endian header
 * type, flags, rsvd, len, rkey, rsvd, addr, tag. */
#define FR_HELLO 1
#define FR_SEND 2
#define TCP_MAGIC 0x3150435453464144ull
#define DAFS_MAGIC 0x53464144u

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void frame_hdr(uint8_t *h, uint8_t type, uint32_t len, uint64_t addr,
		      uint64_t tag)
{
	memset(h, 0, 32);
	h[0] = type;
	put32(h + 4, len);
	put64(h + 16, addr);
	put64(h + 24, tag);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sin;
	struct timeval tv = {10, 0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
	/* the server may hang up half-way: that is fine */
	(void)!send(fd, buf, len, MSG_NOSIGNAL);
}

/* Read until the server closes; 1 if it did, 0 if it kept the connection
 * open (the receive timeout passed). */
static int raw_wait_close(int fd)
{
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == ECONNRESET || errno == EPIPE;
	}
}

static void hello(uint8_t *h)
{
	frame_hdr(h, FR_HELLO, 0, TCP_MAGIC, 1);
}

/* Beyond --max-connections the server refuses connections with an error
 * to the client and a log line, keeps serving, and has room again once a
 * session closes. */
/* The fixture's daemon started again with --max-connections @n, and no
 * session open. */
static void restart_max_conns(const char *n)
{
	dafs_session_close(S);
	S = NULL;
	ck_assert_int_eq(it_daemon_stop(&D, 20000), 0);
	D.extra[0] = "--max-connections";
	D.extra[1] = n;
	ck_assert_int_eq(it_daemon_start(&D), 0);
}

/* A session on the fixture's daemon, tried for 5 s while the server lets
 * closed connections go. */
static int open_retry(dafs_session_t **s)
{
	int i, rc = -1;

	for (i = 0; i < 100; i++) {
		rc = dafs_session_open(D.url, NULL, s);
		if (!rc)
			break;
		usleep(50000);
	}
	return rc;
}

START_TEST(test_max_connections)
{
	dafs_session_t *s2 = NULL;
	dafs_attr_t a;
	int rc;

	/* room for one session: its fore and its back connection */
	restart_max_conns("2");
	S = session(NULL);
	rc = dafs_session_open(D.url, NULL, &s2);
	ck_assert_msg(rc < 0, "a third connection was accepted");
	ck_assert(it_daemon_alive(&D));
	ck_assert(it_log_contains(&D, "--max-connections"));
	OK(dafs_getattr(S, &ROOT, &a));

	dafs_session_close(S);
	S = NULL;
	OK(open_retry(&s2));
	S = s2;
	OK(dafs_getattr(S, &ROOT, &a));
	D.extra[0] = D.extra[1] = NULL;
}
END_TEST

/* A connection whose CREATE_SESSION fails (an export that does not exist)
 * is gone once its client closes it: twenty of them in a row leave a
 * server with room for one session able to take it. (They used to stay,
 * with no receive posted to notice the close, until --max-connections
 * turned every client away.) */
START_TEST(test_failed_setup)
{
	dafs_session_t *s2 = NULL;
	char url[256], *slash;
	dafs_attr_t a;
	int i, rc;

	restart_max_conns("2");
	snprintf(url, sizeof(url), "%s", D.url);
	slash = strrchr(url, '/');
	ck_assert_ptr_nonnull(slash);
	snprintf(slash, sizeof(url) - (size_t)(slash - url), "/nosuch");
	for (i = 0; i < 20; i++) {
		int tries = 0;

		/* the server lets a failed connection go once it sees the
		 * close, a moment after this side made it: a new one may
		 * be refused meanwhile (a sanitizer build is slow) */
		while ((rc = dafs_session_open(url, NULL, &s2)) !=
			       -DAFS_ENOEXPORT &&
		       tries++ < 100)
			usleep(50000);
		ck_assert_msg(rc == -DAFS_ENOEXPORT,
			      "setup %d: %s, not ENOEXPORT, after 5 s", i,
			      dafs_strerror(rc));
	}
	rc = open_retry(&s2);
	ck_assert_msg(!rc, "no room after failed setups: %s",
		      dafs_strerror(rc));
	S = s2;
	OK(dafs_getattr(S, &ROOT, &a));
	ck_assert(it_daemon_alive(&D));
	D.extra[0] = D.extra[1] = NULL;
}
END_TEST

START_TEST(test_garbage)
{
	uint8_t buf[8192], *p;
	dafs_session_t *s2;
	dafs_file_t *f;
	char rd[8];
	size_t i;
	int fd;

	/* raw TCP frames: nothing to send them to on another transport */
	if (strcmp(it_scheme(), "tcp"))
		return;
	/* random bytes from the first byte on */
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)mix64(i);
	fd = raw_connect(D.port);
	raw_send(fd, buf, sizeof(buf));
	ck_assert_msg(raw_wait_close(fd), "server kept a garbage connection");
	close(fd);
	ck_assert(it_daemon_alive(&D));

	/* a valid hello, then a SEND frame announcing 4 GiB */
	fd = raw_connect(D.port);
	hello(buf);
	frame_hdr(buf + 32, FR_SEND, 0xfffffff0u, 0, 0);
	raw_send(fd, buf, 64 + 1000);
	ck_assert_msg(raw_wait_close(fd), "server kept a huge frame's "
					  "connection");
	close(fd);
	ck_assert(it_daemon_alive(&D));

	/* a frame cut short, then the client goes away */
	fd = raw_connect(D.port);
	hello(buf);
	frame_hdr(buf + 32, FR_SEND, 200, 0, 0);
	raw_send(fd, buf, 64 + 50);
	shutdown(fd, SHUT_WR);
	ck_assert(raw_wait_close(fd));
	close(fd);
	ck_assert(it_daemon_alive(&D));

	/* a well-framed DAFS message with an unknown opcode */
	fd = raw_connect(D.port);
	hello(buf);
	p = buf + 32;
	frame_hdr(p, FR_SEND, 24, 0, 0);
	p += 32;
	memset(p, 0, 24);
	put32(p, DAFS_MAGIC);
	p[4] = 1;    /* version */
	p[6] = 0xe7; /* op 999 */
	p[7] = 0x03;
	raw_send(fd, buf, 32 + 32 + 24);
	ck_assert(raw_wait_close(fd));
	close(fd);

	/* ... and one whose header claims a huge body */
	fd = raw_connect(D.port);
	hello(buf);
	p = buf + 32;
	frame_hdr(p, FR_SEND, 40, 0, 0);
	p += 32;
	memset(p, 0xab, 40);
	put32(p, DAFS_MAGIC);
	p[4] = 1;
	p[5] = 0;
	p[6] = 1; /* CREATE_SESSION */
	p[7] = 0;
	put32(p + 20, 0xffffffffu);
	raw_send(fd, buf, 32 + 32 + 40);
	ck_assert(raw_wait_close(fd));
	close(fd);

	/* ... and a truncated CREATE_SESSION body */
	fd = raw_connect(D.port);
	hello(buf);
	p = buf + 32;
	frame_hdr(p, FR_SEND, 30, 0, 0);
	p += 32;
	memset(p, 0, 30);
	put32(p, DAFS_MAGIC);
	p[4] = 1;
	p[6] = 1;
	put32(p + 20, 6);
	raw_send(fd, buf, 32 + 32 + 30);
	ck_assert(raw_wait_close(fd));
	close(fd);

	/* the server is still there and serves a new session */
	ck_assert(it_daemon_alive(&D));
	s2 = session(NULL);
	OK(dafs_create(s2, &ROOT, "after", O_RDWR, 0644, &f, NULL, NULL));
	EXPECT(dafs_write(f, "alive", 5, 0, NULL), 5);
	EXPECT(dafs_read(f, rd, sizeof(rd), 0, NULL), 5);
	OK(dafs_close(f));
	dafs_session_close(s2);
	lcheck("after", "alive", 5);
	/* the old session was never disturbed */
	OK(dafs_getattr(S, &ROOT, NULL));
	ck_assert(it_daemon_alive(&D));
	ck_assert_msg(it_log_contains(&D, "malformed"),
		      "the dafsd log does not mention the malformed message");
}
END_TEST

/* ---- 11. a large directory ---- */

#define BIG_N 100000

struct big_seen {
	uint8_t *seen;
	int n, bad, dup;
	char bad_name[64];
};

static int big_collect(void *arg, const dafs_dirent_t *e)
{
	struct big_seen *b = arg;
	char *end;
	long k;

	b->n++;
	k = strtol(e->name + 1, &end, 10);
	if (e->name[0] != 'f' || *end || k < 0 || k >= BIG_N ||
	    strlen(e->name) != 7 || e->type != S_IFREG) {
		if (!b->bad++)
			snprintf(b->bad_name, sizeof(b->bad_name), "%s",
				 e->name);
		return 0;
	}
	if (b->seen[k]++)
		b->dup++;
	return 0;
}

START_TEST(test_bigdir)
{
	struct big_seen b;
	char name[16], p[PATH_MAX];
	dafs_fh_t dir;
	uint64_t cookie = 0, t0;
	int dfd, fd, i, eof = 0, calls = 0, rc;

	lmkdir("big", 0755);
	dfd = open(lpath(p, "big"), O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	t0 = it_now_ms();
	for (i = 0; i < BIG_N; i++) {
		snprintf(name, sizeof(name), "f%06d", i);
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			    0644);
		ck_assert_msg(fd >= 0, "create %s: %s", name, strerror(errno));
		close(fd);
	}
	close(dfd);
	fprintf(stderr, "# %d files made in %llu ms\n", BIG_N,
		(unsigned long long)(it_now_ms() - t0));

	memset(&b, 0, sizeof(b));
	b.seen = calloc(BIG_N, 1);
	ck_assert_ptr_nonnull(b.seen);
	OK(dafs_lookup(S, &ROOT, "big", &dir, NULL));
	t0 = it_now_ms();
	while (!eof) {
		rc = dafs_readdir(S, &dir, &cookie, 0, big_collect, &b, &eof);
		ck_assert_msg(rc >= 0, "readdir call %d: %s", calls,
			      dafs_strerror(rc));
		ck_assert_msg(rc > 0 || eof, "readdir made no progress");
		ck_assert_int_lt(++calls, BIG_N);
	}
	fprintf(stderr, "# read back in %d readdir calls, %llu ms\n", calls,
		(unsigned long long)(it_now_ms() - t0));
	ck_assert_msg(!b.bad, "%d unexpected names, e.g. \"%s\"", b.bad,
		      b.bad_name);
	ck_assert_msg(!b.dup, "%d names listed twice", b.dup);
	ck_assert_int_eq(b.n, BIG_N);
	for (i = 0; i < BIG_N; i++)
		ck_assert_msg(b.seen[i] == 1, "f%06d missing", i);
	ck_assert_int_gt(calls, 1);
	free(b.seen);
}
END_TEST

/* ---- the registration cache (docs/regcache.md) ---- */

static dafs_session_info_t rc_info(dafs_session_t *s)
{
	dafs_session_info_t info;

	OK(dafs_session_query(s, &info));
	return info;
}

/*
 * Registering the same buffer for each of many reads costs one
 * registration; a buffer freed and mapped again at the same address with
 * new bytes is registered anew, and the server (pulling a write with RDMA
 * READ, placing a read with RDMA WRITE) moves the new bytes. _i 0: the
 * cache with its userfaultfd monitor; 1: without userfaultfd
 * (DAFS_REGCACHE_UFFD=0); 2: disabled with dafs_session_set_regcache().
 */
START_TEST(test_regcache_io)
{
	const size_t len = 256 * KiB, flen = 1 * MiB;
	dafs_session_opts_t o = {.write_method = DAFS_WRITE_RDMA_READ};
	uint8_t *file = xmalloc(flen), *b, *b2, *got;
	dafs_session_info_t info;
	size_t n;
	dafs_session_t *s;
	dafs_file_t *f;
	dafs_mem_t *m;
	int i;

	fill(file, flen, 5, 0);
	lwrite("rc", file, flen, 0644);
	if (_i == 1)
		setenv("DAFS_REGCACHE_UFFD", "0", 1);
	s = session(&o);
	unsetenv("DAFS_REGCACHE_UFFD");
	if (_i == 2)
		OK(dafs_session_set_regcache(s, 0, 0));
	info = rc_info(s);
	ck_assert_uint_eq(info.write_method, DAFS_WRITE_RDMA_READ);
	ck_assert_uint_eq(info.regcache_mode, _i == 0 ? DAFS_REGCACHE_ON
					      : _i == 1
						      ? DAFS_REGCACHE_NO_MONITOR
						      : DAFS_REGCACHE_OFF);
	if (_i == 0) {
		ck_assert_uint_eq(info.regcache_max_entries, 1024);
		ck_assert_uint_eq(info.regcache_max_bytes, 256 * MiB);
		ck_assert_int_eq(info.regcache_monitor_err, 0);
	}
	if (_i == 1)
		ck_assert_int_lt(info.regcache_monitor_err, 0);
	OK(dafs_create(s, &ROOT, "rc", O_RDWR, 0644, &f, NULL, NULL));

	b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	ck_assert_ptr_ne(b, MAP_FAILED);
	for (i = 0; i < 10; i++) {
		OK(dafs_mem_register(s, b, len, &m));
		memset(b, 0xee, len);
		EXPECT(dafs_read(f, b, len, (uint64_t)i * 64 * KiB, m), len);
		ck_assert(!memcmp(b, file + i * 64 * KiB, len));
		OK(dafs_mem_deregister(m));
	}
	/* an unregistered buffer inside the cached one */
	EXPECT(dafs_read(f, b + 1000, 100 * KiB, 0, NULL), 100 * KiB);
	ck_assert(!memcmp(b + 1000, file, 100 * KiB));
	info = rc_info(s);
	if (_i == 0) {
		ck_assert_uint_eq(info.regcache_misses, 1);
		ck_assert_uint_eq(info.regcache_hits, 10);
		ck_assert_uint_eq(info.regcache_entries, 1);
		ck_assert_uint_eq(info.regcache_bytes, len);
	} else {
		ck_assert_uint_eq(info.regcache_uncached, 11);
		ck_assert_uint_eq(info.regcache_hits, 0);
		ck_assert_uint_eq(info.regcache_entries, 0);
	}

	/* the same address, new memory, new bytes: mapped over the old in
	 * one step (an unmap event as munmap gives), since between a munmap
	 * and a new mapping another thread (ASan's allocator, the library's)
	 * may take the range */
	b2 = mmap(b, len, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ck_assert_ptr_eq(b2, b);
	fill(b2, len, 77, 0);
	OK(dafs_mem_register(s, b2, len, &m));
	EXPECT(dafs_write(f, b2, len, 0, m), len);
	got = lread("rc", &n);
	ck_assert_uint_eq(n, flen);
	ck_assert(!memcmp(got, b2, len));
	free(got);
	memset(b2, 0, len);
	EXPECT(dafs_read(f, b2, len, 512 * KiB, m), len);
	ck_assert(!memcmp(b2, file + 512 * KiB, len));
	OK(dafs_mem_deregister(m));
	info = rc_info(s);
	if (_i == 0) {
		ck_assert_uint_eq(info.regcache_invalidations, 1);
		ck_assert_uint_eq(info.regcache_misses, 2);
		ck_assert_uint_eq(info.regcache_entries, 1);
	} else {
		ck_assert_uint_eq(info.regcache_invalidations, 0);
		ck_assert_uint_eq(info.regcache_uncached, 12);
	}
	/* capacity 0 empties it at once; back on, it caches again */
	OK(dafs_session_set_regcache(s, 0, 0));
	info = rc_info(s);
	ck_assert_uint_eq(info.regcache_entries, 0);
	OK(dafs_close(f));
	dafs_session_close(s);
	munmap(b2, len);
	free(file);
}
END_TEST

/* ---- the suite ---- */

static TCase *tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	/* the base directory lives in the runner, so it is removed even
	 * when a test dies; each test's daemon lives in the test */
	tcase_add_unchecked_fixture(tc, it_base_setup, it_base_teardown);
	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *dafs_suite(void)
{
	Suite *s = suite_create("integration");
	TCase *tc;

	tc = tcase(s, "meta", 60);
	tcase_add_test(tc, test_lookup_getattr);
	tcase_add_test(tc, test_op_count);
	tcase_add_test(tc, test_setattr);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_mkdir_mknod);
	tcase_add_test(tc, test_symlink_link);
	tcase_add_test(tc, test_remove_rmdir);
	tcase_add_test(tc, test_rename);
	tcase_add_test(tc, test_readdir);
	tcase_add_test(tc, test_statfs);
	tcase_add_test(tc, test_open_close);
	tcase_add_test(tc, test_fallocate_copy);
	tcase_add_test(tc, test_lseek);
	tcase_add_test(tc, test_xattr);

	tc = tcase(s, "io", 120);
	tcase_add_loop_test(tc, test_sync_io, 0, 2);
	tcase_add_test(tc, test_io_edges);
	tcase_add_test(tc, test_read_direct_edges);
	tcase_add_test(tc, test_read_truncate_race);

	tc = tcase(s, "async", 120);
	tcase_add_test(tc, test_async_pipeline);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_batch_room);

	tc = tcase(s, "replay", 60);
	tcase_add_test(tc, test_replay_create);
	tcase_add_test(tc, test_replay_rename);
	tcase_add_test(tc, test_replay_remove);

	tc = tcase(s, "callback", 60);
	tcase_add_test(tc, test_callback);

	tc = tcase(s, "confine", 60);
	tcase_add_test(tc, test_confinement);

	tc = tcase(s, "restart", 60);
	tcase_add_test(tc, test_restart);
	tcase_add_test(tc, test_server_gone);
	tcase_add_test(tc, test_server_gone_async);
	tcase_add_test(tc, test_timeout_fence);

	tc = tcase(s, "creds", 60);
	tcase_add_test(tc, test_creds);

	tc = tcase(s, "concurrency", 120);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_slow_request);

	tc = tcase(s, "robust", 60);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_max_connections);
	tcase_add_test(tc, test_failed_setup);

	tc = tcase(s, "regcache", 60);
	tcase_add_loop_test(tc, test_regcache_io, 0, 3);

	tc = tcase(s, "bigdir", 180);
	tcase_add_test(tc, test_bigdir);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dafs_suite());
	int failed;

	/* the daemons inherit it: modes below are as given */
	umask(022);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
