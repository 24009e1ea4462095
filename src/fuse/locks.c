/*
 * locks.c - dafs-fuse's lock requests and the thread that waits for the
 * ones that must (see locks_i.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fuse/fs_i.h"

/* One kernel request waiting for a lock. @f stays valid while it waits:
 * the waiting process holds the file, and the kernel releases nothing of
 * it before the request is answered. */
struct flk_wait {
	fuse_req_t req;
	dafs_file_t *f;
	dafs_lock_t lk;
	uint64_t ino;
	uint64_t due_ns; /* CLOCK_MONOTONIC: try again then */
	uint32_t delay_ms;
	struct flk_wait *next;
};

#define DELAY_MAX_MS 100
/* The longest a try of the waiter thread waits for the server's answer:
 * while it waits, interrupts of the other waiting requests and an
 * unmount wait for it. */
#define TRY_MAX_MS 1000

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A lock was granted on @ino: without a delegation other clients may
 * have written since the kernel's pages and attributes were read. */
static void granted(struct dfs *fs, uint64_t ino, const dafs_lock_t *lk)
{
	struct fuse_session *se = fs->se;

	if (lk->type == DAFS_LOCK_UNLOCK || !se)
		return;
	if (fino_deleg(&fs->ino, ino) == DAFS_DELEG_NONE)
		fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
}

/* libfuse: an INTERRUPT came for a waiting request (called with the
 * request's lock held: only our own lock is taken here). */
static void interrupted(fuse_req_t req, void *data)
{
	struct flk_set *k = &((struct dfs *)data)->locks;

	(void)req;
	pthread_mutex_lock(&k->lock);
	k->kick = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->lock);
}

static void finish(struct dfs *fs, struct flk_wait *w, int rc)
{
	fuse_reply_err(w->req, dfs_errno(rc));
	free(w);
	pthread_mutex_lock(&fs->locks.lock);
	fs->locks.waiting--;
	pthread_mutex_unlock(&fs->locks.lock);
}

static void enqueue(struct flk_set *k, struct flk_wait *w)
{
	pthread_mutex_lock(&k->lock);
	w->next = k->head;
	k->head = w;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->lock);
}

/* One more try of @w (the waiter thread, no lock held). */
static void retry(struct dfs *fs, struct flk_wait *w)
{
	int rc, ms = TRY_MAX_MS;

	if (fuse_req_interrupted(w->req)) {
		finish(fs, w, -EINTR);
		return;
	}
	if (fs->o.timeout_ms > 0 && fs->o.timeout_ms < ms)
		ms = fs->o.timeout_ms;
	rc = dafs_lock_timed(w->f, &w->lk, ms);
	/* no answer in time: the server is slow or stopped. Try again
	 * later; if it granted this one meanwhile, the owner's next try of
	 * the same lock is granted at once */
	if (rc == -DAFS_EDENIED || rc == -ETIMEDOUT) {
		w->delay_ms = w->delay_ms * 2 > DELAY_MAX_MS ? DELAY_MAX_MS
							     : w->delay_ms * 2;
		w->due_ns = mono_ns() + (uint64_t)w->delay_ms * 1000000u;
		enqueue(&fs->locks, w);
		return;
	}
	if (!rc) {
		granted(fs, w->ino, &w->lk);
		atomic_fetch_add(&fs->locks.granted_after_wait, 1);
	}
	finish(fs, w, rc);
}

/*
 * One try at a time, and between two the whole list looked at again: the
 * interrupted requests are answered at once (EINTR, without asking the
 * server), and a stop ends the thread, whose caller answers the rest the
 * same way. A try lasts at most TRY_MAX_MS, so neither waits longer than
 * that for a server that stopped answering.
 */
