/*
 * regcache.c - the pin-down registration cache (regcache.h,
 * docs/regcache.md).
 *
 * Structures, all under c->lock:
 *   - an interval tree (itree.c) of the cached entries, keyed by their
 *     page-rounded span: a lookup needs an entry that *contains* the
 *     buffer, which an exact-address hash cannot answer;
 *   - the LRU list of cached entries nobody uses (refs 0), most recent
 *     first; eviction takes from its tail;
 *   - entries in use are in the tree but not on the LRU, so they are never
 *     evicted; an entry invalidated while in use leaves the tree
 *     ("detached") and is deregistered by its last put.
 *
 * The userfaultfd monitor: every cached span is registered with the
 * cache's userfaultfd in write-protect mode, which delivers no faults at
 * all (no page is ever write-protected) but does deliver the UNMAP,
 * REMOVE (madvise DONTNEED/REMOVE) and REMAP events of those ranges. The
 * kernel holds munmap/madvise/mremap until the event is read, so a thread
 * reads them (the caller of munmap may be the only other thread). It only
 * reads, under c->evlock, into c->pend; lookups apply pending events under
 * c->lock before they search. Since the event of a returned munmap has been
 * read, and whoever read it held evlock while putting it in pend, a lookup
 * after that returns sees it. With DAFS_RC_STRICT a lookup also reads the
 * events nobody has read yet (memory unmapped by a thread still inside
 * munmap and already mapped anew by another).
 *
 * Deadlock rules: nothing that can unmap memory (free, the transport's
 * dereg_mr) runs under evlock, and the monitor thread does nothing but
 * read(2) and poll(2): a thread that unmaps a watched range waits only for
 * the monitor, which never waits for c->lock. Deregistrations are collected
 * under c->lock and done after it is dropped (a verbs dereg is slow).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "itree.h"
#include "regcache.h"

#define PEND_MAX 256 /* events read, not yet applied; beyond: flush all */
#define BATCH 32

#define RC_INDEXED 0x1 /* in the tree: lookups hit it */
#define RC_LRU 0x2     /* on the LRU (indexed, refs 0) */
#define RC_UFFD 0x4    /* its span is registered with the monitor */
#define RC_PRIVATE 0x8 /* never cached: deregistered by its put */

struct rc_entry {
	struct dafs_rc_entry pub; /* first */
	struct dafs_regcache *c;
	struct dafs_itree_node node; /* the span */
	unsigned access;
	unsigned refs;
	unsigned flags;
	struct rc_entry *prev, *next; /* LRU */
	struct rc_entry *victim;      /* a collection list */
};

struct dafs_regcache {
	const struct dafs_tp_ops *tp;
	struct dafs_domain *dom;
	uintptr_t pagemask;
	int strict;

	pthread_mutex_t lock; /* everything down to the monitor */
	struct dafs_itree tree;
	struct rc_entry lru;	/* sentinel: next is the most recent */
	struct rc_entry *grave; /* to deregister once the lock is dropped */
	uint64_t max_entries, max_bytes;
	struct dafs_regcache_stats st;

	/* the monitor; uffd and wakefd are fixed after new() */
	int uffd, wakefd;
	pthread_t thread;
	int running;
	pthread_mutex_t evlock; /* below; held around read(2) and copies only */
	pthread_cond_t evcv;
	struct uffd_msg pend[PEND_MAX];
	unsigned npend;
	int overflow; /* events were lost: invalidate everything */
	int paused, stop;
};

static struct rc_entry *of_node(struct dafs_itree_node *n)
{
	return container_of(n, struct rc_entry, node);
}

static int debug_on(void)
{
	const char *s = getenv("DAFS_REGCACHE_DEBUG");

	return s && *s && strcmp(s, "0");
}

/* ---- the monitor ---- */

static int uffd_open(void)
{
	struct uffdio_api api;
	int fd, e;

	fd = (int)syscall(SYS_userfaultfd,
			  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL) /* before 5.11: no user-mode-only */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#ifdef USERFAULTFD_IOC_NEW
	if (fd < 0 && errno == EPERM) {
		/* vm.unprivileged_userfaultfd=0 without user-mode-only
		 * support: the device node may still be open to us */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW,
				   O_CLOEXEC | O_NONBLOCK);
			e = errno;
			close(dev);
			errno = e;
		}
	}
