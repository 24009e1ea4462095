/*
 * server.c - dafsd's core: the connection manager, sessions and their slot
 * tables, the pool of protocol handlers, the callback channel and lease
 * expiry. Request handlers themselves are in ops.c.
 *
 * Data flow of a request: the transport delivers it into a receive buffer
 * of its connection and queues a completion on the server-wide receive CQ;
 * any idle handler takes it, classifies it against the session's slot table
 * (new, retransmission, misordered), executes it into the slot's reply
 * buffer (which doubles as the reply cache), reposts the receive buffer and
 * sends the reply. The pool grows up to max_threads when every handler has
 * been stuck for a while or one sleeps on delegation recalls, so a slow
 * request never holds up the ones behind it for long, and shrinks back
 * towards min_threads while some handler stays idle (reaper_main).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "server_i.h"

static int log_fg = 1, log_verbose;

void srv_log_init(int foreground, int verbose)
{
	log_fg = foreground;
	log_verbose = verbose;
	if (!foreground)
		openlog("dafsd", LOG_PID, LOG_DAEMON);
}

void srv_log(int prio, const char *fmt, ...)
{
	static const char *const names[] = {"emerg", "alert", "crit",
					    "error", "warning", "notice",
					    "info", "debug"};
	char msg[1024];
	va_list ap;

	if (prio >= LOG_INFO && !log_verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fg)
		fprintf(stderr, "dafsd: %s: %s\n", names[prio & 7], msg);
	else
		syslog(prio, "%s", msg);
}

uint64_t srv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sid_str(const uint8_t *sid, char *out)
{
	int i;

	for (i = 0; i < 4; i++)
		sprintf(out + 2 * i, "%02x", sid[i]);
}

/* ---- connections ---- */

static void session_put(struct srv_session *s);

static void conn_get(struct srv_conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

static void conn_free(struct srv_conn *c)
{
	struct dafs_server *srv = c->srv;
	struct srv_conn **pp;

	pthread_mutex_lock(&srv->lock);
	for (pp = &srv->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			srv->nconns--;
			break;
		}
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->lock);
	if (c->ep)
		c->ep->ops->ep_free(c->ep);
	if (c->rmr)
		srv->tp->dereg_mr(c->rmr);
	if (c->boot_mr)
		srv->tp->dereg_mr(c->boot_mr);
	if (c->boot_reply_mr)
		srv->tp->dereg_mr(c->boot_reply_mr);
	free(c->rmem);
	free(c->rbufs);
	if (c->sess)
		session_put(c->sess);
	free(c);
}

static void conn_put(struct srv_conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1)
		conn_free(c);
}

/* Break @c once: flush its buffers (each flush drops its reference) and
 * drop the connection's own reference and the session's. */
static void conn_break(struct srv_conn *c, const char *why)
{
	struct srv_session *s = c->sess;
	int drop_fore = 0, drop_back = 0;

	if (atomic_exchange(&c->dead, 1))
		return;
	if (why)
		srv_log(LOG_INFO, "connection %s closed: %s", c->peer, why);
	c->ep->ops->disconnect(c->ep);
	if (s) {
		pthread_mutex_lock(&s->lock);
		if (s->fore == c) {
			s->fore = NULL;
			drop_fore = 1;
		}
		if (s->back == c) {
			s->back = NULL;
			drop_back = 1;
		}
		pthread_mutex_unlock(&s->lock);
		/* a caller waiting for a callback reply must not wait on */
		pthread_mutex_lock(&s->cb_lock);
		pthread_cond_broadcast(&s->cb_cv);
		pthread_mutex_unlock(&s->cb_lock);
	}
	if (drop_fore)
		conn_put(c);
	if (drop_back)
		conn_put(c);
	conn_put(c);
}

static int post_rbuf(struct srv_conn *c, struct srv_rbuf *rb, uint32_t size,
		     uint32_t lkey)
{
	struct dafs_sge sge = {rb->buf, size, lkey};
	int rc;

	conn_get(c);
	rc = c->ep->ops->post_recv(c->ep, (uintptr_t)rb, &sge);
	if (rc)
		conn_put(c);
	return rc;
}

/* Give a consumed receive buffer back to its connection. The reference
 * the completion carried stays with the caller, who drops it when done
 * with @c (after replying). */
static void repost(struct srv_conn *c, struct srv_rbuf *rb)
{
	if (!atomic_load(&c->dead) && rb != &c->boot_rb &&
	    post_rbuf(c, rb, c->rbuf_size, c->rmr->lkey))
		conn_break(c, "cannot post receive buffer");
}

/*
 * After a request outside a session that left @c unbound (a NULL probe, a
 * CREATE_SESSION or BIND_CONN that failed), the bootstrap buffer takes
 * the next one. Without a receive posted a peer that goes away completes
 * nothing, and the connection would stay forever, counted against
 * --max-connections. A peer that keeps trying is cut off.
 */
#define SRV_BOOT_TRIES 16

static void boot_again(struct srv_conn *c)
{
	if (++c->boot_used >= SRV_BOOT_TRIES) {
		conn_break(c, "too many requests outside a session");
		return;
	}
	if (!atomic_load(&c->dead) &&
	    post_rbuf(c, &c->boot_rb, sizeof(c->boot), c->boot_mr->lkey))
		conn_break(c, "cannot post receive buffer");
}

/* Allocate and post @n receive buffers of @size for a bound connection. */
static int conn_buffers(struct srv_conn *c, uint32_t n, uint32_t size)
{
	struct dafs_server *srv = c->srv;
	uint32_t i;
	int rc;

	c->rmem = aligned_alloc(4096, ((size_t)n * size + 4095) & ~4095ul);
	c->rbufs = calloc(n, sizeof(*c->rbufs));
	if (!c->rmem || !c->rbufs)
		return -ENOMEM;
	rc = srv->tp->reg_mr(srv->dom, c->rmem, (size_t)n * size,
			     DAFS_ACC_LOCAL_WRITE, &c->rmr);
	if (rc)
		return rc;
	c->nrbuf = n;
	c->rbuf_size = size;
	for (i = 0; i < n; i++) {
		c->rbufs[i].conn = c;
		c->rbufs[i].buf = c->rmem + (size_t)i * size;
		rc = post_rbuf(c, &c->rbufs[i], size, c->rmr->lkey);
		if (rc)
			return rc;
	}
	return 0;
}

