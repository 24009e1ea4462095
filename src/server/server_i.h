/*
 * server_i.h - dafsd internals: the server, its connections, sessions and
 * handler pool (server.c), request handlers (ops.c), configuration (main.c).
 *
 * Threads: one acceptor (connection manager), a pool of handler threads that
 * all wait on one shared receive CQ, one reaper for lease expiry and pool
 * growth. Requests of one session run concurrently on different handlers.
 *
 * Lifetimes: every posted receive buffer holds a reference on its
 * connection, handed to the handler with the completion (success or flush);
 * a connection is freed when the last reference goes, which is after every
 * buffer has completed, so no completion can name a freed connection. A
 * connection holds a reference on its session; the server's session list
 * holds one until DESTROY_SESSION or lease expiry.
 */
#ifndef DAFS_SERVER_I_H
#define DAFS_SERVER_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "backend_i.h"
#include "creds_i.h"
#include "deleg_i.h"
#include "locks_i.h"
#include "proto/session_i.h"
#include "proto/wire_i.h"
#include "state_i.h"
#include "transport/transport_i.h"

#define SRV_MAX_EXPORTS 32
/* distinct credential sets per session (a shared FUSE mount registers one
 * per (uid, gid, groups) of its users); found by a linear search, which
 * runs once per set */
#define SRV_MAX_CREDS 1024
#define SRV_BOOT_BUF 4096 /* receive buffer before a session is bound */

struct srv_config {
	struct {
		char name[DAFS_NAME_MAX + 1];
		char path[4096];
	} exports[SRV_MAX_EXPORTS];
	int nexports;
	char listen_host[256];
	uint16_t listen_port;
	char scheme[8];
	char state_dir[4096];
	int min_threads, max_threads;
	int max_conns;
	int root_squash;
	int foreground;
	int verbose;
	int deleg_policy;     /* DLG_POLICY_* */
	uint32_t holdoff_ms;  /* no grants this long after a recall */
	uint32_t delay_us;    /* each request waits this long before it is
				 handled: an emulated network round trip
				 (--delay-us, for experiments) */
	uint32_t max_lock_fds; /* lock descriptors per session (locks.c) */
	uint32_t max_opens; /* open files per session, 0: a quarter of
			       RLIMIT_NOFILE, at least 1024 */
	struct dafs_sess_params limits;
};

struct srv_session;

/* One receive buffer of a connection; wr_id of its RECV is its address. */
struct srv_rbuf {
	struct srv_conn *conn;
	uint8_t *buf;
};

struct srv_conn {
	struct dafs_ep *ep;
	struct dafs_server *srv;
	atomic_int refs;
	atomic_int dead;
	int dir; /* 0 until bound, then DAFS_CONN_FORE / DAFS_CONN_BACK */
	struct srv_session *sess; /* set once when bound, then constant */
	char peer[64];

	/* receive buffers: one region, nrbuf buffers of rbuf_size */
	uint32_t nrbuf, rbuf_size;
	uint8_t *rmem;
	struct dafs_mr *rmr;
	struct srv_rbuf *rbufs;
	/* bootstrap buffer used until the session is bound */
	uint8_t boot[SRV_BOOT_BUF];
	struct dafs_mr *boot_mr;
	struct srv_rbuf boot_rb;
	unsigned boot_used; /* requests it took (SRV_BOOT_TRIES at most) */
	/* reply buffer for requests outside a session (CREATE_SESSION ...) */
	uint8_t boot_reply[SRV_BOOT_BUF];
	struct dafs_mr *boot_reply_mr;
	struct srv_conn *next; /* server's list, under srv->lock */
};

/* An open file of a session; id on the wire: gen << 32 | index. Users
 * hold it across a request, so CLOSE never closes an fd in use (which could
 * be reused for another file under the user's feet). */
/* What the delegation manager knows of an open (tracked: it does). */
struct srv_dkey {
	int tracked;
	int kind; /* DLG_C_READ, DLG_C_WRITE */
	struct dlg_key key;
};

struct srv_open {
	int fd; /* -1 when free */
	uint32_t gen;
	uint32_t idx;   /* in the session's table */
	uint32_t flags; /* DAFS_O_* */
	uint32_t users;
	int closing;
	atomic_int revoked; /* its delegation was revoked: I/O refused */
	struct srv_dkey dk;
	uint32_t next_free;
};

struct srv_session {
	uint8_t sid[DAFS_SID_LEN];
	struct dafs_server *srv;
	struct dafs_export *ex;
	struct dafs_sess_params p;
	atomic_int refs;
	char client[64]; /* the first connection's peer, for logs */

