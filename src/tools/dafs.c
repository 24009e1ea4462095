/*
 * dafs.c - a scriptable command-line client for DAFS exports.
 *
 *	dafs ls [-l] URL        dafs mkdir [-p] URL     dafs mv URL NEWURL
 *	dafs stat URL           dafs rm [-r] URL        dafs ln -s TARGET URL
 *	dafs get URL [FILE|-]   dafs rmdir URL          dafs ln URL NEWURL
 *	dafs put FILE|- URL     dafs cat URL...
 *
 * Every command opens one session, resolves its paths on the client (see
 * resolve.c), does its work through the public API only, and exits 0 on
 * success, 1 when an operation failed and 2 on a usage error. Failures are
 * reported on one line: "dafs: OP PATH: REASON".
 *
 * get and put move data in chunks of the session's max_io through one
 * registered buffer, keeping a few asynchronous requests in flight; get
 * writes the chunks out in file order whatever order they complete in.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
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

/* Requests kept in flight by get and put. */
#define XFER_DEPTH 4
/* Chunk size when the session reports no max_io. */
#define XFER_CHUNK_DEFAULT (64u * 1024)

static const char usage_text[] =
	"usage: dafs COMMAND [OPTIONS] ARGS\n"
	"\n"
	"  ls [-l] URL             list a directory (sorted), or name a file\n"
	"  stat URL                show a file's attributes (symlinks not "
	"followed)\n"
	"  get URL [FILE|-]        copy a remote file to FILE (default: its "
	"name)\n"
	"  cat URL...              copy remote files to standard output\n"
	"  put FILE|- URL          create or truncate a remote file from FILE\n"
	"  mkdir [-p] URL          create a directory (-p: with parents, no "
	"error\n"
	"                          if it exists)\n"
	"  rm [-r] URL             remove a file (-r: directories too, "
	"recursively)\n"
	"  rmdir URL               remove an empty directory\n"
	"  mv URL NEWURL           rename within one export\n"
	"  ln -s TARGET URL        create a symbolic link to TARGET\n"
	"  ln URL NEWURL           create a hard link within one export\n"
	"\n"
	"  --help                  show this text\n"
	"  --version               show the version\n"
	"\n"
	"URL is SCHEME://HOST[:PORT]/EXPORT[/PATH], SCHEME tcp or rdma, "
	"PORT 4820\n"
	"by default. Exit status: 0 success, 1 an operation failed, "
	"2 usage error.\n";

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("dafs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'dafs --help' for more information.\n", stderr);
}

/* Remote paths are shown as the URL spells them, the root as "/". */
static const char *shown(const char *path)
{
	return path[0] ? path : "/";
}

static int fail(const char *op, const char *path, int err)
{
	fprintf(stderr, "dafs: %s %s: %s\n", op, path, dafs_strerror(err));
	return EXIT_FAIL;
}

/* The same for a file on this machine, so it is not taken for a remote
 * path. */
static int fail_local(const char *op, const char *path, int err)
{
	fprintf(stderr, "dafs: %s: local file %s: %s\n", op, path,
		strerror(-err));
	return EXIT_FAIL;
}

/* One session on the export a URL names, and the URL's parts. */
struct conn {
	dafs_url_t url;
	dafs_session_t *s;
};

/* Returns 0, or the exit status after reporting the failure. */
static int conn_open(struct conn *c, const char *op, const char *url)
{
	int r;

	c->s = NULL;
	r = dafs_url_parse(url, &c->url);
	if (r < 0) {
		fprintf(stderr, "dafs: %s %s: %s\n", op, url, dafs_strerror(r));
		return EXIT_USAGE;
	}
	r = dafs_session_open(url, NULL, &c->s);
	if (r < 0) {
		fprintf(stderr, "dafs: %s: connect to %s://%s:%u/%s: %s\n", op,
			c->url.scheme, c->url.host, c->url.port, c->url.export_,
			dafs_strerror(r));
		return EXIT_FAIL;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->s)
		dafs_session_close(c->s);
	c->s = NULL;
}

static int same_export(const dafs_url_t *a, const dafs_url_t *b)
{
	return !strcmp(a->scheme, b->scheme) && !strcmp(a->host, b->host) &&
	       a->port == b->port && !strcmp(a->export_, b->export_);
}

static mode_t current_umask(void)
{
	mode_t m = umask(022);

	umask(m);
	return m;
}

/*
 * Command-line parsing shared by the commands: getopt over the command's
 * own arguments, with --help understood everywhere. Options take no
 * arguments; set[i] is raised for the option optstr[i].
 */
static int parse_opts(int argc, char **argv, const char *optstr, int *set)
{
	static const struct option longopts[] = {
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *hit;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, optstr, longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage_text, stdout);
			exit(0);
		}
		hit = c != '?' && c != ':' ? strchr(optstr, c) : NULL;
		if (!hit) {
			if (optopt)
				fprintf(stderr,
					"dafs: %s: invalid option -- '%c'\n",
					argv[0], optopt);
			else
				fprintf(stderr,
					"dafs: %s: invalid option '%s'\n",
					argv[0], argv[optind - 1]);
			fputs("Try 'dafs --help' for more information.\n",
			      stderr);
			exit(EXIT_USAGE);
		}
		set[hit - optstr] = 1;
	}
	return optind;
}

