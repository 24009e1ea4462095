/*
 * dafs-bench.c - sequential read and write throughput over the DAFS
 * asynchronous API, in the spirit of the original DAFS asyncIOperf.
 *
 * For each block size, a pipeline of DEPTH requests is kept in flight over
 * one file: as each completion is reaped, the next block is submitted from
 * the same buffer. Buffers are registered once for the whole run. One line
 * of results per block size and direction: MB/s (10^6 bytes/s), operations
 * per second and, given the PID of a dafsd on this machine, the server's CPU
 * seconds per GB moved (utime + stime from /proc/PID/stat).
 *
 * Data the bench wrote itself carries a pattern (one 8-byte word per 512
 * bytes, a function of the file offset and a per-run seed) that every read
 * checks, so that a broken read path fails instead of reporting a number.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dafs/dafs.h"
#include "tools/resolve_i.h"

#ifndef DAFS_TOOLS_VERSION
#define DAFS_TOOLS_VERSION "unknown"
#endif

#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define DEPTH_DEFAULT 8
#define DEPTH_MAX 1024
#define SIZE_DEFAULT (1ull << 30)
#define BLOCKS_DEFAULT "4K,16K,64K,256K,1M"
#define BLOCKS_MAX 32

/* One pattern word every PAT_STRIDE bytes of the file. */
#define PAT_STRIDE 512
#define PAT_WORD 8

static const char usage_text[] =
	"usage: dafs-bench [OPTIONS] URL/PATH\n"
	"\n"
	"Sequential read and/or write of one file over the asynchronous DAFS "
	"API.\n"
	"\n"
	"  -d, --depth N          requests in flight (default 8)\n"
	"  -b, --block-sizes LIST block sizes, comma-separated, K/M suffixes\n"
	"                         (default " BLOCKS_DEFAULT ")\n"
	"  -s, --size SIZE        file size when the bench writes it, K/M/G "
	"suffixes\n"
	"                         (default 1G)\n"
	"  -r, --read             read the file (the default; a missing file "
	"is\n"
	"                         written first)\n"
	"  -w, --write            write the file (created if missing, else\n"
	"                         overwritten in place and cut to SIZE after);\n"
	"                         -rw: both\n"
	"      --truncate         truncate before each write pass (the writes\n"
	"                         then allocate the file's pages anew)\n"
	"      --seed N           the data pattern's seed (default: one per\n"
	"                         run); reads of an existing file are then\n"
	"                         verified against it, as written by a run\n"
	"                         with the same seed\n"
	"      --server-pid PID   report the CPU time of this dafsd per GB "
	"moved\n"
	"      --register         register the buffers once (the default)\n"
	"      --no-register      pass unregistered buffers\n"
	"      --no-verify        do not check the data read back\n"
	"      --commit           commit written data to stable storage "
	"(timed)\n"
	"      --json             one JSON object per result line\n"
	"  -h, --help             show this text\n"
	"      --version          show the version\n"
	"\n"
	"URL/PATH is SCHEME://HOST[:PORT]/EXPORT/PATH and names a file.\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

struct opts {
	int depth;
	size_t bs[BLOCKS_MAX];
	int nbs;
	uint64_t size;
	bool size_given;
	bool do_read, do_write;
	long server_pid; /* 0: none */
	bool reg;
	bool verify;
	bool commit;
	bool truncate; /* --truncate: O_TRUNC at each write pass */
	bool seed_given; /* --seed: existing files hold its pattern */
	uint64_t seed;
	bool json;
	const char *url;
};

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_BUSY };

struct slot {
	enum slot_state state;
	char *buf;
	uint64_t off;
	size_t len, got;
};

struct bench {
	struct opts o;
	dafs_url_t url;
	dafs_session_t *s;
	dafs_session_info_t info;
	dafs_cg_t *cg;
	dafs_mem_t *mem;
	char *buf;
	size_t buflen;
	struct slot *slot;
	dafs_completion_t *comp;
	uint64_t seed;
	bool ours;   /* the file holds our pattern: reads can be verified */
	bool broken; /* completions can no longer be reaped */
};

