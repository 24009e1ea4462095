/*
 * tcp_cq.c - TCP transport: completion queues.
 *
 * A CQ is a ring of struct dafs_wc behind a mutex, shared by any number of
 * endpoints (producers: their receive and responder threads and the
 * threads that post) and pollers. The ring starts at the depth asked for
 * and doubles when full instead of overflowing: a lost completion would
 * leak a buffer or hang a waiter, which is worse than memory. Only if
 * growing fails does a producer wait for a poller to make room.
 *
 * wait_cq spins before it sleeps: waking a sleeping thread costs about
 * 70 us on these machines against a 13 us round trip, so for small
 * operations a short poll is the faster way to wait. The spin yields the
 * CPU on each turn instead of pausing: every request crosses a receive
 * thread on each side, and on a 2-core machine a pure spin keeps exactly
 * those threads off the CPU (getattr measured 70-110 us with a 50 us pure
 * spin, 22-28 us with a 200 us yielding spin; docs/benchmarks.md).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcp_i.h"

#define DEFAULT_DEPTH 64
#define DEFAULT_SPIN_US 200
#define MAX_SPIN_US 1000000

static pthread_once_t spin_once = PTHREAD_ONCE_INIT;
static unsigned spin_us = DEFAULT_SPIN_US;

/* DAFS_SPIN_US: microseconds wait_cq polls before blocking; 0 disables.
 * Read once per process; junk keeps the default. */
static void spin_init(void)
{
	const char *s = getenv("DAFS_SPIN_US");
	unsigned long v;
	char *end;

	if (!s || !*s)
		return;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || s[0] == '-')
		return;
	spin_us = v > MAX_SPIN_US ? MAX_SPIN_US : (unsigned)v;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct tcp_cq *to_cq(struct dafs_cq *base)
{
	return container_of(base, struct tcp_cq, base);
}

int tcp_cq_new(struct dafs_domain *dom, uint32_t depth, struct dafs_cq **out)
{
	pthread_condattr_t ca;
	struct tcp_cq *cq;
	int err;

	(void)dom;
	pthread_once(&spin_once, spin_init);
	if (!depth)
		depth = DEFAULT_DEPTH;

	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return -ENOMEM;
	cq->base.ops = &dafs_tp_tcp;
	cq->cap = depth;
	cq->ring = calloc(depth, sizeof(*cq->ring));
	if (!cq->ring) {
		err = -ENOMEM;
		goto err_free;
	}
	err = -pthread_mutex_init(&cq->lock, NULL);
	if (err)
		goto err_ring;
	err = -pthread_condattr_init(&ca);
	if (err)
		goto err_mutex;
	/* Timeouts must not jump with the wall clock. */
	err = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!err)
		err = -pthread_cond_init(&cq->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto err_mutex;
	err = -pthread_cond_init(&cq->space, NULL);
	if (err)
		goto err_cond;
	*out = &cq->base;
	return 0;

err_cond:
	pthread_cond_destroy(&cq->cond);
err_mutex:
	pthread_mutex_destroy(&cq->lock);
err_ring:
	free(cq->ring);
err_free:
	free(cq);
	return err;
}

/* The owner frees the endpoints using @cq first. */
void tcp_cq_free(struct dafs_cq *base)
{
	struct tcp_cq *cq;

	if (!base)
		return;
	cq = to_cq(base);
	pthread_cond_destroy(&cq->space);
	pthread_cond_destroy(&cq->cond);
	pthread_mutex_destroy(&cq->lock);
	free(cq->ring);
	free(cq);
}

static unsigned count_of(struct tcp_cq *cq)
{
	return atomic_load_explicit(&cq->count, memory_order_acquire);
}

static void set_count(struct tcp_cq *cq, unsigned n)
{
	atomic_store_explicit(&cq->count, n, memory_order_release);
}

/* Called with cq->lock held. Returns false if memory ran out. */
static bool grow(struct tcp_cq *cq)
{
	uint32_t n = count_of(cq), cap = cq->cap * 2, i;
	struct dafs_wc *ring;

	if (cap < cq->cap)
		return false;
	ring = malloc((size_t)cap * sizeof(*ring));
	if (!ring)
		return false;
	for (i = 0; i < n; i++)
		ring[i] = cq->ring[(cq->head + i) % cq->cap];
	free(cq->ring);
	cq->ring = ring;
	cq->cap = cap;
	cq->head = 0;
	return true;
}

