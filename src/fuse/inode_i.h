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
	struct fino **by_fh, **by_id, **by_name;
	size_t nbuckets; /* a power of two, the same for both */
	size_t count;	 /* entries, the root included */
	uint64_t next_id;
	struct fino *root;
	uint64_t seq;		/* the last fino_mark stamp */
	uint64_t xchanges;	/* fino_xattr_changed calls, any node */
	uint64_t freed_changed; /* the latest stamp of a freed entry */
	size_t ndelegs;		/* entries holding a delegation */
	/* delegation ids recalled or given back lately: a grant of one of
	 * them that arrives late (a reply overtaken by its recall, a
	 * re-open racing a return) is not recorded */
	uint64_t gone[64];
	unsigned gone_next;
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
 * root are ignored. Returns the id of the delegation a freed entry held
 * (for the caller to return), else 0. */
uint64_t fino_forget(struct fino_table *t, uint64_t id, uint64_t n);

/*
 * Delegations held on nodes. fino_deleg_set() records that @id holds
 * delegation @deleg_id of @type and returns the type it already held
 * under that same id before (DAFS_DELEG_NONE if it is new: the node's
 * cached pages predate it); an id recalled or returned lately is not
 * recorded (DAFS_DELEG_NONE, and the node keeps none). With @type NONE
 * it forgets what the node held (an open granted nothing: a delegation
 * the node thought it had is gone, revoked or being recalled).
 * fino_deleg() is the type held now. fino_deleg_drop() forgets
 * @deleg_id (the node found by @fh, or by a scan when @fh is empty) and
 * returns the node of @fh, or the one that held the id, or 0; the id
 * counts as gone from then on. fino_forget() counts the id of a freed
 * node as gone too.
 */
int fino_deleg_set(struct fino_table *t, uint64_t id, int type,
		   uint64_t deleg_id);
int fino_deleg(struct fino_table *t, uint64_t id);
/* The id of the delegation the node holds now, 0 if none. */
uint64_t fino_deleg_id(struct fino_table *t, uint64_t id);
uint64_t fino_deleg_drop(struct fino_table *t, const dafs_fh_t *fh,
			 uint64_t deleg_id);
size_t fino_ndelegs(struct fino_table *t);

/*
 * The kernel asks for security.capability before every write (to drop it);
 * while the node holds a delegation nobody else can add one (SETXATTR
 * recalls it), so an absence learnt under the delegation stands until the
 * delegation goes or this mount changes the node's attributes.
 * fino_nocaps() says whether the absence is known, and gives the node's
 * xattr generation in *@gen; fino_set_nocaps() records an absence the
 * server reported, only if the generation is still @gen (no change and no
 * recall since the question was asked) and a delegation is held;
 * fino_xattr_changed() forgets it and moves the generation on, before and
 * after a change of the node's attributes by this mount.
 */
int fino_nocaps(struct fino_table *t, uint64_t id, uint32_t *gen);
void fino_set_nocaps(struct fino_table *t, uint64_t id, uint32_t gen);
void fino_xattr_changed(struct fino_table *t, uint64_t id);

/*
 * An open that truncates a file (O_TRUNC) or creates it (O_EXCL) leaves it
 * without security.capability: the server's kernel drops it on truncation,
 * and a new file has none. fino_xattr_epoch() counts the changes of
 * attributes by this mount (fino_xattr_changed, any node); read before
 * such an open is sent, it lets fino_caps_gone() record the absence for
 * @id after the open came back with its delegation @deleg_id - only if
 * no change was made through this mount meanwhile and the node holds that
 * delegation still. (Another client's SETXATTR between the server's
 * truncation and its grant is not seen: the absence is then wrong until
 * the delegation goes, which fails closed - the server's own write drops
 * the capability - but getxattr through this mount misses it meanwhile.)
 */
uint64_t fino_xattr_epoch(struct fino_table *t);
void fino_caps_gone(struct fino_table *t, uint64_t id, uint64_t epoch,
		    uint64_t deleg_id);

/*
 * POSIX locks: fino_set_locked() records that a POSIX lock was asked for
 * on @id through this mount (before the request goes, so a lock granted
 * whose answer was lost counts too); fino_locked() says so. Only the
 * flushes of such nodes release their owner's locks on the server: a
 * close of any other file costs no round trip. Unknown ids: ignored, 0.
 */
