/*
 * dafs-verify.c - a random-operation data verifier for any directory: a
 * dafs-fuse mount, or a local disk as the control.
 *
 * It keeps a small set of files (PREFIX-00, PREFIX-01 ...) and applies a
 * random sequence of operations to them: writes at random offsets and
 * lengths (holes when past the end), reads, truncates that shrink and grow,
 * O_APPEND writes, hole punching and allocation, renames within the set
 * (onto free names, over existing files, exchanges), unlinks, close and
 * reopen, fsync, directory listings (some read long after their opendir). An
 * in-memory model holds what each file must contain; every read and, at the
 * end, every file in full is compared with it. The first difference stops the
 * run with the op number, the file, the offset, the expected and the found
 * bytes and the seed that replays it.
 *
 * Only standard system calls are used (nothing of libdafs), so the same run
 * can be made on a local directory: a verifier bug then shows there too
 * and cannot pass for a file system bug.
 *
 * The sequence of operations is a function of the seed and of the model
 * alone, never of what the file system returned, so a seed replays the same
 * run anywhere (except that an fallocate mode the file system refuses is
 * skipped from then on).
 *
 * Written data is a pattern: the 8-byte word at each 8-aligned file offset
 * P is KEY ^ (OP + 1) << 32 ^ P / 8, little-endian, so bytes found in the
 * wrong place name the operation that wrote them and where they belonged.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef DAFS_TOOLS_VERSION
#define DAFS_TOOLS_VERSION "unknown"
#endif

#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define FILES_MAX 256
#define MAX_SIZE_MAX (1ull << 30)
/* the files' models together: virtual memory, touched only where written */
#define MODEL_MAX (4ull << 30)
#define HISTORY 16
#define DESC_LEN 160

static const char usage_text[] =
	"usage: dafs-verify [OPTIONS] DIRECTORY\n"
	"\n"
	"Random writes, reads, truncates, holes, appends, renames, reopens "
	"and\n"
	"fsyncs on a few files in DIRECTORY, every read checked against a "
	"model\n"
	"of what the files must hold.\n"
	"\n"
	"  -s, --seed S         seed of the run (default: random; printed)\n"
	"  -n, --ops N          operations (default 10000)\n"
	"  -f, --files K        files, 1-256 (default 8)\n"
	"  -m, --max-size SIZE  largest file, K/M/G suffixes (default 8M, at\n"
	"                       most 1G)\n"
	"      --max-io SIZE    largest single read or write (default 4M)\n"
	"  -p, --prefix P       file names are P-00, P-01 ... (default v); "
	"runs\n"
	"                       with different prefixes share a directory\n"
	"  -k, --keep           leave the files (default: removed after a\n"
	"                       successful run)\n"
	"      --peer DIR2      DIR2 is DIRECTORY seen through another mount "
	"(a\n"
	"                       second client): each operation goes through "
	"one\n"
	"                       of the two at random, and a file is closed "
	"before\n"
	"                       it is used through the other (close-to-open)\n"
	"  -v, --verbose        print each operation before making it\n"
	"      --inject N       self-test: after op N, change a byte of a "
	"file\n"
	"                       behind the model's back; the run must fail\n"
	"  -h, --help           show this text\n"
	"      --version        show the version\n"
	"\n"
	"Exit status: 0 no mismatch, 1 a mismatch or an unexpected error,\n"
	"2 usage error.\n";

enum op {
	OP_WRITE,
	OP_READ,
	OP_APPEND,
	OP_TRUNCATE,
	OP_PUNCH,
	OP_ALLOC,
	OP_RENAME,
	OP_UNLINK,
	OP_REOPEN,
	OP_FSYNC,
	OP_STAT,
	OP_READDIR,
	OP_NR
};

static const struct {
	const char *name;
	unsigned weight; /* out of the sum of all weights */
} op_table[OP_NR] = {
	[OP_WRITE] = {"write", 30},  [OP_READ] = {"read", 30},
	[OP_APPEND] = {"append", 8}, [OP_TRUNCATE] = {"truncate", 7},
	[OP_PUNCH] = {"punch", 4},   [OP_ALLOC] = {"fallocate", 2},
	[OP_RENAME] = {"rename", 5}, [OP_UNLINK] = {"unlink", 1},
	[OP_REOPEN] = {"reopen", 6}, [OP_FSYNC] = {"fsync", 1},
	[OP_STAT] = {"stat", 5},     [OP_READDIR] = {"readdir", 2},
};

struct opts {
	uint64_t seed;
	uint64_t ops;
	unsigned files;
	uint64_t max_size;
	uint64_t max_io;
	const char *prefix;
	const char *dir;
	const char *peer; /* the same directory through another mount */
	uint64_t inject; /* 0, or: corrupt a byte after this op (self-test) */
	bool keep;
	bool verbose;
};

/*
 * One name of the set and the file it holds. Invariant: data[size ..
 * max_size) is zero, so growing a file (truncate, a write past the end)
 * needs no work on the model.
 */
struct vfile {
	char name[64];
	bool exists;
	int fd; /* O_RDWR on the file under this name, or -1 */
	int side; /* which of dirfds fd was opened through */
	uint64_t size;
	uint8_t *data; /* max_size bytes (calloc: untouched pages cost nothing)
			*/
};