static int want_args(int argc, int first, int min, int max, const char *cmd)
{
	int n = argc - first;

	if (n < min || n > max) {
		usage_error(n < min ? "%s: missing operand"
				    : "%s: too many operands",
			    cmd);
		return EXIT_USAGE;
	}
	return 0;
}

/* ---- local file helpers ---------------------------------------------- */

static int write_full(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Fill @buf from @fd unless end of file comes first; returns the count. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, buf + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The last component of a local path, trailing slashes ignored. */
static char *local_basename(const char *path)
{
	size_t len = strlen(path), start;

	while (len > 1 && path[len - 1] == '/')
		len--;
	start = len;
	while (start > 0 && path[start - 1] != '/')
		start--;
	return strndup(path + start, len - start);
}

/* ---- pipelined transfers ---------------------------------------------- */

enum slot_state {
	SLOT_FREE,
	SLOT_READY, /* holds a request to submit */
	SLOT_BUSY,  /* submitted, completion pending */
	SLOT_DONE,  /* completion reaped */
};

struct slot {
	enum slot_state state;
	char *buf;
	uint64_t off;	/* file offset of buf[0] */
	size_t len;	/* bytes this slot moves */
	size_t got;	/* bytes moved so far */
	int64_t result; /* of the last completion */
};

struct xfer {
	dafs_session_t *s;
	dafs_file_t *f;
	dafs_cg_t *cg;
	dafs_mem_t *mem; /* NULL when registration was refused */
	char *buf;
	size_t chunk;
	int depth;
	int inflight;
	int broken; /* completions can no longer be reaped */
	struct slot slot[XFER_DEPTH];
};

static int xfer_init(struct xfer *x, dafs_session_t *s, dafs_file_t *f)
{
	dafs_session_info_t info;
	size_t total;
	int i, r;

	memset(x, 0, sizeof(*x));
	x->s = s;
	x->f = f;
	r = dafs_session_query(s, &info);
	if (r < 0)
		return r;
	x->chunk = info.max_io ? info.max_io : XFER_CHUNK_DEFAULT;
	x->depth = XFER_DEPTH;
	if (info.credits && info.credits < (uint32_t)x->depth)
		x->depth = (int)info.credits;

	total = x->chunk * (size_t)x->depth;
	r = posix_memalign((void **)&x->buf, (size_t)sysconf(_SC_PAGESIZE),
			   total);
	if (r)
		return -r;
	r = dafs_cg_new(s, &x->cg);
	if (r < 0) {
		free(x->buf);
		return r;
	}
	/* Unregistered buffers work too, only slower: not worth failing. */
	if (dafs_mem_register(s, x->buf, total, &x->mem) < 0)
		x->mem = NULL;
	for (i = 0; i < x->depth; i++)
		x->slot[i].buf = x->buf + (size_t)i * x->chunk;
	return 0;
}

static int xfer_reap(struct xfer *x)
{
	dafs_completion_t c[XFER_DEPTH];
	struct slot *sl;
	int n, i;

	n = dafs_cg_wait(x->cg, c, XFER_DEPTH, -1);
	if (n < 0) {
		x->broken = 1;
		return n;
	}
	for (i = 0; i < n; i++) {
		sl = c[i].ctx;
		sl->state = SLOT_DONE;
		sl->result = c[i].result;
		x->inflight--;
	}
	return 0;
}

/*
 * Wait for what is still in flight, then release everything. A buffer that
 * the library may still write into is never freed: if completions cannot be
 * reaped, it is left for the process exit, after the session is closed.
 */
static void xfer_fini(struct xfer *x)
{
	while (x->inflight > 0 && !x->broken)
		xfer_reap(x);
	if (x->broken)
		return;
	dafs_cg_free(x->cg);
	if (x->mem)
		dafs_mem_deregister(x->mem);
	free(x->buf);
}

static int xfer_submit(struct xfer *x, struct slot *sl, int write)
{
	int r;

	if (write)
		r = dafs_write_async(x->f, sl->buf + sl->got, sl->len - sl->got,
				     sl->off + sl->got, x->mem, x->cg, sl);
	else
		r = dafs_read_async(x->f, sl->buf + sl->got, sl->len - sl->got,
				    sl->off + sl->got, x->mem, x->cg, sl);
	if (r == 0) {
		sl->state = SLOT_BUSY;
		x->inflight++;
	} else if (r == -EAGAIN && x->inflight == 0) {
		/* out of credits with nothing of ours to wait for */
		r = -EBUSY;
	}
	return r;
}

/*
 * Read @size bytes of the open file into @fd, in file order. A short read
 * before @size is retried for the rest; a read of 0 means the file shrank
 * and ends the copy there.
 *
 * Returns 0 or a negative error; *local is set when the error is @fd's.
 */
static int get_stream(struct xfer *x, uint64_t size, int fd, int *local)
{
	uint64_t next = 0;
	struct slot *sl;
	int head = 0, n = 0, stop = 0, err = 0, k, r;

	*local = 0;
	for (;;) {
		while (!stop && n < x->depth && next < size) {
			sl = &x->slot[(head + n) % x->depth];
			sl->off = next;
			sl->len = size - next < x->chunk ? (size_t)(size - next)
							 : x->chunk;
			sl->got = 0;
			sl->state = SLOT_READY;
			next += sl->len;
			n++;
		}
		for (k = 0; k < n && !stop; k++) {
			sl = &x->slot[(head + k) % x->depth];
			if (sl->state != SLOT_READY)
				continue;
			r = xfer_submit(x, sl, 0);
			if (r == -EAGAIN)
				break;
			if (r < 0) {
				err = r;
				stop = 1;
			}
		}
		if (x->inflight == 0)
			break;
		r = xfer_reap(x);
		if (r < 0)
			return err ? err : r;

		while (n > 0 && x->slot[head].state == SLOT_DONE) {
			sl = &x->slot[head];
			if (!stop && sl->result < 0) {
				err = (int)sl->result;
				stop = 1;
			} else if (!stop &&
				   (uint64_t)sl->result > sl->len - sl->got) {
				err = -EIO; /* more than asked for */
				stop = 1;
			} else if (!stop) {
				sl->got += (size_t)sl->result;
				if (sl->result > 0 && sl->got < sl->len) {
					sl->state = SLOT_READY;
					break;
				}
				r = write_full(fd, sl->buf, sl->got);
				if (r < 0) {
					err = r;
					*local = 1;
					stop = 1;
				} else if (sl->got < sl->len) {
					stop = 1; /* end of file came early */
				}
			}
			sl->state = SLOT_FREE;
			head = (head + 1) % x->depth;
			n--;
		}
	}
	return err;
}

/*
 * Write everything @fd holds to the open file from offset 0. Completions
 * may come in any order; a short write is resubmitted for the rest.
 */
static int put_stream(struct xfer *x, int fd, int *local)
{
	uint64_t off = 0;
	struct slot *sl;
	int eof = 0, stop = 0, err = 0, i, r;
	ssize_t got;

	*local = 0;
	for (;;) {
		for (i = 0; i < x->depth && !eof && !stop; i++) {
			sl = &x->slot[i];
			if (sl->state != SLOT_FREE)
				continue;
			got = read_full(fd, sl->buf, x->chunk);
			if (got < 0) {
				err = (int)got;
				*local = 1;
				stop = 1;
				break;
			}
			if ((size_t)got < x->chunk)
				eof = 1;
			if (got == 0)
				break;
			sl->off = off;
			sl->len = (size_t)got;
			sl->got = 0;
			sl->state = SLOT_READY;
			off += (uint64_t)got;
		}
		for (i = 0; i < x->depth && !stop; i++) {
			sl = &x->slot[i];
			if (sl->state != SLOT_READY)
				continue;
			r = xfer_submit(x, sl, 1);
			if (r == -EAGAIN)
				break;
			if (r < 0) {
				err = r;
				stop = 1;
			}
		}
		if (x->inflight == 0)
			break;
		r = xfer_reap(x);
		if (r < 0)
			return err ? err : r;
		for (i = 0; i < x->depth; i++) {
			sl = &x->slot[i];
			if (sl->state != SLOT_DONE)
				continue;
			sl->state = SLOT_FREE;
			if (stop)
				continue;
			if (sl->result < 0) {
				err = (int)sl->result;
				stop = 1;
			} else if (sl->result == 0 ||
				   (uint64_t)sl->result > sl->len - sl->got) {
				err = -EIO; /* no progress, or too much */
				stop = 1;
			} else {
				sl->got += (size_t)sl->result;
				if (sl->got < sl->len)
					sl->state = SLOT_READY;
			}
		}
	}
	return err;
}

/* ---- ls ---------------------------------------------------------------- */

struct entry {
	char *name;
	int has_attr;
	dafs_attr_t attr;
	dafs_fh_t fh;
};

struct listing {
	struct entry *v;
	size_t n, cap;
	int err;
};

static int collect(void *arg, const dafs_dirent_t *de)
{
	struct listing *l = arg;
	struct entry *e;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;

		e = realloc(l->v, cap * sizeof(*e));
		if (!e) {
			l->err = -ENOMEM;
			return 1;
		}
		l->v = e;
		l->cap = cap;
	}
	e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	e->name = strdup(de->name);
	if (!e->name) {
		l->err = -ENOMEM;
		return 1;
	}
	if (de->attr && de->fh) {
		e->attr = *de->attr;
		e->fh = *de->fh;
		e->has_attr = 1;
	} else {
		/* without attributes, the type is all there is */
		e->attr.mode = de->type;
	}
	l->n++;
	return 0;
}

