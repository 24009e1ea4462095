/*
 * wback.c - libdafs's write-back: writes held under a write delegation,
 * for files opened DAFS_OPEN_WRITEBACK with a data cache set up (dafs.h).
 *
 * Each such open file keeps one dirty extent of up to one max_io (at most
 * 1 MiB): a write that continues or overwrites it is copied in and
 * answered at once; any other write sends it first. The session bounds
 * the bytes held by all its files to a quarter of the data cache's size:
 * a write that would pass the bound first sends the extents of the files
 * written least recently (memory pressure). An extent is also sent before
 * anything that must see it (dafs_c_wb_sync_fh's callers: reads, writes
 * through another open file, commit, getattr and setattr, fallocate,
 * lseek, copies, locks, asynchronous and batch I/O) and on a recall,
 * before the handler runs or the library returns the delegation. A failed
 * write-back is reported by the file's next write, commit or close, as a
 * local file system reports one at fsync or close.
 *
 * Locks: the session's wb_lock guards the list (most recently written
 * first), the bytes held and the reference counts; a file's wb.lock
 * guards its extent and is held while the extent is sent. wb_lock is
 * never held while a file's lock is taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_i.h"

#define CWB_CAP_MAX (1u << 20)

void dafs_c_wb_init(dafs_session_t *s)
{
	pthread_mutex_init(&s->wb_lock, NULL);
	pthread_cond_init(&s->wb_cv, NULL);
	s->wb_head.next = s->wb_head.prev = &s->wb_head;
}

void dafs_c_wb_fini(dafs_session_t *s)
{
	pthread_cond_destroy(&s->wb_cv);
	pthread_mutex_destroy(&s->wb_lock);
}

static uint64_t wb_max(const dafs_session_t *s)
{
	return s->wb_max;
}

static int gone_id(const dafs_session_t *s, uint64_t id);

void dafs_c_wb_open(dafs_file_t *f)
{
	dafs_session_t *s = f->s;
	struct cwb *w = &f->wb;

	memset(w, 0, sizeof(*w));
	/* the server puts an O_APPEND write at its end of file, wherever
	 * this client thought that was: such writes go straight through */
	if (!(f->flags & DAFS_OPEN_WRITEBACK) || !f->cached ||
	    (f->flags & O_ACCMODE) == O_RDONLY ||
	    (f->flags & (O_APPEND | O_SYNC | O_DSYNC | O_DIRECT)))
		return;
	pthread_mutex_init(&w->lock, NULL);
	w->f = f;
	w->cap = s->p.max_io < CWB_CAP_MAX ? s->p.max_io : CWB_CAP_MAX;
	w->on = 1;
	pthread_mutex_lock(&s->wb_lock);
	if (f->deleg_id && gone_id(s, f->deleg_id))
		w->gone = 1; /* recalled before this open was done */
	w->next = s->wb_head.next;
	w->prev = &s->wb_head;
	w->next->prev = w;
	s->wb_head.next = w;
	pthread_mutex_unlock(&s->wb_lock);
}

/* Send the extent (w->lock held). A failure is kept in w->err: the data
 * is lost, as a failed write-back of a local file system loses it. */
static void send_locked(dafs_session_t *s, struct cwb *w)
{
	ssize_t n;

	if (!w->len)
		return;
	n = dafs_c_write_server(w->f, w->buf, w->len, w->off);
	if (n >= 0 && (size_t)n != w->len)
		n = -EIO; /* a short write: ENOSPC after some bytes */
	if (n == -DAFS_EREVOKED)
		__atomic_store_n(&w->gone, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->wb_lock);
	if (n < 0) {
		if (!w->err)
			w->err = (int)n;
		s->wb_st.errors++;
	} else {
		s->wb_st.bytes += w->len;
	}
	s->wb_st.flushes++;
	__atomic_fetch_sub(&s->wb_dirty, w->len, __ATOMIC_RELEASE);
	w->len = 0;
	pthread_mutex_unlock(&s->wb_lock);
}