struct verify {
	struct opts o;
	int dirfd;	/* the side of the current operation */
	int dirfds[2];	/* DIRECTORY, and its peer (or the same) */
	int side;	/* of the current operation */
	struct vfile *f;
	uint8_t *rbuf; /* read buffer: max_size + max_io bytes */
	size_t rbuf_len;
	uint64_t key;	 /* pattern key, from the seed */
	uint64_t rng[4]; /* xoshiro256** state */
	uint64_t op;	 /* the operation being made */
	char desc[DESC_LEN];
	char history[HISTORY][DESC_LEN];
	bool no_punch, no_zero, no_alloc, no_exchange;
	DIR *held; /* a directory stream opened by one op, read by a later one
		    */
	uint64_t count[OP_NR];
	uint64_t bytes_written, bytes_read;
};

/* ---- random numbers ----------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, and the same sequence on every machine */
static uint64_t next(struct verify *v)
{
	uint64_t *s = v->rng;
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

/* uniform in [0, n); 0 when n is 0 */
static uint64_t rnd(struct verify *v, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)next(v) * n) >> 64);
}

static bool chance(struct verify *v, unsigned percent)
{
	return rnd(v, 100) < percent;
}

/* ---- the data pattern --------------------------------------------------- */

static uint64_t pattern_word(const struct verify *v, uint64_t op, uint64_t pos8)
{
	return v->key ^ ((op + 1) << 32) ^ (pos8 >> 3);
}

/* dst[0 .. len) gets the bytes op writes at file offsets pos .. pos+len */
static void fill(const struct verify *v, uint8_t *dst, uint64_t pos, size_t len)
{
	while (len) {
		uint64_t w = pattern_word(v, v->op, pos & ~7ull);
		unsigned k = (unsigned)(pos & 7);
		size_t n = 8 - k < len ? 8 - k : len;
		uint8_t b[8];

		for (int i = 0; i < 8; i++)
			b[i] = (uint8_t)(w >> (8 * i));
		memcpy(dst, b + k, n);
		dst += n;
		pos += n;
		len -= n;
	}
}

/*
 * What the 8 bytes at 8-aligned file offset pos8 look like: zeros, the
 * pattern of some operation (and for which offset), or something else.
 */
static void explain(const struct verify *v, const uint8_t *b, char *out,
		    size_t len)
{
	uint64_t w = 0, x, op, pos;

	for (int i = 0; i < 8; i++)
		w |= (uint64_t)b[i] << (8 * i);
	if (w == 0) {
		snprintf(out, len, "zeros");
		return;
	}
	x = w ^ v->key;
	op = (x >> 32) - 1;
	pos = (x & 0xffffffffull) << 3;
	if ((x >> 32) != 0 && op <= v->op && pos < v->o.max_size)
		snprintf(out, len, "op %" PRIu64 "'s data for offset %" PRIu64,
			 op, pos);
	else
		snprintf(out, len, "not this run's pattern");
}

/* ---- reporting ---------------------------------------------------------- */

static void print_history(const struct verify *v)
{
	uint64_t first = v->op >= HISTORY - 1 ? v->op - (HISTORY - 1) : 0;

	fprintf(stderr, "  the last operations:\n");
	for (uint64_t i = first; i <= v->op; i++)
		fprintf(stderr, "    %s\n", v->history[i % HISTORY]);
}

static void print_replay(const struct verify *v)
{
	fprintf(stderr,
		"  seed %" PRIu64 "; replay: dafs-verify --seed %" PRIu64
		" --ops %" PRIu64 " --files %u --max-size %" PRIu64
		" --max-io %" PRIu64 " --prefix %s -v %s\n",
		v->o.seed, v->o.seed, v->o.ops, v->o.files, v->o.max_size,
		v->o.max_io, v->o.prefix, v->o.dir);
}

static void fail(const struct verify *v) __attribute__((noreturn));
static void fail(const struct verify *v)
{
	print_history(v);
	print_replay(v);
	exit(EXIT_FAIL);
}

/* an operation failed that should not have */
static void sys_fail(const struct verify *v, const char *call, int err)
	__attribute__((noreturn));
static void sys_fail(const struct verify *v, const char *call, int err)
{
	fprintf(stderr, "dafs-verify: ERROR at op %" PRIu64 " (%s): %s: %s\n",
		v->op, v->desc, call, strerror(err));
	fail(v);
}

static void hexdump(const char *label, const uint8_t *b, size_t n)
{
	fprintf(stderr, "  %-9s", label);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %02x", b[i]);
	fprintf(stderr, "\n");
}

/*
 * got[0 .. len) was read from file f at offset off; the model says
 * want[0 .. len). Returns if they agree, reports and exits if not.
 */
