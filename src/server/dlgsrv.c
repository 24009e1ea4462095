/*
 * dlgsrv.c - delegations in dafsd: the state machine of deleg.c driven by
 * the request handlers, with recalls sent over the callback channel and
 * waits on a condition variable.
 *
 * A handler whose operation conflicts with another session's delegation
 * recalls it (CB_RECALL, answered at once by the holder's library) and
 * sleeps until the holder's DELEGRETURN, or until a lease has passed since
 * the recall, when the delegation is revoked: the holder's open files of
 * that file then refuse I/O with DAFS_EREVOKED, and its DELEGRETURN gets
 * the same. A handler thread blocked here is a stuck handler to the
 * reaper, which grows the pool, so the holder's DELEGRETURN and its
 * write-back find a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_i.h"

#define RECALL_BATCH 16

struct srv_recall {
	struct dlg_event ev; /* ev.owner: a session referenced by the queue */
	struct srv_recall *next;
};
#define RECALL_SEND_MS 5000 /* the holder's library answers at once */

void srv_deleg_init(struct dafs_server *srv)
{
	uint32_t lease = srv->cfg.limits.lease_ms;

	pthread_mutex_init(&srv->dlg_lock, NULL);
	pthread_cond_init(&srv->dlg_cv, NULL);
	pthread_cond_init(&srv->rq_cv, NULL);
	/* ids start at the boot time in microseconds: a restarted server
	 * never mistakes an old id for one of its own */
	dlg_mgr_init(&srv->dlg, srv->cfg.deleg_policy,
		     (uint64_t)lease * 1000000u,
		     (uint64_t)srv->cfg.holdoff_ms * 1000000u,
		     (uint64_t)time(NULL) * 1000000u);
}

void srv_deleg_fini(struct dafs_server *srv)
{
	const struct dlg_stats *st = &srv->dlg.st;

	if (srv->dlg.policy != DLG_POLICY_OFF)
		srv_log(LOG_INFO,
			"delegations: %llu read and %llu write granted, "
			"%llu recalled, %llu returned, %llu revoked",
			(unsigned long long)st->grants_read,
			(unsigned long long)st->grants_write,
			(unsigned long long)st->recalls,
			(unsigned long long)st->returns,
			(unsigned long long)st->revokes);
	dlg_mgr_destroy(&srv->dlg);
	pthread_mutex_destroy(&srv->dlg_lock);
	pthread_cond_destroy(&srv->dlg_cv);
	pthread_cond_destroy(&srv->rq_cv);
}

static int enabled(const struct dafs_server *srv)
{
	return srv->dlg.policy != DLG_POLICY_OFF;
}

int srv_deleg_is(const struct srv_dkey *dk, int fd)
{
	struct stat st;

	return dk->tracked && !fstat(fd, &st) && dk->key.dev == st.st_dev &&
	       dk->key.ino == st.st_ino;
}

/* Apply revocations (dlg_lock held): the holders' open files of the file
 * refuse I/O from now on. */
static void apply_revokes(struct dafs_server *srv, const struct dlg_event *ev,
			  int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct srv_session *s = ev[i].owner;

		srv_log(LOG_NOTICE,
			"session %s: %s delegation %llx of inode %llu revoked: "
			"not returned within the lease of its recall",
			s->client, ev[i].type == DLG_WRITE ? "write" : "read",
			(unsigned long long)ev[i].id,
			(unsigned long long)ev[i].key.ino);
		srv_session_revoke(s, &ev[i].key);
	}
	if (n)
		pthread_cond_broadcast(&srv->dlg_cv);
}

static int send_recall(struct srv_session *s, const struct dlg_event *ev)
{
	struct dafs_m_cb_recall_req q = {0};
	int fd, rc;

	/* the handle the holder knows the file by: made from an fd opened
	 * by the holder's open file, so it is the export's own handle */
	rc = -ENOENT;
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < s->nopens; i++) {
		struct srv_open *o = s->opens[i];

		if (o->fd >= 0 && o->dk.tracked &&
		    o->dk.key.dev == ev->key.dev &&
		    o->dk.key.ino == ev->key.ino) {
			fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0);
			rc = fd < 0 ? -errno : 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!rc) {
		rc = dafs_be_handle(s->ex, fd, &q.fh);
		close(fd);
	}
	/* without a handle (the holder closed every open of it) the
	 * delegation id alone names it */
	if (rc)
		q.fh.len = 0;
	q.deleg_id = ev->id;
	q.type = (uint32_t)ev->type;
	rc = srv_callback(s, DAFS_OP_CB_RECALL, &q, RECALL_SEND_MS, NULL);
	if (rc)
		srv_log(LOG_INFO,
			"session %s: CB_RECALL of delegation %llx failed: %s; "
			"tried again, and revoked at the end of the lease "
			"unless returned",
			s->client, (unsigned long long)ev->id, strerror(-rc));
	return rc;
}

