/*
 * tcp.c - TCP transport: an RDMA NIC emulated over a stream socket.
 *
 * Frames are read by whoever holds an endpoint's reader role: a thread
 * waiting on one of its CQs when it can (wait_cq's spin phase, poll_cq),
 * so a synchronous request/reply wakes no other thread, and otherwise the
 * endpoint's receive thread, which plays the NIC when nobody else looks.
 * Either reads a frame header, then receives the payload straight into
 * where it belongs - the next posted receive buffer for a SEND, the
 * registered region named by (rkey, address) for an RDMA WRITE or READ
 * response - so file data is never staged in user space. A frame can be
 * read in pieces by several threads in turn: its progress lives in the
 * endpoint (struct rx_state), not on anyone's stack. Posting threads
 * write their own frames (header and gather list in one sendmsg; or
 * header, then a file range spliced through a pipe of the posting
 * thread's) under a per-endpoint send lock. RDMA READ requests are
 * answered by a responder thread, started on the first one, so that a
 * reader never blocks writing: two peers reading large ranges from each
 * other at once would otherwise each stall in sendmsg with nobody left
 * reading.
 *
 * The wire format and the rules are in docs/transport-tcp.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tcp_i.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define HDR_LEN 32
#define TCP_MAGIC 0x3150435453464144ull /* "DAFSTCP1" on the wire */
#define TCP_VERSION 1
#define MAX_SGE 16	    /* per post, as a verbs max_send_sge */
#define MAX_RD 64	    /* RDMA READs outstanding per direction */
#define DEFAULT_MAX_RECV 64 /* when dafs_ep_attr.max_recv is 0 */
#define DRIVE_BATCH 16	    /* endpoints a waiter reads per turn */

/*
 * When the receive thread stands aside (docs/transport-tcp.md, section 6):
 * for PARK_GRACE_NS after the last spinner of its CQs left, in case it
 * comes back (a synchronous caller's next request), looking again every
 * PARK_TICK_NS while spinners come and go; when told to, with at most
 * PARK_LONG_NS between looks as a safety net.
 */
#define PARK_GRACE_NS 1000000ull
#define PARK_TICK_NS 1000000ull
#define PARK_LONG_NS 100000000ull

enum frame_type {
	FR_HELLO = 1,
	FR_SEND = 2,
	FR_RDMA_WRITE = 3,
	FR_READ_REQ = 4,
	FR_READ_RESP = 5,
};

/* A decoded frame header; on the wire it is little-endian (see put_hdr). */
struct frame {
	uint8_t type;
	uint8_t flags;
	uint16_t rsvd0;
	uint32_t len;
	uint32_t rkey;
	uint32_t rsvd1;
	uint64_t addr;
	uint64_t tag;
};

/* A posted receive. */
struct rq_ent {
	uint64_t wr_id;
	struct dafs_sge sge;
};

/*
 * The send queue keeps what has not completed yet, in posting order:
 * RDMA READs waiting for their response, and the completions of signaled
 * sends and writes posted after such a READ. A verbs send queue completes
 * in order, so a send's completion must not overtake an earlier READ's.
 */
struct sq_ent {
	struct sq_ent *next;
	uint64_t wr_id;
	uint64_t tag;	     /* READ: matches the response */
	struct dafs_sge sge; /* READ: where the response goes */
	int status;	     /* reported if nonzero, else flush status */
	uint8_t op;	     /* enum dafs_wc_op */
	bool signaled;
};

/* An RDMA READ request from the peer, waiting for the responder. The
 * reference on @mr keeps the region registered until it has been sent. */
struct rd_req {
	struct tcp_mr *mr;
	const void *addr;
	uint32_t len;
	uint64_t tag;
};

/* Where the frame being read stands. */
enum rx_phase {
	RX_HDR,	  /* reading a header: ->got bytes of it so far */
	RX_START, /* header complete; its handler's start() is due */
	RX_DATA,  /* payload: ->left bytes still to place at ->dst */
};

/*
 * The frame being read, kept in the endpoint so that a reader that stops
 * halfway (a waiter whose socket ran dry, a SEND waiting for a receive
 * buffer) leaves it to the next one. Only the reader role holder touches
 * it.
 */
/*
 * Bytes read ahead at a frame boundary: a header is read together with
 * what follows it, up to STAGE_CAP bytes, so that a small frame costs one
 * recv() instead of two (header, then payload). What the stage holds is
 * copied to where it belongs, the rest of a longer payload is still
 * received in place. A reader leaves no complete frame in the stage (the
 * socket would not say there is something to read): rx_run() goes on
 * while the stage holds bytes.
 */
#define STAGE_CAP 4480u /* a header and a message with 4 KiB inline */

struct rx_state {
	uint32_t stage_off, stage_len;
	uint8_t stage[STAGE_CAP];
	enum rx_phase phase;
	bool hello;    /* the peer's HELLO has arrived */
	bool have_cur; /* SEND: ->cur is off the receive queue */
	uint32_t got;  /* RX_HDR: header bytes read */
	uint8_t raw[HDR_LEN];
	struct frame fr; /* RX_START, RX_DATA: the header */
	uint8_t *dst;
	uint32_t left;
	struct tcp_mr *mr; /* the region ->dst is in, held; or NULL */
	struct rq_ent cur; /* SEND: the receive being filled */
	struct sq_ent *rd; /* READ_RESP: the READ being answered */
	int status;	   /* SEND: ->cur's status if the frame fails */
};

struct tcp_ep {
	struct dafs_ep base;
	struct tcp_domain *dom;
	struct tcp_cq *scq, *rcq;
	int fd; /* closed only by ep_free, after the threads are joined */
	uint32_t max_inline;
	pthread_t rx_thread, resp;

	/* Serializes frames on fd. Taken before ->lock, never after it. */
	pthread_mutex_t send_lock;

	/*
	 * The reader role: whoever holds it reads frames from fd and
	 * advances ->rx. The receive thread takes it with a blocking lock
	 * and may block holding it (a payload still arriving, a SEND waiting
	 * for a receive buffer); any other thread only trylocks it and never
	 * blocks while holding it. Taken before ->lock; never held while
	 * taking a CQ's ep_lock.
	 */
	pthread_mutex_t rx_lock;
	struct rx_state rx;
	atomic_bool rx_stalled; /* a SEND waits for a receive buffer */
	atomic_bool paused;	/* tests: the receive thread must not read */
	atomic_uint pins;	/* CQ waiters about to read fd (tcp_cq_drive) */
	_Atomic uint64_t nrx_frames, ndriven_frames; /* tcp_ep_stats */

	/*
	 * Protects everything below. May be held while pushing to a CQ or
	 * taking a region reference (those locks are leaves).
	 */
	pthread_mutex_t lock;
	pthread_cond_t rq_cond;	  /* a receive was posted, or broken */
	pthread_cond_t rd_cond;	  /* a READ slot freed, or broken */
	pthread_cond_t resp_cond; /* a READ request queued, or broken */
	pthread_cond_t done_cond; /* the receive thread has flushed */
	pthread_cond_t park_cond; /* the receive thread should look again */
	/* Set once, under ->lock; read without it by loops that must stop
	 * promptly. */
	atomic_bool broken;
	bool flushed;	   /* everything posted has completed */
	bool resp_started; /* ->resp exists */
	bool parking;	   /* the receive thread is in rx_park */
	bool park_long;	   /* ... and waits to be told (counted in nlong) */
	bool unpark;	   /* ... and has been told */
	struct rq_ent *rq;
	uint32_t rq_cap, rq_head, rq_n;
	struct sq_ent *sq_head, **sq_tail;
	unsigned nrd; /* READs outstanding or about to be */
	uint64_t rd_seq;
	struct rd_req resp_q[MAX_RD];
	unsigned resp_head, resp_n;
};

struct tcp_listener {
	struct dafs_listener base;
	struct tcp_domain *dom;
	int fd;	 /* non-blocking: accept threads race for connections */
	int efd; /* eventfd, written by listener_close */
	uint16_t port;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* active dropped to 0 */
	unsigned active;     /* accept calls inside */
	bool closing;
};

static struct tcp_ep *to_ep(struct dafs_ep *base)
{
	return container_of(base, struct tcp_ep, base);
}

static struct tcp_domain *to_dom(struct dafs_domain *base)
{
	return container_of(base, struct tcp_domain, base);
}

/* DAFS_TCP_DEBUG set: say on stderr why a connection was broken, since
 * the owner only ever sees -ECONNRESET. */
static pthread_once_t debug_once = PTHREAD_ONCE_INIT;
static bool debug;

static void debug_init(void)
{
	const char *s = getenv("DAFS_TCP_DEBUG");

	debug = s && *s && strcmp(s, "0");
}

/* ---- wire ---- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return get_le16(p) | (uint32_t)get_le16(p + 2) << 16;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_hdr(uint8_t *p, const struct frame *fr)
{
	p[0] = fr->type;
	p[1] = fr->flags;
	put_le16(p + 2, fr->rsvd0);
	put_le32(p + 4, fr->len);
	put_le32(p + 8, fr->rkey);
	put_le32(p + 12, fr->rsvd1);
	put_le64(p + 16, fr->addr);
	put_le64(p + 24, fr->tag);
}

static void get_hdr(struct frame *fr, const uint8_t *p)
{
	fr->type = p[0];
	fr->flags = p[1];
	fr->rsvd0 = get_le16(p + 2);
	fr->len = get_le32(p + 4);
	fr->rkey = get_le32(p + 8);
	fr->rsvd1 = get_le32(p + 12);
	fr->addr = get_le64(p + 16);
	fr->tag = get_le64(p + 24);
}

/* ---- socket I/O ---- */

