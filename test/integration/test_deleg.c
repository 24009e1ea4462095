/*
 * test_deleg.c - open delegations end to end: a real dafsd (lease 2 s) and
 * two or three libdafs sessions over 127.0.0.1. Grants by opener and
 * policy, recalls on every conflicting operation (open for writing, read
 * under a write delegation, setattr, remove, rename, link, xattr), the
 * conflicting request held until the return, revocation of a delegation
 * that is not returned (bounded by the lease; the holder's I/O and its late
 * return fail with DAFS_EREVOKED), a holder killed with its delegation, and
 * the statistics of both sides.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "harness.h"

#define LEASE_MS 2000

/* test hooks of libdafs (client.c) */
void dafs__test_drop_after_send(dafs_session_t *s);
uint64_t dafs__test_reconnects(dafs_session_t *s);

static struct it_daemon D;
static dafs_session_t *A, *B;
static dafs_fh_t ROOT;

static dafs_session_t *session(void)
{
	dafs_session_opts_t o = {.lease_ms = LEASE_MS, .timeout_ms = 20000};
	dafs_session_t *s = NULL;

	OK(dafs_session_open(D.url, &o, &s));
	return s;
}

static void start_with(const char *policy)
{
	int rc;

	umask(022);
	ck_assert_int_eq(it_daemon_init(&D, "d"), 0);
	D.extra[0] = "--lease-ms";
	D.extra[1] = "2000";
	D.extra[2] = policy ? "--deleg" : NULL;
	D.extra[3] = policy;
	rc = it_daemon_start(&D);
	ck_assert_msg(rc == 0, "dafsd did not start: %s", strerror(-rc));
	A = session();
	B = session();
	OK(dafs_root(A, &ROOT));
}

static void start(void)
{
	start_with(NULL);
}

static void stop(void)
{
	char why[640];

	if (A)
		dafs_session_close(A);
	if (B)
		dafs_session_close(B);
	A = B = NULL;
	ck_assert_msg(!it_daemon_end(&D, why, sizeof(why)), "%s", why);
}

/* Create @name with @len bytes of @c (by session @s, closed again). */
static void mkfile(dafs_session_t *s, const char *name, size_t len, int c,
		   dafs_fh_t *fh)
{
	dafs_file_t *f;
	char *buf = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(buf);
	memset(buf, c, len);
	OK(dafs_create(s, &ROOT, name, O_RDWR | O_TRUNC, 0644, &f, fh, NULL));
	EXPECT(dafs_write(f, buf, len, 0, NULL), (long long)len);
	OK(dafs_close(f));
	free(buf);
}

static dafs_deleg_stats_t stats(dafs_session_t *s)
{
	dafs_deleg_stats_t st;

	OK(dafs_deleg_stats(s, &st));
	return st;
}

/* The returns counter of @s once it reaches @n (the library counts a
 * return when its reply arrives, which may be after the waiter went on),
 * or after 5 s. */
static uint64_t returns_reach(dafs_session_t *s, uint64_t n)
{
	uint64_t t0 = it_now_ms();

	while (stats(s).returns < n && it_now_ms() - t0 < 5000)
		usleep(1000);
	return stats(s).returns;
}

/* A recall handler that records the recall and does not return it. */
struct holder {
	atomic_int recalls;
	atomic_ullong id;
	atomic_int type;
};

static void hold_on(void *arg, const dafs_fh_t *fh, uint64_t id, int type)
{
	struct holder *h = arg;

	(void)fh;
	atomic_store(&h->id, id);
	atomic_store(&h->type, type);
	atomic_fetch_add(&h->recalls, 1);
}

START_TEST(test_grant_read_shared)
{
	dafs_file_t *fa, *fb, *fc;
	dafs_session_t *C = session();
	dafs_fh_t fh;
	uint64_t ia, ib;

	mkfile(A, "shared", 100, 'x', &fh);
	OK(dafs_open(A, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ, &fa));
	OK(dafs_open(B, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ, &fb));
	EXPECT(dafs_file_deleg(fa, &ia), DAFS_DELEG_READ);
	EXPECT(dafs_file_deleg(fb, &ib), DAFS_DELEG_READ);
	ck_assert_uint_ne(ia, ib);
	/* a third session without asking: no delegation, no recall */
	OK(dafs_open(C, &fh, O_RDONLY, &fc));
	EXPECT(dafs_file_deleg(fc, NULL), DAFS_DELEG_NONE);
	OK(dafs_close(fc));
	ck_assert_uint_eq(stats(A).recalls, 0);
	ck_assert_uint_eq(stats(A).granted_read, 1);
	/* a write open by C recalls both; neither has a handler, so the
	 * libraries return them and C's open goes through */
	OK(dafs_open(C, &fh, O_WRONLY, &fc));
	ck_assert_uint_eq(stats(A).recalls, 1);
	ck_assert_uint_eq(stats(B).recalls, 1);
	ck_assert_uint_eq(returns_reach(A, 1), 1);
	ck_assert_uint_eq(returns_reach(B, 1), 1);
	/* now C writes: A re-opening gets no delegation (C has it open for
	 * writing) */
	OK(dafs_close(fa));
	OK(dafs_open(A, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ, &fa));
	EXPECT(dafs_file_deleg(fa, NULL), DAFS_DELEG_NONE);
	OK(dafs_close(fa));
	OK(dafs_close(fb));
	OK(dafs_close(fc));
	dafs_session_close(C);
}
END_TEST

