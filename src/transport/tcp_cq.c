/*
 * tcp_cq.c - TCP transport: completion queues.
 *
 * A CQ is a ring of struct dafs_wc behind a mutex, shared by any number of
 * endpoints (producers: whoever reads their sockets, their responder
 * threads and the threads that post) and pollers. The ring starts at the
 * depth asked for and doubles when full instead of overflowing: a lost
 * completion would leak a buffer or hang a waiter, which is worse than
 * memory. Only if growing fails does a producer wait for a poller to make
 * room.
 *
 * wait_cq spins before it sleeps: waking a sleeping thread costs about
 * 70 us on these machines against a 13 us round trip, so for small
 * operations a short poll is the faster way to wait. While it spins, the
 * waiter reads the sockets of the CQ's endpoints itself (tcp_cq_drive, in
 * tcp.c), so a reply reaches it without waking the endpoint's receive
 * thread: the receive threads stand aside while anyone spins, and take
 * over when a waiter goes to sleep. The spin yields the CPU on each turn
 * instead of pausing: on a 2-core machine the peer (and, when nobody
 * spins, a receive thread) needs the other core. The hand-over rules are
 * in docs/transport-tcp.md, section 6.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "tcp_i.h"

#define DEFAULT_DEPTH 64
#define DEFAULT_SPIN_US 200
#define MAX_SPIN_US 1000000
/* A spin that keeps reading a long frame goes on past spin_us, but never
 * past this many times spin_us in all. */
#define SPIN_STRETCH 16
/* block()'s answer when the waiter was asked to spin again */
#define PROMOTED 1
/*
 * Lazy hand-over (tcp_cq_workers): the standby spins once the CQ has been
 * unwatched for a tick; it keeps its timed watch while a lazy hand-over
 * was wanted within STANDBY_KEEP_NS; work found waiting by a worker coming
 * back makes hand-overs eager for EAGER_NS.
 */
#define STANDBY_TICK_NS 1000000ull
#define STANDBY_KEEP_NS 100000000ull
#define EAGER_NS 10000000ull
/* standby_wait's answer when the watch is no longer needed */
#define STANDBY_STOP 2

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

uint64_t tcp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static uint64_t now_us(void)
{
	return tcp_now_ns() / 1000;
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
	err = -pthread_mutex_init(&cq->ep_lock, NULL);
	if (err)
		goto err_space;
	cq->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (cq->epfd < 0) {
		err = -errno;
		goto err_ep_lock;
	}
	*out = &cq->base;
	return 0;

err_ep_lock:
	pthread_mutex_destroy(&cq->ep_lock);
err_space:
	pthread_cond_destroy(&cq->space);
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
	close(cq->epfd);
	free(cq->eps);
	pthread_mutex_destroy(&cq->ep_lock);
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
	 * find the ring empty again. None at all while somebody spins: the
	 * spinner takes it, and a sleeper woken for it would find nothing;
	 * the last spinner to leave wakes one if it leaves some behind
	 * (handoff). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&cq->waiters) && !atomic_load(&cq->spinners))
		pthread_cond_signal(&cq->cond);
	pthread_mutex_unlock(&cq->lock);
}

static void handoff(struct tcp_cq *cq);

/*
 * A worker back from a lazy hand-over (@away: the CQ's mark, 0 if none)
 * found bytes waiting, a whole request or the start of one: work arrives
 * while workers are away (a stream, several clients), so others should
 * be reading meanwhile. Hand over at once for a while. A synchronous peer
 * never does this: its next request follows the reply. Returns whether
 * it was so.
 */
static bool be_eager(struct tcp_cq *cq, uint64_t away)
{
	if (!away)
		return false;
	atomic_store_explicit(&cq->eager_until_ns, tcp_now_ns() + EAGER_NS,
			      memory_order_relaxed);
	return true;
}

