/*
 * test_locks.c - dafsd's lock tables (src/server/locks.c) on their own:
 * two tables stand for two sessions, real files in a fresh directory
 * under /tmp, no network. Conflicts between sessions and between owners
 * of one session, sharing, ranges split by an unlock, LOCKT, flock and
 * POSIX kept apart, the access-mode rule, a lock of this very process
 * (a "local" one) seen, release at the session's end, the descriptor
 * limit, and the argument checks.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "proto/wire_i.h"
#include "server/locks_i.h"

static char dir[64], path[80], path2[80];
static struct srv_locks A, B;
static int rw, rd, wr, rw2; /* opens of "f" (and "g"), as a session's */

static void setup(void)
{
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/dafs-locks.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(path2, sizeof(path2), "%s/g", dir);
	fd = open(path, O_CREAT | O_RDWR, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "0123456789", 10), 10);
	close(fd);
	rw = open(path, O_RDWR);
	rd = open(path, O_RDONLY);
	wr = open(path, O_WRONLY);
	rw2 = open(path2, O_CREAT | O_RDWR, 0644);
	ck_assert(rw >= 0 && rd >= 0 && wr >= 0 && rw2 >= 0);
	srv_locks_init(&A, 16, NULL);
	srv_locks_init(&B, 16, NULL);
}

static void teardown(void)
{
	srv_locks_fini(&A);
	srv_locks_fini(&B);
	close(rw);
	close(rd);
	close(wr);
	close(rw2);
	unlink(path);
	unlink(path2);
	rmdir(dir);
}

static int set(struct srv_locks *l, int fd, uint32_t acc, uint64_t owner,
	       uint32_t kind, uint32_t type, uint64_t start, uint64_t len)
{
	struct dafs_m_lock_req q = {.open_id = 1,
				    .owner = owner,
				    .kind = kind,
				    .type = type,
				    .start = start,
				    .len = len};

	return srv_locks_set(l, fd, acc, &q);
}

/* POSIX, through the read-write open */
static int px(struct srv_locks *l, uint64_t owner, uint32_t type,
	      uint64_t start, uint64_t len)
{
	return set(l, rw, DAFS_O_RDWR, owner, DAFS_LOCK_POSIX, type, start,
		   len);
}

static int fl(struct srv_locks *l, uint64_t owner, uint32_t type)
{
	return set(l, rw, DAFS_O_RDWR, owner, DAFS_LOCK_FLOCK, type, 0, 0);
}

static struct dafs_m_lockt_rep test(struct srv_locks *l, uint64_t owner,
				    uint32_t type, uint64_t start, uint64_t len)
{
	struct dafs_m_lock_req q = {.open_id = 1,
				    .owner = owner,
				    .kind = DAFS_LOCK_POSIX,
				    .type = type,
				    .start = start,
				    .len = len};
	struct dafs_m_lockt_rep r;

	memset(&r, 0xa5, sizeof(r));
	ck_assert_int_eq(srv_locks_test(l, rd, DAFS_O_RDONLY, &q, &r), 0);
	return r;
}

START_TEST(test_conflict_between_sessions)
{
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 100), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 50, 10), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_READ, 99, 1), -DAFS_EDENIED);
	/* beyond the range, and to EOF beyond it */
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 100, 0), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 1000, 1), -DAFS_EDENIED);
	/* a refused first lock leaves no descriptor behind */
	ck_assert_uint_eq(srv_locks_count(&A), 1);
	ck_assert_int_eq(px(&A, 7, DAFS_LOCK_READ, 5, 1), -DAFS_EDENIED);
	ck_assert_uint_eq(srv_locks_count(&A), 1);
	/* unlocked, the other session gets it */
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_uint_eq(srv_locks_count(&A), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 0, 100), 0);
}
END_TEST

