/*
 * wback_i.h - dafs-fuse's write-back of small writes under a write
 * delegation.
 *
 * Without FUSE's writeback_cache (mount-wide, and it makes the kernel
 * ignore the server's file sizes, which breaks coherence between clients),
 * every write(2) reaches the daemon as its own WRITE. While the mount
 * holds a write delegation of a file no other client reads or writes it,
 * so the daemon may hold those writes and send them later, together. Each
 * open file keeps one dirty extent (up to one max_io): a write that
 * continues or overwrites it is copied in and answered at once; any other
 * write sends the extent first. The extent is sent on flush (close),
 * fsync, release, before a read, getattr, setattr, fallocate or copy of
 * the file, when the memory bound is reached, and on a recall before the
 * delegation goes back. A failed write-back is reported by the next flush
 * or fsync of that open file (as a local file system reports a failed
 * write-back at close or fsync).
 *
 * Locks: the set's lock guards the list and the reference counts; a
 * file's lock guards its extent. The set's lock is never held while a
 * file's is taken, and no lock is held across a network call except the
 * file's own.
 */
#ifndef DAFS_FUSE_WBACK_I_H
#define DAFS_FUSE_WBACK_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dafs/dafs.h"

struct fwb {
	pthread_mutex_t lock; /* the extent below */
	dafs_file_t *f;
	uint64_t ino;
	uint64_t off;
	uint32_t len, cap;
	uint8_t *buf; /* cap bytes once a write was held */
	uint32_t cred;	/* the credential id of the writes held */
	int err;	/* a failed write-back, for the next flush */
	int refs;	/* under the set's lock: flushers using it */
	struct fwb *prev, *next;
};

struct fwb_set {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct fwb head; /* list of open files that may hold writes */
	uint64_t max;	 /* bytes held at most over all files */
	uint32_t cap;	 /* bytes held at most per file */
	/* called once held bytes of node @ino reached the server: what the
	 * server said about the node before is out of date */
	void (*sent)(void *arg, uint64_t ino);
	void *arg;
	atomic_ullong bytes;
	/* statistics */
	atomic_ullong held, flushes, flushed_bytes, errors;
};

void fwb_set_init(struct fwb_set *set, uint64_t max, uint32_t cap,
		  void (*sent)(void *arg, uint64_t ino), void *arg);
void fwb_set_fini(struct fwb_set *set);

/* Start write-back for an open file of node @ino (on the set's list). */
void fwb_open(struct fwb_set *set, struct fwb *w, uint64_t ino,
	      dafs_file_t *f);
/* Send what @w holds and take it off the list; returns what a flush
 * would (the file is about to close). */
int fwb_close(struct fwb_set *set, struct fwb *w, dafs_session_t *s);

/*
 * A write of @len bytes at @off by credential @cred. @may_hold says
 * whether the mount holds the file's write delegation (checked by the
 * caller under nothing; see dfs_recall for why that is enough). Returns
 * @len if the write is held, 0 if the caller must send it itself (what
 * was held has then been sent first), or a negative error from sending
 * what was held.
 */
ssize_t fwb_write(struct fwb_set *set, struct fwb *w, dafs_session_t *s,
		  int (*may_hold)(void *arg, uint64_t ino), void *arg,
		  const void *data, size_t len, uint64_t off, uint32_t cred);

/* Send what @w holds; returns and clears a pending write-back error. */
int fwb_flush(struct fwb_set *set, struct fwb *w, dafs_session_t *s);

/* Send what every open file of node @ino but @except (may be NULL) holds
 * (errors stay with each file for its next flush). A write through one
 * open file sends what the others hold first, so that writes reach the
 * server in the order they were made. */
void fwb_flush_ino(struct fwb_set *set, uint64_t ino, dafs_session_t *s,
		   const struct fwb *except);
/* fwb_flush_ino's @ino for every node (node ids start at 1) */
#define FWB_ALL 0

#endif /* DAFS_FUSE_WBACK_I_H */