START_TEST(test_grant_write)
{
	dafs_file_t *fa, *fb;
	dafs_fh_t fh;
	uint64_t id;

	mkfile(A, "w", 10, 'a', &fh);
	OK(dafs_open(A, &fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &fa));
	EXPECT(dafs_file_deleg(fa, &id), DAFS_DELEG_WRITE);
	ck_assert_uint_ne(id, 0);
	/* the delegation outlives the close; a return gives it back once */
	OK(dafs_close(fa));
	OK(dafs_deleg_return(A, id));
	EXPECT(dafs_deleg_return(A, id), -DAFS_EBADDELEG);
	/* another session's id is not ours to return */
	OK(dafs_open(A, &fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &fa));
	EXPECT(dafs_file_deleg(fa, &id), DAFS_DELEG_WRITE);
	EXPECT(dafs_deleg_return(B, id), -DAFS_EBADDELEG);
	/* B only reads, and is still a conflict for a write delegation */
	OK(dafs_open(B, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ, &fb));
	ck_assert_uint_eq(stats(A).recalls, 1);
	/* within the hold-off after a recall nobody gets one */
	EXPECT(dafs_file_deleg(fb, NULL), DAFS_DELEG_NONE);
	OK(dafs_close(fb));
	OK(dafs_close(fa));
}
END_TEST

/* Every operation that changes a file recalls another session's
 * delegation of it before it runs. */
START_TEST(test_recall_on_changes)
{
	dafs_file_t *fa;
	dafs_setattr_t sa = {.mask = DAFS_SET_MODE, .mode = 0600};
	dafs_fh_t fh, dir;
	uint64_t n = 0;
	int op;

	OK(dafs_mkdir(A, &ROOT, "d", 0755, &dir, NULL));
	for (op = 0; op < 6; op++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", op);
		mkfile(B, name, 10, 'b', &fh);
		OK(dafs_open(A, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ, &fa));
		if (dafs_file_deleg(fa, NULL) == DAFS_DELEG_NONE) {
			/* the inode number of a file removed before: its
			 * recall hold-off (1 s) still runs */
			OK(dafs_close(fa));
			usleep(1100000);
			OK(dafs_open(A, &fh, O_RDONLY | DAFS_OPEN_DELEG_READ,
				     &fa));
		}
		ck_assert_msg(dafs_file_deleg(fa, NULL) == DAFS_DELEG_READ,
			      "op %d: no read delegation", op);
		OK(dafs_close(fa));
		switch (op) {
		case 0:
			OK(dafs_setattr(B, &fh, &sa, NULL));
			break;
		case 1:
			OK(dafs_remove(B, &ROOT, name));
			break;
		case 2:
			OK(dafs_rename(B, &ROOT, name, &dir, "moved", 0));
			break;
		case 3:
			OK(dafs_link(B, &fh, &dir, "hard", NULL));
			break;
		case 4: { /* recalled before the file system is asked */
			int rc = dafs_setxattr(B, &fh, "user.k", "v", 1, 0);

			ck_assert_msg(rc == 0 || rc == -EOPNOTSUPP,
				      "setxattr: %s", dafs_strerror(rc));
			break;
		}
		case 5: /* renamed over: the file replaced is changed too */
			mkfile(B, "other", 1, 'o', NULL);
			OK(dafs_rename(B, &ROOT, "other", &ROOT, name, 0));
			break;
		}
		ck_assert_msg(stats(A).recalls == ++n,
			      "op %d: %llu recalls, expected %llu", op,
			      (unsigned long long)stats(A).recalls,
			      (unsigned long long)n);
	}
	ck_assert_uint_eq(returns_reach(A, n), n);
}
END_TEST

struct opener {
	dafs_session_t *s;
	dafs_fh_t fh;
	int flags;
	int rc;
	uint64_t ms;
};

static void *open_thread(void *arg)
{
	struct opener *o = arg;
	uint64_t t0 = it_now_ms();
	dafs_file_t *f;

	o->rc = dafs_open(o->s, &o->fh, o->flags, &f);
	o->ms = it_now_ms() - t0;
	if (!o->rc)
		dafs_close(f);
	return NULL;
}

/* The conflicting request waits for the return, which the holder makes
 * when it is ready (after writing back); then it sees the holder's data. */
