/*
 * wback.c - write-back of small writes under a write delegation (see
 * wback_i.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/wback_i.h"

void fwb_set_init(struct fwb_set *set, uint64_t max, uint32_t cap,
		  void (*sent)(void *arg, uint64_t ino), void *arg)
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
}

void fwb_set_fini(struct fwb_set *set)
{
	pthread_mutex_destroy(&set->lock);
	pthread_cond_destroy(&set->cv);
}

void fwb_open(struct fwb_set *set, struct fwb *w, uint64_t ino,
	      dafs_file_t *f)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	w->f = f;
	w->ino = ino;
	w->cap = set->cap;
	pthread_mutex_lock(&set->lock);
	w->next = set->head.next;
	w->prev = &set->head;
	w->next->prev = w;
	set->head.next = w;
	pthread_mutex_unlock(&set->lock);
}

/* Send the extent (w->lock held). A failure is kept in w->err: the data
 * is lost, as a failed write-back of a local file system loses it. */
static void send_locked(struct fwb_set *set, struct fwb *w,
			dafs_session_t *s)
{
	ssize_t n;

	if (!w->len)
		return;
	dafs_cred_use(s, w->cred);
	n = dafs_write(w->f, w->buf, w->len, w->off, NULL);
	if (n >= 0 && (size_t)n != w->len)
		n = -EIO; /* a short write: ENOSPC came after some bytes */
	if (n < 0) {
		if (!w->err)
			w->err = (int)n;
		atomic_fetch_add(&set->errors, 1);
	} else {
		atomic_fetch_add(&set->flushed_bytes, w->len);
	}
	atomic_fetch_add(&set->flushes, 1);
	atomic_fetch_sub(&set->bytes, w->len);
	w->len = 0;
	set->sent(set->arg, w->ino);
}

int fwb_flush(struct fwb_set *set, struct fwb *w, dafs_session_t *s)
{
	int err;

	pthread_mutex_lock(&w->lock);
	send_locked(set, w, s);
	err = w->err;
	w->err = 0;
	pthread_mutex_unlock(&w->lock);
	return err;
}

int fwb_close(struct fwb_set *set, struct fwb *w, dafs_session_t *s)
{
	int err = fwb_flush(set, w, s);

	pthread_mutex_lock(&set->lock);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	while (w->refs)
		pthread_cond_wait(&set->cv, &set->lock);
	pthread_mutex_unlock(&set->lock);
	/* a flusher that raced with the close may have left an error */
	if (!err)
		err = w->err;
	free(w->buf);
	w->buf = NULL;
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
	if (len >= w->cap || !may_hold(arg, w->ino) ||
	    (!contig && w->len) ||
	    atomic_load(&set->bytes) + len > set->max) {
		send_locked(set, w, s);
		if (w->err) {
			rc = w->err;
			w->err = 0;
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		/* a small write may still start a new extent */
		if (len >= w->cap || !may_hold(arg, w->ino) ||
		    atomic_load(&set->bytes) + len > set->max) {
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	if (!w->buf) {
		w->buf = malloc(w->cap);
		if (!w->buf) {
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
				send_locked(set, w, s);
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
		send_locked(set, take[i], s);
		pthread_mutex_unlock(&take[i]->lock);
	}
	pthread_mutex_lock(&set->lock);
	for (i = 0; i < n; i++)
		take[i]->refs--;
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->lock);
	free(take);
}
