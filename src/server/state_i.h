/*
 * state_i.h - dafsd's persistent state, in an LMDB environment in the state
 * directory: the secret that authenticates file handles (so handles survive
 * restarts) and the export ids. Later: client records and delegations for
 * recovery.
 */
#ifndef DAFS_STATE_I_H
#define DAFS_STATE_I_H

#include <stdint.h>

struct dafs_state;

/* Open (creating) the environment in directory @dir (created 0700 if
 * missing). Errors: -errno from mkdir or LMDB (EACCES, ENOSPC ...). */
int dafs_state_open(const char *dir, struct dafs_state **st);
void dafs_state_close(struct dafs_state *st);
/* The 16-byte handle key, generated from getrandom() on first use. */
int dafs_state_handle_key(struct dafs_state *st, uint8_t key[16]);
/* A stable numeric id for export @name (1, 2, ... in order of first use). */
int dafs_state_export_id(struct dafs_state *st, const char *name,
			 uint16_t *id);

#endif /* DAFS_STATE_I_H */
