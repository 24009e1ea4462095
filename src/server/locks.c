/*
 * locks.c - a session's locks as open file description locks on
 * descriptors of their own, one per (owner, file, kind); see locks_i.h.
 *
 * Why descriptors and not a lock table of our own: the kernel already
 * checks conflicts and merges and splits POSIX ranges exactly as fcntl(2)
 * promises, and only its locks are seen by the server's local processes.
 * OFD locks (not classic fcntl locks) because classic locks belong to the
 * whole dafsd process, which is one owner to the kernel, and are dropped
 * when it closes any descriptor of the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "locks_i.h"

#define NBUCKETS 256 /* a power of two */

struct srv_lockfd {
	uint64_t owner, dev, ino;
	uint32_t kind;
	int fd;
	unsigned acc; /* ACC_R, ACC_W: what fd may do */
	struct srv_lockfd *next;
};

struct lkey {
	uint64_t owner, dev, ino;
	uint32_t kind;
};

static uint32_t bucket(const struct lkey *k)
{
	uint64_t h = k->owner * 0x9e3779b97f4a7c15ull ^
		     k->ino * 0xc2b2ae3d27d4eb4full ^ k->dev ^ k->kind;

	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return (uint32_t)h & (NBUCKETS - 1);
}

/* Where @k's entry is in its chain, or the chain's end (l->lock held,
 * l->tab allocated). */
static struct srv_lockfd **slot(struct srv_locks *l, const struct lkey *k)
{
	struct srv_lockfd **pp = &l->tab[bucket(k)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->owner == k->owner && (*pp)->ino == k->ino &&
		    (*pp)->dev == k->dev && (*pp)->kind == k->kind)
			break;
	return pp;
}

void srv_lockbudget_init(struct srv_lockbudget *b, uint32_t max)
{
	atomic_init(&b->used, 0);
	b->max = max;
}

uint32_t srv_lockbudget_used(struct srv_lockbudget *b)
{
	return atomic_load(&b->used);
}

/* One descriptor more of @b, if it has one to give (NULL: always). */
static int budget_take(struct srv_lockbudget *b)
{
	unsigned u;

	if (!b)
		return 1;
	u = atomic_load(&b->used);
	do {
		if (u >= b->max)
			return 0;
	} while (!atomic_compare_exchange_weak(&b->used, &u, u + 1));
	return 1;
}

static void budget_give(struct srv_lockbudget *b)
{
	if (b)
		atomic_fetch_sub(&b->used, 1);
}

/* Unlink and close the entry at @pp (l->lock held): whatever it held is
 * released with the descriptor. */
static void drop(struct srv_locks *l, struct srv_lockfd **pp)
{
	struct srv_lockfd *e = *pp;

	*pp = e->next;
	close(e->fd);
	free(e);
	l->n--;
	budget_give(l->budget);
}

void srv_locks_init(struct srv_locks *l, uint32_t max,
		    struct srv_lockbudget *budget)
{
	pthread_mutex_init(&l->lock, NULL);
	l->tab = NULL;
	l->n = 0;
	l->max = max;
	l->closed = 0;
	l->budget = budget;
}

void srv_locks_release(struct srv_locks *l)
{
	uint32_t i;

	pthread_mutex_lock(&l->lock);
	l->closed = 1;
	for (i = 0; l->tab && i < NBUCKETS; i++)
		while (l->tab[i])
			drop(l, &l->tab[i]);
	pthread_mutex_unlock(&l->lock);
}

void srv_locks_fini(struct srv_locks *l)
{
	srv_locks_release(l);
	free(l->tab);
	l->tab = NULL;
	pthread_mutex_destroy(&l->lock);
}

uint32_t srv_locks_count(struct srv_locks *l)
{
	uint32_t n;

	pthread_mutex_lock(&l->lock);
	n = l->n;
	pthread_mutex_unlock(&l->lock);
	return n;
}

/* The request's fields, checked as fcntl(2) would (LOCKT: @test). */
static int check(const struct dafs_m_lock_req *q, int test)
{
	if (q->kind == DAFS_LOCK_FLOCK) {
		if (test || q->start || q->len)
			return -EINVAL; /* flock(2) has no test, no range */
	} else if (q->kind != DAFS_LOCK_POSIX) {
		return -EINVAL;
	}
	if (q->type != DAFS_LOCK_READ && q->type != DAFS_LOCK_WRITE &&
	    (test || q->type != DAFS_LOCK_UNLOCK))
		return -EINVAL;
	if (q->start > (uint64_t)INT64_MAX || q->len > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (q->len && q->len - 1 > (uint64_t)INT64_MAX - q->start)
		return -EOVERFLOW;
	return 0;
}

/* The file of @fd as a key for @q's owner and kind; regular files only. */
static int key_of(int fd, const struct dafs_m_lock_req *q, struct lkey *k)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	k->owner = q->owner;
	k->dev = st.st_dev;
	k->ino = st.st_ino;
	k->kind = q->kind;
	return 0;
}

