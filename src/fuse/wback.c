/*
 * wback.c - write-back of small writes under a write delegation (see
 * wback_i.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuse/wback_i.h"

void fwb_set_init(struct fwb_set *set, uint64_t max, uint32_t cap,
		  void (*sent)(void *arg, uint64_t ino, int err), void *arg)
{
	set->sent = sent;
	set->arg = arg;
	pthread_mutex_init(&set->lock, NULL);
	pthread_cond_init(&set->cv, NULL);
	set->head.next = set->head.prev = &set->head;
	set->max = max;
	set->cap = cap;
	atomic_init(&set->bytes, 0);
	atomic_init(&set->held, 0);
	atomic_init(&set->flushes, 0);
	atomic_init(&set->flushed_bytes, 0);
	atomic_init(&set->errors, 0);
	atomic_init(&set->behind, 0);
	atomic_init(&set->send_ns, 0);
	atomic_init(&set->early_closes, 0);
	set->close_behind_ns = UINT64_MAX;
	pthread_mutex_init(&set->plock, NULL);
	pthread_cond_init(&set->pcv, NULL);
	set->nbuf = 0;
	pthread_mutex_init(&set->elock, NULL);
	set->eseq = set->next_id = 0;
	memset(set->errs, 0, sizeof(set->errs));
	memset(set->unseen, 0, sizeof(set->unseen));
	set->unseen_next = 0;
}

static uint64_t now_ns(void);

/* @w met write-back error @err (w->lock held): other open files of its
 * node report it too; w->err keeps the first until reported. */
static void note_err(struct fwb_set *set, struct fwb *w, int err)
{
	pthread_mutex_lock(&set->elock);
	set->eseq++;
	set->errs[set->eseq % FWB_ERRS] = (struct fwb_err){
		.ino = w->ino, .owner = w->id, .seq = set->eseq, .err = err};
	if (!w->err) {
		w->err = err;
		w->err_seq = set->eseq;
	}
	pthread_mutex_unlock(&set->elock);
}

/* Error @seq of the history was reported to some descriptor (elock
 * held): no later opener is told of it (fwb_err_take_unseen). */
static void seen_locked(struct fwb_set *set, uint64_t seq)
{
	struct fwb_err *e = &set->errs[seq % FWB_ERRS];

	if (seq && e->seq == seq)
		e->seen = 1;
}

/* Whether error @seq of the history was reported to some descriptor
 * (elock held); one gone from the history counts as not. */
static int seen_already(const struct fwb_set *set, uint64_t seq)
{
	const struct fwb_err *e = &set->errs[seq % FWB_ERRS];

	return e->seq == seq && e->seen;
}

/* Take @w's pending error to report it (w->lock held). */
static int take_err_locked(struct fwb_set *set, struct fwb *w)
{
	int err = w->err;

	if (err) {
		pthread_mutex_lock(&set->elock);
		seen_locked(set, w->err_seq);
		pthread_mutex_unlock(&set->elock);
	}
	w->err = 0;
	return err;
}

uint64_t fwb_err_mark(struct fwb_set *set)
{
	uint64_t seq;

	pthread_mutex_lock(&set->elock);
	seq = set->eseq;
	pthread_mutex_unlock(&set->elock);
	return seq;
}

int fwb_err_take(struct fwb_set *set, uint64_t ino, uint64_t own,
		 uint64_t *seen)
{
	uint64_t q;
	int err = 0;

	pthread_mutex_lock(&set->elock);
	/* the oldest still remembered first */
	q = *seen + 1;
	if (set->eseq >= FWB_ERRS && q <= set->eseq - FWB_ERRS)
		q = set->eseq - FWB_ERRS + 1;
	for (; q <= set->eseq; q++)
		if (set->errs[q % FWB_ERRS].ino == ino &&
		    set->errs[q % FWB_ERRS].owner != own) {
			if (!err)
				err = set->errs[q % FWB_ERRS].err;
			set->errs[q % FWB_ERRS].seen = 1;
		}
	*seen = set->eseq;
	pthread_mutex_unlock(&set->elock);
	return err;
}