START_TEST(test_owners_of_one_session)
{
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 10), 0);
	ck_assert_int_eq(px(&A, 2, DAFS_LOCK_WRITE, 5, 1), -DAFS_EDENIED);
	/* an owner's own locks never conflict: upgrade, downgrade */
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 0, 10), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 2, 3), 0);
	ck_assert_int_eq(px(&A, 2, DAFS_LOCK_READ, 0, 2), 0);
	ck_assert_int_eq(px(&A, 2, DAFS_LOCK_READ, 2, 1), -DAFS_EDENIED);
}
END_TEST

START_TEST(test_read_shared)
{
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 0, 0), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_READ, 0, 0), 0);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_READ, 10, 5), 0);
	ck_assert_int_eq(px(&B, 3, DAFS_LOCK_WRITE, 10, 5), -DAFS_EDENIED);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&B, 3, DAFS_LOCK_WRITE, 10, 5), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&B, 3, DAFS_LOCK_WRITE, 10, 5), 0);
}
END_TEST

/* An unlock in the middle splits a lock in two; LOCKT sees each part. */
START_TEST(test_split_and_test)
{
	struct dafs_m_lockt_rep r;

	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 100), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_UNLOCK, 40, 20), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 40, 20), 0);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 39, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 60, 1), -DAFS_EDENIED);

	r = test(&B, 2, DAFS_LOCK_READ, 0, 0);
	ck_assert_uint_eq(r.type, DAFS_LOCK_WRITE);
	ck_assert_uint_eq(r.start, 0);
	ck_assert_uint_eq(r.len, 40);
	r = test(&B, 2, DAFS_LOCK_READ, 61, 0);
	ck_assert_uint_eq(r.type, DAFS_LOCK_WRITE);
	ck_assert_uint_eq(r.start, 60);
	ck_assert_uint_eq(r.len, 40);
	/* the owner's own locks are not conflicts; B's are, to A */
	r = test(&B, 1, DAFS_LOCK_WRITE, 40, 20);
	ck_assert_uint_eq(r.type, DAFS_LOCK_UNLOCK);
	ck_assert_uint_eq(r.start, 0);
	ck_assert_uint_eq(r.len, 0);
	r = test(&A, 1, DAFS_LOCK_READ, 0, 0);
	ck_assert_uint_eq(r.type, DAFS_LOCK_WRITE);
	ck_assert_uint_eq(r.start, 40);
	ck_assert_uint_eq(r.len, 20);
	/* a read lock is a conflict only for a write test */
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 200, 0), 0);
	r = test(&B, 3, DAFS_LOCK_READ, 200, 10);
	ck_assert_uint_eq(r.type, DAFS_LOCK_UNLOCK);
	r = test(&B, 3, DAFS_LOCK_WRITE, 150, 100);
	ck_assert_uint_eq(r.type, DAFS_LOCK_READ);
	ck_assert_uint_eq(r.start, 200);
	ck_assert_uint_eq(r.len, 0);
	/* LOCKT took nothing */
	ck_assert_uint_eq(srv_locks_count(&B), 1);
}
END_TEST

/* fcntl(2)'s rule on the open the request names; flock has none. */
START_TEST(test_access_modes)
{
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 0, 1),
			 -EBADF);
	ck_assert_int_eq(set(&A, wr, DAFS_O_WRONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 1),
			 -EBADF);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 1),
			 0);
	ck_assert_int_eq(set(&A, wr, DAFS_O_WRONLY, 2, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 5, 1),
			 0);
	/* the owner that began read-only may write-lock through a write
	 * open: one description serves both */
	ck_assert_int_eq(set(&A, wr, DAFS_O_WRONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 0, 1),
			 0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 3, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_int_eq(set(&B, wr, DAFS_O_WRONLY, 3, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_READ, 0, 0),
			 -DAFS_EDENIED);
	/* an unlock needs no mode */
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 2, DAFS_LOCK_POSIX,
			     DAFS_LOCK_UNLOCK, 0, 0),
			 0);
}
END_TEST