static int send_buf(struct srv_conn *c, void *buf, uint32_t len,
		    struct dafs_mr *mr)
{
	struct dafs_sge sge = {buf, len, mr->lkey};
	int rc;

	rc = c->ep->ops->post_send(c->ep, 0, &sge, 1, 0);
	if (rc)
		conn_break(c, "send failed");
	return rc;
}

/* ---- sessions ---- */

static void session_put(struct srv_session *s)
{
	struct dafs_server *srv = s->srv;

	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	srv_locks_fini(&s->locks);
	srv_session_close_files(s);
	dafs_slots_fini(&s->slots);
	if (s->reply_mr)
		srv->tp->dereg_mr(s->reply_mr);
	if (s->cb_mr)
		srv->tp->dereg_mr(s->cb_mr);
	free(s->reply_mem);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->cb_lock);
	pthread_cond_destroy(&s->cb_cv);
	free(s);
}

int srv_session_tryget(struct srv_session *s)
{
	int n = atomic_load(&s->refs);

	while (n > 0)
		if (atomic_compare_exchange_weak(&s->refs, &n, n + 1))
			return 1;
	return 0;
}

void srv_session_put(struct srv_session *s)
{
	session_put(s);
}

/* Unlink @s from the server's list (once) and drop the list's reference.
 * Its connections keep it alive until they close. */
static void session_destroy(struct srv_session *s, const char *why)
{
	struct dafs_server *srv = s->srv;
	struct srv_session **pp;
	int found = 0;
	char id[9];

	pthread_mutex_lock(&srv->lock);
	for (pp = &srv->sessions; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			found = 1;
			break;
		}
	pthread_mutex_unlock(&srv->lock);
	if (!found)
		return;
	s->destroyed = 1;
	/* at once: a destroyed session may live on until its connections
	 * close, and other clients wait for its locks */
	srv_locks_release(&s->locks);
	sid_str(s->sid, id);
	srv_log(LOG_INFO, "session %s (%s) ended: %s", id, s->client, why);
	session_put(s);
}

static struct srv_session *session_find(struct dafs_server *srv,
					const uint8_t *sid)
{
	struct srv_session *s;

	pthread_mutex_lock(&srv->lock);
	for (s = srv->sessions; s; s = s->next)
		if (!memcmp(s->sid, sid, DAFS_SID_LEN)) {
			atomic_fetch_add(&s->refs, 1);
			break;
		}
	pthread_mutex_unlock(&srv->lock);
	return s;
}

static int session_new(struct dafs_server *srv, struct dafs_export *ex,
		       const struct dafs_sess_params *p, const char *client,
		       struct srv_session **out)
{
	struct srv_session *s;
	uint8_t **bufs = NULL;
	uint32_t i;
	int rc = -ENOMEM;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->srv = srv;
	s->ex = ex;
	s->p = *p;
	atomic_init(&s->refs, 1);
	snprintf(s->client, sizeof(s->client), "%s", client);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->cb_lock, NULL);
	pthread_cond_init(&s->cb_cv, NULL);
	s->open_free = UINT32_MAX;
	srv_locks_init(&s->locks,
		       srv->cfg.max_lock_fds ? srv->cfg.max_lock_fds
					     : SRV_LOCKFDS_DEFAULT,
		       &srv->lockbudget);
	s->renewed_ns = srv_now_ns();
	/* credential 0: anonymous, until the client registers its own */
	s->creds[0].uid = s->creds[0].gid = 65534;
	s->ncreds = 1;
	if (getrandom(s->sid, sizeof(s->sid), 0) != sizeof(s->sid))
		goto fail;
	s->reply_mem = aligned_alloc(4096, (size_t)p->credits *
						    p->max_response);
	bufs = calloc(p->credits, sizeof(*bufs));
	if (!s->reply_mem || !bufs)
		goto fail;
	rc = srv->tp->reg_mr(srv->dom, s->reply_mem,
			     (size_t)p->credits * p->max_response,
			     DAFS_ACC_LOCAL_WRITE, &s->reply_mr);
	if (rc)
		goto fail;
	rc = srv->tp->reg_mr(srv->dom, s->cb_req, sizeof(s->cb_req),
			     DAFS_ACC_LOCAL_WRITE, &s->cb_mr);
	if (rc)
		goto fail;
	for (i = 0; i < p->credits; i++)
		bufs[i] = s->reply_mem + (size_t)i * p->max_response;
	rc = dafs_slots_init(&s->slots, p->credits, bufs, &dafs_alloc_std);
	if (rc)
		goto fail;
	free(bufs);
	*out = s;
	return 0;
fail:
	free(bufs);
	session_put(s);
	return rc;
}

/* Bind @c to @s in direction @dir and give it its buffers. */
static int session_bind(struct srv_session *s, struct srv_conn *c, int dir)
{
	struct srv_conn *old;
	int rc;

	/* bound before the buffers go up: a message in one of them is the
	 * session's (the completion that brings it orders these stores
	 * before the handler's reads); the connection holds a reference to
	 * the session from here on, given back when it is freed */
	atomic_fetch_add(&s->refs, 1);
	c->sess = s;
	c->dir = dir;
	if (dir == DAFS_CONN_FORE)
		rc = conn_buffers(c, s->p.credits, s->p.max_request);
	else
		rc = conn_buffers(c, s->p.cb_credits, DAFS_MSG_MIN);
	if (rc) {
		/* whatever went up dies with the connection */
		conn_break(c, "cannot post receive buffers");
		return rc;
	}
	snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer),
		 "/%s", dir == DAFS_CONN_FORE ? "fore" : "back");
	conn_get(c); /* the session's pointer */
	pthread_mutex_lock(&s->lock);
	if (dir == DAFS_CONN_FORE) {
		old = s->fore;
		s->fore = c;
	} else {
		old = s->back;
		s->back = c;
	}
	s->renewed_ns = srv_now_ns();
	pthread_mutex_unlock(&s->lock);
	if (old) {
		/* the client moved to a new connection: the old one is dead
		 * to it, whatever TCP thinks */
		conn_break(old, "replaced by a new connection");
		conn_put(old);
	}
	return 0;
}