struct result {
	uint64_t bytes;
	uint64_t ops;
	double seconds;
	double cpu; /* server CPU seconds, < 0 when not measured */
};

/* ---- arguments --------------------------------------------------------- */

/* "123", "4K", "16k", "1M", "2G": binary multiples. 0 is refused. */
static int parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	switch (toupper((unsigned char)*p)) {
	case 'K':
		mul = 1ull << 10;
		p++;
		break;
	case 'M':
		mul = 1ull << 20;
		p++;
		break;
	case 'G':
		mul = 1ull << 30;
		p++;
		break;
	case 'T':
		mul = 1ull << 40;
		p++;
		break;
	}
	if (*p || v == 0)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

static int parse_blocks(const char *list, struct opts *o)
{
	char *copy = strdup(list), *tok, *save = NULL;
	uint64_t v;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	o->nbs = 0;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (o->nbs == BLOCKS_MAX) {
			r = -E2BIG;
			break;
		}
		r = parse_size(tok, &v);
		/* a request length is 32 bits in a batch descriptor */
		if (r == 0 && v > UINT32_MAX)
			r = -ERANGE;
		if (r < 0)
			break;
		o->bs[o->nbs++] = (size_t)v;
	}
	if (r == 0 && o->nbs == 0)
		r = -EINVAL;
	free(copy);
	return r;
}

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("dafs-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'dafs-bench --help' for more information.\n", stderr);
	exit(EXIT_USAGE);
}

enum {
	OPT_SERVER_PID = 256,
	OPT_REGISTER,
	OPT_NO_REGISTER,
	OPT_NO_VERIFY,
	OPT_COMMIT,
	OPT_TRUNCATE,
	OPT_SEED,
	OPT_JSON,
	OPT_VERSION,
};

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"depth", required_argument, NULL, 'd'},
		{"block-sizes", required_argument, NULL, 'b'},
		{"size", required_argument, NULL, 's'},
		{"read", no_argument, NULL, 'r'},
		{"write", no_argument, NULL, 'w'},
		{"server-pid", required_argument, NULL, OPT_SERVER_PID},
		{"register", no_argument, NULL, OPT_REGISTER},
		{"no-register", no_argument, NULL, OPT_NO_REGISTER},
		{"no-verify", no_argument, NULL, OPT_NO_VERIFY},
		{"commit", no_argument, NULL, OPT_COMMIT},
		{"truncate", no_argument, NULL, OPT_TRUNCATE},
		{"seed", required_argument, NULL, OPT_SEED},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	const char *blocks = BLOCKS_DEFAULT;
	uint64_t v;
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->depth = DEPTH_DEFAULT;
	o->size = SIZE_DEFAULT;
	o->reg = true;
	o->verify = true;

	while ((c = getopt_long(argc, argv, "d:b:s:rwh", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'd':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || !isdigit((unsigned char)*optarg) ||
			    v < 1 || v > DEPTH_MAX)
				usage_error("invalid depth '%s' (1 to 1024)",
					    optarg);
			o->depth = (int)v;
			break;
		case 'b':
			blocks = optarg;
			break;
		case 's':
			if (parse_size(optarg, &o->size) < 0)
				usage_error("invalid size '%s'", optarg);
			o->size_given = true;
			break;
		case 'r':
			o->do_read = true;
			break;
		case 'w':
			o->do_write = true;
			break;
		case OPT_SERVER_PID:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || !isdigit((unsigned char)*optarg) ||
			    v < 1 || v > INT32_MAX)
				usage_error("invalid PID '%s'", optarg);
			o->server_pid = (long)v;
			break;
		case OPT_REGISTER:
			o->reg = true;
			break;
		case OPT_NO_REGISTER:
			o->reg = false;
			break;
		case OPT_NO_VERIFY:
			o->verify = false;
			break;
		case OPT_TRUNCATE:
			o->truncate = true;
			break;
		case OPT_SEED:
			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end)
				usage_error("bad --seed '%s'", optarg);
			o->seed_given = true;
			break;
		case OPT_COMMIT:
			o->commit = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case OPT_VERSION:
			printf("dafs-bench %s (protocol API %d.%d)\n",
			       DAFS_TOOLS_VERSION, DAFS_VERSION_MAJOR,
			       DAFS_VERSION_MINOR);
			exit(0);
		default:
			/* getopt has said what was wrong */
			fputs("Try 'dafs-bench --help' for more information.\n",
			      stderr);
			exit(EXIT_USAGE);
		}
	}
	if (parse_blocks(blocks, o) < 0)
		usage_error("invalid block size list '%s'", blocks);
	if (!o->do_read && !o->do_write)
		o->do_read = true;
	if (optind != argc - 1)
		usage_error("%s", optind < argc ? "too many operands"
						: "missing URL/PATH");
	o->url = argv[optind];
}