static void listing_free(struct listing *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

/* Read a whole directory, resuming from each round trip's cookie. */
static int read_dir(dafs_session_t *s, const dafs_fh_t *dir, int plus,
		    struct listing *l)
{
	uint64_t cookie = 0, prev;
	int eof = 0, r;

	memset(l, 0, sizeof(*l));
	while (!eof) {
		prev = cookie;
		r = dafs_readdir(s, dir, &cookie, plus, collect, l, &eof);
		if (l->err)
			return l->err;
		if (r < 0)
			return r;
		/* a server that neither moves nor ends would loop forever */
		if (r == 0 && !eof && cookie == prev)
			return -EIO;
	}
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name,
		      ((const struct entry *)b)->name);
}

static void mode_string(uint32_t mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";
	int i;

	switch (mode & S_IFMT) {
	case S_IFDIR:
		out[0] = 'd';
		break;
	case S_IFLNK:
		out[0] = 'l';
		break;
	case S_IFCHR:
		out[0] = 'c';
		break;
	case S_IFBLK:
		out[0] = 'b';
		break;
	case S_IFIFO:
		out[0] = 'p';
		break;
	case S_IFSOCK:
		out[0] = 's';
		break;
	case S_IFREG:
		out[0] = '-';
		break;
	default:
		out[0] = '?';
	}
	for (i = 0; i < 9; i++)
		out[i + 1] = (mode & (0400u >> i)) ? rwx[i] : '-';
	if (mode & S_ISUID)
		out[3] = (mode & S_IXUSR) ? 's' : 'S';
	if (mode & S_ISGID)
		out[6] = (mode & S_IXGRP) ? 's' : 'S';
	if (mode & S_ISVTX)
		out[9] = (mode & S_IXOTH) ? 't' : 'T';
	out[10] = '\0';
}