/* The recall sender: one CB_RECALL at a time, each answered at once by
 * the holder's library (or failing), then reported to the manager. */
static void *recaller_main(void *arg)
{
	struct dafs_server *srv = arg;
	struct srv_recall *q;
	int rc;

	pthread_mutex_lock(&srv->dlg_lock);
	for (;;) {
		while (!srv->rq_head && !srv->rq_stop)
			pthread_cond_wait(&srv->rq_cv, &srv->dlg_lock);
		q = srv->rq_head;
		if (!q)
			break; /* stopping, and nothing left */
		srv->rq_head = q->next;
		if (!srv->rq_head)
			srv->rq_tail = NULL;
		pthread_mutex_unlock(&srv->dlg_lock);
		rc = srv->rq_stop ? -ECANCELED : send_recall(q->ev.owner, &q->ev);
		srv_session_put(q->ev.owner);
		pthread_mutex_lock(&srv->dlg_lock);
		dlg_recall_sent(&srv->dlg, q->ev.id, !rc, srv_now_ns());
		pthread_cond_broadcast(&srv->dlg_cv);
		free(q);
	}
	pthread_mutex_unlock(&srv->dlg_lock);
	return NULL;
}

int srv_deleg_start(struct dafs_server *srv)
{
	if (!enabled(srv))
		return 0;
	if (pthread_create(&srv->recaller, NULL, recaller_main, srv))
		return -EAGAIN;
	srv->rq_running = 1;
	return 0;
}

void srv_deleg_stop(struct dafs_server *srv)
{
	if (!srv->rq_running)
		return;
	pthread_mutex_lock(&srv->dlg_lock);
	srv->rq_stop = 1;
	pthread_cond_broadcast(&srv->rq_cv);
	pthread_mutex_unlock(&srv->dlg_lock);
	pthread_join(srv->recaller, NULL);
	srv->rq_running = 0;
}

/* Queue the CB_RECALLs of @ev (dlg_lock held). A holder already on its way
 * out drops its delegations itself (and wakes the waiters). Without
 * memory a recall is left for the next round, which retries it. */
static void queue_recalls(struct dafs_server *srv, struct dlg_event *ev,
			  int nev)
{
	struct srv_recall *q;
	int i;

	for (i = 0; i < nev; i++) {
		q = malloc(sizeof(*q));
		if (!q) {
			dlg_recall_sent(&srv->dlg, ev[i].id, 0, srv_now_ns());
			continue;
		}
		if (!srv_session_tryget(ev[i].owner)) {
			free(q);
			continue;
		}
		q->ev = ev[i];
		q->next = NULL;
		if (srv->rq_tail)
			srv->rq_tail->next = q;
		else
			srv->rq_head = q;
		srv->rq_tail = q;
	}
	pthread_cond_signal(&srv->rq_cv);
}

static void deadline_ts(uint64_t deadline_ns, struct timespec *ts)
{
	uint64_t now = srv_now_ns(), left;

	clock_gettime(CLOCK_REALTIME, ts);
	left = deadline_ns > now ? deadline_ns - now : 0;
	/* look again at least every second: a spurious deadline is cheap */
	if (left > 1000000000u)
		left = 1000000000u;
	ts->tv_sec += (time_t)(left / 1000000000u);
	ts->tv_nsec += (long)(left % 1000000000u);
	if (ts->tv_nsec >= 1000000000l) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000l;
	}
}

int srv_deleg_begin(struct srv_req *r, const struct dlg_key *key, int kind,
		    struct srv_dkey *dk)
{
	struct dafs_server *srv = r->srv;
	struct dlg_event ev[RECALL_BATCH], rev[RECALL_BATCH];
	struct timespec ts;
	uint64_t deadline;
	int n, nev, nrev, waited = 0, counted = 0;
	/* handler threads that may sleep on recalls at once: the rest of
	 * the pool stays free for the holders' write-back and DELEGRETURN */
	int limit = srv->cfg.max_threads / 2 > 0 ? srv->cfg.max_threads / 2 : 1;