void fwb_set_fini(struct fwb_set *set)
{
	if (set->reaper_on) {
		pthread_mutex_lock(&set->plock);
		set->stop = 1;
		pthread_cond_broadcast(&set->pcv);
		pthread_mutex_unlock(&set->plock);
		pthread_join(set->reaper, NULL);
	}
	if (set->cg && dafs_cg_free(set->cg) == 0)
		set->cg = NULL;
	/* a write libdafs still holds (the server silent): its buffer,
	 * the pool and the group stay allocated, for libdafs to finish */
	if (!set->cg) {
		if (set->preg)
			dafs_mem_deregister(set->preg);
		free(set->pmem);
		free(set->io);
		free(set->free);
	}
	pthread_mutex_destroy(&set->plock);
	pthread_cond_destroy(&set->pcv);
	pthread_mutex_destroy(&set->elock);
	pthread_mutex_destroy(&set->lock);
	pthread_cond_destroy(&set->cv);
}

void fwb_open(struct fwb_set *set, struct fwb *w, uint64_t ino, dafs_file_t *f,
	      int append)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	w->f = f;
	w->append = append;
	w->ino = ino;
	w->cap = set->cap;
	pthread_cond_init(&w->cv, NULL);
	pthread_mutex_lock(&set->elock);
	w->id = ++set->next_id;
	pthread_mutex_unlock(&set->elock);
	pthread_mutex_lock(&set->lock);
	w->next = set->head.next;
	w->prev = &set->head;
	w->next->prev = w;
	set->head.next = w;
	pthread_mutex_unlock(&set->lock);
}

/* Wait until no write behind of @w is in flight (w->lock held). */
static void drain_locked(struct fwb *w)
{
	while (w->nfl)
		pthread_cond_wait(&w->cv, &w->lock);
}

/* Send the extent (w->lock held), after the writes in flight that it may
 * overlap. A failure is kept in w->err: the data is lost, as a failed
 * write-back of a local file system loses it. */
static void send_locked(struct fwb_set *set, struct fwb *w,
			dafs_session_t *s)
{
	ssize_t n;

	if (!w->len)
		return;
	drain_locked(w);
	/* as its writer, or not at all */
	n = dafs_cred_use(s, w->cred);
	if (!n) {
		uint64_t t0 = now_ns(), avg;

		n = dafs_write(w->f, w->buf, w->len, w->off, NULL);
		/* one in eight: the average of the last dozen or so */
		avg = atomic_load_explicit(&set->send_ns, memory_order_relaxed);
		atomic_store_explicit(&set->send_ns,
				      avg - avg / 8 + (now_ns() - t0) / 8,
				      memory_order_relaxed);
	}
	if (n >= 0 && (size_t)n != w->len)
		n = -EIO; /* a short write: ENOSPC came after some bytes */
	if (n < 0) {
		note_err(set, w, (int)n);
		atomic_fetch_add(&set->errors, 1);
	} else {
		atomic_fetch_add(&set->flushed_bytes, w->len);
	}
	atomic_fetch_add(&set->flushes, 1);
	/* marked sent before it stops counting: who finds nothing held
	 * (wb_settle) then finds the mark */
	set->sent(set->arg, w->ino, n < 0 ? (int)n : 0);
	atomic_fetch_sub(&set->bytes, w->len);
	w->len = 0;
}

/* Everything @w wrote is on the server (or failed) when this returns. */
static void flush_locked(struct fwb_set *set, struct fwb *w,
			 dafs_session_t *s)
{
	send_locked(set, w, s);
	drain_locked(w);
}

