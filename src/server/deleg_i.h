/*
 * deleg_i.h - the delegation manager of dafsd: which sessions have which
 * file open, which delegations are granted, recalled or revoked.
 *
 * A pure state machine: no I/O, no threads, no clock (time is passed in),
 * no locking (the server holds one mutex around every call). The server
 * sends the recalls this module asks for, waits on a condition variable for
 * the answers, and marks the open files of a revoked delegation; the unit
 * test drives it with hand-built events.
 *
 * Files are named by a key (st_dev, st_ino), so every handle and every name
 * of one file meet in one record. Owners are sessions, opaque here.
 *
 * The rules:
 *   - a read delegation is granted when no other owner has the file open for
 *     writing or holds a write delegation; a write delegation when no other
 *     owner has the file open or holds any delegation; the policy may allow
 *     read only, or nothing;
 *   - nothing is granted to anyone while another owner's conflicting
 *     operation is in progress on the file (dlg_begin .. dlg_end), nor for
 *     the hold-off time after a recall (so a recalled client cannot take the
 *     file straight back from the one that waits for it);
 *   - an operation of one owner conflicts with the delegations of every
 *     other owner: reading opens with write delegations, everything that
 *     writes (open for writing, truncate, setattr, remove, rename, link,
 *     xattr changes) with any delegation;
 *   - a conflicting delegation is recalled once (its CB_RECALL tried
 *     again every DLG_RETRY_NS until one reaches the holder); it is
 *     returned by its holder, or revoked when the holder's lease has
 *     passed since the recall; while one is being recalled, or another
 *     owner's operation waits on the file, nothing is granted. A revoked
 *     delegation leaves a tombstone, so its holder's DELEGRETURN learns
 *     DAFS_EREVOKED, until the holder returns it or goes away.
 */
#ifndef DAFS_DELEG_I_H
#define DAFS_DELEG_I_H

#include <stddef.h>
#include <stdint.h>

/* Delegation types (the wire's values). */
enum { DLG_NONE = 0, DLG_READ = 1, DLG_WRITE = 2 };

/* Grant policy. */
enum { DLG_POLICY_OFF = 0, DLG_POLICY_READ = 1, DLG_POLICY_ON = 2 };

/* What an operation does to a file, for conflicts. */
enum { DLG_C_READ = 1, DLG_C_WRITE = 2 };

/* Delegation states. */
enum { DLG_GRANTED = 1, DLG_RECALLING = 2, DLG_REVOKED = 3 };

struct dlg_key {
	uint64_t dev, ino;
};

struct dlg_file;

struct dlg {
	uint64_t id;
	struct dlg_key key;
	void *owner;
	int type;  /* DLG_READ, DLG_WRITE */
	int state; /* DLG_GRANTED, DLG_RECALLING, DLG_REVOKED */
	uint64_t lease_ns;  /* the holder's: how long a recall may take */
	uint64_t recall_ns; /* when it was recalled */
	uint64_t try_ns;    /* when a CB_RECALL was last tried (0: none) */
	int sent;	    /* a CB_RECALL reached the holder */
	struct dlg_file *f; /* NULL once revoked */
	struct dlg *fnext;  /* the file's list */
	struct dlg *hnext;  /* the id hash */
};

/* A recall to send, or a revocation to apply. */
struct dlg_event {
	uint64_t id;
	struct dlg_key key;
	void *owner;
	int type;
};

struct dlg_stats {
	uint64_t grants_read, grants_write, upgrades;
	uint64_t recalls, returns, revokes;
	uint64_t waits;           /* operations that waited for a recall */
	uint64_t delays;          /* ... told to ask again (DAFS_EDELAY) */
	uint64_t recall_ns_total; /* recall to return, over returns */
	uint64_t recall_ns_max;
	uint64_t active;          /* delegations granted now */
};

#define DLG_RETRY_NS 100000000ull /* 100 ms between CB_RECALL tries */
#define DLG_FILE_BUCKETS 4096
#define DLG_ID_BUCKETS 4096

struct dlg_mgr {
	int policy;
	uint64_t lease_ns;
	uint64_t holdoff_ns; /* no grants this long after a recall */
	uint64_t next_id;
	struct dlg_file *files[DLG_FILE_BUCKETS];
	struct dlg *ids[DLG_ID_BUCKETS];
	struct dlg_stats st;
};

/* @id_base makes ids unique across server restarts (e.g. boot time);
 * @lease_ns is the longest lease (dlg_open gives each holder's). */
void dlg_mgr_init(struct dlg_mgr *m, int policy, uint64_t lease_ns,
		  uint64_t holdoff_ns, uint64_t id_base);
void dlg_mgr_destroy(struct dlg_mgr *m);

/*
 * Start an operation of @owner of kind @kind on @key. Returns the number
 * of other owners' delegations that stand in its way (0: go ahead). Those
 * still granted become RECALLING, and they and the recalling ones whose
 * CB_RECALL has not reached the holder yet (tried DLG_RETRY_NS ago or
 * more) are appended to @recalls (at most @max; *@nrecalls counts them)
 * for the caller to send and report with dlg_recall_sent(). *@deadline_ns
 * is when to look again: the first revocation or retry due.
 *
 * On 0 the operation is in progress: grants to other owners wait until
 * dlg_end() (or dlg_open(), which ends it). Returns -ENOMEM if no record
 * could be made.
 */
int dlg_begin(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind,
	      uint64_t now, struct dlg_event *recalls, int max, int *nrecalls,
	      uint64_t *deadline_ns);
/* End an operation that dlg_begin() let through. */
void dlg_end(struct dlg_mgr *m, struct dlg_key key);

/* The result of sending the CB_RECALL of @id: @ok, or try again. */
void dlg_recall_sent(struct dlg_mgr *m, uint64_t id, int ok, uint64_t now);

/* An operation of another owner starts (+1) or stops (-1) waiting on
 * @key's recalls: no grants meanwhile. */
void dlg_wait(struct dlg_mgr *m, struct dlg_key key, int delta);

/*
 * Record an open of @key by @owner for @kind (DLG_C_READ or DLG_C_WRITE)
 * at the end of an operation dlg_begin() let through (this ends it), and
 * grant a delegation if @want (DLG_NONE, DLG_READ, DLG_WRITE) asks for one
 * and the rules allow. Returns the type granted (DLG_NONE too) with its id
 * in *@id, or -ENOMEM (nothing recorded; the caller fails the open).
 */
int dlg_open(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind,
	     int want, uint64_t lease_ns, uint64_t now, uint64_t *id);
/* The close of an open recorded by dlg_open(). */
void dlg_close(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind);

/* DELEGRETURN: 0, -DAFS_EBADDELEG (unknown or another owner's), or
 * -DAFS_EREVOKED (revoked; the tombstone goes). */
int dlg_return(struct dlg_mgr *m, uint64_t id, void *owner, uint64_t now);

/* Revoke recalled delegations whose lease ran out by @now; append them to
 * @out (at most @max). Returns how many were revoked. */
int dlg_expire(struct dlg_mgr *m, uint64_t now, struct dlg_event *out,
	       int max);

/* @owner is gone: drop its delegations and tombstones (no revocation
 * counted; nobody is left to use them). Its opens were closed first. */
void dlg_owner_gone(struct dlg_mgr *m, void *owner);

/* The delegation @id, or NULL (tests). */
const struct dlg *dlg_find(const struct dlg_mgr *m, uint64_t id);

#endif /* DAFS_DELEG_I_H */