/* Write all of @iov, following partial writes. No SIGPIPE: a dead peer is
 * an error return, handled like any other break. @flags: 0, or MSG_MORE
 * when more of the frame follows by another call. */
static int send_iov(int fd, struct iovec *iov, int cnt, int flags)
{
	struct msghdr msg = {0};
	ssize_t n;

	while (cnt) {
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)cnt;
		n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int send_all(int fd, struct iovec *iov, int cnt)
{
	return send_iov(fd, iov, cnt, 0);
}

/*
 * Receive up to @len bytes into @buf: all of them, blocking, if @wait (the
 * receive thread); else only what the socket holds. Returns the bytes
 * read, 0 if none are there (not @wait), or -ECONNRESET: end of stream,
 * an error, or the endpoint breaking.
 */
static ssize_t rx_recv(struct tcp_ep *ep, void *buf, size_t len, bool wait)
{
	ssize_t n;

	for (;;) {
		/* Linux still delivers data after shutdown(SHUT_RD); stop
		 * placing anything once the endpoint is broken. */
		if (atomic_load(&ep->broken))
			return -ECONNRESET;
		n = recv(ep->fd, buf, len, wait ? MSG_WAITALL : MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && !wait && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -ECONNRESET;
	}
}

/*
 * Bytes of the frame being read: from the stage first, then from the
 * socket as rx_recv() does. @boundary: a header's first bytes, which may
 * read ahead into the stage (never blocking).
 */
static ssize_t rx_read(struct tcp_ep *ep, void *buf, size_t len, bool wait,
		       bool boundary)
{
	struct rx_state *rx = &ep->rx;
	ssize_t n;

	if (!rx->stage_len && boundary && len < STAGE_CAP) {
		n = rx_recv(ep, rx->stage, STAGE_CAP, false);
		if (n <= 0)
			return n;
		rx->stage_off = 0;
		rx->stage_len = (uint32_t)n;
	}
	if (rx->stage_len) {
		if (atomic_load(&ep->broken))
			return -ECONNRESET;
		n = (ssize_t)(len < rx->stage_len ? len : rx->stage_len);
		memcpy(buf, rx->stage + rx->stage_off, (size_t)n);
		rx->stage_off += (uint32_t)n;
		rx->stage_len -= (uint32_t)n;
		return n;
	}
	return rx_recv(ep, buf, len, wait);
}

/* ---- endpoint state ---- */

static void push_wc(struct tcp_cq *cq, struct tcp_ep *ep, uint64_t wr_id,
		    uint8_t op, int status, uint32_t byte_len)
{
	struct dafs_wc wc = {
		.wr_id = wr_id,
		.status = status,
		.op = op,
		.byte_len = byte_len,
		.ep = &ep->base,
	};

	tcp_cq_push(cq, &wc);
}

/* Break the connection. Flushing is the receive thread's job, with the
 * reader role: only the role's holder produces RECV and READ completions,
 * so doing it there keeps them in order. shutdown (not close) wakes every
 * thread blocked on the socket, tells the peer, and keeps the descriptor
 * number ours until ep_free, so no thread can ever touch a reused
 * descriptor. */
static void ep_fail(struct tcp_ep *ep)
{
	pthread_mutex_lock(&ep->lock);
	if (!atomic_load(&ep->broken)) {
		atomic_store(&ep->broken, true);
		shutdown(ep->fd, SHUT_RDWR);
		pthread_cond_broadcast(&ep->rq_cond);
		pthread_cond_broadcast(&ep->rd_cond);
		pthread_cond_broadcast(&ep->resp_cond);
		pthread_cond_broadcast(&ep->park_cond);
	}
	pthread_mutex_unlock(&ep->lock);
}

static int rx_send_start(struct tcp_ep *ep, struct rx_state *rx, bool wait);
static void rx_send_finish(struct tcp_ep *ep, struct rx_state *rx);
static int rx_write_start(struct tcp_ep *ep, struct rx_state *rx, bool wait);
static void rx_put_mr(struct tcp_ep *ep, struct rx_state *rx);
static int rx_read_req_start(struct tcp_ep *ep, struct rx_state *rx, bool wait);
static int rx_read_resp_start(struct tcp_ep *ep, struct rx_state *rx,
			      bool wait);
static void rx_read_resp_finish(struct tcp_ep *ep, struct rx_state *rx);

/*
 * Frame handlers by type; HELLO is only valid as the first frame.
 * start: the header is in; check it and say where the payload goes
 * (rx->dst, rx->left, holding rx->mr). Returns 0, -EAGAIN (only if not
 * @wait: cannot go on yet, call again later), or an error that breaks the
 * connection. finish: the payload is in; complete the frame. wc: the frame
 * may complete work somebody waits for.
 */
static const struct {
	const char *name;
	int (*start)(struct tcp_ep *ep, struct rx_state *rx, bool wait);
	void (*finish)(struct tcp_ep *ep, struct rx_state *rx);
	bool wc;
} frame_ops[] = {
	[FR_HELLO] = {"HELLO", NULL, NULL, false},
	[FR_SEND] = {"SEND", rx_send_start, rx_send_finish, true},
	[FR_RDMA_WRITE] = {"RDMA_WRITE", rx_write_start, rx_put_mr, false},
	[FR_READ_REQ] = {"RDMA_READ_REQ", rx_read_req_start, NULL, false},
	[FR_READ_RESP] = {"RDMA_READ_RESP", rx_read_resp_start,
			  rx_read_resp_finish, true},
};

static const char *frame_name(uint8_t type)
{
	if (type < ARRAY_SIZE(frame_ops) && frame_ops[type].name)
		return frame_ops[type].name;
	return "unknown";
}

/* A frame the peer should never have sent (or one we must refuse):
 * the caller breaks the connection without touching memory. */
static int violation(struct tcp_ep *ep, const struct frame *fr,
		     const char *what, int err)
{
	pthread_once(&debug_once, debug_init);
	if (debug)
		fprintf(stderr,
			"dafs tcp: ep %p: %s frame: %s (%s); "
			"breaking connection\n",
			(void *)ep, frame_name(fr->type), what, strerror(-err));
	return -EPROTO;
}

static void rx_put_mr(struct tcp_ep *ep, struct rx_state *rx)
{
	if (rx->mr) {
		tcp_mr_put(ep->dom, rx->mr);
		rx->mr = NULL;
	}
}

/* The frame being read failed, or the connection broke under it (after
 * ep_fail): give back what it holds and complete the receive it took, in
 * order before rx_flush completes the ones behind it. With the role. */
static void rx_abort(struct tcp_ep *ep)
{
	struct rx_state *rx = &ep->rx;

	rx_put_mr(ep, rx);
	if (rx->have_cur) {
		rx->have_cur = false;
		push_wc(ep->rcq, ep, rx->cur.wr_id, DAFS_WC_RECV, rx->status,
			0);
	}
	rx->phase = RX_HDR;
	rx->got = 0;
	rx->left = 0;
	rx->stage_len = 0;
}

/* Complete everything still posted: the receive thread's last act, with
 * the reader role, so no other reader can complete anything after it. */
static void rx_flush(struct tcp_ep *ep)
{
	struct sq_ent *e;
	struct rq_ent *r;

	rx_abort(ep);
	pthread_mutex_lock(&ep->lock);
	while (ep->rq_n) {
		r = &ep->rq[ep->rq_head];
		ep->rq_head = (ep->rq_head + 1) % ep->rq_cap;
		ep->rq_n--;
		push_wc(ep->rcq, ep, r->wr_id, DAFS_WC_RECV, -ECONNRESET, 0);
	}
	while ((e = ep->sq_head)) {
		ep->sq_head = e->next;
		if (e->op == DAFS_WC_RDMA_READ)
			ep->nrd--;
		push_wc(ep->scq, ep, e->wr_id, e->op,
			e->status ? e->status : -ECONNRESET, 0);
		free(e);
	}
	ep->sq_tail = &ep->sq_head;
	ep->flushed = true;
	pthread_cond_broadcast(&ep->done_cond);
	pthread_cond_broadcast(&ep->rd_cond);
	pthread_mutex_unlock(&ep->lock);
}

/* ---- frame handlers, called with the reader role ---- */

static int rx_send_start(struct tcp_ep *ep, struct rx_state *rx, bool wait)
{
	const struct frame *fr = &rx->fr;
	int err;

	if (fr->rkey || fr->addr || fr->tag)
		return violation(ep, fr, "SEND with nonzero rkey/addr/tag",
				 -EINVAL);

	/* No receive posted: wait for one, as an RC QP retries RNR
	 * forever; the stream behind this frame waits too. Only the
	 * receive thread waits. Another reader leaves the frame where it
	 * is and says so; the post_recv that ends the wait reads on. */
	pthread_mutex_lock(&ep->lock);
	while (!ep->rq_n && !atomic_load(&ep->broken)) {
		if (!wait) {
			atomic_store(&ep->rx_stalled, true);
			pthread_mutex_unlock(&ep->lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&ep->rq_cond, &ep->lock);
	}
	if (atomic_load(&ep->broken)) {
		pthread_mutex_unlock(&ep->lock);
		return -ECONNRESET;
	}
	rx->cur = ep->rq[ep->rq_head];
	ep->rq_head = (ep->rq_head + 1) % ep->rq_cap;
	ep->rq_n--;
	atomic_store(&ep->rx_stalled, false);
	pthread_mutex_unlock(&ep->lock);

	/* ->cur is off the queue: it completes on every path (finish or
	 * rx_abort) before rx_flush completes the ones behind it. The
	 * endpoint breaks first, so an owner reacting to the error finds it
	 * broken. */
	rx->have_cur = true;
	rx->status = -ECONNRESET;
	if (fr->len > rx->cur.sge.len) {
		rx->status = -EMSGSIZE;
		return violation(ep, fr, "SEND larger than the receive buffer",
				 -EMSGSIZE);
	}
	if (fr->len) {
		/* Checked at post time; checked again because the owner may
		 * have deregistered the buffer since (a verbs local
		 * protection error). */
		err = tcp_mr_get(ep->dom, rx->cur.sge.lkey, false,
				 rx->cur.sge.addr, fr->len,
				 DAFS_ACC_LOCAL_WRITE, &rx->mr);
		if (err) {
			rx->mr = NULL;
			rx->status = -EFAULT;
			return violation(ep, fr, "receive buffer deregistered",
					 err);
		}
	}
	rx->dst = rx->cur.sge.addr;
	rx->left = fr->len;
	return 0;
}

static void rx_send_finish(struct tcp_ep *ep, struct rx_state *rx)
{
	rx_put_mr(ep, rx);
	rx->have_cur = false;
	push_wc(ep->rcq, ep, rx->cur.wr_id, DAFS_WC_RECV, 0, rx->fr.len);
}

/* The peer's address, if it can be one in this process at all. */
static int remote_ptr(uint64_t addr, void **p)
{
	if (addr > UINTPTR_MAX)
		return -EINVAL;
	*p = (void *)(uintptr_t)addr;
	return 0;
}

static int rx_write_start(struct tcp_ep *ep, struct rx_state *rx, bool wait)
{
	const struct frame *fr = &rx->fr;
	void *p;
	int err;

	(void)wait;
	if (fr->tag)
		return violation(ep, fr, "RDMA WRITE with nonzero tag",
				 -EINVAL);
	err = remote_ptr(fr->addr, &p);
	if (!err)
		err = tcp_mr_get(ep->dom, fr->rkey, true, p, fr->len,
				 DAFS_ACC_REMOTE_WRITE, &rx->mr);
	if (err) {
		rx->mr = NULL;
		return violation(ep, fr, "RDMA WRITE refused", err);
	}
	rx->dst = p;
	rx->left = fr->len;
	return 0;
}

static void *resp_main(void *arg);
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg);

static int rx_read_req_start(struct tcp_ep *ep, struct rx_state *rx, bool wait)
{
	const struct frame *fr = &rx->fr;
	struct tcp_mr *mr;
	struct rd_req *r;
	void *p;
	int err;

	(void)wait;
	err = remote_ptr(fr->addr, &p);
	if (!err)
		err = tcp_mr_get(ep->dom, fr->rkey, true, p, fr->len,
				 DAFS_ACC_REMOTE_READ, &mr);
	if (err)
		return violation(ep, fr, "RDMA READ refused", err);

	pthread_mutex_lock(&ep->lock);
	if (atomic_load(&ep->broken)) {
		err = -ECONNRESET;
		goto err_unlock;
	}
	if (ep->resp_n == MAX_RD) {
		err = violation(ep, fr, "too many RDMA READs outstanding",
				-ENOBUFS);
		goto err_unlock;
	}
	if (!ep->resp_started) {
		/* The reader may be an application thread: the responder
		 * must not inherit its signal mask. */
		err = start_thread(&ep->resp, resp_main, ep);
		if (err) {
			err = violation(ep, fr, "no responder thread", err);
			goto err_unlock;
		}
		ep->resp_started = true;
	}
	r = &ep->resp_q[(ep->resp_head + ep->resp_n) % MAX_RD];
	r->mr = mr;
	r->addr = p;
	r->len = fr->len;
	r->tag = fr->tag;
	ep->resp_n++;
	pthread_cond_signal(&ep->resp_cond);
	pthread_mutex_unlock(&ep->lock);
	rx->left = 0;
	return 0;

err_unlock:
	pthread_mutex_unlock(&ep->lock);
	tcp_mr_put(ep->dom, mr);
	return err;
}

static int rx_read_resp_start(struct tcp_ep *ep, struct rx_state *rx, bool wait)
{
	const struct frame *fr = &rx->fr;
	struct sq_ent *e;
	int err;

	(void)wait;
	if (fr->rkey || fr->addr)
		return violation(ep, fr, "READ response with nonzero rkey/addr",
				 -EINVAL);

	/* Only the reader role's holder removes from the send queue, and
	 * a queued entry's fields other than ->next never change, so @e
	 * can be read unlocked once found. Responses come in request
	 * order. */
	pthread_mutex_lock(&ep->lock);
	e = ep->sq_head;
	pthread_mutex_unlock(&ep->lock);
	if (!e || e->op != DAFS_WC_RDMA_READ || e->tag != fr->tag ||
	    e->sge.len != fr->len)
		return violation(ep, fr, "unexpected READ response", -EINVAL);

	if (fr->len) {
		err = tcp_mr_get(ep->dom, e->sge.lkey, false, e->sge.addr,
				 fr->len, DAFS_ACC_LOCAL_WRITE, &rx->mr);
		if (err) {
			rx->mr = NULL;
			/* rx_flush reports it on this READ. */
			pthread_mutex_lock(&ep->lock);
			e->status = -EFAULT;
			pthread_mutex_unlock(&ep->lock);
			return violation(ep, fr, "READ target deregistered",
					 err);
		}
	}
	rx->rd = e;
	rx->dst = e->sge.addr;
	rx->left = fr->len;
	return 0;
}

static void rx_read_resp_finish(struct tcp_ep *ep, struct rx_state *rx)
{
	struct sq_ent *e = rx->rd;

	rx_put_mr(ep, rx);
	rx->rd = NULL;
	pthread_mutex_lock(&ep->lock);
	ep->sq_head = e->next;
	if (!ep->sq_head)
		ep->sq_tail = &ep->sq_head;
	ep->nrd--;
	pthread_cond_signal(&ep->rd_cond);
	if (e->signaled)
		push_wc(ep->scq, ep, e->wr_id, e->op, 0, 0);
	free(e);
	/* Send completions held back behind this READ are due now. */
	while ((e = ep->sq_head) && e->op != DAFS_WC_RDMA_READ) {
		ep->sq_head = e->next;
		if (!ep->sq_head)
			ep->sq_tail = &ep->sq_head;
		push_wc(ep->scq, ep, e->wr_id, e->op, e->status, 0);
		free(e);
	}
	pthread_mutex_unlock(&ep->lock);
}

/* ---- reading frames: the reader role ---- */

/* A complete header is in rx->raw: decode and check it. A frame with a
 * handler moves on to RX_START; the peer's HELLO, valid only first,
 * leaves rx at RX_HDR. */
static int rx_hdr(struct tcp_ep *ep, struct rx_state *rx)
{
	struct frame *fr = &rx->fr;

	get_hdr(fr, rx->raw);
	if (fr->flags || fr->rsvd0 || fr->rsvd1)
		return violation(ep, fr, "reserved header bits set", -EINVAL);
	if (!rx->hello) {
		if (fr->type != FR_HELLO || fr->len || fr->rkey ||
		    fr->addr != TCP_MAGIC || fr->tag != TCP_VERSION)
			return violation(ep, fr,
					 "peer is not dafs tcp version 1",
					 -EPROTONOSUPPORT);
		rx->hello = true;
		return 0;
	}
	if (fr->type >= ARRAY_SIZE(frame_ops) || !frame_ops[fr->type].start)
		return violation(ep, fr, "unexpected frame type", -EINVAL);
	rx->phase = RX_START;
	return 0;
}

/* The receive thread should leave the socket alone at a frame boundary:
 * somebody spins on one of @ep's CQs, and so reads it (or a test says). */
static bool rx_yield(const struct tcp_ep *ep)
{
	return atomic_load(&ep->rcq->spinners) ||
	       atomic_load(&ep->scq->spinners) || atomic_load(&ep->paused);
}

/*
 * Read frames, with the reader role held. @wait: the receive thread,
 * which blocks for the rest of a frame it is in (and for a receive
 * buffer) but stops at a frame boundary when the socket is empty (*@idle
 * set: it waits in poll, without the role) or a spinner is there to read.
 * Any other reader reads only what the socket holds, stops after a frame
 * that completes something, and leaves a frame it cannot finish to the
 * next reader. Returns 1 if it read anything, 0 if not, or a negative
 * error, the connection broken and the frame it was in completed.
 */
static int rx_run(struct tcp_ep *ep, bool wait, bool *idle)
{
	_Atomic uint64_t *frames = wait ? &ep->nrx_frames : &ep->ndriven_frames;
	struct rx_state *rx = &ep->rx;
	int moved = 0, err;
	ssize_t n;

	*idle = false;
	if (wait && atomic_load(&ep->paused))
		return 0;
	for (;;) {
		switch (rx->phase) {
		case RX_HDR:
			/* (staged bytes are nobody else's to read) */
			if (wait && !rx->got && !rx->stage_len && rx_yield(ep))
				return moved;
			/* Even the receive thread only looks at a frame
			 * boundary; inside a header it waits for the rest. */
			n = rx_read(ep, rx->raw + rx->got, HDR_LEN - rx->got,
				    wait && rx->got, !rx->got);
			if (n < 0) {
				err = (int)n;
				goto fail;
			}
			if (!n) {
				*idle = true;
				return moved;
			}
			moved = 1;
			rx->got += (uint32_t)n;
			if (rx->got < HDR_LEN)
				continue;
			rx->got = 0;
			err = rx_hdr(ep, rx);
			if (err)
				goto fail;
			if (rx->phase == RX_HDR) {
				atomic_fetch_add(frames, 1);
				continue;
			}
			/* fall through */
		case RX_START:
			rx->mr = NULL;
			err = frame_ops[rx->fr.type].start(ep, rx, wait);
			if (err == -EAGAIN)
				return moved;
			if (err)
				goto fail;
			rx->phase = RX_DATA;
			/* fall through */
		case RX_DATA:
			while (rx->left) {
				n = rx_read(ep, rx->dst, rx->left, wait, false);
				if (n < 0) {
					err = (int)n;
					goto fail;
				}
				if (!n)
					return moved;
				moved = 1;
				rx->dst += n;
				rx->left -= (uint32_t)n;
			}
			if (frame_ops[rx->fr.type].finish)
				frame_ops[rx->fr.type].finish(ep, rx);
			rx->phase = RX_HDR;
			atomic_fetch_add(frames, 1);
			moved = 1;
			/* A waiter takes its completion now rather than first
			 * look for another frame: a request/reply has none
			 * behind it, and that look would be one more recv on
			 * the round trip. What follows is read next time. */
			if (!wait && frame_ops[rx->fr.type].wc &&
			    !rx->stage_len)
				return moved;
			break;
		}
	}
fail:
	ep_fail(ep);
	rx_abort(ep);
	return err;
}

/* Read what @ep's socket holds, if nobody else is reading it. Never
 * blocks. Returns true if anything was read. */
/* A SEND left standing for want of a receive, and one posted since. */
static bool stall_fed(struct tcp_ep *ep)
{
	bool fed;

	if (!atomic_load(&ep->rx_stalled))
		return false;
	pthread_mutex_lock(&ep->lock);
	fed = ep->rq_n > 0;
	pthread_mutex_unlock(&ep->lock);
	return fed;
}

static bool ep_drive(struct tcp_ep *ep)
{
	bool idle, moved = false;
	int rc;

	do {
		if (atomic_load(&ep->broken))
			break;
		if (pthread_mutex_trylock(&ep->rx_lock))
			break;
		rc = rx_run(ep, false, &idle);
		pthread_mutex_unlock(&ep->rx_lock);
		if (rc > 0)
			moved = true;
		/*
		 * A SEND we left in the stage for want of a receive is in
		 * no socket to wake anyone: if the post_recv that feeds it
		 * came while we held the role, its trylock failed, and the
		 * frame is ours to read on (rx_stalled was set under ->lock
		 * after seeing no receive, so that post counts in rq_n).
		 */
	} while (stall_fed(ep));
	return moved;
}

bool tcp_cq_drive(struct tcp_cq *cq)
{
	struct epoll_event ev[DRIVE_BATCH];
	struct tcp_ep *ep[DRIVE_BATCH];
	bool moved = false;
	int i, n = 0;

	/* Another waiter picking endpoints right now reads them as well. */
	if (pthread_mutex_trylock(&cq->ep_lock))
		return false;
	if (cq->neps == 1) {
		/* One endpoint (a client's): looking is a recv either way */
		ep[n++] = cq->eps[0];
	} else if (cq->neps) {
		n = epoll_wait(cq->epfd, ev, DRIVE_BATCH, 0);
		for (i = 0; i < n; i++)
			ep[i] = ev[i].data.ptr;
	}
	/* Pinned, an endpoint outlives our use of it: ep_free unlinks it
	 * under ep_lock, then waits for its pins. */
	for (i = 0; i < n; i++)
		atomic_fetch_add(&ep[i]->pins, 1);
	pthread_mutex_unlock(&cq->ep_lock);
	for (i = 0; i < n; i++) {
		if (ep_drive(ep[i]))
			moved = true;
		atomic_fetch_sub(&ep[i]->pins, 1);
	}
	return moved;
}

void tcp_cq_unpark(struct tcp_cq *cq, bool long_only)
{
	struct tcp_ep *ep;
	unsigned i;

	pthread_mutex_lock(&cq->ep_lock);
	for (i = 0; i < cq->neps; i++) {
		ep = cq->eps[i];
		pthread_mutex_lock(&ep->lock);
		if (ep->parking && (!long_only || ep->park_long)) {
			ep->unpark = true;
			pthread_cond_signal(&ep->park_cond);
		}
		pthread_mutex_unlock(&ep->lock);
	}
	pthread_mutex_unlock(&cq->ep_lock);
}

/* Make @ep one of the endpoints @cq's waiters read. */
static int cq_attach(struct tcp_cq *cq, struct tcp_ep *ep)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ep};
	struct tcp_ep **eps;
	unsigned cap;
	int err = 0;

	pthread_mutex_lock(&cq->ep_lock);
	if (cq->neps == cq->eps_cap) {
		cap = cq->eps_cap ? cq->eps_cap * 2 : 4;
		eps = realloc(cq->eps, cap * sizeof(*eps));
		if (!eps) {
			err = -ENOMEM;
			goto out;
		}
		cq->eps = eps;
		cq->eps_cap = cap;
	}
	if (epoll_ctl(cq->epfd, EPOLL_CTL_ADD, ep->fd, &ev)) {
		err = -errno;
		goto out;
	}
	cq->eps[cq->neps++] = ep;
out:
	pthread_mutex_unlock(&cq->ep_lock);
	return err;
}

