/*
 * verbs.c - the RDMA transport: struct dafs_tp_ops over rdma-core
 * (libibverbs for queue pairs, regions and CQs; librdmacm for connections),
 * URL scheme "rdma". Built whenever rdma-core is found; verbs_stub.c
 * stands in otherwise. docs/transport-verbs.md describes the design.
 *
 * In short:
 *   - a domain binds to one RDMA device when it is made (the PD, the CQs
 *     and every region belong to that device's context, and the interface
 *     creates them before any address is known); connect/listen check that
 *     the address is on that device;
 *   - every work request carries, as its verbs wr_id, a pointer to a slot
 *     of its endpoint's send or receive tracker; the trackers give the
 *     owner's wr_id and operation back, retire unsignaled sends when a
 *     later signaled one completes, and say what to flush on a break;
 *   - completions go from the hardware CQ, under the CQ's lock, into a
 *     software ring (drain), from which poll_cq hands them out; ep_free
 *     drains and purges, so no completion of a freed endpoint survives;
 *   - a break (disconnect, the peer's DREQ, an error completion) moves the
 *     QP to the error state, destroys it, drains what the hardware had
 *     completed and completes the rest with -ECONNRESET itself, so the
 *     flush is complete and in order when disconnect returns, whatever the
 *     provider does with flushed work requests;
 *   - one CM thread per domain (started with its first endpoint) handles
 *     connection events of established endpoints and breaks endpoints that
 *     a poller found in error;
 *   - one proxy thread per domain, made in domain_new, re-runs the verbs
 *     that go through write() on the device's file (rxe's send doorbell,
 *     CQ arming, registration, the CM's commands) for a thread the kernel
 *     refuses with EACCES because its credentials changed since the file
 *     was opened (dafsd's handlers switch fsuid per request).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "transport_i.h"

#define V_MAX_SGE 16
#define V_RESOLVE_MS 2000    /* address and route resolution, each */
#define V_CONNECT_MS 10000   /* connect, and accept's wait for the RTU */
#define V_CQ_MIN 64
#define V_DEFAULT_SPIN_US 200
#define V_MIN_RNR_TIMER 7 /* IB encoding: 0.12 ms */

const struct dafs_tp_ops dafs_tp_verbs;

/* ---- objects ---- */

struct vep;

struct vdomain {
	struct dafs_domain base;
	struct ibv_context **devs; /* rdma_get_devices(): holds the contexts */
	struct ibv_context *ctx;
	struct ibv_pd *pd;

	/* Protects @mrs. A leaf lock. */
	pthread_mutex_t lock;
	struct vmr *mrs;

	/*
	 * The CM thread: connection events of established endpoints (their
	 * ids migrate to @ech) and breaks asked for by pollers (@efd).
	 * @cm_lock protects @eps and each ep's @linked; the CM thread holds
	 * it while it breaks an endpoint, so an endpoint it finds linked is
	 * not freed under it. Taken before an ep's break lock and CQ locks,
	 * never while holding one.
	 */
	pthread_mutex_t cm_lock;
	struct rdma_event_channel *ech;
	int efd;
	bool cm_running;
	atomic_bool cm_stop;
	pthread_t cm_thread;
	struct vep *eps;

	/* The proxy: @px_lock protects @px_head and each call's @done. */
	pthread_mutex_t px_lock;
	pthread_cond_t px_cv;	/* a call queued, or stop */
	pthread_cond_t px_done; /* a call done */
	struct vcall *px_head, **px_tail;
	bool px_stop;
	pthread_t px_thread;
};

/* A call the proxy thread makes for a thread refused with EACCES. */
struct vcall {
	int (*fn)(void *arg);
	void *arg;
	int rc;
	bool done;
	struct vcall *next;
};

struct vmr {
	struct dafs_mr base;
	struct ibv_mr *mr;
	struct vmr *prev, *next; /* dom->mrs */
};

struct vcq {
	struct dafs_cq base;
	struct vdomain *dom;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;

	/*
	 * Protects everything below, and all polling of @cq (so the
	 * trackers' heads move under it). Lock order: an ep's lock is never
	 * held while taking this one (posts drop it before reaping).
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* completions queued, a kick, a handover */
	int hw_size;	     /* entries the hardware CQ has */
	int hw_need;	     /* entries its endpoints may fill */
	struct dafs_wc *ring; /* completions drained, not yet handed out */
	uint32_t cap, head, count;
	unsigned waiters;   /* in wait_cq */
	bool leader;	    /* one waiter sleeps on the completion channel */
	bool leader_asleep; /* ... inside poll() right now */
	bool kick_pending;  /* a kick found nobody waiting */
	uint64_t kick_gen;
	unsigned unacked;   /* CQ events not yet acknowledged */
	int wake_fd;	    /* eventfd: wakes the leader out of poll() */
	atomic_bool spinning;
};

/* One work request in flight: its verbs wr_id points here. */
enum { VQ_RECV, VQ_SEND };
#define VW_SIGNALED 0x1 /* the owner asked for a completion */
#define VW_HIDDEN 0x2	/* signaled by the transport to free SQ slots */

struct vwr {
	struct vep *ep;
	uint64_t wr_id;
	uint8_t q;  /* VQ_* */
	uint8_t op; /* enum dafs_wc_op */
	uint8_t flags;
};

struct vep {
	struct dafs_ep base;
	struct vdomain *dom;
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	struct vcq *scq, *rcq;
	uint32_t max_inline; /* what the owner asked for */
	uint32_t hw_inline;  /* what the QP takes inline */

	/*
	 * Posting: @lock serializes posts (tracker slots are taken in the
	 * order work requests enter the queues) and guards @broken against
	 * them. Held across ibv_post_*, never while taking a CQ lock.
	 */
	pthread_mutex_t lock;
	bool broken;
	/* Receive tracker: tail moves under @lock, head under rcq->lock. */
	struct vwr *rq;
	uint32_t rq_n;
	_Atomic uint32_t rq_head, rq_tail;
	/* Send tracker: the same, head under scq->lock. */
	struct vwr *sq;
	uint32_t sq_n, sig_every, unsig_run;
	_Atomic uint32_t sq_head, sq_tail;

	/* Breaking: serialized by @brk; @flushed once the flush is queued. */
	pthread_mutex_t brk;
	bool flushed;
	atomic_bool want_break; /* a poller saw an error: the CM thread acts */
	atomic_bool dead;	/* ... and posts are refused from then on */

	bool linked; /* in dom->eps; dom->cm_lock */
	struct vep *prev, *next;
	int hw_cq_need; /* what it added to its CQs' hw_need */
};

struct vlistener {
	struct dafs_listener base;
	struct vdomain *dom;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	int efd; /* listener_close wakes accept */
	uint16_t port;

	pthread_mutex_t accept_lock; /* one accept reads events at a time */
	/* @lock protects the rest. */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned inside; /* threads in accept */
	bool closing;
	struct rdma_cm_id **pend; /* connect requests not yet taken */
	unsigned npend, pend_cap;
};

static struct vdomain *vdom(struct dafs_domain *d)
{
	return container_of(d, struct vdomain, base);
}
static struct vcq *vcq(struct dafs_cq *c)
{
	return container_of(c, struct vcq, base);
}
static struct vep *vep(struct dafs_ep *e)
{
	return container_of(e, struct vep, base);
}
static struct vlistener *vlis(struct dafs_listener *l)
{
	return container_of(l, struct vlistener, base);
}

/* ---- conventions at the edge ---- */

