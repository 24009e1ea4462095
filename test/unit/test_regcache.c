/*
 * test_regcache.c - the pin-down registration cache (src/cache/regcache.c)
 * over the TCP transport.
 *
 * What the tests look at is what a user of the cache would notice: whether
 * a lookup registered (the transport's count of live regions, the keys it
 * still accepts), the statistics, and - for memory freed and mapped again
 * at the same address - the bytes a peer reads with RDMA READ over a
 * loopback connection. Every case runs with the userfaultfd monitor and,
 * where it makes sense, without it (the fallback: register per use).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cache/regcache.h"
#include "transport/tcp_i.h"

#define PG 4096
#define ACC_ALL                                                                \
	(DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_WRITE | DAFS_ACC_REMOTE_READ)
#define TMO_MS 5000

/* ASan keeps freed blocks in quarantine, so a free would unmap nothing
 * for a long time; without one a large block is unmapped at free, as
 * glibc does. (Read by ASan builds only.) */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "quarantine_size_mb=0";
}

static const struct dafs_tp_ops *tp = &dafs_tp_tcp;
static struct dafs_domain *dom;

static void setup(void)
{
	ck_assert_int_eq(tp->domain_new(&dom), 0);
}

static void teardown(void)
{
	tp->domain_free(dom);
}

/* Regions the transport holds now. */
static uint32_t nlive(void)
{
	struct tcp_domain *d = container_of(dom, struct tcp_domain, base);
	uint32_t n;

	pthread_mutex_lock(&d->lock);
	n = d->nlive;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* Does the transport still accept @rkey for [addr, addr + len)? */
static int key_live(uint32_t rkey, const void *addr, size_t len)
{
	struct tcp_domain *d = container_of(dom, struct tcp_domain, base);
	struct tcp_mr *mr;

	if (tcp_mr_get(d, rkey, true, addr, len, 0, &mr))
		return 0;
	tcp_mr_put(d, mr);
	return 1;
}

static struct dafs_regcache *cache(uint64_t entries, uint64_t bytes,
				   unsigned flags)
{
	struct dafs_regcache_cfg cfg = {entries, bytes, flags};
	struct dafs_regcache *c;

	ck_assert_int_eq(dafs_regcache_new(tp, dom, &cfg, &c), 0);
	return c;
}

/* A monitored cache, or skip the test if this machine has none. */
static struct dafs_regcache *cache_on(uint64_t entries, uint64_t bytes,
				      unsigned flags)
{
	struct dafs_regcache *c = cache(entries, bytes, flags);
	struct dafs_regcache_stats st;

	dafs_regcache_stats(c, &st);
	ck_assert_msg(st.mode == DAFS_RC_ON,
		      "no userfaultfd here (%s): the monitored cases need it",
		      strerror(-st.monitor_err));
	return c;
}

static struct dafs_regcache_stats stats(struct dafs_regcache *c)
{
	struct dafs_regcache_stats st;

	dafs_regcache_stats(c, &st);
	return st;
}

static uint8_t *map(size_t pages)
{
	void *p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 0x11, pages * PG);
	return p;
}

static struct dafs_rc_entry *get(struct dafs_regcache *c, void *addr,
				 size_t len)
{
	struct dafs_rc_entry *e;

	ck_assert_int_eq(dafs_regcache_get(c, addr, len, ACC_ALL, &e), 0);
	ck_assert_ptr_nonnull(e->mr);
	/* whatever it is, the registration contains the buffer */
	ck_assert((uint8_t *)e->mr->addr <= (uint8_t *)addr);
	ck_assert((uint8_t *)e->mr->addr + e->mr->len >= (uint8_t *)addr + len);
	ck_assert((e->mr->access & ACC_ALL) == ACC_ALL);
	return e;
}

/* get + put; returns the rkey it had */
static uint32_t touch(struct dafs_regcache *c, void *addr, size_t len)
{
	struct dafs_rc_entry *e = get(c, addr, len);
	uint32_t k = e->mr->rkey;

	dafs_regcache_put(e);
	return k;
}

