/*
 * fs_i.h - dafs-fuse: one mount of a DAFS export through the libfuse3
 * low-level API (ops.c), set up by main.c.
 *
 * Every FUSE request is handled on a libfuse worker thread over the one
 * libdafs session of the mount: the thread switches to the caller's
 * credentials (creds.c), finds the server's handle for the node id
 * (inode.c), makes the call, and replies. Data moves through the thread's
 * registered buffer (bufpool.c).
 */
#ifndef DAFS_FUSE_FS_I_H
#define DAFS_FUSE_FS_I_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdint.h>

#include "dafs/dafs.h"
#include "fuse/bufpool_i.h"
#include "fuse/creds_i.h"
#include "fuse/inode_i.h"
#include "fuse/locks_i.h"
#include "fuse/wback_i.h"

/* Options from the command line (main.c); see dafs-fuse(1). */
struct dfs_opts {
	char *url;
	char *mountpoint;
	int foreground;
	int debug;
	int ro;
	int threads;	  /* most FUSE worker threads */
	int timeout_ms;	  /* per-request timeout of the session */
	int readahead_kb; /* kernel readahead of the mount, 0: leave */
	int splice;	  /* take write data from /dev/fuse by splice */
	double attr_timeout;
	double entry_timeout;
	double negative_timeout;
	int deleg;	      /* DFS_DELEG_*: what to ask the server for */
	double deleg_timeout; /* attribute timeout under a delegation */
	int wb_max_mb;	      /* writes held under write delegations, 0: off */
	int wb_behind;	      /* buffers of writes behind, 0: off */
	int close_behind_us;  /* close answered before its write-back once
				 write-backs take this long (fwb_close_early),
				 -1: never */
	int cache_mb;	      /* libdafs data cache, 0: none */
	char *cache_dir;      /* ... kept in LMDB there, or NULL */
};

enum { DFS_DELEG_OFF = 0, DFS_DELEG_READ = 1, DFS_DELEG_ON = 2 };

/* Open files and directories, kept on a list so that what the kernel
 * never released (a lazy unmount) is closed at exit. */
struct dfs_park;

struct dfs_handle {
	struct dfs_handle *prev, *next;
	int dir;
};

struct dfs {
	dafs_session_t *s;
	struct fuse_session *se; /* set once mounted (recall invalidation) */
	struct dfs_opts o;
	uint32_t max_io;
	uint32_t inline_max;
	struct fino_table ino;
	struct fcred_cache creds;
	struct fbuf_pool pool;
	struct fwb_set wb; /* writes held under write delegations */
	struct flk_set locks; /* lock requests waiting (locks.c) */

	pthread_mutex_t hlock;	   /* handles, nfiles, ndirs, parked */
	struct dfs_handle handles; /* list head */
	uint64_t nfiles, ndirs;
	/* server opens kept after their release while the node's
	 * delegation is held, for the next open (ops.c, "Parked opens") */
	struct dfs_park *parked; /* most recent first */
	unsigned nparked;
	uint64_t local_opens; /* opens served from them */
	uint64_t park_gen;    /* bumped when any node's are dropped */
};

/* The extended attribute of the mount's root that reads as the
 * statistics (dafsstat). */
#define DFS_STATS_XATTR "dafs.stats"

/* The low-level operations table. */
extern const struct fuse_lowlevel_ops dfs_ops;

/* Set up / tear down what the operations use, once the session is open. */
int dfs_init(struct dfs *fs);
void dfs_fini(struct dfs *fs);

/* One line of statistics ("name value, name value ...": inodes, open
 * files, delegations, write-back, requests by operation ...) into @buf; at
 * most DFS_STATS_MAX bytes with its NUL. */
#define DFS_STATS_MAX 4096
void dfs_stats(struct dfs *fs, char *buf, size_t size);

/* A libdafs result as the positive errno FUSE replies with (0 for
 * success): project codes become EIO, handle errors ESTALE, a denied
 * lock EAGAIN (EWOULDBLOCK for flock: the same number). */
int dfs_errno(int rc);

#endif /* DAFS_FUSE_FS_I_H */