/* ---- measurement ------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * CPU seconds (user + system, all threads) of process @pid so far. The
 * command name in field 2 may hold spaces and parentheses: fields are
 * counted from the last ')'.
 */
static int proc_cpu(long pid, double *secs)
{
	char path[64], buf[4096], *p;
	unsigned long long utime, stime;
	long tck = sysconf(_SC_CLK_TCK);
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* after ')': state ppid pgrp session tty_nr tpgid flags minflt
	 * cminflt majflt cmajflt utime stime */
	if (!p ||
	    sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
		   "%llu",
		   &utime, &stime) != 2 ||
	    tck <= 0)
		return -EIO;
	*secs = (double)(utime + stime) / (double)tck;
	return 0;
}

/* ---- the data pattern -------------------------------------------------- */

static uint64_t pat_word(const struct bench *b, uint64_t off)
{
	return (off * 0x9e3779b97f4a7c15ull) ^ b->seed;
}

/*
 * Walk the pattern words overlapping the block [off, off + len) held in
 * @buf: store them (mode 'w'), store their complement so that a read that
 * places nothing cannot pass (mode 'p'), or check them (mode 'c'). A word
 * cut by the block's edges is handled bytewise, so blocks of any size agree
 * with a file written with another. Returns the first bad file offset in
 * *bad for mode 'c', and -EILSEQ.
 */
static int pattern(const struct bench *b, char *buf, uint64_t off, size_t len,
		   int mode, uint64_t *bad)
{
	uint64_t end = off + len, o, w;
	uint8_t bytes[PAT_WORD];
	size_t i;

	o = off - off % PAT_STRIDE;
	for (; o < end; o += PAT_STRIDE) {
		w = pat_word(b, o);
		if (mode == 'p')
			w = ~w;
		for (i = 0; i < PAT_WORD; i++)
			bytes[i] = (uint8_t)(w >> (8 * i));
		if (o >= off && o + PAT_WORD <= end) {
			char *at = buf + (o - off);

			if (mode != 'c')
				memcpy(at, bytes, PAT_WORD);
			else if (memcmp(at, bytes, PAT_WORD))
				goto mismatch;
			continue;
		}
		for (i = 0; i < PAT_WORD; i++) {
			if (o + i < off || o + i >= end)
				continue;
			if (mode != 'c')
				buf[o + i - off] = (char)bytes[i];
			else if ((uint8_t)buf[o + i - off] != bytes[i])
				goto mismatch;
		}
	}
	return 0;
mismatch:
	*bad = o < off ? off : o;
	return -EILSEQ;
}

/* ---- one pass ---------------------------------------------------------- */

static int submit(struct bench *b, dafs_file_t *f, struct slot *sl, bool write,
		  int *inflight)
{
	int r;

	if (write)
		r = dafs_write_async(f, sl->buf + sl->got, sl->len - sl->got,
				     sl->off + sl->got, b->mem, b->cg, sl);
	else
		r = dafs_read_async(f, sl->buf + sl->got, sl->len - sl->got,
				    sl->off + sl->got, b->mem, b->cg, sl);
	if (r == 0) {
		sl->state = SLOT_BUSY;
		(*inflight)++;
	} else if (r == -EAGAIN && *inflight == 0) {
		r = -EBUSY; /* no credits, and nothing of ours to wait for */
	}
	return r;
}

/*
 * Move [0, size) of @f in blocks of @bs with b->o.depth requests in flight.
 * On a verification failure, *bad holds the lowest bad offset among the
 * blocks read, and -EILSEQ is returned.
 */
