/*
 * dafs.h - the DAFS client API (libdafs).
 *
 * A session connects one client to one export of a dafsd server. Calls are
 * synchronous unless named *_async; asynchronous calls deliver their result
 * to a completion group that the caller polls or waits on. Many threads may
 * share one session.
 *
 * Errors: every fallible function returns 0 (or a non-negative count) on
 * success and a negative value on failure: either -errno (as the server's
 * file system reported it, or a local failure) or one of the DAFS_E* codes
 * below, which lie in a band far below the errno range. dafs_strerror()
 * names both kinds.
 *
 * Lifetimes: pointers passed in are borrowed for the duration of the call
 * unless a function says otherwise (asynchronous I/O buffers must stay valid
 * until the completion is delivered). Structures returned through out
 * parameters are owned by the caller.
 */
#ifndef DAFS_DAFS_H
#define DAFS_DAFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DAFS_VERSION_MAJOR 0
#define DAFS_VERSION_MINOR 1

/** @name Project error codes (returned negated, e.g. -DAFS_EPROTO). */
/**@{*/
#define DAFS_EBASE 30000
/** A message failed to decode or broke the protocol; the session is closed. */
#define DAFS_EPROTO (DAFS_EBASE + 1)
/** The session is broken (connection lost and not recovered); sticky. */
#define DAFS_EBROKEN (DAFS_EBASE + 2)
/** The server no longer knows this session (expired or destroyed). */
#define DAFS_EBADSESSION (DAFS_EBASE + 3)
/** A file handle is not valid for this export (forged or from elsewhere). */
#define DAFS_EBADHANDLE (DAFS_EBASE + 4)
/** A request reused a slot with a sequence number out of order. */
#define DAFS_ESEQ (DAFS_EBASE + 5)
/** The export named in the URL does not exist on the server. */
#define DAFS_ENOEXPORT (DAFS_EBASE + 6)
/** A URL could not be parsed. */
#define DAFS_EURL (DAFS_EBASE + 7)
/** An open-file identifier is not (or no longer) known to the server. */
#define DAFS_EBADOPEN (DAFS_EBASE + 8)
/** A credential identifier is not registered in this session. */
#define DAFS_EBADCRED (DAFS_EBASE + 9)
/** A remote memory key or range was refused by the transport. */
#define DAFS_EBADKEY (DAFS_EBASE + 10)
/** The server is busy with this slot; the request may be retried. */
#define DAFS_EDELAY (DAFS_EBASE + 11)
/** The peer speaks an incompatible protocol version. */
#define DAFS_EVERSION (DAFS_EBASE + 12)
/** Unknown delegation id (never granted, or already returned). */
#define DAFS_EBADDELEG (DAFS_EBASE + 13)
/** The delegation was revoked: it was not returned within a lease of its
 * recall, and what was cached under it is no longer valid. */
#define DAFS_EREVOKED (DAFS_EBASE + 14)
/** A lock was refused: another owner holds a conflicting one (what
 * fcntl(F_SETLK) reports as EAGAIN and flock(LOCK_NB) as EWOULDBLOCK). */
#define DAFS_EDENIED (DAFS_EBASE + 15)
/** Highest project code; codes lie in (DAFS_EBASE, DAFS_ELAST]. */
#define DAFS_ELAST (DAFS_EBASE + 15)
/**@}*/

/** Largest opaque file handle. */
#define DAFS_FH_MAX 64
/** Largest name of one directory entry (as NAME_MAX). */
#define DAFS_NAME_MAX 255
/** Largest symlink target or path (as PATH_MAX - 1). */
#define DAFS_PATH_MAX 4095

typedef struct dafs_session dafs_session_t;
typedef struct dafs_file dafs_file_t;
typedef struct dafs_mem dafs_mem_t;
typedef struct dafs_cg dafs_cg_t;

/** An opaque file handle; valid across server restarts. */
typedef struct dafs_fh {
	uint16_t len;
	uint8_t data[DAFS_FH_MAX];
} dafs_fh_t;

typedef struct dafs_time {
	int64_t sec;
	uint32_t nsec;
} dafs_time_t;

/** File attributes, as stat(2) reports them, plus a change attribute. */
typedef struct dafs_attr {
	uint64_t ino;
	uint64_t size;
	uint64_t blocks; /**< 512-byte blocks allocated */
	uint64_t change; /**< changes whenever data or metadata change */
	uint64_t rdev;
	uint32_t mode; /**< type and permission bits, as st_mode */
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
	uint32_t blksize;
	dafs_time_t atime, mtime, ctime;
} dafs_attr_t;

