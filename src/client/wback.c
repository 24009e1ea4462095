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
	pthread_mutex_unlock(&s->wb_lock);
	w->len = 0;
}

/* Take (with wb_lock held) references to the files that match: @fh's
 * (NULL: every file's), not @except, holding bytes; least recently
 * written first. Returns how many, in a malloc'd array (NULL if none or
 * no memory: the caller then sends under wb_lock, see sync_some). */
static struct cwb **take(dafs_session_t *s, const dafs_fh_t *fh,
			 const struct cwb *except, size_t *n)
{
	struct cwb *w, **v;
	size_t i = 0;

	*n = 0;
	for (w = s->wb_head.prev; w != &s->wb_head; w = w->prev)
		*n += w != except && w->len &&
		      (!fh || (w->f->fh.len == fh->len &&
			       !memcmp(w->f->fh.data, fh->data, fh->len)));
	if (!*n)
		return NULL;
	v = malloc(*n * sizeof(*v));
	if (!v)
		return NULL;
	for (w = s->wb_head.prev; w != &s->wb_head; w = w->prev)
		if (w != except && w->len &&
		    (!fh || (w->f->fh.len == fh->len &&
			     !memcmp(w->f->fh.data, fh->data, fh->len)))) {
			w->refs++;
			v[i++] = w;
		}
	return v;
}

static void put(dafs_session_t *s, struct cwb **v, size_t n)
{
	size_t i;

	pthread_mutex_lock(&s->wb_lock);
	for (i = 0; i < n; i++)
		v[i]->refs--;
	pthread_cond_broadcast(&s->wb_cv);
	pthread_mutex_unlock(&s->wb_lock);
	free(v);
}

/* Send what the files of @fh (NULL: all) but @except hold; with @enough,
 * stop once the bytes held leave room for @enough more. */
static void sync_some(dafs_session_t *s, const dafs_fh_t *fh,
		      const struct cwb *except, uint64_t enough)
{
	struct cwb **v;
	size_t i, n;

	pthread_mutex_lock(&s->wb_lock);
	v = take(s, fh, except, &n);
	pthread_mutex_unlock(&s->wb_lock);
	if (n && !v) {
		/* no memory for the list: one at a time, the oldest */
		struct cwb *w;

		for (;;) {
			pthread_mutex_lock(&s->wb_lock);
			for (w = s->wb_head.prev; w != &s->wb_head;
			     w = w->prev)
				if (w != except && w->len &&
				    (!fh ||
				     (w->f->fh.len == fh->len &&
				      !memcmp(w->f->fh.data, fh->data,
					      fh->len))))
					break;
			if (w == &s->wb_head ||
			    (enough && s->wb_dirty + enough <= wb_max(s))) {
				pthread_mutex_unlock(&s->wb_lock);
				return;
			}
			w->refs++;
			pthread_mutex_unlock(&s->wb_lock);
			pthread_mutex_lock(&w->lock);
			send_locked(s, w);
			pthread_mutex_unlock(&w->lock);
			pthread_mutex_lock(&s->wb_lock);
			w->refs--;
			pthread_cond_broadcast(&s->wb_cv);
			pthread_mutex_unlock(&s->wb_lock);
		}
	}
	for (i = 0; i < n; i++) {
		if (enough) {
			pthread_mutex_lock(&s->wb_lock);
			if (s->wb_dirty + enough <= wb_max(s)) {
				pthread_mutex_unlock(&s->wb_lock);
				break;
			}
			pthread_mutex_unlock(&s->wb_lock);
		}
		pthread_mutex_lock(&v[i]->lock);
		send_locked(s, v[i]);
		pthread_mutex_unlock(&v[i]->lock);
	}
	if (n)
		put(s, v, n);
}

void dafs_c_wb_sync_fh(dafs_session_t *s, const dafs_fh_t *fh,
		       const dafs_file_t *except)
{
	if (__atomic_load_n(&s->wb_dirty, __ATOMIC_ACQUIRE))
		sync_some(s, fh, except ? &except->wb : NULL, 0);
}

