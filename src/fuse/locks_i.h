/*
 * locks_i.h - dafs-fuse's POSIX and flock locks: the kernel's lock
 * requests (setlk, flock) sent to the server, and the ones that must wait
 * (F_SETLKW, flock without LOCK_NB) waited for without holding a FUSE
 * worker thread.
 *
 * The server never waits for a lock (docs/protocol.md §5.9): a conflict
 * is DAFS_EDENIED at once. A request that may sleep is tried once on the
 * worker thread that received it; if denied, the request is handed to
 * one waiter thread and the worker goes back to the kernel. Were the
 * workers to wait themselves, a few processes waiting on locks would take
 * every worker (the pool is bounded), and the holder's own unlock, or its
 * close, would find none to run on. The waiter tries each request again
 * after 1 ms, then at intervals doubling to 100 ms, and answers it when
 * it is granted, fails otherwise, or is interrupted (a signal to the
 * waiting process: the kernel sends FUSE_INTERRUPT, libfuse marks the
 * request, and the waiter answers EINTR).
 *
 * A server that stops answering holds up no one for long: the waiter
 * makes one try at a time and waits at most 1 s for its answer
 * (dafs_lock_timed(); no answer is as a refusal, tried again later);
 * between two tries it answers every interrupted request without asking
 * the server, and at a stop (unmount) every request still waiting is
 * answered EINTR the same way. A try given up on may still be granted by
 * the server: the owner's next try of the same lock then succeeds; if
 * the request was interrupted instead, the owner holds a lock its process
 * was told it did not get, until the unlock at its close (POSIX) or the
 * release of its open file (flock).
 *
 * Coherence, as NFS: a lock granted while the mount holds no delegation
 * of the file drops the kernel's pages and attributes of it, so reads
 * under the lock see what the last holder wrote before its unlock (the
 * caller sends held writes before an unlock, ops.c).
 *
 * Lock: the set's mutex guards the list; it is never held across a call
 * to the server or to the kernel, and libfuse's interrupt callback takes
 * it (with libfuse's request lock held), so nothing that takes a libfuse
 * request lock may run under it.
 */
#ifndef DAFS_FUSE_LOCKS_I_H
#define DAFS_FUSE_LOCKS_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dafs/dafs.h"

struct dfs;
struct fuse_req;
struct flk_wait;

struct flk_set {
	pthread_mutex_t lock; /* the fields below */
	pthread_cond_t cv;    /* a new waiter, an interrupt, stop */
	struct flk_wait *head;
	uint64_t waiting; /* requests on the list */
	int kick;	  /* look at every waiter now (an interrupt) */
	int stop;
	int started;
	pthread_t thread;
	atomic_ullong granted_after_wait; /* statistics */
};

/* Set up the set and start its thread. Returns 0 or a negative errno. */
int flk_start(struct dfs *fs);
/* Stop the thread (within a try's 1 s) and answer whatever still waits
 * with EINTR, asking the server nothing (before the FUSE session goes:
 * op_destroy). Idempotent. */
void flk_stop(struct dfs *fs);
/* flk_stop(), then free the set (dfs_fini). */
void flk_fini(struct dfs *fs);

/*
 * The kernel's lock request @req on node @ino through the open file @f:
 * try it; if another owner holds a conflicting lock and @sleep, the
 * waiter thread takes @req over; otherwise (and once it is granted or
 * fails) @req is answered. The caller has sent the writes held for the
 * node before an unlock and set the thread's credentials.
 */
void flk_request(struct dfs *fs, struct fuse_req *req, uint64_t ino,
		 dafs_file_t *f, const dafs_lock_t *lk, int sleep);

/* Requests waiting now. */
uint64_t flk_waiting(struct dfs *fs);

#endif /* DAFS_FUSE_LOCKS_I_H */
