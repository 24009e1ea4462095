/*
 * tcp_i.h - internals shared by the TCP transport's files: the domain and
 * its region table (tcp_mr.c), the completion queue (tcp_cq.c), and the
 * endpoints, listeners and framing (tcp.c). Nothing outside src/transport
 * includes this; upper layers see only transport_i.h.
 */
#ifndef DAFS_TCP_I_H
#define DAFS_TCP_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "transport_i.h"

/*
 * Region keys are 32 bits: a 16-bit slot index and a 16-bit generation,
 * XORed with a per-domain random mask (a different one for lkeys and
 * rkeys). Each slot's generation starts at a random value and steps on
 * every deregistration, so a stale key never matches again until the
 * generation wraps, and a peer guessing keys has one chance in 2^16 per
 * slot - and a wrong guess costs it the connection.
 */
#define TCP_MR_IDX_BITS 16
#define TCP_MR_MAX (1u << TCP_MR_IDX_BITS)

struct tcp_mr {
	struct dafs_mr base;
	uint32_t idx;
	unsigned refs; /* placements and sends using it; dom->lock */
};

struct tcp_domain {
	struct dafs_domain base;
	/* Protects everything below. Taken briefly, never while doing I/O;
	 * nothing else is locked while holding it. */
	pthread_mutex_t lock;
	pthread_cond_t unref; /* a region's refs dropped to 0 */
	struct tcp_mr **slot; /* idx -> live region or NULL */
	uint16_t *gen;	      /* idx -> generation of the next/current key */
	uint32_t nslot;	      /* allocated length of slot[] and gen[] */
	uint32_t nlive;
	uint32_t hint; /* where to start looking for a free slot */
	uint32_t lmask, rmask;
};

/* Find the region that @key names in @dom (an rkey if @remote, else an
 * lkey), check that [addr, addr + len) lies inside it and that it grants
 * @access, and take a reference that keeps dereg_mr waiting until
 * tcp_mr_put(). A zero-length range is checked like any other.
 * Returns 0, -EINVAL (unknown or stale key, or out of bounds), or -EACCES
 * (the region lacks @access). */
int tcp_mr_get(struct tcp_domain *dom, uint32_t key, bool remote,
	       const void *addr, uint64_t len, unsigned access,
	       struct tcp_mr **mr);
void tcp_mr_put(struct tcp_domain *dom, struct tcp_mr *mr);

int tcp_domain_new(struct dafs_domain **dom);
void tcp_domain_free(struct dafs_domain *dom);
int tcp_reg_mr(struct dafs_domain *dom, void *addr, size_t len, unsigned access,
	       struct dafs_mr **mr);
int tcp_dereg_mr(struct dafs_mr *mr);

struct tcp_ep;

struct tcp_cq {
	struct dafs_cq base;
	/* Protects the ring, waiters and kick state. Lock order: an ep's
	 * lock may be held while taking this one, never the reverse. */
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* completions arrived, a kick, a promotion */
	pthread_cond_t space; /* the ring could not grow; a poll made room */
	struct dafs_wc *ring;
	uint32_t cap, head;
	atomic_uint count;   /* written under lock; read unlocked to spin */
	atomic_uint waiters; /* blocked in wait_cq; written under lock */
	unsigned full_waiters;
	_Atomic uint64_t kicks;	  /* written under lock */
	atomic_bool kick_pending; /* kept for the next wait_cq to begin */
	bool promote;		  /* a waiter is asked to spin (wait_cq) */

	/*
	 * Consumer-driven receive (docs/transport-tcp.md, section 6): the
	 * endpoints feeding this CQ, so that a thread waiting on it can read
	 * their sockets itself. @ep_lock protects @eps, @neps and the
	 * membership of @epfd (an epoll set of their sockets); a waiter holds
	 * it only to pick endpoints, never while reading one. Taken before an
	 * ep's lock, never after it.
	 */
	pthread_mutex_t ep_lock;
	int epfd;
	struct tcp_ep **eps;
	unsigned neps, eps_cap;
	atomic_uint spinners; /* in wait_cq's spin phase, reading sockets */
	atomic_uint nparked;  /* receive threads of @eps standing aside */
	atomic_uint nlong;    /* ... of which only a signal ends the wait */
	_Atomic uint64_t spin_end_ns; /* when a spinner last left */

	/*
	 * Lazy hand-over (tcp_cq_workers; docs/transport-tcp.md, section 6):
	 * the last spinner, leaving with a completion, records since when
	 * nobody reads (@unwatched_ns, 0: somebody does) instead of waking a
	 * sleeper; a sleeper on a timed watch (@standby, under @lock;
	 * @ticking while its watch is timed) spins if that lasts a tick.
	 */
	atomic_bool workers;
	bool standby;
	atomic_bool ticking;
	_Atomic uint64_t unwatched_ns;
	_Atomic uint64_t want_ns;	 /* a lazy hand-over last asked for */
	_Atomic uint64_t eager_until_ns; /* work came while unwatched */
	_Atomic uint64_t nlazy, nwoken, nstandby, narmed; /* tcp_cq_stats */
};

void tcp_cq_push(struct tcp_cq *cq, const struct dafs_wc *wc);
/* Drop every queued completion of @ep (ep_free's guarantee). */
void tcp_cq_purge(struct tcp_cq *cq, const struct dafs_ep *ep);
uint64_t tcp_now_ns(void);

int tcp_cq_new(struct dafs_domain *dom, uint32_t depth, struct dafs_cq **cq);
void tcp_cq_free(struct dafs_cq *cq);
int tcp_poll_cq(struct dafs_cq *cq, struct dafs_wc *wc, int n);
int tcp_wait_cq(struct dafs_cq *cq, int timeout_ms);
void tcp_cq_kick(struct dafs_cq *cq);
void tcp_cq_workers(struct dafs_cq *cq);

/*
 * Implemented in tcp.c, where endpoints are known.
 *
 * tcp_cq_drive: read, without ever blocking, whatever the sockets of the
 * endpoints feeding @cq hold, placing payloads and pushing completions as
 * the receive threads would. Skips an endpoint whose reader role is taken.
 * Returns true if anything was read.
 *
 * tcp_cq_unpark: wake the receive threads of @cq's endpoints that stand
 * aside for spinners (all of them, or only those waiting for a signal),
 * so they watch their sockets again.
 */
bool tcp_cq_drive(struct tcp_cq *cq);
void tcp_cq_unpark(struct tcp_cq *cq, bool long_only);

/*
 * For the transport's tests only: frames read by @ep's receive thread and
 * by other threads, and whether a SEND waits for a receive buffer; and a
 * switch that keeps the receive thread from reading at all (until the
 * endpoint breaks), so a test can show that completions arrive without
 * it.
 */
struct tcp_ep_stats {
	uint64_t rx_thread_frames;
	uint64_t driven_frames;
	bool stalled;
};
void tcp_ep_stats(struct dafs_ep *ep, struct tcp_ep_stats *st);
/* Hand-overs by a thread leaving wait_cq or poll_cq with work: lazy
 * (nobody woken), or a sleeper woken (to spin, or for completions left
 * queued); the standby's spins after the CQ stayed unwatched a tick; and
 * the lazy hand-overs that found no standby ticking and woke the sleepers
 * so that one would. */
struct tcp_cq_stats {
	uint64_t lazy, woken, standby, armed;
};
void tcp_cq_stats(struct dafs_cq *cq, struct tcp_cq_stats *st);
void tcp_ep_pause_rx(struct dafs_ep *ep, bool pause);

#endif /* DAFS_TCP_I_H */