/*
 * What a descriptor may do. fcntl(2) wants a descriptor open for reading
 * for a read lock and for writing for a write lock (F_OFD_SETLK checks the
 * lock's description itself); flock(2), F_OFD_GETLK and unlocks want
 * nothing.
 */
enum { ACC_R = 1, ACC_W = 2 };

static unsigned acc_of_open(uint32_t oflags)
{
	switch (oflags & DAFS_O_ACCMODE) {
	case DAFS_O_WRONLY:
		return ACC_W;
	case DAFS_O_RDWR:
		return ACC_R | ACC_W;
	default:
		return ACC_R;
	}
}

static unsigned acc_needed(const struct dafs_m_lock_req *q)
{
	if (q->kind != DAFS_LOCK_POSIX)
		return 0;
	return q->type == DAFS_LOCK_READ    ? ACC_R
	       : q->type == DAFS_LOCK_WRITE ? ACC_W
					    : 0;
}

/*
 * The access a new descriptor for @q, through an open of @oflags, is
 * opened with. As little as will do: dafsd opens as root, and a
 * description open for writing has effects on the server that the client
 * never asked for (a local exec fails with ETXTBSY, inotify's
 * IN_CLOSE_WRITE at each unlock, local read leases broken, an overlayfs
 * copy-up). So flock, and POSIX locks through a read-only open, read
 * only. POSIX locks through a writable open: read and write, since the
 * description serves all of the owner's locks of the file and read locks
 * may come through other opens (the access check against the open a
 * request names is made before, as fcntl's).
 */
static unsigned acc_wanted(const struct dafs_m_lock_req *q, uint32_t oflags)
{
	if (q->kind == DAFS_LOCK_POSIX && (acc_of_open(oflags) & ACC_W))
		return ACC_R | ACC_W;
	return ACC_R;
}

static int open_flags(unsigned acc)
{
	return acc == (ACC_R | ACC_W) ? O_RDWR
	       : acc == ACC_W	      ? O_WRONLY
				      : O_RDONLY;
}

/*
 * A new open file description of the file open as @fd, with access
 * @want; *@got says what it has. With @fallback, when @want is refused
 * (a non-root server's file it may not read, say), the open's own access,
 * which the client has anyway. O_NONBLOCK: a local process's lease makes
 * it fail rather than wait.
 */
static int reopen(int fd, uint32_t oflags, unsigned want, int fallback,
		  unsigned *got)
{
	const int common = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	unsigned own = acc_of_open(oflags);
	char path[32];
	int nfd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	nfd = open(path, open_flags(want) | common);
	if (nfd < 0 && fallback && own != want && errno != EMFILE &&
	    errno != ENFILE && errno != EWOULDBLOCK) {
		want = own;
		nfd = open(path, open_flags(want) | common);
	}
	if (nfd >= 0) {
		*got = want;
		return nfd;
	}
	switch (errno) {
	case EWOULDBLOCK:
		return -DAFS_EDENIED; /* a lease being broken: try again */
	case ENOMEM:
		return -ENOMEM;
	case EACCES:
	case EPERM:
	case EROFS:
	case ETXTBSY:
		/* the access a lock needs is not to be had: what fcntl
		 * says of a descriptor without it */
		if (!fallback)
			return -EBADF;
		/* fall through */
	default:
		/* out of descriptors, or no /proc: no locks to be had */
		return -ENOLCK;
	}
}

/*
 * The locks of the description @from taken by @to, which has read and
 * write access (the locks the kernel lists in /proc/self/fdinfo of @from:
 * those whose description and owner it is). @from lacks write or read, so
 * it holds read locks only, or write locks only. Read locks of two
 * descriptions never conflict, and no other owner holds a write lock
 * where @from holds a read lock, so taking them on @to cannot fail for a
 * conflict, and while both hold them the ranges never come free. A write
 * lock cannot be carried: @to would conflict with @from, and releasing
 * @from's first would let another owner in between; -EBADF then, what
 * fcntl says of a descriptor without read access.
 */