#endif
	if (fd < 0)
		return -errno;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	/* FLAG_WP: write-protect mode exists, which watches without faults */
	api.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
		       UFFD_FEATURE_EVENT_REMAP |
		       UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (ioctl(fd, UFFDIO_API, &api)) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* A write-protect fault never happens (no page is write-protected); should
 * one come, release the faulting thread rather than leave it hanging. */
static void unblock(struct dafs_regcache *c, const struct uffd_msg *m)
{
	struct uffdio_writeprotect wp;

	memset(&wp, 0, sizeof(wp));
	wp.range.start = m->arg.pagefault.address & ~(uint64_t)c->pagemask;
	wp.range.len = c->pagemask + 1;
	ioctl(c->uffd, UFFDIO_WRITEPROTECT, &wp);
}

/* Read every event the kernel holds into pend (evlock held). */
static void ev_read(struct dafs_regcache *c)
{
	struct uffd_msg m;
	ssize_t n;

	for (;;) {
		n = read(c->uffd, &m, sizeof(m));
		if (n != (ssize_t)sizeof(m)) {
			if (n < 0 && errno == EINTR)
				continue;
			return; /* EAGAIN: no more */
		}
		if (m.event == UFFD_EVENT_PAGEFAULT) {
			unblock(c, &m);
			continue;
		}
		if (c->npend == PEND_MAX)
			c->overflow = 1;
		else
			c->pend[c->npend++] = m;
	}
}

static void *monitor_main(void *arg)
{
	struct dafs_regcache *c = arg;
	struct pollfd p[2];

	p[0].fd = c->uffd;
	p[0].events = POLLIN;
	p[1].fd = c->wakefd;
	p[1].events = POLLIN;
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&c->evlock);
		while (c->paused && !c->stop)
			pthread_cond_wait(&c->evcv, &c->evlock);
		if (c->stop) {
			pthread_mutex_unlock(&c->evlock);
			break;
		}
		ev_read(c);
		pthread_mutex_unlock(&c->evlock);
	}
	return NULL;
}

static int readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

/* ---- the tree and the LRU (c->lock held) ---- */

static void lru_del(struct rc_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->flags &= ~RC_LRU;
}

static void lru_push(struct dafs_regcache *c, struct rc_entry *e)
{
	e->next = c->lru.next;
	e->prev = &c->lru;
	c->lru.next->prev = e;
	c->lru.next = e;
	e->flags |= RC_LRU;
}

static void unreg(struct dafs_regcache *c, uintptr_t a, uintptr_t b)
{
	struct uffdio_range u;

	if (a >= b)
		return;
	u.start = a;
	u.len = b - a;
	/* may fail where part of it is gone: nothing to undo there */
	ioctl(c->uffd, UFFDIO_UNREGISTER, &u);
}

/* Unregister the parts of [pos, end) that no cached entry covers, except
 * [hole_a, hole_b) (memory that is gone). Entries come in start order. */
struct gaps {
	struct dafs_regcache *c;
	uintptr_t pos, end, hole_a, hole_b;
};

static void gap(struct gaps *g, uintptr_t a, uintptr_t b)
{
	if (b > g->end)
		b = g->end;
	if (a >= b)
		return;
	if (g->hole_b <= a || g->hole_a >= b) {
		unreg(g->c, a, b);
		return;
	}
	unreg(g->c, a, g->hole_a);
	unreg(g->c, g->hole_b, b);
}

static void gap_visit(struct dafs_itree_node *n, void *arg)
{
	struct gaps *g = arg;

	if (n->start > g->pos)
		gap(g, g->pos, n->start);
	if (n->end > g->pos)
		g->pos = n->end;
}

static void unwatch(struct dafs_regcache *c, uintptr_t a, uintptr_t b,
		    uintptr_t hole_a, uintptr_t hole_b)
{
	struct gaps g = {c, a, b, hole_a, hole_b};

	dafs_itree_overlaps(&c->tree, a, b, gap_visit, &g);
	gap(&g, g.pos, b);
}

/* Take @e out of the tree (and the LRU); it stays registered. */
static void unindex(struct dafs_regcache *c, struct rc_entry *e,
		    uintptr_t hole_a, uintptr_t hole_b)
{
	if (e->flags & RC_LRU)
		lru_del(e);
	dafs_itree_remove(&c->tree, &e->node);
	e->flags &= ~RC_INDEXED;
	c->st.entries--;
	c->st.bytes -= e->node.end - e->node.start;
	if (e->flags & RC_UFFD)
		unwatch(c, e->node.start, e->node.end, hole_a, hole_b);
	e->flags &= ~RC_UFFD;
}