	pthread_mutex_t lock; /* the fields below */
	struct dafs_slot_table slots;
	uint8_t *reply_mem; /* credits * max_response, registered */
	struct dafs_mr *reply_mr;
	struct dafs_creds creds[SRV_MAX_CREDS];
	/* entries in creds[]: written under lock, stored after the entry
	 * it counts (release), read without the lock (acquire) */
	_Atomic uint32_t ncreds;
	struct srv_open **opens; /* entries never move */
	uint32_t nopens, open_free;
	uint32_t nopen_used; /* opens in the table (--max-opens) */
	struct srv_conn *fore, *back; /* referenced */
	uint64_t renewed_ns;
	int destroyed;
	/* its requests in a handler now: at most all handlers but one
	 * (session_cap in server.c), so a client whose requests block (an RDMA READ
	 * it never answers, a socket it stops reading) cannot take the
	 * whole pool from the others */
	atomic_uint executing;

	/* locks (locks.c): its own lock, a leaf; released when the session
	 * is destroyed, freed with it */
	struct srv_locks locks;

	/* callback channel: one outstanding callback at a time */
	pthread_mutex_t cb_lock;
	pthread_cond_t cb_cv;
	uint32_t cb_seq;
	int cb_done, cb_status;
	uint8_t cb_req[256];
	struct dafs_mr *cb_mr;

	struct srv_session *next; /* server's list */
};

struct dafs_server {
	struct srv_config cfg;
	const struct dafs_tp_ops *tp;
	struct dafs_domain *dom;
	struct dafs_cq *rcq, *scq;
	struct dafs_listener *lis;
	struct dafs_state *state;
	struct dafs_export *exports[SRV_MAX_EXPORTS];
	int nexports;
	int can_switch; /* running as root: per-request credentials */
	uint64_t nofile; /* RLIMIT_NOFILE at start, for logs */
	uint32_t max_opens; /* open files per session (cfg, or derived) */
	/* lock descriptors of all sessions (locks_i.h): half of nofile */
	struct srv_lockbudget lockbudget;

	pthread_mutex_t lock; /* sessions, conns, pool counts */
	pthread_cond_t cv;
	struct srv_session *sessions;
	struct srv_conn *conns;
	int nconns;
	int nthreads;
	int nretiring; /* handlers leaving, still counted in nthreads */
	int retire_req; /* handlers the reaper asks to leave */
	/* counted by handlers around every request without the lock (it was
	 * the contended one under load); read by the reaper */
	atomic_int nidle;
	atomic_int all_busy;	   /* nidle was 0 since the reaper looked */
	atomic_int reaper_fine;	   /* the reaper is on its fine tick */
	_Atomic uint64_t last_done_ns; /* a handler last finished a request */
	atomic_int stopping;
	pthread_t acceptor, reaper;

	/* delegations (dlgsrv.c): the manager under its own lock; waiters
	 * for a recall sleep on dlg_cv. Lock order: dlg_lock, then a
	 * session's lock. */
	pthread_mutex_t dlg_lock;
	pthread_cond_t dlg_cv;
	struct dlg_mgr dlg;
	int dlg_waiters; /* handlers sleeping on recalls */
	/* CB_RECALLs to send, sent by one thread of their own: a handler
	 * never waits for a callback's answer, which only a free handler
	 * can take in */
	struct srv_recall *rq_head, *rq_tail;
	pthread_cond_t rq_cv;
	pthread_t recaller;
	int rq_stop, rq_running;

	/* serialises polling of the send CQ (RDMA READ completions) */
	pthread_mutex_t scq_lock;
	pthread_cond_t scq_cv;
	int scq_polling;
};

/* A handler's view of one request. */
struct srv_req {
	struct dafs_server *srv;
	struct srv_conn *conn;
	struct srv_session *sess;
	struct dafs_hdr h;
	const uint8_t *msg;
	uint32_t len;
	uint8_t *reply;      /* where to build the reply */
	uint32_t reply_cap;
	struct dafs_mr *reply_mr;
	uint8_t *iobuf;      /* per-thread registered I/O buffer */
	struct dafs_mr *iomr;
	uint32_t iobuf_size;
	struct srv_fence *fence; /* ... and what it is waiting for */
	/* it has changed something already (CREATE made its file): it may
	 * not answer DAFS_EDELAY ("nothing done, ask again") and waits on
	 * recalls past the limit of waiting handlers instead */
	int committed;
	/* the attributes of the first handle's object, if resolving it took
	 * them (a kept descriptor's check), else NULL */
	const dafs_attr_t *attr0;
};