/* Undo cq_attach, if not undone yet. A waiter may still hold a pin. */
static void cq_detach(struct tcp_cq *cq, struct tcp_ep *ep)
{
	unsigned i;

	pthread_mutex_lock(&cq->ep_lock);
	for (i = 0; i < cq->neps; i++) {
		if (cq->eps[i] != ep)
			continue;
		epoll_ctl(cq->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
		cq->eps[i] = cq->eps[--cq->neps];
		break;
	}
	pthread_mutex_unlock(&cq->ep_lock);
}

static void ep_detach(struct tcp_ep *ep)
{
	cq_detach(ep->rcq, ep);
	if (ep->scq != ep->rcq)
		cq_detach(ep->scq, ep);
}

/* ---- the receive thread ---- */

/*
 * Whether the receive thread should leave the socket to others, and for
 * how long before it looks again: 0 to read now, else nanoseconds. *@lng:
 * others will tell it when to look again (tcp_cq_unpark), so the time is
 * only a safety net.
 */
static uint64_t stand_aside(struct tcp_ep *ep, bool *lng)
{
	struct tcp_cq *r = ep->rcq, *s = ep->scq;
	unsigned spin, wait;
	uint64_t end, t, now;

	*lng = false;
	if (atomic_load(&ep->broken))
		return 0;
	if (atomic_load(&ep->paused)) {
		*lng = true;
		return PARK_LONG_NS;
	}
	spin = atomic_load(&r->spinners) + atomic_load(&s->spinners);
	wait = atomic_load(&r->waiters) + atomic_load(&s->waiters);
	if (spin) {
		/* A spinner reads every endpoint of its CQ. With others
		 * asleep on these CQs, the last spinner to leave sees to it
		 * that somebody reads (wait_cq's handoff and block); without,
		 * spinners leave without a word, so look again now and then. */
		if (wait) {
			*lng = true;
			return PARK_LONG_NS;
		}
		return PARK_TICK_NS;
	}
	/* Somebody sleeps until a completion arrives: read for them. */
	if (wait)
		return 0;
	/* Nobody waits. A spinner that just left with its completion is
	 * likely to come back soon (a synchronous caller's next request),
	 * and what arrives meanwhile is cheaper read by it than by a
	 * wake-up here. */
	end = atomic_load(&r->spin_end_ns);
	t = atomic_load(&s->spin_end_ns);
	if (t > end)
		end = t;
	end += PARK_GRACE_NS;
	now = tcp_now_ns();
	return now < end ? end - now : 0;
}

/* Count the receive thread in or out of its CQs' nparked, or nlong. */
static void count_parked(struct tcp_ep *ep, bool lng, bool in)
{
	struct tcp_cq *cq[2] = {ep->rcq, ep->scq};
	int i, n = ep->scq == ep->rcq ? 1 : 2;
	atomic_uint *c;

	for (i = 0; i < n; i++) {
		c = lng ? &cq[i]->nlong : &cq[i]->nparked;
		if (in)
			atomic_fetch_add(c, 1);
		else
			atomic_fetch_sub(c, 1);
	}
}

static void abs_time(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000);
	ts->tv_nsec = (long)(ns % 1000000000);
}

