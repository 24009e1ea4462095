/*
 * creds_i.h - dafs-fuse's credential cache: (uid, gid, groups) of a FUSE
 * caller -> the credential id registered with the libdafs session.
 *
 * The server runs each request with the credentials its id names, so the
 * caller of every FUSE request must reach it; registering costs a round
 * trip, so each distinct set is registered once and its id kept. dafsd
 * keeps at most 1024 credential sets per session and has no way to drop one,
 * so the cache never evicts either: when the server is full, a new set gets
 * -EUSERS ("too many users") and its caller's request fails with that.
 */
#ifndef DAFS_FUSE_CREDS_I_H
#define DAFS_FUSE_CREDS_I_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "dafs/dafs.h"

/* The most supplementary groups a credential carries (the protocol's). */
#define FCRED_GROUPS_MAX 32
/* The most sets cached: the server's limit per session. */
#define FCRED_MAX 1024

struct fcred {
	uint32_t uid, gid, ngroups;
	uint32_t groups[FCRED_GROUPS_MAX]; /* sorted, no duplicates */
	uint32_t id;
};

struct fcred_cache {
	dafs_session_t *s;
	pthread_mutex_t lock; /* everything below; never held over a call */
	struct fcred ent[FCRED_MAX];
	uint32_t n;
};

void fcred_cache_init(struct fcred_cache *c, dafs_session_t *s);
void fcred_cache_fini(struct fcred_cache *c);

/* The canonical form of a set into *@k (its id left 0): groups sorted,
 * duplicates dropped, cut to FCRED_GROUPS_MAX. */
void fcred_canon(struct fcred *k, uint32_t uid, uint32_t gid, int ngroups,
		 const gid_t *groups);

/*
 * The credential id for @uid, @gid and @ngroups supplementary @groups (in
 * any order; more than FCRED_GROUPS_MAX are cut to the first ones),
 * registering it with the session on first use. Does not switch the
 * thread's credentials.
 * @return 0 and *@id; -EUSERS when the server holds no more sets; the
 *         session's errors (-DAFS_EBROKEN, -ETIMEDOUT).
 */
int fcred_get(struct fcred_cache *c, uint32_t uid, uint32_t gid, int ngroups,
	      const gid_t *groups, uint32_t *id);

#endif /* DAFS_FUSE_CREDS_I_H */
