/*
 * tcp_mr.c - TCP transport: protection domains and registered regions.
 *
 * Registration pins nothing (the kernel copies to and from the socket); a
 * region is a record of (addr, len, access) behind a key, so that the
 * placement rules of a real NIC - right key, right access, in bounds - are
 * checked the same way here. Key format: tcp_i.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tcp_i.h"

#define ACC_ALL                                                                \
	(DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_WRITE | DAFS_ACC_REMOTE_READ)
#define FIRST_SLOTS 64

/* Random bits for key masks and first generations. Unpredictable keys are
 * a courtesy, not a security boundary, so a clock-derived fallback is fine
 * where getrandom() is unavailable. */
static void fill_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	struct timespec ts;
	uint64_t x;
	ssize_t n;

	while (len) {
		n = getrandom(p, len, GRND_NONBLOCK);
		if (n <= 0)
			break;
		p += n;
		len -= (size_t)n;
	}
	if (!len)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	x = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
	    (uint64_t)(uintptr_t)buf;
	while (len--) {
		/* xorshift64 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*p++ = (unsigned char)x;
	}
}

int tcp_domain_new(struct dafs_domain **out)
{
	struct tcp_domain *dom;
	uint32_t mask[2];
	int err;

	dom = calloc(1, sizeof(*dom));
	if (!dom)
		return -ENOMEM;
	dom->base.ops = &dafs_tp_tcp;
	err = -pthread_mutex_init(&dom->lock, NULL);
	if (err)
		goto err_free;
	err = -pthread_cond_init(&dom->unref, NULL);
	if (err)
		goto err_mutex;
	fill_random(mask, sizeof(mask));
	dom->lmask = mask[0];
	dom->rmask = mask[1];
	*out = &dom->base;
	return 0;

err_mutex:
	pthread_mutex_destroy(&dom->lock);
err_free:
	free(dom);
	return err;
}

/* The owner frees endpoints and listeners first; regions still registered
 * are released here (nothing can be placing into them any more). */
void tcp_domain_free(struct dafs_domain *base)
{
	struct tcp_domain *dom;
	uint32_t i;

	if (!base)
		return;
	dom = container_of(base, struct tcp_domain, base);
	for (i = 0; i < dom->nslot; i++)
		free(dom->slot[i]);
	free(dom->slot);
	free(dom->gen);
	pthread_cond_destroy(&dom->unref);
	pthread_mutex_destroy(&dom->lock);
	free(dom);
}

/* Called with dom->lock held. */
static int grow_slots(struct tcp_domain *dom)
{
	uint32_t n = dom->nslot ? dom->nslot * 2 : FIRST_SLOTS;
	struct tcp_mr **slot;
	uint16_t *gen;

	if (dom->nslot >= TCP_MR_MAX)
		return -ENOSPC;
	if (n > TCP_MR_MAX)
		n = TCP_MR_MAX;
	slot = realloc(dom->slot, n * sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	dom->slot = slot;
	gen = realloc(dom->gen, n * sizeof(*gen));
	if (!gen)
		return -ENOMEM; /* slot[] stays bigger than nslot: harmless */
	dom->gen = gen;
	memset(slot + dom->nslot, 0, (n - dom->nslot) * sizeof(*slot));
	fill_random(gen + dom->nslot, (n - dom->nslot) * sizeof(*gen));
	dom->nslot = n;
	return 0;
}

static uint32_t raw_key(const struct tcp_domain *dom, uint32_t idx)
{
	return (uint32_t)dom->gen[idx] << TCP_MR_IDX_BITS | idx;
}

int tcp_reg_mr(struct dafs_domain *base, void *addr, size_t len,
	       unsigned access, struct dafs_mr **out)
{
	struct tcp_domain *dom = container_of(base, struct tcp_domain, base);
	struct tcp_mr *mr;
	uint32_t i, idx;
	int err;

	if (!addr || !len || (uintptr_t)addr + len < (uintptr_t)addr)
		return -EINVAL;
	if (access & ~ACC_ALL)
		return -EINVAL;
	/* As ibv_reg_mr: a region the peer may write must be locally
	 * writable too. */
	if ((access & DAFS_ACC_REMOTE_WRITE) &&
	    !(access & DAFS_ACC_LOCAL_WRITE))
		return -EINVAL;

	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;

	pthread_mutex_lock(&dom->lock);
	if (dom->nlive == dom->nslot) {
		err = grow_slots(dom);
		if (err)
			goto err_unlock;
	}
	for (i = 0;; i++) {
		idx = (dom->hint + i) % dom->nslot;
		if (!dom->slot[idx])
			break;
	}
	dom->hint = idx + 1;
	dom->slot[idx] = mr;
	dom->nlive++;
	mr->idx = idx;
	mr->base.addr = addr;
	mr->base.len = len;
	mr->base.access = access;
	mr->base.dom = base;
	mr->base.lkey = raw_key(dom, idx) ^ dom->lmask;
	mr->base.rkey = raw_key(dom, idx) ^ dom->rmask;
	pthread_mutex_unlock(&dom->lock);
	*out = &mr->base;
	return 0;

err_unlock:
	pthread_mutex_unlock(&dom->lock);
	free(mr);
	return err;
}

/* Unpublish the key first, so no new placement can find the region, then
 * wait for the placements and sends already using it to finish. */
int tcp_dereg_mr(struct dafs_mr *base)
{
	struct tcp_mr *mr;
	struct tcp_domain *dom;

	if (!base)
		return -EINVAL;
	mr = container_of(base, struct tcp_mr, base);
	dom = container_of(base->dom, struct tcp_domain, base);

	pthread_mutex_lock(&dom->lock);
	if (mr->idx >= dom->nslot || dom->slot[mr->idx] != mr) {
		pthread_mutex_unlock(&dom->lock);
		return -EINVAL;
	}
	dom->slot[mr->idx] = NULL;
	dom->gen[mr->idx]++;
	dom->nlive--;
	while (mr->refs)
		pthread_cond_wait(&dom->unref, &dom->lock);
	pthread_mutex_unlock(&dom->lock);
	free(mr);
	return 0;
}

int tcp_mr_get(struct tcp_domain *dom, uint32_t key, bool remote,
	       const void *addr, uint64_t len, unsigned access,
	       struct tcp_mr **out)
{
	uint32_t raw = key ^ (remote ? dom->rmask : dom->lmask);
	uint32_t idx = raw & (TCP_MR_MAX - 1);
	uintptr_t a = (uintptr_t)addr, b;
	struct tcp_mr *mr;
	int err = 0;

	pthread_mutex_lock(&dom->lock);
	if (idx >= dom->nslot || !dom->slot[idx] || raw_key(dom, idx) != raw) {
		err = -EINVAL;
		goto out;
	}
	mr = dom->slot[idx];
	b = (uintptr_t)mr->base.addr;
	/* Written so that no sum can wrap. */
	if (a < b || len > mr->base.len || a - b > mr->base.len - len) {
		err = -EINVAL;
		goto out;
	}
	if ((mr->base.access & access) != access) {
		err = -EACCES;
		goto out;
	}
	mr->refs++;
	*out = mr;
out:
	pthread_mutex_unlock(&dom->lock);
	return err;
}

void tcp_mr_put(struct tcp_domain *dom, struct tcp_mr *mr)
{
	pthread_mutex_lock(&dom->lock);
	if (!--mr->refs)
		pthread_cond_broadcast(&dom->unref);
	pthread_mutex_unlock(&dom->lock);
}