/* rdma-core calls that return -1 and set errno. */
static int neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* ibv_post_* and friends return an errno value; providers differ in its
 * sign (rxe: negative), and a few return -1 with errno set. */
static int post_err(int rc)
{
	if (rc > 0)
		return -rc;
	if (rc == -1)
		return neg_errno();
	return rc;
}

static int wc_status(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_WR_FLUSH_ERR:
		return -ECONNRESET;
	case IBV_WC_LOC_LEN_ERR:
		return -EMSGSIZE;
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR:
		return -EFAULT;
	case IBV_WC_LOC_QP_OP_ERR:
		return -EINVAL;
	case IBV_WC_REM_ACCESS_ERR:
		return -EACCES;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_OP_ERR:
		return -EREMOTEIO;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static unsigned spin_us(void)
{
	static atomic_int v = -1;
	const char *s;
	int x = atomic_load(&v);

	if (x >= 0)
		return (unsigned)x;
	s = getenv("DAFS_SPIN_US");
	x = s && *s ? atoi(s) : V_DEFAULT_SPIN_US;
	if (x < 0)
		x = 0;
	if (x > 1000000)
		x = 1000000;
	atomic_store(&v, x);
	return (unsigned)x;
}

/* DAFS_VERBS_DEBUG=1: say on stderr why a connection breaks. */
static bool debug(void)
{
	static atomic_int v = -1;
	int x = atomic_load(&v);

	if (x < 0) {
		const char *s = getenv("DAFS_VERBS_DEBUG");

		x = s && *s && *s != '0';
		atomic_store(&v, x);
	}
	return x;
}

static void efd_write(int fd)
{
	uint64_t one = 1;
	ssize_t r;

	do
		r = write(fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

static void efd_clear(int fd)
{
	uint64_t v;
	ssize_t r;

	do
		r = read(fd, &v, sizeof(v));
	while (r < 0 && errno == EINTR);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return neg_errno();
	return 0;
}

/* ---- the proxy thread ---- */

/*
 * The kernel refuses write() on a uverbs or rdma_cm file from a thread
 * whose credentials are not those of the file's opener (EACCES; the check
 * compares the credential objects, so a thread that ever switched fsuid
 * stays refused even after switching back). Such a thread hands the call
 * to this thread, made in domain_new right after the device was opened,
 * and waits. Set once a thread was refused: later calls go straight here.
 */
static __thread bool tl_foreign;

static void *px_main(void *arg)
{
	struct vdomain *d = arg;
	struct vcall *c;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&d->px_lock);
	for (;;) {
		while (!d->px_head && !d->px_stop)
			pthread_cond_wait(&d->px_cv, &d->px_lock);
		if (!d->px_head)
			break;
		c = d->px_head;
		d->px_head = c->next;
		if (!d->px_head)
			d->px_tail = &d->px_head;
		pthread_mutex_unlock(&d->px_lock);
		c->rc = c->fn(c->arg);
		pthread_mutex_lock(&d->px_lock);
		c->done = true;
		pthread_cond_broadcast(&d->px_done);
	}
	pthread_mutex_unlock(&d->px_lock);
	return NULL;
}

/* Run @fn(@arg) in the proxy thread; returns what it returned. */
static int px_run(struct vdomain *d, int (*fn)(void *), void *arg)
{
	struct vcall c = {fn, arg, 0, false, NULL};

	pthread_mutex_lock(&d->px_lock);
	*d->px_tail = &c;
	d->px_tail = &c.next;
	pthread_cond_signal(&d->px_cv);
	while (!c.done)
		pthread_cond_wait(&d->px_done, &d->px_lock);
	pthread_mutex_unlock(&d->px_lock);
	return c.rc;
}

/* Run @fn(@arg) here, or in the proxy if this thread is refused. @fn
 * returns 0 or a negative errno, and must have done nothing when it
 * returns -EACCES. */
static int px_call(struct vdomain *d, int (*fn)(void *), void *arg)
{
	int rc;

	if (!tl_foreign) {
		rc = fn(arg);
		if (rc != -EACCES)
			return rc;
		tl_foreign = true;
	}
	return px_run(d, fn, arg);
}

/* ---- domains and regions ---- */

/* The device a domain binds to: $DAFS_RDMA_DEVICE, else the first one
 * with an active port, else the first one. */
static struct ibv_context *pick_device(struct ibv_context **devs, int n)
{
	const char *want = getenv("DAFS_RDMA_DEVICE");
	struct ibv_port_attr pa;
	int i;

	if (want && *want) {
		for (i = 0; i < n; i++)
			if (!strcmp(ibv_get_device_name(devs[i]->device), want))
				return devs[i];
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (!ibv_query_port(devs[i], 1, &pa) &&
		    pa.state == IBV_PORT_ACTIVE)
			return devs[i];
	return devs[0];
}

static int v_domain_new(struct dafs_domain **out)
{
	struct vdomain *d;
	int n = 0, rc;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->base.ops = &dafs_tp_verbs;
	d->efd = -1;
	errno = 0;
	d->devs = rdma_get_devices(&n);
	if (!d->devs || n <= 0) {
		rc = -ENODEV;
		goto fail;
	}
	d->ctx = pick_device(d->devs, n);
	if (!d->ctx) {
		rc = -ENODEV;
		goto fail;
	}
	d->pd = ibv_alloc_pd(d->ctx);
	if (!d->pd) {
		rc = neg_errno();
		goto fail;
	}
	d->ech = rdma_create_event_channel();
	if (!d->ech) {
		rc = neg_errno();
		goto fail;
	}
	rc = set_nonblock(d->ech->fd);
	if (rc)
		goto fail;
	d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->efd < 0) {
		rc = neg_errno();
		goto fail;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->cm_lock, NULL);
	pthread_mutex_init(&d->px_lock, NULL);
	pthread_cond_init(&d->px_cv, NULL);
	pthread_cond_init(&d->px_done, NULL);
	d->px_tail = &d->px_head;
	rc = -pthread_create(&d->px_thread, NULL, px_main, d);
	if (rc) {
		pthread_mutex_destroy(&d->lock);
		pthread_mutex_destroy(&d->cm_lock);
		pthread_mutex_destroy(&d->px_lock);
		pthread_cond_destroy(&d->px_cv);
		pthread_cond_destroy(&d->px_done);
		goto fail;
	}
	*out = &d->base;
	return 0;
fail:
	if (d->efd >= 0)
		close(d->efd);
	if (d->ech)
		rdma_destroy_event_channel(d->ech);
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	if (d->devs)
		rdma_free_devices(d->devs);
	free(d);
	return rc;
}

static void v_domain_free(struct dafs_domain *dom)
{
	struct vdomain *d;
	struct vmr *m;

	if (!dom)
		return;
	d = vdom(dom);
	if (d->cm_running) {
		atomic_store(&d->cm_stop, true);
		efd_write(d->efd);
		pthread_join(d->cm_thread, NULL);
	}
	pthread_mutex_lock(&d->px_lock);
	d->px_stop = true;
	pthread_cond_signal(&d->px_cv);
	pthread_mutex_unlock(&d->px_lock);
	pthread_join(d->px_thread, NULL);
	pthread_mutex_destroy(&d->px_lock);
	pthread_cond_destroy(&d->px_cv);
	pthread_cond_destroy(&d->px_done);
	/* regions left behind are the domain's to free (as tcp does) */
	while ((m = d->mrs)) {
		d->mrs = m->next;
		ibv_dereg_mr(m->mr);
		free(m);
	}
	rdma_destroy_event_channel(d->ech);
	close(d->efd);
	ibv_dealloc_pd(d->pd);
	rdma_free_devices(d->devs);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->cm_lock);
	free(d);
}

struct reg_args {
	struct ibv_pd *pd;
	void *addr;
	size_t len;
	int acc;
	struct ibv_mr *mr;
};

static int do_reg(void *arg)
{
	struct reg_args *a = arg;

	a->mr = ibv_reg_mr(a->pd, a->addr, a->len, a->acc);
	return a->mr ? 0 : neg_errno();
}

static int v_reg_mr(struct dafs_domain *dom, void *addr, size_t len,
		    unsigned access, struct dafs_mr **out)
{
	struct reg_args ra;
	int rc;

	struct vdomain *d = vdom(dom);
	int acc = 0;
	struct vmr *m;

	if (!addr || !len || (access & ~(DAFS_ACC_LOCAL_WRITE |
					 DAFS_ACC_REMOTE_WRITE |
					 DAFS_ACC_REMOTE_READ)) ||
	    ((access & DAFS_ACC_REMOTE_WRITE) &&
	     !(access & DAFS_ACC_LOCAL_WRITE)))
		return -EINVAL;
	if (access & DAFS_ACC_LOCAL_WRITE)
		acc |= IBV_ACCESS_LOCAL_WRITE;
	if (access & DAFS_ACC_REMOTE_WRITE)
		acc |= IBV_ACCESS_REMOTE_WRITE;
	if (access & DAFS_ACC_REMOTE_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	ra = (struct reg_args){d->pd, addr, len, acc, NULL};
	rc = px_call(d, do_reg, &ra);
	if (rc) {
		free(m);
		return rc;
	}
	m->mr = ra.mr;
	m->base.addr = addr;
	m->base.len = len;
	m->base.lkey = m->mr->lkey;
	m->base.rkey = m->mr->rkey;
	m->base.access = access;
	m->base.dom = dom;
	pthread_mutex_lock(&d->lock);
	m->next = d->mrs;
	if (d->mrs)
		d->mrs->prev = m;
	d->mrs = m;
	pthread_mutex_unlock(&d->lock);
	*out = &m->base;
	return 0;
}

static int do_dereg(void *arg)
{
	return post_err(ibv_dereg_mr(arg));
}

static int v_dereg_mr(struct dafs_mr *mr)
{
	struct vmr *m = container_of(mr, struct vmr, base);
	struct vdomain *d = vdom(mr->dom);
	int rc;

	rc = px_call(d, do_dereg, m->mr);
	if (rc)
		return rc;
	pthread_mutex_lock(&d->lock);
	if (m->prev)
		m->prev->next = m->next;
	else
		d->mrs = m->next;
	if (m->next)
		m->next->prev = m->prev;
	pthread_mutex_unlock(&d->lock);
	free(m);
	return 0;
}

/* ---- completion queues ---- */

static int v_cq_new(struct dafs_domain *dom, uint32_t depth,
		    struct dafs_cq **out)
{
	struct vdomain *d = vdom(dom);
	struct vcq *c;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base.ops = &dafs_tp_verbs;
	c->dom = d;
	c->wake_fd = -1;
	c->hw_need = depth < V_CQ_MIN ? V_CQ_MIN : (int)depth;
	c->cap = 64;
	c->ring = malloc(c->cap * sizeof(*c->ring));
	if (!c->ring) {
		rc = -ENOMEM;
		goto fail;
	}
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		rc = neg_errno();
		goto fail;
	}
	c->ch = ibv_create_comp_channel(d->ctx);
	if (!c->ch) {
		rc = neg_errno();
		goto fail;
	}
	rc = set_nonblock(c->ch->fd);
	if (rc)
		goto fail;
	c->cq = ibv_create_cq(d->ctx, c->hw_need, c, c->ch, 0);
	if (!c->cq) {
		rc = neg_errno();
		goto fail;
	}
	c->hw_size = c->cq->cqe;
	pthread_mutex_init(&c->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	*out = &c->base;
	return 0;
fail:
	if (c->ch)
		ibv_destroy_comp_channel(c->ch);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	free(c->ring);
	free(c);
	return rc;
}

static void v_cq_free(struct dafs_cq *cq)
{
	struct vcq *c;

	if (!cq)
		return;
	c = vcq(cq);
	if (c->unacked)
		ibv_ack_cq_events(c->cq, c->unacked);
	ibv_destroy_cq(c->cq);
	ibv_destroy_comp_channel(c->ch);
	close(c->wake_fd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->ring);
	free(c);
}

/* Room for @n more completions in the ring (c->lock held). The ring
 * doubles rather than overflow: a lost completion leaks a buffer or hangs
 * a waiter. False only if memory runs out. */
static bool ring_reserve(struct vcq *c, uint32_t n)
{
	struct dafs_wc *r;
	uint32_t i, cap = c->cap;

	while (cap - c->count < n)
		cap *= 2;
	if (cap == c->cap)
		return true;
	r = malloc(cap * sizeof(*r));
	if (!r)
		return false;
	for (i = 0; i < c->count; i++)
		r[i] = c->ring[(c->head + i) % c->cap];
	free(c->ring);
	c->ring = r;
	c->head = 0;
	c->cap = cap;
	return true;
}

/* Queue @wc (c->lock held). drain() reserves before it polls the
 * hardware, so this fails only for a flush when memory ran out. */
static bool ring_push(struct vcq *c, const struct dafs_wc *wc)
{
	if (!ring_reserve(c, 1))
		return false;
	c->ring[(c->head + c->count) % c->cap] = *wc;
	c->count++;
	return true;
}

static void ask_break(struct vep *e)
{
	/* the owner may have seen the error: no post may succeed now */
	atomic_store(&e->dead, true);
	if (!atomic_exchange(&e->want_break, true))
		efd_write(e->dom->efd);
}

/* Whether a send-queue completion with @status reaches the owner: when
 * asked for, or on an error - except that a flushed unsignaled SEND or
 * WRITE stays silent, as on tcp, where such sends complete at post time
 * (READs flush signaled or not). */
static bool sq_delivers(const struct vwr *w, int status)
{
	if (w->flags & VW_SIGNALED)
		return true;
	if (!status)
		return false;
	return status != -ECONNRESET || w->op == DAFS_WC_RDMA_READ;
}

/* Turn one hardware completion into what the owner sees (c->lock held,
 * room reserved in the ring). */
static void take_cqe(struct vcq *c, const struct ibv_wc *hw)
{
	struct vwr *w = (struct vwr *)(uintptr_t)hw->wr_id;
	struct vep *e = w->ep;
	struct dafs_wc wc;
	uint32_t h, k;
	int st = wc_status(hw->status);

	/* on an error only wr_id, status and qp_num are valid: the queue
	 * and the operation come from the tracker */
	wc.wr_id = w->wr_id;
	wc.status = st;
	wc.op = w->op;
	wc.byte_len = 0;
	wc.ep = &e->base;
	if (w->q == VQ_RECV) {
		if (!st)
			wc.byte_len = hw->byte_len;
		ring_push(c, &wc);
		/* receives complete in order */
		atomic_store(&e->rq_head, atomic_load(&e->rq_head) + 1);
	} else {
		if (sq_delivers(w, st))
			ring_push(c, &wc);
		/* this one and the unsignaled ones before it are done */
		h = atomic_load(&e->sq_head);
		k = (uint32_t)(w - e->sq);
		atomic_store(&e->sq_head, h + (k - h % e->sq_n + e->sq_n) %
						      e->sq_n + 1);
	}
	if (st) {
		if (debug() && hw->status != IBV_WC_WR_FLUSH_ERR)
			fprintf(stderr,
				"dafs verbs: qp %u: %s %s (vendor error %#x)\n",
				hw->qp_num,
				w->q == VQ_RECV ? "receive" : "send queue",
				ibv_wc_status_str(hw->status), hw->vendor_err);
		ask_break(e);
	}
}

/* Wake waiters for what was queued by someone who will not hand it out
 * himself (c->lock held). */
static void cq_wake(struct vcq *c)
{
	if (!c->waiters)
		return;
	pthread_cond_broadcast(&c->cond);
	if (c->leader_asleep)
		efd_write(c->wake_fd);
}

/* Move what the hardware CQ holds into the ring (c->lock held). Returns
 * how many entries were taken. */
static int drain(struct vcq *c)
{
	struct ibv_wc hw[16];
	int i, n, total = 0;

	do {
		/* what ibv_poll_cq returns is gone from the hardware: make
		 * room first, and leave it there if there is none */
		if (!ring_reserve(c, 16))
			break;
		n = ibv_poll_cq(c->cq, 16, hw);
		for (i = 0; i < n; i++)
			take_cqe(c, &hw[i]);
		total += n > 0 ? n : 0;
	} while (n == 16);
	return total;
}

static int v_poll_cq(struct dafs_cq *cq, struct dafs_wc *wc, int n)
{
	struct vcq *c = vcq(cq);
	int i;

	if (n < 0 || (n && !wc))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (c->count < (uint32_t)n)
		drain(c);
	for (i = 0; i < n && c->count; i++) {
		wc[i] = c->ring[c->head];
		c->head = (c->head + 1) % c->cap;
		c->count--;
	}
	pthread_mutex_unlock(&c->lock);
	return i;
}

static int do_arm(void *cq)
{
	return post_err(ibv_req_notify_cq(cq, 0));
}

static void deadline_ts(struct timespec *ts, uint64_t end_ms)
{
	ts->tv_sec = (time_t)(end_ms / 1000);
	ts->tv_nsec = (long)(end_ms % 1000) * 1000000;
}

/*
 * Waiting: one waiter at a time - the leader - arms the CQ, looks once
 * more (what arrived before the arm raises no event), and sleeps in
 * poll() on the completion channel and the wake eventfd; the others sleep
 * on the condition variable. A leader that leaves hands over to one
 * follower (or wakes them all if several completions are queued or it was
 * a kick), so nobody sleeps with completions queued and no leader.
 * Before all that, one waiter at a time spins for DAFS_SPIN_US: waking a
 * sleeping thread costs more than a small round trip.
 */
static int v_wait_cq(struct dafs_cq *cq, int timeout_ms)
{
	struct vcq *c = vcq(cq);
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : now_ms() + timeout_ms;
	uint64_t gen, spin_end;
	struct pollfd pfd[2];
	struct ibv_cq *evcq;
	struct timespec ts;
	void *evctx;
	bool led = false;
	int rc = 0, t;
	unsigned s;

	pthread_mutex_lock(&c->lock);
	if (c->kick_pending || c->count) {
		c->kick_pending = false;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (!timeout_ms) {
		drain(c);
		rc = c->count ? 0 : -ETIMEDOUT;
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	c->waiters++;
	gen = c->kick_gen;
	s = spin_us();
	if (s && !atomic_exchange(&c->spinning, true)) {
		spin_end = now_us() + s;
		while (!c->count && c->kick_gen == gen) {
			drain(c);
			if (c->count || now_us() >= spin_end ||
			    now_ms() >= end)
				break;
			pthread_mutex_unlock(&c->lock);
			sched_yield();
			pthread_mutex_lock(&c->lock);
		}
		atomic_store(&c->spinning, false);
	}
	for (;;) {
		if (c->count || c->kick_gen != gen)
			break;
		if (now_ms() >= end) {
			rc = -ETIMEDOUT;
			break;
		}
		if (c->leader) {
			if (end == UINT64_MAX) {
				pthread_cond_wait(&c->cond, &c->lock);
			} else {
				deadline_ts(&ts, end);
				pthread_cond_timedwait(&c->cond, &c->lock, &ts);
			}
			continue;
		}
		c->leader = true;
		led = true;
		if (px_call(c->dom, do_arm, c->cq) == 0)
			drain(c);
		if (c->count)
			break;
		c->leader_asleep = true;
		pthread_mutex_unlock(&c->lock);
		pfd[0] = (struct pollfd){.fd = c->ch->fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
		if (end == UINT64_MAX) {
			t = -1;
		} else {
			uint64_t now = now_ms();

			t = now >= end ? 0 : (int)(end - now);
		}
		t = poll(pfd, 2, t);
		pthread_mutex_lock(&c->lock);
		c->leader_asleep = false;
		if (t > 0 && (pfd[1].revents & POLLIN))
			efd_clear(c->wake_fd);
		if (t > 0 && (pfd[0].revents & POLLIN) &&
		    ibv_get_cq_event(c->ch, &evcq, &evctx) == 0 &&
		    ++c->unacked >= 64) {
			ibv_ack_cq_events(c->cq, c->unacked);
			c->unacked = 0;
		}
		drain(c);
		c->leader = false;
		led = false;
		/* whoever follows leads next; if there are more
		 * completions than this caller takes, more may go */
		if (c->count > 1)
			pthread_cond_broadcast(&c->cond);
		else if (c->waiters > 1)
			pthread_cond_signal(&c->cond);
	}
	if (led) {
		c->leader = false;
		if (c->count > 1)
			pthread_cond_broadcast(&c->cond);
		else if (c->waiters > 1)
			pthread_cond_signal(&c->cond);
	}
	c->waiters--;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void v_cq_kick(struct dafs_cq *cq)
{
	struct vcq *c = vcq(cq);

	pthread_mutex_lock(&c->lock);
	if (!c->waiters) {
		c->kick_pending = true;
	} else {
		c->kick_gen++;
		pthread_cond_broadcast(&c->cond);
		efd_write(c->wake_fd);
	}
	pthread_mutex_unlock(&c->lock);
}

struct resize_args {
	struct ibv_cq *cq;
	int n;
};

static int do_resize(void *arg)
{
	struct resize_args *a = arg;

	return post_err(ibv_resize_cq(a->cq, a->n));
}

/* Make room in @c's hardware CQ for @add more entries (c->lock held). */
static int cq_reserve(struct vcq *c, int add)
{
	int need = c->hw_need + add, rc;

	if (need > c->hw_size) {
		struct resize_args ra = {c->cq, need};

		rc = px_call(c->dom, do_resize, &ra);
		if (rc)
			return rc;
		c->hw_size = c->cq->cqe;
		/* an armed notification may not survive the resize */
		if (c->leader_asleep)
			efd_write(c->wake_fd);
	}
	c->hw_need = need;
	return 0;
}

/* ---- endpoints: breaking ---- */

static void lock_cqs(struct vep *e)
{
	pthread_mutex_lock(&e->rcq->lock);
	if (e->scq != e->rcq)
		pthread_mutex_lock(&e->scq->lock);
}

static void unlock_cqs(struct vep *e)
{
	if (e->scq != e->rcq)
		pthread_mutex_unlock(&e->scq->lock);
	pthread_mutex_unlock(&e->rcq->lock);
}

/* Complete whatever the trackers still hold with -ECONNRESET (both CQ
 * locks held, the QP gone): receives in posting order, then the send
 * queue's READs and signaled operations. */
static void flush_trackers(struct vep *e)
{
	struct dafs_wc wc = {.status = -ECONNRESET, .ep = &e->base};
	uint32_t h, t;
	struct vwr *w;

	t = atomic_load(&e->rq_tail);
	for (h = atomic_load(&e->rq_head); h != t; h++) {
		w = &e->rq[h % e->rq_n];
		wc.wr_id = w->wr_id;
		wc.op = DAFS_WC_RECV;
		ring_push(e->rcq, &wc);
	}
	atomic_store(&e->rq_head, t);
	t = atomic_load(&e->sq_tail);
	for (h = atomic_load(&e->sq_head); h != t; h++) {
		w = &e->sq[h % e->sq_n];
		if (!sq_delivers(w, -ECONNRESET))
			continue;
		wc.wr_id = w->wr_id;
		wc.op = w->op;
		ring_push(e->scq, &wc);
	}
	atomic_store(&e->sq_head, t);
}

static int do_disconnect(void *id)
{
	return rdma_disconnect(id) ? neg_errno() : 0;
}

/*
 * Break @e: refuse further posts, move the QP to the error state and
 * tell the peer (rdma_disconnect: its CM thread breaks its side), destroy
 * the QP, take what the hardware completed, and flush the rest. Returns
 * once the flush is queued. Idempotent; callers hold no CQ lock.
 */
static void ep_break(struct vep *e)
{
	pthread_mutex_lock(&e->brk);
	if (e->flushed) {
		pthread_mutex_unlock(&e->brk);
		return;
	}
	pthread_mutex_lock(&e->lock); /* waits for posts in progress */
	e->broken = true;
	pthread_mutex_unlock(&e->lock);
	/* errors: already disconnected */
	px_call(e->dom, do_disconnect, e->id);
	if (e->qp) {
		/* after this no completion of @e enters the CQs */
		rdma_destroy_qp(e->id);
		e->qp = NULL;
	}
	lock_cqs(e);
	drain(e->rcq);
	if (e->scq != e->rcq)
		drain(e->scq);
	flush_trackers(e);
	cq_wake(e->rcq);
	if (e->scq != e->rcq)
		cq_wake(e->scq);
	unlock_cqs(e);
	e->flushed = true;
	pthread_mutex_unlock(&e->brk);
}

static void v_disconnect(struct dafs_ep *ep)
{
	ep_break(vep(ep));
}

/* Remove every queued completion of @e from @c (c->lock held). */
static void ring_purge(struct vcq *c, const struct vep *e)
{
	uint32_t i, n = 0;
	struct dafs_wc *w;

	for (i = 0; i < c->count; i++) {
		w = &c->ring[(c->head + i) % c->cap];
		if (w->ep != &e->base)
			c->ring[(c->head + n++) % c->cap] = *w;
	}
	c->count = n;
}

static void ep_release(struct vep *e)
{
	if (e->hw_cq_need) {
		pthread_mutex_lock(&e->rcq->lock);
		e->rcq->hw_need -= (int)e->rq_n;
		pthread_mutex_unlock(&e->rcq->lock);
		pthread_mutex_lock(&e->scq->lock);
		e->scq->hw_need -= (int)e->sq_n;
		pthread_mutex_unlock(&e->scq->lock);
	}
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->brk);
	free(e->rq);
	free(e->sq);
	free(e);
}

static void v_ep_free(struct dafs_ep *ep)
{
	struct vep *e;
	struct vdomain *d;

	if (!ep)
		return;
	e = vep(ep);
	d = e->dom;
	ep_break(e);
	pthread_mutex_lock(&d->cm_lock);
	if (e->linked) {
		if (e->prev)
			e->prev->next = e->next;
		else
			d->eps = e->next;
		if (e->next)
			e->next->prev = e->prev;
		e->linked = false;
	}
	pthread_mutex_unlock(&d->cm_lock);
	/* waits until the CM thread has acknowledged @e's events */
	rdma_destroy_id(e->id);
	lock_cqs(e);
	ring_purge(e->rcq, e);
	if (e->scq != e->rcq)
		ring_purge(e->scq, e);
	unlock_cqs(e);
	ep_release(e);
}

/* ---- the CM thread ---- */

static void *cm_main(void *arg)
{
	struct vdomain *d = arg;
	struct rdma_cm_event *ev;
	struct pollfd pfd[2];
	struct vep *e;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!atomic_load(&d->cm_stop)) {
		pfd[0] = (struct pollfd){.fd = d->ech->fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = d->efd, .events = POLLIN};
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents & POLLIN) {
			efd_clear(d->efd);
			pthread_mutex_lock(&d->cm_lock);
			for (e = d->eps; e; e = e->next)
				if (atomic_load(&e->want_break))
					ep_break(e);
			pthread_mutex_unlock(&d->cm_lock);
		}
		while (rdma_get_cm_event(d->ech, &ev) == 0) {
			/* ack after handling: rdma_destroy_id waits for it,
			 * so an endpoint found linked is still there */
			switch (ev->event) {
			case RDMA_CM_EVENT_DISCONNECTED:
			case RDMA_CM_EVENT_DEVICE_REMOVAL:
			case RDMA_CM_EVENT_CONNECT_ERROR:
			case RDMA_CM_EVENT_UNREACHABLE:
			case RDMA_CM_EVENT_REJECTED:
			case RDMA_CM_EVENT_ADDR_CHANGE:
				e = ev->id->context;
				pthread_mutex_lock(&d->cm_lock);
				if (e && e->linked)
					ep_break(e);
				pthread_mutex_unlock(&d->cm_lock);
				break;
			default:
				break;
			}
			rdma_ack_cm_event(ev);
		}
	}
	return NULL;
}

static int do_min_rnr(void *qp)
{
	struct ibv_qp_attr qa = {.min_rnr_timer = V_MIN_RNR_TIMER};

	return post_err(ibv_modify_qp(qp, &qa, IBV_QP_MIN_RNR_TIMER));
}

/* Start the CM thread once; link @e into the domain (migrating its id to
 * the domain's event channel). */
static int ep_link(struct vep *e)
{
	struct vdomain *d = e->dom;
	int rc = 0;

	/* The CM leaves the RNR timer at 0, which means 655 ms: a SEND that
	 * finds no receive posted would wait that long before its retry.
	 * (Allowed in RTS; a device that refuses keeps the slow default.) */
	px_call(d, do_min_rnr, e->qp);
	if (rdma_migrate_id(e->id, d->ech))
		return neg_errno();
	pthread_mutex_lock(&d->cm_lock);
	if (!d->cm_running) {
		rc = -pthread_create(&d->cm_thread, NULL, cm_main, d);
		d->cm_running = !rc;
	}
	if (!rc) {
		e->next = d->eps;
		e->prev = NULL;
		if (d->eps)
			d->eps->prev = e;
		d->eps = e;
		e->linked = true;
	}
	pthread_mutex_unlock(&d->cm_lock);
	return rc;
}

/* ---- endpoints: setup ---- */

static bool attr_ok(struct vdomain *d, const struct dafs_ep_attr *a)
{
	return a && a->send_cq && a->recv_cq &&
	       a->send_cq->ops == &dafs_tp_verbs &&
	       a->recv_cq->ops == &dafs_tp_verbs &&
	       vcq(a->send_cq)->dom == d && vcq(a->recv_cq)->dom == d;
}

/* An endpoint on @id (address and route resolved, or a connect request)
 * with its QP. On failure nothing of it is left, @id is untouched. */
static int ep_create(struct vdomain *d, struct rdma_cm_id *id,
		     const struct dafs_ep_attr *a, struct vep **out)
{
	struct ibv_qp_init_attr qa;
	struct vep *e;
	uint32_t inl;
	int rc;

	if (id->verbs != d->ctx)
		return -EXDEV; /* the address is on another device */
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->base.ops = &dafs_tp_verbs;
	e->base.ctx = a->ctx;
	e->dom = d;
	e->id = id;
	e->scq = vcq(a->send_cq);
	e->rcq = vcq(a->recv_cq);
	e->max_inline = a->max_inline;
	e->rq_n = a->max_recv ? a->max_recv : 64;
	e->sq_n = a->max_send ? a->max_send : 64;
	e->sig_every = e->sq_n / 2 ? e->sq_n / 2 : 1;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->brk, NULL);
	e->rq = calloc(e->rq_n, sizeof(*e->rq));
	e->sq = calloc(e->sq_n, sizeof(*e->sq));
	if (!e->rq || !e->sq) {
		rc = -ENOMEM;
		goto fail;
	}
	/* every work request may complete: room for all of them */
	pthread_mutex_lock(&e->rcq->lock);
	rc = cq_reserve(e->rcq, (int)e->rq_n);
	pthread_mutex_unlock(&e->rcq->lock);
	if (rc)
		goto fail;
	pthread_mutex_lock(&e->scq->lock);
	rc = cq_reserve(e->scq, (int)e->sq_n);
	pthread_mutex_unlock(&e->scq->lock);
	if (rc) {
		pthread_mutex_lock(&e->rcq->lock);
		e->rcq->hw_need -= (int)e->rq_n;
		pthread_mutex_unlock(&e->rcq->lock);
		goto fail;
	}
	e->hw_cq_need = 1;

	/* the device may take less inline data than asked: halve until
	 * it agrees (posts larger than what it took are refused) */
	for (inl = a->max_inline;; inl /= 2) {
		memset(&qa, 0, sizeof(qa));
		qa.qp_context = e;
		qa.send_cq = e->scq->cq;
		qa.recv_cq = e->rcq->cq;
		qa.qp_type = IBV_QPT_RC;
		qa.sq_sig_all = 0;
		qa.cap.max_send_wr = e->sq_n;
		qa.cap.max_recv_wr = e->rq_n;
		qa.cap.max_send_sge = V_MAX_SGE;
		qa.cap.max_recv_sge = 1;
		qa.cap.max_inline_data = inl;
		if (!rdma_create_qp(id, d->pd, &qa))
			break;
		rc = neg_errno();
		if (!inl)
			goto fail;
	}
	e->qp = id->qp;
	e->hw_inline = qa.cap.max_inline_data < inl ? qa.cap.max_inline_data
						    : inl;
	if (e->hw_inline < e->max_inline)
		e->max_inline = e->hw_inline;
	id->context = e;
	*out = e;
	return 0;
fail:
	ep_release(e);
	return rc;
}

static void ep_destroy_unlinked(struct vep *e)
{
	if (e->qp)
		rdma_destroy_qp(e->id);
	e->qp = NULL;
	ep_release(e);
}

static struct rdma_conn_param conn_param(void)
{
	return (struct rdma_conn_param){
		.responder_resources = RDMA_MAX_RESP_RES,
		.initiator_depth = RDMA_MAX_INIT_DEPTH,
		.retry_count = 7,
		.rnr_retry_count = 7, /* a SEND waits for a receive forever */
	};
}

/*
 * The next event on @ch within @ms (-1: no limit), unless @efd (if not
 * -1) becomes readable first: -ECANCELED. -ETIMEDOUT after @ms.
 */
static int cm_next(struct rdma_event_channel *ch, int efd, int ms,
		   struct rdma_cm_event **ev)
{
	uint64_t end = ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)ms;
	struct pollfd pfd[2];
	int n, t;

	for (;;) {
		if (efd >= 0) {
			pfd[1] = (struct pollfd){.fd = efd, .events = POLLIN};
			if (poll(&pfd[1], 1, 0) > 0)
				return -ECANCELED;
		}
		if (rdma_get_cm_event(ch, ev) == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return neg_errno();
		if (end == UINT64_MAX) {
			t = -1;
		} else {
			uint64_t now = now_ms();

			if (now >= end)
				return -ETIMEDOUT;
			t = (int)(end - now);
		}
		pfd[0] = (struct pollfd){.fd = ch->fd, .events = POLLIN};
		n = poll(pfd, efd >= 0 ? 2 : 1, t);
		if (n < 0 && errno != EINTR)
			return neg_errno();
	}
}

/* Wait for @want on @id's private channel; other outcomes as errors. */
static int cm_expect(struct rdma_cm_id *id, enum rdma_cm_event_type want,
		     int ms)
{
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type got;
	int rc;

	rc = cm_next(id->channel, -1, ms, &ev);
	if (rc)
		return rc;
	got = ev->event;
	rdma_ack_cm_event(ev);
	if (got == want)
		return 0;
	switch (got) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return -ECONNABORTED;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return -EPROTO;
	}
}

static int connect_one(struct vdomain *d, struct sockaddr *sa,
		       const struct dafs_ep_attr *a, struct vep **out)
{
	struct rdma_event_channel *ch;
	struct rdma_conn_param p = conn_param();
	struct rdma_cm_id *id = NULL;
	struct vep *e = NULL;
	int rc;

	ch = rdma_create_event_channel();
	if (!ch)
		return neg_errno();
	rc = set_nonblock(ch->fd);
	if (rc)
		goto out;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) {
		rc = neg_errno();
		id = NULL;
		goto out;
	}
	if (rdma_resolve_addr(id, NULL, sa, V_RESOLVE_MS)) {
		rc = errno == ENODEV ? -EHOSTUNREACH : neg_errno();
		goto out;
	}
	rc = cm_expect(id, RDMA_CM_EVENT_ADDR_RESOLVED, 2 * V_RESOLVE_MS);
	if (rc)
		goto out;
	if (rdma_resolve_route(id, V_RESOLVE_MS)) {
		rc = neg_errno();
		goto out;
	}
	rc = cm_expect(id, RDMA_CM_EVENT_ROUTE_RESOLVED, 2 * V_RESOLVE_MS);
	if (rc)
		goto out;
	rc = ep_create(d, id, a, &e);
	if (rc)
		goto out;
	if (rdma_connect(id, &p)) {
		rc = neg_errno();
		goto out;
	}
	rc = cm_expect(id, RDMA_CM_EVENT_ESTABLISHED, V_CONNECT_MS);
	if (rc)
		goto out;
	rc = ep_link(e);
	if (rc)
		goto out;
	rdma_destroy_event_channel(ch);
	*out = e;
	return 0;
out:
	if (e)
		ep_destroy_unlinked(e);
	if (id)
		rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return rc;
}