/* The closes of "f" since the last call, IN_CLOSE_WRITE and
 * IN_CLOSE_NOWRITE (or'ed: inotify merges repeated events), from @ifd. */
static uint32_t closes(int ifd)
{
	char buf[4096]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	uint32_t mask = 0;
	ssize_t n, i;

	while ((n = read(ifd, buf, sizeof(buf))) > 0)
		for (i = 0; i < n; i += (ssize_t)sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(buf + i);
			mask |= ev->mask;
		}
	return mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
}

/*
 * dafsd opens its lock descriptors as root: one open for writing where
 * the client has only read access would have effects on the server (the
 * file cannot be executed, IN_CLOSE_WRITE at each unlock, read leases
 * broken). flock and POSIX locks through a read-only open, and LOCKT,
 * open read-only; a POSIX lock through a writable open may write.
 */
START_TEST(test_descriptor_modes)
{
	int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	struct dafs_m_lock_req q = {.open_id = 1,
				    .owner = 9,
				    .kind = DAFS_LOCK_POSIX,
				    .type = DAFS_LOCK_WRITE};
	struct dafs_m_lockt_rep r;

	ck_assert_int_ge(ifd, 0);
	ck_assert_int_ge(
		inotify_add_watch(ifd, path, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE),
		0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_UNLOCK, 0, 0),
			 0);
	ck_assert_uint_eq(closes(ifd), IN_CLOSE_NOWRITE);
	/* flock never writes, whatever the open */
	ck_assert_int_eq(set(&A, rw, DAFS_O_RDWR, 2, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_int_eq(set(&A, rw, DAFS_O_RDWR, 2, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_UNLOCK, 0, 0),
			 0);
	ck_assert_uint_eq(closes(ifd), IN_CLOSE_NOWRITE);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 10),
			 0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_UNLOCK, 0, 0),
			 0);
	ck_assert_uint_eq(closes(ifd), IN_CLOSE_NOWRITE);
	/* LOCKT only looks, even through a write-only open */
	ck_assert_int_eq(srv_locks_test(&A, wr, DAFS_O_WRONLY, &q, &r), 0);
	ck_assert_uint_eq(closes(ifd), IN_CLOSE_NOWRITE);
	/* a POSIX lock through a writable open may write */
	ck_assert_int_eq(px(&A, 4, DAFS_LOCK_READ, 0, 10), 0);
	ck_assert_int_eq(px(&A, 4, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_uint_eq(closes(ifd), IN_CLOSE_WRITE);
	close(ifd);
}
END_TEST

/* A local exec of a file an owner flock-locked through a read-only
 * open: no ETXTBSY. */
START_TEST(test_exec_while_locked)
{
	char exe[96], buf[65536];
	int in, out, status;
	ssize_t n;
	pid_t pid;

	snprintf(exe, sizeof(exe), "%s/true", dir);
	in = open("/bin/true", O_RDONLY);
	out = open(exe, O_CREAT | O_WRONLY | O_TRUNC, 0755);
	ck_assert(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	in = open(exe, O_RDONLY);
	ck_assert_int_ge(in, 0);
	ck_assert_int_eq(set(&A, in, DAFS_O_RDONLY, 1, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_int_eq(set(&A, in, DAFS_O_RDONLY, 2, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 0),
			 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(exe, exe, (char *)NULL);
		_exit(errno == ETXTBSY ? 100 : 101);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "exec of a file locked through a read-only open: %s",
		      WEXITSTATUS(status) == 100 ? "ETXTBSY" : "failed");
	srv_locks_release(&A);
	close(in);
	unlink(exe);
}
END_TEST

/*
 * An owner whose locks came through a read-only open asks for a write
 * lock through a writable one: its descriptor, read-only, is replaced by
 * a read-write one that takes its read locks over (one description per
 * owner: a second would conflict with the first). Nothing of what it
 * held comes free, to the other session, at any point observed here.
 */
START_TEST(test_upgrade_carries_locks)
{
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 10),
			 0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 50, 0),
			 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_READ, 5, 1), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 20, 10), 0);
	ck_assert_uint_eq(srv_locks_count(&A), 1);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 0, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 9, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 25, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_READ, 25, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 1000, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_READ, 1000, 1), 0);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_WRITE, 10, 10), 0);
	/* B's read lock in the way of turning 0-9 into a write lock */
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 10), -DAFS_EDENIED);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 10), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_READ, 5, 1), -DAFS_EDENIED);
	/* holding nothing: a read-only descriptor left by a partial
	 * unlock, then a write lock through a writable open */
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 200, 1),
			 0);
	ck_assert_int_eq(set(&A, rd, DAFS_O_RDONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_UNLOCK, 200, 1),
			 0);
	ck_assert_int_eq(set(&A, wr, DAFS_O_WRONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 300, 1),
			 -DAFS_EDENIED); /* A's owner 1: 50 to the end */
	ck_assert_int_eq(set(&A, wr, DAFS_O_WRONLY, 3, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 40, 5),
			 0);
	ck_assert_int_eq(px(&B, 2, DAFS_LOCK_READ, 42, 1), -DAFS_EDENIED);
	ck_assert_uint_eq(srv_locks_count(&A), 2);
}
END_TEST

