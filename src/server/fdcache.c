/*
 * fdcache.c - descriptors of resolved file handles (fdcache_i.h): a hash
 * table by key bytes and an LRU list, both of the entries in the table.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/fdcache_i.h"

struct fdc_entry {
	struct fdc_entry *hnext;      /* hash chain */
	struct fdc_entry *prev, *next; /* LRU, most recent first */
	uint64_t used;		       /* ms, coarse monotonic */
	uint32_t hash;
	int fd;
	int refs;    /* borrows */
	bool linked; /* in the table and on the LRU */
	uint16_t klen;
	uint8_t key[];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* FNV-1a; the keys are MAC'd handles, well spread already. */
static uint32_t key_hash(const uint8_t *k, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *k++;
		h *= 16777619u;
	}
	return h;
}

int fdc_init(struct fdcache *c, size_t max, unsigned max_age_ms)
{
	memset(c, 0, sizeof(*c));
	c->max = max;
	c->max_age_ms = max_age_ms;
	c->nbuckets = 16;
	while (c->nbuckets < 2 * max)
		c->nbuckets *= 2;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

static void lru_unlink(struct fdcache *c, struct fdc_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct fdcache *c, struct fdc_entry *e)
{
	e->prev = NULL;
	e->next = c->lru_head;
	if (c->lru_head)
		c->lru_head->prev = e;
	else
		c->lru_tail = e;
	c->lru_head = e;
}

/*
 * Take @e out of the table (lock held). If nobody borrows it, it goes on
 * *@gone (chained through hnext) for the caller to close after the lock:
 * the last close of a removed file frees its blocks, which may take long.
 * A borrowed one is closed by its last put.
 */
static void unlink_entry(struct fdcache *c, struct fdc_entry *e,
			 struct fdc_entry **gone)
{
	struct fdc_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	e->linked = false;
	c->count--;
	if (!e->refs) {
		e->hnext = *gone;
		*gone = e;
	}
}

/* Close what unlink_entry() left in @gone (no lock held). */
static void close_gone(struct fdc_entry *gone)
{
	struct fdc_entry *e;

	while ((e = gone)) {
		gone = e->hnext;
		close(e->fd);
		free(e);
	}
}

/* Entries over the count or unused for too long go, oldest first. @now
 * was read before the lock: an entry used since is not old. */
static void sweep(struct fdcache *c, uint64_t now, struct fdc_entry **gone)
{
	struct fdc_entry *e;

	while ((e = c->lru_tail) &&
	       (c->count > c->max ||
		(now > e->used && now - e->used > c->max_age_ms))) {
		c->evictions++;
		unlink_entry(c, e, gone);
	}
}

static struct fdc_entry *find(struct fdcache *c, const void *key,
			      size_t klen, uint32_t h)
{
	struct fdc_entry *e;

	for (e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->klen == klen &&
		    !memcmp(e->key, key, klen))
			return e;
	return NULL;
}

/* Borrow @e (lock held), now the most recently used. */
static int borrow(struct fdcache *c, struct fdc_entry *e, uint64_t now)
{
	e->refs++;
	e->used = now;
	lru_unlink(c, e);
	lru_push(c, e);
	return e->fd;
}

int fdc_get(struct fdcache *c, const void *key, size_t klen,
	    struct fdc_entry **out)
{
	uint32_t h = key_hash(key, klen);
	uint64_t now = now_ms();
	struct fdc_entry *e, *gone = NULL;
	int fd = -ENOENT;

	*out = NULL;
	if (!c->max)
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	sweep(c, now, &gone);
	e = find(c, key, klen, h);
	if (e) {
		c->hits++;
		fd = borrow(c, e, now);
		*out = e;
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	close_gone(gone);
	return fd;
}

int fdc_add(struct fdcache *c, const void *key, size_t klen, int fd,
	    struct fdc_entry **out)
{
	uint32_t h = key_hash(key, klen);
	uint64_t now = now_ms();
	struct fdc_entry *e, *n, *gone = NULL;

	*out = NULL;
	if (!c->max || klen > UINT16_MAX)
		return fd;
	n = malloc(sizeof(*n) + klen);
	if (!n)
		return fd;
	pthread_mutex_lock(&c->lock);
	e = find(c, key, klen, h);
	if (e) {
		/* another request resolved it meanwhile: share that one */
		int mine = fd;

		fd = borrow(c, e, now);
		pthread_mutex_unlock(&c->lock);
		free(n);
		close(mine);
		*out = e;
		return fd;
	}
	n->hash = h;
	n->fd = fd;
	n->refs = 1;
	n->used = now;
	n->linked = true;
	n->klen = (uint16_t)klen;
	memcpy(n->key, key, klen);
	n->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = n;
	lru_push(c, n);
	c->count++;
	sweep(c, now, &gone);
	pthread_mutex_unlock(&c->lock);
	close_gone(gone);
	*out = n;
	return fd;
}

void fdc_put(struct fdcache *c, struct fdc_entry *e, int fd)
{
	bool last;

	if (!e) {
		if (fd >= 0)
			close(fd);
		return;
	}
	pthread_mutex_lock(&c->lock);
	last = !--e->refs && !e->linked;
	pthread_mutex_unlock(&c->lock);
	if (last) {
		close(e->fd);
		free(e);
	}
}

void fdc_drop(struct fdcache *c, struct fdc_entry *e)
{
	struct fdc_entry *gone = NULL;

	pthread_mutex_lock(&c->lock);
	if (e->linked)
		unlink_entry(c, e, &gone);
	pthread_mutex_unlock(&c->lock);
	close_gone(gone);
}

void fdc_sweep(struct fdcache *c)
{
	uint64_t now = now_ms();
	struct fdc_entry *gone = NULL;

	if (!c->max)
		return;
	pthread_mutex_lock(&c->lock);
	sweep(c, now, &gone);
	pthread_mutex_unlock(&c->lock);
	close_gone(gone);
}

void fdc_flush(struct fdcache *c)
{
	struct fdc_entry *e, *prev, *gone = NULL;

	pthread_mutex_lock(&c->lock);
	for (e = c->lru_tail; e; e = prev) {
		prev = e->prev;
		if (!e->refs) {
			c->evictions++;
			unlink_entry(c, e, &gone);
		}
	}
	pthread_mutex_unlock(&c->lock);
	close_gone(gone);
}

size_t fdc_count(struct fdcache *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void fdc_fini(struct fdcache *c)
{
	struct fdc_entry *e, *next;

	if (!c->buckets)
		return;
	for (e = c->lru_head; e; e = next) {
		next = e->next;
		close(e->fd);
		free(e);
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	memset(c, 0, sizeof(*c));
}
