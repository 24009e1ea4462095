/*
 * state.c - dafsd's persistent state in LMDB.
 *
 * One environment in the state directory. The named database "meta":
 *
 *   "handle-key"        16 random bytes: the handle MAC key
 *   "export-next"       le32: the id the next new export gets (from 1)
 *   "export/" NAME      le32: the id of export NAME
 *
 * and, for each export that uses table handles, "handles/<id>" (id in
 * decimal):
 *
 *   be64 ino            le64 parent ino, then the name (1..255 bytes, no NUL)
 *
 * Values are little-endian so a state directory can move between hosts;
 * table keys are big-endian so that they sort by number, which keeps the
 * records of a directory's files (often close in number) on few pages.
 * Every change is one write transaction, so a crash leaves either the old or
 * the new state, never a key without its record or two exports on one id.
 *
 * Durability: the environment runs with MDB_NOMETASYNC, so a commit syncs
 * its data pages but not the meta page that makes it current. That keeps
 * the database intact through a system crash and may undo the last commits,
 * which for the handle table only makes some handles stale (a lookup
 * records them again); it halves the syncs of the table's writes, which
 * come with lookups and creates. The key and the export ids must not be
 * undone (handles carry both), so their commits are followed by a full
 * mdb_env_sync().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "dafs/dafs.h"
#include "server/state_i.h"

#define STATE_MAPSIZE (64ul << 20) /* grows on disk only as used */
/* "meta", a table per export (at most 32 in dafsd), client records */
#define STATE_MAXDBS 64
/*
 * Every handler thread may hold a read transaction at once (resolving a
 * table handle); LMDB's default of 126 slots is below dafsd's 1024 threads.
 */
#define STATE_MAXREADERS 1280
#define KEY_LEN 16
#define EXPORT_PFX "export/"
#define EXPORT_ID_MAX 0xffffu /* ids are 16 bits inside file handles */

struct dafs_state {
	MDB_env *env;
	MDB_dbi meta;
};

struct dafs_table {
	MDB_env *env; /* the state's; it outlives the table */
	MDB_dbi dbi;
};

#define TAB_KEY_LEN 8
#define TAB_PARENT_LEN 8
#define TAB_VAL_MAX (TAB_PARENT_LEN + DAFS_NAME_MAX)

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

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Commit @txn, then make it durable despite MDB_NOMETASYNC. */
static int commit_sync(MDB_env *env, MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);

	if (!rc)
		rc = mdb_env_sync(env, 1);
	return rc;
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
	rc = mdb_env_set_maxreaders(st->env, STATE_MAXREADERS);
	if (rc)
		goto fail_env;
	/*
	 * MDB_NOTLS: handler threads come from a pool and a read transaction
	 * must not be tied to the thread that happened to start it.
	 * MDB_NOMETASYNC: see the top of the file.
	 */
	rc = mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
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
	rc = commit_sync(st->env, txn);
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
	rc = commit_sync(st->env, txn);
	if (rc)
		return mdb_err(rc);
	*id = (uint16_t)next;
	return 0;

fail:
	mdb_txn_abort(txn);
	return mdb_err(rc);
}

/* ---- handle tables ---- */