START_TEST(test_flock)
{
	ck_assert_int_eq(fl(&A, 1, DAFS_LOCK_WRITE), 0);
	ck_assert_int_eq(fl(&B, 1, DAFS_LOCK_READ), -DAFS_EDENIED);
	/* another owner is another open file description: it conflicts
	 * even in the same session */
	ck_assert_int_eq(fl(&A, 2, DAFS_LOCK_READ), -DAFS_EDENIED);
	/* flock and POSIX locks do not see each other (as on Linux) */
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 0, 0), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	/* a conversion to shared lets readers in */
	ck_assert_int_eq(fl(&A, 1, DAFS_LOCK_READ), 0);
	ck_assert_int_eq(fl(&B, 1, DAFS_LOCK_READ), 0);
	ck_assert_int_eq(fl(&A, 2, DAFS_LOCK_WRITE), -DAFS_EDENIED);
	ck_assert_int_eq(fl(&A, 1, DAFS_LOCK_UNLOCK), 0);
	ck_assert_int_eq(fl(&B, 1, DAFS_LOCK_UNLOCK), 0);
	ck_assert_int_eq(fl(&A, 2, DAFS_LOCK_WRITE), 0);
	ck_assert_uint_eq(srv_locks_count(&A), 1);
	ck_assert_uint_eq(srv_locks_count(&B), 0);
	/* a range makes no sense to flock */
	ck_assert_int_eq(set(&A, rw, DAFS_O_RDWR, 5, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_READ, 0, 10),
			 -EINVAL);
}
END_TEST

/* The kernel holds them: a lock of a local process (this one's classic
 * fcntl lock) and the sessions' locks see each other. */
START_TEST(test_local_process)
{
	struct flock f = {.l_type = F_WRLCK,
			  .l_whence = SEEK_SET,
			  .l_start = 0,
			  .l_len = 5};
	int fd = open(path, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_SETLK, &f), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 4, 1), -DAFS_EDENIED);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 5, 1), 0);
	f.l_type = F_RDLCK;
	f.l_start = 5;
	f.l_len = 1;
	ck_assert_int_eq(fcntl(fd, F_SETLK, &f), 0);
	f.l_type = F_WRLCK;
	ck_assert_int_eq(fcntl(fd, F_SETLK, &f), -1);
	ck_assert(errno == EAGAIN || errno == EACCES);
	close(fd);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 5), 0);
}
END_TEST