static void compare(const struct verify *v, const struct vfile *f, uint64_t off,
		    const uint8_t *want, const uint8_t *got, size_t len,
		    const char *how)
{
	size_t i, j, k, last, ndiff = 0, show;
	uint64_t at, a8;
	char what[96];

	if (memcmp(want, got, len) == 0)
		return;
	for (i = 0; want[i] == got[i]; i++)
		;
	for (j = i, last = i; j < len; j++) {
		if (want[j] != got[j]) {
			ndiff++;
			last = j;
		}
	}
	at = off + i;
	fprintf(stderr,
		"dafs-verify: MISMATCH at op %" PRIu64 " (%s): %s of %s/%s"
		" at offset %" PRIu64 "\n",
		v->op, v->desc, how, v->o.dir, f->name, at);
	fprintf(stderr,
		"  %zu bytes differ in [%" PRIu64 ", %" PRIu64 "]"
		" (the file is %" PRIu64 " bytes in the model)\n",
		ndiff, at, off + last, f->size);
	/* from the 8-aligned offset at or below the first difference */
	a8 = at & ~7ull;
	k = a8 >= off ? (size_t)(a8 - off) : i;
	show = len - k < 32 ? len - k : 32;
	fprintf(stderr, "  bytes from offset %" PRIu64 ":\n", off + k);
	hexdump("expected", want + k, show);
	hexdump("got", got + k, show);
	if (a8 >= off && len - k >= 8) {
		explain(v, want + k, what, sizeof(what));
		fprintf(stderr, "  expected: %s\n", what);
		explain(v, got + k, what, sizeof(what));
		fprintf(stderr, "  got:      %s\n", what);
	}
	fail(v);
}

static void size_mismatch(const struct verify *v, const struct vfile *f,
			  const char *how, uint64_t want, uint64_t got)
{
	fprintf(stderr,
		"dafs-verify: MISMATCH at op %" PRIu64 " (%s): %s of %s/%s:"
		" expected %" PRIu64 " bytes, got %" PRIu64 "\n",
		v->op, v->desc, how, v->o.dir, f->name, want, got);
	fail(v);
}