void fino_set_locked(struct fino_table *t, uint64_t id);
int fino_locked(struct fino_table *t, uint64_t id);

/* Copy the handle of @id into *@fh. Returns 0 or -ESTALE for an unknown
 * id. */
int fino_fh(struct fino_table *t, uint64_t id, dafs_fh_t *fh);

/*
 * Changes made through this mount, for the directory batches of ops.c: a
 * batch of readdirplus attributes read before a change must not reach the
 * kernel after it, or it would take the kernel's idea of the node back
 * (a size from before a write: reads past it see the end of the file).
 *
 * fino_mark() stamps @id as changed now (a call of this mount changed it
 * on the server; made before the reply). Unknown ids are ignored.
 * fino_seq() is the latest stamp; a batch takes it before it is read.
 * fino_changed() is the stamp of the last change to the node of @fh, or a
 * later stamp of an entry freed since (its handle is forgotten, so any
 * node may be it); 0 if none. A batch stamped S speaks for @fh while
 * fino_changed() <= S.
 */
void fino_mark(struct fino_table *t, uint64_t id);
uint64_t fino_seq(struct fino_table *t);
uint64_t fino_changed(struct fino_table *t, const dafs_fh_t *fh);

/*
 * Attributes kept under a write delegation, so that a getattr after the
 * mount's own writes is answered without the server (the kernel asks for
 * the size again after every write). Nobody else changes the file while
 * the delegation is held; what this mount changes it keeps up to date or
 * drops:
 *
 * fino_attr_keep() keeps @a, attributes the server sent for @id in reply
 * to a request made at fino_seq() @seq: only while the node holds a write
 * delegation, is a regular file with one link known by one name
 * (fino_named), no write of this mount came after @wseq (fino_attr_wrote;
 * a getattr takes @wseq before it sends the held writes, whose sending
 * moves the change stamp) and nothing else changed it since @seq
 * (fino_mark). fino_attr_get() gives them, or -ENOENT.
 * fino_attr_wrote() counts a write of @len bytes at @off through this
 * mount: a larger size (and the blocks the bytes past the old end may
 * take), the mtime and ctime of now (the client's clock, as an NFS client
 * under a write delegation keeps them; times only go forward), and stamps
 * the change. An @append lands where the server's end of file is, which
 * is the size kept (it counts every write before), whatever @off says.
 * fino_attr_drop() drops them (a change this mount cannot compute: a
 * fallocate, a copy, an O_TRUNC open, a link), stamping the change. A
 * delegation that goes, an xattr change and a forget drop them too.
 *
 * Names: fino_named() records the name the kernel got @id by (a lookup,
 * create or readdirplus reply to a request made at fino_seq() @seq),
 * indexed by (parent, name hash); another name than the recorded one
 * drops what is kept (a second name would be unlinked unseen), and so
 * does a name of @parent gone since @seq (the reply may name what a
 * rename moved meanwhile). fino_name_gone() drops the name @name in @parent and
 * what its node keeps (an unlink, a rename: its links and ctime change),
 * after the server did it. Attributes are kept only with one link and a
 * name recorded, so the one name an unlink can take is the recorded one.
 */
void fino_attr_keep(struct fino_table *t, uint64_t id, const dafs_attr_t *a,
		    uint64_t wseq, uint64_t seq);
int fino_attr_get(struct fino_table *t, uint64_t id, dafs_attr_t *a);
void fino_attr_wrote(struct fino_table *t, uint64_t id, uint64_t off,
		     uint64_t len, int append);
void fino_attr_drop(struct fino_table *t, uint64_t id);
void fino_named(struct fino_table *t, uint64_t id, uint64_t parent,
		const char *name, uint64_t seq);
void fino_name_gone(struct fino_table *t, uint64_t parent, const char *name);

/* The node id of @fh, 0 if it has none (no reference taken). */
uint64_t fino_id(struct fino_table *t, const dafs_fh_t *fh);

/* Entries in the table, the root included (for tests and statistics). */
size_t fino_count(struct fino_table *t);

#endif /* DAFS_FUSE_INODE_I_H */