/** @name dafs_setattr_t.mask bits */
/**@{*/
#define DAFS_SET_MODE 0x01u
#define DAFS_SET_UID 0x02u
#define DAFS_SET_GID 0x04u
#define DAFS_SET_SIZE 0x08u
#define DAFS_SET_ATIME 0x10u     /**< set atime to .atime */
#define DAFS_SET_MTIME 0x20u     /**< set mtime to .mtime */
#define DAFS_SET_ATIME_NOW 0x40u /**< set atime to the server's now */
#define DAFS_SET_MTIME_NOW 0x80u /**< set mtime to the server's now */
/**@}*/

typedef struct dafs_setattr {
	uint32_t mask;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	dafs_time_t atime, mtime;
} dafs_setattr_t;

typedef struct dafs_statfs {
	uint64_t blocks, bfree, bavail; /**< in units of frsize */
	uint64_t files, ffree;
	uint32_t bsize, frsize, namemax;
} dafs_statfs_t;

/** Write methods negotiated at session setup. */
enum dafs_write_method {
	DAFS_WRITE_GATHER = 1,    /**< data sent with the request */
	DAFS_WRITE_RDMA_READ = 2, /**< server pulls data from client memory */
};

/** Session options; zero fields take the defaults. */
typedef struct dafs_session_opts {
	uint32_t credits;      /**< outstanding requests (default 16) */
	uint32_t max_request;  /**< bytes (default 1 MiB + 4 KiB) */
	uint32_t max_response; /**< bytes (default 128 KiB) */
	uint32_t inline_max;   /**< largest inline read/write (default 4 KiB) */
	uint32_t write_method; /**< enum dafs_write_method (default GATHER) */
	uint32_t lease_ms;     /**< requested lease (default 30000) */
	uint32_t timeout_ms;   /**< per-request timeout (default 30000) */
} dafs_session_opts_t;

/** State of a session's pin-down registration cache
 * (dafs_session_info_t.regcache_mode). */
enum dafs_regcache_mode {
	/** Caching; unmapped or freed memory is noticed (userfaultfd). */
	DAFS_REGCACHE_ON = 1,
	/** Disabled: a capacity is 0. Every registration is made for its
	 * use and dropped after it. */
	DAFS_REGCACHE_OFF = 2,
	/** userfaultfd is unavailable (kernel, seccomp, permissions), so
	 * freed memory could not be noticed: every registration is made
	 * for its use and dropped after it. */
	DAFS_REGCACHE_NO_MONITOR = 3,
};

/** What was negotiated, and the registration cache's state; see
 * dafs_session_query(). */
typedef struct dafs_session_info {
	uint8_t session_id[16];
	char transport[16]; /**< "tcp" or "rdma" */
	uint32_t credits;
	uint32_t cb_credits;
	uint32_t max_request;
	uint32_t max_response;
	uint32_t inline_max;
	uint32_t write_method;
	uint32_t lease_ms;
	uint32_t max_io; /**< largest single read or write */
	/**
	 * @name Pin-down registration cache
	 * dafs_mem_register() and I/O on unregistered buffers larger than
	 * inline_max register memory through a per-session cache, which
	 * keeps registrations after dafs_mem_deregister() (rounded out to
	 * whole pages, so neighbouring buffers share one) until it is over
	 * a capacity, and drops those of memory the application frees,
	 * unmaps, madvises away or moves. Capacity: the environment at
	 * session open (DAFS_REGCACHE_ENTRIES, DAFS_REGCACHE_BYTES, with an
	 * optional K, M or G; default 1024 and 256M; 0 disables) or
	 * dafs_session_set_regcache(). Counters count since session open.
	 */
	/**@{*/
	uint64_t regcache_max_entries; /**< capacity in registrations */
	uint64_t regcache_max_bytes;   /**< capacity in registered bytes */
	uint64_t regcache_entries;     /**< registrations cached now */
	uint64_t regcache_bytes;       /**< bytes they cover */
	uint64_t regcache_hits;        /**< registrations found cached */
	uint64_t regcache_misses;      /**< registrations made and cached */
	/** cached registrations dropped to stay within capacity */
	uint64_t regcache_evictions;
	/** cached registrations dropped because their memory was unmapped,
	 * freed to the system, madvised away or moved */
	uint64_t regcache_invalidations;
	/** registrations made for one use only: the cache is not
	 * DAFS_REGCACHE_ON, or it cannot watch that memory (a file mapping,
	 * memory another userfaultfd watches) */
	uint64_t regcache_uncached;
	uint32_t regcache_mode; /**< enum dafs_regcache_mode */
	/** why DAFS_REGCACHE_NO_MONITOR: a negative errno, else 0 */
	int32_t regcache_monitor_err;
	/**@}*/
	/** The session's descriptor set: send buffers registered once at
	 * session open, one per request in flight (the credits). Requests
	 * beyond it wait for a buffer, never for a registration; an
	 * application keeps its queue depth at or below this. */
	uint32_t desc_set_size;
} dafs_session_info_t;