START_TEST(test_conflict_waits_for_return)
{
	struct holder h = {0};
	struct opener o = {0};
	dafs_file_t *fa, *fb;
	pthread_t t;
	char buf[8];
	uint64_t id;

	mkfile(A, "wb", 4, '0', &o.fh);
	OK(dafs_set_recall_handler(A, hold_on, &h));
	OK(dafs_open(A, &o.fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &fa));
	EXPECT(dafs_file_deleg(fa, &id), DAFS_DELEG_WRITE);
	o.s = B;
	o.flags = O_RDONLY;
	pthread_create(&t, NULL, open_thread, &o);
	while (!atomic_load(&h.recalls))
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&h.id), id);
	ck_assert_int_eq(atomic_load(&h.type), DAFS_DELEG_WRITE);
	usleep(300000); /* B is held meanwhile */
	ck_assert_int_eq(o.ms, 0);
	/* the holder writes back what it held, then returns */
	EXPECT(dafs_write(fa, "WXYZ", 4, 0, NULL), 4);
	OK(dafs_deleg_return(A, id));
	pthread_join(t, NULL);
	OK(o.rc);
	ck_assert_msg(o.ms >= 300 && o.ms < LEASE_MS,
		      "B waited %llu ms", (unsigned long long)o.ms);
	OK(dafs_open(B, &o.fh, O_RDONLY, &fb));
	EXPECT(dafs_read(fb, buf, 4, 0, NULL), 4);
	ck_assert(memcmp(buf, "WXYZ", 4) == 0);
	OK(dafs_close(fb));
	OK(dafs_close(fa));
	ck_assert_uint_ge(stats(A).recall_ns_max, 300000000ull);
}
END_TEST

/* A recall handler that writes back and returns late, after its
 * session's connection was dropped and a reconnection began. */
struct late_holder {
	dafs_file_t *f;
	atomic_int entered, done;
	atomic_llong wrote;
	atomic_int returned;
};

static void return_late(void *arg, const dafs_fh_t *fh, uint64_t id,
			int type)
{
	struct late_holder *h = arg;

	(void)fh, (void)type;
	atomic_store(&h->entered, 1);
	usleep(300000); /* the main thread drops the connection meanwhile */
	atomic_store(&h->wrote, (long long)dafs_write(h->f, "WXYZ", 4, 0,
						       NULL));
	atomic_store(&h->returned, dafs_deleg_return(A, id));
	atomic_store(&h->done, 1);
}

/* A connection lost while a recall handler runs: the reconnection does
 * not wait for the handler (which sends, and so waits for the
 * reconnection); the handler's write-back and return go over the new
 * connection, and the conflicting open gets the written bytes. Before
 * the fix the reconnection joined the callback thread: both hung. */
START_TEST(test_recall_across_reconnect)
{
	struct late_holder h = {0};
	struct opener o = {0};
	dafs_file_t *fb;
	uint64_t before, t0;
	dafs_attr_t at;
	pthread_t t;
	char buf[8];

	mkfile(A, "rr", 4, '0', &o.fh);
	OK(dafs_open(A, &o.fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &h.f));
	EXPECT(dafs_file_deleg(h.f, NULL), DAFS_DELEG_WRITE);
	OK(dafs_set_recall_handler(A, return_late, &h));
	before = dafs__test_reconnects(A);
	o.s = B;
	o.flags = O_RDONLY;
	pthread_create(&t, NULL, open_thread, &o);
	while (!atomic_load(&h.entered))
		usleep(1000);
	dafs__test_drop_after_send(A);
	OK(dafs_getattr(A, &o.fh, &at));
	ck_assert_uint_eq(dafs__test_reconnects(A), before + 1);
	pthread_join(t, NULL);
	OK(o.rc);
	ck_assert_msg(o.ms < LEASE_MS, "B waited %llu ms: revoked, not "
		      "returned", (unsigned long long)o.ms);
	t0 = it_now_ms();
	while (!atomic_load(&h.done) && it_now_ms() - t0 < 5000)
		usleep(1000);
	ck_assert_msg(atomic_load(&h.done), "the recall handler hangs");
	ck_assert_int_eq(atomic_load(&h.wrote), 4);
	OK(atomic_load(&h.returned));
	OK(dafs_open(B, &o.fh, O_RDONLY, &fb));
	EXPECT(dafs_read(fb, buf, 4, 0, NULL), 4);
	ck_assert(memcmp(buf, "WXYZ", 4) == 0);
	OK(dafs_close(fb));
	OK(dafs_close(h.f));
	ck_assert_uint_eq(stats(A).revoked, 0);
	OK(dafs_set_recall_handler(A, NULL, NULL));
}
END_TEST

/* A holder that never returns is revoked a lease after the recall: the
 * waiter goes on, the holder's I/O and return fail with EREVOKED, and
 * closing still works. */
