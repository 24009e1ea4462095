/*
 * regmem.c - libdafs's registrations of the caller's memory, all through
 * the session's pin-down registration cache (src/cache/regcache.h,
 * docs/regcache.md): dafs_mem_register() and the registration an I/O on
 * an unregistered buffer needs. The session's own message buffers are
 * registered once at open and never go through it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_i.h"

#define DEF_ENTRIES 1024
#define DEF_BYTES (256ull << 20)

#define ACC_ALL                                                                \
	(DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_WRITE | DAFS_ACC_REMOTE_READ)

_Static_assert((int)DAFS_REGCACHE_ON == (int)DAFS_RC_ON &&
		       (int)DAFS_REGCACHE_OFF == (int)DAFS_RC_OFF &&
		       (int)DAFS_REGCACHE_NO_MONITOR == (int)DAFS_RC_NO_MONITOR,
	       "public and internal cache modes differ");

/* A count from the environment: decimal, with K, M or G (powers of 1024);
 * @def when unset or malformed. */
static uint64_t env_size(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	unsigned long long n;
	char *end;

	if (!v || !*v)
		return def;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v)
		return def;
	switch (*end) {
	case 'K':
	case 'k':
		n <<= 10, end++;
		break;
	case 'M':
	case 'm':
		n <<= 20, end++;
		break;
	case 'G':
	case 'g':
		n <<= 30, end++;
		break;
	default:
		break;
	}
	return *end ? def : (uint64_t)n;
}

int dafs_c_regcache_open(dafs_session_t *s)
{
	struct dafs_regcache_cfg cfg;
	const char *u = getenv("DAFS_REGCACHE_UFFD");

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_entries = env_size("DAFS_REGCACHE_ENTRIES", DEF_ENTRIES);
	cfg.max_bytes = env_size("DAFS_REGCACHE_BYTES", DEF_BYTES);
	if (u && !strcmp(u, "0"))
		cfg.flags |= DAFS_RC_NO_UFFD;
	/* A TCP registration is a (key, address, length) record and data
	 * moves from the virtual address at send time; anything else is
	 * assumed to pin pages (regcache.h, DAFS_RC_STRICT). */
	if (strcmp(s->tp->name, "tcp"))
		cfg.flags |= DAFS_RC_STRICT;
	return dafs_regcache_new(s->tp, s->dom, &cfg, &s->rc);
}

void dafs_c_regcache_close(dafs_session_t *s)
{
	dafs_regcache_free(s->rc);
	s->rc = NULL;
}

void dafs_c_regcache_info(dafs_session_t *s, dafs_session_info_t *info)
{
	struct dafs_regcache_stats st;

	dafs_regcache_stats(s->rc, &st);
	info->regcache_max_entries = st.max_entries;
	info->regcache_max_bytes = st.max_bytes;
	info->regcache_entries = st.entries;
	info->regcache_bytes = st.bytes;
	info->regcache_hits = st.hits;
	info->regcache_misses = st.misses;
	info->regcache_evictions = st.evictions;
	info->regcache_invalidations = st.invalidations;
	info->regcache_uncached = st.uncached;
	info->regcache_mode = (uint32_t)st.mode;
	info->regcache_monitor_err = st.monitor_err;
}

int dafs_c_tmp_reg(dafs_session_t *s, void *buf, size_t len,
		   struct dafs_rc_entry **reg)
{
	return dafs_regcache_get(s->rc, buf, len, ACC_ALL, reg);
}

void dafs_c_tmp_put(struct dafs_rc_entry *reg)
{
	if (reg)
		dafs_regcache_put(reg);
}

DAFS_API int dafs_session_set_regcache(dafs_session_t *s, uint64_t max_entries,
				       uint64_t max_bytes)
{
	if (!s)
		return -EINVAL;
	dafs_regcache_set_limits(s->rc, max_entries, max_bytes);
	return 0;
}
