/*
 * regcache-bench.c - what the pin-down registration cache saves
 * (docs/regcache.md):
 *
 *   1. per buffer size (1, 4, 16, 64 KiB, 1 MiB): the cost of a
 *      registration plus deregistration through the transport's ops table
 *      against a cache hit (dafs_regcache_get + put of a cached buffer),
 *      in the cache's relaxed mode (what libdafs uses over tcp) and its
 *      strict mode (what it uses over anything else: one poll(2) more);
 *   2. the database record workload over a real dafsd session: per
 *      record of a random size between 8 and 64 KiB, dafs_mem_register +
 *      dafs_read + dafs_mem_deregister, with the session's cache off
 *      (dafs_session_set_regcache(s, 0, 0)) and on (the defaults; a
 *      round that starts empty, then one more on the cache it left), and
 *      with every buffer registered once beforehand ("pinned": the most
 *      any cache can give); records/s, median of interleaved rounds, and
 *      the ratios to "off".
 *
 *   regcache-bench [--transport tcp|rdma] [--iters N] [--rounds N]
 *                  [--seconds S] [--url URL | --dafsd PATH] [--no-db]
 *
 * Without --url it starts a dafsd (by default the one of this build) on
 * 127.0.0.1, exporting a fresh directory under /dev/shm (or
 * $DAFS_BENCH_DIR), and stops it by PID. With --transport rdma, give the
 * server's URL (rdma://HOST:PORT/EXPORT): the transport's domain_new picks
 * the device. Figures only; nothing passes or fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/regcache.h"
#include "dafs/dafs.h"
#include "transport/transport_i.h"

#ifndef DAFSD_PATH
#define DAFSD_PATH "dafsd"
#endif

#define ACC_ALL                                                                \
	(DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_WRITE | DAFS_ACC_REMOTE_READ)
#define NREC 1024 /* records in the file */
#define NBUF 256  /* record buffers the application keeps */
#define MINREC (8 * 1024)
#define MAXREC (64 * 1024)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "regcache-bench: %s: %s\n", what,
		rc < 0 ? dafs_strerror(rc) : strerror(rc));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* ---- 1. registration against a hit ---- */

static double reg_dereg_ns(const struct dafs_tp_ops *tp,
			   struct dafs_domain *dom, void *buf, size_t len,
			   long iters)
{
	struct dafs_mr *mr;
	double t0;
	int rc;

	t0 = now();
	for (long i = 0; i < iters; i++) {
		rc = tp->reg_mr(dom, buf, len, ACC_ALL, &mr);
		if (rc)
			die("reg_mr", rc);
		tp->dereg_mr(mr);
	}
	return (now() - t0) * 1e9 / (double)iters;
}

static double hit_ns(struct dafs_regcache *c, void *buf, size_t len, long iters)
{
	struct dafs_rc_entry *e;
	double t0;
	int rc;

	rc = dafs_regcache_get(c, buf, len, ACC_ALL, &e); /* the miss */
	if (rc)
		die("dafs_regcache_get", rc);
	dafs_regcache_put(e);
	t0 = now();
	for (long i = 0; i < iters; i++) {
		rc = dafs_regcache_get(c, buf, len, ACC_ALL, &e);
		if (rc)
			die("dafs_regcache_get", rc);
		dafs_regcache_put(e);
	}
	return (now() - t0) * 1e9 / (double)iters;
}