/**
 * Open a session to the export named by @p url, "tcp://HOST:PORT/EXPORT".
 * A path after the export is ignored here (see dafs_url_parse()).
 *
 * @param[in] url   the server and export
 * @param[in] opts  options, or NULL for the defaults
 * @param[out] out  the session, owned by the caller (dafs_session_close())
 * @return 0; -DAFS_EURL for a bad URL; -ECONNREFUSED, -EHOSTUNREACH and other
 *         connect errors; -DAFS_ENOEXPORT; -DAFS_EVERSION; -DAFS_EPROTO;
 *         -ETIMEDOUT; -ENOMEM.
 */
int dafs_session_open(const char *url, const dafs_session_opts_t *opts,
		      dafs_session_t **out);

/**
 * Close a session: held writes are sent, outstanding requests are given up
 * to the session's timeout to be answered, and the session is destroyed on
 * the server (which closes its open files). Asynchronous I/O still
 * outstanding then completes with -ECANCELED (-DAFS_EBROKEN on a broken
 * session) in its completion group; after this call, dafs_cg_free() is the
 * only call allowed on the session's groups. @p s is freed.
 */
void dafs_session_close(dafs_session_t *s);

/** Fill @p info with the negotiated parameters and the registration
 * cache's state. Returns 0. */
int dafs_session_query(dafs_session_t *s, dafs_session_info_t *info);

/**
 * Set the capacity of the session's pin-down registration cache (see
 * dafs_session_info_t); cached registrations not in use beyond it are
 * dropped at once. Registrations in use are never dropped, so the cache
 * may stay over capacity until they are deregistered.
 *
 * @param[in] max_entries  registrations kept; 0 disables the cache
 * @param[in] max_bytes    registered bytes kept; 0 disables the cache
 * @return 0; -EINVAL if @p s is NULL.
 */
int dafs_session_set_regcache(dafs_session_t *s, uint64_t max_entries,
			      uint64_t max_bytes);

/** The export's root handle. Returns 0. */
int dafs_root(dafs_session_t *s, dafs_fh_t *root);

/**
 * Register credentials with the session and use them for this thread's
 * later calls on @p s (until the next dafs_cred_use()). The process's own
 * credentials are registered at session open and are the default.
 *
 * @param[out] id  the credential id, for dafs_cred_use()
 * @return 0; -EINVAL if @p ngroups exceeds 32; -DAFS_EBROKEN.
 */
int dafs_cred_register(dafs_session_t *s, uint32_t uid, uint32_t gid,
		       uint32_t ngroups, const uint32_t *groups, uint32_t *id);

/** Make @p id (from dafs_cred_register(), or 0 for the default) this
 * thread's credentials on @p s; a thread's choice on one session does not
 * change what it uses on another. Returns 0; -EINVAL if @p s is NULL;
 * -ENOMEM (the thread's table of choices could not grow). */
int dafs_cred_use(dafs_session_t *s, uint32_t id);

/**
 * Ask the server to call this client back over the callback channel and
 * report the round trip. Proves the callback channel works.
 * @return 0; -ETIMEDOUT; -DAFS_EBROKEN.
 */
int dafs_callback_probe(dafs_session_t *s);

/** @name Metadata operations
 * Each returns 0 or a negative error: the file system's errno (-ENOENT,
 * -EEXIST, -EACCES, -ENOTDIR, -EISDIR, -ENOTEMPTY, -EXDEV, -ELOOP ...), or
 * -DAFS_EBADHANDLE, -ESTALE, -DAFS_EBROKEN, -ETIMEDOUT. Attribute out
 * parameters may be NULL.
 */
/**@{*/
int dafs_lookup(dafs_session_t *s, const dafs_fh_t *dir, const char *name,
		dafs_fh_t *fh, dafs_attr_t *attr);
int dafs_getattr(dafs_session_t *s, const dafs_fh_t *fh, dafs_attr_t *attr);
/**
 * Whether this thread's credentials may read (4, R_OK), write (2, W_OK)
 * or execute/search (1, X_OK) the object, as the server's kernel decides
 * (mode bits, POSIX ACLs, a read-only export); 0 asks only whether it
 * exists. Nothing is opened; a symbolic link's handle is checked as the
 * link, not followed. Returns 0; -EACCES, -EROFS, -EPERM (an immutable
 * file); -EINVAL for other mask bits; -DAFS_EBADCRED.
 */
int dafs_access(dafs_session_t *s, const dafs_fh_t *fh, uint32_t mask);
int dafs_setattr(dafs_session_t *s, const dafs_fh_t *fh,
		 const dafs_setattr_t *sa, dafs_attr_t *attr);
int dafs_mkdir(dafs_session_t *s, const dafs_fh_t *dir, const char *name,
	       uint32_t mode, dafs_fh_t *fh, dafs_attr_t *attr);