int tcp_poll_cq(struct dafs_cq *base, struct dafs_wc *wc, int n)
{
	struct tcp_cq *cq = to_cq(base);
	unsigned have, k, i;
	bool eager;

	if (n < 0 || (n && !wc))
		return -EINVAL;
	if (!n)
		return 0;
	/* Unlocked peek: pollers spinning on an empty CQ must not bounce
	 * the lock away from producers. An empty CQ may only mean that its
	 * messages still sit in the sockets: whoever polls reads them. */
	if (!count_of(cq)) {
		if (!tcp_cq_drive(cq))
			return 0;
		/* Found by reading: on a CQ of workers hand-overs turn eager
		 * if a mark says nobody read meanwhile (be_eager), this one
		 * included when it leaves with what it read (the mark
		 * stays: nobody reads until a sleeper spins). */
		eager = atomic_load_explicit(&cq->workers,
					     memory_order_relaxed) &&
			be_eager(cq, atomic_load(&cq->unwatched_ns));
		if (!count_of(cq))
			return 0;
		if (eager)
			handoff(cq);
	}

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

/*
 * Instead of a promotion: this worker is likely back before anything
 * arrives (a synchronous peer waits for its reply), so nobody is woken to
 * spin; the CQ is marked unwatched (an older mark stays: that one has been
 * away longer) and the standby spins should nobody read for a tick. If no
 * standby keeps that watch now, the sleepers are woken once (under the
 * lock, so none misses it): one takes the role, or the one that has it
 * times its watch again, seeing the hand-over wanted (@want_ns). False
 * where hand-overs are eager (or the CQ is not one of workers): a sleeper
 * must be woken to spin. The mark's store and the load of @ticking are
 * sequentially consistent, as are standby_wait's store of @ticking and
 * load of the mark: a standby that stops ticking sees the mark, or the
 * mark's setter sees it gone and wakes it.
 */
static bool lazy(struct tcp_cq *cq)
{
	uint64_t t, none = 0;

	if (!atomic_load_explicit(&cq->workers, memory_order_relaxed))
		return false;
	t = tcp_now_ns();
	if (t < atomic_load_explicit(&cq->eager_until_ns,
				     memory_order_relaxed))
		return false;
	atomic_store_explicit(&cq->want_ns, t, memory_order_relaxed);
	/* A spinner that came meanwhile cleared the mark before this set
	 * it: it is watching, so no mark (its count is raised before its
	 * clear, sequentially consistent with this load). */
	if (atomic_compare_exchange_strong(&cq->unwatched_ns, &none, t) &&
	    atomic_load(&cq->spinners))
		atomic_compare_exchange_strong(&cq->unwatched_ns, &t, 0);
	if (!atomic_load(&cq->ticking)) {
		atomic_fetch_add_explicit(&cq->narmed, 1, memory_order_relaxed);
		pthread_mutex_lock(&cq->lock);
		pthread_cond_broadcast(&cq->cond);
		pthread_mutex_unlock(&cq->lock);
	}
	return true;
}

/*
 * This thread leaves wait_cq, and nobody spins on @cq any more. If others
 * sleep in wait_cq:
 *  - completions pushed while spinners were there woke nobody (tcp_cq_push):
 *    if more are queued than this thread is about to take, wake a sleeper;
 *  - if receive threads stand aside for spinners, ask a sleeper to spin
 *    (and so read the sockets) again. That costs one wake-up, where
 *    resuming the receive threads would cost one each and another per
 *    message; on a server whose handlers take turns it keeps one of them
 *    spinning.
 * On a CQ of workers that last is lazy (lazy()) when the standby keeps
 * watch. If nobody sleeps either, receive threads standing aside until
 * told are told to look again.
 */
static void handoff(struct tcp_cq *cq)
{
	bool more, promote;

	/* pairs with the fence in tcp_cq_push: it sees us gone, or we see
	 * its completion */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&cq->spinners))
		return;
	if (atomic_load(&cq->waiters)) {
		more = count_of(cq) > 1;
		promote = atomic_load(&cq->nparked) != 0;
		if (!more && !promote)
			return;
		if (!more && lazy(cq)) {
			atomic_fetch_add_explicit(&cq->nlazy, 1,
						  memory_order_relaxed);
			return;
		}
		atomic_fetch_add_explicit(&cq->nwoken, 1, memory_order_relaxed);
		pthread_mutex_lock(&cq->lock);
		if (promote)
			cq->promote = true;
		pthread_cond_signal(&cq->cond);
		pthread_mutex_unlock(&cq->lock);
		return;
	}
	if (atomic_load(&cq->nlong))
		tcp_cq_unpark(cq, true);
}

/* Whether a kick came since wait_cq read @kicks. */
static bool kicked(struct tcp_cq *cq, uint64_t kicks)
{
	return atomic_load(&cq->kicks) != kicks;
}

/*
 * The spin phase: watch the count, read the endpoints' sockets, yield.
 * Ends when a completion arrives (returns true), on a kick, at @end_us, or
 * when @limit us pass with nothing read; a frame still arriving keeps it
 * going, up to SPIN_STRETCH times @limit.
 */
