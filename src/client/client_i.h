/*
 * client_i.h - libdafs internals: the session (client.c) and the calls
 * built on it (calls.c, io.c).
 *
 * A request occupies one slot from send to reply. Its request bytes stay in
 * the slot's send buffer until the reply, so after a lost connection the
 * library reconnects, binds the new connection to the session and re-sends
 * the same slot and sequence number; the server answers from its reply
 * cache instead of executing twice.
 *
 * Completions: whichever thread needs progress polls the CQ (one at a time,
 * s->polling); it dispatches every reply to its slot, waking synchronous
 * callers and delivering asynchronous ones to their completion group.
 * Lock order: s->lock only; it is never held across a transport call that
 * blocks.
 */
#ifndef DAFS_CLIENT_I_H
#define DAFS_CLIENT_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api_i.h"
#include "cache/dcache.h"
#include "cache/regcache.h"
#include "dafs/dafs.h"
#include "proto/session_i.h"
#include "proto/wire_i.h"
#include "transport/transport_i.h"

struct dafs_session;

/* What to do when an asynchronous request's reply arrives. */
enum creq_kind {
	CREQ_SYNC = 0, /* a caller waits for it */
	CREQ_READ,     /* async read: deliver count to the cg */
	CREQ_WRITE,    /* async write */
	CREQ_BATCH,    /* async batch: one completion per element */
	CREQ_ORPHAN,   /* its caller timed out; drop the reply */
};

struct dc_span {
	dafs_fh_t fh;
	uint64_t off, len;
};

struct creq {
	uint32_t slot, seq;
	uint16_t op;      /* the request's opcode: its reply's must match */
	int inl_read;     /* an asynchronous inline READ: data in the reply */
	int kind;
	int busy;         /* slot in use */
	int sent;         /* on the wire, awaiting a reply */
	int done;         /* reply attached (or failed) */
	int exposed;      /* lets the server at the caller's memory by key */
	int resync;       /* an orphan whose slot a NULL brings back in step */
	uint64_t gen;     /* the connection it last went on (ep_gen) */
	int status;       /* transport / local failure, else 0 */
	uint8_t *sbuf;    /* request bytes (registered) */
	uint32_t slen;    /* bytes of sbuf to send */
	struct dafs_sge gather; /* deferred payload (len 0: none) */
	uint8_t *rbuf;    /* the reply, while attached */
	uint32_t rlen;
	uint64_t deadline_ns;
	uint32_t delay_ms;  /* the last DAFS_EDELAY's back-off */
	uint64_t resend_ns; /* a synchronous caller sends it again then */
	/* asynchronous delivery */
	dafs_cg_t *cg;
	void *ctx;
	void *ubuf;             /* inline read destination */
	uint32_t ulen;
	struct dafs_rc_entry *tmp_reg; /* registration for this I/O */
	dafs_mem_t *mem;        /* the caller's registration, held */
	dafs_iodesc_t *batch;   /* copies of the batch elements */
	int nbatch;
	/* writes to drop from the data cache again once the server has
	 * them (a block filled meanwhile may predate them) */
	struct dc_span *dcw; /* &dcw1 for one write, else malloc'd */
	int ndcw;
	struct dc_span dcw1;
};


struct dafs_cg {
	dafs_session_t *s;
	dafs_completion_t *q; /* ring of completions */
	uint32_t cap, head, count;
	uint32_t outstanding; /* submitted, not yet delivered */
};

struct dafs_mem {
	dafs_session_t *s;
	struct dafs_mr *mr;         /* reg->mr: may cover more than buf */
	struct dafs_rc_entry *reg;  /* from s->rc */
	void *buf;                  /* what the caller registered */
	size_t len;
	atomic_int users; /* I/O in flight on it: no deregistration */
};

/* A file's write-back extent (wback.c). */
struct cwb {
	pthread_mutex_t lock; /* the extent */
	struct dafs_file *f;
	uint8_t *buf; /* cap bytes, once a write was held */
	uint64_t off;
	uint32_t len, cap;
	int err;  /* a failed write-back, for the next write/commit/close */
	int on;	  /* opened DAFS_OPEN_WRITEBACK, with a cache */
	int gone; /* its delegation was recalled or revoked: hold no more */
	int refs; /* under s->wb_lock: flushers using it */
	uint64_t pass; /* under s->wb_lock: the last send_each to send it */
	struct cwb *prev, *next; /* s->wb_head, most recently written first */
};