static void *waiter_main(void *arg)
{
	struct dfs *fs = arg;
	struct flk_set *k = &fs->locks;
	struct flk_wait *gone, *due, *w, **pp;
	struct timespec dl;
	uint64_t now, next;

	pthread_mutex_lock(&k->lock);
	while (!k->stop) {
		/* fuse_req_interrupted takes only libfuse's session lock */
		now = mono_ns();
		next = now + (uint64_t)DELAY_MAX_MS * 1000000u;
		gone = due = NULL;
		k->kick = 0;
		for (pp = &k->head; (w = *pp);) {
			if (fuse_req_interrupted(w->req)) {
				*pp = w->next;
				w->next = gone;
				gone = w;
			} else if (!due && w->due_ns <= now) {
				*pp = w->next;
				due = w;
			} else {
				if (w->due_ns < next)
					next = w->due_ns;
				pp = &w->next;
			}
		}
		if (!gone && !due) {
			if (k->kick)
				continue;
			dl.tv_sec = (time_t)(next / 1000000000u);
			dl.tv_nsec = (long)(next % 1000000000u);
			pthread_cond_timedwait(&k->cv, &k->lock, &dl);
			continue;
		}
		pthread_mutex_unlock(&k->lock);
		while ((w = gone)) {
			gone = w->next;
			finish(fs, w, -EINTR);
		}
		if (due)
			retry(fs, due);
		pthread_mutex_lock(&k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

int flk_start(struct dfs *fs)
{
	struct flk_set *k = &fs->locks;
	pthread_condattr_t ca;
	int rc;

	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);
	k->head = NULL;
	k->waiting = 0;
	k->kick = k->stop = 0;
	atomic_init(&k->granted_after_wait, 0);
	rc = pthread_create(&k->thread, NULL, waiter_main, fs);
	k->started = !rc;
	return -rc;
}

void flk_stop(struct dfs *fs)
{
	struct flk_set *k = &fs->locks;
	struct flk_wait *w;

	pthread_mutex_lock(&k->lock);
	k->stop = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->lock);
	if (k->started) {
		pthread_join(k->thread, NULL);
		k->started = 0;
	}
	/* the mount is going: nobody will be granted anything more */
	for (;;) {
		pthread_mutex_lock(&k->lock);
		w = k->head;
		if (w)
			k->head = w->next;
		pthread_mutex_unlock(&k->lock);
		if (!w)
			break;
		finish(fs, w, -EINTR);
	}
}

void flk_fini(struct dfs *fs)
{
	flk_stop(fs);
	pthread_mutex_destroy(&fs->locks.lock);
	pthread_cond_destroy(&fs->locks.cv);
}

uint64_t flk_waiting(struct dfs *fs)
{
	uint64_t n;

	pthread_mutex_lock(&fs->locks.lock);
	n = fs->locks.waiting;
	pthread_mutex_unlock(&fs->locks.lock);
	return n;
}

void flk_request(struct dfs *fs, fuse_req_t req, uint64_t ino, dafs_file_t *f,
		 const dafs_lock_t *lk, int sleep)
{
	struct flk_wait *w;
	int rc;

	rc = dafs_lock(f, lk);
	if (rc != -DAFS_EDENIED || !sleep) {
		if (!rc)
			granted(fs, ino, lk);
		fuse_reply_err(req, dfs_errno(rc));
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		fuse_reply_err(req, ENOLCK);
		return;
	}
	w->req = req;
	w->f = f;
	w->lk = *lk;
	w->ino = ino;
	w->delay_ms = 1;
	w->due_ns = mono_ns() + 1000000u;
	pthread_mutex_lock(&fs->locks.lock);
	if (fs->locks.stop) {
		pthread_mutex_unlock(&fs->locks.lock);
		free(w);
		fuse_reply_err(req, EINTR);
		return;
	}
	fs->locks.waiting++;
	pthread_mutex_unlock(&fs->locks.lock);
	/* not under our lock: libfuse calls back at once if the request
	 * was interrupted already, and the callback takes it */
	fuse_req_interrupt_func(req, interrupted, fs);
	enqueue(&fs->locks, w);
}
