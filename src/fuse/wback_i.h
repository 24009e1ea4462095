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
 * or fsync of that open file, by the fsync of the node's other open files,
 * and, when the close was answered before the write-back (fwb_pin), by the
 * next fsync of the node (fwb_err_take_unseen).
 *
 * Writes of a whole extent (max_io, 1 MiB) are written behind: copied into
 * one of a few buffers registered once (-o wb_behind=N), sent with the
 * asynchronous API and answered at once, so the next write's copy overlaps
 * this one's transfer and the server's work. A reaper thread takes their
 * completions. Every point that sends the extent first waits for the
 * file's writes in flight (so a flush still means "on the server"), a
 * write overlapping one in flight waits for it, and an error is kept for
 * the next flush as for the extent. A write that the server does not
 * answer within the session's timeout is given up with ETIMEDOUT (its
 * buffer comes back only when libdafs is done with it).
 *
 * Locks: the set's lock guards the list and the reference counts; a
 * file's lock guards its extent and its writes in flight; the pool's lock
 * (taken last) guards the buffers. The set's lock is never held while a
 * file's is taken, and no lock is held across a network call except the
 * file's own.
 */
#ifndef DAFS_FUSE_WBACK_I_H
#define DAFS_FUSE_WBACK_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dafs/dafs.h"

/* writes behind in flight per open file at most */
#define FWB_FL_MAX 8
/* write-back errors remembered for other descriptors */
#define FWB_ERRS 64

struct fwb {
	pthread_mutex_t lock; /* the extent below */
	dafs_file_t *f;
	uint64_t ino;
	uint64_t off;
	uint32_t len, cap;
	uint8_t *buf; /* cap bytes once a write was held */
	uint32_t cred;	/* the credential id of the writes held */
	int err;	/* a failed write-back, for the next flush */
	uint64_t err_seq; /* its place in set->errs */
	int append;	  /* an O_APPEND open: the server places its writes */
	int refs;	/* under the set's lock: flushers using it */
	struct fwb *prev, *next;
	/* writes behind in flight: their ranges, for overlaps */
	pthread_cond_t cv; /* one of them finished (with lock) */
	uint64_t id;	   /* names this open file in set->errs */
	int nfl;
	struct {
		uint64_t off, end;
	} fl[FWB_FL_MAX];
};

/* One buffer of the write-behind pool, and the write it carries. */
enum { FWB_IO_FREE, FWB_IO_TAKEN, FWB_IO_SENT };
struct fwb_io {
	int state;	/* FWB_IO_*: changed under the pool's lock */
	struct fwb *w;	/* while it counts for w; NULL once given up */
	uint64_t ino, off, t_ns;
	uint32_t len;
};

struct fwb_set {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct fwb head; /* list of open files that may hold writes */
	uint64_t max;	 /* bytes held at most over all files */
	uint32_t cap;	 /* bytes held at most per file */
	/* called once held bytes of node @ino reached the server (or failed
	 * to: @err): what the server said about the node before is out of
	 * date */
	void (*sent)(void *arg, uint64_t ino, int err);
	void *arg;
	atomic_ullong bytes; /* held and in flight */
	/* statistics */
	atomic_ullong held, flushes, flushed_bytes, errors, behind;
	/* how long a write-back takes, averaged (ns): close answers before
	 * sending once it is close_behind_ns or more (fwb_close_early) */
	atomic_ullong send_ns;
	uint64_t close_behind_ns;
	atomic_ullong early_closes;

	/* the last FWB_ERRS write-back errors, for every other open file of
	 * the node (Linux reports one to each descriptor open when it
	 * happened); elock is taken last, under any other */
	pthread_mutex_t elock;
	uint64_t eseq, next_id;
	struct fwb_err {
		uint64_t ino, owner, seq;
		int err;
		int seen; /* reported to some descriptor */
	} errs[FWB_ERRS];
	/* errors no descriptor reported: the file's close had been answered
	 * before its write-back failed (fwb_close, fwb_err_take_unseen) */
	struct fwb_unseen {
		uint64_t ino, seq; /* seq: in errs */
		int err;
	} unseen[FWB_ERRS];
	unsigned unseen_next;

	/* write-behind (fwb_behind_start; nbuf 0: off) */
	pthread_mutex_t plock; /* the pool below */
	pthread_cond_t pcv;    /* a buffer came back, a write was sent */
	dafs_session_t *s;
	dafs_cg_t *cg;
	uint8_t *pmem; /* nbuf buffers of cap bytes */
	dafs_mem_t *preg;
	struct fwb_io *io;
	int *free;
	int nbuf, nfree, inflight, stop, reaper_on;
	uint64_t timeout_ns;
	pthread_t reaper;
};