/** @p mode carries the type: S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK. */
int dafs_mknod(dafs_session_t *s, const dafs_fh_t *dir, const char *name,
	       uint32_t mode, uint64_t rdev, dafs_fh_t *fh, dafs_attr_t *attr);
int dafs_symlink(dafs_session_t *s, const dafs_fh_t *dir, const char *name,
		 const char *target, dafs_fh_t *fh, dafs_attr_t *attr);
/** Returns the target's length (not NUL-counted) and NUL-terminates it in
 * @p buf; -ERANGE when @p size is too small. */
int dafs_readlink(dafs_session_t *s, const dafs_fh_t *fh, char *buf,
		  size_t size);
int dafs_link(dafs_session_t *s, const dafs_fh_t *fh, const dafs_fh_t *dir,
	      const char *name, dafs_attr_t *attr);
int dafs_remove(dafs_session_t *s, const dafs_fh_t *dir, const char *name);
int dafs_rmdir(dafs_session_t *s, const dafs_fh_t *dir, const char *name);

/** @name dafs_rename() flags */
#define DAFS_RENAME_NOREPLACE 1u
#define DAFS_RENAME_EXCHANGE 2u
int dafs_rename(dafs_session_t *s, const dafs_fh_t *sdir, const char *sname,
		const dafs_fh_t *ddir, const char *dname, uint32_t flags);
int dafs_statfs(dafs_session_t *s, const dafs_fh_t *fh, dafs_statfs_t *st);
/**@}*/

/** One directory entry, borrowed for the duration of the callback. */
typedef struct dafs_dirent {
	const char *name;
	uint64_t cookie; /**< resume position after this entry */
	uint64_t ino;
	uint32_t type; /**< S_IFMT bits of the mode */
	const dafs_fh_t *fh;     /**< NULL unless attributes were asked for */
	const dafs_attr_t *attr; /**< NULL unless attributes were asked for */
} dafs_dirent_t;

/** Return non-zero from the callback to stop early; the cookie of the last
 * accepted entry resumes. */
typedef int (*dafs_dirent_cb)(void *arg, const dafs_dirent_t *ent);

/**
 * Read directory entries from position @p *cookie (0 = start), one round
 * trip at most; "." and ".." are not returned.
 *
 * @param[in,out] cookie  where to start; on return, where to resume
 * @param[in] plus        non-zero to receive handles and attributes
 * @param[out] eof        set to 1 when the directory end was reached
 * @return the number of entries delivered, or a negative error.
 */
int dafs_readdir(dafs_session_t *s, const dafs_fh_t *dir, uint64_t *cookie,
		 int plus, dafs_dirent_cb cb, void *arg, int *eof);

/** @name Files, open and close
 * @p flags are O_RDONLY, O_WRONLY, O_RDWR with O_APPEND, O_TRUNC, O_SYNC,
 * O_DSYNC, O_DIRECT; for dafs_create also O_EXCL.
 */
/**@{*/
int dafs_open(dafs_session_t *s, const dafs_fh_t *fh, int flags,
	      dafs_file_t **f);
/** Create (or with O_EXCL exclusively create) and open @p name in @p dir. */
int dafs_create(dafs_session_t *s, const dafs_fh_t *dir, const char *name,
		int flags, uint32_t mode, dafs_file_t **f, dafs_fh_t *fh,
		dafs_attr_t *attr);
/** Close and free @p f; returns the server's close status. A delegation
 * granted with the open outlives it (see dafs_deleg_return()). */
int dafs_close(dafs_file_t *f);
/** The handle of an open file (borrowed, lives as long as @p f). */
const dafs_fh_t *dafs_file_fh(const dafs_file_t *f);
/**@}*/

/** @name Open delegations
 *
 * Add DAFS_OPEN_DELEG_READ or DAFS_OPEN_DELEG_WRITE to the flags of
 * dafs_open() or dafs_create() to ask for a delegation. The server grants
 * a read delegation when no other session has the file open for writing,
 * a write delegation when no other session has it open at all, and
 * neither when its policy says no; a write request may get a read
 * delegation. While the delegation is held, no other session changes the
 * file (read) or touches it (write) without first recalling it: the
 * session may cache the file's data and attributes.
 *
 * A recall arrives on the callback channel. With a handler set
 * (dafs_set_recall_handler()), the library calls it on its callback
 * thread; the application writes back what it holds and calls
 * dafs_deleg_return(). Without a handler the library returns the
 * delegation itself. Not returned within the server's lease, the
 * delegation is revoked: I/O on the session's open files of that file
 * then fails with -DAFS_EREVOKED, as does the late dafs_deleg_return().
 */