/* The end of the session releases everything, and takes no more. */
START_TEST(test_release)
{
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_WRITE, 0, 0), 0);
	ck_assert_int_eq(fl(&A, 1, DAFS_LOCK_WRITE), 0);
	ck_assert_int_eq(set(&A, rw2, DAFS_O_RDWR, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_uint_eq(srv_locks_count(&A), 3);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_READ, 0, 0), -DAFS_EDENIED);
	srv_locks_release(&A);
	ck_assert_uint_eq(srv_locks_count(&A), 0);
	ck_assert_int_eq(px(&B, 1, DAFS_LOCK_WRITE, 0, 0), 0);
	ck_assert_int_eq(fl(&B, 1, DAFS_LOCK_WRITE), 0);
	ck_assert_int_eq(set(&B, rw2, DAFS_O_RDWR, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_WRITE, 0, 0),
			 0);
	ck_assert_int_eq(px(&A, 2, DAFS_LOCK_READ, 0, 0), -DAFS_EBADSESSION);
	ck_assert_int_eq(px(&A, 2, DAFS_LOCK_UNLOCK, 0, 0), -DAFS_EBADSESSION);
	srv_locks_release(&A); /* twice is harmless */
}
END_TEST

/* One descriptor per (owner, file, kind), at most max of them. */
START_TEST(test_limit)
{
	struct srv_locks C;
	int i;

	srv_locks_init(&C, 3, NULL);
	ck_assert_int_eq(px(&C, 1, DAFS_LOCK_READ, 0, 1), 0);
	ck_assert_int_eq(px(&C, 1, DAFS_LOCK_READ, 5, 1), 0); /* same one */
	ck_assert_int_eq(fl(&C, 1, DAFS_LOCK_READ), 0);
	ck_assert_int_eq(set(&C, rw2, DAFS_O_RDWR, 1, DAFS_LOCK_POSIX,
			     DAFS_LOCK_READ, 0, 1),
			 0);
	ck_assert_uint_eq(srv_locks_count(&C), 3);
	ck_assert_int_eq(px(&C, 2, DAFS_LOCK_READ, 0, 1), -ENOLCK);
	/* what is held goes on working */
	ck_assert_int_eq(px(&C, 1, DAFS_LOCK_WRITE, 10, 1), 0);
	/* a partial unlock keeps the descriptor, a whole one frees it */
	ck_assert_int_eq(px(&C, 1, DAFS_LOCK_UNLOCK, 0, 100), 0);
	ck_assert_uint_eq(srv_locks_count(&C), 3);
	ck_assert_int_eq(px(&C, 1, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_uint_eq(srv_locks_count(&C), 2);
	ck_assert_int_eq(px(&C, 2, DAFS_LOCK_READ, 0, 1), 0);
	/* unlocks of nothing take nothing */
	for (i = 10; i < 20; i++)
		ck_assert_int_eq(px(&C, (uint64_t)i, DAFS_LOCK_UNLOCK, 0, 0),
				 0);
	ck_assert_uint_eq(srv_locks_count(&C), 3);
	srv_locks_fini(&C);
}
END_TEST

/* The server's budget over every session: two tables of 4 each drawing
 * on 5 in all; what one gives back the other may take, and no refused,
 * raced or released lock keeps a share. */
START_TEST(test_budget)
{
	struct srv_lockbudget bud;
	struct srv_locks C, D;
	uint64_t o;

	srv_lockbudget_init(&bud, 5);
	srv_locks_init(&C, 4, &bud);
	srv_locks_init(&D, 4, &bud);
	for (o = 1; o <= 3; o++)
		ck_assert_int_eq(fl(&C, o, DAFS_LOCK_READ), 0);
	ck_assert_int_eq(fl(&D, 1, DAFS_LOCK_READ), 0);
	ck_assert_int_eq(fl(&D, 2, DAFS_LOCK_READ), 0);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 5);
	/* under its own cap, over the server's: ENOLCK */
	ck_assert_int_eq(fl(&D, 3, DAFS_LOCK_READ), -ENOLCK);
	ck_assert_int_eq(px(&C, 4, DAFS_LOCK_READ, 0, 1), -ENOLCK);
	/* what is held goes on working */
	ck_assert_int_eq(fl(&D, 1, DAFS_LOCK_WRITE), -DAFS_EDENIED);
	ck_assert_int_eq(fl(&C, 1, DAFS_LOCK_UNLOCK), 0);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 4);
	/* a refused first lock gives its share back at once */
	ck_assert_int_eq(px(&C, 5, DAFS_LOCK_WRITE, 0, 0), 0);
	ck_assert_int_eq(fl(&C, 2, DAFS_LOCK_UNLOCK), 0);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 4);
	ck_assert_int_eq(px(&D, 3, DAFS_LOCK_WRITE, 0, 1), -DAFS_EDENIED);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 4);
	ck_assert_int_eq(px(&C, 5, DAFS_LOCK_UNLOCK, 0, 0), 0);
	ck_assert_int_eq(px(&D, 3, DAFS_LOCK_READ, 20, 1), 0);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 4);
	/* a session's end gives back all of its share */
	srv_locks_release(&C);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 3);
	ck_assert_int_eq(fl(&D, 4, DAFS_LOCK_READ), 0);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 4);
	srv_locks_fini(&D);
	srv_locks_fini(&C);
	ck_assert_uint_eq(srv_lockbudget_used(&bud), 0);
}
END_TEST

