/*
 * dcache.h - libdafs's data cache: blocks of files kept under
 * delegations (or between an open and its close), bounded in bytes, in
 * memory or in an LMDB environment that outlives the process.
 *
 * A file is named by its handle's bytes. Blocks are DC_BLOCK bytes at
 * DC_BLOCK-aligned offsets; the last block of a file is short, and a
 * short block marks the end of the file as it was when the block was
 * read. The cache knows nothing of sessions: the library says when a file
 * was (re)validated against the server's change attribute (dc_validate),
 * when it changed (dc_invalidate, dc_write), and fills the blocks it
 * misses through a callback.
 *
 * Bound: the bytes of all blocks stay under the limit; the least recently
 * used block goes first. Persistence: with a directory, blocks and each
 * file's change attribute live in LMDB there (its map sized to the limit
 * and some slack), the in-memory index is rebuilt from it at open, and a
 * file whose change attribute differs at its first validation loses its
 * blocks. Without one, blocks are malloc'd.
 *
 * Thread-safe: one mutex for the index; fills run outside it.
 */
#ifndef DAFS_CACHE_DCACHE_H
#define DAFS_CACHE_DCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dafs/dafs.h"

#define DC_BLOCK (64u * 1024u)

struct dcache;

struct dc_stats {
	uint64_t hits, misses;	 /* blocks */
	uint64_t hit_bytes;	 /* bytes served from the cache */
	uint64_t evictions;	 /* blocks dropped for room */
	uint64_t invalidations;	 /* files dropped (change, recall, write) */
	uint64_t blocks, bytes;	 /* held now */
	uint64_t limit;
	int persistent;
};

/* Read block @blk of the file (DC_BLOCK bytes at blk * DC_BLOCK) into
 * @buf; returns the bytes read (short at the end of the file) or a
 * negative error. */
typedef ssize_t (*dc_fill_fn)(void *arg, uint64_t blk, void *buf);

/*
 * A cache of at most @limit bytes; in LMDB under @dir (created if
 * missing) when @dir is not NULL. Returns 0, -ENOMEM, or an LMDB/errno
 * error for @dir (as a negative errno, -EIO for LMDB's own).
 */
int dc_open(struct dcache **dc, uint64_t limit, const char *dir);
void dc_close(struct dcache *dc);

/*
 * The server says file @fh is at change attribute @change: blocks cached
 * under another change are dropped. Returns 1 if blocks of the file were
 * kept (valid), 0 if none were.
 */
int dc_validate(struct dcache *dc, const dafs_fh_t *fh, uint64_t change);

/*
 * Read [@off, @off + @len) of @fh into @buf from the cache, filling the
 * blocks it lacks through @fill. Returns the bytes read (short at the end
 * of the file) or the fill's error.
 */
ssize_t dc_read(struct dcache *dc, const dafs_fh_t *fh, uint64_t off,
		void *buf, size_t len, dc_fill_fn fill, void *arg);

/* This client wrote [@off, @off + @len) of @fh: the blocks it touches (and
 * the file's last block, whose length is the end of the file) are
 * dropped. */
void dc_write(struct dcache *dc, const dafs_fh_t *fh, uint64_t off,
	      uint64_t len);

/* Drop every block of @fh (a recall, a truncate, a change elsewhere). */
void dc_invalidate(struct dcache *dc, const dafs_fh_t *fh);

void dc_stats(struct dcache *dc, struct dc_stats *st);

#endif /* DAFS_CACHE_DCACHE_H */