static int carry(int from, int to)
{
	char path[40], line[256], *tok[10], *save, *p;
	struct flock fl = {0};
	unsigned long long start;
	int n, rc = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", from);
	f = fopen(path, "re");
	if (!f)
		return -ENOLCK;
	while (!rc && fgets(line, sizeof(line), f)) {
		/* "lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:1234 5 14|EOF" */
		if (strncmp(line, "lock:", 5))
			continue;
		for (n = 0, p = strtok_r(line, " \t\n", &save); p && n < 10;
		     p = strtok_r(NULL, " \t\n", &save))
			tok[n++] = p;
		if (n != 9 || strcmp(tok[2], "OFDLCK")) {
			rc = -ENOLCK; /* not what we know how to carry */
			break;
		}
		if (strcmp(tok[4], "READ")) {
			rc = -EBADF;
			break;
		}
		start = strtoull(tok[7], NULL, 10);
		fl.l_type = F_RDLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = (off_t)start;
		fl.l_len = !strcmp(tok[8], "EOF")
				   ? 0
				   : (off_t)(strtoull(tok[8], NULL, 10) -
					     start + 1);
		if (fcntl(to, F_OFD_SETLK, &fl))
			rc = errno == ENOMEM ? -ENOMEM : -ENOLCK;
	}
	fclose(f);
	return rc;
}

/* Apply @q to the owner's descriptor @fd, without waiting. */
static int apply(int fd, const struct dafs_m_lock_req *q)
{
	struct flock fl = {0};

	if (q->kind == DAFS_LOCK_FLOCK) {
		if (!flock(fd, (q->type == DAFS_LOCK_READ ? LOCK_SH : LOCK_EX) |
				       LOCK_NB))
			return 0;
		return errno == EWOULDBLOCK ? -DAFS_EDENIED : -errno;
	}
	fl.l_type = q->type == DAFS_LOCK_READ	 ? F_RDLCK
		    : q->type == DAFS_LOCK_WRITE ? F_WRLCK
						 : F_UNLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)q->start;
	fl.l_len = (off_t)q->len;
	if (!fcntl(fd, F_OFD_SETLK, &fl))
		return 0;
	return errno == EAGAIN || errno == EACCES ? -DAFS_EDENIED : -errno;
}

/*
 * The owner's descriptor *@pp lacks access @q needs (l->lock held, and
 * dropped for the open): a description cannot be given a mode, and an
 * owner's locks of a file must stay on one description (a second one
 * would be another owner to the kernel and conflict with the first), so a
 * new one with read and write access takes over the locks of the old
 * (carry()) and its place. Returns 0 with *@pp upgraded, or by someone
 * else meanwhile; 1 if the entry went meanwhile (look again); or a
 * negative error, the entry as it was.
 */
static int upgrade(struct srv_locks *l, struct srv_lockfd ***pp,
		   const struct lkey *k, int fd, uint32_t oflags, unsigned need)
{
	unsigned got;
	int nfd, rc;

	pthread_mutex_unlock(&l->lock);
	/* a moment's extra descriptor, not counted in the budget */
	nfd = reopen(fd, oflags, ACC_R | ACC_W, 0, &got);
	pthread_mutex_lock(&l->lock);
	if (nfd < 0)
		return nfd;
	if (l->closed) {
		close(nfd);
		return -DAFS_EBADSESSION;
	}
	*pp = slot(l, k);
	if (!**pp) {
		close(nfd);
		return 1;
	}
	if (!(need & ~(**pp)->acc)) {
		close(nfd);
		return 0;
	}
	rc = carry((**pp)->fd, nfd);
	if (rc) {
		close(nfd); /* and what it took with it */
		return rc;
	}
	close((**pp)->fd);
	(**pp)->fd = nfd;
	(**pp)->acc = got;
	return 0;
}