static int v_connect(struct dafs_domain *dom, const char *host, uint16_t port,
		     const struct dafs_ep_attr *a, struct dafs_ep **out)
{
	struct vdomain *d = vdom(dom);
	struct addrinfo hints, *res, *ai;
	struct vep *e = NULL;
	char ps[8];
	int rc;

	if (!host || !port || !attr_ok(d, a))
		return -EINVAL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (getaddrinfo(host, ps, &hints, &res))
		return -EHOSTUNREACH;
	rc = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(d, ai->ai_addr, a, &e);
		if (!rc || rc == -ECONNREFUSED)
			break;
	}
	freeaddrinfo(res);
	if (rc)
		return rc;
	*out = &e->base;
	return 0;
}

/* ---- listeners ---- */

static int v_listen(struct dafs_domain *dom, const char *host, uint16_t port,
		    struct dafs_listener **out)
{
	struct vdomain *d = vdom(dom);
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr *sa;
	struct vlistener *l;
	char ps[8];
	int rc;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base.ops = &dafs_tp_verbs;
	l->dom = d;
	l->efd = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (getaddrinfo(host, ps, &hints, &res)) {
		rc = -EADDRNOTAVAIL;
		goto fail;
	}
	l->ch = rdma_create_event_channel();
	if (!l->ch) {
		rc = neg_errno();
		goto fail;
	}
	rc = set_nonblock(l->ch->fd);
	if (rc)
		goto fail;
	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0) {
		rc = neg_errno();
		goto fail;
	}
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		if (rdma_create_id(l->ch, &l->id, l, RDMA_PS_TCP)) {
			rc = neg_errno();
			l->id = NULL;
			break;
		}
		if (!rdma_bind_addr(l->id, ai->ai_addr)) {
			/* a wildcard address binds no device; a specific
			 * one must be the domain's */
			if (l->id->verbs && l->id->verbs != d->ctx)
				rc = -EXDEV;
			else if (rdma_listen(l->id, 128))
				rc = neg_errno();
			else
				rc = 0;
		} else {
			rc = errno == ENODEV ? -EADDRNOTAVAIL : neg_errno();
		}
		if (!rc)
			break;
		rdma_destroy_id(l->id);
		l->id = NULL;
	}
	if (rc)
		goto fail;
	sa = rdma_get_local_addr(l->id);
	l->port = ntohs(sa->sa_family == AF_INET6
				? ((struct sockaddr_in6 *)sa)->sin6_port
				: ((struct sockaddr_in *)sa)->sin_port);
	freeaddrinfo(res);
	pthread_mutex_init(&l->accept_lock, NULL);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cv, NULL);
	*out = &l->base;
	return 0;