/* ---- the callback channel ---- */

int srv_callback(struct srv_session *s, uint16_t op, const void *body,
		 int timeout_ms, uint64_t *rtt_ns)
{
	struct dafs_hdr h = {0};
	struct srv_conn *back;
	struct timespec dl;
	uint64_t t0;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&s->lock);
	back = s->back;
	if (back)
		conn_get(back);
	pthread_mutex_unlock(&s->lock);
	if (!back)
		return -ENOTCONN;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->cb_lock);
	/* one callback in flight per session (cb slot 0) */
	while (s->cb_seq & 0x80000000u) {
		if (pthread_cond_timedwait(&s->cb_cv, &s->cb_lock, &dl)) {
			pthread_mutex_unlock(&s->cb_lock);
			conn_put(back);
			return -ETIMEDOUT;
		}
	}
	s->cb_seq = ((s->cb_seq + 1) & 0x7fffffffu) | 0x80000000u;
	s->cb_done = 0;
	h.flags = DAFS_HF_CB;
	h.op = op;
	h.slot = 0;
	h.seq = s->cb_seq & 0x7fffffffu;
	n = dafs_msg_build(s->cb_req, sizeof(s->cb_req), &h, body, NULL);
	t0 = srv_now_ns();
	/* sent unlocked: a failed send breaks the connection, and breaking
	 * it takes cb_lock to wake callback waiters (the in-flight bit keeps
	 * cb_req ours meanwhile) */
	pthread_mutex_unlock(&s->cb_lock);
	rc = n < 0 ? (int)n : send_buf(back, s->cb_req, (uint32_t)n, s->cb_mr);
	pthread_mutex_lock(&s->cb_lock);
	while (!rc && !s->cb_done && !atomic_load(&back->dead))
		if (pthread_cond_timedwait(&s->cb_cv, &s->cb_lock, &dl))
			rc = -ETIMEDOUT;
	if (!rc)
		rc = s->cb_done ? s->cb_status : -ENOTCONN;
	if (rtt_ns)
		*rtt_ns = srv_now_ns() - t0;
	s->cb_seq &= 0x7fffffffu;
	pthread_cond_broadcast(&s->cb_cv);
	pthread_mutex_unlock(&s->cb_lock);
	conn_put(back);
	return rc;
}

static void cb_reply(struct srv_session *s, const struct dafs_hdr *h)
{
	pthread_mutex_lock(&s->cb_lock);
	if ((s->cb_seq & 0x80000000u) && h->seq == (s->cb_seq & 0x7fffffffu)) {
		s->cb_done = 1;
		s->cb_status = dafs_status_to_err(h->arg);
		pthread_cond_broadcast(&s->cb_cv);
	}
	pthread_mutex_unlock(&s->cb_lock);
}

/* ---- the send CQ: completions of signaled RDMA READs ---- */

int srv_wait_send(struct dafs_server *srv, struct srv_wait *w)
{
	return srv_wait_send_until(srv, w, 0);
}

int srv_wait_send_until(struct dafs_server *srv, struct srv_wait *w,
			unsigned timeout_ms)
{
	uint64_t end = timeout_ms ? srv_now_ns() + timeout_ms * 1000000ull : 0;
	struct dafs_wc wc[16];
	int i, n;

	pthread_mutex_lock(&srv->scq_lock);
	while (!w->done) {
		if (end && srv_now_ns() > end) {
			pthread_mutex_unlock(&srv->scq_lock);
			return -ETIMEDOUT;
		}
		if (srv->scq_polling) {
			pthread_cond_wait(&srv->scq_cv, &srv->scq_lock);
			continue;
		}
		srv->scq_polling = 1;
		pthread_mutex_unlock(&srv->scq_lock);
		n = srv->tp->poll_cq(srv->scq, wc, 16);
		if (n == 0)
			srv->tp->wait_cq(srv->scq, 100);
		pthread_mutex_lock(&srv->scq_lock);
		for (i = 0; i < n; i++) {
			struct srv_wait *o = (void *)(uintptr_t)wc[i].wr_id;

			if (o) { /* unsignaled sends carry no waiter */
				o->status = wc[i].status;
				o->done = 1;
			}
		}
		srv->scq_polling = 0;
		pthread_cond_broadcast(&srv->scq_cv);
	}
	pthread_mutex_unlock(&srv->scq_lock);
	return w->status;
}

unsigned srv_fence_arm(struct dafs_server *srv, struct srv_fence *f,
		       struct srv_conn *c, uint64_t *wr_id)
{
	*wr_id = 0;
	if (srv->tp->post_copies)
		return 0;
	srv_fence_wait(srv, f);
	f->w.done = 0;
	f->w.status = 0;
	/* the completion, flushed if the connection breaks, arrives before
	 * the endpoint can be freed */
	conn_get(c);
	f->conn = c;
	*wr_id = (uintptr_t)&f->w;
	return DAFS_TP_SIGNALED;
}

void srv_fence_disarm(struct srv_fence *f)
{
	if (f->conn) {
		conn_put(f->conn);
		f->conn = NULL;
	}
}

void srv_fence_wait(struct dafs_server *srv, struct srv_fence *f)
{
	if (!f->conn)
		return;
	/* A peer that leaves the operation unfinished (verbs: posts no
	 * receive for the reply ahead of it, RNR for ever) would hold this
	 * handler: past the limit its connection breaks, and the flush
	 * completes the operation. Its error, if any, was the connection's,
	 * and went with it. */
	if (srv_wait_send_until(srv, &f->w, SRV_FENCE_MS) == -ETIMEDOUT) {
		conn_break(f->conn, "an RDMA WRITE from a handler's buffer "
				    "did not complete");
		srv_wait_send(srv, &f->w);
	}
	srv_fence_disarm(f);
}

/* ---- requests ---- */

/* A protocol violation: drop the connection and its session, never the
 * server. */