ssize_t dafs_c_wb_write(dafs_file_t *f, const void *buf, size_t len,
			uint64_t off)
{
	dafs_session_t *s = f->s;
	struct cwb *w = &f->wb;
	uint64_t end;
	int contig, rc;

	if (!w->on)
		return 0;
	/* writes reach the server in the order they were made */
	dafs_c_wb_sync_fh(s, &f->fh, f);
	pthread_mutex_lock(&w->lock);
	contig = w->len && off >= w->off && off <= w->off + w->len &&
		 off + len <= w->off + w->cap;
	if (w->len && !contig)
		send_locked(s, w);
	if (w->err) {
		rc = w->err;
		w->err = 0;
		pthread_mutex_unlock(&w->lock);
		return rc;
	}
	/* only under the file's write delegation, until its recall */
	if (len >= w->cap || f->deleg != DAFS_DELEG_WRITE ||
	    __atomic_load_n(&w->gone, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	pthread_mutex_lock(&s->wb_lock);
	if (s->wb_dirty + len > wb_max(s)) {
		pthread_mutex_unlock(&s->wb_lock);
		/* memory pressure: the least recently written go first (not
		 * this file's, whose lock this thread holds) */
		pthread_mutex_unlock(&w->lock);
		sync_some(s, NULL, w, len);
		pthread_mutex_lock(&w->lock);
		pthread_mutex_lock(&s->wb_lock);
		if (s->wb_dirty + len > wb_max(s) ||
		    __atomic_load_n(&w->gone, __ATOMIC_ACQUIRE)) {
			/* still no room (this file holds it): straight
			 * through, after what it holds */
			pthread_mutex_unlock(&s->wb_lock);
			send_locked(s, w);
			rc = w->err;
			w->err = 0;
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		/* the extent may have been sent meanwhile */
		if (w->len && !(off >= w->off && off <= w->off + w->len &&
				off + len <= w->off + w->cap)) {
			pthread_mutex_unlock(&s->wb_lock);
			send_locked(s, w);
			pthread_mutex_lock(&s->wb_lock);
		}
	}
	pthread_mutex_unlock(&s->wb_lock);
	if (!w->buf) {
		w->buf = malloc(w->cap);
		if (!w->buf) {
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	if (!w->len)
		w->off = off;
	memcpy(w->buf + (off - w->off), buf, len);
	end = off + len - w->off;
	pthread_mutex_lock(&s->wb_lock);
	if (end > w->len) {
		__atomic_fetch_add(&s->wb_dirty, end - w->len,
				   __ATOMIC_RELEASE);
		w->len = (uint32_t)end;
	}
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

void dafs_c_wb_recall(dafs_session_t *s, uint64_t id)
{
	struct cwb *w, **v;
	size_t i, n = 0;

	pthread_mutex_lock(&s->wb_lock);
	for (w = s->wb_head.next; w != &s->wb_head; w = w->next)
		n += w->f->deleg_id == id;
	v = n ? malloc(n * sizeof(*v)) : NULL;
	n = 0;
	for (w = s->wb_head.next; v && w != &s->wb_head; w = w->next)
		if (w->f->deleg_id == id) {
			w->refs++;
			v[n++] = w;
		}
	if (!v) {
		/* no memory for the list: no new holds from here on, and
		 * every file's extent goes (sync_some's own fallback) */
		for (w = s->wb_head.next; w != &s->wb_head; w = w->next)
			if (w->f->deleg_id == id)
				__atomic_store_n(&w->gone, 1,
						 __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->wb_lock);
	if (!v) {
		dafs_c_wb_sync_fh(s, NULL, NULL);
		return;
	}
	for (i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		__atomic_store_n(&v[i]->gone, 1, __ATOMIC_RELEASE);
		send_locked(s, v[i]);
		pthread_mutex_unlock(&v[i]->lock);
	}
	put(s, v, n);
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