fail:
	if (res)
		freeaddrinfo(res);
	if (l->id)
		rdma_destroy_id(l->id);
	if (l->ch)
		rdma_destroy_event_channel(l->ch);
	if (l->efd >= 0)
		close(l->efd);
	free(l);
	return rc;
}

static uint16_t v_listener_port(struct dafs_listener *lis)
{
	return vlis(lis)->port;
}

static void pend_push(struct vlistener *l, struct rdma_cm_id *id)
{
	struct rdma_cm_id **p;

	pthread_mutex_lock(&l->lock);
	if (l->npend == l->pend_cap) {
		p = realloc(l->pend, (l->pend_cap * 2 + 4) * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&l->lock);
			rdma_reject(id, NULL, 0);
			rdma_destroy_id(id);
			return;
		}
		l->pend = p;
		l->pend_cap = l->pend_cap * 2 + 4;
	}
	l->pend[l->npend++] = id;
	pthread_mutex_unlock(&l->lock);
}

static struct rdma_cm_id *pend_pop(struct vlistener *l)
{
	struct rdma_cm_id *id = NULL;

	pthread_mutex_lock(&l->lock);
	if (l->npend) {
		id = l->pend[0];
		memmove(l->pend, l->pend + 1, --l->npend * sizeof(*l->pend));
	}
	pthread_mutex_unlock(&l->lock);
	return id;
}