static void malformed(struct srv_conn *c, const struct dafs_hdr *h, int err)
{
	srv_log(LOG_WARNING,
		"connection %s: malformed %s message (op %u, slot %u, seq %u):"
		" %s; dropping the session",
		c->peer, dafs_op_name(h->op), h->op, h->slot, h->seq,
		dafs_strerror(err));
	if (c->sess)
		session_destroy(c->sess, "malformed message");
	conn_break(c, NULL);
}

/* Per-handler-thread resources. */
struct worker {
	struct dafs_server *srv;
	uint8_t *iobuf;
	struct dafs_mr *iomr;
	uint32_t iobuf_size;
	struct srv_fence fence; /* what the transport still reads of iobuf */
	_Alignas(16) uint8_t body[DAFS_BODY_MAX];
};

/* An error reply (a request that never reached its slot has no reply
 * buffer of its own): a bare header, sent inline, which every transport
 * copies at the post, so it needs neither a registered buffer nor a wait
 * (the I/O buffer may still be in use by the device, verbs). */
static void reply_error(struct srv_conn *c, const struct dafs_hdr *rq,
			int err)
{
	uint8_t buf[DAFS_HDR_SIZE];
	struct dafs_sge sge = {buf, DAFS_HDR_SIZE, 0};
	struct dafs_hdr h = *rq;

	h.flags = DAFS_HF_REPLY;
	h.arg = dafs_err_to_status(err);
	h.len = 0;
	dafs_hdr_put(buf, &h);
	if (c->ep->ops->post_send(c->ep, 0, &sge, 1, DAFS_TP_INLINE))
		conn_break(c, "send failed");
}

/* Requests on a connection not yet bound to a session. */
static void handle_unbound(struct dafs_server *srv, struct srv_conn *c,
			   const struct dafs_hdr *h, const void *body)
{
	const struct dafs_m_create_session_req *cs = body;
	const struct dafs_m_bind_conn_req *bc = body;
	struct dafs_m_create_session_rep rep;
	struct dafs_sess_params p;
	struct srv_session *s = NULL;
	struct dafs_hdr rh = *h;
	struct dafs_export *ex = NULL;
	char name[DAFS_NAME_MAX + 1];
	const void *rbody = NULL;
	ssize_t n;
	int i, rc = 0;

	switch (h->op) {
	case DAFS_OP_NULL:
		break;
	case DAFS_OP_CREATE_SESSION:
		if (cs->version != DAFS_PROTO_VERSION) {
			rc = -DAFS_EVERSION;
			break;
		}
		memcpy(name, cs->export_.p, cs->export_.len);
		name[cs->export_.len] = '\0';
		for (i = 0; i < srv->nexports; i++)
			if (!strcmp(dafs_export_name(srv->exports[i]), name))
				ex = srv->exports[i];
		if (!ex) {
			rc = -DAFS_ENOEXPORT;
			break;
		}
		dafs_sess_negotiate(cs, &srv->cfg.limits, &p);
		rc = session_new(srv, ex, &p, c->peer, &s);
		if (rc)
			break;
		rc = session_bind(s, c, DAFS_CONN_FORE);
		if (rc) {
			session_put(s);
			break;
		}
		pthread_mutex_lock(&srv->lock);
		s->next = srv->sessions;
		srv->sessions = s; /* the list takes our reference */
		pthread_mutex_unlock(&srv->lock);
		memset(&rep, 0, sizeof(rep));
		memcpy(rep.sid, s->sid, DAFS_SID_LEN);
		rep.max_request = p.max_request;
		rep.max_response = p.max_response;
		rep.inline_max = p.inline_max;
		rep.credits = p.credits;
		rep.cb_credits = p.cb_credits;
		rep.write_method = p.write_method;
		rep.lease_ms = p.lease_ms;
		rep.max_io = p.max_io;
		dafs_export_root(ex, &rep.root);
		rbody = &rep;
		{
			char id[9];

			sid_str(s->sid, id);
			srv_log(LOG_INFO,
				"session %s created by %s on export %s: "
				"%u credits, max request %u, max response %u,"
				" inline %u, write method %u",
				id, c->peer, name, p.credits, p.max_request,
				p.max_response, p.inline_max, p.write_method);
		}
		break;
	case DAFS_OP_BIND_CONN:
		if (bc->dir != DAFS_CONN_FORE && bc->dir != DAFS_CONN_BACK) {
			rc = -EINVAL;
			break;
		}
		s = session_find(srv, bc->sid);
		if (!s) {
			rc = -DAFS_EBADSESSION;
			break;
		}
		rc = session_bind(s, c, (int)bc->dir);
		session_put(s);
		break;
	default:
		rc = -DAFS_EBADSESSION;
	}
	rh.flags = DAFS_HF_REPLY;
	rh.arg = dafs_err_to_status(rc);
	n = dafs_msg_build(c->boot_reply, sizeof(c->boot_reply), &rh, rbody,
			   NULL);
	if (n < 0) {
		conn_break(c, "cannot build reply");
		return;
	}
	send_buf(c, c->boot_reply, (uint32_t)n, c->boot_reply_mr);
}


/* Requests of one session that may run at once: every handler the pool
 * may have but one. */
static unsigned session_cap(const struct dafs_server *srv)
{
	return srv->cfg.max_threads > 1 ? (unsigned)srv->cfg.max_threads - 1
					 : 1;
}

/*
 * --delay-us: the request waits before it is handled, as if the network
 * between client and server took that much longer each round trip; for
 * experiments on one machine, where loopback makes round trips cheap
 * (docs/delegations.md). It holds the handler meanwhile, so pipelined
 * requests are bounded by the pool, as they are not by a network.
 */