/* Which files send_each sends: @id's (a recall: each once, marked gone),
 * or else those holding bytes, of @fh (NULL: any) but @except; @enough:
 * only until the bytes held leave room for that much more. */
struct pick {
	uint64_t id;
	const dafs_fh_t *fh;
	const struct cwb *except;
	uint64_t enough;
	uint64_t pass; /* marks the files this call has sent */
};

static int picks(const struct pick *p, const struct cwb *w)
{
	if (p->id)
		return w->f->deleg_id == p->id &&
		       !__atomic_load_n(&w->gone, __ATOMIC_ACQUIRE);
	return w != p->except && w->len && w->pass != p->pass &&
	       (!p->fh || (w->f->fh.len == p->fh->len &&
			   !memcmp(w->f->fh.data, p->fh->data, p->fh->len)));
}

/* Send the picked files' extents, the least recently written first, one
 * at a time: a file is found under wb_lock, referenced (a close waits for
 * it), then sent under its own lock alone. */
static void send_each(dafs_session_t *s, struct pick *p)
{
	struct cwb *w, *it;

	pthread_mutex_lock(&s->wb_lock);
	p->pass = ++s->wb_pass;
	for (;;) {
		if (p->enough && s->wb_dirty + p->enough <= wb_max(s))
			break;
		w = NULL;
		for (it = s->wb_head.prev; !w && it != &s->wb_head;
		     it = it->prev)
			if (picks(p, it))
				w = it;
		if (!w)
			break;
		/* each once, even if written again meanwhile */
		w->pass = p->pass;
		w->refs++;
		pthread_mutex_unlock(&s->wb_lock);
		pthread_mutex_lock(&w->lock);
		/* a recall marks it under its lock: a writer holding it
		 * either finished its hold (sent now) or sees the mark */
		if (p->id)
			__atomic_store_n(&w->gone, 1, __ATOMIC_RELEASE);
		send_locked(s, w);
		pthread_mutex_unlock(&w->lock);
		pthread_mutex_lock(&s->wb_lock);
		w->refs--;
		pthread_cond_broadcast(&s->wb_cv);
	}
	pthread_mutex_unlock(&s->wb_lock);
}

void dafs_c_wb_sync_fh(dafs_session_t *s, const dafs_fh_t *fh,
		       const dafs_file_t *except)
{
	struct pick p = {.fh = fh, .except = except ? &except->wb : NULL};

	if (__atomic_load_n(&s->wb_dirty, __ATOMIC_ACQUIRE))
		send_each(s, &p);
}

