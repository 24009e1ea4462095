/*
 * locks_i.h - dafsd's locks: the LOCK and LOCKT operations of a session
 * (docs/protocol.md §5.9).
 *
 * The kernel keeps the locks. Each (lock owner, file, kind) of a session
 * gets a file descriptor of its own, opened again from the open file the
 * lock came through (/proc/self/fd, with the server's credentials), and
 * the lock is an open file description lock on it: F_OFD_SETLK for POSIX
 * ranges, flock() for whole files. Distinct descriptions are distinct
 * owners to the kernel, which checks conflicts (with every other session
 * and with the server's local processes), merges and splits ranges, and
 * releases everything of a descriptor when it is closed. Nothing ever
 * waits: conflicts answer DAFS_EDENIED at once and the client tries again.
 *
 * Modes: a descriptor is opened with as little access as its locks need,
 * since opened for writing (as root) it would have effects on the server
 * the client never asked for (ETXTBSY for a local exec, IN_CLOSE_WRITE,
 * broken read leases, an overlayfs copy-up). flock: read-only. POSIX
 * through a read-only open: read-only; through a writable one: read and
 * write. A write lock that comes later, through a writable open, for an
 * owner whose descriptor is read-only replaces the descriptor with a
 * read-write one that first takes over its read locks (from
 * /proc/self/fdinfo); the locks stay on one description, as they must:
 * two would be two owners to the kernel and conflict with each other.
 *
 * A table per session maps (owner, dev, ino, kind) to its descriptor.
 * Lock: the table's mutex guards it and is held across the lock calls on
 * a descriptor (none of them blocks), so a session's release can never
 * close a descriptor under a request still using it; it is not held
 * across the open of a new descriptor. It is a leaf: no other lock is
 * taken under it.
 *
 * Descriptors are bounded twice: per session (max, dafsd --max-lock-fds)
 * and over the whole server (a budget every table draws on). Owners are
 * the client's numbers, so without the second bound a few sessions could
 * take every descriptor the process may have, and dafsd could then accept
 * no connection, open no file and read no directory; the server gives
 * locks at most half of its RLIMIT_NOFILE (server.c) and keeps the rest
 * for those.
 */
#ifndef DAFS_SERVER_LOCKS_I_H
#define DAFS_SERVER_LOCKS_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "proto/wire_i.h"

/* descriptors a session may hold by default (dafsd --max-lock-fds) */
#define SRV_LOCKFDS_DEFAULT 256

/* The lock descriptors of every session together: at most max. Lock-free
 * (a counter); it outlives every table drawing on it. */
struct srv_lockbudget {
	atomic_uint used;
	uint32_t max;
};

struct srv_lockfd;

struct srv_locks {
	pthread_mutex_t lock;	 /* everything below */
	struct srv_lockfd **tab; /* hash chains, allocated at the first lock */
	uint32_t n;		 /* descriptors held */
	uint32_t max;		 /* ... at most */
	int closed;		 /* released: the session is ending */
	struct srv_lockbudget *budget; /* shared; constant; NULL: none */
};

void srv_lockbudget_init(struct srv_lockbudget *b, uint32_t max);
/* Descriptors held by all the tables of @b now. */
uint32_t srv_lockbudget_used(struct srv_lockbudget *b);

/* A session's table of at most @max descriptors, each also counted in
 * @budget (borrowed: it must outlive the table; NULL for no bound). */
void srv_locks_init(struct srv_locks *l, uint32_t max,
		    struct srv_lockbudget *budget);
/* Release every lock (close every descriptor) and refuse later requests
 * with -DAFS_EBADSESSION: the session is ending. Idempotent. */
void srv_locks_release(struct srv_locks *l);
/* srv_locks_release(), then free the table. */
void srv_locks_fini(struct srv_locks *l);

/*
 * LOCK @q through the open file @fd, opened with the wire flags @oflags
 * (DAFS_O_*). Returns 0, -DAFS_EDENIED for a conflict, -EBADF, -EINVAL,
 * -EOVERFLOW, -ENOLCK (the session's or the server's descriptors for
 * locks are all taken, or the process is out of descriptors),
 * -DAFS_EBADSESSION, or another negative errno.
 */
int srv_locks_set(struct srv_locks *l, int fd, uint32_t oflags,
		  const struct dafs_m_lock_req *q);
/* LOCKT @q through @fd: a conflicting lock in *@out (type
 * DAFS_LOCK_UNLOCK if none). Returns 0, -EINVAL, -EOVERFLOW or another
 * negative errno. */
int srv_locks_test(struct srv_locks *l, int fd, uint32_t oflags,
		   const struct dafs_m_lock_req *q,
		   struct dafs_m_lockt_rep *out);
/* Descriptors held now (for tests and logs). */
uint32_t srv_locks_count(struct srv_locks *l);

#endif /* DAFS_SERVER_LOCKS_I_H */
