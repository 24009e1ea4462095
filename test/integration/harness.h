/*
 * harness.h - runs real dafsd daemons for the integration tests.
 *
 * Layout: the test runner (check's parent process) makes one base
 * directory per TCase with it_base_setup() (an unchecked fixture) and
 * removes it, whatever happened, with it_base_teardown(). Each test (a
 * forked child in CK_FORK mode) starts its own daemon in a subdirectory of
 * the base: an export directory, a state directory, the port file and the
 * daemon's log. The daemon is started by fork/exec of $DAFSD and stopped by
 * its PID with SIGTERM; it is also armed with PR_SET_PDEATHSIG, so a test
 * that dies on a failed assertion (check _exit()s the child, skipping the
 * teardown) takes its daemon with it, and the base teardown then finds only
 * files to remove. The base teardown prints the log tail of every daemon
 * whose test did not reach its own teardown, to help the diagnosis.
 *
 * All functions return 0 or a negative errno unless they say otherwise.
 */
#ifndef DAFS_TEST_HARNESS_H
#define DAFS_TEST_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct it_daemon {
	char dir[PATH_MAX];	   /* private to this daemon */
	char export_dir[PATH_MAX]; /* exported as "data" */
	char state_dir[PATH_MAX];
	char port_file[PATH_MAX];
	char log_file[PATH_MAX]; /* stdout and stderr, appended */
	char url[128];		 /* tcp://127.0.0.1:PORT/data (it_listen()) */
	uint16_t port;
	pid_t pid; /* 0 when not running */
	const char *extra[4]; /* more dafsd arguments, NULL-terminated */
	/* RLIMIT_NOFILE the daemon starts with (soft and hard); 0: the
	 * test's own */
	unsigned long nofile_soft, nofile_hard;
};

/* Unchecked fixtures (the runner process): make / remove the base. */
void it_base_setup(void);
void it_base_teardown(void);
/* The base directory of the running TCase. */
const char *it_base(void);

/* Make the directories of a new daemon under the base (@name is a label,
 * made unique). Does not start it. */
int it_daemon_init(struct it_daemon *d, const char *name);
/*
 * Start dafsd on @d's export and state directories, listening on an
 * ephemeral port of it_listen(); waits for the port file. Fills ->port,
 * ->url and ->pid. A daemon that exits early is reported with its log.
 */
int it_daemon_start(struct it_daemon *d);
/* SIGTERM, then wait (bounded; SIGKILL after @timeout_ms). Returns the
 * exit status (0..255), 128 + signal if killed by one, or -ETIMEDOUT. */
int it_daemon_stop(struct it_daemon *d, int timeout_ms);
/* Non-zero while the daemon's process exists and has not exited. */
int it_daemon_alive(const struct it_daemon *d);
/* Kill (SIGKILL) if still running and remove @d's directory tree. */
void it_daemon_fini(struct it_daemon *d);
/*
 * A test's end: stop the daemon (SIGTERM, 20 s), look for sanitizer
 * reports in its log (the tail of the log goes to stderr if anything is
 * wrong), then it_daemon_fini(). Returns 0, or non-zero with what went
 * wrong in @why, so that the caller asserts after everything is cleaned.
 */
int it_daemon_end(struct it_daemon *d, char *why, size_t size);

/* The first sanitizer report line of the log, copied to @line; returns 1
 * if there was one, 0 if not. */
int it_log_sanitizer(const struct it_daemon *d, char *line, size_t size);
/* 1 if the log contains @needle. */
int it_log_contains(const struct it_daemon *d, const char *needle);
/* Print the last @lines lines of the log to stderr, prefixed "# ". */
void it_log_dump(const struct it_daemon *d, int lines);

/*
 * Where daemons listen and clients connect: $DAFS_IT_LISTEN, a URL
 * without port, "tcp://127.0.0.1" if unset (scripts/rdma-tests.sh sets
 * rdma://ADDR). it_scheme() is its scheme ("tcp", "rdma"), which is also
 * what dafs_session_query() reports as the transport.
 */
const char *it_listen(void);
const char *it_scheme(void);

/* @a "/" @b into @dst; -ENAMETOOLONG if it does not fit. */
int it_join(char *dst, size_t size, const char *a, const char *b);

/* Remove a directory tree (or a file). Missing is not an error. */
int it_rmtree(const char *path);

/* Milliseconds on the monotonic clock. */
uint64_t it_now_ms(void);

/* Assertions on a libdafs return code, naming the call and the error
 * (for test files that include check.h and dafs/dafs.h). */
#define OK(expr)                                                               \
	do {                                                                   \
		long long rc_ = (long long)(expr);                             \
		ck_assert_msg(rc_ == 0, "%s = %lld (%s)", #expr, rc_,          \
			      dafs_strerror((int)rc_));                        \
	} while (0)
#define EXPECT(expr, want)                                                     \
	do {                                                                   \
		long long rc_ = (long long)(expr), w_ = (long long)(want);     \
		ck_assert_msg(rc_ == w_, "%s = %lld (%s), expected %lld (%s)", \
			      #expr, rc_, dafs_strerror((int)rc_), w_,         \
			      dafs_strerror((int)w_));                         \
	} while (0)

#endif /* DAFS_TEST_HARNESS_H */