static int pass(struct bench *b, dafs_file_t *f, bool write, size_t bs,
		uint64_t size, bool verify, bool fill, struct result *res,
		uint64_t *bad)
{
	uint64_t next = 0;
	int inflight = 0, stop = 0, err = 0, i, n, r;
	struct slot *sl;

	memset(res, 0, sizeof(*res));
	for (;;) {
		/* Give free slots the next blocks, then submit what is ready */
		for (i = 0; i < b->o.depth && !stop; i++) {
			sl = &b->slot[i];
			if (sl->state != SLOT_FREE || next >= size)
				continue;
			sl->off = next;
			sl->len = size - next < bs ? (size_t)(size - next) : bs;
			sl->got = 0;
			sl->state = SLOT_READY;
			next += sl->len;
			if (write && fill)
				pattern(b, sl->buf, sl->off, sl->len, 'w',
					NULL);
			else if (!write && verify)
				pattern(b, sl->buf, sl->off, sl->len, 'p',
					NULL);
		}
		for (i = 0; i < b->o.depth && !stop; i++) {
			sl = &b->slot[i];
			if (sl->state != SLOT_READY)
				continue;
			r = submit(b, f, sl, write, &inflight);
			if (r == -EAGAIN)
				break;
			if (r < 0) {
				err = r;
				stop = 1;
			}
		}
		if (inflight == 0)
			break;

		n = dafs_cg_wait(b->cg, b->comp, b->o.depth, -1);
		if (n < 0) {
			b->broken = true;
			return err ? err : n;
		}
		for (i = 0; i < n; i++) {
			dafs_completion_t *c = &b->comp[i];

			sl = c->ctx;
			inflight--;
			sl->state = SLOT_FREE;
			if (stop) {
				uint64_t o;

				/* completions come in any order: a block
				 * below the first bad one found may be bad
				 * too, and the lowest offset is reported */
				if (err == -EILSEQ && c->result > 0 &&
				    sl->got + (uint64_t)c->result == sl->len &&
				    pattern(b, sl->buf, sl->off, sl->len, 'c',
					    &o) == -EILSEQ &&
				    o < *bad)
					*bad = o;
				continue;
			}
			res->ops++;
			if (c->result < 0) {
				err = (int)c->result;
			} else if (c->result == 0 ||
				   (uint64_t)c->result > sl->len - sl->got) {
				/* end of file before its size, or too much */
				err = -EIO;
			} else {
				sl->got += (size_t)c->result;
				res->bytes += (uint64_t)c->result;
				if (sl->got < sl->len) {
					sl->state = SLOT_READY;
				} else if (!write && verify) {
					err = pattern(b, sl->buf, sl->off,
						      sl->len, 'c', bad);
				}
			}
			if (err)
				stop = 1;
		}
	}
	return err;
}

static int open_write(struct bench *b, dafs_file_t **f)
{
	char name[DAFS_NAME_MAX + 1];
	dafs_fh_t dir;
	int r;

	r = dtool_resolve_parent(b->s, b->url.path, &dir, name);
	if (r < 0)
		return r;
	if (!name[0])
		return -EISDIR;
	/* Overwritten in place by default, as a file in the server's page
	 * cache (what the reads measure too); --truncate drops its pages */
	return dafs_create(b->s, &dir, name,
			   O_WRONLY | (b->o.truncate ? O_TRUNC : 0), 0644, f,
			   NULL, NULL);
}

/* After an overwrite, the file is cut to the bytes written (it may have
 * been longer). */
static int cut_to(struct bench *b, dafs_file_t *f, uint64_t size)
{
	dafs_setattr_t sa = {.mask = DAFS_SET_SIZE, .size = size};

	return dafs_setattr(b->s, dafs_file_fh(f), &sa, NULL);
}

static int open_read(struct bench *b, dafs_file_t **f, uint64_t *size)
{
	dafs_fh_t fh;
	dafs_attr_t a;
	int r;

	r = dtool_resolve(b->s, b->url.path, DTOOL_FOLLOW, 0, &fh, &a);
	if (r < 0)
		return r;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	if (!S_ISREG(a.mode))
		return -EINVAL;
	*size = a.size;
	return dafs_open(b->s, &fh, O_RDONLY, f);
}