/**@{*/
#define DAFS_OPEN_DELEG_READ 0x20000000  /**< open flag: want a read deleg */
#define DAFS_OPEN_DELEG_WRITE 0x40000000 /**< open flag: want a write deleg */

/** Delegation types. */
enum dafs_deleg_type {
	DAFS_DELEG_NONE = 0,
	DAFS_DELEG_READ = 1,
	DAFS_DELEG_WRITE = 2,
};

/** The delegation granted with @p f's open (DAFS_DELEG_*), its id in
 * @p *id (may be NULL). */
int dafs_file_deleg(const dafs_file_t *f, uint64_t *id);

/** Give delegation @p id back. Returns 0, -DAFS_EBADDELEG (unknown, or
 * returned already), -DAFS_EREVOKED (it was revoked), or a call error. */
int dafs_deleg_return(dafs_session_t *s, uint64_t id);

/**
 * Called on the library's callback thread when the server recalls
 * delegation @p id of type @p type on the file @p fh (@p fh->len is 0 if
 * the server no longer had a handle for it). It may call
 * dafs_deleg_return() itself, or hand the work to another thread; further
 * callbacks of the session wait while it runs.
 */
typedef void (*dafs_recall_fn)(void *arg, const dafs_fh_t *fh, uint64_t id,
			       int type);
/** Set (or with NULL, clear) the recall handler of @p s. Returns 0. */
int dafs_set_recall_handler(dafs_session_t *s, dafs_recall_fn fn, void *arg);

/** Delegation counters of a session, since it was opened. */
typedef struct dafs_deleg_stats {
	uint64_t granted_read;  /**< read delegations granted */
	uint64_t granted_write; /**< write delegations granted */
	uint64_t recalls;       /**< CB_RECALLs received */
	uint64_t returns;       /**< delegations returned (accepted) */
	uint64_t revoked;       /**< returns refused as revoked */
	uint64_t recall_ns_total; /**< recall received to return answered */
	uint64_t recall_ns_max;
} dafs_deleg_stats_t;

/** Read @p s's delegation counters. Returns 0. */
int dafs_deleg_stats(dafs_session_t *s, dafs_deleg_stats_t *st);

/**
 * The requests @p s has sent of its @p i-th operation (counting from 0 over
 * the protocol's client-to-server operations, docs/protocol.md), and that
 * operation's name ("LOOKUP", "OPEN", "READ" ...), since the session was
 * opened: what a cache or a delegation saves shows here. Call with @p i =
 * 0, 1, ... until -ENOENT. A request sent again after a reconnection counts
 * once; a batch is one BATCH. The session's own set-up (CREATE_SESSION,
 * BIND_CONN) and the NULLs of a reconnection are not counted.
 * @return 0; -ENOENT past the last operation.
 */
int dafs_op_count(dafs_session_t *s, unsigned i, const char **name,
		  uint64_t *count);
/**@}*/

/** @name Data cache
 *
 * With a cache set up, files opened with DAFS_OPEN_CACHED keep what is
 * read of them in blocks of 64 KiB, at most @p bytes over all files, the
 * least recently used going first. Add DAFS_OPEN_DELEG_READ (or _WRITE)
 * to hold the file under a delegation: while the session holds one, no
 * other client changes the file, and a recall drops the file's blocks.
 * Without one the cache is close-to-open consistent, as NFS: each open
 * compares the server's change attribute with the one the blocks were
 * read under and drops them if it moved. Writes through the session drop
 * the blocks they touch. Synchronous dafs_read() uses the cache;
 * asynchronous and batch reads go to the server.
 *
 * With @p dir, the blocks live in an LMDB environment in that directory
 * (created if missing) and are used again by a later process, after the
 * same change-attribute check.
 */
/**@{*/
#define DAFS_OPEN_CACHED 0x10000000 /**< open flag: use the data cache */
/**
 * Open flag, with DAFS_OPEN_CACHED and a write delegation: write-back.
 * While the session holds the file's write delegation, dafs_write() of
 * less than max_io bytes that continues or overwrites the file's held
 * extent (one per open file, up to max_io, at most 1 MiB) is copied and
 * answered at once; the extent goes to the server before any other write,
 * on dafs_commit() and dafs_close() (which return a failed write-back's
 * error, as do later writes), before reads, getattr, setattr, fallocate,
 * lseek, copies, locks, asynchronous and batch I/O of the file, before
 * lookups with attributes, readdir plus and creates while anything is
 * held, on a recall (before the recall handler runs) and on
 * dafs_deleg_return() (nothing is held under the delegation after
 * either), and when the session's held bytes would pass a quarter of the
 * cache's size (the files written least recently first). Ignored for
 * O_APPEND, O_SYNC, O_DSYNC and O_DIRECT opens, and without a cache.
 */
#define DAFS_OPEN_WRITEBACK 0x08000000

