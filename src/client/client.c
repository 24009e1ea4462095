/*
 * client.c - the libdafs session: connect and negotiate, slots and request
 * buffers, completion polling shared by all threads, reconnection with
 * re-send (exactly-once through the server's reply cache), the callback
 * channel, credentials. The calls themselves are in calls.c and io.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_i.h"

#define CB_BUF 4096

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t dafs_c_now_ns(void)
{
	return now_ns();
}

static void abs_deadline(struct timespec *ts, uint64_t deadline_ns)
{
	uint64_t left = deadline_ns > now_ns() ? deadline_ns - now_ns() : 0;

	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += (time_t)(left / 1000000000u);
	ts->tv_nsec += (long)(left % 1000000000u);
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* ---- credentials: per thread, per session ---- */

/*
 * What each thread chose on each session: a small table per thread, keyed
 * by the session's serial number (never reused, so a session opened where
 * a closed one was is not taken for it), freed when the thread exits. A
 * session the thread chose nothing on uses its default.
 */
struct tl_cred {
	uint64_t serial;
	uint32_t cred;
};

static __thread struct tl_cred *tl_creds;
static __thread uint32_t tl_n, tl_cap;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_err;
static _Atomic uint64_t serials;

/* The thread exits (its own destructor): a libdafs call from a later
 * destructor finds an empty table, not the freed one. */
static void tl_free(void *p)
{
	free(p);
	tl_creds = NULL;
	tl_n = tl_cap = 0;
}

static void tl_init(void)
{
	tl_key_err = pthread_key_create(&tl_key, tl_free);
}

uint64_t dafs_c_new_serial(void)
{
	return atomic_fetch_add(&serials, 1) + 1;
}

static struct tl_cred *tl_find(const dafs_session_t *s)
{
	uint32_t i;

	for (i = 0; i < tl_n; i++)
		if (tl_creds[i].serial == s->serial)
			return &tl_creds[i];
	return NULL;
}

uint32_t dafs_c_cred(dafs_session_t *s)
{
	struct tl_cred *c = tl_find(s);

	return c ? c->cred : s->cred_default;
}

DAFS_API int dafs_cred_use(dafs_session_t *s, uint32_t id)
{
	struct tl_cred *c, *n;

	if (!s)
		return -EINVAL;
	c = tl_find(s);
	if (!c && (!id || id == s->cred_default))
		return 0;
	if (!c) {
		if (tl_n == tl_cap) {
			pthread_once(&tl_once, tl_init);
			if (tl_key_err)
				return -ENOMEM;
			n = realloc(tl_creds, (tl_cap ? tl_cap * 2 : 4) *
						      sizeof(*n));
			if (!n)
				return -ENOMEM;
			tl_creds = n;
			tl_cap = tl_cap ? tl_cap * 2 : 4;
			pthread_setspecific(tl_key, tl_creds);
		}
		c = &tl_creds[tl_n++];
		c->serial = s->serial;
	}
	c->cred = id ? id : s->cred_default;
	return 0;
}

DAFS_API int dafs_cred_register(dafs_session_t *s, uint32_t uid, uint32_t gid,
				uint32_t ngroups, const uint32_t *groups,
				uint32_t *id)
{
	struct dafs_m_cred_register_req q;
	struct dafs_m_u32 rep;
	int rc;

	if (ngroups > DAFS_GROUPS_MAX)
		return -EINVAL;
	memset(&q, 0, sizeof(q));
	q.uid = uid;
	q.gid = gid;
	q.groups.n = ngroups;
	if (ngroups)
		memcpy(q.groups.v, groups, ngroups * sizeof(uint32_t));
	rc = dafs_c_simple(s, DAFS_OP_CRED_REGISTER, &q, &rep);
	if (rc)
		return rc;
	if (id)
		*id = rep.v;
	return dafs_cred_use(s, rep.v);
}

/* ---- connection setup ---- */

/*
 * One request/reply exchange on a fresh endpoint before the slot machinery
 * runs (CREATE_SESSION, BIND_CONN): uses slot 0 of the send and receive
 * memory, polls @cq directly.
 */
static int bootstrap_call(dafs_session_t *s, struct dafs_ep *ep,
			  struct dafs_cq *cq, uint8_t *sbuf,
			  struct dafs_mr *smr, uint8_t *rbuf,
			  struct dafs_mr *rmr, uint32_t rsize, uint16_t op,
			  const void *body, void *rep)
{
	struct dafs_hdr h = {.op = op, .slot = 0, .seq = 1};
	struct dafs_sge sge;
	struct dafs_wc wc;
	struct dafs_hdr rh;
	uint64_t deadline = now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	ssize_t n;
	int rc;

	sge.addr = rbuf;
	sge.len = rsize;
	sge.lkey = rmr->lkey;
	rc = ep->ops->post_recv(ep, 1, &sge);
	if (rc)
		return rc;
	n = dafs_msg_build(sbuf, DAFS_MSG_MIN, &h, body, NULL);
	if (n < 0)
		return (int)n;
	sge.addr = sbuf;
	sge.len = (uint32_t)n;
	sge.lkey = smr->lkey;
	rc = ep->ops->post_send(ep, 0, &sge, 1, 0);
	if (rc)
		return rc;
	for (;;) {
		n = s->tp->poll_cq(cq, &wc, 1);
		if (n < 0)
			return (int)n;
		if (n == 0) {
			if (now_ns() > deadline)
				return -ETIMEDOUT;
			s->tp->wait_cq(cq, 100);
			continue;
		}
		if (wc.status)
			return wc.status == -ECONNRESET ? -ECONNRESET
							: wc.status;
		if (wc.op == DAFS_WC_RECV)
			break;
	}
	/* the opcode picks the body's type: checked before the body is
	 * decoded into @rep, which is sized for @op's reply */
	if (dafs_hdr_get(rbuf, wc.byte_len, &rh) ||
	    !(rh.flags & DAFS_HF_REPLY) || rh.op != op)
		return -DAFS_EPROTO;
	rc = dafs_msg_parse(rbuf, wc.byte_len, &rh, rep);
	if (rc)
		return rc;
	return dafs_status_to_err(rh.arg);
}