static bool spin(struct tcp_cq *cq, uint64_t limit, uint64_t end_us,
		 uint64_t kicks)
{
	uint64_t t0, last, t, away;
	bool got = false, first = true;

	atomic_fetch_add(&cq->spinners, 1);
	away = atomic_load_explicit(&cq->workers, memory_order_relaxed)
		       ? atomic_exchange(&cq->unwatched_ns, 0)
		       : 0;
	t0 = last = now_us();
	for (;; first = false) {
		if (count_of(cq)) {
			got = true;
			break;
		}
		if (atomic_load(&cq->kick_pending) || kicked(cq, kicks))
			break;
		t = now_us();
		if (tcp_cq_drive(cq)) {
			/* bytes at the first look: they came meanwhile */
			if (first)
				be_eager(cq, away);
			if (count_of(cq)) {
				got = true;
				break;
			}
			last = t;
		}
		if (t - last >= limit || t >= end_us ||
		    t - t0 >= limit * SPIN_STRETCH)
			break;
		sched_yield();
	}
	/* Before the count drops, so a receive thread that finds no
	 * spinner also finds when the last one left. */
	atomic_store(&cq->spin_end_ns, tcp_now_ns());
	atomic_fetch_sub(&cq->spinners, 1);
	return got;
}

/* Whether the CQ has been left unwatched a whole tick, at @t. */
static bool unwatched_long(struct tcp_cq *cq, uint64_t t)
{
	uint64_t u = atomic_load(&cq->unwatched_ns);

	return u && u <= t && t - u >= STANDBY_TICK_NS &&
	       !atomic_load(&cq->spinners);
}

/*
 * One wait of the standby, under @cq->lock: until the CQ has been left
 * unwatched a tick (returns PROMOTED: it is to spin), @end (ETIMEDOUT), a
 * signal (0), or a tick that finds no lazy hand-over wanted for
 * STANDBY_KEEP_NS (STANDBY_STOP: @ticking is off and the standby waits
 * untimed, keeping the role: an idle server costs no wake-ups).
 */
static int standby_wait(struct tcp_cq *cq, const struct timespec *end)
{
	uint64_t t = tcp_now_ns(), u = atomic_load(&cq->unwatched_ns), at;
	struct timespec ts;
	int rc;

	if (unwatched_long(cq, t))
		return PROMOTED;
	/* a tick after the mark; a full one from now if the mark is older
	 * (a spinner is there: its leaving re-marks or hands over) */
	at = (u && u <= t && t - u < STANDBY_TICK_NS ? u : t) + STANDBY_TICK_NS;
	ts.tv_sec = (time_t)(at / 1000000000);
	ts.tv_nsec = (long)(at % 1000000000);
	if (end && (end->tv_sec < ts.tv_sec ||
		    (end->tv_sec == ts.tv_sec && end->tv_nsec < ts.tv_nsec))) {
		rc = pthread_cond_timedwait(&cq->cond, &cq->lock, end);
		return rc == ETIMEDOUT ? ETIMEDOUT : 0;
	}
	if (pthread_cond_timedwait(&cq->cond, &cq->lock, &ts) != ETIMEDOUT)
		return 0;
	t = tcp_now_ns();
	if (unwatched_long(cq, t))
		return PROMOTED;
	if (atomic_load(&cq->unwatched_ns) ||
	    t - atomic_load_explicit(&cq->want_ns, memory_order_relaxed) <
		    STANDBY_KEEP_NS)
		return 0;
	atomic_store(&cq->ticking, false);
	if (atomic_load(&cq->unwatched_ns)) {
		atomic_store(&cq->ticking, true);
		return 0;
	}
	return STANDBY_STOP;
}

/*
 * Sleep until a completion, a kick, a promotion (returns PROMOTED) or
 * @end. On a CQ of workers one sleeper holds the role of standby, on a
 * timed watch while lazy hand-overs were wanted lately (standby_wait);
 * when it leaves, the next lazy hand-over finds nobody ticking and wakes
 * the sleepers so that one takes the role (lazy()).
 */
