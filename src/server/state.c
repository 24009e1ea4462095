/*
 * state.c - dafsd's persistent state in LMDB.
 *
 * One environment in the state directory, one named database "meta" so far:
 *
 *   "handle-key"        16 random bytes: the handle MAC key
 *   "export-next"       le32: the id the next new export gets (from 1)
 *   "export/" NAME      le32: the id of export NAME
 *
 * Values are little-endian so a state directory can move between hosts.
 * Every change is one write transaction, so a crash leaves either the old or
 * the new state, never a key without its record or two exports on one id.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "dafs/dafs.h"
#include "server/state_i.h"

#define STATE_MAPSIZE (64ul << 20) /* grows on disk only as used */
#define STATE_MAXDBS 8		   /* "meta" now; room for client records */
#define KEY_LEN 16
#define EXPORT_PFX "export/"
#define EXPORT_ID_MAX 0xffffu /* ids are 16 bits inside file handles */

struct dafs_state {
	MDB_env *env;
	MDB_dbi meta;
};

/* Convert LMDB's codes once, here: positive values are already errnos. */
static int mdb_err(int rc)
{
	if (rc >= 0)
		return -rc;
	switch (rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
	case MDB_DBS_FULL:
	case MDB_TXN_FULL:
	case MDB_PAGE_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
		return -EBUSY;
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
		return -EINVAL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_PANIC:
	default:
		return -EIO;
	}
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int make_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int dafs_state_open(const char *dir, struct dafs_state **out)
{
	struct dafs_state *st;
	MDB_txn *txn;
	int rc, err;

	*out = NULL;
	err = make_dir(dir);
	if (err)
		return err;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;

	rc = mdb_env_create(&st->env);
	if (rc)
		goto fail_free;
	rc = mdb_env_set_mapsize(st->env, STATE_MAPSIZE);
	if (rc)
		goto fail_env;
	rc = mdb_env_set_maxdbs(st->env, STATE_MAXDBS);
	if (rc)
		goto fail_env;
	/*
	 * MDB_NOTLS: handler threads come from a pool and a read transaction
	 * must not be tied to the thread that happened to start it.
	 */
	rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0600);
	if (rc)
		goto fail_env;

	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		goto fail_env;
	rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta);
	if (rc)
		goto fail_txn;
	rc = mdb_txn_commit(txn);
	if (rc)
		goto fail_env;

	*out = st;
	return 0;

fail_txn:
	mdb_txn_abort(txn);
fail_env:
	mdb_env_close(st->env);
fail_free:
	free(st);
	return mdb_err(rc);
}

void dafs_state_close(struct dafs_state *st)
{
	if (!st)
		return;
	mdb_env_close(st->env);
	free(st);
}

int dafs_state_handle_key(struct dafs_state *st, uint8_t key[16])
{
	static const char name[] = "handle-key";
	MDB_val k = {sizeof(name) - 1, (void *)name}, v;
	uint8_t fresh[KEY_LEN];
	MDB_txn *txn;
	ssize_t n;
	int rc;

	/*
	 * A write transaction even to read: two threads asking at once on a
	 * fresh state must agree on one key, and LMDB serialises writers.
	 */
	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		return mdb_err(rc);
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == 0) {
		if (v.mv_size != KEY_LEN) {
			mdb_txn_abort(txn);
			return -EIO; /* not written by us: refuse to guess */
		}
		memcpy(key, v.mv_data, KEY_LEN);
		mdb_txn_abort(txn);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		goto fail;

	n = getrandom(fresh, sizeof(fresh), 0);
	if (n != (ssize_t)sizeof(fresh)) {
		mdb_txn_abort(txn);
		return n < 0 ? -errno : -EIO;
	}
	v.mv_size = KEY_LEN;
	v.mv_data = fresh;
	rc = mdb_put(txn, st->meta, &k, &v, 0);
	if (rc)
		goto fail;
	rc = mdb_txn_commit(txn);
	if (rc)
		return mdb_err(rc);
	memcpy(key, fresh, KEY_LEN);
	return 0;

fail:
	mdb_txn_abort(txn);
	return mdb_err(rc);
}

int dafs_state_export_id(struct dafs_state *st, const char *name, uint16_t *id)
{
	static const char next_name[] = "export-next";
	char kbuf[sizeof(EXPORT_PFX) + DAFS_NAME_MAX];
	MDB_val k, nk = {sizeof(next_name) - 1, (void *)next_name}, v;
	size_t len = strlen(name);
	uint8_t buf[4];
	uint32_t next = 1;
	MDB_txn *txn;
	int rc;

	if (len == 0 || len > DAFS_NAME_MAX)
		return -EINVAL;
	memcpy(kbuf, EXPORT_PFX, sizeof(EXPORT_PFX) - 1);
	memcpy(kbuf + sizeof(EXPORT_PFX) - 1, name, len);
	k.mv_size = sizeof(EXPORT_PFX) - 1 + len;
	k.mv_data = kbuf;

	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		return mdb_err(rc);
	rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == 0) {
		if (v.mv_size != 4 || get_le32(v.mv_data) == 0 ||
		    get_le32(v.mv_data) > EXPORT_ID_MAX) {
			mdb_txn_abort(txn);
			return -EIO;
		}
		*id = (uint16_t)get_le32(v.mv_data);
		mdb_txn_abort(txn);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		goto fail;

	rc = mdb_get(txn, st->meta, &nk, &v);
	if (rc == 0) {
		if (v.mv_size != 4) {
			mdb_txn_abort(txn);
			return -EIO;
		}
		next = get_le32(v.mv_data);
	} else if (rc != MDB_NOTFOUND) {
		goto fail;
	}
	if (next == 0 || next > EXPORT_ID_MAX) {
		mdb_txn_abort(txn);
		/* 65535 export names have been seen: the ids are used up. */
		return -ENOSPC;
	}

	put_le32(buf, next);
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	rc = mdb_put(txn, st->meta, &k, &v, 0);
	if (rc)
		goto fail;
	put_le32(buf, next + 1);
	rc = mdb_put(txn, st->meta, &nk, &v, 0);
	if (rc)
		goto fail;
	rc = mdb_txn_commit(txn);
	if (rc)
		return mdb_err(rc);
	*id = (uint16_t)next;
	return 0;

fail:
	mdb_txn_abort(txn);
	return mdb_err(rc);
}