START_TEST(test_revoke)
{
	struct holder h = {0};
	struct opener o = {0};
	dafs_file_t *fa;
	pthread_t t;
	char buf[4];
	uint64_t id;

	mkfile(A, "rv", 4, 'r', &o.fh);
	OK(dafs_set_recall_handler(A, hold_on, &h));
	OK(dafs_open(A, &o.fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &fa));
	EXPECT(dafs_file_deleg(fa, &id), DAFS_DELEG_WRITE);
	o.s = B;
	o.flags = O_RDWR;
	pthread_create(&t, NULL, open_thread, &o);
	pthread_join(t, NULL);
	OK(o.rc);
	ck_assert_msg(o.ms >= LEASE_MS - 100 && o.ms < LEASE_MS + 1500,
		      "B waited %llu ms for a lease of %d", (unsigned long long)o.ms,
		      LEASE_MS);
	ck_assert_int_eq(atomic_load(&h.recalls), 1);
	EXPECT(dafs_read(fa, buf, 4, 0, NULL), -DAFS_EREVOKED);
	EXPECT(dafs_write(fa, "lost", 4, 0, NULL), -DAFS_EREVOKED);
	EXPECT(dafs_deleg_return(A, id), -DAFS_EREVOKED);
	ck_assert_uint_eq(stats(A).revoked, 1);
	OK(dafs_close(fa));
	ck_assert(it_log_contains(&D, "revoked"));
	/* a new open of A works normally again */
	OK(dafs_open(A, &o.fh, O_RDONLY, &fa));
	EXPECT(dafs_read(fa, buf, 4, 0, NULL), 4);
	OK(dafs_close(fa));
}
END_TEST

/* A holder killed with its write delegation (a process with its own
 * session) blocks the other no longer than the lease. */
START_TEST(test_holder_killed)
{
	struct opener o = {0};
	int fds[2], status;
	pthread_t t;
	pid_t pid;
	char c;

	mkfile(A, "k", 4, 'k', &o.fh);
	ck_assert_int_eq(pipe(fds), 0);
	/* a fresh process image (exec): a forked copy of a process with
	 * RDMA memory registered would miss those pages */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);
		setenv("DAFS_TEST_HOLD_URL", D.url, 1);
		execl("/proc/self/exe", "test_deleg_it", "hold", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	close(fds[0]);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	o.s = B;
	o.flags = O_RDWR;
	pthread_create(&t, NULL, open_thread, &o);
	pthread_join(t, NULL);
	OK(o.rc);
	ck_assert_msg(o.ms <= LEASE_MS + 1500, "B waited %llu ms",
		      (unsigned long long)o.ms);
}
END_TEST

START_TEST(test_policy_off)
{
	dafs_file_t *f;
	dafs_fh_t fh;

	mkfile(A, "p", 1, 'p', &fh);
	OK(dafs_open(A, &fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &f));
	EXPECT(dafs_file_deleg(f, NULL), DAFS_DELEG_NONE);
	OK(dafs_close(f));
}
END_TEST

START_TEST(test_policy_read)
{
	dafs_file_t *f;
	dafs_fh_t fh;

	mkfile(A, "p", 1, 'p', &fh);
	OK(dafs_open(A, &fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &f));
	EXPECT(dafs_file_deleg(f, NULL), DAFS_DELEG_READ);
	OK(dafs_close(f));
}
END_TEST

static dafs_cache_stats_t cstats(dafs_session_t *s)
{
	dafs_cache_stats_t st;

	OK(dafs_cache_stats(s, &st));
	return st;
}

/* A session whose max_io is less than a cache block (32 KiB requests,
 * gather-send writes) fills each 64 KiB block in two reads: cached reads
 * used to fail with EINVAL there. */