/*
 * Stand aside while others read the socket (stand_aside). Returns true
 * if the thread waited, so it looks again before reading.
 *
 * No word is lost: the thread counts itself in its CQs' nparked (and, while
 * looking, nlong) before it reads their spinner and waiter counts, under
 * ->lock; a thread that changes those counts and then finds nparked
 * (nlong) nonzero signals under ->lock (tcp_cq_unpark). With sequentially
 * consistent atomics, whichever comes second sees the other.
 */
static bool rx_park(struct tcp_ep *ep)
{
	bool lng, waited = false;
	struct timespec ts;
	uint64_t ns;

	/* The common case, nobody else reading, costs no lock. */
	if (!stand_aside(ep, &lng))
		return false;

	pthread_mutex_lock(&ep->lock);
	ep->parking = true;
	ep->unpark = false;
	count_parked(ep, false, true);
	for (;;) {
		if (!ep->park_long) {
			ep->park_long = true;
			count_parked(ep, true, true);
		}
		ns = stand_aside(ep, &lng);
		if (!ns || ep->unpark)
			break;
		if (!lng) {
			ep->park_long = false;
			count_parked(ep, true, false);
		}
		abs_time(&ts, ns);
		pthread_cond_timedwait(&ep->park_cond, &ep->lock, &ts);
		waited = true;
		if (ep->unpark)
			break;
	}
	if (ep->park_long) {
		ep->park_long = false;
		count_parked(ep, true, false);
	}
	count_parked(ep, false, false);
	ep->parking = false;
	pthread_mutex_unlock(&ep->lock);
	return waited;
}