int dafs_server_new(const struct srv_config *cfg, struct dafs_server **out);
/* Run until dafs_server_stop(); returns 0 or a negative error. */
int dafs_server_run(struct dafs_server *srv);
void dafs_server_stop(struct dafs_server *srv);
void dafs_server_free(struct dafs_server *srv);
uint16_t dafs_server_port(struct dafs_server *srv);

/* ops.c: execute a decoded request, build the reply in r->reply. Returns the
 * reply length (> 0). */
uint32_t srv_execute(struct srv_req *r, const void *body);
/* Close every open file of a session being freed (no users left). */
void srv_session_close_files(struct srv_session *s);
/* Wait for the completion of a signaled op whose wr_id is @w. */
struct srv_wait {
	int done;
	int status;
};
int srv_wait_send(struct dafs_server *srv, struct srv_wait *w);
/* The same, or -ETIMEDOUT after @timeout_ms (0: no limit). */
int srv_wait_send_until(struct dafs_server *srv, struct srv_wait *w,
			unsigned timeout_ms);
/* How long a handler waits for an op from its I/O buffer (srv_fence) */
#define SRV_FENCE_MS 10000

/*
 * A handler's I/O buffer is read by the transport after the post that
 * sends from it returns where the transport does not copy at post time
 * (verbs: the device reads it later): the next request of the handler
 * must not write it until that operation completes. srv_fence_arm() is
 * called for an op about to be posted from the buffer: it returns the
 * post's wr_id and flags (a signaled op, holding a reference to @c until
 * it completes; nothing to do where posts copy); srv_fence_disarm() if
 * the post failed. srv_fence_wait() before writing into the buffer.
 */
struct srv_fence {
	struct srv_wait w;
	struct srv_conn *conn; /* NULL: nothing outstanding */
};
unsigned srv_fence_arm(struct dafs_server *srv, struct srv_fence *f,
		       struct srv_conn *c, uint64_t *wr_id);
void srv_fence_disarm(struct srv_fence *f);
void srv_fence_wait(struct dafs_server *srv, struct srv_fence *f);
/* Send a callback (@body: its request, or NULL for an empty one) on the
 * session's back channel and wait for the reply. */
int srv_callback(struct srv_session *s, uint16_t op, const void *body,
		 int timeout_ms, uint64_t *rtt_ns);
/* A reference on @s unless its last one is already gone (then 0). */
int srv_session_tryget(struct srv_session *s);
void srv_session_put(struct srv_session *s);
/* Refuse further I/O on @s's open files of @key (ops.c). */
void srv_session_revoke(struct srv_session *s, const struct dlg_key *key);

/* dlgsrv.c: delegations as the handlers see them. All are no-ops when the
 * policy is off. */
void srv_deleg_init(struct dafs_server *srv);
/* Start and stop the recall sender (dafs_server_run / _stop). */
int srv_deleg_start(struct dafs_server *srv);
void srv_deleg_stop(struct dafs_server *srv);
void srv_deleg_fini(struct dafs_server *srv);
/* Whether @dk is the operation begun on the file of @fd. */
int srv_deleg_is(const struct srv_dkey *dk, int fd);
/* Begin an operation of kind @kind on @key: recall the delegations of
 * other sessions that stand in its way and wait, at most a lease after
 * each recall, until they are returned or revoked. 0: go ahead (end with
 * srv_deleg_end() or srv_deleg_open()); or -ENOMEM. *@dk records it. */
int srv_deleg_begin(struct srv_req *r, const struct dlg_key *key, int kind,
		    struct srv_dkey *dk);
/* The same for the file @name in @dirfd, if it exists and is a regular
 * file (otherwise *@dk is left untracked and 0 returned). */
int srv_deleg_begin_name(struct srv_req *r, int dirfd, const char *name,
			 int kind, struct srv_dkey *dk);
/* The same for the file of @fd (a handle's O_PATH fd, an open file). */
int srv_deleg_begin_fd(struct srv_req *r, int fd, int kind,
		       struct srv_dkey *dk);
void srv_deleg_end(struct dafs_server *srv, struct srv_dkey *dk);
/* Turn a begun operation into an open of the session, granting what
 * @want asks for if the rules allow: returns DAFS_DELEG_* and *@id. */
int srv_deleg_open(struct srv_req *r, struct srv_dkey *dk, uint32_t want,
		   uint64_t *id);
void srv_deleg_close(struct srv_session *s, struct srv_dkey *dk);
void srv_deleg_owner_gone(struct srv_session *s);
int srv_deleg_return(struct srv_req *r, uint64_t id);
/* Revoke what ran out (the reaper, once a second). */
void srv_deleg_tick(struct dafs_server *srv);

uint64_t srv_now_ns(void);
void srv_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void srv_log_init(int foreground, int verbose);

#endif /* DAFS_SERVER_I_H */
