/*
 * creds.c - the credential cache of dafs-fuse (see creds_i.h).
 */
#include <errno.h>
#include <string.h>

#include "fuse/creds_i.h"

void fcred_cache_init(struct fcred_cache *c, dafs_session_t *s)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	pthread_mutex_init(&c->lock, NULL);
}

void fcred_cache_fini(struct fcred_cache *c)
{
	pthread_mutex_destroy(&c->lock);
}

void fcred_canon(struct fcred *k, uint32_t uid, uint32_t gid, int ngroups,
		 const gid_t *groups)
{
	uint32_t i, j, n = 0, g;

	memset(k, 0, sizeof(*k));
	k->uid = uid;
	k->gid = gid;
	if (ngroups < 0)
		ngroups = 0;
	if (ngroups > FCRED_GROUPS_MAX)
		ngroups = FCRED_GROUPS_MAX;
	for (i = 0; i < (uint32_t)ngroups; i++) {
		g = (uint32_t)groups[i];
		/* insertion sort: sets are short */
		for (j = n; j > 0 && k->groups[j - 1] > g; j--)
			k->groups[j] = k->groups[j - 1];
		if (j > 0 && k->groups[j - 1] == g) {
			/* a duplicate: undo the shift */
			memmove(&k->groups[j], &k->groups[j + 1],
				(n - j) * sizeof(uint32_t));
			k->groups[n] = 0; /* sets compare as whole structs */
			continue;
		}
		k->groups[j] = g;
		n++;
	}
	k->ngroups = n;
}

static int same(const struct fcred *a, const struct fcred *b)
{
	return a->uid == b->uid && a->gid == b->gid &&
	       a->ngroups == b->ngroups &&
	       !memcmp(a->groups, b->groups, a->ngroups * sizeof(uint32_t));
}

static int find(struct fcred_cache *c, const struct fcred *k, uint32_t *id)
{
	uint32_t i;

	for (i = 0; i < c->n; i++) {
		if (same(&c->ent[i], k)) {
			*id = c->ent[i].id;
			return 1;
		}
	}
	return 0;
}

int fcred_get(struct fcred_cache *c, uint32_t uid, uint32_t gid, int ngroups,
	      const gid_t *groups, uint32_t *id)
{
	struct fcred k;
	uint32_t got;
	int rc;

	fcred_canon(&k, uid, gid, ngroups, groups);
	pthread_mutex_lock(&c->lock);
	rc = find(c, &k, id);
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return 0;

	/*
	 * Register without the lock: two threads may register the same set
	 * at once, which is harmless, as the server answers both with the
	 * id it already holds.
	 */
	rc = dafs_cred_register(c->s, k.uid, k.gid, k.ngroups, k.groups, &got);
	if (rc == -ENOSPC)
		return -EUSERS;
	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	if (!find(c, &k, id) && c->n < FCRED_MAX) {
		k.id = got;
		c->ent[c->n++] = k;
	}
	pthread_mutex_unlock(&c->lock);
	*id = got;
	return 0;
}