static int cpu_error(const struct bench *b, int err)
{
	fprintf(stderr, "dafs-bench: server CPU time: /proc/%ld/stat: %s\n",
		b->o.server_pid, strerror(-err));
	return err;
}

/*
 * One timed pass: move the data, (commit,) close; opening the file is not
 * timed, closing is (it may write back). The server's CPU time is sampled
 * just outside the timed region.
 */
static int timed_pass(struct bench *b, bool write, size_t bs, uint64_t *size,
		      bool fill, struct result *res)
{
	double cpu0 = 0, cpu1 = 0, t0, t1;
	dafs_file_t *f = NULL;
	uint64_t bad = 0;
	int r, rc;
	const char *what = write ? "write" : "read";

	r = write ? open_write(b, &f) : open_read(b, &f, size);
	if (r < 0) {
		fprintf(stderr, "dafs-bench: %s %s: %s\n", what, b->url.path,
			dafs_strerror(r));
		return r;
	}
	if (!write && *size == 0) {
		dafs_close(f);
		fprintf(stderr, "dafs-bench: read %s: the file is empty\n",
			b->url.path);
		return -EINVAL;
	}
	if (b->o.server_pid) {
		r = proc_cpu(b->o.server_pid, &cpu0);
		if (r < 0) {
			dafs_close(f);
			return cpu_error(b, r);
		}
	}
	t0 = now();
	r = pass(b, f, write, bs, *size, !write && b->ours && b->o.verify, fill,
		 res, &bad);
	if (r == 0 && write && b->o.commit)
		r = dafs_commit(f, 0);
	if (r == 0 && write && !b->o.truncate)
		r = cut_to(b, f, *size);
	if (b->broken) {
		/* the library may still own the buffers: do not touch f */
		fprintf(stderr, "dafs-bench: %s %s: %s\n", what, b->url.path,
			dafs_strerror(r));
		return r;
	}
	rc = dafs_close(f);
	if (r == 0)
		r = rc;
	t1 = now();
	if (r == -EILSEQ) {
		fprintf(stderr,
			"dafs-bench: read %s: block size %zu: data mismatch "
			"at offset %" PRIu64 ": the read path returned wrong "
			"data\n",
			b->url.path, bs, bad);
		return r;
	}
	if (r < 0) {
		fprintf(stderr, "dafs-bench: %s %s: block size %zu: %s\n", what,
			b->url.path, bs, dafs_strerror(r));
		return r;
	}
	res->seconds = t1 - t0;
	res->cpu = -1;
	if (b->o.server_pid) {
		r = proc_cpu(b->o.server_pid, &cpu1);
		if (r < 0)
			return cpu_error(b, r);
		res->cpu = cpu1 - cpu0;
	}
	return 0;
}

/* ---- output ------------------------------------------------------------ */

static void block_name(size_t bs, char *out, size_t size)
{
	if (bs >= (1u << 20) && bs % (1u << 20) == 0)
		snprintf(out, size, "%zuM", bs >> 20);
	else if (bs >= 1024 && bs % 1024 == 0)
		snprintf(out, size, "%zuK", bs >> 10);
	else
		snprintf(out, size, "%zu", bs);
}