START_TEST(test_cache_small_io)
{
	dafs_session_opts_t o = {.lease_ms = LEASE_MS, .timeout_ms = 20000,
				 .max_request = 32768,
				 .write_method = DAFS_WRITE_GATHER};
	const size_t len = 200000;
	char *buf = malloc(len), *want = malloc(len);
	dafs_session_t *s = NULL;
	dafs_session_info_t info;
	dafs_file_t *f;
	dafs_fh_t fh;

	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(want);
	OK(dafs_session_open(D.url, &o, &s));
	OK(dafs_session_query(s, &info));
	ck_assert_uint_lt(info.max_io, 65536);
	OK(dafs_cache_setup(s, 8u << 20, NULL));
	mkfile(B, "small-io", len, 'y', &fh);
	memset(want, 'y', len);
	OK(dafs_open(s, &fh, O_RDONLY | DAFS_OPEN_CACHED, &f));
	EXPECT(dafs_read(f, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	EXPECT(dafs_read(f, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	OK(dafs_close(f));
	dafs_session_close(s);
	free(buf);
	free(want);
}
END_TEST

/* A's data cache under its read delegation: hits on a re-read, B's write
 * recalls the delegation and drops A's blocks, A then reads B's bytes. */
START_TEST(test_cache_coherent)
{
	const size_t len = 300000;
	char *buf = malloc(len), *want = malloc(len);
	dafs_file_t *fa, *fb;
	dafs_fh_t fh;
	uint64_t misses;

	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(want);
	EXPECT(dafs_cache_stats(A, &(dafs_cache_stats_t){0}), -ENOENT);
	OK(dafs_cache_setup(A, 8u << 20, NULL));
	EXPECT(dafs_cache_setup(A, 8u << 20, NULL), -EBUSY);
	mkfile(B, "c", len, 'x', &fh);
	OK(dafs_open(A, &fh, O_RDONLY | DAFS_OPEN_CACHED | DAFS_OPEN_DELEG_READ,
		     &fa));
	EXPECT(dafs_file_deleg(fa, NULL), DAFS_DELEG_READ);
	memset(want, 'x', len);
	EXPECT(dafs_read(fa, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	misses = cstats(A).misses;
	ck_assert_uint_eq(misses, 5); /* 300,000 bytes: five 64 KiB blocks */
	EXPECT(dafs_read(fa, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	EXPECT(dafs_read(fa, buf, 100, len - 50, NULL), 50);
	ck_assert_uint_eq(cstats(A).misses, misses);
	ck_assert_uint_ge(cstats(A).hit_bytes, len + 50);
	/* B writes: A's delegation is recalled, its blocks dropped */
	OK(dafs_open(B, &fh, O_WRONLY, &fb));
	ck_assert_uint_ge(stats(A).recalls, 1);
	EXPECT(dafs_write(fb, "NEW", 3, 70000, NULL), 3);
	OK(dafs_close(fb));
	memcpy(want + 70000, "NEW", 3);
	EXPECT(dafs_read(fa, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	ck_assert_uint_gt(cstats(A).misses, misses);
	ck_assert_uint_ge(cstats(A).invalidations, 1);
	/* A's own write drops the block it touches, and reads it back */
	OK(dafs_close(fa));
	OK(dafs_open(A, &fh, O_RDWR | DAFS_OPEN_CACHED | DAFS_OPEN_DELEG_READ,
		     &fa));
	EXPECT(dafs_read(fa, buf, len, 0, NULL), (long long)len);
	EXPECT(dafs_write(fa, "own", 3, 5, NULL), 3);
	memcpy(want + 5, "own", 3);
	EXPECT(dafs_read(fa, buf, len, 0, NULL), (long long)len);
	ck_assert(!memcmp(buf, want, len));
	/* an asynchronous write: blocks read while it travels (the server
	 * may read before it writes) are dropped once it completes */
	{
		const size_t wlen = 1 << 20;
		char *wbuf = malloc(wlen);
		dafs_completion_t c;
		dafs_mem_t *mem;
		dafs_cg_t *cg;
		int i;

		ck_assert_ptr_nonnull(wbuf);
		OK(dafs_mem_register(A, wbuf, wlen, &mem));
		OK(dafs_cg_new(A, &cg));
		for (i = 0; i < 40; i++) {
			memset(wbuf, 'a' + i, wlen);
			OK(dafs_write_async(fa, wbuf, wlen, 1000, mem, cg,
					    NULL));
			EXPECT(dafs_read(fa, buf, 4096, 0, NULL), 4096);
			EXPECT(dafs_cg_wait(cg, &c, 1, 10000), 1);
			EXPECT(c.result, (long long)wlen);
			memset(want + 1000, 'a' + i, len - 1000);
			EXPECT(dafs_read(fa, buf, len, 0, NULL),
			       (long long)len);
			ck_assert_msg(!memcmp(buf, want, len),
				      "round %d: a block read during the "
				      "write stayed cached", i);
		}
		OK(dafs_cg_free(cg));
		OK(dafs_mem_deregister(mem));
		free(wbuf);
	}
	OK(dafs_close(fa));
	free(buf);
	free(want);
}
END_TEST

/* The size of the server's file @name on its disk (-1: none). */
static long long disk_size(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	ck_assert_int_eq(it_join(path, sizeof(path), D.export_dir, name), 0);
	return stat(path, &st) ? -1 : (long long)st.st_size;
}

/* Write-back (DAFS_OPEN_WRITEBACK): writes held under the write
 * delegation until something must see them: getattr, commit, a read, a
 * recall, the memory bound, close. */
START_TEST(test_writeback)
{
	static char model[3][300000];
	char buf[4000], *got = malloc(300000);
	const int fl = O_RDWR | DAFS_OPEN_CACHED | DAFS_OPEN_WRITEBACK |
		       DAFS_OPEN_DELEG_WRITE;
	const char *names[3] = {"wb0", "wb1", "wb2"};
	dafs_file_t *fa, *fb, *f3[3];
	dafs_fh_t fh, fh3[3];
	dafs_attr_t at;
	uint64_t flushes;
	int i, j;

	ck_assert_ptr_nonnull(got);
	/* 1 MiB of cache: at most 256 KiB held */
	OK(dafs_cache_setup(A, 1u << 20, NULL));
	OK(dafs_create(A, &ROOT, "wb", fl, 0644, &fa, &fh, NULL));
	EXPECT(dafs_file_deleg(fa, NULL), DAFS_DELEG_WRITE);
	for (i = 0; i < 10; i++) {
		memset(buf, 'a' + i, sizeof(buf));
		memcpy(model[0] + i * 4000, buf, 4000);
		EXPECT(dafs_write(fa, buf, 4000, (uint64_t)i * 4000, NULL),
		       4000);
	}
	ck_assert_int_eq(disk_size("wb"), 0); /* held */
	ck_assert_uint_eq(cstats(A).wb_held, 10);
	ck_assert_uint_eq(cstats(A).wb_dirty, 40000);
	/* getattr through the session: what is held goes first */
	OK(dafs_getattr(A, &fh, &at));
	ck_assert_uint_eq(at.size, 40000);
	ck_assert_int_eq(disk_size("wb"), 40000);
	ck_assert_uint_eq(cstats(A).wb_dirty, 0);
	ck_assert_uint_eq(cstats(A).wb_bytes, 40000);
	/* a read sees what is held */
	memset(buf, 'Q', 100);
	memcpy(model[0] + 39950, buf, 100);
	EXPECT(dafs_write(fa, buf, 100, 39950, NULL), 100);
	ck_assert_int_eq(disk_size("wb"), 40000);
	EXPECT(dafs_read(fa, got, 300000, 0, NULL), 40050);
	ck_assert(!memcmp(got, model[0], 40050));
	/* commit sends it */
	memset(buf, 'C', 50);
	memcpy(model[0] + 40050, buf, 50);
	EXPECT(dafs_write(fa, buf, 50, 40050, NULL), 50);
	ck_assert_int_eq(disk_size("wb"), 40050);
	OK(dafs_commit(fa, 0));
	ck_assert_int_eq(disk_size("wb"), 40100);
	/* B's open recalls A's delegation: A sends what it holds first */
	memset(buf, 'R', 500);
	memcpy(model[0] + 40100, buf, 500);
	EXPECT(dafs_write(fa, buf, 500, 40100, NULL), 500);
	ck_assert_int_eq(disk_size("wb"), 40100);
	OK(dafs_open(B, &fh, O_RDONLY, &fb));
	ck_assert_uint_ge(stats(A).recalls, 1);
	EXPECT(dafs_read(fb, got, 300000, 0, NULL), 40600);
	ck_assert(!memcmp(got, model[0], 40600));
	OK(dafs_close(fb));
	/* the delegation is gone: nothing is held any more */
	memset(buf, 'S', 10);
	EXPECT(dafs_write(fa, buf, 10, 40600, NULL), 10);
	ck_assert_int_eq(disk_size("wb"), 40610);
	OK(dafs_close(fa));

	/* a write of a whole max_io over a held one: the held one goes
	 * first (sent after, it would overwrite the newer bytes) */
	{
		dafs_session_info_t info;
		char *big, *disk;
		uint64_t id;
		FILE *fp;
		char path[PATH_MAX];

		dafs_session_query(A, &info);
		big = malloc(info.max_io);
		disk = malloc(info.max_io);
		ck_assert_ptr_nonnull(big);
		ck_assert_ptr_nonnull(disk);
		OK(dafs_create(A, &ROOT, "wbig", fl, 0644, &fa, &fh, NULL));
		memset(buf, 'x', 4000);
		EXPECT(dafs_write(fa, buf, 4000, 0, NULL), 4000);
		memset(big, 'y', info.max_io);
		EXPECT(dafs_write(fa, big, info.max_io, 0, NULL),
		       (long long)info.max_io);
		OK(dafs_close(fa));
		ck_assert_int_eq(it_join(path, sizeof(path), D.export_dir,
					 "wbig"),
				 0);
		fp = fopen(path, "rb");
		ck_assert_ptr_nonnull(fp);
		ck_assert_uint_eq(fread(disk, 1, info.max_io, fp),
				  info.max_io);
		fclose(fp);
		ck_assert_msg(!memcmp(disk, big, info.max_io),
			      "an older held write landed over a newer one");
		/* the delegation given back by the application: what is
		 * held goes first, nothing is held after */
		OK(dafs_create(A, &ROOT, "wret", fl, 0644, &fa, &fh, NULL));
		EXPECT(dafs_file_deleg(fa, &id), DAFS_DELEG_WRITE);
		EXPECT(dafs_write(fa, buf, 100, 0, NULL), 100);
		ck_assert_int_eq(disk_size("wret"), 0);
		OK(dafs_deleg_return(A, id));
		ck_assert_int_eq(disk_size("wret"), 100);
		EXPECT(dafs_write(fa, buf, 100, 100, NULL), 100);
		ck_assert_int_eq(disk_size("wret"), 200);
		OK(dafs_close(fa));
		free(big);
		free(disk);
	}

	/* three files written in turn, 2,000 bytes at a time: the bound
	 * (256 KiB) sends the least recently written; close sends the
	 * rest */
	for (j = 0; j < 3; j++) {
		OK(dafs_create(A, &ROOT, names[j], fl, 0644, &f3[j], &fh3[j],
			       NULL));
		EXPECT(dafs_file_deleg(f3[j], NULL), DAFS_DELEG_WRITE);
	}
	flushes = cstats(A).wb_flushes;
	for (i = 0; i < 150; i++)
		for (j = 0; j < 3; j++) {
			memset(buf, 'a' + (i + j) % 26, 2000);
			memcpy(model[j] + i * 2000, buf, 2000);
			EXPECT(dafs_write(f3[j], buf, 2000,
					  (uint64_t)i * 2000, NULL),
			       2000);
			ck_assert_uint_le(cstats(A).wb_dirty, 256 << 10);
		}
	ck_assert_uint_gt(cstats(A).wb_flushes, flushes);
	for (j = 0; j < 3; j++)
		OK(dafs_close(f3[j]));
	ck_assert_uint_eq(cstats(A).wb_dirty, 0);
	for (j = 0; j < 3; j++) {
		OK(dafs_open(B, &fh3[j], O_RDONLY, &fb));
		EXPECT(dafs_read(fb, got, 300000, 0, NULL), 300000);
		ck_assert_msg(!memcmp(got, model[j], 300000), "%s differs",
			      names[j]);
		OK(dafs_close(fb));
	}
	ck_assert_uint_eq(cstats(A).wb_errors, 0);
	free(got);
}
END_TEST

/* The cache in LMDB: a new session finds the blocks of an unchanged file
 * and reads it without the server; a file changed meanwhile is read
 * again. */
START_TEST(test_cache_persistent)
{
	char dir[PATH_MAX], *buf = malloc(200000);
	dafs_file_t *f, *fb;
	dafs_fh_t fh, gh;
	dafs_session_t *s;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(it_join(dir, sizeof(dir), D.dir, "cache"), 0);
	mkfile(B, "p", 200000, 'p', &fh);
	mkfile(B, "q", 1000, 'q', &gh);
	s = session();
	OK(dafs_cache_setup(s, 16u << 20, dir));
	OK(dafs_open(s, &fh, O_RDONLY | DAFS_OPEN_CACHED, &f));
	EXPECT(dafs_read(f, buf, 200000, 0, NULL), 200000);
	OK(dafs_close(f));
	OK(dafs_open(s, &gh, O_RDONLY | DAFS_OPEN_CACHED, &f));
	EXPECT(dafs_read(f, buf, 1000, 0, NULL), 1000);
	OK(dafs_close(f));
	ck_assert_uint_eq(cstats(s).misses, 5);
	dafs_session_close(s);

	/* q changes while nobody caches it */
	OK(dafs_open(B, &gh, O_WRONLY, &fb));
	EXPECT(dafs_write(fb, "Q", 1, 10, NULL), 1);
	OK(dafs_close(fb));

	s = session();
	OK(dafs_cache_setup(s, 16u << 20, dir));
	ck_assert_int_eq(cstats(s).persistent, 1);
	ck_assert_uint_eq(cstats(s).blocks, 5);
	OK(dafs_open(s, &fh, O_RDONLY | DAFS_OPEN_CACHED, &f));
	memset(buf, 0, 200000);
	EXPECT(dafs_read(f, buf, 200000, 0, NULL), 200000);
	for (int i = 0; i < 200000; i++)
		ck_assert_int_eq(buf[i], 'p');
	ck_assert_uint_eq(cstats(s).misses, 0); /* all from LMDB */
	OK(dafs_close(f));
	OK(dafs_open(s, &gh, O_RDONLY | DAFS_OPEN_CACHED, &f));
	EXPECT(dafs_read(f, buf, 1000, 0, NULL), 1000);
	ck_assert_int_eq(buf[10], 'Q');
	ck_assert_int_eq(buf[11], 'q');
	ck_assert_uint_eq(cstats(s).misses, 1); /* changed: read again */
	OK(dafs_close(f));
	dafs_session_close(s);
	free(buf);
}
END_TEST

/* A recall handler that returns each delegation 200 ms later, from a
 * thread of its own (as a holder writing back would). */
struct slow_return {
	dafs_session_t *s;
	uint64_t id;
};

static void *slow_return_main(void *arg)
{
	struct slow_return *r = arg;

	usleep(200000);
	dafs_deleg_return(r->s, r->id);
	free(r);
	return NULL;
}

static void return_slowly(void *arg, const dafs_fh_t *fh, uint64_t id,
			  int type)
{
	struct slow_return *r = malloc(sizeof(*r));
	pthread_t t;

	(void)fh, (void)type;
	r->s = arg;
	r->id = id;
	pthread_create(&t, NULL, slow_return_main, r);
	pthread_detach(t);
}

/* With a pool of 2 handlers, 6 conflicting opens at once: one waits in
 * the server, the others are told to ask again (DAFS_EDELAY), so a
 * handler stays free for the holder's returns; every open succeeds and
 * nothing is revoked. */
START_TEST(test_small_pool)
{
	struct opener o[6];
	dafs_file_t *f[6];
	pthread_t t[6];
	uint64_t t0;
	int i;

	OK(dafs_set_recall_handler(A, return_slowly, A));
	for (i = 0; i < 6; i++) {
		char name[8];

		snprintf(name, sizeof(name), "sp%d", i);
		mkfile(A, name, 10, 's', &o[i].fh);
		OK(dafs_open(A, &o[i].fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &f[i]));
		EXPECT(dafs_file_deleg(f[i], NULL), DAFS_DELEG_WRITE);
		OK(dafs_close(f[i]));
	}
	t0 = it_now_ms();
	for (i = 0; i < 6; i++) {
		o[i].s = B;
		o[i].flags = O_RDWR;
		pthread_create(&t[i], NULL, open_thread, &o[i]);
	}
	for (i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		OK(o[i].rc);
	}
	ck_assert_msg(it_now_ms() - t0 < LEASE_MS,
		      "6 opens took %llu ms: the pool stalled",
		      (unsigned long long)(it_now_ms() - t0));
	ck_assert_uint_eq(returns_reach(A, 6), 6);
	ck_assert_uint_eq(stats(A).revoked, 0);
	ck_assert(!it_log_contains(&D, "revoked"));
}
END_TEST

static void start_small_pool(void)
{
	umask(022);
	ck_assert_int_eq(it_daemon_init(&D, "d"), 0);
	D.extra[0] = "--lease-ms";
	D.extra[1] = "2000";
	D.extra[2] = "--threads";
	D.extra[3] = "2:2";
	ck_assert_int_eq(it_daemon_start(&D), 0);
	A = session();
	B = session();
	OK(dafs_root(A, &ROOT));
}

/* dafsd --delay-us 20000 (an emulated round trip, for experiments):
 * every request waits that long before it is handled, so ten getattrs
 * take 200 ms at least, and still answer as without it. */
START_TEST(test_delay)
{
	dafs_attr_t a, b;
	dafs_fh_t fh;
	uint64_t t0, ms;
	int i;

	mkfile(A, "dl", 1234, 'd', &fh);
	t0 = it_now_ms();
	for (i = 0; i < 10; i++)
		OK(dafs_getattr(B, &fh, i ? &b : &a));
	ms = it_now_ms() - t0;
	ck_assert_msg(ms >= 200, "10 getattrs took %llu ms, not 200 or more",
		      (unsigned long long)ms);
	ck_assert_uint_eq(a.size, 1234);
	ck_assert_uint_eq(b.size, 1234);
	ck_assert_uint_eq(a.ino, b.ino);
}
END_TEST

static void start_delay(void)
{
	umask(022);
	ck_assert_int_eq(it_daemon_init(&D, "d"), 0);
	D.extra[0] = "--delay-us";
	D.extra[1] = "20000";
	ck_assert_int_eq(it_daemon_start(&D), 0);
	A = session();
	B = session();
	OK(dafs_root(A, &ROOT));
}

static void start_off(void)
{
	start_with("off");
}

static void start_read(void)
{
	start_with("read");
}

static TCase *tcase(Suite *s, const char *name, void (*setup)(void))
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, it_base_setup, it_base_teardown);
	tcase_add_checked_fixture(tc, setup, stop);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return tc;
}

/* The holder of test_holder_killed, in its own process: open "k" with a
 * write delegation, say "g" on stdout, wait to be killed. */
static int hold(const char *url)
{
	dafs_session_t *s = NULL;
	dafs_fh_t root, fh;
	dafs_file_t *f;

	if (dafs_session_open(url, NULL, &s) || dafs_root(s, &root) ||
	    dafs_lookup(s, &root, "k", &fh, NULL) ||
	    dafs_open(s, &fh, O_RDWR | DAFS_OPEN_DELEG_WRITE, &f) ||
	    dafs_file_deleg(f, NULL) != DAFS_DELEG_WRITE)
		return 1;
	if (write(1, "g", 1) != 1)
		return 1;
	pause();
	return 0;
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("deleg");
	SRunner *sr;
	TCase *tc;
	int failed;

	tc = tcase(s, "deleg", start);
	tcase_add_test(tc, test_grant_read_shared);
	tcase_add_test(tc, test_grant_write);
	tcase_add_test(tc, test_recall_on_changes);
	tcase_add_test(tc, test_conflict_waits_for_return);
	tcase_add_test(tc, test_recall_across_reconnect);
	tcase_add_test(tc, test_revoke);
	tcase_add_test(tc, test_holder_killed);
	tcase_add_test(tc, test_cache_coherent);
	tcase_add_test(tc, test_cache_small_io);
	tcase_add_test(tc, test_cache_persistent);
	tcase_add_test(tc, test_writeback);
	tc = tcase(s, "small-pool", start_small_pool);
	tcase_add_test(tc, test_small_pool);
	tc = tcase(s, "policy-off", start_off);
	tcase_add_test(tc, test_policy_off);
	tc = tcase(s, "policy-read", start_read);
	tcase_add_test(tc, test_policy_read);
	tc = tcase(s, "delay", start_delay);
	tcase_add_test(tc, test_delay);

	if (argc == 2 && !strcmp(argv[1], "hold") &&
	    getenv("DAFS_TEST_HOLD_URL"))
		return hold(getenv("DAFS_TEST_HOLD_URL"));
	umask(022);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