int dafs_state_table_open(struct dafs_state *st, uint16_t export_id,
			  struct dafs_table **out)
{
	char name[sizeof("handles/65535")];
	struct dafs_table *t;
	MDB_txn *txn;
	int rc;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->env = st->env;
	snprintf(name, sizeof(name), "handles/%u", (unsigned int)export_id);
	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		goto fail_free;
	rc = mdb_dbi_open(txn, name, MDB_CREATE, &t->dbi);
	if (rc) {
		mdb_txn_abort(txn);
		goto fail_free;
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		goto fail_free;
	*out = t;
	return 0;

fail_free:
	free(t);
	return mdb_err(rc);
}

void dafs_state_table_close(struct dafs_table *t)
{
	/* The database handle stays with the environment: LMDB advises
	 * against closing handles that other transactions may know. */
	free(t);
}

/* The value of a record; its length, or -EINVAL for a bad name. */
static int rec_val(const struct dafs_table_rec *r, uint8_t val[TAB_VAL_MAX])
{
	size_t len = r->name ? strnlen(r->name, DAFS_NAME_MAX + 1) : 0;

	if (len == 0 || len > DAFS_NAME_MAX || memchr(r->name, '/', len) ||
	    !strcmp(r->name, ".") || !strcmp(r->name, ".."))
		return -EINVAL;
	put_le64(val, r->parent);
	memcpy(val + TAB_PARENT_LEN, r->name, len);
	return (int)(TAB_PARENT_LEN + len);
}

/*
 * What a record of @txn says about @r: 1 if it is exactly @r's, 0 if it is
 * another one, -ENOENT if there is none.
 */
static int rec_cmp(MDB_txn *txn, MDB_dbi dbi, const struct dafs_table_rec *r,
		   const uint8_t *val, size_t len)
{
	uint8_t key[TAB_KEY_LEN];
	MDB_val k = {sizeof(key), key}, v;
	int rc;

	put_be64(key, r->ino);
	rc = mdb_get(txn, dbi, &k, &v);
	if (rc)
		return mdb_err(rc);
	return v.mv_size == len && !memcmp(v.mv_data, val, len);
}

/* Whether storing @r (under @flags) would change anything. */
static int rec_wanted(MDB_txn *txn, MDB_dbi dbi, const struct dafs_table_rec *r,
		      const uint8_t *val, size_t len, unsigned int flags)
{
	int same = rec_cmp(txn, dbi, r, val, len);

	if (same == -ENOENT)
		return !(flags & DAFS_TABLE_EXISTING);
	if (same < 0)
		return same;
	return !same;
}

int dafs_state_table_put(struct dafs_table *t,
			 const struct dafs_table_rec *recs, size_t n,
			 unsigned int flags)
{
	uint8_t key[TAB_KEY_LEN], val[TAB_VAL_MAX];
	MDB_val k = {sizeof(key), key}, v = {0, val};
	MDB_txn *txn;
	size_t i;
	int len, rc, want = 0;

	/*
	 * Look first: most lookups are of objects recorded long ago, and a
	 * read transaction costs no lock, no write and no sync.
	 */
	rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	for (i = 0; i < n && !want; i++) {
		len = rec_val(&recs[i], val);
		want = len < 0 ? len
			       : rec_wanted(txn, t->dbi, &recs[i], val,
					    (size_t)len, flags);
	}
	mdb_txn_abort(txn);
	if (want <= 0)
		return want;

	/* Again under the writer lock: another thread may have been first. */
	rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	if (rc)
		return mdb_err(rc);
	for (i = 0; i < n; i++) {
		len = rec_val(&recs[i], val);
		if (len < 0) {
			mdb_txn_abort(txn);
			return len;
		}
		want = rec_wanted(txn, t->dbi, &recs[i], val, (size_t)len,
				  flags);
		if (want < 0) {
			mdb_txn_abort(txn);
			return want;
		}
		if (!want)
			continue;
		put_be64(key, recs[i].ino);
		v.mv_size = (size_t)len;
		rc = mdb_put(txn, t->dbi, &k, &v, 0);
		if (rc) {
			mdb_txn_abort(txn);
			return mdb_err(rc);
		}
	}
	rc = mdb_txn_commit(txn);
	return rc ? mdb_err(rc) : 0;
}

int dafs_state_table_del(struct dafs_table *t, const struct dafs_table_rec *r)
{
	uint8_t key[TAB_KEY_LEN], val[TAB_VAL_MAX];
	MDB_val k = {sizeof(key), key};
	MDB_txn *txn;
	int len, rc, same;

	len = rec_val(r, val);
	if (len < 0)
		return len;
	rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	same = rec_cmp(txn, t->dbi, r, val, (size_t)len);
	mdb_txn_abort(txn);
	if (same <= 0)
		return same == -ENOENT ? 0 : same;

	rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	if (rc)
		return mdb_err(rc);
	same = rec_cmp(txn, t->dbi, r, val, (size_t)len);
	if (same <= 0) {
		mdb_txn_abort(txn);
		return same == -ENOENT ? 0 : same;
	}
	put_be64(key, r->ino);
	rc = mdb_del(txn, t->dbi, &k, NULL);
	if (rc) {
		mdb_txn_abort(txn);
		return mdb_err(rc);
	}
	rc = mdb_txn_commit(txn);
	return rc ? mdb_err(rc) : 0;
}

/*
 * One step up from @ino: its parent and name (pointing into the map, valid
 * while @txn lives). A record that could not have been written by
 * dafs_state_table_put() is -EIO: its name is about to become part of a
 * path.
 */
static int rec_step(MDB_txn *txn, MDB_dbi dbi, uint64_t ino, uint64_t *parent,
		    const char **name, size_t *len)
{
	uint8_t key[TAB_KEY_LEN];
	MDB_val k = {sizeof(key), key}, v;
	const char *nm;
	size_t n;
	int rc;

	put_be64(key, ino);
	rc = mdb_get(txn, dbi, &k, &v);
	if (rc)
		return mdb_err(rc);
	if (v.mv_size <= TAB_PARENT_LEN || v.mv_size > TAB_VAL_MAX)
		return -EIO;
	nm = (const char *)v.mv_data + TAB_PARENT_LEN;
	n = v.mv_size - TAB_PARENT_LEN;
	if (memchr(nm, '/', n) || memchr(nm, '\0', n) ||
	    (n == 1 && nm[0] == '.') ||
	    (n == 2 && nm[0] == '.' && nm[1] == '.'))
		return -EIO;
	*parent = get_le64(v.mv_data);
	*name = nm;
	*len = n;
	return 0;
}

int dafs_state_table_path(struct dafs_table *t, uint64_t ino, uint64_t root,
			  char **path)
{
	const char *name;
	uint64_t cur;
	size_t len, total = 0, pos;
	MDB_txn *txn;
	char *buf;
	int depth, rc, err;

	*path = NULL;
	if (ino == root) {
		*path = strdup(".");
		return *path ? 1 : -ENOMEM;
	}
	rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);

	/* Up once to learn the length (a loop runs into the bound) ... */
	for (cur = ino, depth = 0; cur != root; depth++) {
		if (depth == DAFS_TABLE_DEPTH) {
			err = -ELOOP;
			goto out;
		}
		err = rec_step(txn, t->dbi, cur, &cur, &name, &len);
		if (err)
			goto out;
		total += len + 1;
	}
	/* ... and again, in the same snapshot, filling in from the end. */
	buf = malloc(total);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	pos = total - 1;
	buf[pos] = '\0';
	for (cur = ino; cur != root;) {
		err = rec_step(txn, t->dbi, cur, &cur, &name, &len);
		if (err) {
			free(buf);
			goto out;
		}
		pos -= len;
		memcpy(buf + pos, name, len);
		if (pos)
			buf[--pos] = '/';
	}
	*path = buf;
	err = (int)(total - 1);
out:
	mdb_txn_abort(txn);
	return err;
}