static void bury(struct dafs_regcache *c, struct rc_entry *e)
{
	e->victim = c->grave;
	c->grave = e;
}

/* Deregister and free what was buried (c->lock not held). */
static void dig(struct dafs_regcache *c, struct rc_entry *grave)
{
	struct rc_entry *e;

	while ((e = grave)) {
		grave = e->victim;
		c->tp->dereg_mr(e->pub.mr);
		free(e);
	}
}

static struct rc_entry *take_grave(struct dafs_regcache *c)
{
	struct rc_entry *g = c->grave;

	c->grave = NULL;
	return g;
}

static void evict(struct dafs_regcache *c, uint64_t max_entries,
		  uint64_t max_bytes)
{
	struct rc_entry *e;

	while ((c->st.entries > max_entries || c->st.bytes > max_bytes) &&
	       c->lru.prev != &c->lru) {
		e = c->lru.prev;
		unindex(c, e, 0, 0);
		c->st.evictions++;
		bury(c, e);
	}
}

static void collect(struct dafs_itree_node *n, void *arg)
{
	struct rc_entry **list = arg, *e = of_node(n);

	e->victim = *list;
	*list = e;
}

/* The memory [a, b) changed under the cache; [hole_a, hole_b) of it is
 * no longer mapped. */
static void invalidate(struct dafs_regcache *c, uintptr_t a, uintptr_t b,
		       uintptr_t hole_a, uintptr_t hole_b)
{
	struct rc_entry *list = NULL, *e;

	dafs_itree_overlaps(&c->tree, a, b, collect, &list);
	while ((e = list)) {
		list = e->victim;
		unindex(c, e, hole_a, hole_b);
		c->st.invalidations++;
		if (!e->refs)
			bury(c, e);
		/* else detached: its last put deregisters it */
	}
}

static void invalidate_all(struct dafs_regcache *c)
{
	invalidate(c, 0, UINTPTR_MAX, 0, 0);
}

static void apply(struct dafs_regcache *c, const struct uffd_msg *m)
{
	uintptr_t a, b, to;

	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		a = (uintptr_t)m->arg.remove.start;
		b = (uintptr_t)m->arg.remove.end;
		invalidate(c, a, b, a, b);
		break;
	case UFFD_EVENT_REMOVE:
		/* still mapped, but the pages a registration pinned are
		 * gone: the next touch gets new ones */
		a = (uintptr_t)m->arg.remove.start;
		b = (uintptr_t)m->arg.remove.end;
		invalidate(c, a, b, 0, 0);
		break;
	case UFFD_EVENT_REMAP:
		a = (uintptr_t)m->arg.remap.from;
		b = a + (uintptr_t)m->arg.remap.len;
		invalidate(c, a, b, a, b);
		/* the moved range stays registered with us at its new
		 * place; nothing is cached there */
		to = (uintptr_t)m->arg.remap.to;
		unwatch(c, to, to + (uintptr_t)m->arg.remap.len, 0, 0);
		break;
	default:
		break;
	}
}

/* Apply every event read so far and, if strict, those not yet read. */
static void sync_events(struct dafs_regcache *c)
{
	struct uffd_msg batch[BATCH];
	unsigned n;
	int ovf;

	do {
		pthread_mutex_lock(&c->evlock);
		if (c->strict && readable(c->uffd))
			ev_read(c);
		n = c->npend < BATCH ? c->npend : BATCH;
		if (n) {
			memcpy(batch, c->pend, n * sizeof(*batch));
			c->npend -= n;
			memmove(c->pend, c->pend + n,
				c->npend * sizeof(*batch));
		}
		ovf = c->overflow;
		c->overflow = 0;
		pthread_mutex_unlock(&c->evlock);
		if (ovf)
			invalidate_all(c);
		for (unsigned i = 0; i < n; i++)
			apply(c, &batch[i]);
	} while (n == BATCH);
}

/* ---- API ---- */

static int entry_ok(const struct dafs_itree_node *n, void *arg)
{
	const unsigned *access = arg;

	return (of_node((struct dafs_itree_node *)n)->access & *access) ==
	       *access;
}