#define ST_EQ(st, field, v) ck_assert_uint_eq((st).field, (v))

/* ---- the cache ---- */

START_TEST(test_hit)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	struct dafs_rc_entry *e1, *e2;
	uint8_t *b = map(4);
	struct dafs_regcache_stats st;

	e1 = get(c, b, PG);
	ck_assert_ptr_eq(e1->mr->addr, b);
	ck_assert_uint_eq(e1->mr->len, PG);
	dafs_regcache_put(e1);
	/* lazy: still registered */
	ck_assert_uint_eq(nlive(), 1);
	e2 = get(c, b, PG);
	ck_assert_ptr_eq(e2, e1);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_put(e2);
	st = stats(c);
	ST_EQ(st, hits, 1);
	ST_EQ(st, misses, 1);
	ST_EQ(st, entries, 1);
	ST_EQ(st, bytes, PG);
	ST_EQ(st, evictions, 0);
	ST_EQ(st, invalidations, 0);
	ST_EQ(st, uncached, 0);
	dafs_regcache_free(c);
	ck_assert_uint_eq(nlive(), 0);
	munmap(b, 4 * PG);
}
END_TEST

START_TEST(test_containment)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	struct dafs_rc_entry *e, *f;
	uint8_t *b = map(8);
	struct dafs_regcache_stats st;

	/* rounded out to the pages it touches: [b, b + 2 pages) */
	e = get(c, b + 100, 5000);
	ck_assert_ptr_eq(e->mr->addr, b);
	ck_assert_uint_eq(e->mr->len, 2 * PG);
	/* buffers inside it hit, in use or not */
	f = get(c, b + PG, 100);
	ck_assert_ptr_eq(f, e);
	dafs_regcache_put(f);
	dafs_regcache_put(e);
	ck_assert_ptr_eq(get(c, b + 2 * PG - 192, 192), e);
	dafs_regcache_put(e);
	ck_assert_ptr_eq(get(c, b, 1), e);
	dafs_regcache_put(e);
	/* small neighbours in one page share a registration */
	f = get(c, b + 5 * PG + 10, 20);
	ck_assert_ptr_eq(get(c, b + 5 * PG + 2000, 20), f);
	dafs_regcache_put(f);
	dafs_regcache_put(f);
	st = stats(c);
	ST_EQ(st, hits, 4);
	ST_EQ(st, misses, 2);
	/* one byte past it: a new registration */
	f = get(c, b + 2 * PG - 192, 193);
	ck_assert_ptr_ne(f, e);
	dafs_regcache_put(f);
	st = stats(c);
	ST_EQ(st, misses, 3);
	ST_EQ(st, entries, 3);
	ck_assert_uint_eq(nlive(), 3);
	dafs_regcache_free(c);
	munmap(b, 8 * PG);
}
END_TEST

START_TEST(test_access)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	struct dafs_rc_entry *e, *f;
	uint8_t *b = map(1);

	ck_assert_int_eq(dafs_regcache_get(c, b, 64, DAFS_ACC_LOCAL_WRITE, &e),
			 0);
	dafs_regcache_put(e);
	/* more rights than the cached one grants: a new registration */
	ck_assert_int_eq(dafs_regcache_get(c, b, 64, ACC_ALL, &f), 0);
	ck_assert_ptr_ne(f, e);
	dafs_regcache_put(f);
	/* fewer: either hits */
	ck_assert_int_eq(dafs_regcache_get(c, b, 64, DAFS_ACC_LOCAL_WRITE, &e),
			 0);
	dafs_regcache_put(e);
	ck_assert_uint_eq(stats(c).hits, 1);
	ck_assert_uint_eq(stats(c).misses, 2);
	/* an empty or wrapping range */
	ck_assert_int_eq(dafs_regcache_get(c, b, 0, ACC_ALL, &e), -EINVAL);
	ck_assert_int_eq(dafs_regcache_get(c, (void *)(UINTPTR_MAX - 10), 20,
					   ACC_ALL, &e),
			 -EINVAL);
	dafs_regcache_free(c);
	munmap(b, PG);
}
END_TEST