int fwb_flush(struct fwb_set *set, struct fwb *w, dafs_session_t *s)
{
	int err;

	pthread_mutex_lock(&w->lock);
	flush_locked(set, w, s);
	err = take_err_locked(set, w);
	pthread_mutex_unlock(&w->lock);
	return err;
}

int fwb_err_take_own(struct fwb_set *set, struct fwb *w)
{
	int err;

	pthread_mutex_lock(&w->lock);
	err = take_err_locked(set, w);
	pthread_mutex_unlock(&w->lock);
	return err;
}

void fwb_pin(struct fwb_set *set, struct fwb *w)
{
	pthread_mutex_lock(&set->lock);
	w->refs++;
	pthread_mutex_unlock(&set->lock);
}

void fwb_send_unpin(struct fwb_set *set, struct fwb *w, dafs_session_t *s)
{
	pthread_mutex_lock(&w->lock);
	send_locked(set, w, s);
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_lock(&set->lock);
	w->refs--;
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->lock);
}

int fwb_busy(struct fwb *w)
{
	int busy;

	pthread_mutex_lock(&w->lock);
	busy = w->len || w->nfl;
	pthread_mutex_unlock(&w->lock);
	return busy;
}

int fwb_err_take_unseen(struct fwb_set *set, uint64_t ino)
{
	int i, err = 0;

	pthread_mutex_lock(&set->elock);
	for (i = 0; i < FWB_ERRS; i++) {
		struct fwb_unseen *u = &set->unseen[i];

		if (!u->err || u->ino != ino)
			continue;
		/* reported to another descriptor meanwhile: once is all */
		if (!err && !seen_already(set, u->seq)) {
			err = u->err;
			seen_locked(set, u->seq);
		}
		u->err = 0;
	}
	pthread_mutex_unlock(&set->elock);
	return err;
}

int fwb_close(struct fwb_set *set, struct fwb *w, dafs_session_t *s)
{
	int err;

	pthread_mutex_lock(&w->lock);
	flush_locked(set, w, s);
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_lock(&set->lock);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	while (w->refs)
		pthread_cond_wait(&set->cv, &set->lock);
	pthread_mutex_unlock(&set->lock);
	/* an error this open file did not report (its close was answered
	 * first, or a flusher raced with the close): the next fsync of the
	 * node's, unless another descriptor reported it already */
	err = w->err;
	if (err) {
		pthread_mutex_lock(&set->elock);
		if (!seen_already(set, w->err_seq))
			set->unseen[set->unseen_next++ % FWB_ERRS] =
				(struct fwb_unseen){.ino = w->ino,
						    .seq = w->err_seq,
						    .err = err};
		pthread_mutex_unlock(&set->elock);
	}
	free(w->buf);
	w->buf = NULL;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	return err;
}