	dk->tracked = 0;
	if (!enabled(srv))
		return 0;
	pthread_mutex_lock(&srv->dlg_lock);
	for (;;) {
		n = dlg_begin(&srv->dlg, *key, r->sess, kind, srv_now_ns(), ev,
			      RECALL_BATCH, &nev, &deadline);
		if (n <= 0)
			break;
		if (!waited++) {
			srv->dlg.st.waits++;
			/* no grants to anyone while this waits */
			dlg_wait(&srv->dlg, *key, 1);
		}
		if (nev)
			queue_recalls(srv, ev, nev);
		if (!counted) {
			if (srv->dlg_waiters >= limit && !r->committed) {
				/* the recalls are out: the client asks again
				 * (DAFS_EDELAY is never cached) */
				n = -DAFS_EDELAY;
				srv->dlg.st.delays++;
				break;
			}
			__atomic_store_n(&srv->dlg_waiters,
					 srv->dlg_waiters + 1, __ATOMIC_RELAXED);
			counted = 1;
			/* the reaper adds a handler at once if none is free
			 * for the holders' answers */
			pthread_cond_broadcast(&srv->cv);
		}
		deadline_ts(deadline, &ts);
		pthread_cond_timedwait(&srv->dlg_cv, &srv->dlg_lock, &ts);
		nrev = dlg_expire(&srv->dlg, srv_now_ns(), rev, RECALL_BATCH);
		apply_revokes(srv, rev, nrev);
	}
	if (waited)
		dlg_wait(&srv->dlg, *key, -1);
	if (counted)
		__atomic_store_n(&srv->dlg_waiters, srv->dlg_waiters - 1,
				 __ATOMIC_RELAXED);
	pthread_mutex_unlock(&srv->dlg_lock);
	if (n < 0)
		return n;
	dk->tracked = 1;
	dk->kind = kind;
	dk->key = *key;
	return 0;
}

int srv_deleg_begin_name(struct srv_req *r, int dirfd, const char *name,
			 int kind, struct srv_dkey *dk)
{
	struct stat st;
	struct dlg_key key;

	dk->tracked = 0;
	if (!enabled(r->srv))
		return 0;
	/* the name as it is now; a file that appears later is new, and
	 * nobody can hold a delegation on it yet. With an empty name, the
	 * file of @dirfd itself (srv_deleg_begin_fd). */
	if (fstatat(dirfd, name, &st,
		    AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) ||
	    !S_ISREG(st.st_mode))
		return 0;
	key.dev = st.st_dev;
	key.ino = st.st_ino;
	return srv_deleg_begin(r, &key, kind, dk);
}

int srv_deleg_begin_fd(struct srv_req *r, int fd, int kind,
		       struct srv_dkey *dk)
{
	return srv_deleg_begin_name(r, fd, "", kind, dk);
}

void srv_deleg_end(struct dafs_server *srv, struct srv_dkey *dk)
{
	if (!dk->tracked)
		return;
	pthread_mutex_lock(&srv->dlg_lock);
	dlg_end(&srv->dlg, dk->key);
	pthread_mutex_unlock(&srv->dlg_lock);
	dk->tracked = 0;
}

int srv_deleg_open(struct srv_req *r, struct srv_dkey *dk, uint32_t want,
		   uint64_t *id)
{
	struct dafs_server *srv = r->srv;
	int w = DLG_NONE, rc;

	*id = 0;
	if (!dk->tracked)
		return DLG_NONE;
	if (want & DAFS_O_WANT_WRITE_DELEG)
		w = DLG_WRITE;
	else if (want & DAFS_O_WANT_READ_DELEG)
		w = DLG_READ;
	pthread_mutex_lock(&srv->dlg_lock);
	rc = dlg_open(&srv->dlg, dk->key, r->sess, dk->kind, w,
		      (uint64_t)r->sess->p.lease_ms * 1000000u, srv_now_ns(),
		      id);
	pthread_mutex_unlock(&srv->dlg_lock);
	if (rc < 0)
		dk->tracked = 0; /* not recorded: nothing to close */
	return rc;
}

void srv_deleg_close(struct srv_session *s, struct srv_dkey *dk)
{
	struct dafs_server *srv = s->srv;

	if (!dk->tracked)
		return;
	pthread_mutex_lock(&srv->dlg_lock);
	dlg_close(&srv->dlg, dk->key, s, dk->kind);
	pthread_mutex_unlock(&srv->dlg_lock);
	dk->tracked = 0;
}

void srv_deleg_owner_gone(struct srv_session *s)
{
	struct dafs_server *srv = s->srv;

	if (!enabled(srv))
		return;
	pthread_mutex_lock(&srv->dlg_lock);
	dlg_owner_gone(&srv->dlg, s);
	pthread_cond_broadcast(&srv->dlg_cv);
	pthread_mutex_unlock(&srv->dlg_lock);
}

int srv_deleg_return(struct srv_req *r, uint64_t id)
{
	struct dafs_server *srv = r->srv;
	int rc;

	pthread_mutex_lock(&srv->dlg_lock);
	rc = dlg_return(&srv->dlg, id, r->sess, srv_now_ns());
	pthread_cond_broadcast(&srv->dlg_cv);
	pthread_mutex_unlock(&srv->dlg_lock);
	return rc;
}

void srv_deleg_tick(struct dafs_server *srv)
{
	struct dlg_event rev[RECALL_BATCH];
	int n;

	if (!enabled(srv))
		return;
	pthread_mutex_lock(&srv->dlg_lock);
	do {
		n = dlg_expire(&srv->dlg, srv_now_ns(), rev, RECALL_BATCH);
		apply_revokes(srv, rev, n);
	} while (n == RECALL_BATCH);
	pthread_mutex_unlock(&srv->dlg_lock);
}
