/*
 * state_i.h - dafsd's persistent state, in an LMDB environment in the state
 * directory: the secret that authenticates file handles (so handles survive
 * restarts), the export ids, and the handle tables of exports that cannot use
 * kernel file handles. Later: client records and delegations for recovery.
 */
#ifndef DAFS_STATE_I_H
#define DAFS_STATE_I_H

#include <stddef.h>
#include <stdint.h>

struct dafs_state;
struct dafs_table;

/* Open (creating) the environment in directory @dir (created 0700 if
 * missing). Errors: -errno from mkdir or LMDB (EACCES, ENOSPC ...). */
int dafs_state_open(const char *dir, struct dafs_state **st);
void dafs_state_close(struct dafs_state *st);
/* The 16-byte handle key, generated from getrandom() on first use. */
int dafs_state_handle_key(struct dafs_state *st, uint8_t key[16]);
/* A stable numeric id for export @name (1, 2, ... in order of first use). */
int dafs_state_export_id(struct dafs_state *st, const char *name,
			 uint16_t *id);

/*
 * The handle table of one export, for servers that cannot open kernel file
 * handles (backend_i.h, "table handles"): inode number -> (parent inode
 * number, name), the name through which dafsd last handed the object out.
 * Inode numbers are those of the export's file system; the root has no
 * record, a walk ends at it.
 *
 * Table writes are not flushed to disk one by one: the environment runs with
 * MDB_NOMETASYNC (each commit syncs its data pages, not the meta page), so a
 * system crash can undo the last commits but never corrupts the database.
 * Losing a record only makes the handles of that object stale until it is
 * looked up again. The key and the export ids are synced in full.
 */
#define DAFS_TABLE_DEPTH 4096 /* the deepest object a walk reaches */

struct dafs_table_rec {
	uint64_t ino;
	uint64_t parent;
	const char *name; /* one component; borrowed for the call */
};

/* Only replace records that exist (a rename or a link of an object this
 * export may never have handed out). */
#define DAFS_TABLE_EXISTING 1u

/*
 * Open (creating) the table of export @export_id, in the LMDB database
 * "handles/<id>". Call while no other thread opens one (at startup: LMDB
 * database handles are opened once per environment). *@tab lives until
 * dafs_state_table_close(), which must come before dafs_state_close().
 * Errors: -ENOSPC (too many databases), LMDB errors as errnos, -ENOMEM.
 */
int dafs_state_table_open(struct dafs_state *st, uint16_t export_id,
			  struct dafs_table **tab);
void dafs_state_table_close(struct dafs_table *tab);

/*
 * Store @n records (with DAFS_TABLE_EXISTING in @flags, only over records
 * that exist). Records already stored as given cost one read transaction
 * and no write. Errors: -EINVAL (a name that is not one component),
 * -ENOSPC (the map is full), -EIO.
 */
int dafs_state_table_put(struct dafs_table *tab,
			 const struct dafs_table_rec *recs, size_t n,
			 unsigned int flags);
/* Delete the record of @rec->ino if it is exactly (@rec->parent, @rec->name):
 * that name is gone. 0 also when there was nothing to delete. */
int dafs_state_table_del(struct dafs_table *tab,
			 const struct dafs_table_rec *rec);

/*
 * The path of @ino beneath @root ("a/b/c", no leading or trailing '/'; "."
 * for @root itself) from the records, in one read transaction. *@path is
 * malloc'd (the caller frees it); the path may be longer than PATH_MAX.
 * Returns its length, or -ENOENT (a record is missing: the walk does not
 * reach @root), -ELOOP (more than DAFS_TABLE_DEPTH levels: a loop),
 * -EIO (a malformed record), -ENOMEM.
 */
int dafs_state_table_path(struct dafs_table *tab, uint64_t ino, uint64_t root,
			  char **path);

#endif /* DAFS_STATE_I_H */