static void emulate_rtt(const struct dafs_server *srv)
{
	struct timespec ts;
	uint64_t end;

	if (!srv->cfg.delay_us)
		return;
	/* a sleep, not a spin: a spin would take the CPU from the client
	 * on the same machine, more so for the client sending more
	 * requests; it ends some tens of us late, the measured round trip
	 * (dafs-lat) says by how much */
	end = srv_now_ns() + (uint64_t)srv->cfg.delay_us * 1000;
	ts.tv_sec = (time_t)(end / 1000000000);
	ts.tv_nsec = (long)(end % 1000000000);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static void handle_request(struct worker *w, struct srv_conn *c,
			   struct srv_rbuf *rb, uint32_t len)
{
	struct dafs_server *srv = w->srv;
	struct srv_session *s = c->sess;
	const struct dafs_opdesc *d;
	struct srv_req r;
	struct dafs_hdr h;
	struct dafs_slot *slot;
	uint32_t rlen;
	int rc;

	rc = dafs_msg_parse(rb->buf, len, &h, w->body);
	if (rc) {
		if (dafs_hdr_get(rb->buf, len, &h))
			memset(&h, 0, sizeof(h));
		malformed(c, &h, rc);
		goto done;
	}
	d = dafs_op_desc(h.op);
	if (h.flags & DAFS_HF_REPLY) {
		/* only callback replies travel client -> server */
		if (!(h.flags & DAFS_HF_CB) || c->dir != DAFS_CONN_BACK) {
			malformed(c, &h, -DAFS_EPROTO);
			goto done;
		}
		cb_reply(s, &h);
		goto done;
	}
	emulate_rtt(srv);
	if (!s) {
		handle_unbound(srv, c, &h, w->body);
		if (!c->sess)
			boot_again(c);
		goto done;
	}
	if (c->dir != DAFS_CONN_FORE ||
	    (d->flags & DAFS_OPF_NOSESSION && h.op != DAFS_OP_NULL)) {
		malformed(c, &h, -DAFS_EPROTO);
		goto done;
	}
	if (s->destroyed) {
		reply_error(c, &h, -DAFS_EBADSESSION);
		goto done;
	}

	pthread_mutex_lock(&s->lock);
	s->renewed_ns = srv_now_ns();
	rc = dafs_slot_begin(&s->slots, h.slot, h.seq, h.op, d->flags);
	pthread_mutex_unlock(&s->lock);
	slot = h.slot < s->slots.n ? &s->slots.s[h.slot] : NULL;
	switch (rc) {
	case DAFS_SV_NEW:
	case DAFS_SV_REEXEC:
		if (atomic_fetch_add(&s->executing, 1) >= session_cap(srv)) {
			/* nothing done, the slot as before: asked again */
			atomic_fetch_sub(&s->executing, 1);
			pthread_mutex_lock(&s->lock);
			dafs_slot_unwind(&s->slots, h.slot);
			pthread_mutex_unlock(&s->lock);
			reply_error(c, &h, -DAFS_EDELAY);
			goto done;
		}
		break;
	case DAFS_SV_REPLAY:
		if (srv->cfg.verbose)
			srv_log(LOG_DEBUG, "session %s: %s slot %u seq %u "
				"answered from the reply cache", s->client,
				dafs_op_name(h.op), h.slot, h.seq);
		repost(c, rb);
		send_buf(c, slot->reply, slot->reply_len, s->reply_mr);
		conn_put(c);
		return;
	case DAFS_SV_BUSY:
		reply_error(c, &h, -DAFS_EDELAY);
		goto done;
	case DAFS_SV_MISORDERED:
		reply_error(c, &h, -DAFS_ESEQ);
		goto done;
	default:
		malformed(c, &h, -DAFS_EPROTO);
		goto done;
	}

	memset(&r, 0, sizeof(r));
	r.srv = srv;
	r.conn = c;
	r.sess = s;
	r.h = h;
	r.msg = rb->buf;
	r.len = len;
	r.reply = slot->reply;
	r.reply_cap = s->p.max_response;
	r.reply_mr = s->reply_mr;
	r.iobuf = w->iobuf;
	r.iomr = w->iomr;
	r.iobuf_size = w->iobuf_size;
	r.fence = &w->fence;
	if (h.op == DAFS_OP_DESTROY_SESSION) {
		struct dafs_hdr rh = h;

		session_destroy(s, "destroyed by the client");
		rh.flags = DAFS_HF_REPLY;
		rh.arg = 0;
		rh.len = 0;
		dafs_hdr_put(r.reply, &rh);
		rlen = DAFS_HDR_SIZE;
	} else {
		rlen = srv_execute(&r, w->body);
	}
	pthread_mutex_lock(&s->lock);
	/* a request that did nothing and asks to be sent again (it would
	 * have waited for recalls with too many others) is not cached */
	if (dafs_get32(r.reply + 16) == dafs_err_to_status(-DAFS_EDELAY))
		dafs_slot_unwind(&s->slots, h.slot);
	else
		dafs_slot_end(&s->slots, h.slot, rlen);
	pthread_mutex_unlock(&s->lock);
	/* the request is consumed: free its buffer before replying so the
	 * client's next request always finds one posted */
	repost(c, rb);
	send_buf(c, r.reply, rlen, s->reply_mr);
	/* counted until the reply is out: a send that blocks (a client
	 * that stops reading) holds the handler as much as the request */
	atomic_fetch_sub(&s->executing, 1);
	conn_put(c);
	return;
done:
	repost(c, rb);
	conn_put(c);
}

static void *worker_main(void *arg);

/* Whether the calling handler, whose wait for work has just timed out,
 * leaves the pool now: the reaper asked for one to go (srv->lock not held).
 * It counts in nthreads until it has let go of everything, as a handler
 * leaving at the server's stop does. */
static int retire(struct dafs_server *srv)
{
	int yes = 0;

	pthread_mutex_lock(&srv->lock);
	if (srv->retire_req &&
	    srv->nthreads - srv->nretiring > srv->cfg.min_threads) {
		srv->retire_req--;
		srv->nretiring++;
		yes = 1;
	}
	pthread_mutex_unlock(&srv->lock);
	return yes;
}

/* Called with srv->lock held. */
static void spawn_worker(struct dafs_server *srv)
{
	pthread_attr_t a;
	pthread_t t;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	/* idle from now on: a handler still starting is not stuck */
	if (!pthread_create(&t, &a, worker_main, srv)) {
		srv->nthreads++;
		srv->nidle++;
	}
	pthread_attr_destroy(&a);
}

static void *worker_main(void *arg)
{
	struct dafs_server *srv = arg;
	struct worker *w;
	struct dafs_wc wc;
	int n, retired = 0;

	/* what top -H and the tests see */
	pthread_setname_np(pthread_self(), "dafsd-handler");
	/* an emulated round trip as long as asked, not 50 us more */
	if (srv->cfg.delay_us)
		prctl(PR_SET_TIMERSLACK, 1000UL);
	w = calloc(1, sizeof(*w));
	if (w) {
		w->srv = srv;
		w->iobuf_size = srv->cfg.limits.max_io;
		w->iobuf = aligned_alloc(4096, w->iobuf_size);
		if (!w->iobuf ||
		    srv->tp->reg_mr(srv->dom, w->iobuf, w->iobuf_size,
				    DAFS_ACC_LOCAL_WRITE, &w->iomr)) {
			free(w->iobuf);
			free(w);
			w = NULL;
		}
	}
	pthread_mutex_lock(&srv->lock);
	if (!w) {
		srv_log(LOG_ERR, "handler thread: out of memory");
		goto exit;
	}
	pthread_mutex_unlock(&srv->lock);

	while (!atomic_load(&srv->stopping)) {
		n = srv->tp->poll_cq(srv->rcq, &wc, 1);
		if (n <= 0) {
			/* idle: what the device still reads of the I/O buffer
			 * is waited for now, so the connection it holds can
			 * go (a handler that gets no more direct reads would
			 * keep it, its session and its files) */
			srv_fence_wait(srv, &w->fence);
			/* only a wait that found nothing for a second: one
			 * woken for a request takes it */
			if (srv->tp->wait_cq(srv->rcq, 1000) == -ETIMEDOUT &&
			    retire(srv)) {
				retired = 1;
				break;
			}
			continue;
		}
		/* the reaper watches a saturated pool on a fine tick: woken
		 * only if it is not on it already (each wake is a context
		 * switch, and under load the count reaches 0 with every
		 * other request). Should the reaper be deciding on its tick
		 * just now, it looks again within a second. */
		if (atomic_fetch_sub(&srv->nidle, 1) == 1) {
			atomic_store(&srv->all_busy, 1);
			if (!atomic_load(&srv->reaper_fine)) {
				pthread_mutex_lock(&srv->lock);
				pthread_cond_broadcast(&srv->cv);
				pthread_mutex_unlock(&srv->lock);
			}
		}

		struct srv_rbuf *rb = (void *)(uintptr_t)wc.wr_id;
		struct srv_conn *c = rb->conn;

		if (wc.status) {
			conn_break(c, dafs_strerror(wc.status));
			conn_put(c);
		} else {
			handle_request(w, c, rb, wc.byte_len);
		}
		atomic_store_explicit(&srv->last_done_ns, srv_now_ns(),
				      memory_order_relaxed);
		atomic_fetch_add(&srv->nidle, 1);
	}
	srv_fence_wait(srv, &w->fence);
	srv->tp->dereg_mr(w->iomr);
	free(w->iobuf);
	free(w);
	pthread_mutex_lock(&srv->lock);
	srv->nretiring -= retired;
exit:
	srv->nidle--;
	srv->nthreads--;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* ---- connection manager and reaper ---- */

static void *acceptor_main(void *arg)
{
	struct dafs_server *srv = arg;
	static atomic_uint seqno;
	struct dafs_ep_attr attr;
	struct srv_conn *c;
	int rc, out_of_fds = 0;

	while (!atomic_load(&srv->stopping)) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			sleep(1);
			continue;
		}
		c->srv = srv;
		atomic_init(&c->refs, 1);
		memset(&attr, 0, sizeof(attr));
		attr.send_cq = srv->scq;
		attr.recv_cq = srv->rcq;
		attr.max_send = 256;
		attr.max_recv = 256;
		attr.max_inline = 256;
		attr.ctx = c;
		rc = srv->lis->ops->accept(srv->lis, &attr, &c->ep);
		if (rc) {
			free(c);
			if (rc == -ECANCELED)
				break;
			if (rc == -EMFILE || rc == -ENFILE) {
				/* the connection waits in the backlog;
				 * try again in a second, and say so once */
				if (!out_of_fds)
					srv_log(LOG_ERR,
						"accept: %s (RLIMIT_NOFILE "
						"%llu, %u descriptors held for "
						"locks): new connections wait "
						"until descriptors are closed",
						rc == -EMFILE
							? "out of file "
							  "descriptors"
							: "the system's file "
							  "table is full",
						(unsigned long long)srv->nofile,
						srv_lockbudget_used(
							&srv->lockbudget));
				out_of_fds = 1;
				sleep(1);
				continue;
			}
			srv_log(LOG_WARNING, "accept: %s", dafs_strerror(rc));
			if (rc == -ENOMEM)
				sleep(1);
			continue;
		}
		if (out_of_fds) {
			srv_log(LOG_NOTICE, "accept: descriptors available "
					    "again, accepting connections");
			out_of_fds = 0;
		}
		snprintf(c->peer, sizeof(c->peer), "#%u",
			 atomic_fetch_add(&seqno, 1) + 1);
		pthread_mutex_lock(&srv->lock);
		rc = srv->nconns >= srv->cfg.max_conns;
		pthread_mutex_unlock(&srv->lock);
		if (rc) {
			/* each connection costs the transport threads and
			 * buffers: refuse rather than exhaust them */
			srv_log(LOG_WARNING,
				"connection %s refused: %d connections open "
				"(--max-connections)",
				c->peer, srv->cfg.max_conns);
			c->ep->ops->ep_free(c->ep);
			free(c);
			continue;
		}
		c->boot_rb.conn = c;
		c->boot_rb.buf = c->boot;
		rc = srv->tp->reg_mr(srv->dom, c->boot, sizeof(c->boot),
				     DAFS_ACC_LOCAL_WRITE, &c->boot_mr);
		if (!rc)
			rc = srv->tp->reg_mr(srv->dom, c->boot_reply,
					     sizeof(c->boot_reply),
					     DAFS_ACC_LOCAL_WRITE,
					     &c->boot_reply_mr);
		pthread_mutex_lock(&srv->lock);
		c->next = srv->conns;
		srv->conns = c;
		srv->nconns++;
		pthread_mutex_unlock(&srv->lock);
		if (!rc)
			rc = post_rbuf(c, &c->boot_rb, sizeof(c->boot),
				       c->boot_mr->lkey);
		if (rc) {
			srv_log(LOG_WARNING, "connection %s: setup: %s",
				c->peer, dafs_strerror(rc));
			conn_break(c, NULL);
			continue;
		}
		srv_log(LOG_INFO, "connection %s accepted", c->peer);
	}
	return NULL;
}