/* Four one-page buffers two pages apart (no shared page). */
static uint8_t *four(uint8_t **p)
{
	uint8_t *b = map(8);

	for (int i = 0; i < 4; i++)
		p[i] = b + 2 * i * PG;
	return b;
}

START_TEST(test_lru_order)
{
	struct dafs_regcache *c = cache_on(3, 1 << 20, 0);
	uint8_t *p[4], *b = four(p);
	uint32_t k[4];
	struct dafs_regcache_stats st;

	for (int i = 0; i < 3; i++)
		k[i] = touch(c, p[i], PG);
	/* A used again: B is now the least recently used */
	ck_assert_uint_eq(touch(c, p[0], PG), k[0]);
	k[3] = touch(c, p[3], PG);
	st = stats(c);
	ST_EQ(st, evictions, 1);
	ST_EQ(st, entries, 3);
	ck_assert_uint_eq(nlive(), 3);
	ck_assert(!key_live(k[1], p[1], PG));
	ck_assert(key_live(k[0], p[0], PG));
	ck_assert(key_live(k[2], p[2], PG));
	ck_assert(key_live(k[3], p[3], PG));
	/* C is the oldest now: B coming back evicts it */
	ck_assert_uint_eq(touch(c, p[0], PG), k[0]);
	ck_assert_uint_eq(touch(c, p[3], PG), k[3]);
	touch(c, p[1], PG);
	ck_assert(!key_live(k[2], p[2], PG));
	st = stats(c);
	ST_EQ(st, evictions, 2);
	ST_EQ(st, hits, 3);
	ST_EQ(st, misses, 5);
	dafs_regcache_free(c);
	munmap(b, 8 * PG);
}
END_TEST

START_TEST(test_byte_limit)
{
	struct dafs_regcache *c = cache_on(100, 3 * PG, 0);
	uint8_t *p[4], *b = four(p);
	struct dafs_regcache_stats st;

	touch(c, p[0], PG);
	touch(c, p[1], PG);
	touch(c, p[2], PG);
	st = stats(c);
	ST_EQ(st, bytes, 3 * PG);
	ST_EQ(st, evictions, 0);
	/* two pages more: the two oldest go */
	touch(c, p[3], 2 * PG);
	st = stats(c);
	ST_EQ(st, evictions, 2);
	ST_EQ(st, bytes, 3 * PG);
	ST_EQ(st, entries, 2);
	ck_assert_uint_eq(nlive(), 2);
	/* one registration bigger than the whole limit: used, then gone */
	touch(c, b, 8 * PG);
	st = stats(c);
	ST_EQ(st, entries, 0);
	ST_EQ(st, bytes, 0);
	ck_assert_uint_eq(nlive(), 0);
	/* new limits apply at once */
	touch(c, p[0], PG);
	touch(c, p[1], PG);
	dafs_regcache_set_limits(c, 1, 1 << 20);
	ST_EQ(stats(c), entries, 1);
	ST_EQ(stats(c), max_entries, 1);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_flush(c);
	ck_assert_uint_eq(nlive(), 0);
	dafs_regcache_free(c);
	munmap(b, 8 * PG);
}
END_TEST

START_TEST(test_refcount)
{
	struct dafs_regcache *c = cache_on(1, 1 << 20, 0);
	uint8_t *p[4], *b = four(p);
	struct dafs_rc_entry *a, *a2, *bb;
	struct dafs_regcache_stats st;

	a = get(c, p[0], PG);
	a2 = get(c, p[0], 10);
	ck_assert_ptr_eq(a, a2);
	bb = get(c, p[1], PG);
	/* two in use, limit one: nothing can go */
	st = stats(c);
	ST_EQ(st, entries, 2);
	ST_EQ(st, evictions, 0);
	ck_assert(key_live(a->mr->rkey, p[0], PG));
	ck_assert(key_live(bb->mr->rkey, p[1], PG));
	dafs_regcache_flush(c);
	ck_assert_uint_eq(nlive(), 2);
	dafs_regcache_set_limits(c, 0, 0);
	ck_assert_uint_eq(nlive(), 2);
	dafs_regcache_set_limits(c, 1, 1 << 20);
	/* still one user of a */
	dafs_regcache_put(a);
	ck_assert(key_live(a->mr->rkey, p[0], PG));
	ST_EQ(stats(c), evictions, 0);
	/* last user: a is over the limit and goes */
	dafs_regcache_put(a2);
	ST_EQ(stats(c), evictions, 1);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_put(bb);
	st = stats(c);
	ST_EQ(st, entries, 1);
	ST_EQ(st, evictions, 1);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_free(c);
	ck_assert_uint_eq(nlive(), 0);
	munmap(b, 8 * PG);
}
END_TEST