/**
 * Set up the data cache of @p s: at most @p bytes, in @p dir (or in
 * memory if NULL). Once per session, before files are opened cached.
 * @return 0; -EBUSY if already set up; -EINVAL for 0 bytes; -ENOMEM; a
 *         negative errno for @p dir (-EIO for a damaged LMDB environment).
 */
int dafs_cache_setup(dafs_session_t *s, uint64_t bytes, const char *dir);

/** Data cache counters and sizes. */
typedef struct dafs_cache_stats {
	uint64_t hits, misses;	/**< 64 KiB blocks */
	uint64_t hit_bytes;	/**< bytes served from the cache */
	uint64_t evictions;	/**< blocks dropped for room */
	uint64_t invalidations; /**< files dropped (changed, recalled, truncated) */
	uint64_t blocks, bytes; /**< held now */
	uint64_t limit;
	int persistent; /**< 1 if in LMDB */
	/* write-back (DAFS_OPEN_WRITEBACK) */
	uint64_t wb_held;    /**< writes held */
	uint64_t wb_bytes;   /**< bytes written back */
	uint64_t wb_flushes; /**< extents sent */
	uint64_t wb_errors;  /**< extents the server refused */
	uint64_t wb_dirty;   /**< bytes held now */
} dafs_cache_stats_t;

/** Read the data cache counters; -ENOENT if there is no cache. */
int dafs_cache_stats(dafs_session_t *s, dafs_cache_stats_t *st);
/**@}*/

/** @name Registered memory
 * Registering a buffer lets the server place read data straight into it
 * and fetch write data straight from it. Unregistered buffers work too.
 */
/**@{*/
/**
 * Register [@p buf, @p buf + @p len), through the session's registration
 * cache: a buffer registered before (or inside a registration still
 * cached) costs no new registration. The buffer may be freed or unmapped
 * after dafs_mem_deregister() as usual.
 *
 * @param[out] m  the registration, owned by the caller
 * @return 0; -EINVAL for a NULL or empty buffer; -ENOMEM.
 */
int dafs_mem_register(dafs_session_t *s, void *buf, size_t len,
		      dafs_mem_t **m);
/** Deregister and free @p m (the registration may stay cached). Returns 0,
 * or -EBUSY while I/O uses it. */
int dafs_mem_deregister(dafs_mem_t *m);
/**@}*/

/** @name Synchronous I/O
 * @p mem may be NULL or a registration containing [buf, buf + len).
 *
 * When a call gives up (-ETIMEDOUT), @p buf may be reused at once: a
 * direct transfer (above inline_max) that names @p buf to the server by
 * key returns only after the connection it went on is gone, which costs a
 * reconnection (up to another timeout; a server still silent then breaks
 * the session). What the server did with a write given up on is unknown,
 * as with any timeout.
 * @return bytes transferred (short at end of file), or a negative error:
 *         -EBADF (wrong open mode), -EINVAL, -DAFS_EBADOPEN, -EIO,
 *         -ETIMEDOUT, -DAFS_EBROKEN ...
 */
/**@{*/
ssize_t dafs_read(dafs_file_t *f, void *buf, size_t len, uint64_t off,
		  dafs_mem_t *mem);
ssize_t dafs_write(dafs_file_t *f, const void *buf, size_t len, uint64_t off,
		   dafs_mem_t *mem);
/** Flush to stable storage (fdatasync if @p datasync). */
int dafs_commit(dafs_file_t *f, int datasync);
/** fallocate(2) on the server; @p mode as fallocate's. */
int dafs_fallocate(dafs_file_t *f, int mode, uint64_t off, uint64_t len);
/** lseek(2) with SEEK_DATA or SEEK_HOLE on the server's file: the
 * offset of the next data or hole at or after @p off; -ENXIO at or past
 * the end of the file; -EINVAL for another @p whence. */
int64_t dafs_lseek(dafs_file_t *f, uint64_t off, int whence);
/** copy_file_range(2) done by the server; returns bytes copied. */
ssize_t dafs_copy_range(dafs_file_t *src, uint64_t soff, dafs_file_t *dst,
			uint64_t doff, uint64_t len);
/**@}*/

/** @name Locks
 *
 * Advisory locks held by the server, coherent between every client of an
 * export and with the processes on the server itself: POSIX byte-range
 * locks (as fcntl(2) F_SETLK with F_RDLCK and F_WRLCK) and whole-file
 * locks (as flock(2)). A lock belongs to a lock owner, a number the
 * caller chooses: locks of one owner never conflict with each other, and
 * a POSIX owner's locks on a file merge and split as fcntl's do (one
 * process's locks, in POSIX terms). Owners are the session's own: the
 * same number in another session is another owner. A flock owner stands
 * for one open file description: its lock is converted by a second
 * request, and two owners conflict even within one process.
 *
 * A lock is taken through an open file of the session (POSIX: a read lock
 * needs a file opened for reading, a write lock one opened for writing),
 * and outlives the file's dafs_close(): locks end with an unlock, or with
 * the session (dafs_session_close(), or the server's lease after the
 * client is gone). An unlock of a whole file (start 0, len 0) gives the
 * server's resources for that owner and file back.
 *
 * Files opened DAFS_OPEN_CACHED drop their cached blocks when a lock is
 * granted, so reads after a lock see what other clients wrote before
 * their unlock.
 */