static void describe(struct verify *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void describe(struct verify *v, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(v->desc, sizeof(v->desc), "op %" PRIu64 ": ", v->op);
	va_start(ap, fmt);
	vsnprintf(v->desc + n, sizeof(v->desc) - (size_t)n, fmt, ap);
	va_end(ap);
	memcpy(v->history[v->op % HISTORY], v->desc, sizeof(v->desc));
	if (v->o.verbose) {
		printf("%s\n", v->desc);
		fflush(stdout);
	}
}

/* ---- I/O helpers: whole transfers, errors are fatal ---------------------- */

/* read until len bytes or the end of the file; returns the bytes read */
static size_t pread_all(const struct verify *v, int fd, uint8_t *b, size_t len,
			uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
			pread(fd, b + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			sys_fail(v, "pread", errno);
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return done;
}

static void pwrite_all(const struct verify *v, int fd, const uint8_t *b,
		       size_t len, uint64_t off, bool append)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = append ? write(fd, b + done, len - done)
				   : pwrite(fd, b + done, len - done,
					    (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			sys_fail(v, append ? "write" : "pwrite", errno);
		}
		if (n == 0)
			sys_fail(v, "pwrite (wrote nothing)", EIO);
		done += (size_t)n;
	}
}

static void close_fd(const struct verify *v, int *fd)
{
	if (*fd < 0)
		return;
	if (close(*fd) < 0)
		sys_fail(v, "close", errno);
	*fd = -1;
}

/* make sure f exists and is open; a name the model holds free is created.
 * A file open through the other side is closed first: what that side
 * wrote reaches the server at close, and this side's open sees it. */
static void ensure_open(struct verify *v, struct vfile *f)
{
	if (f->fd >= 0 && f->side != v->side)
		close_fd(v, &f->fd);
	f->side = v->side;
	if (!f->exists) {
		f->fd = openat(v->dirfd, f->name,
			       O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (f->fd < 0)
			sys_fail(v, "open O_CREAT|O_EXCL", errno);
		f->exists = true;
		f->size = 0;
		return;
	}
	if (f->fd < 0) {
		f->fd = openat(v->dirfd, f->name, O_RDWR | O_CLOEXEC);
		if (f->fd < 0)
			sys_fail(v, "open", errno);
	}
}

/* ---- random shapes of operations ---------------------------------------- */

/* a transfer length: mostly small, sometimes large, at most max */
static uint64_t pick_len(struct verify *v, uint64_t max)
{
	unsigned r = (unsigned)rnd(v, 100);
	uint64_t len;

	if (r < 60)
		len = 1 + rnd(v, 4 * KIB);
	else if (r < 90)
		len = 1 + rnd(v, 64 * KIB);
	else if (r < 99)
		len = 1 + rnd(v, 512 * KIB);
	else
		len = 1 + rnd(v, v->o.max_io);
	if (chance(v, 25)) /* page-sized and -aligned */
		len = (len + 4095) & ~4095ull;
	if (len > v->o.max_io)
		len = v->o.max_io;
	return len < max ? len : max;
}

/* an offset for a transfer into a file of size size */
static uint64_t pick_off(struct verify *v, uint64_t size)
{
	unsigned r = (unsigned)rnd(v, 100);
	uint64_t off;

	if (r < 45 && size)
		off = rnd(v, size); /* inside */
	else if (r < 65)
		off = size - (size < 8192 ? rnd(v, size + 1)
					  : rnd(v, 8192)); /* near the end */
	else if (r < 80)
		off = size + rnd(v, 1 * MIB); /* past the end: a hole */
	else
		off = rnd(v, v->o.max_size);
	if (chance(v, 25))
		off &= ~4095ull;
	if (off >= v->o.max_size)
		off = rnd(v, v->o.max_size);
	return off;
}

static struct vfile *pick_file(struct verify *v)
{
	return &v->f[rnd(v, v->o.files)];
}

/* ---- the operations ----------------------------------------------------- */

static void do_write(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t off = pick_off(v, f->exists ? f->size : 0);
	uint64_t len = pick_len(v, v->o.max_size - off);

	describe(v, "write %s off %" PRIu64 " len %" PRIu64, f->name, off, len);
	ensure_open(v, f);
	/* the model holds the new bytes, and they are written from there */
	fill(v, f->data + off, off, len);
	pwrite_all(v, f->fd, f->data + off, len, off, false);
	if (off + len > f->size)
		f->size = off + len;
	v->bytes_written += len;
}

/* check bytes [off, off+len) of f as read through fd */
static void check_range(struct verify *v, struct vfile *f, int fd, uint64_t off,
			uint64_t len, const char *how)
{
	uint64_t want;
	size_t got;

	if (len > v->rbuf_len)
		len = v->rbuf_len;
	want = off >= f->size ? 0 : off + len > f->size ? f->size - off : len;
	got = pread_all(v, fd, v->rbuf, len, off);

	v->bytes_read += got;
	if (got != want)
		size_mismatch(v, f, how, want, got);
	compare(v, f, off, f->data + off, v->rbuf, got, how);
}

static void do_read(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t size = f->exists ? f->size : 0, off, len;
	unsigned r = (unsigned)rnd(v, 100);
	bool fresh = chance(v, 15);
	int fd;

	if (r < 2) { /* the whole file and beyond */
		off = 0;
		len = size + 1 + rnd(v, 8192);
	} else if (r < 15) { /* across the end */
		len = pick_len(v, v->rbuf_len);
		off = size > len / 2 ? size - len / 2 : 0;
	} else if (r < 25) { /* past the end */
		off = size + rnd(v, 64 * KIB);
		len = 1 + rnd(v, 64 * KIB);
	} else {
		off = size ? rnd(v, size) : 0;
		len = pick_len(v, v->rbuf_len);
	}
	describe(v, "read %s off %" PRIu64 " len %" PRIu64 "%s", f->name, off,
		 len, fresh ? " (fresh open)" : "");
	ensure_open(v, f);
	if (!fresh) {
		check_range(v, f, f->fd, off, len, "read");
		return;
	}
	/* a new descriptor: close-to-open consistency */
	fd = openat(v->dirfd, f->name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		sys_fail(v, "open O_RDONLY", errno);
	check_range(v, f, fd, off, len, "read (fresh open)");
	close_fd(v, &fd);
}

/* O_APPEND: a descriptor of its own, sometimes a pwrite at a wrong offset */
static void do_append(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t size = f->exists ? f->size : 0;
	uint64_t len = pick_len(v, v->o.max_size - size);
	uint64_t bogus = chance(v, 25) ? rnd(v, size + 1) : UINT64_MAX;
	int fd;

	if (len == 0) { /* full: an append of nothing */
		describe(v, "append %s len 0 (the file is full)", f->name);
		ensure_open(v, f);
		return;
	}
	if (bogus != UINT64_MAX)
		describe(v, "append %s len %" PRIu64 " (pwrite at %" PRIu64 ")",
			 f->name, len, bogus);
	else
		describe(v, "append %s len %" PRIu64, f->name, len);
	ensure_open(v, f);
	fd = openat(v->dirfd, f->name, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		sys_fail(v, "open O_APPEND", errno);
	fill(v, f->data + size, size, len);
	/* Linux: pwrite on an O_APPEND descriptor appends */
	if (bogus != UINT64_MAX)
		pwrite_all(v, fd, f->data + size, len, bogus, false);
	else
		pwrite_all(v, fd, f->data + size, len, 0, true);
	close_fd(v, &fd);
	f->size = size + len;
	v->bytes_written += len;
}

static void set_size(struct vfile *f, uint64_t size)
{
	if (size < f->size)
		memset(f->data + size, 0, f->size - size);
	f->size = size;
}

static void do_truncate(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t size = f->exists ? f->size : 0, to;
	unsigned r = (unsigned)rnd(v, 100);
	bool by_path = chance(v, 40);

	if (r < 40)
		to = rnd(v, size + 1); /* shrink */
	else if (r < 80)
		to = size + rnd(v, 2 * MIB); /* grow */
	else if (r < 90)
		to = 0;
	else
		to = size;
	if (to > v->o.max_size)
		to = v->o.max_size;
	describe(v, "%s %s %" PRIu64 " -> %" PRIu64,
		 by_path ? "truncate" : "ftruncate", f->name, size, to);
	ensure_open(v, f);
	if (by_path) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/%s", v->o.dir, f->name);
		if (truncate(path, (off_t)to) < 0)
			sys_fail(v, "truncate", errno);
	} else if (ftruncate(f->fd, (off_t)to) < 0) {
		sys_fail(v, "ftruncate", errno);
	}
	set_size(f, to);
}

/* fallocate that the file system may refuse: true if it was made */
static bool try_fallocate(struct verify *v, struct vfile *f, int mode,
			  uint64_t off, uint64_t len, bool *unsupported,
			  const char *name)
{
	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
		return true;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		sys_fail(v, name, errno);
	*unsupported = true;
	printf("dafs-verify: %s: %s; skipped from now on\n", name,
	       strerror(errno));
	fflush(stdout);
	return false;
}

/* PUNCH_HOLE (keeps the size) or ZERO_RANGE (may grow it) */
static void do_punch(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t size = f->exists ? f->size : 0;
	uint64_t off = size && chance(v, 85) ? rnd(v, size) : pick_off(v, size);
	uint64_t len = pick_len(v, v->o.max_size - off);
	bool zero = chance(v, 30), keep = !zero || chance(v, 50);
	int mode = (zero ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) |
		   (keep ? FALLOC_FL_KEEP_SIZE : 0);
	bool *unsup = zero ? &v->no_zero : &v->no_punch;
	uint64_t end;

	describe(v, "fallocate %s %s%s off %" PRIu64 " len %" PRIu64, f->name,
		 zero ? "ZERO_RANGE" : "PUNCH_HOLE", keep ? "|KEEP_SIZE" : "",
		 off, len);
	ensure_open(v, f);
	if (*unsup || !try_fallocate(v, f, mode, off, len, unsup,
				     zero ? "fallocate ZERO_RANGE"
					  : "fallocate PUNCH_HOLE"))
		return;
	end = off + len;
	if (off < f->size)
		memset(f->data + off, 0, (end < f->size ? end : f->size) - off);
	if (!keep && end > f->size)
		f->size = end;
}

/* plain allocation: no bytes change, the size may grow */
static void do_alloc(struct verify *v)
{
	struct vfile *f = pick_file(v);
	uint64_t size = f->exists ? f->size : 0;
	uint64_t off = pick_off(v, size);
	uint64_t len = pick_len(v, v->o.max_size - off);
	bool keep = chance(v, 30);

	describe(v, "fallocate %s%s off %" PRIu64 " len %" PRIu64, f->name,
		 keep ? " KEEP_SIZE" : "", off, len);
	ensure_open(v, f);
	if (v->no_alloc || !try_fallocate(v, f, keep ? FALLOC_FL_KEEP_SIZE : 0,
					  off, len, &v->no_alloc, "fallocate"))
		return;
	if (!keep && off + len > f->size)
		f->size = off + len;
}

/*
 * An open descriptor of a file that a rename or unlink took the last name
 * of still reads its bytes; check a window of them, then close it.
 */
static void check_orphan(struct verify *v, struct vfile *old, int fd)
{
	uint64_t off = old->size > MIB ? rnd(v, old->size - MIB) : 0;

	check_range(v, old, fd, off, MIB, "read of the replaced file");
	close_fd(v, &fd);
}

/* the file (model, descriptor) under name a moves to name b and back */
static void swap_files(struct vfile *a, struct vfile *b)
{
	struct vfile t = *a;

	a->exists = b->exists;
	a->fd = b->fd;
	a->side = b->side;
	a->size = b->size;
	a->data = b->data;
	b->exists = t.exists;
	b->fd = t.fd;
	b->side = t.side;
	b->size = t.size;
	b->data = t.data;
}

static void do_rename(struct verify *v)
{
	struct vfile *a = pick_file(v), *b = pick_file(v);
	bool exchange = chance(v, 30), orphan = chance(v, 50);
	int fd;

	if (v->o.files < 2) {
		describe(v, "rename (one file: nothing to do)");
		return;
	}
	while (b == a)
		b = pick_file(v);
	if (exchange && b->exists && !v->no_exchange) {
		describe(v, "rename %s <-> %s (RENAME_EXCHANGE)", a->name,
			 b->name);
		ensure_open(v, a);
		if (renameat2(v->dirfd, a->name, v->dirfd, b->name,
			      RENAME_EXCHANGE) == 0) {
			/* the files swap names; the descriptors follow them */
			swap_files(a, b);
			return;
		}
		if (errno != EINVAL && errno != ENOSYS)
			sys_fail(v, "renameat2 RENAME_EXCHANGE", errno);
		v->no_exchange = true;
		printf("dafs-verify: RENAME_EXCHANGE: %s; skipped from now "
		       "on\n",
		       strerror(errno));
		/* and a plain rename instead */
	}
	describe(v, "rename %s -> %s%s", a->name, b->name,
		 !b->exists ? ""
		 : orphan   ? " (over an open file)"
			    : " (over a file)");
	ensure_open(v, a);
	if (b->exists && !orphan)
		close_fd(v, &b->fd);
	if (renameat(v->dirfd, a->name, v->dirfd, b->name) < 0)
		sys_fail(v, "rename", errno);
	fd = b->fd;
	if (b->exists && fd >= 0)
		check_orphan(v, b, fd);
	/* b takes a's file and descriptor; a's name is free */
	b->fd = -1;
	set_size(b, 0);
	swap_files(a, b);
	a->exists = false;
}

static void do_unlink(struct verify *v)
{
	struct vfile *f = pick_file(v);
	bool orphan = chance(v, 50);

	describe(v, "unlink %s%s", f->name,
		 orphan ? " (open, read afterwards)" : "");
	ensure_open(v, f);
	if (!orphan)
		close_fd(v, &f->fd);
	if (unlinkat(v->dirfd, f->name, 0) < 0)
		sys_fail(v, "unlink", errno);
	if (f->fd >= 0)
		check_orphan(v, f, f->fd);
	f->fd = -1;
	f->exists = false;
	set_size(f, 0);
}

static void do_reopen(struct verify *v)
{
	struct vfile *f = pick_file(v);
	bool trunc = chance(v, 5);

	describe(v, "reopen %s%s", f->name, trunc ? " O_TRUNC" : "");
	ensure_open(v, f);
	close_fd(v, &f->fd);
	f->fd = openat(v->dirfd, f->name,
		       O_RDWR | O_CLOEXEC | (trunc ? O_TRUNC : 0));
	if (f->fd < 0)
		sys_fail(v, "open", errno);
	if (trunc)
		set_size(f, 0);
}

static void do_fsync(struct verify *v)
{
	struct vfile *f = pick_file(v);
	bool data = chance(v, 50);

	describe(v, "%s %s", data ? "fdatasync" : "fsync", f->name);
	ensure_open(v, f);
	if ((data ? fdatasync(f->fd) : fsync(f->fd)) < 0)
		sys_fail(v, data ? "fdatasync" : "fsync", errno);
}

/* sizes by descriptor and by name; a free name must not exist */
static void do_stat(struct verify *v)
{
	struct vfile *f = pick_file(v);
	struct stat st;

	describe(v, "stat %s%s", f->name, f->exists ? "" : " (free name)");
	if (!f->exists) {
		if (fstatat(v->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			fprintf(stderr,
				"dafs-verify: MISMATCH at op %" PRIu64
				" (%s): %s/%s exists (%" PRIu64
				" bytes) but was renamed or unlinked\n",
				v->op, v->desc, v->o.dir, f->name,
				(uint64_t)st.st_size);
			fail(v);
		}
		if (errno != ENOENT)
			sys_fail(v, "stat of a free name", errno);
		return;
	}
	ensure_open(v, f);
	if (fstat(f->fd, &st) < 0)
		sys_fail(v, "fstat", errno);
	if ((uint64_t)st.st_size != f->size)
		size_mismatch(v, f, "fstat", f->size, (uint64_t)st.st_size);
	if (fstatat(v->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		sys_fail(v, "stat", errno);
	if ((uint64_t)st.st_size != f->size)
		size_mismatch(v, f, "stat", f->size, (uint64_t)st.st_size);
}

static void check_names(struct verify *v, const char *when);

/*
 * A listing opened now and checked (names exactly the model's), or a
 * stream opened now and read by a later readdir op, after other ops have
 * changed the files: its names may be stale (POSIX allows that), but what
 * it hands the kernel must not make later sizes or bytes wrong, which the
 * other ops check.
 */
static void do_readdir(struct verify *v)
{
	int fd;

	if (v->held) {
		describe(v, "readdir of a stream opened earlier");
		errno = 0;
		while (readdir(v->held))
			;
		if (errno)
			sys_fail(v, "readdir", errno);
		closedir(v->held);
		v->held = NULL;
		return;
	}
	if (chance(v, 50)) {
		describe(v, "readdir, names checked");
		check_names(v, "in a listing");
		return;
	}
	describe(v, "opendir, read later");
	fd = openat(v->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		sys_fail(v, "open of the directory", errno);
	v->held = fdopendir(fd);
	if (!v->held)
		sys_fail(v, "fdopendir", errno);
}

static void (*const op_fn[OP_NR])(struct verify *) = {
	[OP_WRITE] = do_write,	 [OP_READ] = do_read,
	[OP_APPEND] = do_append, [OP_TRUNCATE] = do_truncate,
	[OP_PUNCH] = do_punch,	 [OP_ALLOC] = do_alloc,
	[OP_RENAME] = do_rename, [OP_UNLINK] = do_unlink,
	[OP_REOPEN] = do_reopen, [OP_FSYNC] = do_fsync,
	[OP_STAT] = do_stat,	 [OP_READDIR] = do_readdir,
};

static enum op pick_op(struct verify *v)
{
	unsigned total = 0, r;
	int i;

	for (i = 0; i < OP_NR; i++)
		total += op_table[i].weight;
	r = (unsigned)rnd(v, total);
	for (i = 0; i < OP_NR - 1; i++) {
		if (r < op_table[i].weight)
			break;
		r -= op_table[i].weight;
	}
	return (enum op)i;
}

/*
 * --inject: flip one byte in the middle of the first non-empty file through
 * a descriptor of its own, leaving the model alone, so that the run must
 * end in a mismatch: proof that a wrong byte does not go unnoticed. Returns
 * false while every file is empty (the next op tries again).
 */
static bool inject(struct verify *v)
{
	for (unsigned i = 0; i < v->o.files; i++) {
		struct vfile *f = &v->f[i];
		uint64_t off = f->size / 2;
		uint8_t b;
		int fd;

		if (!f->exists || !f->size)
			continue;
		fd = openat(v->dirfd, f->name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			sys_fail(v, "open for --inject", errno);
		if (pread_all(v, fd, &b, 1, off) != 1)
			sys_fail(v, "pread for --inject", EIO);
		b ^= 0xff;
		pwrite_all(v, fd, &b, 1, off, false);
		close_fd(v, &fd);
		printf("dafs-verify: --inject: changed the byte at offset"
		       " %" PRIu64 " of %s after op %" PRIu64 "\n",
		       off, f->name, v->op);
		fflush(stdout);
		return true;
	}
	return false;
}

/* ---- the final check ---------------------------------------------------- */

/* the names of this run in the directory are exactly the existing files */
static void check_names(struct verify *v, const char *when)
{
	size_t plen = strlen(v->o.prefix);
	struct dirent *de;
	unsigned seen = 0, want = 0, i;
	int fd = openat(v->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		sys_fail(v, "open of the directory", errno);
	d = fdopendir(fd);
	if (!d)
		sys_fail(v, "fdopendir", errno);
	for (i = 0; i < v->o.files; i++)
		want += v->f[i].exists;
	while ((errno = 0, de = readdir(d))) {
		const char *p = de->d_name + plen + 1;
		char *end;
		unsigned long n;

		if (strncmp(de->d_name, v->o.prefix, plen) != 0 ||
		    de->d_name[plen] != '-' || !isdigit((unsigned char)*p))
			continue;
		n = strtoul(p, &end, 10);
		if (*end)
			continue;
		if (n >= v->o.files || !v->f[n].exists ||
		    strcmp(v->f[n].name, de->d_name) != 0) {
			fprintf(stderr,
				"dafs-verify: MISMATCH %s (%s): readdir lists"
				" %s, which should not exist\n",
				when, v->desc, de->d_name);
			fail(v);
		}
		seen++;
	}
	if (errno)
		sys_fail(v, "readdir", errno);
	closedir(d);
	if (seen != want) {
		fprintf(stderr,
			"dafs-verify: MISMATCH %s (%s): readdir lists %u of"
			" the %u files\n",
			when, v->desc, seen, want);
		fail(v);
	}
}

static void final_check(struct verify *v)
{
	size_t chunk = v->rbuf_len < MIB ? v->rbuf_len : MIB;
	struct stat st;

	snprintf(v->desc, sizeof(v->desc), "final check");
	memcpy(v->history[v->op % HISTORY], v->desc, sizeof(v->desc));
	for (unsigned i = 0; i < v->o.files; i++) {
		struct vfile *f = &v->f[i];
		uint64_t off = 0;
		size_t n;

		if (!f->exists)
			continue;
		close_fd(v, &f->fd);
		f->fd = openat(v->dirfd, f->name, O_RDONLY | O_CLOEXEC);
		if (f->fd < 0)
			sys_fail(v, "open", errno);
		if (fstat(f->fd, &st) < 0)
			sys_fail(v, "fstat", errno);
		if ((uint64_t)st.st_size != f->size)
			size_mismatch(v, f, "final fstat", f->size,
				      (uint64_t)st.st_size);
		do {
			n = pread_all(v, f->fd, v->rbuf, chunk, off);
			v->bytes_read += n;
			if (n !=
			    (f->size - off < chunk ? f->size - off : chunk))
				size_mismatch(v, f, "final read", f->size,
					      off + n);
			compare(v, f, off, f->data + off, v->rbuf, n,
				"final read");
			off += n;
		} while (n);
		close_fd(v, &f->fd);
	}
	for (unsigned i = 0; i < v->o.files; i++) {
		if (!v->f[i].exists && fstatat(v->dirfd, v->f[i].name, &st,
					       AT_SYMLINK_NOFOLLOW) == 0) {
			fprintf(stderr,
				"dafs-verify: MISMATCH in the final check: "
				"%s/%s exists but was renamed or unlinked\n",
				v->o.dir, v->f[i].name);
			fail(v);
		}
	}
	check_names(v, "in the final check");
}

/* ---- arguments ---------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

/* "123", "4K", "1M", "2G": binary multiples; 0 is refused */
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
		mul = KIB;
		p++;
		break;
	case 'M':
		mul = MIB;
		p++;
		break;
	case 'G':
		mul = 1ull << 30;
		p++;
		break;
	}
	if (*p || v == 0 || v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dafs-verify: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'dafs-verify --help'.\n");
	exit(EXIT_USAGE);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { OPT_VERSION = 256, OPT_MAX_IO, OPT_INJECT, OPT_PEER };
	static const struct option longopts[] = {
		{"files", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"inject", required_argument, NULL, OPT_INJECT},
		{"keep", no_argument, NULL, 'k'},
		{"max-io", required_argument, NULL, OPT_MAX_IO},
		{"max-size", required_argument, NULL, 'm'},
		{"ops", required_argument, NULL, 'n'},
		{"peer", required_argument, NULL, OPT_PEER},
		{"prefix", required_argument, NULL, 'p'},
		{"seed", required_argument, NULL, 's'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	bool seeded = false;
	uint64_t n;
	int c;

	*o = (struct opts){.ops = 10000,
			   .files = 8,
			   .max_size = 8 * MIB,
			   .max_io = 4 * MIB,
			   .prefix = "v"};
	while ((c = getopt_long(argc, argv, "f:hkm:n:p:s:v", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'f':
			if (parse_u64(optarg, &n) || n < 1 || n > FILES_MAX)
				usage_error("--files: 1 to %d", FILES_MAX);
			o->files = (unsigned)n;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case OPT_INJECT:
			if (parse_u64(optarg, &o->inject) || o->inject == 0)
				usage_error("--inject: an op number from 1");
			break;
		case 'k':
			o->keep = true;
			break;
		case OPT_PEER:
			o->peer = optarg;
			break;
		case 'm':
			if (parse_size(optarg, &o->max_size) ||
			    o->max_size > MAX_SIZE_MAX)
				usage_error("--max-size: a size up to 1G");
			break;
		case OPT_MAX_IO:
			if (parse_size(optarg, &o->max_io) ||
			    o->max_io > MAX_SIZE_MAX)
				usage_error("--max-io: a size up to 1G");
			break;
		case 'n':
			if (parse_u64(optarg, &o->ops))
				usage_error("--ops: a number");
			break;
		case 'p':
			o->prefix = optarg;
			if (!*optarg || strlen(optarg) > 40 ||
			    strchr(optarg, '/'))
				usage_error("--prefix: 1-40 characters, no /");
			break;
		case 's':
			if (parse_u64(optarg, &o->seed))
				usage_error("--seed: a number");
			seeded = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case OPT_VERSION:
			printf("dafs-verify " DAFS_TOOLS_VERSION "\n");
			exit(0);
		default:
			usage_error("unknown option");
		}
	}
	if (optind != argc - 1)
		usage_error("one DIRECTORY expected");
	o->dir = argv[optind];
	if (o->max_io > o->max_size)
		o->max_io = o->max_size;
	if (o->files * o->max_size > MODEL_MAX)
		usage_error("--files times --max-size: at most 4G of model");
	if (!seeded &&
	    getrandom(&o->seed, sizeof(o->seed), 0) != (ssize_t)sizeof(o->seed))
		o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	/* printed seeds are read back by strtoull: keep them decimal */
}

/* ---- main --------------------------------------------------------------- */

static int setup(struct verify *v)
{
	uint64_t x = v->o.seed;

	for (int i = 0; i < 4; i++)
		v->rng[i] = splitmix64(&x);
	v->key = splitmix64(&x);
	v->dirfd = open(v->o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v->dirfd < 0) {
		fprintf(stderr, "dafs-verify: %s: %s\n", v->o.dir,
			strerror(errno));
		return -1;
	}
	v->dirfds[0] = v->dirfds[1] = v->dirfd;
	if (v->o.peer) {
		v->dirfds[1] = open(v->o.peer, O_RDONLY | O_DIRECTORY |
						       O_CLOEXEC);
		if (v->dirfds[1] < 0) {
			fprintf(stderr, "dafs-verify: %s: %s\n", v->o.peer,
				strerror(errno));
			return -1;
		}
	}
	v->f = calloc(v->o.files, sizeof(*v->f));
	v->rbuf_len = (size_t)(v->o.max_size + v->o.max_io);
	v->rbuf = malloc(v->rbuf_len);
	if (!v->f || !v->rbuf)
		goto nomem;
	for (unsigned i = 0; i < v->o.files; i++) {
		struct vfile *f = &v->f[i];
		struct stat st;

		snprintf(f->name, sizeof(f->name), "%s-%02u", v->o.prefix, i);
		f->fd = -1;
		f->data = calloc(1, (size_t)v->o.max_size);
		if (!f->data)
			goto nomem;
		if (fstatat(v->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			fprintf(stderr,
				"dafs-verify: %s/%s exists: remove it or"
				" choose another --prefix\n",
				v->o.dir, f->name);
			return -1;
		}
	}
	return 0;
nomem:
	fprintf(stderr, "dafs-verify: out of memory\n");
	return -1;
}

static void teardown(struct verify *v, bool remove)
{
	if (v->held)
		closedir(v->held);
	for (unsigned i = 0; i < v->o.files; i++) {
		struct vfile *f = &v->f[i];

		if (f->fd >= 0)
			close(f->fd);
		if (remove && f->exists)
			unlinkat(v->dirfd, f->name, 0);
		free(f->data);
	}
	free(v->f);
	free(v->rbuf);
	if (v->dirfds[1] != v->dirfds[0])
		close(v->dirfds[1]);
	close(v->dirfds[0]);
}

int main(int argc, char **argv)
{
	static struct verify v; /* large: history and descriptions */
	struct timespec t0, t1;
	double secs;

	parse_args(argc, argv, &v.o);
	printf("dafs-verify: seed %" PRIu64 ", %" PRIu64
	       " ops on %u files of up to %" PRIu64
	       " bytes in %s (prefix %s)\n",
	       v.o.seed, v.o.ops, v.o.files, v.o.max_size, v.o.dir, v.o.prefix);
	fflush(stdout);
	if (setup(&v) < 0)
		return EXIT_FAIL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (v.op = 0; v.op < v.o.ops; v.op++) {
		enum op op = pick_op(&v);

		/* with a peer, each operation through one side at random */
		v.side = v.o.peer ? (int)rnd(&v, 2) : 0;
		v.dirfd = v.dirfds[v.side];
		op_fn[op](&v);
		v.count[op]++;
		if (v.o.inject && v.op >= v.o.inject && inject(&v))
			v.o.inject = 0;
	}
	final_check(&v);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("dafs-verify: seed %" PRIu64 ": %" PRIu64
	       " ops, no mismatch; %.1f MiB written, %.1f MiB read"
	       " and checked, %.1f s\ndafs-verify:",
	       v.o.seed, v.o.ops, (double)v.bytes_written / MIB,
	       (double)v.bytes_read / MIB, secs);
	for (int i = 0; i < OP_NR; i++)
		printf(" %s %" PRIu64, op_table[i].name, v.count[i]);
	printf("%s%s%s%s\n", v.no_punch ? " (no PUNCH_HOLE)" : "",
	       v.no_zero ? " (no ZERO_RANGE)" : "",
	       v.no_alloc ? " (no fallocate)" : "",
	       v.no_exchange ? " (no RENAME_EXCHANGE)" : "");
	teardown(&v, !v.o.keep);
	return 0;
}
