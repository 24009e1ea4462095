/*
 * regcache.h - the pin-down registration cache (docs/regcache.md).
 *
 * Registering memory is expensive on an RDMA NIC (pin the pages, program
 * the translation table), so registrations are kept after use: an LRU list
 * of unused ones plus an interval tree of all cached ones, deregistered
 * lazily when the cache is over its entry or byte limit. A lookup hits a
 * cached registration that contains the buffer; registrations are rounded
 * out to whole pages, so neighbouring buffers share one.
 *
 * The application may free or unmap a cached buffer at any time. A
 * userfaultfd monitor (UFFD_EVENT_UNMAP, _REMOVE, _REMAP on the cached
 * ranges) invalidates the registrations of memory that went away, before
 * any later lookup can hit them. Where userfaultfd is unavailable, or a
 * range cannot be watched (file mappings, memory another userfaultfd
 * watches), the cache registers for each use and deregisters after it, and
 * says so in its statistics.
 *
 * Threads: every function may be called from any thread; one mutex guards
 * the cache. An entry returned by dafs_regcache_get() stays registered
 * (never evicted, never deregistered) until its dafs_regcache_put().
 * Never call into the cache from a handler of the memory it watches.
 */
#ifndef DAFS_CACHE_REGCACHE_H
#define DAFS_CACHE_REGCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/transport_i.h"

struct dafs_regcache;

/* What dafs_regcache_get() returns. Only mr is for the caller. */
struct dafs_rc_entry {
	/* The registration: contains the buffer asked for, usually rounded
	 * out to pages (mr->addr, mr->len are the whole region). Valid
	 * until dafs_regcache_put(). */
	struct dafs_mr *mr;
};

/* dafs_regcache_cfg.flags */
#define DAFS_RC_NO_UFFD 0x1 /* do not use userfaultfd (tests, fallback) */
#define DAFS_RC_STRICT 0x2  /* the transport pins pages: see below */

struct dafs_regcache_cfg {
	uint64_t max_entries; /* 0 or max_bytes 0: cache disabled */
	uint64_t max_bytes;
	/*
	 * DAFS_RC_STRICT: every lookup first reads the events the kernel
	 * holds for the monitor (a poll(2) call), so that memory unmapped
	 * by one thread while another maps new memory at the same address
	 * can never hit the old registration, not even before munmap
	 * returns. Needed where a registration pins physical pages (verbs).
	 * Without it, only events the monitor already read are applied
	 * before a lookup - all of them once munmap/madvise/mremap returned
	 * - which is enough where a registration is a (key, address, length)
	 * record and data moves from the virtual address (TCP).
	 */
	unsigned flags;
};

enum dafs_rc_mode {
	DAFS_RC_ON = 1,	    /* caching, userfaultfd watching */
	DAFS_RC_OFF,	    /* disabled by its limits (0) */
	DAFS_RC_NO_MONITOR, /* userfaultfd unavailable: register per use */
};

struct dafs_regcache_stats {
	uint64_t hits, misses;	 /* misses: lookups that registered */
	uint64_t evictions;	 /* deregistered for the limits */
	uint64_t invalidations;	 /* dropped: the memory was unmapped,
				  * madvised away or moved */
	uint64_t uncached;	 /* registered around the cache (mode not
				  * ON, or memory it cannot watch) */
	uint64_t entries, bytes; /* held now (in use or not) */
	uint64_t max_entries, max_bytes;
	int mode;	 /* enum dafs_rc_mode */
	int monitor_err; /* why NO_MONITOR: a negative errno */
};

/*
 * A cache registering through @tp in @dom (both borrowed; they must outlive
 * the cache). Falls back to NO_MONITOR rather than fail when userfaultfd is
 * unavailable. Returns 0 or -ENOMEM, -EAGAIN (no thread).
 */
int dafs_regcache_new(const struct dafs_tp_ops *tp, struct dafs_domain *dom,
		      const struct dafs_regcache_cfg *cfg,
		      struct dafs_regcache **out);
/* Deregister everything and free @c; every entry must have been put. */
void dafs_regcache_free(struct dafs_regcache *c);

/*
 * A registration containing [@addr, @addr + @len) with at least @access
 * (DAFS_ACC_* bits), cached or new. Returns 0 and *@e, or the error of
 * the transport's reg_mr (after dropping every unused registration and
 * trying again, for -ENOMEM and -EAGAIN), or -EINVAL for an empty or
 * wrapping range.
 */
int dafs_regcache_get(struct dafs_regcache *c, void *addr, size_t len,
		      unsigned access, struct dafs_rc_entry **e);
/* Done with @e: it stays cached until evicted or invalidated. */
void dafs_regcache_put(struct dafs_rc_entry *e);

/* New limits (0: disable); unused entries over them are deregistered. */
void dafs_regcache_set_limits(struct dafs_regcache *c, uint64_t max_entries,
			      uint64_t max_bytes);
/* Deregister every unused entry. */
void dafs_regcache_flush(struct dafs_regcache *c);
void dafs_regcache_stats(struct dafs_regcache *c,
			 struct dafs_regcache_stats *st);

/* Test hook: while @on, the monitor thread reads no events (so munmap
 * callers stay blocked until a lookup reads them, or until off). */
void dafs_regcache__pause_monitor(struct dafs_regcache *c, int on);

#endif /* DAFS_CACHE_REGCACHE_H */