int dafs_regcache_new(const struct dafs_tp_ops *tp, struct dafs_domain *dom,
		      const struct dafs_regcache_cfg *cfg,
		      struct dafs_regcache **out)
{
	struct dafs_regcache *c;
	long page = sysconf(_SC_PAGESIZE);
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->tp = tp;
	c->dom = dom;
	c->pagemask = (uintptr_t)(page > 0 ? page : 4096) - 1;
	c->strict = !!(cfg->flags & DAFS_RC_STRICT);
	c->uffd = c->wakefd = -1;
	c->lru.next = c->lru.prev = &c->lru;
	dafs_itree_init(&c->tree, (uint64_t)(uintptr_t)c);
	c->max_entries = c->st.max_entries = cfg->max_entries;
	c->max_bytes = c->st.max_bytes = cfg->max_bytes;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->evlock, NULL);
	pthread_cond_init(&c->evcv, NULL);

	c->st.mode = DAFS_RC_NO_MONITOR;
	if (cfg->flags & DAFS_RC_NO_UFFD) {
		c->st.monitor_err = -ENOTSUP;
		goto done;
	}
	c->uffd = uffd_open();
	if (c->uffd < 0) {
		c->st.monitor_err = c->uffd;
		goto done;
	}
	c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wakefd < 0) {
		c->st.monitor_err = -errno;
		goto no_monitor;
	}
	err = pthread_create(&c->thread, NULL, monitor_main, c);
	if (err) {
		c->st.monitor_err = -err;
		goto no_monitor;
	}
	c->running = 1;
	c->st.mode = DAFS_RC_ON;
	goto done;

no_monitor:
	if (c->wakefd >= 0)
		close(c->wakefd);
	close(c->uffd);
	c->uffd = c->wakefd = -1;
done:
	if (c->st.mode != DAFS_RC_ON && debug_on())
		fprintf(stderr,
			"dafs regcache: userfaultfd unavailable (%s): "
			"registering memory for each use, no caching\n",
			strerror(-c->st.monitor_err));
	*out = c;
	return 0;
}

void dafs_regcache_free(struct dafs_regcache *c)
{
	uint64_t one = 1;

	if (!c)
		return;
	if (c->running) {
		pthread_mutex_lock(&c->evlock);
		c->stop = 1;
		pthread_cond_broadcast(&c->evcv);
		pthread_mutex_unlock(&c->evlock);
		if (write(c->wakefd, &one, sizeof(one)) < 0)
			abort(); /* an eventfd write cannot fail here */
		pthread_join(c->thread, NULL);
	}
	pthread_mutex_lock(&c->lock);
	/* no events can matter any more: closing the userfaultfd drops
	 * every range registered with it */
	if (c->uffd >= 0)
		close(c->uffd);
	c->uffd = -1;
	while (c->lru.prev != &c->lru) {
		struct rc_entry *e = c->lru.prev;

		e->flags &= ~RC_UFFD;
		unindex(c, e, 0, 0);
		bury(c, e);
	}
	pthread_mutex_unlock(&c->lock);
	dig(c, take_grave(c));
	if (c->wakefd >= 0)
		close(c->wakefd);
	pthread_cond_destroy(&c->evcv);
	pthread_mutex_destroy(&c->evlock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* reg_mr; on a shortage, drop every unused registration and try again. */
static int reg(struct dafs_regcache *c, void *addr, size_t len, unsigned access,
	       struct dafs_mr **mr)
{
	int rc = c->tp->reg_mr(c->dom, addr, len, access, mr);

	if (rc == -ENOMEM || rc == -EAGAIN) {
		dafs_regcache_flush(c);
		rc = c->tp->reg_mr(c->dom, addr, len, access, mr);
	}
	return rc;
}

static int get_private(struct dafs_regcache *c, void *addr, size_t len,
		       unsigned access, struct rc_entry **out)
{
	struct rc_entry *e;
	int rc;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	rc = reg(c, addr, len, access, &e->pub.mr);
	if (rc) {
		free(e);
		return rc;
	}
	e->c = c;
	e->refs = 1;
	e->flags = RC_PRIVATE;
	*out = e;
	return 0;
}

int dafs_regcache_get(struct dafs_regcache *c, void *addr, size_t len,
		      unsigned access, struct dafs_rc_entry **out)
{
	uintptr_t a = (uintptr_t)addr, s, end;
	struct dafs_itree_node *n;
	struct rc_entry *e, *grave;
	struct uffdio_register r;
	struct dafs_mr *mr;
	int rc;

	if (!len || a + len < a || a + len > UINTPTR_MAX - c->pagemask)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (c->st.mode != DAFS_RC_ON || !c->max_entries || !c->max_bytes) {
		c->st.uncached++;
		pthread_mutex_unlock(&c->lock);
		rc = get_private(c, addr, len, access, &e);
		if (!rc)
			*out = &e->pub;
		return rc;
	}
	sync_events(c);
	n = dafs_itree_find(&c->tree, a, a + len, entry_ok, &access);
	if (n) {
		e = of_node(n);
		if (e->flags & RC_LRU)
			lru_del(e);
		e->refs++;
		c->st.hits++;
		grave = take_grave(c);
		pthread_mutex_unlock(&c->lock);
		dig(c, grave);
		*out = &e->pub;
		return 0;
	}
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);

	/* a miss: register the whole pages, without the lock (a verbs
	 * registration takes long) */
	s = a & ~c->pagemask;
	end = (a + len + c->pagemask) & ~c->pagemask;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	rc = reg(c, (void *)s, end - s, access, &mr);
	if (rc) {
		free(e);
		return rc;
	}
	e->pub.mr = mr;
	e->c = c;
	e->node.start = s;
	e->node.end = end;
	e->access = access;
	e->refs = 1;

	pthread_mutex_lock(&c->lock);
	/* events up to now concern memory before this registration */
	sync_events(c);
	n = dafs_itree_find(&c->tree, a, a + len, entry_ok, &access);
	if (n) {
		/* another thread cached it meanwhile */
		struct rc_entry *o = of_node(n);

		if (o->flags & RC_LRU)
			lru_del(o);
		o->refs++;
		c->st.hits++;
		grave = take_grave(c);
		pthread_mutex_unlock(&c->lock);
		dig(c, grave);
		c->tp->dereg_mr(mr);
		free(e);
		*out = &o->pub;
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.range.start = s;
	r.range.len = end - s;
	r.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(c->uffd, UFFDIO_REGISTER, &r)) {
		/* memory the monitor cannot watch (a file mapping, another
		 * userfaultfd's range): use it once */
		e->flags = RC_PRIVATE;
		c->st.uncached++;
		pthread_mutex_unlock(&c->lock);
		*out = &e->pub;
		return 0;
	}
	e->flags = RC_INDEXED | RC_UFFD;
	dafs_itree_insert(&c->tree, &e->node);
	c->st.misses++;
	c->st.entries++;
	c->st.bytes += end - s;
	evict(c, c->max_entries, c->max_bytes);
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);
	*out = &e->pub;
	return 0;
}