static void format_time(const dafs_time_t *t, char *buf, size_t size,
			int precise)
{
	time_t sec = (time_t)t->sec;
	struct tm tm;
	size_t n;

	if (!localtime_r(&sec, &tm)) {
		snprintf(buf, size, "%" PRId64, t->sec);
		return;
	}
	n = strftime(buf, size,
		     precise ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M", &tm);
	if (precise && n)
		snprintf(buf + n, size - n, ".%09u", t->nsec);
}

static int digits(uint64_t v)
{
	int n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

struct widths {
	int nlink, uid, gid, size;
};

static void widen(struct widths *w, const dafs_attr_t *a)
{
	int d;

	if ((d = digits(a->nlink)) > w->nlink)
		w->nlink = d;
	if ((d = digits(a->uid)) > w->uid)
		w->uid = d;
	if ((d = digits(a->gid)) > w->gid)
		w->gid = d;
	if ((d = digits(a->size)) > w->size)
		w->size = d;
}

/* One "ls -l" line; the symlink target is read through @fh. */
static int long_line(dafs_session_t *s, const char *name, const dafs_fh_t *fh,
		     const dafs_attr_t *a, const struct widths *w)
{
	char mode[11], when[32], target[DAFS_PATH_MAX + 1];
	int r;

	mode_string(a->mode, mode);
	format_time(&a->mtime, when, sizeof(when), 0);
	printf("%s %*" PRIu32 " %*" PRIu32 " %*" PRIu32 " %*" PRIu64 " %s %s",
	       mode, w->nlink, a->nlink, w->uid, a->uid, w->gid, a->gid,
	       w->size, a->size, when, name);
	if (S_ISLNK(a->mode)) {
		r = dafs_readlink(s, fh, target, sizeof(target));
		if (r < 0) {
			putchar('\n');
			return r;
		}
		printf(" -> %s", target);
	}
	putchar('\n');
	return 0;
}

static int flush_stdout(const char *op)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno == EPIPE)
			return EXIT_FAIL;
		fprintf(stderr, "dafs: %s: write error: %s\n", op,
			strerror(errno));
		return EXIT_FAIL;
	}
	return 0;
}

static int ls_dir(struct conn *c, const dafs_fh_t *dir, int lng)
{
	const char *path = shown(c->url.path);
	struct listing l;
	struct widths w = {0};
	size_t i;
	int r, status = 0;

	r = read_dir(c->s, dir, lng, &l);
	if (r < 0) {
		listing_free(&l);
		return fail("ls", path, r);
	}
	qsort(l.v, l.n, sizeof(*l.v), by_name);

	if (lng) {
		/* a server may leave out attributes: fetch them by name */
		for (i = 0; i < l.n; i++) {
			struct entry *e = &l.v[i];

			if (!e->has_attr) {
				r = dafs_lookup(c->s, dir, e->name, &e->fh,
						&e->attr);
				if (r < 0) {
					fprintf(stderr, "dafs: ls %s/%s: %s\n",
						c->url.path, e->name,
						dafs_strerror(r));
					status = EXIT_FAIL;
					continue;
				}
				e->has_attr = 1;
			}
			widen(&w, &e->attr);
		}
	}
	for (i = 0; i < l.n; i++) {
		struct entry *e = &l.v[i];

		if (!lng) {
			puts(e->name);
			continue;
		}
		if (!e->has_attr)
			continue;
		r = long_line(c->s, e->name, &e->fh, &e->attr, &w);
		if (r < 0) {
			fprintf(stderr, "dafs: ls %s/%s: %s\n", c->url.path,
				e->name, dafs_strerror(r));
			status = EXIT_FAIL;
		}
	}
	listing_free(&l);
	return status;
}

static int cmd_ls(int argc, char **argv)
{
	int set[1] = {0}, first, r, status;
	struct conn c;
	dafs_fh_t fh;
	dafs_attr_t a;
	struct widths w = {0};

	first = parse_opts(argc, argv, "l", set);
	if ((r = want_args(argc, first, 1, 1, "ls")))
		return r;
	if ((r = conn_open(&c, "ls", argv[first])))
		return r;

	/* Like ls(1): -l shows a symlink itself, plain ls follows it. */
	r = dtool_resolve(c.s, c.url.path, set[0] ? 0 : DTOOL_FOLLOW, 0, &fh,
			  &a);
	if (r < 0) {
		status = fail("ls", shown(c.url.path), r);
	} else if (S_ISDIR(a.mode)) {
		status = ls_dir(&c, &fh, set[0]);
	} else if (!set[0]) {
		puts(dtool_basename(c.url.path));
		status = 0;
	} else {
		widen(&w, &a);
		r = long_line(c.s, dtool_basename(c.url.path), &fh, &a, &w);
		status = r < 0 ? fail("ls", shown(c.url.path), r) : 0;
	}
	conn_close(&c);
	return flush_stdout("ls") ? EXIT_FAIL : status;
}