struct dafs_file {
	dafs_session_t *s;
	uint64_t open_id;
	int flags;
	dafs_fh_t fh;
	int deleg; /* DAFS_DELEG_* granted with the open */
	uint64_t deleg_id;
	int cached; /* reads through s->dc */
	struct cwb wb;
};

/* Recalls received and not yet returned, for the recall latency. */
#define CREC_MAX 64
struct crecall {
	uint64_t id, t_ns; /* id 0: free */
};

struct dafs_session {
	const struct dafs_tp_ops *tp;
	struct dafs_domain *dom;
	struct dafs_cq *cq;
	struct dafs_ep *ep;
	dafs_url_t url;
	dafs_session_opts_t opts;
	struct dafs_sess_params p;
	uint8_t sid[DAFS_SID_LEN];
	dafs_fh_t root;
	uint32_t cred_default;
	uint64_t serial; /* unique in the process: per-thread credentials */
	uint32_t sbuf_size;

	/* registered memory: send buffers (one per slot) and receive buffers
	 * (one per credit) */
	uint8_t *smem, *rmem;
	struct dafs_mr *smr, *rmr;
	/* the pin-down cache for the caller's memory (thread-safe itself) */
	struct dafs_regcache *rc;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cv;    /* any reply, slot release, poller change */
	struct dafs_cslots cslots;
	struct creq *reqs;
	int polling;          /* a thread is polling the CQ */
	int reconnecting;
	int broken;           /* sticky: -DAFS_EBROKEN from now on */
	int closing;
	int test_drop;        /* test hook: drop the connection after send */
	uint64_t reconnects;
	uint64_t ep_gen;      /* connections replaced so far */

	/* the callback channel: the current binding, and those retired by
	 * reconnections whose threads may still run (client.c) */
	struct cbchan *cb, *cb_retired;
	uint32_t ncb;

	/* delegations: the recall handler and counters (under lock) */
	dafs_recall_fn recall_fn;
	void *recall_arg;
	int recall_busy; /* a handler is running (on the callback thread) */
	/* one handler at a time, also across a reconnection (an old
	 * binding's thread may still run one while the new one gets the
	 * next recall) */
	pthread_mutex_t recall_mu;
	/* the handles of delegations granted lately, for a recall that
	 * comes without one (the server had no open file of it) */
	struct {
		uint64_t id;
		dafs_fh_t fh;
	} dfh[256];
	unsigned dfh_next;
	dafs_deleg_stats_t dstats;
	uint64_t op_sent[DAFS_OP_MAX]; /* requests by opcode (atomic) */
	struct crecall recalls[CREC_MAX];

	struct dcache *dc; /* the data cache, or NULL */

	/* write-back (wback.c) */
	pthread_mutex_t wb_lock;
	pthread_cond_t wb_cv; /* a reference to a file's extent went */
	struct cwb wb_head;   /* open files that may hold writes */
	uint64_t wb_dirty;    /* bytes held (atomic reads without the lock) */
	uint64_t wb_max;      /* a quarter of the cache's size */
	uint64_t wb_pass;     /* send_each calls, to mark what each sent */
	struct {
		uint64_t held, bytes, flushes, errors;
	} wb_st;
	/* delegations recalled or returned lately (an open's reply may
	 * come after its delegation's recall) */
#define CWB_GONE 64
	uint64_t wb_gone[CWB_GONE];
	uint32_t wb_gone_next;
};

/* ---- write-back (wback.c) ---- */
void dafs_c_wb_init(dafs_session_t *s);
void dafs_c_wb_fini(dafs_session_t *s);
/* A file was opened: write-back starts if it asked and may. */
void dafs_c_wb_open(dafs_file_t *f);
/* Hold a write: @len if held, 0 if the caller must send it (what was
 * held went first), or a write-back error of an earlier write. */
ssize_t dafs_c_wb_write(dafs_file_t *f, const void *buf, size_t len,
			uint64_t off);
/* Send what the open files of @fh (NULL: all) but @except hold. */
void dafs_c_wb_sync_fh(dafs_session_t *s, const dafs_fh_t *fh,
		       const dafs_file_t *except);
/* Send what @f holds; returns and clears a write-back error. */
int dafs_c_wb_flush(dafs_file_t *f);
/* The file is closing: dafs_c_wb_flush, and off the list. */
int dafs_c_wb_close(dafs_file_t *f);
/* Delegation @id is recalled: its files send what they hold and hold no
 * more. */