ssize_t dafs_c_wb_write(dafs_file_t *f, const void *buf, size_t len,
			uint64_t off)
{
	dafs_session_t *s = f->s;
	struct cwb *w = &f->wb;
	uint64_t start, grow;
	int hold, fits, tried = 0, rc;

	if (!w->on)
		return 0;
	/* writes reach the server in the order they were made */
	dafs_c_wb_sync_fh(s, &f->fh, f);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		/* only under the file's write delegation, until its recall */
		hold = len && len < w->cap && f->deleg == DAFS_DELEG_WRITE &&
		       !__atomic_load_n(&w->gone, __ATOMIC_ACQUIRE);
		fits = w->len && off >= w->off && off <= w->off + w->len &&
		       off + len <= w->off + w->cap;
		/* what is held goes first unless this write joins it (a write
		 * sent past it would be overwritten by it later) */
		if (w->len && (!hold || !fits))
			send_locked(s, w);
		if (w->err) {
			rc = w->err;
			w->err = 0;
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		if (!hold) {
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
		/* room for the bytes it adds, reserved at once so that
		 * writers of other files cannot pass the bound together */
		start = w->len ? w->off : off;
		grow = off + len - start > w->len ? off + len - start - w->len
						  : 0;
		pthread_mutex_lock(&s->wb_lock);
		if (s->wb_dirty + grow <= wb_max(s)) {
			__atomic_fetch_add(&s->wb_dirty, grow,
					   __ATOMIC_RELEASE);
			pthread_mutex_unlock(&s->wb_lock);
			break;
		}
		pthread_mutex_unlock(&s->wb_lock);
		if (tried) {
			/* still no room (this file holds it): straight
			 * through, after what it holds */
			send_locked(s, w);
			rc = w->err;
			w->err = 0;
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		/* memory pressure: the least recently written go first (not
		 * this file, whose lock is let go meanwhile; everything is
		 * checked again after) */
		tried = 1;
		pthread_mutex_unlock(&w->lock);
		send_each(s, &(struct pick){.except = w, .enough = grow});
		pthread_mutex_lock(&w->lock);
	}
	if (!w->buf) {
		w->buf = malloc(w->cap);
		if (!w->buf) {
			/* nothing was held (the buffer comes first) */
			__atomic_fetch_sub(&s->wb_dirty, grow,
					   __ATOMIC_RELEASE);
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	if (!w->len)
		w->off = off;
	memcpy(w->buf + (off - w->off), buf, len);
	pthread_mutex_lock(&s->wb_lock);
	w->len += (uint32_t)grow;
	s->wb_st.held++;
	/* most recently written first */
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->next = s->wb_head.next;
	w->prev = &s->wb_head;
	w->next->prev = w;
	s->wb_head.next = w;
	pthread_mutex_unlock(&s->wb_lock);
	pthread_mutex_unlock(&w->lock);
	return (ssize_t)len;
}

/* Has delegation @id been recalled or given back (wb_lock held)? */
static int gone_id(const dafs_session_t *s, uint64_t id)
{
	int i;

	for (i = 0; i < CWB_GONE; i++)
		if (s->wb_gone[i] == id)
			return 1;
	return 0;
}

void dafs_c_wb_recall(dafs_session_t *s, uint64_t id)
{
	/* an open whose reply carried @id and is not on the list yet
	 * learns it from here (dafs_c_wb_open) */
	pthread_mutex_lock(&s->wb_lock);
	if (!gone_id(s, id))
		s->wb_gone[s->wb_gone_next++ % CWB_GONE] = id;
	pthread_mutex_unlock(&s->wb_lock);
	send_each(s, &(struct pick){.id = id});
}

int dafs_c_wb_flush(dafs_file_t *f)
{
	struct cwb *w = &f->wb;
	int err;

	if (!w->on)
		return 0;
	pthread_mutex_lock(&w->lock);
	send_locked(f->s, w);
	err = w->err;
	w->err = 0;
	pthread_mutex_unlock(&w->lock);
	return err;
}

int dafs_c_wb_close(dafs_file_t *f)
{
	dafs_session_t *s = f->s;
	struct cwb *w = &f->wb;
	int err;

	if (!w->on)
		return 0;
	err = dafs_c_wb_flush(f);
	pthread_mutex_lock(&s->wb_lock);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	while (w->refs)
		pthread_cond_wait(&s->wb_cv, &s->wb_lock);
	pthread_mutex_unlock(&s->wb_lock);
	/* a flusher that raced with the close may have left an error */
	if (!err)
		err = w->err;
	free(w->buf);
	pthread_mutex_destroy(&w->lock);
	memset(w, 0, sizeof(*w));
	return err;
}

void dafs_c_wb_stats(dafs_session_t *s, dafs_cache_stats_t *st)
{
	pthread_mutex_lock(&s->wb_lock);
	st->wb_held = s->wb_st.held;
	st->wb_bytes = s->wb_st.bytes;
	st->wb_flushes = s->wb_st.flushes;
	st->wb_errors = s->wb_st.errors;
	st->wb_dirty = s->wb_dirty;
	pthread_mutex_unlock(&s->wb_lock);
}