/* ---- stat -------------------------------------------------------------- */

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "regular file";
	case S_IFDIR:
		return "directory";
	case S_IFLNK:
		return "symbolic link";
	case S_IFCHR:
		return "character device";
	case S_IFBLK:
		return "block device";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	}
	return "unknown";
}

static int cmd_stat(int argc, char **argv)
{
	char mode[11], t[64], target[DAFS_PATH_MAX + 1];
	int set[1] = {0}, first, r, status = 0;
	struct conn c;
	dafs_fh_t fh;
	dafs_attr_t a;
	unsigned int i;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 1, 1, "stat")))
		return r;
	if ((r = conn_open(&c, "stat", argv[first])))
		return r;

	r = dtool_resolve(c.s, c.url.path, 0, 0, &fh, &a);
	if (r < 0) {
		status = fail("stat", shown(c.url.path), r);
		goto out;
	}
	mode_string(a.mode, mode);
	printf("path: %s\n", shown(c.url.path));
	printf("type: %s\n", type_name(a.mode));
	if (S_ISLNK(a.mode)) {
		r = dafs_readlink(c.s, &fh, target, sizeof(target));
		if (r < 0) {
			status = fail("stat", shown(c.url.path), r);
			goto out;
		}
		printf("target: %s\n", target);
	}
	printf("mode: %04o %s\n", a.mode & 07777, mode);
	printf("size: %" PRIu64 "\n", a.size);
	printf("blocks: %" PRIu64 "\n", a.blocks);
	printf("blksize: %" PRIu32 "\n", a.blksize);
	printf("nlink: %" PRIu32 "\n", a.nlink);
	printf("uid: %" PRIu32 "\n", a.uid);
	printf("gid: %" PRIu32 "\n", a.gid);
	printf("ino: %" PRIu64 "\n", a.ino);
	if (S_ISCHR(a.mode) || S_ISBLK(a.mode))
		printf("rdev: %" PRIu64 "\n", a.rdev);
	format_time(&a.atime, t, sizeof(t), 1);
	printf("atime: %s\n", t);
	format_time(&a.mtime, t, sizeof(t), 1);
	printf("mtime: %s\n", t);
	format_time(&a.ctime, t, sizeof(t), 1);
	printf("ctime: %s\n", t);
	printf("change: %" PRIu64 "\n", a.change);
	printf("handle: ");
	for (i = 0; i < fh.len && i < DAFS_FH_MAX; i++)
		printf("%02x", fh.data[i]);
	putchar('\n');
out:
	conn_close(&c);
	return flush_stdout("stat") ? EXIT_FAIL : status;
}

/* ---- get, cat ---------------------------------------------------------- */

/*
 * Open the local file a get writes to. An existing directory receives the
 * file under its remote name; *lpath is replaced by the joined name.
 */
static int open_local_out(char **lpath, const char *remote)
{
	struct stat st;
	char *joined;
	int fd;

	if (stat(*lpath, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (asprintf(&joined, "%s/%s", *lpath, dtool_basename(remote)) <
		    0)
			return -ENOMEM;
		free(*lpath);
		*lpath = joined;
	}
	fd = open(*lpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	return fd < 0 ? -errno : fd;
}

/*
 * Copy the remote file @c names to the local file *@lpath, or to standard
 * output when @lpath is NULL. Returns an exit status.
 */
static int copy_out(struct conn *c, const char *op, char **lpath)
{
	const char *path = shown(c->url.path), *lname = "stdout";
	dafs_file_t *f = NULL;
	struct xfer x;
	dafs_fh_t fh;
	dafs_attr_t a;
	int r, fd = STDOUT_FILENO, local = 0, status = 0;

	r = dtool_resolve(c->s, c->url.path, DTOOL_FOLLOW, 0, &fh, &a);
	if (r == 0 && S_ISDIR(a.mode))
		r = -EISDIR;
	if (r == 0)
		r = dafs_open(c->s, &fh, O_RDONLY, &f);
	if (r < 0)
		return fail(op, path, r);

	/* Only now that the remote file is open: do not clobber for nothing */
	if (lpath) {
		fd = open_local_out(lpath, c->url.path);
		lname = *lpath;
		if (fd < 0) {
			dafs_close(f);
			return fail_local(op, lname, fd);
		}
	}

	r = xfer_init(&x, c->s, f);
	if (r < 0) {
		dafs_close(f);
		if (lpath)
			close(fd);
		return fail(op, path, r);
	}
	r = get_stream(&x, a.size, fd, &local);
	xfer_fini(&x);
	if (r < 0) {
		/* a reader that went away is not worth a message */
		if (local && r == -EPIPE)
			status = EXIT_FAIL;
		else if (local)
			status = fail_local(op, lname, r);
		else
			status = fail(op, path, r);
	}
	if (!x.broken) {
		r = dafs_close(f);
		if (r < 0 && !status)
			status = fail(op, path, r);
	}
	if (lpath && close(fd) < 0 && !status)
		status = fail_local(op, lname, -errno);
	return status;
}

static int cmd_get(int argc, char **argv)
{
	int set[1] = {0}, first, r;
	char *lpath;
	struct conn c;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 1, 2, "get")))
		return r;
	if ((r = conn_open(&c, "get", argv[first])))
		return r;

	if (argc - first == 2 && !strcmp(argv[first + 1], "-")) {
		r = copy_out(&c, "get", NULL);
	} else {
		lpath = strdup(argc - first == 2 ? argv[first + 1]
						 : dtool_basename(c.url.path));
		if (!lpath)
			r = fail("get", shown(c.url.path), -ENOMEM);
		else
			r = copy_out(&c, "get", &lpath);
		free(lpath);
	}
	conn_close(&c);
	return r;
}

