/*
 * fdcache_i.h - descriptors of resolved file handles, kept for the next
 * request on the same handle.
 *
 * Resolving a handle is an open_by_handle_at() (or a walk of the handle
 * table) and a close() per request: 1.8 us of the 2.1 us a getattr costs
 * the server here, where a statx() on a kept descriptor costs 0.3. The
 * cache maps handle bytes to an O_PATH descriptor that requests borrow:
 * fdc_get() finds one (the caller then checks it, see backend.c), fdc_add()
 * gives the cache a descriptor just resolved and borrows it back,
 * fdc_put() ends a borrow. An entry leaves the table when the cache is
 * over @max entries (least recently used first), when it has not been
 * used for @max_age_ms (looked at on every get and add, and by
 * fdc_sweep() from a timer), or by fdc_drop(); its descriptor is closed
 * when the last borrower puts it, never under the cache's mutex.
 *
 * A kept descriptor keeps its inode: a removed file's space is not freed
 * while the cache holds it, up to @max_age_ms after its last use plus the
 * timer's period. Keys
 * are compared byte for byte; the caller authenticates them first.
 * Thread-safe: one mutex, held for table work only, never over a system
 * call.
 */
#ifndef DAFS_SERVER_FDCACHE_I_H
#define DAFS_SERVER_FDCACHE_I_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct fdc_entry;

struct fdcache {
	pthread_mutex_t lock; /* everything below */
	struct fdc_entry **buckets;
	size_t nbuckets; /* a power of two, at least 2 * max */
	size_t count;	 /* entries in the table */
	size_t max;
	uint64_t max_age_ms;
	struct fdc_entry *lru_head, *lru_tail; /* most recent first */
	uint64_t hits, misses, evictions;
};

/* A cache of at most @max descriptors (0: the cache is off: every get
 * misses, every add hands the descriptor back unkept). Returns 0 or
 * -ENOMEM. */
int fdc_init(struct fdcache *c, size_t max, unsigned max_age_ms);
/* Close every descriptor; nothing may be borrowed any more. */
void fdc_fini(struct fdcache *c);

/* The descriptor kept for @key, borrowed (*@e for fdc_put), or -ENOENT. */
int fdc_get(struct fdcache *c, const void *key, size_t klen,
	    struct fdc_entry **e);
/*
 * Keep @fd for @key and borrow it back: returns @fd, or the descriptor
 * another thread kept for @key meanwhile (then @fd is closed). With the
 * cache off or no memory, *@e is NULL and @fd stays the caller's: it
 * closes it itself (fdc_put(c, NULL, fd) does).
 */
int fdc_add(struct fdcache *c, const void *key, size_t klen, int fd,
	    struct fdc_entry **e);
/* End a borrow of @e; with @e NULL, close @fd instead. */
void fdc_put(struct fdcache *c, struct fdc_entry *e, int fd);
/* Take @e (borrowed by the caller) out of the table: the object it
 * names is gone. The caller still puts it. */
void fdc_drop(struct fdcache *c, struct fdc_entry *e);
/* Close every descriptor not borrowed now (a process out of descriptors
 * makes room). */
void fdc_flush(struct fdcache *c);
/* Close the entries unused for longer than max_age_ms (a timer calls it,
 * so that an idle server does not keep removed files for long). */
void fdc_sweep(struct fdcache *c);

/* Entries in the table (tests). */
size_t fdc_count(struct fdcache *c);

#endif /* DAFS_SERVER_FDCACHE_I_H */