static void bench_reg(const char *transport, long iters, int rounds)
{
	static const size_t sizes[] = {1024, 4096, 16384, 65536, 1 << 20};
	const struct dafs_tp_ops *tp = dafs_tp_find(transport);
	struct dafs_regcache_cfg cfg = {1024, 1ull << 30, 0};
	struct dafs_regcache *relaxed, *strict;
	struct dafs_regcache_stats st;
	struct dafs_domain *dom;
	double r[16], h[16], hs[16];
	int rc;

	if (!tp)
		die(transport, -EINVAL);
	rc = tp->domain_new(&dom);
	if (rc)
		die("domain_new", rc);
	if (dafs_regcache_new(tp, dom, &cfg, &relaxed))
		die("dafs_regcache_new", -ENOMEM);
	cfg.flags = DAFS_RC_STRICT;
	if (dafs_regcache_new(tp, dom, &cfg, &strict))
		die("dafs_regcache_new", -ENOMEM);
	dafs_regcache_stats(relaxed, &st);
	printf("# registration: transport %s, %ld iterations, median of %d "
	       "rounds; cache %s\n",
	       tp->name, iters, rounds,
	       st.mode == DAFS_RC_ON ? "on (userfaultfd)"
				     : "WITHOUT userfaultfd: no hits");
	printf("%-8s %14s %10s %8s %16s %8s\n", "size", "reg+dereg ns",
	       "hit ns", "ratio", "strict hit ns", "ratio");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		void *buf = aligned_alloc(4096, len < 4096 ? 4096 : len);
		double rr, hh, hh2;

		if (!buf)
			die("aligned_alloc", ENOMEM);
		memset(buf, 1, len);
		/* rounds interleaved: a shared machine drifts */
		for (int k = 0; k < rounds; k++) {
			r[k] = reg_dereg_ns(tp, dom, buf, len, iters);
			/* one userfaultfd per cache, and a range can be
			 * watched by one only: flush between them */
			h[k] = hit_ns(relaxed, buf, len, iters);
			dafs_regcache_flush(relaxed);
			hs[k] = hit_ns(strict, buf, len, iters);
			dafs_regcache_flush(strict);
		}
		rr = median(r, rounds);
		hh = median(h, rounds);
		hh2 = median(hs, rounds);
		printf("%-8s %14.0f %10.0f %7.1fx %16.0f %7.1fx\n",
		       len >= (1 << 20) ? "1M"
		       : len == 1024	? "1K"
		       : len == 4096	? "4K"
		       : len == 16384	? "16K"
					: "64K",
		       rr, hh, rr / hh, hh2, rr / hh2);
		free(buf);
	}
	dafs_regcache_stats(relaxed, &st);
	if (st.uncached)
		printf("# WARNING: %llu lookups were not cached\n",
		       (unsigned long long)st.uncached);
	dafs_regcache_stats(strict, &st);
	if (st.uncached)
		printf("# WARNING: %llu strict lookups were not cached\n",
		       (unsigned long long)st.uncached);
	dafs_regcache_free(relaxed);
	dafs_regcache_free(strict);
	tp->domain_free(dom);
}

/* ---- 2. database records over a session ---- */

struct server {
	pid_t pid;
	char dir[256], url[512];
};

static void server_start(struct server *sv, const char *dafsd)
{
	const char *base = getenv("DAFS_BENCH_DIR");
	char exp[300], state[300], port[300], log[300], arg[320];
	int i, fd;
	FILE *f;

	snprintf(sv->dir, sizeof(sv->dir), "%s/regcache-bench.XXXXXX",
		 base ? base : "/dev/shm");
	if (!mkdtemp(sv->dir))
		die(sv->dir, errno);
	snprintf(exp, sizeof(exp), "%s/export", sv->dir);
	snprintf(state, sizeof(state), "%s/state", sv->dir);
	snprintf(port, sizeof(port), "%s/port", sv->dir);
	snprintf(log, sizeof(log), "%s/log", sv->dir);
	snprintf(arg, sizeof(arg), "data=%s", exp);
	if (mkdir(exp, 0755) || mkdir(state, 0700))
		die("mkdir", errno);
	sv->pid = fork();
	if (sv->pid < 0)
		die("fork", errno);
	if (!sv->pid) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(dafsd, dafsd, "--export", arg, "--state-dir", state,
		      "--listen", "tcp://127.0.0.1:0", "--port-file", port,
		      (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		unsigned p = 0;

		f = fopen(port, "r");
		if (f) {
			if (fscanf(f, "%u", &p) != 1)
				p = 0;
			fclose(f);
		}
		if (p) {
			snprintf(sv->url, sizeof(sv->url),
				 "tcp://127.0.0.1:%u/data", p);
			return;
		}
		usleep(50000);
	}
	fprintf(stderr, "regcache-bench: %s did not start (log: %s)\n", dafsd,
		log);
	exit(1);
}

static void server_stop(struct server *sv)
{
	char cmd[300];

	if (sv->pid > 0) {
		kill(sv->pid, SIGTERM);
		waitpid(sv->pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sv->dir);
	if (system(cmd))
		fprintf(stderr, "regcache-bench: could not remove %s\n",
			sv->dir);
}

static uint64_t rnd_state = 0x853c49e6748fea9bull;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 11);
}