/*
 * The receive thread: the NIC of last resort. It reads whenever nobody
 * else does - no spinner on the endpoint's CQs, or a waiter asleep on
 * them - waiting for data in poll() without the reader role, and flushes
 * at the end.
 */
static void *rx_main(void *arg)
{
	struct tcp_ep *ep = arg;
	struct pollfd pfd = {.fd = ep->fd, .events = POLLIN};
	bool idle;
	int rc;

	while (!atomic_load(&ep->broken)) {
		if (rx_park(ep))
			continue;
		pthread_mutex_lock(&ep->rx_lock);
		rc = rx_run(ep, true, &idle);
		pthread_mutex_unlock(&ep->rx_lock);
		if (rc < 0)
			break;
		/* shutdown ends this wait too */
		if (idle)
			poll(&pfd, 1, -1);
	}
	ep_fail(ep);
	pthread_mutex_lock(&ep->rx_lock);
	rx_flush(ep);
	pthread_mutex_unlock(&ep->rx_lock);
	/* A broken socket stays readable: spare the waiters. */
	ep_detach(ep);
	return NULL;
}

void tcp_ep_stats(struct dafs_ep *base, struct tcp_ep_stats *st)
{
	struct tcp_ep *ep = to_ep(base);

	st->rx_thread_frames = atomic_load(&ep->nrx_frames);
	st->driven_frames = atomic_load(&ep->ndriven_frames);
	st->stalled = atomic_load(&ep->rx_stalled);
}

void tcp_ep_pause_rx(struct dafs_ep *base, bool pause)
{
	struct tcp_ep *ep = to_ep(base);

	atomic_store(&ep->paused, pause);
	/* A receive thread inside rx_run stops at its next look at the
	 * flag; once we have had the role, it is not inside. */
	pthread_mutex_lock(&ep->rx_lock);
	pthread_mutex_unlock(&ep->rx_lock);
	pthread_mutex_lock(&ep->lock);
	if (ep->parking) {
		ep->unpark = true;
		pthread_cond_signal(&ep->park_cond);
	}
	pthread_mutex_unlock(&ep->lock);
}

/* Answers the peer's RDMA READs, in order, from registered memory. */
static void *resp_main(void *arg)
{
	struct tcp_ep *ep = arg;
	uint8_t hdr[HDR_LEN];
	struct iovec iov[2];
	struct frame fr;
	struct rd_req r;
	int err;

	pthread_mutex_lock(&ep->lock);
	for (;;) {
		while (!ep->resp_n && !atomic_load(&ep->broken))
			pthread_cond_wait(&ep->resp_cond, &ep->lock);
		if (atomic_load(&ep->broken))
			break;
		r = ep->resp_q[ep->resp_head];
		ep->resp_head = (ep->resp_head + 1) % MAX_RD;
		ep->resp_n--;
		pthread_mutex_unlock(&ep->lock);

		fr = (struct frame){
			.type = FR_READ_RESP,
			.len = r.len,
			.tag = r.tag,
		};
		put_hdr(hdr, &fr);
		iov[0] = (struct iovec){hdr, sizeof(hdr)};
		iov[1] = (struct iovec){(void *)r.addr, r.len};
		pthread_mutex_lock(&ep->send_lock);
		err = send_all(ep->fd, iov, r.len ? 2 : 1);
		pthread_mutex_unlock(&ep->send_lock);
		tcp_mr_put(ep->dom, r.mr);
		if (err)
			ep_fail(ep);

		pthread_mutex_lock(&ep->lock);
	}
	/* Requests never answered still hold their regions. */
	while (ep->resp_n) {
		tcp_mr_put(ep->dom, ep->resp_q[ep->resp_head].mr);
		ep->resp_head = (ep->resp_head + 1) % MAX_RD;
		ep->resp_n--;
	}
	pthread_mutex_unlock(&ep->lock);
	return NULL;
}

/* ---- endpoint setup and teardown ---- */

/* Our threads take no signals: they belong to the application's threads,
 * and every call here restarts on EINTR anyway. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

static bool is_tcp_cq(const struct dafs_cq *cq)
{
	return cq && cq->ops == &dafs_tp_tcp;
}

static int check_attr(const struct dafs_ep_attr *attr)
{
	if (!attr || !is_tcp_cq(attr->send_cq) || !is_tcp_cq(attr->recv_cq))
		return -EINVAL;
	return 0;
}

static int send_hello(int fd)
{
	struct frame fr = {
		.type = FR_HELLO,
		.addr = TCP_MAGIC,
		.tag = TCP_VERSION,
	};
	uint8_t hdr[HDR_LEN];
	struct iovec iov = {hdr, sizeof(hdr)};

	put_hdr(hdr, &fr);
	return send_all(fd, &iov, 1);
}

/* Make an endpoint of connected socket @fd, which it owns from here on
 * (closed on failure too). */
/*
 * A peer whose host died or whose network went (no FIN, no RST) would
 * leave the connection up forever: a server would keep its session, and
 * the session's locks and delegations, beyond any lease. Keepalive probes
 * after TCP_IDLE_S of silence (TCP_PROBES of them, TCP_PROBE_S apart) and
 * a limit on unacknowledged data (TCP_USER_MS) break such a connection,
 * as an RC QP's retry limit does on verbs; its flush then tells the owner.
 * Best effort: a socket that refuses an option keeps the default.
 */
#define TCP_IDLE_S 30
#define TCP_PROBE_S 10
#define TCP_PROBES 3
#define TCP_USER_MS 60000

static void keepalive(int fd)
{
	int on = 1, idle = TCP_IDLE_S, intvl = TCP_PROBE_S, cnt = TCP_PROBES;
	unsigned user = TCP_USER_MS;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
			 sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user,
			 sizeof(user));
}

static int ep_new(struct tcp_domain *dom, int fd,
		  const struct dafs_ep_attr *attr, struct dafs_ep **out)
{
	pthread_condattr_t ca;
	struct tcp_ep *ep;
	int one = 1, err;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		err = -errno;
		goto err_close;
	}
	keepalive(fd);
	ep = calloc(1, sizeof(*ep));
	if (!ep) {
		err = -ENOMEM;
		goto err_close;
	}
	ep->base.ops = &dafs_tp_tcp;
	ep->base.ctx = attr->ctx;
	ep->dom = dom;
	ep->scq = container_of(attr->send_cq, struct tcp_cq, base);
	ep->rcq = container_of(attr->recv_cq, struct tcp_cq, base);
	ep->fd = fd;
	ep->max_inline = attr->max_inline;
	ep->sq_tail = &ep->sq_head;
	ep->rq_cap = attr->max_recv ? attr->max_recv : DEFAULT_MAX_RECV;
	ep->rq = calloc(ep->rq_cap, sizeof(*ep->rq));
	if (!ep->rq) {
		err = -ENOMEM;
		goto err_free;
	}
	err = -pthread_mutex_init(&ep->send_lock, NULL);
	if (err)
		goto err_rq;
	err = -pthread_mutex_init(&ep->lock, NULL);
	if (err)
		goto err_send_lock;
	err = -pthread_cond_init(&ep->rq_cond, NULL);
	if (err)
		goto err_lock;
	err = -pthread_cond_init(&ep->rd_cond, NULL);
	if (err)
		goto err_rq_cond;
	err = -pthread_cond_init(&ep->resp_cond, NULL);
	if (err)
		goto err_rd_cond;
	err = -pthread_cond_init(&ep->done_cond, NULL);
	if (err)
		goto err_resp_cond;
	err = -pthread_condattr_init(&ca);
	if (err)
		goto err_done_cond;
	/* rx_park's timeouts must not jump with the wall clock. */
	err = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!err)
		err = -pthread_cond_init(&ep->park_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto err_done_cond;
	err = -pthread_mutex_init(&ep->rx_lock, NULL);
	if (err)
		goto err_park_cond;
	/* Before anyone can read (and so start the responder), so nothing
	 * else writes yet. */
	err = send_hello(fd);
	if (err)
		goto err_rx_lock;
	err = cq_attach(ep->rcq, ep);
	if (err)
		goto err_rx_lock;
	if (ep->scq != ep->rcq) {
		err = cq_attach(ep->scq, ep);
		if (err)
			goto err_detach;
	}
	err = start_thread(&ep->rx_thread, rx_main, ep);
	if (err)
		goto err_detach;
	*out = &ep->base;
	return 0;

err_detach:
	/* A waiter may have read from the peer meanwhile. Nothing was
	 * posted, so that can have completed nothing; but a READ request
	 * (with a guessed key) would have started the responder. */
	ep_detach(ep);
	while (atomic_load(&ep->pins))
		sched_yield();
	ep_fail(ep);
	if (ep->resp_started)
		pthread_join(ep->resp, NULL);
	rx_flush(ep);
err_rx_lock:
	pthread_mutex_destroy(&ep->rx_lock);
err_park_cond:
	pthread_cond_destroy(&ep->park_cond);
err_done_cond:
	pthread_cond_destroy(&ep->done_cond);
err_resp_cond:
	pthread_cond_destroy(&ep->resp_cond);
err_rd_cond:
	pthread_cond_destroy(&ep->rd_cond);
err_rq_cond:
	pthread_cond_destroy(&ep->rq_cond);
err_lock:
	pthread_mutex_destroy(&ep->lock);
err_send_lock:
	pthread_mutex_destroy(&ep->send_lock);
err_rq:
	free(ep->rq);
err_free:
	free(ep);
err_close:
	close(fd);
	return err;
}