static int cmd_cat(int argc, char **argv)
{
	int set[1] = {0}, first, i, r, status = 0;
	struct conn c;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 1, INT_MAX, "cat")))
		return r;
	for (i = first; i < argc; i++) {
		if ((r = conn_open(&c, "cat", argv[i]))) {
			status = status ? status : r;
			continue;
		}
		r = copy_out(&c, "cat", NULL);
		conn_close(&c);
		if (r)
			status = status ? status : r;
	}
	return status;
}

/* ---- put --------------------------------------------------------------- */

/*
 * Open the remote file a put writes to, creating or truncating it. The URL
 * may name a file (created with @mode if missing), an existing directory
 * (the file goes in it under @base; NULL for stdin), or a symlink to
 * either, which the server does not follow for us. With @into_dir (the URL
 * ended in '/', which the parser drops) it must name a directory.
 */
static int put_open(struct conn *c, const char *base, uint32_t mode,
		    int into_dir, dafs_file_t **f)
{
	char name[DAFS_NAME_MAX + 1];
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	int r, cr;

	if (into_dir) {
		/* as for cp(1): "dir/" is never a new file named "dir" */
		r = dtool_resolve(c->s, c->url.path, DTOOL_FOLLOW, 0, &dir, &a);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		name[0] = '\0';
	} else {
		r = dtool_resolve_parent(c->s, c->url.path, &dir, name);
	}
	if (r < 0)
		return r;
	if (name[0]) {
		cr = dafs_create(c->s, &dir, name, O_WRONLY | O_TRUNC, mode, f,
				 NULL, NULL);
		if (cr == 0)
			return 0;
		/* Only a directory or a symlink gets a second chance. */
		r = dafs_lookup(c->s, &dir, name, &fh, &a);
		if (r < 0 || !(S_ISDIR(a.mode) || S_ISLNK(a.mode)))
			return cr;
		r = dtool_resolve(c->s, c->url.path, DTOOL_FOLLOW, 0, &fh, &a);
		if (r < 0)
			return r;
		if (!S_ISDIR(a.mode))
			return dafs_open(c->s, &fh, O_WRONLY | O_TRUNC, f);
		dir = fh;
	}
	/* @dir is a directory the URL named: put the file in it. */
	if (!base)
		return -EISDIR;
	if (strlen(base) > DAFS_NAME_MAX)
		return -ENAMETOOLONG;
	return dafs_create(c->s, &dir, base, O_WRONLY | O_TRUNC, mode, f, NULL,
			   NULL);
}

static int cmd_put(int argc, char **argv)
{
	const char *lname, *url;
	char *base = NULL;
	int set[1] = {0}, first, fd, r, status = 0, local = 0;
	uint32_t mode;
	dafs_file_t *f = NULL;
	struct stat st;
	struct xfer x;
	struct conn c;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 2, 2, "put")))
		return r;
	lname = argv[first];

	if (!strcmp(lname, "-")) {
		fd = STDIN_FILENO;
		mode = 0666 & ~current_umask();
		lname = "stdin";
	} else {
		fd = open(lname, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail_local("put", lname, -errno);
		if (fstat(fd, &st) < 0) {
			status = fail_local("put", lname, -errno);
			close(fd);
			return status;
		}
		if (S_ISDIR(st.st_mode)) {
			close(fd);
			return fail_local("put", lname, -EISDIR);
		}
		mode = st.st_mode & 0777;
		base = local_basename(lname);
		if (!base) {
			close(fd);
			return fail_local("put", lname, -ENOMEM);
		}
	}

	if ((status = conn_open(&c, "put", argv[first + 1])))
		goto out_local;

	url = argv[first + 1];
	r = put_open(&c, base, mode, url[0] && url[strlen(url) - 1] == '/', &f);
	if (r < 0) {
		status = fail("put", shown(c.url.path), r);
		goto out_conn;
	}
	r = xfer_init(&x, c.s, f);
	if (r < 0) {
		dafs_close(f);
		status = fail("put", shown(c.url.path), r);
		goto out_conn;
	}
	r = put_stream(&x, fd, &local);
	xfer_fini(&x);
	if (r < 0 && local)
		status = fail_local("put", lname, r);
	else if (r < 0)
		status = fail("put", shown(c.url.path), r);
	if (!x.broken) {
		/* close reports errors of the write-back, if any */
		r = dafs_close(f);
		if (r < 0 && !status)
			status = fail("put", shown(c.url.path), r);
	}
out_conn:
	conn_close(&c);
out_local:
	if (fd != STDIN_FILENO)
		close(fd);
	free(base);
	return status;
}