START_TEST(test_stats_values)
{
	struct dafs_regcache *c = cache_on(2, 1 << 20, 0);
	uint8_t *p[4], *b = four(p);
	struct dafs_regcache_stats st;

	touch(c, p[0], PG);	/* miss */
	touch(c, p[0], 100);	/* hit */
	touch(c, p[1], 2 * PG); /* miss */
	touch(c, p[2], PG);	/* miss, evicts p[0] */
	touch(c, p[1], PG);	/* hit */
	munmap(p[2], PG);	/* invalidates p[2] */
	st = stats(c);
	ST_EQ(st, hits, 2);
	ST_EQ(st, misses, 3);
	ST_EQ(st, evictions, 1);
	ST_EQ(st, invalidations, 1);
	ST_EQ(st, uncached, 0);
	ST_EQ(st, entries, 1);
	ST_EQ(st, bytes, 2 * PG);
	ST_EQ(st, max_entries, 2);
	ST_EQ(st, max_bytes, 1 << 20);
	ck_assert_int_eq(st.mode, DAFS_RC_ON);
	ck_assert_int_eq(st.monitor_err, 0);
	dafs_regcache_free(c);
	munmap(b, 8 * PG);
}
END_TEST

/* ---- memory that goes away ---- */

START_TEST(test_invalidate_munmap)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	uint8_t *b = map(16);
	struct dafs_rc_entry *e;
	struct dafs_regcache_stats st;
	uint32_t k;

	k = touch(c, b + PG, 4 * PG);
	touch(c, b + 8 * PG, PG);
	ck_assert_uint_eq(nlive(), 2);
	/* unmapping part of a cached range drops the whole registration */
	munmap(b + 2 * PG, PG);
	st = stats(c);
	ST_EQ(st, invalidations, 1);
	ST_EQ(st, entries, 1);
	ck_assert_uint_eq(nlive(), 1);
	ck_assert(!key_live(k, b + PG, PG));
	/* the remaining pages of that range are no longer watched: their
	 * unmap is nobody's event */
	munmap(b + PG, PG);
	ST_EQ(stats(c), invalidations, 1);

	/* unmapped while in use: off the cache at once, registered until
	 * its user is done */
	e = get(c, b + 8 * PG, PG);
	ST_EQ(stats(c), hits, 1);
	munmap(b + 8 * PG, PG);
	st = stats(c);
	ST_EQ(st, invalidations, 2);
	ST_EQ(st, entries, 0);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_put(e);
	ck_assert_uint_eq(nlive(), 0);
	dafs_regcache_free(c);
	munmap(b, 16 * PG);
}
END_TEST

START_TEST(test_invalidate_madvise)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	uint8_t *b = map(4);
	struct dafs_regcache_stats st;
	uint32_t k;

	k = touch(c, b, 4 * PG);
	ck_assert_int_eq(madvise(b + PG, PG, MADV_DONTNEED), 0);
	st = stats(c);
	ST_EQ(st, invalidations, 1);
	ST_EQ(st, entries, 0);
	ck_assert(!key_live(k, b, PG));
	/* still mapped (zeros now): usable, registered anew */
	ck_assert_uint_eq(b[PG], 0);
	ck_assert_uint_eq(b[0], 0x11);
	touch(c, b, 4 * PG);
	st = stats(c);
	ST_EQ(st, misses, 2);
	ST_EQ(st, hits, 0);
	ST_EQ(st, entries, 1);
	dafs_regcache_free(c);
	munmap(b, 4 * PG);
}
END_TEST