static void report(const struct bench *b, bool write, size_t bs,
		   const struct result *res, bool verified)
{
	double secs = res->seconds > 0 ? res->seconds : 1e-9;
	double mbs = (double)res->bytes / 1e6 / secs;
	double ops = (double)res->ops / secs;
	double cpugb = -1;
	char name[32];

	if (res->cpu >= 0 && res->bytes > 0)
		cpugb = res->cpu / ((double)res->bytes / 1e9);

	if (b->o.json) {
		printf("{\"op\":\"%s\",\"block_size\":%zu,\"depth\":%d,"
		       "\"bytes\":%" PRIu64 ",\"ops\":%" PRIu64
		       ",\"seconds\":%.6f,\"mb_per_s\":%.3f,\"ops_per_s\":%.1f,"
		       "\"server_cpu_s\":",
		       write ? "write" : "read", bs, b->o.depth, res->bytes,
		       res->ops, res->seconds, mbs, ops);
		if (res->cpu >= 0)
			printf("%.3f,\"server_cpu_s_per_gb\":%.4f", res->cpu,
			       cpugb);
		else
			printf("null,\"server_cpu_s_per_gb\":null");
		printf(",\"registered\":%s,\"verified\":%s,"
		       "\"transport\":\"%s\"}\n",
		       b->mem ? "true" : "false", verified ? "true" : "false",
		       b->info.transport);
	} else {
		block_name(bs, name, sizeof(name));
		printf("%-6s %7s %10.2f %11.1f", write ? "write" : "read", name,
		       mbs, ops);
		if (res->cpu >= 0)
			printf(" %13.3f", cpugb);
		else
			printf(" %13s", "-");
		printf("%s\n", write ? "" : (verified ? "  verified" : ""));
	}
	fflush(stdout);
}

/* ---- main -------------------------------------------------------------- */