/*
 * Read one event of the listener's channel (accept_lock held): new
 * connect requests are queued; for @child (being accepted, or NULL) the
 * outcome is returned: 1 established, a negative errno if it failed, 0
 * if the event was about something else.
 */
static int lis_event(struct vlistener *l, struct rdma_cm_id *child, int ms)
{
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	enum rdma_cm_event_type type;
	int rc;

	rc = cm_next(l->ch, l->efd, ms, &ev);
	if (rc)
		return rc;
	type = ev->event;
	id = ev->id;
	rdma_ack_cm_event(ev);
	if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
		pend_push(l, id);
		return 0;
	}
	if (!child || id != child)
		return 0; /* about a request that has gone away */
	switch (type) {
	case RDMA_CM_EVENT_ESTABLISHED:
		return 1;
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ECONNABORTED;
	default:
		return 0;
	}
}

static int v_accept(struct dafs_listener *lis, const struct dafs_ep_attr *a,
		    struct dafs_ep **out)
{
	struct vlistener *l = vlis(lis);
	struct rdma_conn_param p = conn_param();
	struct rdma_cm_id *child;
	struct vep *e;
	uint64_t end;
	int rc;

	if (!attr_ok(l->dom, a))
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	if (l->closing) {
		pthread_mutex_unlock(&l->lock);
		return -ECANCELED;
	}
	l->inside++;
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&l->accept_lock);
	for (;;) {
		child = pend_pop(l);
		if (!child) {
			rc = lis_event(l, NULL, -1);
			if (rc < 0)
				break;
			continue;
		}
		rc = ep_create(l->dom, child, a, &e);
		if (rc) {
			rdma_reject(child, NULL, 0);
			rdma_destroy_id(child);
			break; /* the owner hears of it (-ENOMEM, ...) */
		}
		if (rdma_accept(child, &p)) {
			ep_destroy_unlinked(e);
			rdma_destroy_id(child);
			continue; /* the client went away */
		}
		/* the QP is ready to send now; waiting for the RTU makes
		 * sure the client's is too */
		end = now_ms() + V_CONNECT_MS;
		do {
			uint64_t now = now_ms();

			rc = now >= end ? -ETIMEDOUT
					: lis_event(l, child, (int)(end - now));
		} while (rc == 0);
		if (rc == 1)
			rc = ep_link(e);
		if (!rc) {
			*out = &e->base;
			break;
		}
		ep_destroy_unlinked(e);
		rdma_destroy_id(child);
		if (rc == -ECANCELED)
			break;
	}
	pthread_mutex_unlock(&l->accept_lock);
	pthread_mutex_lock(&l->lock);
	if (--l->inside == 0)
		pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static void v_listener_close(struct dafs_listener *lis)
{
	struct vlistener *l;
	struct rdma_cm_id *id;

	if (!lis)
		return;
	l = vlis(lis);
	pthread_mutex_lock(&l->lock);
	l->closing = true;
	efd_write(l->efd);
	while (l->inside)
		pthread_cond_wait(&l->cv, &l->lock);
	pthread_mutex_unlock(&l->lock);
	while ((id = pend_pop(l))) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
	}
	rdma_destroy_id(l->id);
	rdma_destroy_event_channel(l->ch);
	close(l->efd);
	pthread_mutex_destroy(&l->accept_lock);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cv);
	free(l->pend);
	free(l);
}