START_TEST(test_bad_requests)
{
	struct dafs_m_lock_req q = {.open_id = 1,
				    .owner = 1,
				    .kind = DAFS_LOCK_FLOCK,
				    .type = DAFS_LOCK_READ};
	struct dafs_m_lockt_rep r;
	int dfd;

	ck_assert_int_eq(set(&A, rw, DAFS_O_RDWR, 1, 3, DAFS_LOCK_READ, 0, 1),
			 -EINVAL);
	ck_assert_int_eq(set(&A, rw, DAFS_O_RDWR, 1, 0, DAFS_LOCK_READ, 0, 1),
			 -EINVAL);
	ck_assert_int_eq(px(&A, 1, 3, 0, 1), -EINVAL);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, (uint64_t)INT64_MAX + 1, 1),
			 -EINVAL);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 0, (uint64_t)INT64_MAX + 1),
			 -EINVAL);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 2, (uint64_t)INT64_MAX),
			 -EOVERFLOW);
	/* the last byte there is */
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, 1, (uint64_t)INT64_MAX), 0);
	ck_assert_int_eq(px(&A, 1, DAFS_LOCK_READ, (uint64_t)INT64_MAX, 1), 0);
	/* LOCKT: POSIX and READ or WRITE only */
	ck_assert_int_eq(srv_locks_test(&A, rw, DAFS_O_RDWR, &q, &r), -EINVAL);
	q.kind = DAFS_LOCK_POSIX;
	q.type = DAFS_LOCK_UNLOCK;
	ck_assert_int_eq(srv_locks_test(&A, rw, DAFS_O_RDWR, &q, &r), -EINVAL);
	/* regular files only */
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	ck_assert_int_eq(set(&A, dfd, DAFS_O_RDONLY, 1, DAFS_LOCK_FLOCK,
			     DAFS_LOCK_READ, 0, 0),
			 -EINVAL);
	close(dfd);
	ck_assert_uint_eq(srv_locks_count(&A), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("locks");
	TCase *tc = tcase_create("locks");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_conflict_between_sessions);
	tcase_add_test(tc, test_owners_of_one_session);
	tcase_add_test(tc, test_read_shared);
	tcase_add_test(tc, test_split_and_test);
	tcase_add_test(tc, test_access_modes);
	tcase_add_test(tc, test_descriptor_modes);
	tcase_add_test(tc, test_exec_while_locked);
	tcase_add_test(tc, test_upgrade_carries_locks);
	tcase_add_test(tc, test_flock);
	tcase_add_test(tc, test_local_process);
	tcase_add_test(tc, test_release);
	tcase_add_test(tc, test_limit);
	tcase_add_test(tc, test_budget);
	tcase_add_test(tc, test_bad_requests);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