/* Returns once every completion of @ep's posted work is in its CQs. */
static void tcp_disconnect(struct dafs_ep *base)
{
	struct tcp_ep *ep = to_ep(base);

	ep_fail(ep);
	pthread_mutex_lock(&ep->lock);
	while (!ep->flushed)
		pthread_cond_wait(&ep->done_cond, &ep->lock);
	pthread_mutex_unlock(&ep->lock);
}

/* The owner guarantees no call on @ep is in progress or follows. Once the
 * threads are joined nothing can produce a completion for @ep, so purging
 * the CQs then makes the guarantee of transport_i.h hold. */
static void tcp_ep_free(struct dafs_ep *base)
{
	struct tcp_ep *ep;

	if (!base)
		return;
	ep = to_ep(base);
	tcp_disconnect(base);
	pthread_join(ep->rx_thread, NULL);
	if (ep->resp_started)
		pthread_join(ep->resp, NULL);
	/* The receive thread detached it already; a waiter that picked it
	 * before may still look at it, and sees it broken. */
	ep_detach(ep);
	while (atomic_load(&ep->pins))
		sched_yield();
	close(ep->fd);
	tcp_cq_purge(ep->scq, base);
	if (ep->rcq != ep->scq)
		tcp_cq_purge(ep->rcq, base);
	pthread_mutex_destroy(&ep->rx_lock);
	pthread_cond_destroy(&ep->park_cond);
	pthread_cond_destroy(&ep->done_cond);
	pthread_cond_destroy(&ep->resp_cond);
	pthread_cond_destroy(&ep->rd_cond);
	pthread_cond_destroy(&ep->rq_cond);
	pthread_mutex_destroy(&ep->lock);
	pthread_mutex_destroy(&ep->send_lock);
	free(ep->rq);
	free(ep);
}

/* ---- names and sockets ---- */

static int gai_errno(int rc, int notfound)
{
	switch (rc) {
	case 0:
		return 0;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_ADDRFAMILY:
	case EAI_FAMILY:
		return -notfound;
	default:
		return -EINVAL;
	}
}

static int resolve(const char *host, uint16_t port, bool passive,
		   struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	char serv[8];

	snprintf(serv, sizeof(serv), "%u", (unsigned)port);
	return gai_errno(getaddrinfo(host, serv, &hints, res),
			 passive ? EADDRNOTAVAIL : EHOSTUNREACH);
}

static int tcp_listen(struct dafs_domain *dom, const char *host, uint16_t port,
		      struct dafs_listener **out)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct tcp_listener *l;
	struct addrinfo *res, *ai;
	int one = 1, fd = -1, err;

	err = resolve(host, port, true, &res);
	if (err)
		return err;
	err = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		if (!setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				sizeof(one)) &&
		    !bind(fd, ai->ai_addr, ai->ai_addrlen) &&
		    !listen(fd, SOMAXCONN))
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return err;

	l = calloc(1, sizeof(*l));
	if (!l) {
		err = -ENOMEM;
		goto err_close;
	}
	l->base.ops = &dafs_tp_tcp;
	l->dom = to_dom(dom);
	l->fd = fd;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen)) {
		err = -errno;
		goto err_free;
	}
	if (ss.ss_family == AF_INET6)
		l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0) {
		err = -errno;
		goto err_free;
	}
	err = -pthread_mutex_init(&l->lock, NULL);
	if (err)
		goto err_efd;
	err = -pthread_cond_init(&l->idle, NULL);
	if (err)
		goto err_mutex;
	*out = &l->base;
	return 0;

err_mutex:
	pthread_mutex_destroy(&l->lock);
err_efd:
	close(l->efd);
err_free:
	free(l);
err_close:
	close(fd);
	return err;
}

static uint16_t tcp_listener_port(struct dafs_listener *base)
{
	return container_of(base, struct tcp_listener, base)->port;
}

static int tcp_accept(struct dafs_listener *base,
		      const struct dafs_ep_attr *attr, struct dafs_ep **ep)
{
	struct tcp_listener *l = container_of(base, struct tcp_listener, base);
	struct pollfd pfd[2];
	int fd, err;

	err = check_attr(attr);
	if (err)
		return err;
	pthread_mutex_lock(&l->lock);
	if (l->closing) {
		pthread_mutex_unlock(&l->lock);
		return -ECANCELED;
	}
	l->active++;
	pthread_mutex_unlock(&l->lock);

	for (;;) {
		pfd[0] = (struct pollfd){.fd = l->fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = l->efd, .events = POLLIN};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (pfd[1].revents) {
			err = -ECANCELED;
			break;
		}
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			/* Another accept took it, or the client gave up
			 * before we got to it: wait for the next one. */
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				continue;
			err = -errno;
			break;
		}
		err = ep_new(l->dom, fd, attr, ep);
		/* A client that vanished before our greeting went out is
		 * its own problem, not the caller's: keep waiting. */
		if (err == -EPIPE || err == -ECONNRESET)
			continue;
		break;
	}

	pthread_mutex_lock(&l->lock);
	if (!--l->active && l->closing)
		pthread_cond_broadcast(&l->idle);
	pthread_mutex_unlock(&l->lock);
	return err;
}

/* The eventfd stays readable once written, so every accept inside, and
 * any still on its way in, sees it; @l is freed only after they left. */
static void tcp_listener_close(struct dafs_listener *base)
{
	struct tcp_listener *l;
	uint64_t one = 1;

	if (!base)
		return;
	l = container_of(base, struct tcp_listener, base);
	pthread_mutex_lock(&l->lock);
	l->closing = true;
	if (write(l->efd, &one, sizeof(one)) < 0) {
		/* Cannot fail short of a counter overflow; the accepts
		 * would still see the earlier write. */
	}
	while (l->active)
		pthread_cond_wait(&l->idle, &l->lock);
	pthread_mutex_unlock(&l->lock);
	pthread_cond_destroy(&l->idle);
	pthread_mutex_destroy(&l->lock);
	close(l->efd);
	close(l->fd);
	free(l);
}

/* connect(2) interrupted by a signal goes on in the background; wait for
 * it rather than start over. */
static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	socklen_t elen = sizeof(int);
	int soerr;

	if (!connect(fd, sa, len))
		return 0;
	if (errno != EINTR)
		return -errno;
	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen))
		return -errno;
	return -soerr;
}

static int tcp_connect(struct dafs_domain *dom, const char *host, uint16_t port,
		       const struct dafs_ep_attr *attr, struct dafs_ep **ep)
{
	struct addrinfo *res, *ai;
	int fd = -1, err;

	if (!host || !port)
		return -EINVAL;
	err = check_attr(attr);
	if (err)
		return err;
	err = resolve(host, port, false, &res);
	if (err)
		return err;
	err = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		err = connect_fd(fd, ai->ai_addr, ai->ai_addrlen);
		if (!err)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return err;
	return ep_new(to_dom(dom), fd, attr, ep);
}

/* ---- posting ---- */

static void put_sgl(struct tcp_ep *ep, struct tcp_mr **mr, int n)
{
	while (n--)
		if (mr[n])
			tcp_mr_put(ep->dom, mr[n]);
}

/* Check each SGE against the region its lkey names and hold those
 * regions until put_sgl(). Zero-length SGEs are skipped, as they carry
 * nothing. */
static int get_sgl(struct tcp_ep *ep, const struct dafs_sge *sgl, int n,
		   unsigned access, struct tcp_mr **mr)
{
	int i, err;

	for (i = 0; i < n; i++) {
		mr[i] = NULL;
		if (!sgl[i].len)
			continue;
		err = tcp_mr_get(ep->dom, sgl[i].lkey, false, sgl[i].addr,
				 sgl[i].len, access, &mr[i]);
		if (err) {
			put_sgl(ep, mr, i);
			return err;
		}
	}
	return 0;
}

/* Called with ->send_lock held, right after the frame went out (or
 * failed), so completions keep the order the frames had on the wire. */