/* ---- posting ---- */

static int v_post_recv(struct dafs_ep *ep, uint64_t wr_id,
		       const struct dafs_sge *sge)
{
	struct vep *e = vep(ep);
	struct ibv_recv_wr wr, *bad;
	struct ibv_sge s;
	uint32_t t;
	struct vwr *w;
	int rc;

	if (!sge)
		return -EINVAL;
	s.addr = (uint64_t)(uintptr_t)sge->addr;
	s.length = sge->len;
	s.lkey = sge->lkey;
	pthread_mutex_lock(&e->lock);
	if (e->broken || atomic_load(&e->dead)) {
		rc = -ENOTCONN;
		goto out;
	}
	t = atomic_load(&e->rq_tail);
	if (t - atomic_load(&e->rq_head) >= e->rq_n) {
		rc = -ENOMEM;
		goto out;
	}
	w = &e->rq[t % e->rq_n];
	*w = (struct vwr){e, wr_id, VQ_RECV, DAFS_WC_RECV, 0};
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = (uint64_t)(uintptr_t)w;
	wr.sg_list = &s;
	wr.num_sge = sge->len ? 1 : 0;
	/* the slot is taken before the hardware can complete it */
	atomic_store(&e->rq_tail, t + 1);
	rc = post_err(ibv_post_recv(e->qp, &wr, &bad));
	if (rc)
		atomic_store(&e->rq_tail, t);
out:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* Free send-queue slots by taking the send CQ's completions (our hidden
 * signaled ones among them) when nobody else polls it. */