/**@{*/
/** dafs_lock_t.kind */
enum dafs_lock_kind {
	DAFS_LOCK_POSIX = 1, /**< a byte range, as fcntl(2) */
	DAFS_LOCK_FLOCK = 2, /**< the whole file, as flock(2) */
};

/** dafs_lock_t.type */
enum dafs_lock_type {
	DAFS_LOCK_UNLOCK = 0, /**< release (as F_UNLCK, LOCK_UN) */
	DAFS_LOCK_READ = 1,   /**< shared (as F_RDLCK, LOCK_SH) */
	DAFS_LOCK_WRITE = 2,  /**< exclusive (as F_WRLCK, LOCK_EX) */
};

/** A lock, or with dafs_lock_test() the conflicting one. */
typedef struct dafs_lock {
	uint32_t kind;	/**< enum dafs_lock_kind */
	uint32_t type;	/**< enum dafs_lock_type */
	uint64_t start; /**< first byte (POSIX; 0 for flock) */
	uint64_t len;	/**< bytes; 0: to the end of the file and beyond
			     (POSIX; 0 for flock) */
	uint64_t owner; /**< the lock owner, chosen by the caller */
} dafs_lock_t;

/**
 * Take, change or release @p lk through the open file @p f, without
 * waiting. An unlock of what the owner does not hold succeeds.
 *
 * @return 0; -DAFS_EDENIED if another owner holds a conflicting lock;
 *         -EBADF for a POSIX read lock on a file not opened for reading,
 *         or a write lock on one not opened for writing; -EINVAL for an
 *         unknown kind or type, a start or len above 2^63 - 1, a flock
 *         with a range, or a file that is not a regular file;
 *         -EOVERFLOW if start + len - 1 exceeds 2^63 - 1; -ENOLCK when
 *         the session holds locks of as many (owner, file) pairs as the
 *         server allows (dafsd --max-lock-fds), all sessions together
 *         hold as many as the server allows (half its descriptor
 *         limit), or the server is out of descriptors; -DAFS_EBADOPEN;
 *         -DAFS_EBROKEN; -ETIMEDOUT.
 */
int dafs_lock(dafs_file_t *f, const dafs_lock_t *lk);

/**
 * dafs_lock(), waiting for the server's answer at most @p timeout_ms
 * (and as long for a free request slot) rather than the session's
 * timeout: for a caller that must not be held up by a server that stopped
 * answering (dafs-fuse's waiter thread, which answers interrupts and
 * unmounts between tries).
 *
 * A request given up on may still be carried out by the server: its
 * late answer is dropped, and a lock it granted is held by the owner
 * until an unlock (a new dafs_lock() of the same lock by the same owner
 * then succeeds) or the end of the session.
 *
 * @param[in] timeout_ms  how long to wait; <= 0: the session's timeout
 * @return as dafs_lock(); -ETIMEDOUT when no answer came in time.
 */
int dafs_lock_timed(dafs_file_t *f, const dafs_lock_t *lk, int timeout_ms);

/**
 * Called between the attempts of dafs_lock_wait(); a non-zero return
 * stops the wait (a signal arrived, the request was interrupted).
 */
typedef int (*dafs_lock_stop_fn)(void *arg);

/**
 * dafs_lock(), waiting while another owner holds a conflicting lock: the
 * request is tried again after 1 ms, then after intervals that double up
 * to 100 ms (no handler thread of the server ever blocks on a lock), so a
 * released lock is taken within about 100 ms. There is no queue: a
 * waiter can be overtaken by a later request, and a deadlock between
 * owners is not detected (it ends with @p timeout_ms or @p stop).
 *
 * @param[in] timeout_ms  give up after this long (-1: never, 0: one try)
 * @param[in] stop        NULL, or asked between attempts whether to stop
 * @param[in] arg         for @p stop
 * @return as dafs_lock(); -DAFS_EDENIED once @p timeout_ms passed;
 *         -EINTR if @p stop said so.
 */
int dafs_lock_wait(dafs_file_t *f, const dafs_lock_t *lk, int timeout_ms,
		   dafs_lock_stop_fn stop, void *arg);