static uint8_t byte_at(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 9));
}

/* Records per second: per record, register + read + deregister; with
 * @pinned, the buffers' registrations made once beforehand instead (an
 * application that registers its buffers at start: what no cache can
 * beat). */
static double db_round(dafs_session_t *s, dafs_file_t *f, uint8_t **bufs,
		       dafs_mem_t **pinned, const uint64_t *off,
		       const uint32_t *len, double seconds)
{
	double t0 = now(), t;
	long n = 0;
	dafs_mem_t *m;
	ssize_t got;
	int rc;

	do {
		for (int k = 0; k < 64; k++, n++) {
			uint32_t r = rnd() % NREC, i = rnd() % NBUF;
			uint8_t *b = bufs[i];

			if (pinned) {
				m = pinned[i];
			} else {
				rc = dafs_mem_register(s, b, len[r], &m);
				if (rc)
					die("dafs_mem_register", rc);
			}
			got = dafs_read(f, b, len[r], off[r], m);
			if (got != (ssize_t)len[r])
				die("dafs_read", got < 0 ? (int)got : -EIO);
			if (b[len[r] - 1] != byte_at(off[r] + len[r] - 1))
				die("record content", -EIO);
			rc = pinned ? 0 : dafs_mem_deregister(m);
			if (rc)
				die("dafs_mem_deregister", rc);
		}
		t = now();
	} while (t - t0 < seconds);
	return (double)n / (t - t0);
}