ssize_t fwb_write(struct fwb_set *set, struct fwb *w, dafs_session_t *s,
		  int (*may_hold)(void *arg, uint64_t ino), void *arg,
		  const void *data, size_t len, uint64_t off, uint32_t cred)
{
	ssize_t rc = 0;
	uint64_t end;
	int contig;

	pthread_mutex_lock(&w->lock);
	/* what another credential wrote goes out first: each write is
	 * sent as its writer (setuid clearing, quotas) */
	contig = w->len && cred == w->cred && off >= w->off &&
		 off <= w->off + w->len && off + len <= w->off + w->cap;
	/* an O_APPEND open's extent goes to the server's end of file as a
	 * whole: only a write at its end continues it (a write the kernel
	 * placed elsewhere, O_APPEND cleared by fcntl, lands after it
	 * anyway, sent on its own) */
	if (w->append && off != w->off + w->len)
		contig = 0;
	if (len >= w->cap || !may_hold(arg, w->ino) ||
	    (!contig && w->len) ||
	    atomic_load(&set->bytes) + len > set->max) {
		send_locked(set, w, s);
		if (w->err) {
			rc = take_err_locked(set, w);
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		/* a small write may still start a new extent */
		if (len >= w->cap || !may_hold(arg, w->ino) ||
		    atomic_load(&set->bytes) + len > set->max) {
			/* the caller's write may overlap one in flight */
			drain_locked(w);
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	if (!w->buf) {
		w->buf = malloc(w->cap);
		if (!w->buf) {
			drain_locked(w);
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	if (!w->len) {
		w->off = off;
		w->cred = cred;
	}
	memcpy(w->buf + (off - w->off), data, len);
	end = off + len - w->off;
	if (end > w->len) {
		atomic_fetch_add(&set->bytes, end - w->len);
		w->len = (uint32_t)end;
	}
	atomic_fetch_add(&set->held, 1);
	pthread_mutex_unlock(&w->lock);
	return (ssize_t)len;
}

void fwb_flush_ino(struct fwb_set *set, uint64_t ino, dafs_session_t *s,
		   const struct fwb *except)
{
	struct fwb *w, **take;
	size_t i, n = 0;

	pthread_mutex_lock(&set->lock);
	for (w = set->head.next; w != &set->head; w = w->next)
		n += (ino == FWB_ALL || w->ino == ino) && w != except;
	take = n ? malloc(n * sizeof(*take)) : NULL;
	if (n && !take) {
		/* no memory for the list: send under the set's lock (which
		 * no holder of a file's lock waits for) */
		for (w = set->head.next; w != &set->head; w = w->next)
			if ((ino == FWB_ALL || w->ino == ino) && w != except) {
				pthread_mutex_lock(&w->lock);
				flush_locked(set, w, s);
				pthread_mutex_unlock(&w->lock);
			}
		pthread_mutex_unlock(&set->lock);
		return;
	}
	n = 0;
	if (take)
		for (w = set->head.next; w != &set->head; w = w->next)
			if ((ino == FWB_ALL || w->ino == ino) && w != except) {
				w->refs++;
				take[n++] = w;
			}
	pthread_mutex_unlock(&set->lock);
	for (i = 0; i < n; i++) {
		pthread_mutex_lock(&take[i]->lock);
		flush_locked(set, take[i], s);
		pthread_mutex_unlock(&take[i]->lock);
	}
	pthread_mutex_lock(&set->lock);
	for (i = 0; i < n; i++)
		take[i]->refs--;
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->lock);
	free(take);
}

/* ---- write-behind ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int io_state(const struct fwb_io *io)
{
	return __atomic_load_n(&io->state, __ATOMIC_ACQUIRE);
}

/*
 * The file's side of a write behind that finished, failed with its
 * session or was given up: the range stops blocking, the bytes stop
 * counting, and a failure waits for the file's next write, flush or fsync.
 * The submitter set io->w and marked the buffer FWB_IO_SENT under the
 * file's lock, so taking that lock orders this after it.
 */
static void io_done_file(struct fwb_set *set, struct fwb_io *io,
			 int64_t result)
{
	struct fwb *w = io->w;
	int i;

	if (!w)
		return; /* given up earlier */
	pthread_mutex_lock(&w->lock);
	io->w = NULL;
	for (i = 0; i < w->nfl; i++)
		if (w->fl[i].off == io->off &&
		    w->fl[i].end == io->off + io->len) {
			w->fl[i] = w->fl[--w->nfl];
			break;
		}
	if (result != (int64_t)io->len) {
		note_err(set, w, result < 0 ? (int)result : -EIO);
		atomic_fetch_add(&set->errors, 1);
	} else {
		atomic_fetch_add(&set->flushed_bytes, io->len);
	}
	atomic_fetch_add(&set->flushes, 1);
	set->sent(set->arg, io->ino,
		  result != (int64_t)io->len ? (result < 0 ? (int)result : -EIO)
					     : 0);
	atomic_fetch_sub(&set->bytes, io->len);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

/* The buffer's side: free again (libdafs is done with it, or it never
 * had it). */
static void io_done_buf(struct fwb_set *set, struct fwb_io *io)
{
	pthread_mutex_lock(&set->plock);
	if (io->state == FWB_IO_SENT)
		set->inflight--;
	__atomic_store_n(&io->state, FWB_IO_FREE, __ATOMIC_RELEASE);
	set->free[set->nfree++] = (int)(io - set->io);
	pthread_cond_broadcast(&set->pcv);
	pthread_mutex_unlock(&set->plock);
}

static void reap(struct fwb_set *set, const dafs_completion_t *c, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct fwb_io *io = c[i].ctx;

		io_done_file(set, io, c[i].result);
		io_done_buf(set, io);
	}
}

/* Nothing the reaper must still wait for: at unmount, writes given up
 * (a silent server) are left to libdafs. */
static int reaper_may_stop(struct fwb_set *set)
{
	int i;

	for (i = 0; i < set->nbuf; i++)
		if (io_state(&set->io[i]) == FWB_IO_SENT && set->io[i].w)
			return 0;
	return 1;
}

/*
 * Reap the completions of writes behind. A write sent longer ago than the
 * session's timeout is given up: its file goes on with ETIMEDOUT, as a
 * synchronous write that timed out would (and, like that one, it may
 * still land later); its buffer waits for libdafs.
 */
static void *reaper_main(void *arg)
{
	struct fwb_set *set = arg;
	dafs_completion_t c[16];
	uint64_t now;
	int i, n;

	for (;;) {
		pthread_mutex_lock(&set->plock);
		while (set->inflight <= 0 && !set->stop)
			pthread_cond_wait(&set->pcv, &set->plock);
		pthread_mutex_unlock(&set->plock);
		if (set->stop && reaper_may_stop(set))
			break;
		n = dafs_cg_wait(set->cg, c, 16, 100);
		if (n > 0) {
			reap(set, c, n);
			continue;
		}
		if (n == -DAFS_EBROKEN) {
			/* nothing will complete: fail what is in flight */
			for (i = 0; i < set->nbuf; i++) {
				struct fwb_io *io = &set->io[i];

				if (io_state(io) != FWB_IO_SENT)
					continue;
				io_done_file(set, io, n);
				io_done_buf(set, io);
			}
			continue;
		}
		if (n == -ENOENT) {
			/* counted before libdafs had it, or reaped before
			 * it was counted: the count catches up */
			usleep(1000);
			continue;
		}
		/* a quiet moment: what completed meanwhile first */
		while ((n = dafs_cg_poll(set->cg, c, 16)) > 0)
			reap(set, c, n);
		now = now_ns();
		for (i = 0; i < set->nbuf; i++) {
			struct fwb_io *io = &set->io[i];

			if (io_state(io) == FWB_IO_SENT && io->w &&
			    now - io->t_ns > set->timeout_ns)
				io_done_file(set, io, -ETIMEDOUT);
		}
	}
	return NULL;
}

int fwb_behind_start(struct fwb_set *set, dafs_session_t *s, int nbuf,
		     int timeout_ms)
{
	int i, rc = -ENOMEM;

	if (nbuf <= 0)
		return 0;
	set->s = s;
	set->timeout_ns = (uint64_t)timeout_ms * 1000000u;
	set->pmem = aligned_alloc(4096, (size_t)nbuf * set->cap);
	set->io = calloc((size_t)nbuf, sizeof(*set->io));
	set->free = calloc((size_t)nbuf, sizeof(*set->free));
	if (!set->pmem || !set->io || !set->free)
		return rc;
	rc = dafs_mem_register(s, set->pmem, (size_t)nbuf * set->cap,
			       &set->preg);
	if (!rc)
		rc = dafs_cg_new(s, &set->cg);
	if (rc)
		return rc;
	for (i = 0; i < nbuf; i++)
		set->free[i] = nbuf - 1 - i;
	set->nbuf = set->nfree = nbuf;
	rc = pthread_create(&set->reaper, NULL, reaper_main, set);
	if (rc) {
		set->nbuf = 0;
		return -rc;
	}
	set->reaper_on = 1;
	return 0;
}

int fwb_behind_get(struct fwb_set *set)
{
	struct timespec ts;
	int b = -1;

	if (!set->nbuf)
		return -1;
	/* bounded: buffers given up on (a silent server) come back only
	 * when libdafs is done with them; the caller then writes itself */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(set->timeout_ns / 1000000000u);
	pthread_mutex_lock(&set->plock);
	while (!set->nfree &&
	       pthread_cond_timedwait(&set->pcv, &set->plock, &ts) == 0)
		;
	if (set->nfree) {
		b = set->free[--set->nfree];
		__atomic_store_n(&set->io[b].state, FWB_IO_TAKEN,
				 __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&set->plock);
	return b;
}

void fwb_behind_put(struct fwb_set *set, int b)
{
	io_done_buf(set, &set->io[b]);
}

static int overlaps(const struct fwb *w, uint64_t off, uint64_t end)
{
	int i;

	for (i = 0; i < w->nfl; i++)
		if (off < w->fl[i].end && w->fl[i].off < end)
			return 1;
	return 0;
}

ssize_t fwb_behind(struct fwb_set *set, struct fwb *w, dafs_session_t *s,
		   int (*may_hold)(void *arg, uint64_t ino), void *arg, int b,
		   size_t len, uint64_t off, uint32_t cred)
{
	struct fwb_io *io = &set->io[b];
	uint8_t *buf = fwb_behind_buf(set, b);
	ssize_t n;
	int rc;

	pthread_mutex_lock(&w->lock);
	/* every wait below lets go of the file's lock, and a recall may
	 * come meanwhile: the checks are made again after each */
	for (;;) {
		/* what was held is older: it goes first */
		send_locked(set, w, s);
		if (w->err) {
			rc = take_err_locked(set, w);
			pthread_mutex_unlock(&w->lock);
			fwb_behind_put(set, b);
			return rc;
		}
		if (!may_hold(arg, w->ino)) {
			drain_locked(w);
			if (w->len || w->err || may_hold(arg, w->ino))
				continue;
			n = dafs_cred_use(s, cred);
			if (!n)
				n = dafs_write(w->f, buf, len, off,
					       set->preg);
			pthread_mutex_unlock(&w->lock);
			fwb_behind_put(set, b);
			return n;
		}
		if (w->nfl < FWB_FL_MAX && !overlaps(w, off, off + len))
			break;
		pthread_cond_wait(&w->cv, &w->lock);
	}
	io->w = w;
	io->ino = w->ino;
	io->off = off;
	io->len = (uint32_t)len;
	rc = dafs_cred_use(s, cred);
	if (!rc)
		rc = dafs_write_async(w->f, buf, len, off, set->preg, set->cg,
				      io);
	if (rc) {
		io->w = NULL;
		pthread_mutex_unlock(&w->lock);
		fwb_behind_put(set, b);
		return rc;
	}
	/* libdafs has it: the reaper's from here (its completion, reaped
	 * at once, waits for this file's lock) */
	w->fl[w->nfl].off = off;
	w->fl[w->nfl].end = off + len;
	w->nfl++;
	atomic_fetch_add(&set->bytes, len);
	atomic_fetch_add(&set->behind, 1);
	io->t_ns = now_ns();
	pthread_mutex_lock(&set->plock);
	__atomic_store_n(&io->state, FWB_IO_SENT, __ATOMIC_RELEASE);
	set->inflight++;
	pthread_cond_broadcast(&set->pcv);
	pthread_mutex_unlock(&set->plock);
	pthread_mutex_unlock(&w->lock);
	return (ssize_t)len;
}