/* ---- mkdir, rm, rmdir -------------------------------------------------- */

static int cmd_mkdir(int argc, char **argv)
{
	char name[DAFS_NAME_MAX + 1];
	int set[1] = {0}, first, r, status = 0;
	uint32_t mode = 0777 & ~current_umask();
	struct conn c;
	dafs_fh_t dir, fh;
	dafs_attr_t a;

	first = parse_opts(argc, argv, "p", set);
	if ((r = want_args(argc, first, 1, 1, "mkdir")))
		return r;
	if ((r = conn_open(&c, "mkdir", argv[first])))
		return r;

	if (set[0]) {
		r = dtool_resolve(c.s, c.url.path, DTOOL_FOLLOW | DTOOL_MKDIRS,
				  mode, &fh, &a);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -EEXIST;
	} else {
		r = dtool_resolve_parent(c.s, c.url.path, &dir, name);
		if (r == -EINVAL || (r == 0 && !name[0]))
			r = -EEXIST; /* ".", "..", the root: all exist */
		if (r == 0)
			r = dafs_mkdir(c.s, &dir, name, mode, NULL, NULL);
	}
	if (r < 0)
		status = fail("mkdir", shown(c.url.path), r);
	conn_close(&c);
	return status;
}

/* Remove everything under @dir; @path names it in messages. Reports each
 * failure and goes on; returns non-zero if any. */
static int rm_tree(dafs_session_t *s, const dafs_fh_t *dir, const char *path)
{
	struct listing l;
	dafs_fh_t fh;
	dafs_attr_t a;
	char *sub;
	size_t i;
	int r, bad = 0;
	uint32_t type;

	r = read_dir(s, dir, 0, &l);
	if (r < 0) {
		listing_free(&l);
		fail("rm", path, r);
		return 1;
	}
	for (i = 0; i < l.n; i++) {
		if (asprintf(&sub, "%s/%s", path, l.v[i].name) < 0) {
			fail("rm", path, -ENOMEM);
			bad = 1;
			break;
		}
		type = l.v[i].attr.mode & S_IFMT;
		r = 0;
		if (type == 0 || type == S_IFDIR) {
			r = dafs_lookup(s, dir, l.v[i].name, &fh, &a);
			if (r == 0)
				type = a.mode & S_IFMT;
		}
		if (r == 0 && type == S_IFDIR) {
			if (rm_tree(s, &fh, sub))
				bad = 1;
			else
				r = dafs_rmdir(s, dir, l.v[i].name);
		} else if (r == 0) {
			r = dafs_remove(s, dir, l.v[i].name);
		}
		if (r < 0) {
			fail("rm", sub, r);
			bad = 1;
		}
		free(sub);
	}
	listing_free(&l);
	return bad;
}

static int cmd_rm(int argc, char **argv)
{
	char name[DAFS_NAME_MAX + 1];
	int set[2] = {0}, first, r, status = 0;
	struct conn c;
	dafs_fh_t dir, fh;
	dafs_attr_t a;

	first = parse_opts(argc, argv, "rR", set);
	set[0] |= set[1];
	if ((r = want_args(argc, first, 1, 1, "rm")))
		return r;
	if ((r = conn_open(&c, "rm", argv[first])))
		return r;

	r = dtool_resolve_parent(c.s, c.url.path, &dir, name);
	if (r == 0 && !name[0])
		r = -EBUSY; /* the export root */
	if (r == 0)
		r = dafs_lookup(c.s, &dir, name, &fh, &a);
	if (r == 0 && S_ISDIR(a.mode)) {
		if (!set[0])
			r = -EISDIR;
		else if (rm_tree(c.s, &fh, c.url.path))
			status = EXIT_FAIL;
		else
			r = dafs_rmdir(c.s, &dir, name);
	} else if (r == 0) {
		r = dafs_remove(c.s, &dir, name);
	}
	if (r < 0)
		status = fail("rm", shown(c.url.path), r);
	conn_close(&c);
	return status;
}

static int cmd_rmdir(int argc, char **argv)
{
	char name[DAFS_NAME_MAX + 1];
	int set[1] = {0}, first, r, status = 0;
	struct conn c;
	dafs_fh_t dir;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 1, 1, "rmdir")))
		return r;
	if ((r = conn_open(&c, "rmdir", argv[first])))
		return r;

	r = dtool_resolve_parent(c.s, c.url.path, &dir, name);
	if (r == 0 && !name[0])
		r = -EBUSY;
	if (r == 0)
		r = dafs_rmdir(c.s, &dir, name);
	if (r < 0)
		status = fail("rmdir", shown(c.url.path), r);
	conn_close(&c);
	return status;
}

/* ---- mv, ln ------------------------------------------------------------ */

/* Parse the second URL of mv or ln, which must name the first's export. */
static int second_url(const char *op, const char *first, const char *url,
		      const struct conn *c, dafs_url_t *u)
{
	int r = dafs_url_parse(url, u);

	if (r < 0) {
		fprintf(stderr, "dafs: %s %s: %s\n", op, url, dafs_strerror(r));
		return EXIT_USAGE;
	}
	if (!same_export(&c->url, u)) {
		fprintf(stderr,
			"dafs: %s: %s and %s are not on the same export "
			"(same scheme, host, port and export required)\n",
			op, first, url);
		return EXIT_USAGE;
	}
	return 0;
}