void dafs_c_wb_recall(dafs_session_t *s, uint64_t id);
void dafs_c_wb_stats(dafs_session_t *s, dafs_cache_stats_t *st);
/* WRITE to the server, past write-back (calls.c). */
ssize_t dafs_c_write_server(dafs_file_t *f, const void *buf, size_t len,
			    uint64_t off);

/* Monotonic nanoseconds. */
uint64_t dafs_c_now_ns(void);
/* A recall of delegation @id arrived (client.c's callback thread). */
void dafs_c_recall(dafs_session_t *s, const struct dafs_m_cb_recall_req *q);
/* Non-zero on a callback thread of @s (inside its recall handler). */
int dafs_c_on_cb_thread(const dafs_session_t *s);

/* Reserve a slot (waiting for one); *@cr is its request. */
int dafs_c_begin(dafs_session_t *s, uint16_t op, const void *body,
		 const struct dafs_sge *gather, struct creq **cr);
/* dafs_c_begin(), giving up on a slot, and later on the reply, at
 * @deadline (CLOCK_MONOTONIC ns) rather than a session timeout from now.
 * A request whose reply comes too late keeps its slot until it comes. */
int dafs_c_begin_until(dafs_session_t *s, uint16_t op, const void *body,
		       const struct dafs_sge *gather, uint64_t deadline,
		       struct creq **cr);
/* Send a begun request. */
int dafs_c_send(dafs_session_t *s, struct creq *cr);
/* Wait for a sent synchronous request's reply; on 0, parse it into @rep
 * (views borrow the reply buffer until dafs_c_end()). Returns the reply's
 * status as a library error code. */
int dafs_c_wait(dafs_session_t *s, struct creq *cr, void *rep);
/* Release the slot and its reply buffer. */
void dafs_c_end(dafs_session_t *s, struct creq *cr);
/* begin + send + wait; on success the caller reads @rep and calls end. */
int dafs_c_call(dafs_session_t *s, uint16_t op, const void *body, void *rep,
		const struct dafs_sge *gather, struct creq **cr);
/* A call whose reply the caller does not need beyond its status. */
int dafs_c_simple(dafs_session_t *s, uint16_t op, const void *body,
		  void *rep);
/* dafs_c_simple() until @deadline (dafs_c_begin_until()): -ETIMEDOUT
 * then. */
int dafs_c_simple_until(dafs_session_t *s, uint16_t op, const void *body,
			void *rep, uint64_t deadline);

/* Drive completions until @cg has one, or @timeout_ms (-1: forever). */
int dafs_c_progress_cg(dafs_session_t *s, dafs_cg_t *cg, int timeout_ms);
/* An asynchronous request's extras: the holds a batch's elements have on
 * their registrations, the element copies, the data cache's spans. */
void dafs_c_async_release(struct creq *cr);
/* Called with s->lock held: a completion for @cg. */
void dafs_c_cg_push(dafs_cg_t *cg, void *ctx, int64_t result);

/* Registration for the length of one I/O when the caller gave none,
 * through the session's registration cache: returns 0 and *@reg (for
 * dafs_c_tmp_put) or a negative error. */
int dafs_c_tmp_reg(dafs_session_t *s, void *buf, size_t len,
		   struct dafs_rc_entry **reg);
/* Done with @reg (NULL: nothing). */
void dafs_c_tmp_put(struct dafs_rc_entry *reg);
/* The session's registration cache (regmem.c): limits from the
 * environment at open; its figures for dafs_session_query(). */
int dafs_c_regcache_open(dafs_session_t *s);
void dafs_c_regcache_close(dafs_session_t *s);
void dafs_c_regcache_info(dafs_session_t *s, dafs_session_info_t *info);

/* The current thread's credential id on @s. */
uint32_t dafs_c_cred(dafs_session_t *s);
/* A session's serial number (dafs_session_open). */
uint64_t dafs_c_new_serial(void);

/* Test hook (test/integration only): drop the fore connection right after
 * the next request is sent, so its reply is lost and the library must
 * reconnect and re-send. */
DAFS_API void dafs__test_drop_after_send(dafs_session_t *s);
/* How many times the session reconnected. */
DAFS_API uint64_t dafs__test_reconnects(dafs_session_t *s);

#endif /* DAFS_CLIENT_I_H */