static int block(struct tcp_cq *cq, int timeout_ms, const struct timespec *end,
		 uint64_t kicks)
{
	int err = 0, rc;
	bool standby = false;

	pthread_mutex_lock(&cq->lock);
	if (count_of(cq) || kicked(cq, kicks))
		goto out;
	/* a kick before this wait_cq began (one that this thread saw come
	 * leaves the flag to the next) */
	if (atomic_exchange(&cq->kick_pending, false))
		goto out;
	if (!timeout_ms) {
		err = -ETIMEDOUT;
		goto out;
	}
	atomic_fetch_add(&cq->waiters, 1);
	if (!atomic_load(&cq->spinners) && atomic_load(&cq->nparked)) {
		/* Nobody reads the sockets now: their receive threads
		 * must. Their lock comes before ours. */
		pthread_mutex_unlock(&cq->lock);
		tcp_cq_unpark(cq, false);
		pthread_mutex_lock(&cq->lock);
	}
	while (!count_of(cq) && !kicked(cq, kicks) && !cq->promote) {
		if (atomic_load_explicit(&cq->workers, memory_order_relaxed) &&
		    !cq->standby)
			cq->standby = standby = true;
		if (standby && !atomic_load(&cq->ticking) &&
		    tcp_now_ns() - atomic_load_explicit(&cq->want_ns,
							memory_order_relaxed) <
			    STANDBY_KEEP_NS)
			atomic_store(&cq->ticking, true);
		if (standby && atomic_load(&cq->ticking)) {
			rc = standby_wait(cq, timeout_ms < 0 ? NULL : end);
			if (rc == PROMOTED) {
				atomic_store(&cq->unwatched_ns, 0);
				atomic_fetch_add_explicit(&cq->nstandby, 1,
							  memory_order_relaxed);
				err = PROMOTED;
				break;
			}
		} else if (timeout_ms < 0) {
			rc = pthread_cond_wait(&cq->cond, &cq->lock);
		} else {
			rc = pthread_cond_timedwait(&cq->cond, &cq->lock, end);
		}
		if (rc == ETIMEDOUT) {
			if (!count_of(cq) && !kicked(cq, kicks) && !cq->promote)
				err = -ETIMEDOUT;
			break;
		}
	}
	if (!err && !count_of(cq) && !kicked(cq, kicks) && cq->promote) {
		cq->promote = false;
		err = PROMOTED;
	}
	if (standby) {
		cq->standby = false;
		atomic_store(&cq->ticking, false);
	}
	atomic_fetch_sub(&cq->waiters, 1);
out:
	pthread_mutex_unlock(&cq->lock);
	return err;
}

int tcp_wait_cq(struct dafs_cq *base, int timeout_ms)
{
	struct tcp_cq *cq = to_cq(base);
	uint64_t limit, end_us = UINT64_MAX, t, kicks;
	struct timespec end = {0};
	int err;

	if (timeout_ms < 0)
		timeout_ms = -1;
	if (timeout_ms > 0) {
		deadline(&end, timeout_ms);
		end_us = (uint64_t)end.tv_sec * 1000000 +
			 (uint64_t)end.tv_nsec / 1000;
	}
	if (count_of(cq))
		return 0;
	/* a kick from now on ends this wait, spinning or asleep */
	kicks = atomic_load(&cq->kicks);

	for (;;) {
		limit = spin_us;
		if (timeout_ms >= 0) {
			t = now_us();
			if (!timeout_ms || t >= end_us)
				limit = 0;
			else if (end_us - t < limit)
				limit = end_us - t;
		}
		if (limit && spin(cq, limit, end_us, kicks)) {
			handoff(cq);
			return 0;
		}
		err = block(cq, timeout_ms, &end, kicks);
		if (err != PROMOTED)
			break;
	}
	handoff(cq);
	return err;
}

/* Ends every wait_cq under way, spinning or asleep (a spinner used to miss
 * a kick when somebody else slept, and then slept on), and is kept for the
 * next wait_cq to begin (the one thread that may be between a check of a
 * shutdown flag and its wait_cq; once there was one asleep, a kick was not
 * kept, and that thread slept on). A later wait_cq may end early for it:
 * spurious returns are allowed. */
void tcp_cq_kick(struct dafs_cq *base)
{
	struct tcp_cq *cq = to_cq(base);

	pthread_mutex_lock(&cq->lock);
	atomic_fetch_add(&cq->kicks, 1);
	atomic_store(&cq->kick_pending, true);
	pthread_cond_broadcast(&cq->cond);
	pthread_mutex_unlock(&cq->lock);
}

void tcp_cq_workers(struct dafs_cq *base)
{
	atomic_store(&to_cq(base)->workers, true);
}

void tcp_cq_stats(struct dafs_cq *base, struct tcp_cq_stats *st)
{
	struct tcp_cq *cq = to_cq(base);

	st->lazy = atomic_load_explicit(&cq->nlazy, memory_order_relaxed);
	st->woken = atomic_load_explicit(&cq->nwoken, memory_order_relaxed);
	st->standby = atomic_load_explicit(&cq->nstandby,
					   memory_order_relaxed);
	st->armed = atomic_load_explicit(&cq->narmed, memory_order_relaxed);
}