static int connect_ep(dafs_session_t *s, struct dafs_cq *cq,
		      uint32_t nrecv, struct dafs_ep **ep)
{
	struct dafs_ep_attr a;

	memset(&a, 0, sizeof(a));
	a.send_cq = cq;
	a.recv_cq = cq;
	a.max_send = nrecv + 16;
	a.max_recv = nrecv + 1;
	a.max_inline = 256;
	a.ctx = s;
	return s->tp->connect(s->dom, s->url.host, s->url.port, &a, ep);
}

static int post_rbuf(dafs_session_t *s, uint32_t i)
{
	struct dafs_sge sge = {s->rmem + (size_t)i * s->p.max_response,
			       s->p.max_response, s->rmr->lkey};

	/* reconnecting: the new endpoint gets every free buffer */
	if (!s->ep)
		return 0;
	return s->ep->ops->post_recv(s->ep, i, &sge);
}

static void progress(dafs_session_t *s, int wait_ms);

/*
 * One binding of the callback channel: its endpoint, completion queue,
 * memory (ncb receive buffers, then one send buffer) and thread. A
 * reconnection retires the current binding without waiting for its
 * thread, which may be inside a recall handler that sends and so waits
 * for that very reconnection; a retired binding is freed once its thread
 * has ended (at the next reconnection) or at the session's end.
 */
struct cbchan {
	dafs_session_t *s;
	struct dafs_ep *ep;
	struct dafs_cq *cq;
	uint8_t *mem;
	struct dafs_mr *mr;
	pthread_t thread;
	int running; /* the thread was started */
	int closing; /* atomic: stop at the next wake-up */
	int ended;   /* atomic: the thread has returned */
	struct cbchan *next;
};

static __thread const dafs_session_t *tl_cb;

int dafs_c_on_cb_thread(const dafs_session_t *s)
{
	return tl_cb == s;
}

static void cbchan_free(struct cbchan *c)
{
	dafs_session_t *s;

	if (!c)
		return;
	s = c->s;
	if (c->running) {
		__atomic_store_n(&c->closing, 1, __ATOMIC_RELEASE);
		if (c->ep)
			c->ep->ops->disconnect(c->ep);
		s->tp->cq_kick(c->cq);
		pthread_join(c->thread, NULL);
	}
	if (c->ep)
		c->ep->ops->ep_free(c->ep);
	if (c->mr)
		s->tp->dereg_mr(c->mr);
	if (c->cq)
		s->tp->cq_free(c->cq);
	free(c->mem);
	free(c);
}