static int cmd_mv(int argc, char **argv)
{
	char sname[DAFS_NAME_MAX + 1], dname[DAFS_NAME_MAX + 1];
	int set[1] = {0}, first, r, status = 0;
	const char *dst;
	struct conn c;
	dafs_url_t du;
	dafs_fh_t sdir, ddir;
	dafs_attr_t a;

	first = parse_opts(argc, argv, "", set);
	if ((r = want_args(argc, first, 2, 2, "mv")))
		return r;
	if ((r = conn_open(&c, "mv", argv[first])))
		return r;
	if ((status = second_url("mv", argv[first], argv[first + 1], &c, &du)))
		goto out;

	r = dtool_resolve_parent(c.s, c.url.path, &sdir, sname);
	if (r == 0 && !sname[0])
		r = -EBUSY;
	if (r < 0) {
		status = fail("mv", shown(c.url.path), r);
		goto out;
	}
	/* Like mv(1): an existing directory receives the source, and a
	 * destination ending in '/' (which the URL parser drops) must be
	 * one: "dir/" is never a new name "dir" */
	dst = argv[first + 1];
	r = dtool_resolve(c.s, du.path, DTOOL_FOLLOW, 0, &ddir, &a);
	if (r == 0 && S_ISDIR(a.mode)) {
		strcpy(dname, sname);
	} else if (dst[0] && dst[strlen(dst) - 1] == '/') {
		if (r == 0)
			r = -ENOTDIR;
	} else if (r == 0 || r == -ENOENT) {
		r = dtool_resolve_parent(c.s, du.path, &ddir, dname);
	}
	if (r < 0) {
		status = fail("mv", shown(du.path), r);
		goto out;
	}
	r = dafs_rename(c.s, &sdir, sname, &ddir, dname, 0);
	if (r < 0) {
		fprintf(stderr, "dafs: mv %s %s: %s\n", shown(c.url.path),
			shown(du.path), dafs_strerror(r));
		status = EXIT_FAIL;
	}
out:
	conn_close(&c);
	return status;
}

static int cmd_ln(int argc, char **argv)
{
	char name[DAFS_NAME_MAX + 1];
	int set[1] = {0}, first, r, status = 0;
	struct conn c;
	dafs_url_t du;
	dafs_fh_t dir, fh;
	const char *target;

	first = parse_opts(argc, argv, "s", set);
	if ((r = want_args(argc, first, 2, 2, "ln")))
		return r;

	if (set[0]) {
		target = argv[first];
		if (!target[0]) {
			usage_error("%s: empty symlink target", "ln");
			return EXIT_USAGE;
		}
		if ((r = conn_open(&c, "ln", argv[first + 1])))
			return r;
		r = dtool_resolve_parent(c.s, c.url.path, &dir, name);
		if (r == -EINVAL || (r == 0 && !name[0]))
			r = -EEXIST;
		if (r == 0 && strlen(target) > DAFS_PATH_MAX)
			r = -ENAMETOOLONG;
		if (r == 0)
			r = dafs_symlink(c.s, &dir, name, target, NULL, NULL);
		if (r < 0)
			status = fail("ln", shown(c.url.path), r);
		conn_close(&c);
		return status;
	}

	/* A hard link: the source itself, not what a symlink points at. */
	if ((r = conn_open(&c, "ln", argv[first])))
		return r;
	if ((status = second_url("ln", argv[first], argv[first + 1], &c, &du)))
		goto out;
	r = dtool_resolve(c.s, c.url.path, 0, 0, &fh, NULL);
	if (r < 0) {
		status = fail("ln", shown(c.url.path), r);
		goto out;
	}
	r = dtool_resolve_parent(c.s, du.path, &dir, name);
	if (r == -EINVAL || (r == 0 && !name[0]))
		r = -EEXIST;
	if (r == 0)
		r = dafs_link(c.s, &fh, &dir, name, NULL);
	if (r < 0)
		status = fail("ln", shown(du.path), r);
out:
	conn_close(&c);
	return status;
}

/* ---- main -------------------------------------------------------------- */

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{.name = "cat", .fn = cmd_cat},	    {.name = "get", .fn = cmd_get},
	{.name = "ln", .fn = cmd_ln},	    {.name = "ls", .fn = cmd_ls},
	{.name = "mkdir", .fn = cmd_mkdir}, {.name = "mv", .fn = cmd_mv},
	{.name = "put", .fn = cmd_put},	    {.name = "rm", .fn = cmd_rm},
	{.name = "rmdir", .fn = cmd_rmdir}, {.name = "stat", .fn = cmd_stat},
};

int main(int argc, char **argv)
{
	size_t i;

	/* A lost connection or a closed pipe must be an error, not death. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return flush_stdout("--help") ? EXIT_FAIL : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("dafs %s (protocol API %d.%d)\n", DAFS_TOOLS_VERSION,
		       DAFS_VERSION_MAJOR, DAFS_VERSION_MINOR);
		return flush_stdout("--version") ? EXIT_FAIL : 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	usage_error("unknown command '%s'", argv[1]);
	return EXIT_USAGE;
}
