/*
 * inode_i.h - dafs-fuse's inode table: FUSE node ids for server file
 * handles.
 *
 * The kernel names a file by a 64-bit node id; the server by a file handle
 * (dafs_fh_t). The table gives each handle one node id, counted up from
 * FUSE_ROOT_ID + 1 and never reused within a mount, so a node id means the
 * same file for as long as the kernel may use it. Each entry carries the
 * kernel's lookup count: every reply that hands the node to the kernel
 * (lookup, create, mkdir, readdirplus ...) adds one, forget subtracts what
 * the kernel says, and the entry is freed when the count reaches zero, so
 * walking a tree twice costs no more memory than walking it once. The root
 * is FUSE_ROOT_ID and is never freed.
 *
 * Two chained hash tables index the entries, by handle bytes and by node
 * id; both grow by doubling. One mutex guards everything; no call blocks
 * while holding it.
 */
#ifndef DAFS_FUSE_INODE_I_H
#define DAFS_FUSE_INODE_I_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dafs/dafs.h"

/* FUSE_ROOT_ID, without including libfuse here. */
#define FINO_ROOT_ID 1u

struct fino;

struct fino_table {
	pthread_mutex_t lock; /* everything below */
	struct fino **by_fh, **by_id;
	size_t nbuckets; /* a power of two, the same for both */
	size_t count;	 /* entries, the root included */
	uint64_t next_id;
	struct fino *root;
};

/* Set up @t with @root as FUSE_ROOT_ID. Returns 0 or -ENOMEM. */
int fino_table_init(struct fino_table *t, const dafs_fh_t *root);
/* Free every entry. */
void fino_table_fini(struct fino_table *t);

/*
 * The node id for @fh, created if new, with its lookup count raised by
 * one. Returns 0 and the id in *@id, or -ENOMEM.
 */
int fino_ref(struct fino_table *t, const dafs_fh_t *fh, uint64_t *id);

/* Drop @n lookups of @id; frees the entry at zero. Unknown ids and the
 * root are ignored. */
void fino_forget(struct fino_table *t, uint64_t id, uint64_t n);

/* Copy the handle of @id into *@fh. Returns 0 or -ESTALE for an unknown
 * id. */
int fino_fh(struct fino_table *t, uint64_t id, dafs_fh_t *fh);

/* Entries in the table, the root included (for tests and statistics). */
size_t fino_count(struct fino_table *t);

#endif /* DAFS_FUSE_INODE_I_H */