int srv_locks_set(struct srv_locks *l, int fd, uint32_t oflags,
		  const struct dafs_m_lock_req *q)
{
	struct srv_lockfd **pp, *fresh = NULL;
	uint32_t acc = oflags & DAFS_O_ACCMODE;
	unsigned need = acc_needed(q), got;
	struct lkey k;
	int rc, nfd, created = 0, reserved = 0;

	rc = check(q, 0);
	if (rc)
		return rc;
	/* fcntl(2)'s rule; flock(2) has none */
	if (q->kind == DAFS_LOCK_POSIX &&
	    ((q->type == DAFS_LOCK_READ && acc == DAFS_O_WRONLY) ||
	     (q->type == DAFS_LOCK_WRITE && acc == DAFS_O_RDONLY)))
		return -EBADF;
	rc = key_of(fd, q, &k);
	if (rc)
		return rc;

	pthread_mutex_lock(&l->lock);
	if (l->closed) {
		rc = -DAFS_EBADSESSION;
		goto out;
	}
	if (!l->tab) {
		l->tab = calloc(NBUCKETS, sizeof(*l->tab));
		if (!l->tab) {
			rc = -ENOMEM;
			goto out;
		}
	}
again:
	pp = slot(l, &k);
	if (!*pp) {
		/* nothing held: nothing to release, and nothing opened for
		 * an unlock */
		if (q->type == DAFS_LOCK_UNLOCK)
			goto out;
		/* the server's share first, held across the open: what
		 * the budget counts is never exceeded, even for a moment */
		if (l->n >= l->max || !budget_take(l->budget)) {
			rc = -ENOLCK;
			goto out;
		}
		reserved = 1;
		/* the open may take a while: not under the lock */
		pthread_mutex_unlock(&l->lock);
		nfd = reopen(fd, oflags, acc_wanted(q, oflags), 1, &got);
		if (nfd < 0) {
			budget_give(l->budget);
			return nfd;
		}
		fresh = calloc(1, sizeof(*fresh));
		if (!fresh) {
			close(nfd);
			budget_give(l->budget);
			return -ENOMEM;
		}
		fresh->owner = k.owner;
		fresh->dev = k.dev;
		fresh->ino = k.ino;
		fresh->kind = k.kind;
		fresh->fd = nfd;
		fresh->acc = got;
		pthread_mutex_lock(&l->lock);
		if (l->closed) {
			rc = -DAFS_EBADSESSION;
			goto out;
		}
		/* another request of the owner may have made it meanwhile */
		pp = slot(l, &k);
		if (*pp || l->n >= l->max) {
			rc = *pp ? 0 : -ENOLCK;
			close(fresh->fd);
			free(fresh);
			fresh = NULL;
			budget_give(l->budget);
			reserved = 0;
			if (rc)
				goto out;
		} else {
			*pp = fresh;
			fresh = NULL;
			reserved = 0; /* the entry's now: drop() gives it */
			l->n++;
			created = 1;
		}
	}
	if (q->type == DAFS_LOCK_UNLOCK &&
	    (q->kind == DAFS_LOCK_FLOCK || (!q->start && !q->len))) {
		/* all of it: the descriptor goes, and its locks with it */
		drop(l, pp);
		goto out;
	}
	if (need & ~(*pp)->acc) {
		/* a write lock for an owner whose locks so far came through
		 * read-only opens (or a read lock, its descriptor
		 * write-only) */
		rc = upgrade(l, &pp, &k, fd, oflags, need);
		if (rc == 1)
			goto again; /* unlocked meanwhile: a new one */
		if (rc)
			goto out;
	}
	rc = apply((*pp)->fd, q);
	/* a refused first lock keeps no descriptor: a client that gives
	 * up must not be left holding one */
	if (rc && created)
		drop(l, pp);
out:
	pthread_mutex_unlock(&l->lock);
	if (fresh) { /* the session ended meanwhile */
		close(fresh->fd);
		free(fresh);
	}
	if (reserved)
		budget_give(l->budget);
	return rc;
}

/* F_OFD_GETLK of @q on @fd into *@out. */
static int getlk(int fd, const struct dafs_m_lock_req *q,
		 struct dafs_m_lockt_rep *out)
{
	struct flock fl = {0};

	fl.l_type = q->type == DAFS_LOCK_READ ? F_RDLCK : F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)q->start;
	fl.l_len = (off_t)q->len;
	if (fcntl(fd, F_OFD_GETLK, &fl))
		return -errno;
	out->type = fl.l_type == F_UNLCK   ? DAFS_LOCK_UNLOCK
		    : fl.l_type == F_RDLCK ? DAFS_LOCK_READ
					   : DAFS_LOCK_WRITE;
	out->start = fl.l_type == F_UNLCK ? 0 : (uint64_t)fl.l_start;
	out->len = fl.l_type == F_UNLCK ? 0 : (uint64_t)fl.l_len;
	return 0;
}

int srv_locks_test(struct srv_locks *l, int fd, uint32_t oflags,
		   const struct dafs_m_lock_req *q,
		   struct dafs_m_lockt_rep *out)
{
	struct srv_lockfd **pp;
	struct lkey k;
	unsigned got;
	int rc, nfd;

	rc = check(q, 1);
	if (!rc)
		rc = key_of(fd, q, &k);
	if (rc)
		return rc;
	pthread_mutex_lock(&l->lock);
	if (l->closed) {
		pthread_mutex_unlock(&l->lock);
		return -DAFS_EBADSESSION;
	}
	/* through the owner's own descriptor, its own locks do not count */
	pp = l->tab ? slot(l, &k) : NULL;
	if (pp && *pp) {
		rc = getlk((*pp)->fd, q, out);
		pthread_mutex_unlock(&l->lock);
		return rc;
	}
	pthread_mutex_unlock(&l->lock);
	/* an owner without locks: any lock conflicts, so a fresh
	 * description asks; read-only, F_OFD_GETLK checks no mode */
	nfd = reopen(fd, oflags, ACC_R, 1, &got);
	if (nfd < 0)
		return nfd;
	rc = getlk(nfd, q, out);
	close(nfd);
	return rc;
}