static int setup(struct bench *b)
{
	size_t maxbs = 0, pg = (size_t)sysconf(_SC_PAGESIZE);
	int i, r;

	r = dafs_url_parse(b->o.url, &b->url);
	if (r < 0) {
		fprintf(stderr, "dafs-bench: %s: %s\n", b->o.url,
			dafs_strerror(r));
		return EXIT_USAGE;
	}
	if (!b->url.path[0]) {
		fprintf(stderr,
			"dafs-bench: %s: name a file after the export\n",
			b->o.url);
		return EXIT_USAGE;
	}
	if (b->o.server_pid) {
		double cpu;

		r = proc_cpu(b->o.server_pid, &cpu);
		if (r < 0) {
			cpu_error(b, r);
			return EXIT_USAGE;
		}
	}
	r = dafs_session_open(b->o.url, NULL, &b->s);
	if (r < 0) {
		fprintf(stderr, "dafs-bench: connect to %s://%s:%u/%s: %s\n",
			b->url.scheme, b->url.host, b->url.port, b->url.export_,
			dafs_strerror(r));
		return EXIT_FAIL;
	}
	r = dafs_session_query(b->s, &b->info);
	if (r < 0) {
		fprintf(stderr, "dafs-bench: session query: %s\n",
			dafs_strerror(r));
		return EXIT_FAIL;
	}
	for (i = 0; i < b->o.nbs; i++) {
		if (b->info.max_io && b->o.bs[i] > b->info.max_io) {
			fprintf(stderr,
				"dafs-bench: block size %zu exceeds the "
				"session's largest I/O (%" PRIu32 ")\n",
				b->o.bs[i], b->info.max_io);
			return EXIT_USAGE;
		}
		if (b->o.bs[i] > maxbs)
			maxbs = b->o.bs[i];
	}

	b->buflen = (size_t)b->o.depth * ((maxbs + pg - 1) / pg * pg);
	r = posix_memalign((void **)&b->buf, pg, b->buflen);
	if (r) {
		fprintf(stderr, "dafs-bench: %zu bytes of buffers: %s\n",
			b->buflen, strerror(r));
		b->buf = NULL;
		return EXIT_FAIL;
	}
	/* touch every page now, not inside the first timed pass */
	memset(b->buf, 0, b->buflen);
	b->slot = calloc((size_t)b->o.depth, sizeof(*b->slot));
	b->comp = calloc((size_t)b->o.depth, sizeof(*b->comp));
	if (!b->slot || !b->comp) {
		fprintf(stderr, "dafs-bench: %s\n", strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (i = 0; i < b->o.depth; i++)
		b->slot[i].buf = b->buf + (size_t)i * (b->buflen / b->o.depth);

	r = dafs_cg_new(b->s, &b->cg);
	if (r < 0) {
		fprintf(stderr, "dafs-bench: completion group: %s\n",
			dafs_strerror(r));
		return EXIT_FAIL;
	}
	if (b->o.reg) {
		r = dafs_mem_register(b->s, b->buf, b->buflen, &b->mem);
		if (r < 0) {
			fprintf(stderr,
				"dafs-bench: registering %zu bytes: %s "
				"(try --no-register)\n",
				b->buflen, dafs_strerror(r));
			b->mem = NULL;
			return EXIT_FAIL;
		}
	}
	return 0;
}

static void teardown(struct bench *b)
{
	/*
	 * After a failure to reap, the library may still write into the
	 * buffers: close the session first, and leave them to the exit.
	 */
	if (!b->broken) {
		if (b->cg)
			dafs_cg_free(b->cg);
		if (b->mem)
			dafs_mem_deregister(b->mem);
	}
	if (b->s)
		dafs_session_close(b->s);
	if (!b->broken)
		free(b->buf);
	free(b->slot);
	free(b->comp);
}

/*
 * Reading only: an existing file is read as it is; a missing one is
 * written first (untimed, unreported), and then its reads are verified.
 */
static int prepare_read(struct bench *b)
{
	struct result res;
	uint64_t size = b->o.size;
	size_t largest = 0;
	dafs_fh_t fh;
	dafs_attr_t a;
	int i, r;

	r = dtool_resolve(b->s, b->url.path, DTOOL_FOLLOW, 0, &fh, &a);
	if (r == -ENOENT) {
		for (i = 0; i < b->o.nbs; i++)
			if (b->o.bs[i] > largest)
				largest = b->o.bs[i];
		if (!b->o.json)
			fprintf(stderr,
				"dafs-bench: %s does not exist: writing "
				"%" PRIu64 " bytes first\n",
				b->url.path, size);
		r = timed_pass(b, true, largest, &size, true, &res);
		if (r == 0)
			b->ours = true;
		return r;
	}
	if (r == 0 && !S_ISREG(a.mode))
		r = S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
	if (r < 0) {
		fprintf(stderr, "dafs-bench: read %s: %s\n", b->url.path,
			dafs_strerror(r));
		return r;
	}
	/* the caller says an earlier run with this seed wrote it */
	if (b->o.seed_given)
		b->ours = true;
	if (b->o.size_given && a.size != b->o.size && !b->o.json)
		fprintf(stderr,
			"dafs-bench: %s exists: reading its %" PRIu64
			" bytes (-s applies to files the bench writes)\n",
			b->url.path, a.size);
	return 0;
}

static int run(struct bench *b)
{
	struct result res;
	uint64_t size = b->o.size;
	int i, r;

	if (!b->o.do_write) {
		r = prepare_read(b);
		if (r < 0)
			return EXIT_FAIL;
	}

	if (!b->o.json) {
		printf("# %s: depth %d, %s buffers, transport %s, max_io "
		       "%" PRIu32 "\n",
		       b->o.url, b->o.depth,
		       b->mem ? "registered" : "unregistered",
		       b->info.transport, b->info.max_io);
		printf("%-6s %7s %10s %11s %13s\n", "op", "block", "MB/s",
		       "ops/s", "srv-cpu-s/GB");
		fflush(stdout);
	}
	for (i = 0; i < b->o.nbs; i++) {
		if (b->o.do_write) {
			size = b->o.size;
			r = timed_pass(b, true, b->o.bs[i], &size, true, &res);
			if (r < 0)
				return EXIT_FAIL;
			b->ours = true;
			report(b, true, b->o.bs[i], &res, false);
		}
		if (b->o.do_read) {
			r = timed_pass(b, false, b->o.bs[i], &size, false,
				       &res);
			if (r < 0)
				return EXIT_FAIL;
			report(b, false, b->o.bs[i], &res,
			       b->ours && b->o.verify);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b;
	int status;

	memset(&b, 0, sizeof(b));
	parse_args(argc, argv, &b.o);
	b.seed = b.o.seed_given
			 ? b.o.seed
			 : ((uint64_t)time(NULL) << 32) ^ (uint64_t)getpid() ^
				   0x5bd1e995a5a5a5a5ull;

	status = setup(&b);
	if (status == 0)
		status = run(&b);
	teardown(&b);
	if (fflush(stdout) == EOF && !status) {
		fprintf(stderr, "dafs-bench: write error: %s\n",
			strerror(errno));
		status = EXIT_FAIL;
	}
	return status;
}