START_TEST(test_invalidate_mremap)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	uint8_t *b = map(8), *to;
	struct dafs_regcache_stats st;

	touch(c, b, 2 * PG);
	to = mremap(b, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED,
		    b + 4 * PG);
	ck_assert_ptr_eq(to, b + 4 * PG);
	st = stats(c);
	ST_EQ(st, invalidations, 1);
	ST_EQ(st, entries, 0);
	ck_assert_uint_eq(nlive(), 0);
	/* nothing is watched at the new place */
	munmap(to, 2 * PG);
	ST_EQ(stats(c), invalidations, 1);
	dafs_regcache_free(c);
	munmap(b, 8 * PG);
}
END_TEST

static int mapped(const void *p, size_t len)
{
	unsigned char vec[512];

	return mincore((void *)((uintptr_t)p & ~(uintptr_t)(PG - 1)), len,
		       vec) == 0 ||
	       errno != ENOMEM;
}

START_TEST(test_invalidate_free)
{
	struct dafs_regcache *c = cache_on(16, 64 << 20, 0);
	size_t len = 1 << 20;
	struct dafs_regcache_stats st;
	uintptr_t pa;
	uint8_t *p;

	/* glibc: a fixed threshold, so a 1 MiB block is its own mapping
	 * and free unmaps it (the dynamic one would move it to the heap) */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	p = malloc(len);
	ck_assert_ptr_nonnull(p);
	memset(p, 1, len);
	touch(c, p, len);
	ck_assert_uint_eq(nlive(), 1);
	pa = (uintptr_t)p;
	free(p);
	if (mapped((void *)(pa + PG), len - 2 * PG)) {
		/* an allocator that keeps freed memory mapped: the cached
		 * registration still describes live memory */
		printf("# free kept the block mapped; nothing to "
		       "invalidate\n");
		ST_EQ(stats(c), invalidations, 0);
	} else {
		st = stats(c);
		ST_EQ(st, invalidations, 1);
		ST_EQ(st, entries, 0);
		ck_assert_uint_eq(nlive(), 0);
	}
	dafs_regcache_free(c);
}
END_TEST

/* A loopback connection: a registers through the cache, b reads a's
 * memory with RDMA READ, as a server does for a write. */
struct conn {
	struct dafs_domain *bdom;
	struct dafs_cq *acq, *bcq;
	struct dafs_ep *a, *b;
	struct dafs_listener *l;
	uint8_t *dst; /* b's */
	struct dafs_mr *dmr;
};

static void conn_open(struct conn *x, size_t len)
{
	struct dafs_ep_attr at = {
		.max_send = 16, .max_recv = 16, .max_inline = 64};

	ck_assert_int_eq(tp->domain_new(&x->bdom), 0);
	ck_assert_int_eq(tp->cq_new(dom, 16, &x->acq), 0);
	ck_assert_int_eq(tp->cq_new(x->bdom, 16, &x->bcq), 0);
	ck_assert_int_eq(tp->listen(x->bdom, "127.0.0.1", 0, &x->l), 0);
	at.send_cq = at.recv_cq = x->acq;
	ck_assert_int_eq(tp->connect(dom, "127.0.0.1", tp->listener_port(x->l),
				     &at, &x->a),
			 0);
	at.send_cq = at.recv_cq = x->bcq;
	ck_assert_int_eq(tp->accept(x->l, &at, &x->b), 0);
	x->dst = malloc(len);
	ck_assert_ptr_nonnull(x->dst);
	ck_assert_int_eq(
		tp->reg_mr(x->bdom, x->dst, len, DAFS_ACC_LOCAL_WRITE, &x->dmr),
		0);
}

static void conn_close(struct conn *x)
{
	tp->dereg_mr(x->dmr);
	free(x->dst);
	tp->ep_free(x->a);
	tp->ep_free(x->b);
	tp->listener_close(x->l);
	tp->cq_free(x->acq);
	tp->cq_free(x->bcq);
	tp->domain_free(x->bdom);
}