static void complete_send(struct tcp_ep *ep, uint64_t wr_id, uint8_t op,
			  bool signaled, int status)
{
	struct sq_ent *e;

	if (!signaled && !status)
		return;
	pthread_mutex_lock(&ep->lock);
	/* Behind an unanswered READ it waits for rx_read_resp (or
	 * rx_flush). Out of memory, completing early beats never. */
	if (ep->sq_head && (e = calloc(1, sizeof(*e)))) {
		e->wr_id = wr_id;
		e->op = op;
		e->status = status;
		e->signaled = true;
		*ep->sq_tail = e;
		ep->sq_tail = &e->next;
	} else {
		push_wc(ep->scq, ep, wr_id, op, status, 0);
	}
	pthread_mutex_unlock(&ep->lock);
}

/* SEND and RDMA WRITE: one frame, header plus the gather list. */
static int post_frame(struct tcp_ep *ep, struct frame *fr, uint8_t op,
		      uint64_t wr_id, const struct dafs_sge *sgl, int nsge,
		      unsigned flags)
{
	struct tcp_mr *mr[MAX_SGE] = {0};
	struct iovec iov[1 + MAX_SGE];
	uint8_t hdr[HDR_LEN];
	uint64_t total = 0;
	int i, cnt = 1, err;

	if (flags & ~(DAFS_TP_SIGNALED | DAFS_TP_INLINE))
		return -EINVAL;
	if (nsge < 0 || nsge > MAX_SGE || (nsge && !sgl))
		return -EINVAL;
	for (i = 0; i < nsge; i++)
		total += sgl[i].len;
	if (total > UINT32_MAX)
		return -EMSGSIZE;
	if (flags & DAFS_TP_INLINE) {
		/* The data is in the socket before we return, so an inline
		 * post is an ordinary one that needs no registration. */
		if (total > ep->max_inline)
			return -EINVAL;
	} else {
		err = get_sgl(ep, sgl, nsge, 0, mr);
		if (err)
			return err;
	}

	fr->len = (uint32_t)total;
	put_hdr(hdr, fr);
	iov[0] = (struct iovec){hdr, sizeof(hdr)};
	for (i = 0; i < nsge; i++)
		if (sgl[i].len)
			iov[cnt++] = (struct iovec){sgl[i].addr, sgl[i].len};

	pthread_mutex_lock(&ep->send_lock);
	if (atomic_load(&ep->broken)) {
		err = -ENOTCONN;
	} else {
		/* Posted: from here on the outcome is a completion. */
		err = send_all(ep->fd, iov, cnt);
		if (err)
			ep_fail(ep);
		complete_send(ep, wr_id, op, flags & DAFS_TP_SIGNALED,
			      err ? -ECONNRESET : 0);
		err = 0;
	}
	pthread_mutex_unlock(&ep->send_lock);
	put_sgl(ep, mr, nsge);
	return err;
}

static int tcp_post_send(struct dafs_ep *base, uint64_t wr_id,
			 const struct dafs_sge *sgl, int nsge, unsigned flags)
{
	struct frame fr = {.type = FR_SEND};

	return post_frame(to_ep(base), &fr, DAFS_WC_SEND, wr_id, sgl, nsge,
			  flags);
}

static int tcp_rdma_write(struct dafs_ep *base, uint64_t wr_id,
			  const struct dafs_sge *sgl, int nsge, uint64_t raddr,
			  uint32_t rkey, unsigned flags)
{
	struct frame fr = {
		.type = FR_RDMA_WRITE,
		.rkey = rkey,
		.addr = raddr,
	};

	return post_frame(to_ep(base), &fr, DAFS_WC_RDMA_WRITE, wr_id, sgl,
			  nsge, flags);
}

/* The file end of rdma_write_file, checked before anything is posted: a
 * descriptor that splice() refuses once the header is out costs the
 * connection. */
static int check_file(int fd)
{
	struct stat st;
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	/* O_DIRECT reads fail on alignment, which we could learn with the
	 * header already sent. */
	if (fl & O_DIRECT)
		return -EINVAL;
	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	return 0;
}

/* splice() reports failures of both its ends through one errno. Those of
 * the socket are a broken connection, -ECONNRESET as for any send; the
 * rest are the file's own. */
static int splice_err(int e)
{
	switch (e) {
	case EPIPE:
	case ECONNRESET:
	case ECONNABORTED:
	case ENOTCONN:
	case ESHUTDOWN:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENETDOWN:
		return -ECONNRESET;
	default:
		return -e;
	}
}

/* DAFS_TCP_DEBUG: a file that failed to read halfway cost the connection;
 * the peer only sees it end, and an unsignaled write's error completion
 * may be reaped by nobody who looks. */
static void file_error(struct tcp_ep *ep, int err)
{
	pthread_once(&debug_once, debug_init);
	if (debug)
		fprintf(stderr,
			"dafs tcp: ep %p: RDMA_WRITE from a file: read error "
			"(%s); breaking connection\n",
			(void *)ep, strerror(-err));
}

/*
 * rdma_write_file's staging pipe: page references, not bytes. One per
 * thread, so a thread fills it from the file - which may wait for the
 * disk - before taking the send lock, and other frames on the endpoint
 * are not held up meanwhile. Empty between calls. Made on first use,
 * closed when the thread exits; a forked child makes its own rather than
 * share its parent's.
 */
struct xpipe {
	int fd[2];  /* -1: none yet */
	size_t cap; /* bytes it holds: slots x page size */
	pid_t pid;  /* of the process that made it */
};

static __thread struct xpipe xpipe = {{-1, -1}, 0, 0};
static pthread_key_t xpipe_key;
static pthread_once_t xpipe_once = PTHREAD_ONCE_INIT;
static int xpipe_key_err;

static void pipe_drop(struct xpipe *xp)
{
	if (xp->fd[0] < 0)
		return;
	close(xp->fd[0]);
	close(xp->fd[1]);
	xp->fd[0] = xp->fd[1] = -1;
}

/* Thread exit: its value is the thread's own xpipe. */
static void xpipe_exit(void *arg)
{
	pipe_drop(arg);
}

static void xpipe_key_init(void)
{
	xpipe_key_err = -pthread_key_create(&xpipe_key, xpipe_exit);
}

/*
 * This thread's pipe, sized to 1 MiB, the default pipe-max-size, so that a
 * large read goes file -> pipe -> socket in one round: sendfile()'s own
 * pipe holds 64 KiB, and splicing that little at a time made 1 MiB reads
 * slower than read + send here. If the kernel refuses the size (a user
 * over its pipe quota), the default size works too, in more rounds.
 * Non-blocking, so a miscount can never leave us waiting on our own pipe.
 */
static int pipe_get(struct xpipe **out)
{
	struct xpipe *xp = &xpipe;
	int sz;

	pthread_once(&xpipe_once, xpipe_key_init);
	if (xpipe_key_err)
		return xpipe_key_err;
	if (xp->fd[0] >= 0 && xp->pid != getpid()) {
		/* the parent's, inherited by fork: not ours to use */
		close(xp->fd[0]);
		close(xp->fd[1]);
		xp->fd[0] = xp->fd[1] = -1;
	}
	if (xp->fd[0] < 0) {
		if (pipe2(xp->fd, O_CLOEXEC | O_NONBLOCK))
			return -errno;
		fcntl(xp->fd[1], F_SETPIPE_SZ, 1 << 20);
		sz = fcntl(xp->fd[1], F_GETPIPE_SZ);
		if (sz <= 0 || pthread_setspecific(xpipe_key, xp)) {
			pipe_drop(xp);
			return -ENOMEM;
		}
		xp->cap = (size_t)sz;
		xp->pid = getpid();
	}
	*out = xp;
	return 0;
}

/*
 * Splice up to @len bytes of @fd at *@pos into the (empty) pipe: page
 * references, no copy. A pipe slot holds at most one page, so an
 * unaligned range takes fewer bytes than the pipe's size. Returns the
 * bytes now in the pipe - fewer than @len at end of file (*@eof set) -
 * or the file's negative error, after which the pipe must be dropped.
 */
static ssize_t pipe_fill(struct xpipe *xp, int fd, loff_t *pos, size_t len,
			 bool *eof)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), room, got = 0;
	ssize_t n;

	room = xp->cap - (size_t)(*pos % (loff_t)page);
	if (len > room)
		len = room;
	*eof = false;
	while (got < len) {
		n = splice(fd, pos, xp->fd[1], NULL, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			*eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		/* full after all: send what is there */
		if (errno == EAGAIN && got)
			break;
		return -errno;
	}
	return (ssize_t)got;
}

/*
 * Splice the @len bytes in the pipe to @sock; SPLICE_F_MORE if more of the
 * frame follows. Returns the bytes sent, fewer if the pipe gave up some (a
 * page truncated away before it could be read, which splice reports as
 * the end of the data), -ECONNRESET if the socket failed, or a file
 * error.
 */
static ssize_t pipe_drain(struct xpipe *xp, int sock, size_t len, bool more)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = splice(xp->fd[0], NULL, sock, NULL, len - done,
			   more ? SPLICE_F_MORE : 0);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno == EAGAIN)
			break;
		return splice_err(errno);
	}
	return (ssize_t)done;
}

/* Zeros owed for a file that shrank: the header promised @len bytes and
 * the peer's framing counts on every one of them. */