static void bench_db(const char *url, int rounds, double seconds)
{
	uint64_t off[NREC], total = 0;
	uint32_t len[NREC];
	uint8_t *bufs[NBUF], *chunk;
	double v_off[16], v_on[16], v_warm[16], v_pin[16], off_rs, on_rs,
		warm_rs, pin_rs;
	dafs_mem_t *pinned[NBUF];
	dafs_session_info_t info, before;
	struct {
		uint64_t hits, misses, uncached, evictions, invalidations;
	} on = {0, 0, 0, 0, 0};
	dafs_session_t *s;
	dafs_file_t *f;
	dafs_fh_t root;
	int rc;

	for (int i = 0; i < NREC; i++) {
		len[i] = MINREC + rnd() % (MAXREC - MINREC + 1);
		off[i] = total;
		total += len[i];
	}
	rc = dafs_session_open(url, NULL, &s);
	if (rc)
		die(url, rc);
	dafs_root(s, &root);
	rc = dafs_create(s, &root, "records", O_RDWR | O_TRUNC, 0644, &f, NULL,
			 NULL);
	if (rc)
		die("dafs_create", rc);
	chunk = malloc(1 << 20);
	for (uint64_t o = 0; o < total; o += 1 << 20) {
		uint32_t n =
			total - o < (1 << 20) ? (uint32_t)(total - o) : 1 << 20;

		for (uint32_t i = 0; i < n; i++)
			chunk[i] = byte_at(o + i);
		if (dafs_write(f, chunk, n, o, NULL) != (ssize_t)n)
			die("dafs_write", -EIO);
	}
	free(chunk);
	/* the application's record buffers, each from malloc */
	for (int i = 0; i < NBUF; i++) {
		bufs[i] = malloc(MAXREC);
		if (!bufs[i])
			die("malloc", ENOMEM);
		memset(bufs[i], 0, MAXREC);
	}
	for (int k = 0; k < rounds; k++) {
		dafs_session_set_regcache(s, 0, 0);
		v_off[k] = db_round(s, f, bufs, NULL, off, len, seconds);
		for (int i = 0; i < NBUF; i++) {
			rc = dafs_mem_register(s, bufs[i], MAXREC, &pinned[i]);
			if (rc)
				die("dafs_mem_register", rc);
		}
		v_pin[k] = db_round(s, f, bufs, pinned, off, len, seconds);
		for (int i = 0; i < NBUF; i++)
			dafs_mem_deregister(pinned[i]);
		dafs_session_set_regcache(s, 1024, 256ull << 20);
		dafs_session_query(s, &before);
		v_on[k] = db_round(s, f, bufs, NULL, off, len, seconds);
		dafs_session_query(s, &info);
		/* the same cache once more: what a running application
		 * sees, every buffer met before */
		v_warm[k] = db_round(s, f, bufs, NULL, off, len, seconds);
		/* the counters of the rounds with the cache on only: with
		 * it off every registration counts as uncached */
		on.hits += info.regcache_hits - before.regcache_hits;
		on.misses += info.regcache_misses - before.regcache_misses;
		on.uncached +=
			info.regcache_uncached - before.regcache_uncached;
		on.evictions +=
			info.regcache_evictions - before.regcache_evictions;
		on.invalidations += info.regcache_invalidations -
				    before.regcache_invalidations;
	}
	off_rs = median(v_off, rounds);
	on_rs = median(v_on, rounds);
	pin_rs = median(v_pin, rounds);
	warm_rs = median(v_warm, rounds);
	printf("# database records: %d records of 8-64 KiB (random) in one "
	       "file, %d malloc'd buffers; per record dafs_mem_register + "
	       "dafs_read + dafs_mem_deregister; transport %s; median of %d "
	       "rounds of %.1f s\n",
	       NREC, NBUF, info.transport, rounds, seconds);
	printf("%-10s %12s\n", "cache", "records/s");
	printf("%-10s %12.0f\n", "off", off_rs);
	printf("%-10s %12.0f %7.2fx   (hits %llu, misses %llu, uncached "
	       "%llu, evictions %llu, invalidations %llu)\n",
	       "on", on_rs, on_rs / off_rs,
	       (unsigned long long)on.hits, (unsigned long long)on.misses,
	       (unsigned long long)on.uncached,
	       (unsigned long long)on.evictions,
	       (unsigned long long)on.invalidations);
	printf("%-10s %12.0f %7.2fx   (the cache of the round above, "
	       "used again)\n",
	       "on, warm", warm_rs, warm_rs / off_rs);
	printf("%-10s %12.0f %7.2fx   (each buffer registered once "
	       "beforehand: the most a cache can give)\n",
	       "pinned", pin_rs, pin_rs / off_rs);
	dafs_close(f);
	dafs_session_close(s);
	for (int i = 0; i < NBUF; i++)
		free(bufs[i]);
}

int main(int argc, char **argv)
{
	const char *transport = "tcp", *url = NULL, *dafsd = DAFSD_PATH;
	long iters = 200000;
	int rounds = 3, db = 1;
	double seconds = 2;
	struct server sv;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--no-db")) {
			db = 0;
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--transport"))
			transport = v;
		else if (!strcmp(a, "--iters"))
			iters = atol(v);
		else if (!strcmp(a, "--rounds"))
			rounds = atoi(v);
		else if (!strcmp(a, "--seconds"))
			seconds = atof(v);
		else if (!strcmp(a, "--url"))
			url = v;
		else if (!strcmp(a, "--dafsd"))
			dafsd = v;
		else
			goto usage;
	}
	if (iters < 1 || rounds < 1 || rounds > 16 || seconds <= 0)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_reg(transport, iters, rounds);
	if (!db)
		return 0;
	if (url) {
		bench_db(url, rounds, seconds);
		return 0;
	}
	if (strcmp(transport, "tcp")) {
		fprintf(stderr, "regcache-bench: give --url for %s\n",
			transport);
		return 2;
	}
	memset(&sv, 0, sizeof(sv));
	server_start(&sv, dafsd);
	bench_db(sv.url, rounds, seconds);
	server_stop(&sv);
	return 0;
usage:
	fprintf(stderr,
		"usage: regcache-bench [--transport tcp|rdma] [--iters N] "
		"[--rounds N (1-16)] [--seconds S] [--url URL | --dafsd PATH] "
		"[--no-db]\n");
	return 2;
}