void fwb_set_init(struct fwb_set *set, uint64_t max, uint32_t cap,
		  void (*sent)(void *arg, uint64_t ino, int err), void *arg);
void fwb_set_fini(struct fwb_set *set);

/* Start write-back for an open file of node @ino (on the set's list). */
void fwb_open(struct fwb_set *set, struct fwb *w, uint64_t ino, dafs_file_t *f,
	      int append);
/* Send what @w holds, wait for its writes in flight, and take it off
 * the list (the file is about to close); returns an error it did not
 * report, kept for the node's next fsync (fwb_err_take_unseen). */
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

/* Write-behind with @nbuf buffers on session @s (0: off); a write not
 * answered within @timeout_ms fails with ETIMEDOUT. Stopped by
 * fwb_set_fini, after every file is closed. */
int fwb_behind_start(struct fwb_set *set, dafs_session_t *s, int nbuf,
		     int timeout_ms);
/* A free buffer (waiting up to the timeout for one), or -1 when
 * write-behind is off or none came back. */
int fwb_behind_get(struct fwb_set *set);
static inline uint8_t *fwb_behind_buf(struct fwb_set *set, int b)
{
	return set->pmem + (size_t)b * set->cap;
}
/* Give back buffer @b unused. */
void fwb_behind_put(struct fwb_set *set, int b);
/*
 * Write @len bytes at @off from buffer @b (which this takes) by
 * credential @cred: behind while @may_hold, else at once. Returns @len,
 * or an error: of this write when sent at once, else of an earlier write
 * of @w not yet reported.
 */
ssize_t fwb_behind(struct fwb_set *set, struct fwb *w, dafs_session_t *s,
		   int (*may_hold)(void *arg, uint64_t ino), void *arg, int b,
		   size_t len, uint64_t off, uint32_t cred);

/* Send what @w holds and wait for its writes in flight; returns and
 * clears a pending write-back error. */
int fwb_flush(struct fwb_set *set, struct fwb *w, dafs_session_t *s);

/* Whether a close should be answered before its write-back is sent: a
 * write-back takes longer than answering first costs (the threads that
 * wait for it wake up later; on loopback that costs more than it saves) */
static inline int fwb_close_early(struct fwb_set *set)
{
	return atomic_load(&set->send_ns) >= set->close_behind_ns;
}

/*
 * A close answered before its write-back: fwb_pin() before the answer
 * keeps @w (fwb_close waits for it), fwb_send_unpin() after it sends what
 * @w holds, not waiting for its writes behind in flight (an error stays
 * in w->err, and reaches fwb_close), and lets go. fwb_busy() says whether
 * @w holds or has in flight anything at all.
 */
void fwb_pin(struct fwb_set *set, struct fwb *w);
void fwb_send_unpin(struct fwb_set *set, struct fwb *w, dafs_session_t *s);
int fwb_busy(struct fwb *w);
/* Take @w's pending write-back error (0: none). */
int fwb_err_take_own(struct fwb_set *set, struct fwb *w);
/* An error that the open file of node @ino met and did not report (its
 * close was answered first), kept by fwb_close: the next fsync of any
 * descriptor of the node, opened before or after, reports it once,
 * unless another descriptor reported it already (fwb_err_take), as
 * Linux reports an error nobody has seen to a later opener. The last
 * FWB_ERRS are kept. */
int fwb_err_take_unseen(struct fwb_set *set, uint64_t ino);

/* Send what every open file of node @ino but @except (may be NULL) holds
 * (errors stay with each file for its next flush). A write through one
 * open file sends what the others hold first, so that writes reach the
 * server in the order they were made. */
void fwb_flush_ino(struct fwb_set *set, uint64_t ino, dafs_session_t *s,
		   const struct fwb *except);
/* Where an open file starts in the error history (at its open). */
uint64_t fwb_err_mark(struct fwb_set *set);
/* A write-back error of node @ino that another open file than @own (the
 * fwb id, 0 for none) met since *@seen, or 0; *@seen moves on. */
int fwb_err_take(struct fwb_set *set, uint64_t ino, uint64_t own,
		 uint64_t *seen);

/* fwb_flush_ino's @ino for every node (node ids start at 1) */
#define FWB_ALL 0

#endif /* DAFS_FUSE_WBACK_I_H */