static int send_zeros(int fd, uint64_t len)
{
	static const uint8_t zeros[4096];
	struct iovec iov[16];
	int cnt;

	while (len) {
		for (cnt = 0; len && cnt < (int)ARRAY_SIZE(iov); cnt++) {
			iov[cnt].iov_base = (void *)zeros;
			iov[cnt].iov_len =
				len < sizeof(zeros) ? len : sizeof(zeros);
			len -= iov[cnt].iov_len;
		}
		if (send_iov(fd, iov, cnt, len ? MSG_MORE : 0))
			return -ECONNRESET;
	}
	return 0;
}

/*
 * An RDMA WRITE frame from a file, its first @got bytes already in the
 * pipe: the header, then pipe to socket, refilling from the file until
 * @len bytes are out. The kernel moves page references, where read + send
 * would copy the data into user space and out again. Called with
 * ->send_lock held. Returns 0, -ECONNRESET (the socket failed), or a file
 * error; either error leaves the stream unusable and the pipe to drop.
 */
static int send_file_frame(struct tcp_ep *ep, struct xpipe *xp,
			   const uint8_t *hdr, int fd, loff_t pos, uint32_t len,
			   ssize_t got, bool eof)
{
	struct iovec iov = {(void *)hdr, HDR_LEN};
	uint32_t left = len;
	ssize_t n;

	/* MSG_MORE despite TCP_NODELAY: the header waits for the payload
	 * instead of leaving in a segment of its own. */
	if (send_iov(ep->fd, &iov, 1, len ? MSG_MORE : 0))
		return -ECONNRESET;
	while (left) {
		n = pipe_drain(xp, ep->fd, (size_t)got, (uint32_t)got < left);
		if (n < 0)
			return (int)n;
		left -= (uint32_t)n;
		if (n < got) {
			/* pages truncated away under the pipe: what is
			 * left in it is stale */
			pipe_drop(xp);
			break;
		}
		if (eof || !left)
			break;
		got = pipe_fill(xp, fd, &pos, left, &eof);
		if (got < 0)
			return (int)got;
	}
	/* Short of @len only if the file shrank since the caller looked. */
	return send_zeros(ep->fd, left);
}

static int tcp_rdma_write_file(struct dafs_ep *base, uint64_t wr_id, int fd,
			       uint64_t off, uint32_t len, uint64_t raddr,
			       uint32_t rkey, unsigned flags)
{
	struct tcp_ep *ep = to_ep(base);
	struct frame fr = {
		.type = FR_RDMA_WRITE,
		.len = len,
		.rkey = rkey,
		.addr = raddr,
	};
	struct xpipe *xp = NULL;
	loff_t pos = (loff_t)off;
	uint8_t hdr[HDR_LEN];
	bool eof = false;
	ssize_t got = 0;
	int err;

	if (flags & ~DAFS_TP_SIGNALED)
		return -EINVAL;
	if (off > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	err = check_file(fd);
	if (err)
		return err;
	put_hdr(hdr, &fr);
	/* The first pipeful is read before the header goes out, and
	 * before the send lock: a file that cannot be read fails the call
	 * with nothing posted, and one that waits for its disk holds up no
	 * other frame. */
	if (len) {
		err = pipe_get(&xp);
		if (err)
			return err;
		got = pipe_fill(xp, fd, &pos, len, &eof);
		if (got < 0) {
			pipe_drop(xp);
			return (int)got;
		}
	}

	pthread_mutex_lock(&ep->send_lock);
	if (atomic_load(&ep->broken)) {
		pthread_mutex_unlock(&ep->send_lock);
		/* what the pipe holds must not start another frame */
		if (xp)
			pipe_drop(xp);
		return -ENOTCONN;
	}
	/* Posted: from here on the outcome is a completion. A file error
	 * halfway breaks the connection, as a local error moves a verbs QP
	 * to the error state. */
	err = send_file_frame(ep, xp, hdr, fd, pos, len, got, eof);
	if (err) {
		ep_fail(ep);
		if (err != -ECONNRESET)
			file_error(ep, err);
	}
	complete_send(ep, wr_id, DAFS_WC_RDMA_WRITE, flags & DAFS_TP_SIGNALED,
		      err);
	pthread_mutex_unlock(&ep->send_lock);
	/* a frame cut short may leave bytes in the pipe */
	if (err && xp)
		pipe_drop(xp);
	return 0;
}

static int tcp_rdma_read(struct dafs_ep *base, uint64_t wr_id,
			 const struct dafs_sge *sge, uint64_t raddr,
			 uint32_t rkey, unsigned flags)
{
	struct tcp_ep *ep = to_ep(base);
	uint8_t hdr[HDR_LEN];
	struct iovec iov = {hdr, sizeof(hdr)};
	struct tcp_mr *mr;
	struct sq_ent *e;
	struct frame fr;
	uint64_t tag;
	int err;

	if (!sge || (flags & ~DAFS_TP_SIGNALED))
		return -EINVAL;
	/* Checked now for the caller's sake; rx_read_resp checks again
	 * when the data arrives, as the owner may deregister meanwhile. */
	if (sge->len) {
		err = tcp_mr_get(ep->dom, sge->lkey, false, sge->addr, sge->len,
				 DAFS_ACC_LOCAL_WRITE, &mr);
		if (err)
			return err;
		tcp_mr_put(ep->dom, mr);
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->wr_id = wr_id;
	e->sge = *sge;
	e->op = DAFS_WC_RDMA_READ;
	e->signaled = flags & DAFS_TP_SIGNALED;

	/* Take a READ slot first, without the send lock, so a full window
	 * holds up only READs. */
	pthread_mutex_lock(&ep->lock);
	while (ep->nrd >= MAX_RD && !atomic_load(&ep->broken))
		pthread_cond_wait(&ep->rd_cond, &ep->lock);
	if (atomic_load(&ep->broken)) {
		err = -ENOTCONN;
		goto err_unlock;
	}
	ep->nrd++;
	pthread_mutex_unlock(&ep->lock);

	/* Queue it and send the request under the send lock, so the queue
	 * is in wire order, which is the order of the responses. */
	pthread_mutex_lock(&ep->send_lock);
	pthread_mutex_lock(&ep->lock);
	if (atomic_load(&ep->broken)) {
		ep->nrd--;
		pthread_cond_signal(&ep->rd_cond);
		pthread_mutex_unlock(&ep->send_lock);
		err = -ENOTCONN;
		goto err_unlock;
	}
	/* the tag from here on: once queued, the entry is the reader's
	 * (an early response or a break frees it) */
	tag = e->tag = ++ep->rd_seq;
	*ep->sq_tail = e;
	ep->sq_tail = &e->next;
	pthread_mutex_unlock(&ep->lock);

	fr = (struct frame){
		.type = FR_READ_REQ,
		.len = sge->len,
		.rkey = rkey,
		.addr = raddr,
		.tag = tag,
	};
	put_hdr(hdr, &fr);
	/* On failure the READ is queued, so rx_flush completes it. */
	if (send_all(ep->fd, &iov, 1))
		ep_fail(ep);
	pthread_mutex_unlock(&ep->send_lock);
	return 0;

err_unlock:
	pthread_mutex_unlock(&ep->lock);
	free(e);
	return err;
}

static int tcp_post_recv(struct dafs_ep *base, uint64_t wr_id,
			 const struct dafs_sge *sge)
{
	struct tcp_ep *ep = to_ep(base);
	struct tcp_mr *mr;
	int err = 0;

	if (!sge)
		return -EINVAL;
	if (sge->len) {
		err = tcp_mr_get(ep->dom, sge->lkey, false, sge->addr, sge->len,
				 DAFS_ACC_LOCAL_WRITE, &mr);
		if (err)
			return err;
		tcp_mr_put(ep->dom, mr);
	}

	pthread_mutex_lock(&ep->lock);
	if (atomic_load(&ep->broken)) {
		err = -ENOTCONN;
	} else if (ep->rq_n == ep->rq_cap) {
		err = -ENOMEM;
	} else {
		ep->rq[(ep->rq_head + ep->rq_n) % ep->rq_cap] =
			(struct rq_ent){wr_id, *sge};
		/* The receive thread waits only on an empty queue. */
		if (!ep->rq_n++)
			pthread_cond_signal(&ep->rq_cond);
	}
	pthread_mutex_unlock(&ep->lock);
	/* A SEND that found no receive was left where it stood by a
	 * reader that could not wait: read it on. (The flag is set under
	 * ->lock, so this post either was seen or sees it.) */
	if (!err && atomic_load(&ep->rx_stalled))
		ep_drive(ep);
	return err;
}

const struct dafs_tp_ops dafs_tp_tcp = {
	.name = "tcp",
	.post_copies = 1,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.cq_free = tcp_cq_free,
	.cq_kick = tcp_cq_kick,
	.cq_new = tcp_cq_new,
	.cq_workers = tcp_cq_workers,
	.dereg_mr = tcp_dereg_mr,
	.disconnect = tcp_disconnect,
	.domain_free = tcp_domain_free,
	.domain_new = tcp_domain_new,
	.ep_free = tcp_ep_free,
	.listen = tcp_listen,
	.listener_close = tcp_listener_close,
	.listener_port = tcp_listener_port,
	.poll_cq = tcp_poll_cq,
	.post_recv = tcp_post_recv,
	.post_send = tcp_post_send,
	.rdma_read = tcp_rdma_read,
	.rdma_write = tcp_rdma_write,
	.rdma_write_file = tcp_rdma_write_file,
	.reg_mr = tcp_reg_mr,
	.wait_cq = tcp_wait_cq,
};