/* A binding's queue and memory, not yet connected. */
static int cbchan_new(dafs_session_t *s, struct cbchan **out)
{
	struct cbchan *c = calloc(1, sizeof(*c));
	size_t len = (s->ncb + 1) * CB_BUF;
	int rc = -ENOMEM;

	*out = NULL;
	if (!c)
		return rc;
	c->s = s;
	c->mem = aligned_alloc(4096, len);
	if (c->mem)
		rc = s->tp->reg_mr(s->dom, c->mem, len, DAFS_ACC_LOCAL_WRITE,
				   &c->mr);
	if (!rc)
		rc = s->tp->cq_new(s->dom, 64, &c->cq);
	if (rc) {
		cbchan_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* Stop using the current binding; its thread ends on its own. Frees the
 * retired bindings whose threads have ended. Not under s->lock. */
static void cbchan_retire(dafs_session_t *s)
{
	struct cbchan *c = s->cb, **pp;

	if (c) {
		s->cb = NULL;
		__atomic_store_n(&c->closing, 1, __ATOMIC_RELEASE);
		if (c->ep)
			c->ep->ops->disconnect(c->ep);
		s->tp->cq_kick(c->cq);
		c->next = s->cb_retired;
		s->cb_retired = c;
	}
	for (pp = &s->cb_retired; *pp;) {
		c = *pp;
		if (!c->running || __atomic_load_n(&c->ended, __ATOMIC_ACQUIRE)) {
			*pp = c->next;
			cbchan_free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void *cb_main(void *arg);

/* Bind binding @c's endpoint as the back channel, start its thread, and
 * make it the session's. @c is freed on failure. */
static int back_channel(dafs_session_t *s, struct cbchan *c)
{
	struct dafs_m_bind_conn_req bq;
	struct dafs_sge sge;
	uint32_t i;
	int rc;

	rc = connect_ep(s, c->cq, s->ncb, &c->ep);
	if (rc)
		goto fail;
	memcpy(bq.sid, s->sid, DAFS_SID_LEN);
	bq.dir = DAFS_CONN_BACK;
	rc = bootstrap_call(s, c->ep, c->cq, c->mem + s->ncb * CB_BUF, c->mr,
			    c->mem, c->mr, CB_BUF, DAFS_OP_BIND_CONN, &bq, NULL);
	for (i = 0; !rc && i < s->ncb; i++) {
		sge.addr = c->mem + (size_t)i * CB_BUF;
		sge.len = CB_BUF;
		sge.lkey = c->mr->lkey;
		rc = c->ep->ops->post_recv(c->ep, i, &sge);
	}
	if (!rc && pthread_create(&c->thread, NULL, cb_main, c))
		rc = -EAGAIN;
	if (rc)
		goto fail;
	c->running = 1;
	s->cb = c;
	return 0;
fail:
	cbchan_free(c);
	return rc;
}

/* Answer callbacks until the binding closes. */
static void *cb_main(void *arg)
{
	struct cbchan *c = arg;
	dafs_session_t *s = c->s;
	uint8_t *sbuf = c->mem + s->ncb * CB_BUF;
	union {
		struct dafs_m_cb_recall_req recall;
		uint8_t any[DAFS_BODY_MAX];
	} bodybuf, *body = &bodybuf;
	struct dafs_hdr h;
	uint16_t op;
	struct dafs_sge sge;
	struct dafs_wc wc;
	uint8_t *buf;
	ssize_t n;

	tl_cb = s;
	while (!__atomic_load_n(&c->closing, __ATOMIC_ACQUIRE)) {
		n = s->tp->poll_cq(c->cq, &wc, 1);
		if (n <= 0) {
			s->tp->wait_cq(c->cq, 1000);
			continue;
		}
		if (wc.status) {
			if (wc.op == DAFS_WC_RECV)
				break; /* flushed: the channel is gone */
			continue;
		}
		if (wc.op != DAFS_WC_RECV)
			continue;
		buf = c->mem + wc.wr_id * CB_BUF;
		if (dafs_msg_parse(buf, wc.byte_len, &h, body) ||
		    !(h.flags & DAFS_HF_CB) || (h.flags & DAFS_HF_REPLY)) {
			c->ep->ops->disconnect(c->ep);
			break;
		}
		/* answer first: the server waits for the answer, not for
		 * what the recall handler does */
		op = h.op;
		h.flags = DAFS_HF_CB | DAFS_HF_REPLY;
		h.arg = 0;
		n = dafs_msg_build(sbuf, CB_BUF, &h, NULL, NULL);
		sge.addr = buf;
		sge.len = CB_BUF;
		sge.lkey = c->mr->lkey;
		if (c->ep->ops->post_recv(c->ep, wc.wr_id, &sge))
			break;
		sge.addr = sbuf;
		sge.len = (uint32_t)n;
		if (c->ep->ops->post_send(c->ep, 0, &sge, 1, 0))
			break;
		/* the handler may send, and so wait for a reconnection,
		 * which does not wait for this thread */
		if (op == DAFS_OP_CB_RECALL)
			dafs_c_recall(s, &body->recall);
	}
	__atomic_store_n(&c->ended, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Whether @r is an answer a server could give to @q: the negotiation
 * clamps the client's wishes (or the defaults) down to the server's
 * limits and up to the minimums, never beyond what was asked, and the
 * values fit one another. What is allocated from them (credits x buffer
 * sizes) must not be a server's to choose freely.
 */
static int params_sane(const struct dafs_m_create_session_req *q,
		       const struct dafs_m_create_session_rep *r)
{
	static const struct dafs_sess_params any = {
		.max_request = UINT32_MAX,
		.max_response = UINT32_MAX,
		.inline_max = UINT32_MAX,
		.credits = UINT32_MAX,
		.cb_credits = UINT32_MAX,
		.write_method = DAFS_WRITE_RDMA_READ,
		.lease_ms = UINT32_MAX,
		.max_io = UINT32_MAX,
	};
	struct dafs_sess_params most;
	uint32_t room;

	dafs_sess_negotiate(q, &any, &most);
	if (r->max_request < DAFS_MSG_MIN || r->max_request > most.max_request ||
	    r->max_response < DAFS_MSG_MIN ||
	    r->max_response > most.max_response || r->credits == 0 ||
	    r->credits > most.credits || r->cb_credits == 0 ||
	    r->cb_credits > most.cb_credits || r->lease_ms > most.lease_ms ||
	    r->max_io == 0 || r->max_io > DAFS_IO_LIMIT ||
	    (r->write_method != DAFS_WRITE_GATHER &&
	     r->write_method != most.write_method))
		return 0;
	room = (r->max_request < r->max_response ? r->max_request
						 : r->max_response) -
	       DAFS_IO_OVERHEAD;
	if (r->inline_max > room || r->inline_max > most.inline_max)
		return 0;
	/* gather-send carries a write's data in the request */
	return r->write_method != DAFS_WRITE_GATHER ||
	       r->max_io <= r->max_request - DAFS_IO_OVERHEAD;
}

static int create_session(dafs_session_t *s, dafs_fh_t *root)
{
	struct dafs_m_create_session_req q;
	struct dafs_m_create_session_rep rep;
	uint8_t *sb, *rb;
	struct dafs_mr *smr, *rmr;
	int rc;

	/* bootstrap buffers: the final ones depend on the negotiation */
	sb = aligned_alloc(4096, DAFS_MSG_MIN);
	rb = aligned_alloc(4096, DAFS_MSG_MIN);
	if (!sb || !rb) {
		free(sb);
		free(rb);
		return -ENOMEM;
	}
	rc = s->tp->reg_mr(s->dom, sb, DAFS_MSG_MIN, DAFS_ACC_LOCAL_WRITE,
			   &smr);
	if (rc)
		goto out;
	rc = s->tp->reg_mr(s->dom, rb, DAFS_MSG_MIN, DAFS_ACC_LOCAL_WRITE,
			   &rmr);
	if (rc) {
		s->tp->dereg_mr(smr);
		goto out;
	}
	memset(&q, 0, sizeof(q));
	q.version = DAFS_PROTO_VERSION;
	q.export_.p = (const uint8_t *)s->url.export_;
	q.export_.len = (uint32_t)strlen(s->url.export_);
	q.max_request = s->opts.max_request;
	q.max_response = s->opts.max_response;
	q.inline_max = s->opts.inline_max;
	q.credits = s->opts.credits;
	q.cb_credits = 2;
	q.write_method = s->opts.write_method;
	q.lease_ms = s->opts.lease_ms;
	rc = bootstrap_call(s, s->ep, s->cq, sb, smr, rb, rmr, DAFS_MSG_MIN,
			    DAFS_OP_CREATE_SESSION, &q, &rep);
	s->tp->dereg_mr(smr);
	s->tp->dereg_mr(rmr);
	if (rc)
		goto out;
	if (!params_sane(&q, &rep)) {
		rc = -DAFS_EPROTO;
		goto out;
	}
	memcpy(s->sid, rep.sid, DAFS_SID_LEN);
	s->p.max_request = rep.max_request;
	s->p.max_response = rep.max_response;
	s->p.inline_max = rep.inline_max;
	s->p.credits = rep.credits;
	s->p.cb_credits = rep.cb_credits;
	s->p.write_method = rep.write_method;
	s->p.lease_ms = rep.lease_ms;
	s->p.max_io = rep.max_io;
	*root = rep.root;
out:
	free(sb);
	free(rb);
	return rc;
}

static int alloc_buffers(dafs_session_t *s)
{
	uint32_t i, n = s->p.credits;
	size_t ssize, rsize;
	int rc;

	/* a request's fixed part, inline data or an xattr value: bigger
	 * payloads go by gather list straight from the caller's buffer */
	s->sbuf_size = DAFS_MSG_MIN + (s->p.inline_max > 65536
					       ? s->p.inline_max
					       : 65536);
	if (s->sbuf_size > s->p.max_request)
		s->sbuf_size = s->p.max_request;
	ssize = (size_t)n * s->sbuf_size;
	rsize = (size_t)n * s->p.max_response;
	s->smem = aligned_alloc(4096, (ssize + 4095) & ~4095ul);
	s->rmem = aligned_alloc(4096, (rsize + 4095) & ~4095ul);
	s->reqs = calloc(n, sizeof(*s->reqs));
	s->ncb = s->p.cb_credits;
	if (!s->smem || !s->rmem || !s->reqs)
		return -ENOMEM;
	rc = s->tp->reg_mr(s->dom, s->smem, ssize, DAFS_ACC_LOCAL_WRITE,
			   &s->smr);
	if (!rc)
		rc = s->tp->reg_mr(s->dom, s->rmem, rsize,
				   DAFS_ACC_LOCAL_WRITE, &s->rmr);
	if (rc)
		return rc;
	rc = dafs_cslots_init(&s->cslots, n, &dafs_alloc_std);
	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		s->reqs[i].slot = i;
		s->reqs[i].sbuf = s->smem + (size_t)i * s->sbuf_size;
	}
	return 0;
}

static int register_own_creds(dafs_session_t *s)
{
	gid_t g[DAFS_GROUPS_MAX];
	uint32_t groups[DAFS_GROUPS_MAX];
	int i, n;

	n = getgroups(DAFS_GROUPS_MAX, g);
	if (n < 0)
		n = 0; /* more than fit: the primary group still applies */
	for (i = 0; i < n; i++)
		groups[i] = g[i];
	return dafs_cred_register(s, getuid(), getgid(), (uint32_t)n, groups,
				  &s->cred_default);
}

static void fail_outstanding(dafs_session_t *s, int err);

static void session_free(dafs_session_t *s)
{
	struct cbchan *c;

	/* a recall handler still running does not reconnect from now on,
	 * and one that is reconnecting is let finish first */
	pthread_mutex_lock(&s->lock);
	s->closing = 1;
	while (s->reconnecting)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	cbchan_free(s->cb);
	while ((c = s->cb_retired)) {
		s->cb_retired = c->next;
		cbchan_free(c);
	}
	if (s->ep)
		s->ep->ops->ep_free(s->ep);
	/* what is still out will never be answered: its completion groups
	 * get their contexts back (so dafs_cg_free can free them) */
	if (s->reqs)
		fail_outstanding(s, s->broken ? -DAFS_EBROKEN : -ECANCELED);
	if (s->smr)
		s->tp->dereg_mr(s->smr);
	if (s->rmr)
		s->tp->dereg_mr(s->rmr);
	if (s->cq)
		s->tp->cq_free(s->cq);
	dafs_c_regcache_close(s);
	dc_close(s->dc);
	s->dc = NULL;
	if (s->dom)
		s->tp->domain_free(s->dom);
	dafs_cslots_fini(&s->cslots);
	free(s->smem);
	free(s->rmem);
	free(s->reqs);
	pthread_mutex_destroy(&s->recall_mu);
	dafs_c_wb_fini(s);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cv);
	free(s);
}

DAFS_API int dafs_session_open(const char *url, const dafs_session_opts_t *o,
			       dafs_session_t **out)
{
	struct cbchan *cb;
	dafs_session_t *s;
	uint32_t i;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->serial = dafs_c_new_serial();
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->recall_mu, NULL);
	dafs_c_wb_init(s);
	rc = dafs_url_parse(url, &s->url);
	if (rc)
		goto fail;
	s->tp = dafs_tp_find(s->url.scheme);
	if (!s->tp) {
		rc = -DAFS_EURL;
		goto fail;
	}
	if (o)
		s->opts = *o;
	if (!s->opts.timeout_ms)
		s->opts.timeout_ms = 30000;
	rc = s->tp->domain_new(&s->dom);
	if (!rc)
		rc = dafs_c_regcache_open(s);
	if (!rc)
		rc = s->tp->cq_new(s->dom, 1024, &s->cq);
	if (!rc)
		rc = connect_ep(s, s->cq, 1024, &s->ep);
	if (!rc)
		rc = create_session(s, &s->root);
	if (!rc)
		rc = alloc_buffers(s);
	for (i = 0; !rc && i < s->p.credits; i++)
		rc = post_rbuf(s, i);
	if (!rc)
		rc = cbchan_new(s, &cb);
	if (!rc)
		rc = back_channel(s, cb);
	if (!rc)
		rc = register_own_creds(s);
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	session_free(s);
	return rc;
}

DAFS_API void dafs_session_close(dafs_session_t *s)
{
	struct dafs_m_u32 none;
	uint64_t deadline;
	uint32_t i;
	int busy;

	if (!s)
		return;
	/* files left open: what they hold goes (their memory stays theirs:
	 * dafs_close is not called for them) */
	dafs_c_wb_sync_fh(s, NULL, NULL);
	/* let outstanding requests finish, for one request timeout at most:
	 * a request whose caller timed out may never be answered */
	pthread_mutex_lock(&s->lock);
	deadline = now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	for (;;) {
		for (busy = 0, i = 0; i < s->p.credits && s->reqs; i++)
			busy |= s->reqs[i].busy;
		if (!busy || s->broken || now_ns() >= deadline)
			break;
		if (!s->polling && !s->reconnecting)
			progress(s, 10);
		else
			pthread_cond_wait(&s->cv, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	/* with slots still taken, the server's lease reaps the session */
	if (!s->broken && !busy)
		dafs_c_simple(s, DAFS_OP_DESTROY_SESSION, NULL, &none);
	session_free(s);
}

DAFS_API int dafs_session_query(dafs_session_t *s, dafs_session_info_t *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->session_id, s->sid, DAFS_SID_LEN);
	snprintf(info->transport, sizeof(info->transport), "%s",
		 s->tp->name);
	info->credits = s->p.credits;
	info->desc_set_size = s->p.credits; /* one send buffer per slot */
	info->cb_credits = s->p.cb_credits;
	info->max_request = s->p.max_request;
	info->max_response = s->p.max_response;
	info->inline_max = s->p.inline_max;
	info->write_method = s->p.write_method;
	info->lease_ms = s->p.lease_ms;
	info->max_io = s->p.max_io;
	dafs_c_regcache_info(s, info);
	return 0;
}

DAFS_API int dafs_root(dafs_session_t *s, dafs_fh_t *root)
{
	*root = s->root;
	return 0;
}

DAFS_API int dafs_callback_probe(dafs_session_t *s)
{
	struct dafs_m_u64 rep;

	return dafs_c_simple(s, DAFS_OP_PROBE_CALLBACK, NULL, &rep);
}

/* ---- sending, receiving, reconnecting ---- */

static int send_req(dafs_session_t *s, struct creq *cr)
{
	struct dafs_sge sgl[2];
	int n = 1;

	if (!s->ep)
		return 0; /* a reconnection under way sends it (or breaks) */
	cr->gen = s->ep_gen;
	sgl[0].addr = cr->sbuf;
	sgl[0].len = cr->slen;
	sgl[0].lkey = s->smr->lkey;
	if (cr->gather.len)
		sgl[n++] = cr->gather;
	return s->ep->ops->post_send(s->ep, 0, sgl, n, 0);
}

/* Non-zero while a waiter still reads receive buffer @i (s->lock held). */
static int rbuf_held(dafs_session_t *s, uint32_t i)
{
	const uint8_t *b = s->rmem + (size_t)i * s->p.max_response;
	uint32_t j;

	for (j = 0; j < s->p.credits; j++)
		if (s->reqs[j].rbuf == b)
			return 1;
	return 0;
}

/*
 * An orphan, at a reconnection (s->lock held): the server may or may not
 * have seen its sequence number, and may yet take the request off the old
 * connection. A NULL with the same slot and number goes in its place.
 * Where the server has not seen the number, it runs the NULL, and then
 * refuses the orphan as misordered should it still arrive; where it has,
 * it answers DAFS_ESEQ (another op under that number); while it still
 * runs the orphan, DAFS_EDELAY, and the NULL is sent again. Any other
 * reply frees the slot with the number used, so the slot is not lost.
 */
static void resync(dafs_session_t *s, struct creq *cr)
{
	struct dafs_hdr h = {0};
	ssize_t n;

	h.op = DAFS_OP_NULL;
	h.slot = cr->slot;
	h.seq = cr->seq;
	n = dafs_msg_build(cr->sbuf, s->sbuf_size, &h, NULL, NULL);
	if (n <= 0)
		abort(); /* a header and an empty body always fit */
	cr->slen = (uint32_t)n;
	cr->gather.len = 0;
	cr->exposed = 0;
	cr->resync = 1;
	cr->delay_ms = 0;
}

/* Called with s->lock held by the thread that found the connection
 * broken. Reconnects, rebinds and re-sends every outstanding request;
 * on failure the session becomes broken. */
static void reconnect(dafs_session_t *s)
{
	struct dafs_m_bind_conn_req bq;
	uint64_t deadline = now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	struct dafs_ep *old = s->ep, *ep = NULL;
	struct cbchan *cb = NULL;
	uint32_t i;
	int rc = -ENOTCONN;

	s->reconnecting = 1;
	/* nobody posts on the old endpoint once it is freed, nor on the new
	 * one before it is bound */
	s->ep = NULL;
	pthread_mutex_unlock(&s->lock);
	/* no completion of the old endpoint may be reaped after this */
	old->ops->ep_free(old);
	/* the old callback thread may be in a recall handler waiting for
	 * this reconnection to end: it is not waited for */
	cbchan_retire(s);
	if (cbchan_new(s, &cb))
		deadline = 0;
	while (now_ns() < deadline) {
		rc = connect_ep(s, s->cq, 1024, &ep);
		if (!rc) {
			memcpy(bq.sid, s->sid, DAFS_SID_LEN);
			bq.dir = DAFS_CONN_FORE;
			/* the new binding's memory is idle (no thread
			 * yet) and no waiter holds it, unlike the receive
			 * buffers */
			rc = bootstrap_call(s, ep, s->cq, cb->mem +
					    s->ncb * CB_BUF, cb->mr, cb->mem,
					    cb->mr, CB_BUF, DAFS_OP_BIND_CONN,
					    &bq, NULL);
			if (!rc)
				break;
			ep->ops->ep_free(ep);
			ep = NULL;
			if (rc == -DAFS_EBADSESSION)
				break;
		}
		usleep(100000);
	}
	pthread_mutex_lock(&s->lock);
	s->ep = ep; /* NULL if the reconnection failed */
	s->ep_gen++; /* the old one is freed: nothing comes through it */
	for (i = 0; !rc && i < s->p.credits; i++)
		if (!rbuf_held(s, i))
			rc = post_rbuf(s, i);
	pthread_mutex_unlock(&s->lock);
	if (!rc) {
		rc = back_channel(s, cb);
	} else {
		cbchan_free(cb);
	}
	pthread_mutex_lock(&s->lock);
	if (rc) {
		s->broken = 1;
	} else {
		s->reconnects++;
		for (i = 0; i < s->p.credits; i++) {
			struct creq *cr = &s->reqs[i];

			if (!cr->busy || !cr->sent || cr->done)
				continue;
			/* an orphan (its caller timed out) may name memory
			 * deregistered or reused since: a NULL goes in its
			 * place */
			if (cr->kind == CREQ_ORPHAN)
				resync(s, cr);
			/* replies in flight were lost with the connection */
			if (send_req(s, cr))
				s->broken = 1;
		}
	}
	if (s->broken && s->ep)
		/* a re-send failed on the new connection: nothing may reach
		 * the memory of what is failed below through it */
		s->ep->ops->disconnect(s->ep);
	if (s->broken)
		fail_outstanding(s, -DAFS_EBROKEN);
	s->reconnecting = 0;
	pthread_cond_broadcast(&s->cv);
}

static void deliver(dafs_session_t *s, struct creq *cr);
static void finish(dafs_session_t *s, struct creq *cr);

/* Handle a receive completion (s->lock held). */
static void on_reply(dafs_session_t *s, const struct dafs_wc *wc)
{
	uint8_t *buf = s->rmem + wc->wr_id * s->p.max_response;
	struct dafs_hdr h;
	struct creq *cr;

	if (dafs_hdr_get(buf, wc->byte_len, &h) || !(h.flags & DAFS_HF_REPLY) ||
	    h.slot >= s->p.credits) {
		s->ep->ops->disconnect(s->ep); /* the server misbehaves */
		return;
	}
	cr = &s->reqs[h.slot];
	if (!cr->busy || !cr->sent || cr->done || h.seq != cr->seq) {
		/* a stale reply (e.g. of a timed-out request): drop it */
		post_rbuf(s, (uint32_t)wc->wr_id);
		return;
	}
	if (h.op != (cr->resync ? DAFS_OP_NULL : cr->op)) {
		/* the reply's opcode picks the type its body is decoded
		 * into, sized for the request's: another is the server
		 * misbehaving, never a reply to decode */
		post_rbuf(s, (uint32_t)wc->wr_id);
		s->ep->ops->disconnect(s->ep);
		return;
	}
	if (h.arg == dafs_err_to_status(-DAFS_EDELAY)) {
		/* the server still executes the original, or waits for
		 * recalls with enough others: ask again, backing off from
		 * 1 ms to 32 ms (a recall takes up to a lease) */
		post_rbuf(s, (uint32_t)wc->wr_id);
		cr->delay_ms = cr->delay_ms ? cr->delay_ms * 2 : 1;
		if (cr->delay_ms > 32)
			cr->delay_ms = 32;
		if (cr->kind == CREQ_SYNC) {
			/* its caller sends it again, so this thread goes on
			 * dispatching the other replies */
			cr->resend_ns = now_ns() + cr->delay_ms * 1000000ull;
			pthread_cond_broadcast(&s->cv);
			return;
		}
		if (cr->kind == CREQ_ORPHAN && !cr->resync) {
			/* its caller gave up, and the server did nothing:
			 * the slot is free again, its number unused */
			cr->busy = 0;
			dafs_cslot_unuse(&s->cslots, cr->slot);
			pthread_cond_broadcast(&s->cv);
			return;
		}
		pthread_mutex_unlock(&s->lock);
		usleep(1000);
		pthread_mutex_lock(&s->lock);
		if (cr->busy && !cr->done && send_req(s, cr))
			s->ep->ops->disconnect(s->ep);
		return;
	}
	cr->rbuf = buf;
	cr->rlen = wc->byte_len;
	cr->done = 1;
	if (cr->kind != CREQ_SYNC)
		deliver(s, cr);
}

/*
 * Poll once (the caller holds s->lock and is not the poller); waits up to
 * @wait_ms for completions when there are none. Returns with s->lock held.
 */
static void progress(dafs_session_t *s, int wait_ms)
{
	struct dafs_wc wc[16];
	int i, n, lost = 0;

	s->polling = 1;
	pthread_mutex_unlock(&s->lock);
	n = s->tp->poll_cq(s->cq, wc, 16);
	if (n == 0 && wait_ms) {
		s->tp->wait_cq(s->cq, wait_ms);
		n = s->tp->poll_cq(s->cq, wc, 16);
	}
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < n; i++) {
		if (wc[i].status) {
			lost = 1;
			continue;
		}
		if (wc[i].op == DAFS_WC_RECV)
			on_reply(s, &wc[i]);
	}
	s->polling = 0;
	if (lost && !s->broken && !s->closing)
		reconnect(s);
	pthread_cond_broadcast(&s->cv);
}

/* Wait (s->lock held) until @done(@arg) or the deadline; drives progress
 * when no other thread does. Returns 0, -ETIMEDOUT or -DAFS_EBROKEN. */
static int wait_until(dafs_session_t *s, int (*done)(void *), void *arg,
		      uint64_t deadline_ns)
{
	struct timespec ts;
	uint64_t now;

	while (!done(arg)) {
		if (s->broken)
			return -DAFS_EBROKEN;
		now = now_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		if (!s->polling && !s->reconnecting) {
			uint64_t left = (deadline_ns - now) / 1000000u;

			progress(s, left > 100 ? 100 : (int)left + 1);
		} else {
			abs_deadline(&ts, deadline_ns);
			pthread_cond_timedwait(&s->cv, &s->lock, &ts);
		}
	}
	return 0;
}

static int slot_free(void *arg)
{
	return ((dafs_session_t *)arg)->cslots.nfree > 0;
}

int dafs_c_begin(dafs_session_t *s, uint16_t op, const void *body,
		 const struct dafs_sge *gather, struct creq **out)
{
	return dafs_c_begin_until(
		s, op, body, gather,
		now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u, out);
}

int dafs_c_begin_until(dafs_session_t *s, uint16_t op, const void *body,
		       const struct dafs_sge *gather, uint64_t deadline,
		       struct creq **out)
{
	struct dafs_hdr h = {0};
	uint32_t slot, seq, deferred = 0;
	struct creq *cr;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = wait_until(s, slot_free, s, deadline);
	if (!rc)
		rc = dafs_cslot_get(&s->cslots, &slot, &seq);
	if (rc) {
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	cr = &s->reqs[slot];
	cr->busy = 1;
	/* what other threads look at under the lock (a reconnection's
	 * re-send, a late reply) is set before it is dropped: a slot given
	 * back unsent or orphaned still says so */
	cr->seq = seq;
	cr->kind = CREQ_SYNC;
	cr->sent = cr->done = cr->exposed = cr->resync = 0;
	cr->resend_ns = 0;
	pthread_mutex_unlock(&s->lock);

	cr->status = 0;
	cr->rbuf = NULL;
	cr->cg = NULL;
	cr->tmp_reg = NULL;
	cr->mem = NULL;
	cr->batch = NULL;
	cr->dcw = NULL;
	cr->ndcw = 0;
	cr->gather.len = 0;
	cr->op = op;
	h.op = op;
	h.slot = slot;
	h.seq = seq;
	h.arg = dafs_c_cred(s);
	n = dafs_msg_build(cr->sbuf, s->sbuf_size, &h, body, &deferred);
	if (n < 0 || (deferred && (!gather || gather->len != deferred)) ||
	    (uint64_t)n + deferred > s->p.max_request) {
		dafs_c_end(s, cr);
		return n < 0 ? (int)(n == -EMSGSIZE ? -E2BIG : n) : -EINVAL;
	}
	cr->slen = (uint32_t)n;
	if (op < DAFS_OP_MAX)
		__atomic_fetch_add(&s->op_sent[op], 1, __ATOMIC_RELAXED);
	if (deferred)
		cr->gather = *gather;
	cr->deadline_ns = deadline;
	cr->delay_ms = 0;
	cr->resend_ns = 0;
	*out = cr;
	return 0;
}

int dafs_c_send(dafs_session_t *s, struct creq *cr)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	while (s->reconnecting)
		pthread_cond_wait(&s->cv, &s->lock);
	if (s->broken) {
		pthread_mutex_unlock(&s->lock);
		return -DAFS_EBROKEN;
	}
	cr->sent = 1;
	rc = send_req(s, cr);
	if (rc) {
		/* the connection is going: the reconnect re-sends it */
		rc = 0;
	}
	if (s->test_drop) {
		s->test_drop = 0;
		s->ep->ops->disconnect(s->ep);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int req_done_or_resend(void *arg)
{
	struct creq *cr = arg;

	return cr->done || (cr->resend_ns && now_ns() >= cr->resend_ns);
}

int dafs_c_wait(dafs_session_t *s, struct creq *cr, void *rep)
{
	struct dafs_hdr h;
	int rc;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		uint64_t until = cr->resend_ns && cr->resend_ns < cr->deadline_ns
					 ? cr->resend_ns
					 : cr->deadline_ns;

		rc = wait_until(s, req_done_or_resend, cr, until);
		if (cr->done || (rc && rc != -ETIMEDOUT))
			break;
		if (cr->resend_ns && now_ns() >= cr->resend_ns) {
			/* DAFS_EDELAY came back: ask again */
			cr->resend_ns = 0;
			if (send_req(s, cr))
				s->ep->ops->disconnect(s->ep);
			rc = 0;
			continue;
		}
		if (rc || now_ns() >= cr->deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!cr->done)
		return rc ? rc : -ETIMEDOUT;
	rc = dafs_msg_parse(cr->rbuf, cr->rlen, &h, rep);
	if (rc)
		return rc;
	return dafs_status_to_err(h.arg);
}

struct gen_wait {
	dafs_session_t *s;
	uint64_t gen;
};

static int conn_gone(void *arg)
{
	struct gen_wait *w = arg;

	return w->s->ep_gen != w->gen || w->s->closing;
}

/*
 * A request that let the server at the caller's memory by key (a direct
 * read's RDMA WRITE, a write's RDMA READ) gave up waiting (s->lock held):
 * the server may still get to it, through the connection the request last
 * went on, after the caller has reused the memory. So that connection is
 * broken, and this waits until it is gone; the session goes on over a new
 * one (or breaks), and the request, an orphan, is not sent again. A server
 * that acts on the request late then fails on the old connection.
 */
static void fence(dafs_session_t *s, uint64_t gen)
{
	struct gen_wait w = {s, gen};

	if (s->ep_gen != gen)
		return; /* that connection is gone already */
	if (s->ep && !s->reconnecting)
		s->ep->ops->disconnect(s->ep);
	wait_until(s, conn_gone, &w, UINT64_MAX);
}

void dafs_c_end(dafs_session_t *s, struct creq *cr)
{
	pthread_mutex_lock(&s->lock);
	if (cr->rbuf) {
		post_rbuf(s, (uint32_t)((cr->rbuf - s->rmem) /
					s->p.max_response));
		cr->rbuf = NULL;
	}
	if (!cr->sent) {
		/* never sent (its message could not be built, the session
		 * broke): the server never saw the number, which the slot's
		 * next request must use, or it is misordered there and every
		 * later one on the slot too (DAFS_ESEQ) */
		cr->busy = 0;
		dafs_cslot_unuse(&s->cslots, cr->slot);
	} else if (cr->done) {
		cr->busy = 0;
		dafs_cslot_put(&s->cslots, cr->slot);
	} else {
		/* timed out: the slot stays taken until its late reply
		 * (which then frees it) or the session's end, so the
		 * sequence stays in step with the server */
		cr->kind = CREQ_ORPHAN;
		if (cr->resend_ns) {
			/* the server answered DAFS_EDELAY and forgot it: the
			 * slot is free, its number unused, and nothing was
			 * done (no open left behind) */
			cr->resend_ns = 0;
			cr->busy = 0;
			dafs_cslot_unuse(&s->cslots, cr->slot);
		} else if (cr->exposed) {
			fence(s, cr->gen);
		}
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

int dafs_c_call(dafs_session_t *s, uint16_t op, const void *body, void *rep,
		const struct dafs_sge *gather, struct creq **out)
{
	struct creq *cr;
	int rc;

	rc = dafs_c_begin(s, op, body, gather, &cr);
	if (rc)
		return rc;
	rc = dafs_c_send(s, cr);
	if (!rc)
		rc = dafs_c_wait(s, cr, rep);
	if (rc) {
		dafs_c_end(s, cr);
		return rc;
	}
	*out = cr;
	return 0;
}

int dafs_c_simple(dafs_session_t *s, uint16_t op, const void *body,
		  void *rep)
{
	_Alignas(16) uint8_t scratch[DAFS_BODY_MAX];
	struct creq *cr;
	int rc;

	rc = dafs_c_call(s, op, body, rep ? rep : scratch, NULL, &cr);
	if (!rc)
		dafs_c_end(s, cr);
	return rc;
}

int dafs_c_simple_until(dafs_session_t *s, uint16_t op, const void *body,
			void *rep, uint64_t deadline)
{
	_Alignas(16) uint8_t scratch[DAFS_BODY_MAX];
	struct creq *cr;
	int rc;

	rc = dafs_c_begin_until(s, op, body, NULL, deadline, &cr);
	if (rc)
		return rc;
	rc = dafs_c_send(s, cr);
	if (!rc)
		rc = dafs_c_wait(s, cr, rep ? rep : scratch);
	dafs_c_end(s, cr);
	return rc;
}

/* ---- asynchronous delivery ---- */

void dafs_c_cg_push(dafs_cg_t *cg, void *ctx, int64_t result)
{
	dafs_completion_t *q;
	uint32_t i, cap;

	if (cg->count == cg->cap) {
		cap = cg->cap ? cg->cap * 2 : 64;
		q = malloc(cap * sizeof(*q));
		if (!q)
			abort(); /* cannot lose a completion */
		for (i = 0; i < cg->count; i++)
			q[i] = cg->q[(cg->head + i) % cg->cap];
		free(cg->q);
		cg->q = q;
		cg->cap = cap;
		cg->head = 0;
	}
	cg->q[(cg->head + cg->count) % cg->cap].ctx = ctx;
	cg->q[(cg->head + cg->count) % cg->cap].result = result;
	cg->count++;
	cg->outstanding--;
}

void dafs_c_async_release(struct creq *cr)
{
	int i;

	for (i = 0; cr->batch && i < cr->nbatch; i++)
		if (cr->batch[i].mem)
			atomic_fetch_sub(&cr->batch[i].mem->users, 1);
	free(cr->batch);
	cr->batch = NULL;
	if (cr->dcw != &cr->dcw1)
		free(cr->dcw);
	cr->dcw = NULL;
	cr->ndcw = 0;
}

/* The ranges an asynchronous write covered leave the data cache, before
 * its completions show (s->lock held): a block filled after the write was
 * sent but read before it landed is stale (dafs_write does this on its
 * return). */
static void uncache_spans(dafs_session_t *s, struct creq *cr)
{
	int i;

	for (i = 0; i < cr->ndcw; i++)
		dc_write(s->dc, &cr->dcw[i].fh, cr->dcw[i].off,
			 cr->dcw[i].len);
}

/* An asynchronous request's reply arrived (s->lock held): turn it into
 * completions and free the slot. */
static void deliver(dafs_session_t *s, struct creq *cr)
{
	struct dafs_m_read_rep rr;
	struct dafs_m_u32 wr;
	struct dafs_m_batch_rep br;
	struct dafs_m_batch_result res;
	struct dafs_dec d;
	struct dafs_hdr h;
	int64_t result;
	int i, rc;

	uncache_spans(s, cr);
	switch (cr->kind) {
	case CREQ_READ:
		rc = dafs_msg_parse(cr->rbuf, cr->rlen, &h, &rr);
		if (!rc)
			rc = dafs_status_to_err(h.arg);
		/* as read_server() checks: an inline read's bytes are all
		 * in the reply, a direct one's none */
		if (!rc && (rr.count > cr->ulen ||
			    (rr.data.len && rr.data.len != rr.count) ||
			    (cr->inl_read && rr.data.len != rr.count)))
			rc = -DAFS_EPROTO;
		if (!rc && rr.data.len)
			memcpy(cr->ubuf, rr.data.p, rr.data.len);
		result = rc ? (int64_t)rc : (int64_t)rr.count;
		dafs_c_cg_push(cr->cg, cr->ctx, result);
		break;
	case CREQ_WRITE:
		rc = dafs_msg_parse(cr->rbuf, cr->rlen, &h, &wr);
		if (!rc)
			rc = dafs_status_to_err(h.arg);
		if (!rc && wr.v > cr->ulen)
			rc = -DAFS_EPROTO;
		dafs_c_cg_push(cr->cg, cr->ctx, rc ? rc : (int64_t)wr.v);
		break;
	case CREQ_BATCH:
		rc = dafs_msg_parse(cr->rbuf, cr->rlen, &h, &br);
		if (!rc)
			rc = dafs_status_to_err(h.arg);
		if (!rc && br.n != (uint32_t)cr->nbatch)
			rc = -DAFS_EPROTO;
		dafs_dec_init(&d, br.results.p, rc ? 0 : br.results.len);
		for (i = 0; i < cr->nbatch; i++) {
			const dafs_iodesc_t *io = &cr->batch[i];

			result = rc;
			if (!rc) {
				/* a write's result carries no data (its
				 * source may be read-only), a read's data
				 * is all it counts or none (direct) */
				if (dafs_dec_msg(&d, &dafs_mt_batch_result,
						 &res) ||
				    res.count > io->len ||
				    (io->write && res.data.len) ||
				    (res.data.len &&
				     res.data.len != res.count)) {
					rc = -DAFS_EPROTO;
					result = rc;
				} else if (res.status) {
					result = dafs_status_to_err(
						res.status);
				} else {
					if (res.data.len)
						memcpy(io->buf, res.data.p,
						       res.data.len <= io->len
							       ? res.data.len
							       : io->len);
					result = res.count;
				}
			}
			dafs_c_cg_push(cr->cg, io->ctx, result);
		}
		break;
	default: /* CREQ_ORPHAN: nobody waits any more */
		break;
	}
	finish(s, cr);
}

/* An asynchronous request or an orphan is over (s->lock held): what it
 * held goes, its reply buffer is posted again, its slot freed. */
static void finish(dafs_session_t *s, struct creq *cr)
{
	dafs_c_async_release(cr);
	dafs_c_tmp_put(cr->tmp_reg);
	cr->tmp_reg = NULL;
	if (cr->mem) {
		atomic_fetch_sub(&cr->mem->users, 1);
		cr->mem = NULL;
	}
	if (cr->rbuf)
		post_rbuf(s, (uint32_t)((cr->rbuf - s->rmem) /
					s->p.max_response));
	cr->rbuf = NULL;
	cr->busy = 0;
	dafs_cslot_put(&s->cslots, cr->slot);
}

/* No reply will come (the session broke for good, or is being freed;
 * s->lock held, or nobody else left): every asynchronous request still out
 * completes with @err (each element of a batch on its own), so its
 * submitter gets every context back; orphans are let go. A write's range
 * leaves the data cache, since it may have landed. Synchronous callers
 * find the break themselves. */
static void fail_outstanding(dafs_session_t *s, int err)
{
	uint32_t i;
	int j;

	for (i = 0; i < s->p.credits; i++) {
		struct creq *cr = &s->reqs[i];

		if (!cr->busy || !cr->sent || cr->done ||
		    cr->kind == CREQ_SYNC)
			continue;
		uncache_spans(s, cr);
		if (cr->kind == CREQ_READ || cr->kind == CREQ_WRITE)
			dafs_c_cg_push(cr->cg, cr->ctx, err);
		for (j = 0; cr->kind == CREQ_BATCH && j < cr->nbatch; j++)
			dafs_c_cg_push(cr->cg, cr->batch[j].ctx, err);
		finish(s, cr);
	}
}

struct cg_wait {
	dafs_cg_t *cg;
};

static int cg_ready(void *arg)
{
	dafs_cg_t *cg = arg;

	return cg->count > 0 || cg->outstanding == 0;
}

int dafs_c_progress_cg(dafs_session_t *s, dafs_cg_t *cg, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
					   : now_ns() + (uint64_t)timeout_ms *
								1000000u;
	int rc;

	pthread_mutex_lock(&s->lock);
	if (timeout_ms == 0) {
		if (!cg->count && cg->outstanding && !s->polling &&
		    !s->reconnecting)
			progress(s, 0);
		rc = s->broken && !cg->count ? -DAFS_EBROKEN : 0;
	} else {
		rc = wait_until(s, cg_ready, cg, deadline);
		if (rc == -ETIMEDOUT)
			rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

DAFS_API void dafs__test_drop_after_send(dafs_session_t *s)
{
	pthread_mutex_lock(&s->lock);
	s->test_drop = 1;
	pthread_mutex_unlock(&s->lock);
}

DAFS_API uint64_t dafs__test_reconnects(dafs_session_t *s)
{
	return s->reconnects;
}