/* b reads [addr, addr + len) of a's memory under @rkey into x->dst. */
static void peer_read(struct conn *x, const void *addr, uint32_t len,
		      uint32_t rkey)
{
	struct dafs_sge sge = {x->dst, len, x->dmr->lkey};
	struct dafs_wc wc;
	int n, waited = 0;

	memset(x->dst, 0, len);
	ck_assert_int_eq(tp->rdma_read(x->b, 1, &sge, (uintptr_t)addr, rkey,
				       DAFS_TP_SIGNALED),
			 0);
	while ((n = tp->poll_cq(x->bcq, &wc, 1)) == 0) {
		ck_assert_int_lt(waited, TMO_MS);
		tp->wait_cq(x->bcq, 10);
		waited += 10;
	}
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.op, DAFS_WC_RDMA_READ);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 12));
}

/*
 * free then map again at the same address, with new content: the cache
 * must not hand out the old registration (on a NIC it pins the old
 * pages), and the peer must read the new bytes. _i 0: monitored, 1: the
 * fallback without userfaultfd.
 */
START_TEST(test_same_address_new_content)
{
	size_t len = 16 * PG;
	struct dafs_regcache *c = _i ? cache(16, 1 << 20, DAFS_RC_NO_UFFD)
				     : cache_on(16, 1 << 20, 0);
	uint8_t *want = malloc(len), *b, *b2;
	struct dafs_regcache_stats st;
	struct dafs_rc_entry *e;
	struct conn x;
	uint32_t k1;

	conn_open(&x, len);
	b = map(16);
	fill(b, len, 1);
	e = get(c, b, len);
	k1 = e->mr->rkey;
	peer_read(&x, b + 100, (uint32_t)len - 200, k1);
	ck_assert_mem_eq(x.dst, b + 100, len - 200);
	dafs_regcache_put(e);
	/* a second use of the same buffer: a hit when cached */
	e = get(c, b, len);
	ck_assert_uint_eq(e->mr->rkey == k1, !_i);
	dafs_regcache_put(e);

	/* new memory at the same address: mapped over the old in one step
	 * (an unmap event as munmap gives), since between a munmap and a
	 * new mapping another thread (ASan's allocator, the peer) may take
	 * the range */
	b2 = mmap(b, len, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ck_assert_ptr_eq(b2, b);
	fill(b2, len, 99);
	memcpy(want, b2, len);
	e = get(c, b2, len);
	/* not the old region: its key is dead in the transport */
	ck_assert_uint_ne(e->mr->rkey, k1);
	ck_assert(!key_live(k1, b2, len));
	peer_read(&x, b2, (uint32_t)len, e->mr->rkey);
	ck_assert_mem_eq(x.dst, want, len);
	dafs_regcache_put(e);
	st = stats(c);
	if (_i) {
		ck_assert_int_eq(st.mode, DAFS_RC_NO_MONITOR);
		ST_EQ(st, uncached, 3);
		ST_EQ(st, hits, 0);
		ST_EQ(st, misses, 0);
		ST_EQ(st, entries, 0);
		ck_assert_uint_eq(nlive(), 0);
	} else {
		ST_EQ(st, invalidations, 1);
		ST_EQ(st, hits, 1);
		ST_EQ(st, misses, 2);
		ST_EQ(st, entries, 1);
		ck_assert_uint_eq(nlive(), 1);
	}
	dafs_regcache_free(c);
	conn_close(&x);
	munmap(b2, len);
	free(want);
}
END_TEST

struct unmapper {
	void *p;
	size_t len;
	int done;
};

static void *unmap_main(void *arg)
{
	struct unmapper *u = arg;

	ck_assert_int_eq(munmap(u->p, u->len), 0);
	__atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * One thread unmaps a cached buffer while another maps new memory at the
 * same address and looks it up, before the monitor read the event (it is
 * paused): the unmapping thread is still inside munmap. STRICT reads the
 * event itself and misses; the relaxed mode hits the old registration,
 * which the TCP transport tolerates (it reads the virtual address) and a
 * NIC would not. _i 0: strict, 1: relaxed.
 */
START_TEST(test_unmap_race)
{
	struct dafs_regcache *c =
		cache_on(16, 1 << 20, _i ? 0 : DAFS_RC_STRICT);
	struct unmapper u = {.len = 4 * PG};
	struct dafs_rc_entry *e, *old;
	struct dafs_regcache_stats st;
	pthread_t t;
	uint8_t *b, *b2;
	int tries = 0;

	b = map(4);
	u.p = b;
	old = get(c, b, 4 * PG);
	dafs_regcache_put(old);
	dafs_regcache__pause_monitor(c, 1);
	ck_assert_int_eq(pthread_create(&t, NULL, unmap_main, &u), 0);
	/* the pages are gone before munmap waits for its event */
	for (;;) {
		b2 = mmap(b, 4 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			  0);
		if (b2 == b)
			break;
		ck_assert_ptr_eq(b2, MAP_FAILED);
		ck_assert_int_lt(++tries, 5000);
		usleep(1000);
	}
	e = get(c, b2, 4 * PG);
	st = stats(c);
	if (!_i) {
		ST_EQ(st, invalidations, 1);
		ST_EQ(st, misses, 2);
		ST_EQ(st, hits, 0);
		/* the event was read: munmap returns */
		pthread_join(t, NULL);
		dafs_regcache_put(e);
		dafs_regcache__pause_monitor(c, 0);
	} else {
		ck_assert_ptr_eq(e, old);
		ST_EQ(st, hits, 1);
		ck_assert(!__atomic_load_n(&u.done, __ATOMIC_ACQUIRE));
		dafs_regcache__pause_monitor(c, 0);
		pthread_join(t, NULL);
		/* applied now; the entry in use is detached */
		st = stats(c);
		ST_EQ(st, invalidations, 1);
		ST_EQ(st, entries, 0);
		ck_assert_uint_eq(nlive(), 1);
		dafs_regcache_put(e);
		ck_assert_uint_eq(nlive(), 0);
	}
	dafs_regcache_free(c);
	munmap(b2, 4 * PG);
}
END_TEST

/* ---- modes ---- */

START_TEST(test_fallback)
{
	struct dafs_regcache *c = cache(16, 1 << 20, DAFS_RC_NO_UFFD);
	uint8_t *b = map(2);
	struct dafs_regcache_stats st;
	struct dafs_rc_entry *e;

	e = get(c, b + 10, 100);
	/* exactly the buffer: nothing is shared */
	ck_assert_ptr_eq(e->mr->addr, b + 10);
	ck_assert_uint_eq(e->mr->len, 100);
	ck_assert_uint_eq(nlive(), 1);
	dafs_regcache_put(e);
	ck_assert_uint_eq(nlive(), 0);
	touch(c, b + 10, 100);
	st = stats(c);
	ck_assert_int_eq(st.mode, DAFS_RC_NO_MONITOR);
	ck_assert_int_eq(st.monitor_err, -ENOTSUP);
	ST_EQ(st, uncached, 2);
	ST_EQ(st, hits, 0);
	ST_EQ(st, misses, 0);
	ST_EQ(st, entries, 0);
	dafs_regcache_free(c);
	munmap(b, 2 * PG);
}
END_TEST

START_TEST(test_disabled)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	uint8_t *b = map(2);
	struct dafs_regcache_stats st;

	touch(c, b, PG);
	dafs_regcache_set_limits(c, 0, 1 << 20);
	ck_assert_uint_eq(nlive(), 0);
	touch(c, b, PG);
	ck_assert_uint_eq(nlive(), 0);
	st = stats(c);
	ck_assert_int_eq(st.mode, DAFS_RC_OFF);
	ST_EQ(st, uncached, 1);
	ST_EQ(st, misses, 1);
	ST_EQ(st, evictions, 1);
	dafs_regcache_set_limits(c, 16, 1 << 20);
	touch(c, b, PG);
	touch(c, b, PG);
	st = stats(c);
	ck_assert_int_eq(st.mode, DAFS_RC_ON);
	ST_EQ(st, hits, 1);
	dafs_regcache_free(c);
	munmap(b, 2 * PG);
}
END_TEST

/* Memory userfaultfd cannot watch (a shared mapping of a file opened
 * read-only: never writable) is registered per use. */
START_TEST(test_unwatchable)
{
	struct dafs_regcache *c = cache_on(16, 1 << 20, 0);
	struct dafs_regcache_stats st;
	int fd = open("/proc/self/exe", O_RDONLY);
	uint8_t *p;

	ck_assert_int_ge(fd, 0);
	p = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	close(fd);
	touch(c, p + 10, PG);
	touch(c, p + 10, PG);
	st = stats(c);
	ST_EQ(st, uncached, 2);
	ST_EQ(st, entries, 0);
	ck_assert_uint_eq(nlive(), 0);
	dafs_regcache_free(c);
	munmap(p, 2 * PG);
}
END_TEST

/* Threads looking up and returning buffers while one maps and unmaps
 * others: every lookup's registration contains its buffer and the
 * counts add up. */
struct churn {
	struct dafs_regcache *c;
	uint8_t *area;
	int seed;
};

static void *lookup_main(void *arg)
{
	struct churn *ch = arg;
	unsigned s = (unsigned)ch->seed;

	for (int i = 0; i < 3000; i++) {
		size_t off = (rand_r(&s) % 60) * PG + rand_r(&s) % PG;
		size_t len = 1 + rand_r(&s) % (3 * PG);
		struct dafs_rc_entry *e;

		ck_assert_int_eq(dafs_regcache_get(ch->c, ch->area + off, len,
						   ACC_ALL, &e),
				 0);
		ck_assert((uint8_t *)e->mr->addr <= ch->area + off);
		dafs_regcache_put(e);
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct dafs_regcache *c = cache_on(32, 1 << 20, 0);
	uint8_t *area = map(64), *side = map(16);
	struct churn ch[3];
	pthread_t t[3];
	struct dafs_regcache_stats st;

	for (int i = 0; i < 3; i++) {
		ch[i] = (struct churn){c, area, i + 1};
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, lookup_main, &ch[i]), 0);
	}
	for (int i = 0; i < 200; i++) {
		uint8_t *p = side + (i % 8) * 2 * PG, *q;

		struct dafs_rc_entry *e = get(c, p, PG);

		/* held across the unmap, so no eviction beats it */
		ck_assert_int_eq(munmap(p, PG), 0);
		dafs_regcache_put(e);
		q = mmap(p, PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0);
		ck_assert_ptr_eq(q, p);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	st = stats(c);
	ck_assert_uint_eq(st.hits + st.misses, 3 * 3000 + 200);
	ck_assert_uint_ge(st.invalidations, 200);
	ck_assert_uint_le(st.entries, 32);
	ck_assert_uint_eq(nlive(), st.entries);
	dafs_regcache_free(c);
	ck_assert_uint_eq(nlive(), 0);
	munmap(area, 64 * PG);
	munmap(side, 16 * PG);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("regcache");
	TCase *tc = tcase_create("cache");
	TCase *ti = tcase_create("invalidate");
	TCase *tm = tcase_create("modes");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(ti, setup, teardown);
	tcase_add_checked_fixture(tm, setup, teardown);
	tcase_add_test(tc, test_hit);
	tcase_add_test(tc, test_containment);
	tcase_add_test(tc, test_access);
	tcase_add_test(tc, test_lru_order);
	tcase_add_test(tc, test_byte_limit);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_stats_values);
	tcase_add_test(tc, test_threads);
	tcase_add_test(ti, test_invalidate_munmap);
	tcase_add_test(ti, test_invalidate_madvise);
	tcase_add_test(ti, test_invalidate_mremap);
	tcase_add_test(ti, test_invalidate_free);
	tcase_add_loop_test(ti, test_same_address_new_content, 0, 2);
	tcase_add_loop_test(ti, test_unmap_race, 0, 2);
	tcase_add_test(tm, test_fallback);
	tcase_add_test(tm, test_disabled);
	tcase_add_test(tm, test_unwatchable);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, ti);
	suite_add_tcase(s, tm);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