/**
 * Test for a POSIX lock as fcntl(F_GETLK): would @p lk (of type
 * DAFS_LOCK_READ or _WRITE) be granted to its owner now? Nothing is taken.
 *
 * @param[in,out] lk  the lock asked about; on return, a conflicting
 *                    lock of another owner (its type, start and len;
 *                    where several conflict, the one the server's kernel
 *                    finds first, as F_GETLK; the owner is not told and
 *                    is set to 0), or type DAFS_LOCK_UNLOCK with start
 *                    and len 0 if none
 * @return 0; -EINVAL for a flock kind, an UNLOCK type or a bad range;
 *         -EOVERFLOW; -DAFS_EBADOPEN; -DAFS_EBROKEN; -ETIMEDOUT.
 */
int dafs_lock_test(dafs_file_t *f, dafs_lock_t *lk);
/**@}*/

/** @name Extended attributes (as getxattr(2) and friends) */
/**@{*/
ssize_t dafs_getxattr(dafs_session_t *s, const dafs_fh_t *fh, const char *name,
		      void *buf, size_t size);
int dafs_setxattr(dafs_session_t *s, const dafs_fh_t *fh, const char *name,
		  const void *val, size_t size, int flags);
ssize_t dafs_listxattr(dafs_session_t *s, const dafs_fh_t *fh, char *buf,
		       size_t size);
int dafs_removexattr(dafs_session_t *s, const dafs_fh_t *fh, const char *name);
/**@}*/

/** @name Asynchronous I/O and completion groups */
/**@{*/
/** One finished asynchronous operation. */
typedef struct dafs_completion {
	void *ctx;      /**< what the submitter passed */
	int64_t result; /**< bytes transferred, or a negative error */
} dafs_completion_t;

int dafs_cg_new(dafs_session_t *s, dafs_cg_t **cg);
/** Free @p cg; returns -EBUSY while operations are outstanding on it. */
int dafs_cg_free(dafs_cg_t *cg);

/**
 * Submit a read or write; its completion is delivered to @p cg. When every
 * credit of the session is in use, waits for one (driving completions, so
 * it cannot wait on itself).
 * @return 0 when submitted; -ETIMEDOUT if no credit freed within the
 *         session's timeout; other errors as dafs_read().
 */
int dafs_read_async(dafs_file_t *f, void *buf, size_t len, uint64_t off,
		    dafs_mem_t *mem, dafs_cg_t *cg, void *ctx);
int dafs_write_async(dafs_file_t *f, const void *buf, size_t len, uint64_t off,
		     dafs_mem_t *mem, dafs_cg_t *cg, void *ctx);

/** Reap up to @p n completions without blocking; returns how many. */
int dafs_cg_poll(dafs_cg_t *cg, dafs_completion_t *out, int n);
/**
 * Wait up to @p timeout_ms (-1: forever) for at least one completion. When
 * the session breaks (its connection lost and not recovered), every
 * operation outstanding completes with -DAFS_EBROKEN, each element of a
 * batch on its own, so every context comes back exactly once.
 * @return completions reaped (>= 1), 0 on timeout, -ENOENT when nothing is
 *         outstanding on @p cg, or -DAFS_EBROKEN.
 */
int dafs_cg_wait(dafs_cg_t *cg, dafs_completion_t *out, int n,
		 int timeout_ms);

/** One element of a batch. */
typedef struct dafs_iodesc {
	dafs_file_t *file;
	int write; /**< 0: read into buf; 1: write from buf */
	void *buf;
	uint32_t len;
	uint64_t off;
	dafs_mem_t *mem; /**< optional registration containing buf */
	void *ctx;       /**< returned in this element's completion */
} dafs_iodesc_t;

/** Largest batch. */
#define DAFS_BATCH_MAX 64

/**
 * Submit @p n I/Os in one request; each completes on its own in @p cg, with
 * its own result.
 * @return 0 when submitted; -EINVAL for n of 0 or above DAFS_BATCH_MAX or
 *         for elements of different sessions.
 */
int dafs_batch_io(dafs_session_t *s, const dafs_iodesc_t *io, int n,
		  dafs_cg_t *cg);
/**@}*/

/** @name URLs */
/**@{*/
typedef struct dafs_url {
	char scheme[8];  /**< "tcp" or "rdma" */
	char host[256];  /**< without brackets for IPv6 */
	uint16_t port;   /**< default 4820 */
	char export_[DAFS_NAME_MAX + 1];
	char path[DAFS_PATH_MAX + 1]; /**< "" or "/a/b" */
} dafs_url_t;

#define DAFS_DEFAULT_PORT 4820

/** Parse "SCHEME://HOST[:PORT]/EXPORT[/PATH]". Returns 0 or -DAFS_EURL. */
int dafs_url_parse(const char *url, dafs_url_t *u);
/**@}*/

/** A static string for any return code of this library. */
const char *dafs_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* DAFS_DAFS_H */