/*
 * The pool grows when handlers are stuck, not when they are merely busy:
 * every handler taken and none finished a request for STUCK_NS (a FIFO
 * open, a slow fsync, a disk stall). Growing on "no handler idle" alone
 * filled 2 cores with 14 threads under a plain depth-8 stream, and the
 * extra threads' spinning cost a third of the read bandwidth. 2 ms was
 * still too short: a depth-8 stream of 1 MiB reads on 2 cores has both
 * handlers blocked in the socket behind a descheduled client for that
 * long now and then, so every pass of 1 GiB added threads (6 -> 13 over
 * three passes), and the reads fell from 5.3-6.5 to 3.3-5.1 GB/s. A
 * request stuck for real waits 20 ms for a new handler instead.
 */
#define STUCK_NS 20000000u
/* the pool gives a handler back after this long with one always idle */
#define SHRINK_NS 5000000000ull

static void *reaper_main(void *arg)
{
	struct dafs_server *srv = arg;
	struct srv_session *s, *expired;
	struct timespec dl;
	uint64_t now, last_done, next_lease = 0, next_shrink = 0;
	long wait_ns;
	int i, fine;

	pthread_mutex_lock(&srv->lock);
	while (!atomic_load(&srv->stopping)) {
		/* a fine tick only while the pool is saturated */
		/* cleared before nidle is read: a handler that takes the
		 * last idle one after the read sees it clear and wakes us
		 * (under srv->lock, which we hold until we wait) */
		atomic_store(&srv->reaper_fine, 0);
		fine = atomic_load(&srv->nidle) == 0;
		if (fine)
			atomic_store(&srv->reaper_fine, 1);
		wait_ns = fine ? (long)STUCK_NS : 1000000000l;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += wait_ns;
		while (dl.tv_nsec >= 1000000000l) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000l;
		}
		pthread_cond_timedwait(&srv->cv, &srv->lock, &dl);
		/* read before now: a handler finishing in between must not
		 * make it later than now */
		last_done = atomic_load(&srv->last_done_ns);
		now = srv_now_ns();
		/* grow: every handler stuck, or one asleep on recalls (the
		 * holders' write-back and DELEGRETURN need a free one) */
		if (atomic_load(&srv->nidle) == 0 &&
		    srv->nthreads < srv->cfg.max_threads &&
		    (now - last_done > STUCK_NS ||
		     __atomic_load_n(&srv->dlg_waiters, __ATOMIC_RELAXED) > 0)) {
			spawn_worker(srv);
			/* give it time to take work */
			atomic_store(&srv->last_done_ns, now);
		}
		/* never below the minimum (a handler that could not start) */
		if (srv->nthreads < srv->cfg.min_threads)
			spawn_worker(srv);
		/* shrink: some handler stayed idle for all of SHRINK_NS,
		 * so one is asked to go (the first whose wait for work
		 * times out) */
		if (now >= next_shrink) {
			if (!atomic_load(&srv->all_busy) &&
			    srv->nthreads - srv->nretiring >
				    srv->cfg.min_threads)
				srv->retire_req = 1;
			/* cleared first, so that a handler's mark made
			 * meanwhile is not overwritten */
			atomic_store(&srv->all_busy, 0);
			if (atomic_load(&srv->nidle) == 0)
				atomic_store(&srv->all_busy, 1);
			next_shrink = now + SHRINK_NS;
		}
		if (now < next_lease)
			continue;
		next_lease = now + 1000000000u;
		pthread_mutex_unlock(&srv->lock);
		srv_deleg_tick(srv);
		for (i = 0; i < srv->nexports; i++)
			dafs_be_tick(srv->exports[i]);
		pthread_mutex_lock(&srv->lock);
		do {
			expired = NULL;
			for (s = srv->sessions; s; s = s->next) {
				int idle;

				pthread_mutex_lock(&s->lock);
				idle = !s->fore &&
				       dafs_lease_expired(s->renewed_ns,
							  s->p.lease_ms, now);
				pthread_mutex_unlock(&s->lock);
				if (idle) {
					expired = s;
					break;
				}
			}
			if (expired) {
				pthread_mutex_unlock(&srv->lock);
				session_destroy(expired, "lease expired");
				pthread_mutex_lock(&srv->lock);
			}
		} while (expired);
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* ---- lifecycle ---- */

/*
 * Locks take descriptors at a client's word (one per owner, file and
 * kind), so all sessions together may have half of what the process may
 * open (RLIMIT_NOFILE, raised to its hard limit by main.c): the other
 * half stays for connections, open files, the descriptor cache and
 * directories being read, whatever the clients lock.
 */
static void lock_budget_init(struct dafs_server *srv)
{
	struct rlimit rl;
	uint64_t lim = 1024;

	if (!getrlimit(RLIMIT_NOFILE, &rl))
		lim = rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX
						   : (uint64_t)rl.rlim_cur;
	srv->nofile = lim;
	/* one session may not take every descriptor the server has: a
	 * quarter of them, at least 1024 */
	srv->max_opens = srv->cfg.max_opens;
	if (!srv->max_opens)
		srv->max_opens = lim / 4 < 1024	      ? 1024
				 : lim / 4 > UINT32_MAX ? UINT32_MAX
							: (uint32_t)(lim / 4);
	lim /= 2;
	srv_lockbudget_init(&srv->lockbudget,
			    lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim);
	srv_log(LOG_DEBUG,
		"lock descriptors: at most %u in all (half of RLIMIT_NOFILE "
		"%llu), %u per session",
		srv->lockbudget.max, (unsigned long long)srv->nofile,
		srv->cfg.max_lock_fds ? srv->cfg.max_lock_fds
				      : SRV_LOCKFDS_DEFAULT);
}

int dafs_server_new(const struct srv_config *cfg, struct dafs_server **out)
{
	struct dafs_server *srv;
	uint8_t key[DAFS_HKEY_LEN];
	uint16_t id;
	int i, rc;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cv, NULL);
	pthread_mutex_init(&srv->scq_lock, NULL);
	pthread_cond_init(&srv->scq_cv, NULL);
	srv_deleg_init(srv);
	srv->can_switch = dafs_creds_can_switch();
	lock_budget_init(srv);
	srv->tp = dafs_tp_find(cfg->scheme);
	if (!srv->tp) {
		srv_log(LOG_ERR, "unknown transport \"%s\"", cfg->scheme);
		rc = -EINVAL;
		goto fail;
	}
	rc = dafs_state_open(cfg->state_dir, &srv->state);
	if (rc) {
		srv_log(LOG_ERR, "state directory %s: %s", cfg->state_dir,
			dafs_strerror(rc));
		goto fail;
	}
	rc = dafs_state_handle_key(srv->state, key);
	if (rc) {
		srv_log(LOG_ERR, "state: handle key: %s", dafs_strerror(rc));
		goto fail;
	}
	for (i = 0; i < cfg->nexports; i++) {
		rc = dafs_state_export_id(srv->state, cfg->exports[i].name,
					  &id);
		if (!rc)
			rc = dafs_export_open(srv->state, cfg->exports[i].name,
					      cfg->exports[i].path, id, key,
					      &srv->exports[i]);
		if (rc) {
			srv_log(LOG_ERR, "export %s=%s: %s",
				cfg->exports[i].name, cfg->exports[i].path,
				dafs_strerror(rc));
			goto fail;
		}
		srv->nexports++;
	}
	rc = srv->tp->domain_new(&srv->dom);
	if (!rc)
		rc = srv->tp->cq_new(srv->dom, 4096, &srv->rcq);
	if (!rc)
		rc = srv->tp->cq_new(srv->dom, 4096, &srv->scq);
	/* the handlers wait on rcq and come back after each request */
	if (!rc && srv->tp->cq_workers)
		srv->tp->cq_workers(srv->rcq);
	if (rc) {
		srv_log(LOG_ERR, "transport %s: %s", srv->tp->name,
			dafs_strerror(rc));
		goto fail;
	}
	rc = srv->tp->listen(srv->dom, cfg->listen_host, cfg->listen_port,
			     &srv->lis);
	if (rc) {
		srv_log(LOG_ERR, "listen on %s port %u: %s", cfg->listen_host,
			cfg->listen_port, dafs_strerror(rc));
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	dafs_server_free(srv);
	return rc;
}

uint16_t dafs_server_port(struct dafs_server *srv)
{
	return srv->tp->listener_port(srv->lis);
}

int dafs_server_run(struct dafs_server *srv)
{
	int i;

	pthread_mutex_lock(&srv->lock);
	for (i = 0; i < srv->cfg.min_threads; i++)
		spawn_worker(srv);
	pthread_mutex_unlock(&srv->lock);
	if (srv_deleg_start(srv))
		return -EAGAIN;
	if (pthread_create(&srv->reaper, NULL, reaper_main, srv))
		return -EAGAIN;
	if (pthread_create(&srv->acceptor, NULL, acceptor_main, srv))
		return -EAGAIN;
	return 0;
}

void dafs_server_stop(struct dafs_server *srv)
{
	struct srv_conn *c;
	struct dafs_wc wc;
	uint64_t until;

	atomic_store(&srv->stopping, 1);
	srv->lis->ops->listener_close(srv->lis);
	srv->lis = NULL;
	pthread_join(srv->acceptor, NULL);
	pthread_mutex_lock(&srv->lock);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->lock);
	pthread_join(srv->reaper, NULL);
	/* stop the handlers */
	pthread_mutex_lock(&srv->lock);
	while (srv->nthreads) {
		srv->tp->cq_kick(srv->rcq);
		srv->tp->cq_kick(srv->scq);
		pthread_mutex_unlock(&srv->lock);
		usleep(1000);
		pthread_mutex_lock(&srv->lock);
	}
	/* break every connection and reap the flushes, so each frees */
	for (;;) {
		for (c = srv->conns; c && atomic_load(&c->dead); c = c->next)
			;
		if (!c)
			break;
		conn_get(c);
		pthread_mutex_unlock(&srv->lock);
		conn_break(c, NULL);
		conn_put(c);
		pthread_mutex_lock(&srv->lock);
	}
	/* the recall sender, once no callback can be waiting long (the
	 * connections are broken); its queued sessions are let go */
	pthread_mutex_unlock(&srv->lock);
	srv_deleg_stop(srv);
	pthread_mutex_lock(&srv->lock);
	while (srv->sessions) {
		struct srv_session *s = srv->sessions;

		pthread_mutex_unlock(&srv->lock);
		session_destroy(s, "server shutdown");
		pthread_mutex_lock(&srv->lock);
	}
	pthread_mutex_unlock(&srv->lock);
	/* every buffer of a broken connection completes (flush), so this
	 * ends; the bound only guards against a transport bug */
	until = srv_now_ns() + 10000000000u;
	while (srv->conns && srv_now_ns() < until) {
		if (srv->tp->poll_cq(srv->rcq, &wc, 1) == 1) {
			struct srv_rbuf *rb = (void *)(uintptr_t)wc.wr_id;

			conn_put(rb->conn);
		} else {
			srv->tp->wait_cq(srv->rcq, 10);
		}
	}
}

void dafs_server_free(struct dafs_server *srv)
{
	int i;

	if (!srv)
		return;
	if (srv->lis)
		srv->lis->ops->listener_close(srv->lis);
	if (srv->conns) {
		/* a connection's threads may still complete into the CQs:
		 * leaking them beats freeing memory under a live writer */
		srv_log(LOG_ERR, "shutdown: connections did not drain; "
				 "leaving transport objects allocated");
		goto skip_transport;
	}
	if (srv->rcq)
		srv->tp->cq_free(srv->rcq);
	if (srv->scq)
		srv->tp->cq_free(srv->scq);
	if (srv->dom)
		srv->tp->domain_free(srv->dom);
skip_transport:
	for (i = 0; i < srv->nexports; i++)
		dafs_export_close(srv->exports[i]);
	if (srv->state)
		dafs_state_close(srv->state);
	srv_deleg_fini(srv);
	free(srv);
}