static void reap_sq(struct vep *e)
{
	struct vcq *c = e->scq;

	pthread_mutex_lock(&c->lock);
	if (drain(c))
		cq_wake(c);
	pthread_mutex_unlock(&c->lock);
}

/* Ring a send doorbell: rxe rings it on every post, even one whose
 * request it rejects (as this one, with more SGEs than any device takes;
 * rxe reads them all first, hence a real array) and queues nothing.
 * Other providers never get here (their doorbells are not a write()),
 * and would only reject the request. */
static int do_doorbell(void *qp)
{
	static struct ibv_sge none[256];
	struct ibv_send_wr wr, *bad;

	memset(&wr, 0, sizeof(wr));
	wr.sg_list = none;
	wr.num_sge = 256;
	wr.opcode = IBV_WR_SEND;
	ibv_post_send(qp, &wr, &bad);
	return 0;
}

static int post_sq(struct vep *e, uint8_t op, uint64_t wr_id,
		   const struct dafs_sge *sgl, int nsge, uint64_t raddr,
		   uint32_t rkey, unsigned flags)
{
	struct ibv_sge s[V_MAX_SGE];
	struct ibv_send_wr wr, *bad;
	uint64_t total = 0;
	uint32_t t;
	struct vwr *w;
	int i, n = 0, rc;

	if ((flags & ~(DAFS_TP_SIGNALED | DAFS_TP_INLINE)) || nsge < 0 ||
	    nsge > V_MAX_SGE || (nsge && !sgl))
		return -EINVAL;
	for (i = 0; i < nsge; i++) {
		total += sgl[i].len;
		if (!sgl[i].len)
			continue; /* carries nothing (and 0 may mean 2 GiB) */
		s[n].addr = (uint64_t)(uintptr_t)sgl[i].addr;
		s[n].length = sgl[i].len;
		s[n].lkey = sgl[i].lkey;
		n++;
	}
	if (total > UINT32_MAX)
		return -EMSGSIZE;
	if ((flags & DAFS_TP_INLINE) && total > e->max_inline)
		return -EINVAL;
	memset(&wr, 0, sizeof(wr));
	wr.sg_list = s;
	wr.num_sge = n;
	switch (op) {
	case DAFS_WC_SEND:
		wr.opcode = IBV_WR_SEND;
		break;
	case DAFS_WC_RDMA_WRITE:
		wr.opcode = IBV_WR_RDMA_WRITE;
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = rkey;
		break;
	default:
		wr.opcode = IBV_WR_RDMA_READ;
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = rkey;
		break;
	}
	if ((flags & DAFS_TP_INLINE) && n)
		wr.send_flags |= IBV_SEND_INLINE;

	pthread_mutex_lock(&e->lock);
	for (;;) {
		if (e->broken || atomic_load(&e->dead)) {
			pthread_mutex_unlock(&e->lock);
			return -ENOTCONN;
		}
		t = atomic_load(&e->sq_tail);
		if (t - atomic_load(&e->sq_head) < e->sq_n)
			break;
		/* full: unsignaled sends are retired by a later signaled
		 * one; take its completion ourselves */
		pthread_mutex_unlock(&e->lock);
		reap_sq(e);
		sched_yield();
		pthread_mutex_lock(&e->lock);
	}
	w = &e->sq[t % e->sq_n];
	*w = (struct vwr){e, wr_id, VQ_SEND, op, 0};
	if (flags & DAFS_TP_SIGNALED) {
		w->flags = VW_SIGNALED;
	} else if (e->unsig_run + 1 >= e->sig_every) {
		/* selective signaling: never more than half a queue of
		 * unsignaled requests behind the last signaled one, so a
		 * full queue always holds a completion that frees it */
		w->flags = VW_HIDDEN;
	}
	if (w->flags)
		wr.send_flags |= IBV_SEND_SIGNALED;
	wr.wr_id = (uint64_t)(uintptr_t)w;
	atomic_store(&e->sq_tail, t + 1);
	rc = post_err(ibv_post_send(e->qp, &wr, &bad));
	if (rc == -EACCES) {
		/* a write()-doorbell provider (rxe) queued the request and
		 * was refused the doorbell: the proxy rings it */
		tl_foreign = true;
		px_run(e->dom, do_doorbell, e->qp);
		rc = 0;
	}
	if (rc) {
		atomic_store(&e->sq_tail, t);
		if (debug())
			fprintf(stderr, "dafs verbs: ibv_post_send: %s\n",
				strerror(-rc));
	}
	else if (w->flags)
		e->unsig_run = 0;
	else
		e->unsig_run++;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static int v_post_send(struct dafs_ep *ep, uint64_t wr_id,
		       const struct dafs_sge *sgl, int nsge, unsigned flags)
{
	return post_sq(vep(ep), DAFS_WC_SEND, wr_id, sgl, nsge, 0, 0, flags);
}

static int v_rdma_write(struct dafs_ep *ep, uint64_t wr_id,
			const struct dafs_sge *sgl, int nsge, uint64_t raddr,
			uint32_t rkey, unsigned flags)
{
	return post_sq(vep(ep), DAFS_WC_RDMA_WRITE, wr_id, sgl, nsge, raddr,
		       rkey, flags);
}

static int v_rdma_read(struct dafs_ep *ep, uint64_t wr_id,
		       const struct dafs_sge *sge, uint64_t raddr,
		       uint32_t rkey, unsigned flags)
{
	if (!sge || (flags & DAFS_TP_INLINE))
		return -EINVAL;
	return post_sq(vep(ep), DAFS_WC_RDMA_READ, wr_id, sge, 1, raddr, rkey,
		       flags);
}

const struct dafs_tp_ops dafs_tp_verbs = {
	.name = "rdma",
	.post_copies = 0, /* the device reads the buffers later */
	.accept = v_accept,
	.connect = v_connect,
	.cq_free = v_cq_free,
	.cq_kick = v_cq_kick,
	.cq_new = v_cq_new,
	.dereg_mr = v_dereg_mr,
	.disconnect = v_disconnect,
	.domain_free = v_domain_free,
	.domain_new = v_domain_new,
	.ep_free = v_ep_free,
	.listen = v_listen,
	.listener_close = v_listener_close,
	.listener_port = v_listener_port,
	.poll_cq = v_poll_cq,
	.post_recv = v_post_recv,
	.post_send = v_post_send,
	.rdma_read = v_rdma_read,
	.rdma_write = v_rdma_write,
	/* the server falls back to read into a registered buffer and
	 * rdma_write (docs/transport-verbs.md) */
	.rdma_write_file = dafs_tp_stub_rdma_write_file,
	.reg_mr = v_reg_mr,
	.wait_cq = v_wait_cq,
};