void tcp_cq_push(struct tcp_cq *cq, const struct dafs_wc *wc)
{
	unsigned n;

	pthread_mutex_lock(&cq->lock);
	while ((n = count_of(cq)) == cq->cap && !grow(cq)) {
		cq->full_waiters++;
		pthread_cond_wait(&cq->space, &cq->lock);
		cq->full_waiters--;
	}
	cq->ring[(cq->head + n) % cq->cap] = *wc;
	set_count(cq, n + 1);
	/* One completion is enough for one waiter; the others would only
	 * find the ring empty again. */
	if (cq->waiters)
		pthread_cond_signal(&cq->cond);
	pthread_mutex_unlock(&cq->lock);
}

int tcp_poll_cq(struct dafs_cq *base, struct dafs_wc *wc, int n)
{
	struct tcp_cq *cq = to_cq(base);
	unsigned have, k, i;

	if (n < 0 || (n && !wc))
		return -EINVAL;
	/* Unlocked peek: pollers spinning on an empty CQ must not bounce
	 * the lock away from producers. */
	if (!n || !count_of(cq))
		return 0;

	pthread_mutex_lock(&cq->lock);
	have = count_of(cq);
	k = have < (unsigned)n ? have : (unsigned)n;
	for (i = 0; i < k; i++) {
		wc[i] = cq->ring[cq->head];
		cq->head = (cq->head + 1) % cq->cap;
	}
	set_count(cq, have - k);
	if (k && cq->full_waiters)
		pthread_cond_broadcast(&cq->space);
	pthread_mutex_unlock(&cq->lock);
	return (int)k;
}

void tcp_cq_purge(struct tcp_cq *cq, const struct dafs_ep *ep)
{
	unsigned n, i, kept = 0;
	struct dafs_wc *wc;

	pthread_mutex_lock(&cq->lock);
	n = count_of(cq);
	for (i = 0; i < n; i++) {
		wc = &cq->ring[(cq->head + i) % cq->cap];
		if (wc->ep == ep)
			continue;
		/* kept <= i: compacting forward never overwrites an entry
		 * not yet looked at. */
		cq->ring[(cq->head + kept) % cq->cap] = *wc;
		kept++;
	}
	set_count(cq, kept);
	if (kept < n && cq->full_waiters)
		pthread_cond_broadcast(&cq->space);
	pthread_mutex_unlock(&cq->lock);
}

static void deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int tcp_wait_cq(struct dafs_cq *base, int timeout_ms)
{
	struct tcp_cq *cq = to_cq(base);
	uint64_t t0, limit, kicks;
	struct timespec end;
	int err = 0, rc;

	if (timeout_ms < 0)
		timeout_ms = -1;
	if (timeout_ms > 0)
		deadline(&end, timeout_ms);
	if (count_of(cq))
		return 0;

	limit = spin_us;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms * 1000 < limit)
		limit = (uint64_t)timeout_ms * 1000;
	if (limit) {
		t0 = now_us();
		do {
			if (count_of(cq))
				return 0;
			if (atomic_load(&cq->kick_pending))
				break;
			sched_yield();
		} while (now_us() - t0 < limit);
	}

	pthread_mutex_lock(&cq->lock);
	if (count_of(cq))
		goto out;
	if (atomic_exchange(&cq->kick_pending, false))
		goto out;
	if (!timeout_ms) {
		err = -ETIMEDOUT;
		goto out;
	}
	kicks = cq->kicks;
	cq->waiters++;
	while (!count_of(cq) && kicks == cq->kicks) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&cq->cond, &cq->lock);
			continue;
		}
		rc = pthread_cond_timedwait(&cq->cond, &cq->lock, &end);
		if (rc == ETIMEDOUT) {
			if (!count_of(cq) && kicks == cq->kicks)
				err = -ETIMEDOUT;
			break;
		}
	}
	cq->waiters--;
out:
	pthread_mutex_unlock(&cq->lock);
	return err;
}

/* Wakes every current waiter. A kick that finds nobody waiting is kept
 * and ends the next wait_cq at once, so a shutdown that sets its flag,
 * then kicks, cannot slip in between a thread's check of the flag and its
 * wait_cq. */
void tcp_cq_kick(struct dafs_cq *base)
{
	struct tcp_cq *cq = to_cq(base);

	pthread_mutex_lock(&cq->lock);
	cq->kicks++;
	if (!cq->waiters)
		atomic_store(&cq->kick_pending, true);
	pthread_cond_broadcast(&cq->cond);
	pthread_mutex_unlock(&cq->lock);
}