void dafs_regcache_put(struct dafs_rc_entry *pub)
{
	struct rc_entry *e = (struct rc_entry *)pub, *grave;
	struct dafs_regcache *c = e->c;

	if (e->flags & RC_PRIVATE) {
		c->tp->dereg_mr(e->pub.mr);
		free(e);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (!--e->refs) {
		if (e->flags & RC_INDEXED) {
			lru_push(c, e);
			evict(c, c->max_entries, c->max_bytes);
		} else {
			bury(c, e);
		}
	}
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);
}

void dafs_regcache_set_limits(struct dafs_regcache *c, uint64_t max_entries,
			      uint64_t max_bytes)
{
	struct rc_entry *grave;

	pthread_mutex_lock(&c->lock);
	c->max_entries = c->st.max_entries = max_entries;
	c->max_bytes = c->st.max_bytes = max_bytes;
	evict(c, max_entries, max_bytes);
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);
}

void dafs_regcache_flush(struct dafs_regcache *c)
{
	struct rc_entry *grave;

	pthread_mutex_lock(&c->lock);
	evict(c, 0, 0);
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);
}

void dafs_regcache_stats(struct dafs_regcache *c,
			 struct dafs_regcache_stats *st)
{
	struct rc_entry *grave;

	pthread_mutex_lock(&c->lock);
	if (c->st.mode == DAFS_RC_ON)
		sync_events(c); /* what the caller just unmapped counts */
	*st = c->st;
	if (st->mode == DAFS_RC_ON && (!c->max_entries || !c->max_bytes))
		st->mode = DAFS_RC_OFF;
	grave = take_grave(c);
	pthread_mutex_unlock(&c->lock);
	dig(c, grave);
}

void dafs_regcache__pause_monitor(struct dafs_regcache *c, int on)
{
	pthread_mutex_lock(&c->evlock);
	c->paused = on;
	pthread_cond_broadcast(&c->evcv);
	pthread_mutex_unlock(&c->evlock);
}
